"""One reader (#16): read_predictions is open_stream's chunks gathered, and both refuse a file in the same words."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch

from lensdash import InputError
from lensdash.io import open_stream, read_predictions

CLASSES = ["cat", "dog", "bird"]
N = 37


def _write(tmp_path, fmt: str) -> tuple:
    """A predictions file of ``fmt`` and its labels file (None: the file holds its labels), with the logits."""
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(N, 3)).astype(np.float32)
    labels = rng.integers(0, 3, N)
    frame = pd.DataFrame(logits, columns=CLASSES).assign(label=labels)
    path = tmp_path / f"p.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False, float_format="%.9g")
        return path, None, logits, labels
    if fmt == "parquet":
        frame.to_parquet(path, row_group_size=8)
        return path, None, logits, labels
    if fmt == "npz":
        np.savez(path, logits=logits, labels=labels, class_names=np.array(CLASSES))
        return path, None, logits, labels
    np.save(path, np.asfortranarray(logits.astype(np.float64)))  # column-major, another dtype
    np.save(tmp_path / "y.npy", labels)
    return path, tmp_path / "y.npy", logits, labels


@pytest.mark.parametrize("fmt", ["csv", "parquet", "npy", "npz"])
def test_read_predictions_equals_the_streams_chunks_gathered(tmp_path, fmt, monkeypatch):
    from lensdash.io import _csv_parse

    monkeypatch.setattr(_csv_parse, "PART_BYTES", 300)  # many CSV parts
    path, labels, logits, expected = _write(tmp_path, fmt)
    whole = read_predictions(path, labels=labels)
    torch.testing.assert_close(whole.logits, torch.from_numpy(logits), rtol=0, atol=0)
    assert whole.labels.tolist() == expected.tolist() and whole.kind == "logits"
    for world in (1, 3):
        chunks = [
            c for rank in range(world) for c in open_stream(path, labels, shard=(rank, world), chunk_rows=5).chunks
        ]
        assert [c.row for c in chunks] == sorted(c.row for c in chunks)
        assert len(chunks) > world  # really in parts
        torch.testing.assert_close(torch.cat([c.logits for c in chunks]), whole.logits, rtol=0, atol=0)
        assert torch.equal(torch.cat([c.labels for c in chunks]), whole.labels)
    stream = open_stream(path, labels)
    assert stream.class_names == whole.class_names and stream.kind == whole.kind


def _full_npy() -> bytes:
    out = io.BytesIO()
    np.save(out, np.zeros((30, 2), np.float32))
    return out.getvalue()


def _truncated_npy() -> bytes:
    return _full_npy()[:-16]


@pytest.mark.parametrize(
    ("name", "data", "labels", "match"),
    [
        ("short.npy", _truncated_npy(), b"0\n" * 30, r"short.npy: expected 240 bytes of data for shape \(30, 2\)"),
        ("one.csv", b"a,label\n1,0\n", None, r"one.csv: expected at least 2 class columns, found 1"),
        ("nolabel.csv", b"a,b\n1,2\n", None, r"nolabel.csv: expected labels: a column named one of"),
        ("bad.csv", b"a,b,label\n1,2,0\n3,x,1\n", None, r"bad.csv, row 3, column 2: expected a number, found 'x'"),
        ("count.npy", _full_npy(), b"0\n1\n", r"l.csv: expected 30 labels \(one per prediction row\), found 2"),
    ],
)
def test_both_readers_refuse_in_the_same_words(tmp_path, name, data, labels, match):
    path = tmp_path / name
    path.write_bytes(data)
    labels_path = None
    if labels is not None:
        labels_path = tmp_path / "l.csv"
        labels_path.write_bytes(labels)
    with pytest.raises(InputError, match=match) as in_memory:
        read_predictions(path, labels=labels_path)
    with pytest.raises(InputError) as streamed:
        for _ in open_stream(path, labels_path).chunks:
            pass
    assert str(streamed.value) == str(in_memory.value)
