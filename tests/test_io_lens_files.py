"""Lens files round-trip at any K the app accepts, in every format; names spreadsheet-safe and read back exactly."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch

from lensdash import InputError, Lens, LensError
from lensdash.io import lens_to_bytes, read_lens, read_predictions
from lensdash.lens import lens_matrix

FORMATS = ["csv", "plain-csv", "json", "pt"]


def _random_lens(k: int, names: list[str], seed: int = 0) -> Lens:
    rng = np.random.default_rng(seed)
    matrix = rng.dirichlet(np.ones(k) * 0.1, size=k)
    return Lens(torch.from_numpy(matrix), names)


@pytest.mark.parametrize("fmt", FORMATS)
def test_k_1000_round_trips_in_every_format(fmt):
    k = 1_000
    names = [f"n{i:08d} class {i}" for i in range(k)]
    lens = _random_lens(k, names)
    data = lens_to_bytes(lens, fmt)
    if fmt == "csv":
        assert len(data) > 10_000_000  # over the old byte cap; the bound is on K × K cells now
    back, _ = read_lens(data, names if fmt == "plain-csv" else None)
    if fmt != "plain-csv":
        assert back.classes == tuple(names)
    # 10 significant digits in the CSVs; exact in JSON and .pt.
    tol = 1e-9 if fmt in ("csv", "plain-csv") else 0.0
    torch.testing.assert_close(lens_matrix(back, dtype=torch.float64), lens.matrix, atol=tol, rtol=tol)


def test_the_cell_limit_still_holds():
    lens = _random_lens(60, [f"c{i}" for i in range(60)])
    for fmt in FORMATS:
        with pytest.raises(InputError, match="max_cells"):
            read_lens(lens_to_bytes(lens, fmt), max_cells=59 * 59)


FORMULA_NAMES = ["=SUM(A1)", "+1", "-x", "@home", "'=already", "plain", "'quoted", "''=two"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_formula_like_names_round_trip_exactly(fmt):
    lens = _random_lens(len(FORMULA_NAMES), FORMULA_NAMES, seed=1)
    back, _ = read_lens(lens_to_bytes(lens, fmt), FORMULA_NAMES)
    assert back.classes == tuple(FORMULA_NAMES)
    torch.testing.assert_close(lens_matrix(back, dtype=torch.float64), lens.matrix, atol=1e-9, rtol=1e-9)


def test_lens_csv_cells_are_spreadsheet_safe():
    lens = _random_lens(len(FORMULA_NAMES), FORMULA_NAMES, seed=1)
    rows = list(csv.reader(io.StringIO(lens_to_bytes(lens, "csv").decode())))
    cells = rows[0][1:] + [r[0] for r in rows[1:]]
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
    assert rows[0][1] == "'=SUM(A1)" and rows[0][5] == "''=already"
    assert rows[0][6] == "plain" and rows[0][7] == "'quoted"


def test_formula_class_name_matches_the_predictions():
    preds = read_predictions(b'"=SUM(A1)",dog,label\n0.9,0.1,=SUM(A1)\n0.2,0.8,dog\n')
    assert preds.class_names == ("=SUM(A1)", "dog")
    lens = Lens(torch.tensor([[0.9, 0.1], [0.0, 1.0]], dtype=torch.float64), preds.class_names)
    back, notes = read_lens(lens_to_bytes(lens), preds.class_names)
    assert back.classes == preds.class_names and notes == []
    torch.testing.assert_close(back.matrix, lens.matrix)


def test_mismatched_names_list_only_a_few():
    k = 1_000
    names = [f"class {i}" for i in range(k)]
    data = lens_to_bytes(_random_lens(k, names)).decode().splitlines()
    data[1] = "other" + data[1][len("class 0") :]
    with pytest.raises((InputError, LensError), match="the same class names") as info:
        read_lens("\n".join(data).encode())
    assert str(info.value).count("class ") <= 10
