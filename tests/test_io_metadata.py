"""Metadata columns (#17): text columns, common id names and ``meta_columns=`` are kept aside, not read as scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lensdash import InputError
from lensdash.io import open_stream, read_predictions
from lensdash.io._source import MAX_META_COLUMNS


def _frame(n: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(3), size=n)
    frame = pd.DataFrame(probs, columns=["cat", "dog", "bird"])
    frame["label"] = rng.integers(0, 3, size=n)
    return frame


def _expected_logits(frame: pd.DataFrame) -> torch.Tensor:
    return torch.from_numpy(np.log(frame[["cat", "dog", "bird"]].to_numpy(dtype=np.float32)))


@pytest.mark.parametrize("position", [0, 2, 4])
def test_text_column_anywhere_is_metadata(position):
    frame = _frame()
    sites = [f"site {i % 3}" for i in range(len(frame))]
    frame.insert(position, "site", sites)
    p = read_predictions(frame.to_csv(index=False).encode())
    assert p.class_names == ("cat", "dog", "bird")
    torch.testing.assert_close(p.logits, _expected_logits(frame))
    assert p.metadata is not None and list(p.metadata.columns) == ["site"]
    assert p.metadata["site"].tolist() == sites and pd.api.types.is_string_dtype(p.metadata["site"])
    assert any("Kept aside as metadata" in n and "'site'" in n for n in p.notes)


@pytest.mark.parametrize("name", ["id", "ID", "sample_id", "idx", "Index", "filename", "path"])
def test_common_names_are_metadata_even_when_numeric(name):
    frame = _frame()
    frame.insert(0, name, np.arange(100, 100 + len(frame)))
    p = read_predictions(frame.to_csv(index=False).encode())
    assert p.class_names == ("cat", "dog", "bird")
    assert p.metadata[name].tolist() == list(range(100, 100 + len(frame)))
    assert pd.api.types.is_integer_dtype(p.metadata[name])


def test_meta_columns_names_a_numeric_column():
    frame = _frame()
    frame.insert(1, "epoch", np.arange(len(frame)) % 4)
    plain = read_predictions(frame.to_csv(index=False).encode(), kind="logits")
    assert "epoch" in plain.class_names and plain.metadata is None  # numeric, not named: a score
    for wanted in (["epoch"], ["EPOCH"], [1]):
        p = read_predictions(frame.to_csv(index=False).encode(), meta_columns=wanted)
        assert p.class_names == ("cat", "dog", "bird")
        assert p.metadata["epoch"].tolist() == (np.arange(len(frame)) % 4).tolist()
    with pytest.raises(InputError, match="a column named 'nope' \\(meta_columns\\)"):
        read_predictions(frame.to_csv(index=False).encode(), meta_columns=["nope"])
    with pytest.raises(InputError, match=r"meta_columns indices in 0\.\.4"):
        read_predictions(frame.to_csv(index=False).encode(), meta_columns=[9])


def test_pandas_index_column_with_metadata():
    frame = _frame()
    frame["file"] = [f"img_{i}.png" for i in range(len(frame))]
    p = read_predictions(frame.to_csv().encode())  # with pandas' unnamed index first
    assert p.class_names == ("cat", "dog", "bird")
    assert list(p.metadata.columns) == ["file"]
    assert any("pandas index" in n for n in p.notes)


def test_parquet_text_and_id_columns(tmp_path):
    frame = _frame()
    frame.insert(0, "id", np.arange(len(frame)))
    frame["site"] = [f"s{i % 2}" for i in range(len(frame))]
    frame.to_parquet(tmp_path / "p.parquet", index=False)
    p = read_predictions(tmp_path / "p.parquet")
    assert p.class_names == ("cat", "dog", "bird")
    torch.testing.assert_close(p.logits, _expected_logits(frame))
    pd.testing.assert_frame_equal(p.metadata, frame[["id", "site"]].astype({"site": "string"}), check_dtype=False)
    assert pd.api.types.is_string_dtype(p.metadata["site"])
    from_csv = read_predictions(frame.to_csv(index=False).encode())
    pd.testing.assert_frame_equal(p.metadata, from_csv.metadata)


def test_too_many_metadata_columns():
    frame = _frame()
    for j in range(MAX_META_COLUMNS + 1):
        frame[f"note{j}"] = "x"
    with pytest.raises(InputError, match=f"at most {MAX_META_COLUMNS} metadata columns"):
        read_predictions(frame.to_csv(index=False).encode())


def test_text_in_a_score_column_is_still_a_bad_cell():
    frame = _frame().astype({"dog": object})
    frame.loc[3, "dog"] = "oops"  # a typo among numbers: refused with its cell, not kept as metadata
    with pytest.raises(InputError, match="row 5, column 2: expected a number, found 'oops'"):
        read_predictions(frame.to_csv(index=False).encode())


def test_no_metadata_is_none():
    assert read_predictions(_frame().to_csv(index=False).encode()).metadata is None


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("world", [1, 3])
def test_stream_chunks_metadata_equal_in_memory(tmp_path, monkeypatch, fmt, world):
    from lensdash.io import _csv_parse

    monkeypatch.setattr(_csv_parse, "PART_BYTES", 2_000)  # many CSV parts
    frame = _frame(n=400, seed=3)
    frame.insert(0, "sample_id", np.arange(len(frame)) * 7)
    frame["path"] = [f"dir/{i}.jpg" for i in range(len(frame))]
    frame["split"] = ["train" if i % 3 else "val" for i in range(len(frame))]
    path = tmp_path / f"p.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False, row_group_size=50)
    whole = read_predictions(path)
    parts = []
    for rank in range(world):
        stream = open_stream(path, shard=(rank, world), chunk_rows=60)
        assert any("Kept aside as metadata" in n for n in stream.notes)
        for chunk in stream.chunks:
            assert chunk.metadata is not None and len(chunk.metadata) == len(chunk.logits)
            parts.append((chunk.row, chunk.metadata))
    assert len(parts) > world
    gathered = pd.concat([m for _, m in sorted(parts, key=lambda x: x[0])], ignore_index=True)
    pd.testing.assert_frame_equal(gathered, whole.metadata)
    assert whole.metadata["path"].tolist() == frame["path"].tolist()


def test_cli_meta_columns_reaches_the_stream(tmp_path):
    from lensdash.cli import main

    frame = _frame()
    frame.insert(0, "epoch", np.arange(len(frame)) % 4)
    preds, lens, out = tmp_path / "p.csv", tmp_path / "lens.csv", tmp_path / "report"
    frame.to_csv(preds, index=False)
    lens.write_bytes(b"1,0,0\n0,1,0\n0,0,1\n")
    # Without the flag "epoch" is a fourth class and the 3-class lens does not fit.
    assert main(["report", str(preds), "--lens", str(lens), "--out", str(out), "--quiet"]) == 2
    argv = ["report", str(preds), "--lens", str(lens), "--out", str(out), "--quiet", "--meta-columns", "epoch"]
    assert main(argv) == 0
