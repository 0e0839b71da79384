"""Soft labels per sample (#14): a labels file with one column per class, each row a distribution."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from lensdash import InputError
from lensdash.io import open_stream, read_predictions
from lensdash.io._labels import SOFT_LABEL_ATOL

CLASSES = ["cat", "dog", "bird"]


def _data(n: int = 20, seed: int = 0) -> tuple[bytes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3)).astype(np.float32)
    votes = rng.integers(0, 5, size=(n, 3)).astype(np.float64)
    votes[votes.sum(axis=1) == 0, 0] = 1
    soft = votes / votes.sum(axis=1, keepdims=True)
    preds = pd.DataFrame(logits, columns=CLASSES).to_csv(index=False).encode()
    return preds, logits, soft


def _soft_csv(soft: np.ndarray, columns=CLASSES, **kw) -> bytes:
    return pd.DataFrame(soft, columns=columns).to_csv(float_format="%.6f", **kw).encode()


@pytest.mark.parametrize("index", [False, True])
def test_soft_labels_are_targets_with_majority_label(index):
    preds, logits, soft = _data()
    p = read_predictions(preds, labels=_soft_csv(soft, index=index), kind="logits")
    torch.testing.assert_close(p.targets, torch.from_numpy(soft.astype(np.float32)), atol=1e-6, rtol=0)
    # Majority label: the first of the largest (a plain loop, not argmax).
    expected = [max(range(3), key=lambda j, row=row: (row[j], -j)) for row in np.round(soft, 6)]
    assert p.labels.tolist() == expected
    assert any("accuracy uses the majority label" in n for n in p.notes)
    # The targets are what F.cross_entropy takes as probability targets.
    torch.testing.assert_close(
        F.cross_entropy(torch.from_numpy(logits), p.targets),
        F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(soft).float()),
        atol=1e-5,
        rtol=0,
    )


def test_soft_labels_matched_by_name_and_headerless():
    preds, _, soft = _data()
    shuffled = _soft_csv(soft[:, [2, 0, 1]], columns=["bird", "cat", "dog"], index=False)
    p = read_predictions(preds, labels=shuffled, kind="logits")
    torch.testing.assert_close(p.targets, torch.from_numpy(soft.astype(np.float32)), atol=1e-6, rtol=0)
    headerless = pd.DataFrame(soft).to_csv(index=False, header=False, float_format="%.6f").encode()
    q = read_predictions(preds, labels=headerless, kind="logits")
    torch.testing.assert_close(q.targets, p.targets)


def test_ties_go_to_the_lowest_index():
    preds = b"a,b,c\n1,2,3\n3,2,1\n"
    p = read_predictions(preds, labels=b"a,b,c\n0,0.5,0.5\n0.25,0.25,0.5\n", kind="logits")
    assert p.labels.tolist() == [1, 2]


def test_hard_labels_have_no_targets():
    preds, _, _ = _data()
    assert read_predictions(preds, labels=b"\n".join([b"0"] * 20), kind="logits").targets is None


def test_rows_not_summing_to_one_are_refused_with_row_sum_and_tolerance():
    preds = b"a,b,c\n1,2,3\n3,2,1\n"
    with pytest.raises(InputError, match=r"row 3: expected soft-label rows summing to 1 \(within 0.001\), found a sum"):
        read_predictions(preds, labels=b"a,b,c\n0.2,0.3,0.5\n0.5,0.5,0.5\n", kind="logits")
    with pytest.raises(InputError, match=r"found a sum of 1.5"):
        read_predictions(preds, labels=b"a,b,c\n0.2,0.3,0.5\n0.5,0.5,0.5\n", kind="logits")
    assert SOFT_LABEL_ATOL == 1e-3
    ok = read_predictions(preds, labels=b"a,b,c\n0.2,0.3,0.5004\n0.5,0.5,0\n", kind="logits")  # within 1e-3
    assert ok.targets is not None


def test_negative_values_are_refused_with_their_cell():
    with pytest.raises(InputError, match=r"row 2, column 2: expected soft labels >= 0.*found -0.5"):
        read_predictions(b"a,b,c\n1,2,3\n", labels=b"a,b,c\n1,-0.5,0.5\n", kind="logits")


def test_wrong_width_and_names_are_refused():
    preds = b"a,b,c\n1,2,3\n"
    with pytest.raises(InputError, match="expected 3 soft-label columns"):
        read_predictions(preds, labels=b"a,b\n0.5,0.5\n", kind="logits")
    with pytest.raises(InputError, match=r"1 class\(es\) missing, e.g. \['c'\]"):
        read_predictions(preds, labels=b"a,b,x\n0.5,0.5,0\n", kind="logits")


@pytest.mark.parametrize("fmt", ["csv", "npy", "parquet"])
def test_the_stream_gives_each_chunk_its_targets(tmp_path, fmt):
    """Soft labels in a stream: each chunk's rows of what read_predictions returns, in every shard."""
    preds, logits, soft = _data(n=50)
    (tmp_path / "l.csv").write_bytes(_soft_csv(soft, index=False))
    if fmt == "npy":
        np.save(tmp_path / "p.npy", logits)
    elif fmt == "parquet":
        pd.DataFrame(logits, columns=CLASSES).to_parquet(tmp_path / "p.parquet", row_group_size=10)
    else:
        (tmp_path / "p.csv").write_bytes(preds)
    path = tmp_path / f"p.{fmt}"
    whole = read_predictions(path, labels=tmp_path / "l.csv", kind="logits")
    for world in (1, 2, 3):
        rows, labels, targets = [], [], []
        for rank in range(world):
            stream = open_stream(path, tmp_path / "l.csv", kind="logits", shard=(rank, world), chunk_rows=7)
            assert any("accuracy uses the majority label" in n for n in stream.notes)
            for chunk in stream.chunks:
                assert chunk.targets is not None and chunk.targets.shape == (len(chunk.labels), 3)
                rows.append(torch.arange(chunk.row, chunk.row + len(chunk.labels)))
                labels.append(chunk.labels)
                targets.append(chunk.targets)
        assert torch.cat(rows).tolist() == list(range(50))
        assert torch.equal(torch.cat(labels), whole.labels)
        torch.testing.assert_close(torch.cat(targets), whole.targets, rtol=0, atol=0)
    torch.testing.assert_close(whole.targets, torch.from_numpy(soft.astype(np.float32)), atol=1e-6, rtol=0)


def test_the_stream_refuses_soft_labels_as_read_predictions_does(tmp_path):
    (tmp_path / "p.csv").write_bytes(b"a,b,c\n1,2,3\n3,2,1\n")
    (tmp_path / "l.csv").write_bytes(b"a,b,c\n0.2,0.3,0.5\n0.5,0.5,0.5\n")
    with pytest.raises(InputError, match=r"row 3: expected soft-label rows summing to 1 \(within 0.001\), found a sum"):
        open_stream(tmp_path / "p.csv", tmp_path / "l.csv", kind="logits")
    (tmp_path / "l.csv").write_bytes(b"a,b\n0.5,0.5\n0.5,0.5\n")
    with pytest.raises(InputError, match="expected 3 soft-label columns"):
        open_stream(tmp_path / "p.csv", tmp_path / "l.csv", kind="logits")


def test_hard_labels_stream_without_targets(tmp_path):
    (tmp_path / "p.csv").write_bytes(b"a,b,label\n1,2,0\n3,2,1\n")
    assert [c.targets for c in open_stream(tmp_path / "p.csv").chunks] == [None]
