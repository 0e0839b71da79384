"""Parts of the page made only when shown or asked for (the soft confusion, the lens files), equal to the library's."""

from __future__ import annotations

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

import lensdash as ld
from lensdash.analysis import soft_confusion
from lensdash.presets import build_preset
from lensdash.ui import data as data_ui
from lensdash.ui.data import demo_predictions
from lensdash.ui.downloads import lens_csv
from lensdash.ui.lens_editor import _lens_file

pytestmark = pytest.mark.filterwarnings("ignore")


def _page() -> AppTest:
    st.cache_data.clear()
    at = AppTest.from_file("../app.py", default_timeout=90)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_soft_confusion_is_made_once_when_the_preset_asks_for_it(monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return soft_confusion(*args, **kwargs)

    monkeypatch.setattr(data_ui, "soft_confusion", counted)
    at = _page()
    at.selectbox(key="preset").set_value("label smoothing").run()
    assert not calls  # nothing asked for it yet
    at.selectbox(key="preset").set_value("from confusion").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(calls) == 1
    at.slider(key="alpha").set_value(0.25).run()
    assert len(calls) == 1  # kept in the session for the same data
    preds = demo_predictions()
    expected = build_preset(
        "from confusion",
        preds.class_names,
        alpha=0.25,
        confusion=soft_confusion(preds.logits, preds.labels, preds.num_classes),
    )
    np.testing.assert_allclose(at.session_state["lens_current"], expected.matrix.numpy(), rtol=0, atol=1e-12)
    at.radio(key="confusion_kind").set_value("counts").run()
    counts = torch.bincount(preds.labels * 10 + preds.logits.argmax(1), minlength=100).reshape(10, 10)
    expected = build_preset("from confusion", preds.class_names, alpha=0.25, confusion=counts)
    np.testing.assert_allclose(at.session_state["lens_current"], expected.matrix.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("fmt", ["csv", "json", "pt"])
def test_lens_files_are_made_from_the_grids_matrix(fmt):
    names = ("cat", "dog", "=cmd")
    matrix = ld.merge_lens(list(names), [["cat", "dog"]]).matrix.numpy()
    data = _lens_file(matrix, names, fmt)
    lens, _ = ld.read_lens(data, names)
    np.testing.assert_array_equal(lens.matrix.numpy(), matrix)
    lens = ld.Lens(matrix, names)
    assert data == (lens_csv(lens) if fmt == "csv" else ld.lens_to_bytes(lens, fmt))
    if fmt == "csv":
        assert b"'=cmd" in data  # spreadsheet-safe, as every CSV the app writes


def test_lenses_from_data_and_the_confusion_matrix_are_drawn_only_while_open():
    at = _page()
    frames = [d.value for d in at.dataframe]
    assert not any("mutual" in f.columns for f in frames)
    assert not any(c.proto.id.endswith("confusion") for c in at.get("plotly_chart"))
    at.session_state["data_lenses_open"] = True
    at.session_state["confusion_open"] = True
    at.run()
    preds = demo_predictions()
    counts = torch.bincount(preds.labels * 10 + preds.logits.argmax(1), minlength=100).reshape(10, 10)
    shown = next(d.value for d in at.dataframe if "mutual" in d.value.columns)
    expected = ld.analysis.confused_pairs(counts, preds.class_names, top=8)
    assert shown.reset_index(drop=True).equals(expected.reset_index(drop=True))
    assert any(c.proto.id.endswith("confusion") for c in at.get("plotly_chart"))


def test_sanity_checks_run_on_a_bounded_number_of_cells(monkeypatch):
    from lensdash.sanity import identity_checks
    from lensdash.ui import results

    monkeypatch.setattr(results, "IDENTITY_CELLS", 5_000)  # 500 of the demo's 2,000 samples at K = 10
    monkeypatch.setattr(results, "SANITY_CELLS", 3_000)  # 300
    assert results.identity_rows(10) == 500 and results.lens_check_rows(10) == 300
    at = _page()
    at.session_state["view"] = "Sanity checks"
    at.run()
    assert not at.exception
    assert any("8 of 8 checks pass" in s.value for s in at.success)
    caption = " ".join(c.value for c in at.caption)
    assert "identity checks use a fixed random 500 of the 2,000 samples" in caption
    assert "lens checks use a fixed random 300" in caption
    preds = demo_predictions()
    rows = results.sanity_sample(preds.num_samples, 500)
    assert rows is not None and len(rows) == 500 and bool((rows[1:] > rows[:-1]).all())
    expected = [c.as_dict()["actual"] for c in identity_checks(preds.logits[rows], preds.labels[rows])]
    shown = next(d.value for d in at.dataframe if "result" in d.value.columns)
    np.testing.assert_allclose(shown["actual"].to_numpy()[: len(expected)], expected, rtol=1e-12)


def test_an_unedited_sub_grid_lens_is_its_base_and_an_edit_leaves_the_base_as_it_was():
    rng = np.random.default_rng(7)
    k, n = 50, 400  # above the whole grid's 40 classes: the sub-grid
    names = [f"c{j}" for j in range(k)]
    rows = [",".join([*names, "label"])]
    rows += [",".join([*(f"{v:.4f}" for v in rng.standard_normal(k)), str(rng.integers(0, k))]) for _ in range(n)]
    at = _page()
    key = f"upload_predictions_{at.session_state['upload_version']}"
    at.file_uploader(key=key).set_value(("k50.csv", ("\n".join(rows) + "\n").encode(), "text/csv")).run()
    assert not at.exception
    assert at.session_state["lens_grid_key"].endswith("_sub")
    assert at.session_state["lens_current"] is at.session_state["lens_base"]  # no copy without an edit
    chosen = list(at.session_state["subgrid_classes"])
    at.session_state[at.session_state["lens_grid_key"]] = {
        "edited_rows": {0: {chosen[0]: 0.75, chosen[1]: 0.25}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    assert not at.exception
    current, base = at.session_state["lens_current"], at.session_state["lens_base"]
    i, j = names.index(chosen[0]), names.index(chosen[1])
    assert (current[i, i], current[i, j]) == (0.75, 0.25)
    np.testing.assert_array_equal(base, np.eye(k))  # the base is not written into
    expected = np.eye(k)
    expected[i, [i, j]] = (0.75, 0.25)
    np.testing.assert_array_equal(current, expected)
