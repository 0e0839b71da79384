"""The stream reads ``.npz`` (#13); ``class_names=`` / ``--class-names`` names ``.npy`` columns (#13)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lensdash import InputError
from lensdash.io import open_stream, read_predictions

NAMES = ["cat", "dog", "bird", "fish"]


def _arrays(n: int = 250, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 4, size=n)


@pytest.mark.parametrize("world", [1, 3])
def test_npz_stream_equals_in_memory(tmp_path, world):
    logits, labels = _arrays()
    path = tmp_path / "p.npz"
    np.savez_compressed(path, logits=logits, labels=labels, class_names=np.array(NAMES))
    whole = read_predictions(path)
    chunks = []
    for rank in range(world):
        stream = open_stream(path, shard=(rank, world), chunk_rows=40)
        assert stream.class_names == tuple(NAMES) and stream.kind == "logits"
        chunks += list(stream.chunks)
    chunks.sort(key=lambda c: c.row)
    assert len(chunks) > world
    torch.testing.assert_close(torch.cat([c.logits for c in chunks]), whole.logits)
    assert torch.cat([c.labels for c in chunks]).tolist() == whole.labels.tolist() == labels.tolist()


def test_npz_stream_with_a_labels_file_and_refusals(tmp_path):
    logits, labels = _arrays(n=30)
    np.savez(tmp_path / "p.npz", logits=logits)
    (tmp_path / "l.csv").write_text("\n".join(str(v) for v in labels) + "\n")
    stream = open_stream(tmp_path / "p.npz", tmp_path / "l.csv")
    assert torch.cat([c.labels for c in stream.chunks]).tolist() == labels.tolist()
    with pytest.raises(InputError, match="an array named 'labels' in the archive, or --labels FILE"):
        open_stream(tmp_path / "p.npz")
    (tmp_path / "short.csv").write_text("0\n1\n")
    with pytest.raises(InputError, match="expected 30 labels"):
        open_stream(tmp_path / "p.npz", tmp_path / "short.csv")


@pytest.mark.parametrize("as_file", [False, True])
def test_class_names_name_npy_columns(tmp_path, as_file):
    logits, labels = _arrays(n=20)
    np.save(tmp_path / "p.npy", logits)
    (tmp_path / "l.csv").write_text("\n".join(NAMES[v] for v in labels) + "\n")  # labels as names
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n")
    given = tmp_path / "names.txt" if as_file else NAMES
    p = read_predictions(tmp_path / "p.npy", tmp_path / "l.csv", class_names=given)
    assert p.class_names == tuple(NAMES) and p.labels.tolist() == labels.tolist()
    stream = open_stream(tmp_path / "p.npy", tmp_path / "l.csv", class_names=given)
    assert stream.class_names == tuple(NAMES)
    assert torch.cat([c.labels for c in stream.chunks]).tolist() == labels.tolist()


def test_class_names_refusals(tmp_path):
    logits, _ = _arrays(n=5)
    np.save(tmp_path / "p.npy", logits)
    with pytest.raises(InputError, match=r"expected 4 class names .* found 3"):
        read_predictions(tmp_path / "p.npy", b"0\n1\n2\n3\n0\n", class_names=NAMES[:3])
    with pytest.raises(InputError, match="class names equal to the file's own column names"):
        read_predictions(b"a,b,label\n1,2,0\n", class_names=["a", "x"])
    assert read_predictions(b"a,b,label\n1,2,0\n", class_names=["a", "b"]).class_names == ("a", "b")


def test_cli_class_names_and_npz(tmp_path):
    from lensdash.cli import main

    logits, labels = _arrays(n=50)
    np.save(tmp_path / "p.npy", logits)
    np.savez(tmp_path / "p.npz", logits=logits, labels=labels)
    (tmp_path / "l.csv").write_text("\n".join(str(v) for v in labels) + "\n")
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n")
    lens = {"classes": ["dog", "cat"], "lens": [[0.5, 0.5], [0.5, 0.5]]}  # a named lens over two of the classes
    (tmp_path / "lens.json").write_text(json.dumps(lens))
    common = ["--lens", str(tmp_path / "lens.json"), "--quiet"]
    argv = ["report", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "l.csv"), "--out", str(tmp_path / "a")]
    assert main([*argv, *common, "--class-names", str(tmp_path / "names.txt")]) == 0
    assert (
        main(
            [
                "report",
                str(tmp_path / "p.npz"),
                "--out",
                str(tmp_path / "b"),
                *common,
                "--class-names",
                str(tmp_path / "names.txt"),
            ]
        )
        == 0
    )
    summary_a = json.loads((tmp_path / "a" / "summary.json").read_text())
    summary_b = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary_a["lensed_loss"] == pytest.approx(summary_b["lensed_loss"])
