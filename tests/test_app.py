"""The page, driven through Streamlit's AppTest (no browser)."""

import re

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

import lensdash as ld
from lensdash.examples import example_bytes
from lensdash.presets import PRESETS
from lensdash.ui.data import demo_predictions

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def app():
    st.cache_data.clear()
    at = AppTest.from_file("../app.py", default_timeout=90)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown(text):
    """What the reader sees of a markdown body: names from files are backslash-escaped (lensdash.sanitize)."""
    return re.sub(r"\\(.)", r"\1", text)


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def loss(value):
    return float(value)


def uploader(at, name="upload_predictions"):
    """The uploader widget; its key changes each time a file was read (the file moves out of the widget)."""
    return at.file_uploader(key=f"{name}_{at.session_state['upload_version']}")


def open_tab(at, label):
    """Switch the page's tabs; only the open tab's content runs."""
    at.session_state["view"] = label
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart_keys(at):
    return {c.proto.id for c in at.get("plotly_chart")}


def test_default_page_shows_the_core_numbers_for_the_demo(app):
    preds = demo_predictions()
    lens = ld.Lens(app.session_state["lens_current"], preds.class_names)
    unlensed = ld.lensed_cross_entropy(preds.logits, preds.labels, torch.eye(preds.num_classes))
    lensed = ld.lensed_cross_entropy(preds.logits, preds.labels, lens)
    assert loss(metric(app, "Unlensed loss (cross-entropy)")) == pytest.approx(float(unlensed), abs=1e-4)
    assert loss(metric(app, "Lensed loss")) == pytest.approx(float(lensed), abs=1e-4)
    assert loss(metric(app, "Prediction-side lensed loss")) == pytest.approx(
        float(ld.prediction_lensed_cross_entropy(preds.logits, preds.labels, lens)), abs=1e-4
    )
    assert metric(app, "Samples × classes") == "2,000 × 10"
    assert app.selectbox(key="preset").value == "merge groups"
    assert "cat" in app.session_state["groups"] and "dog" in app.session_state["groups"]
    assert not app.error


def test_upload_changes_the_metrics_to_the_files_values(app):
    data = example_bytes("seed_4class.csv")
    uploader(app).set_value(("seed_4class.csv", data, "text/csv"))
    app.run()
    assert not app.exception
    preds = ld.read_predictions(data)
    assert metric(app, "Samples × classes") == "5 × 4"
    expected = float(ld.lensed_cross_entropy(preds.logits, preds.labels, torch.eye(4)))
    assert loss(metric(app, "Unlensed loss (cross-entropy)")) == pytest.approx(expected, abs=1e-4)
    # The file moved out of the (now empty) uploader; the data stays, and a kind change reads it again.
    assert uploader(app).value is None
    app.selectbox(key="kind").set_value("logits").run()
    assert not app.exception and metric(app, "Samples × classes") == "5 × 4"
    as_logits = ld.read_predictions(data, kind="logits")
    expected = float(ld.lensed_cross_entropy(as_logits.logits, as_logits.labels, torch.eye(4)))
    assert loss(metric(app, "Unlensed loss (cross-entropy)")) == pytest.approx(expected, abs=1e-4)
    app.button(key="use_demo").click().run()
    assert metric(app, "Samples × classes") == "2,000 × 10"


def test_labels_uploaded_after_the_predictions(app):
    uploader(app).set_value(("logits.csv", example_bytes("animals_logits_headerless.csv"), "text/csv")).run()
    assert any("labels" in shown(e.value) for e in app.error)  # no label column yet
    uploader(app, "upload_labels").set_value(("labels.csv", example_bytes("animals_labels.csv"), "text/csv")).run()
    assert not app.exception and not app.error
    expected = ld.read_predictions(example_bytes("animals_logits_headerless.csv"), example_bytes("animals_labels.csv"))
    assert metric(app, "Samples × classes") == f"{expected.num_samples:,} × {expected.num_classes}"


def test_bad_upload_shows_an_error_and_keeps_working(app):
    before = metric(app, "Unlensed loss (cross-entropy)")
    uploader(app).set_value(("broken.csv", b"a,b,label\n0.5,x,0\n", "text/csv"))
    app.run()
    assert not app.exception
    messages = " ".join(shown(e.value) for e in app.error)
    assert "broken.csv, row 2, column 2: expected a number, found 'x'" in messages
    assert metric(app, "Unlensed loss (cross-entropy)") == before
    app.selectbox(key="preset").set_value("identity").run()
    assert not app.exception


def test_identity_preset_makes_lensed_equal_unlensed(app):
    app.selectbox(key="preset").set_value("identity").run()
    assert metric(app, "Lensed loss") == metric(app, "Unlensed loss (cross-entropy)")
    assert metric(app, "Prediction-side lensed loss") == metric(app, "Unlensed loss (cross-entropy)")


def test_a_cell_edit_changes_the_lensed_metric(app):
    app.selectbox(key="preset").set_value("identity").run()
    before = metric(app, "Lensed loss")
    app.session_state[app.session_state["lens_grid_key"]] = {
        "edited_rows": {0: {"airplane": 0.5, "bird": 0.5}},
        "added_rows": [],
        "deleted_rows": [],
    }
    app.run()
    assert not app.exception
    assert metric(app, "Lensed loss") != before
    assert app.session_state["lens_current"][0, 2] == 0.5


def test_a_row_not_summing_to_one_is_reported_and_normalise_fixes_it(app):
    app.session_state[app.session_state["lens_grid_key"]] = {
        "edited_rows": {1: {"automobile": 0.9}},
        "added_rows": [],
        "deleted_rows": [],
    }
    app.run()
    assert any("lens row 2" in shown(e.value) and "Normalise rows" in shown(e.value) for e in app.error)
    app.button(key="normalise").click().run()
    assert not app.exception and not app.error
    assert abs(app.session_state["lens_current"][1].sum() - 1) < 1e-9


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_runs(app, preset):
    app.selectbox(key="preset").set_value(preset).run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    assert metric(app, "Lensed loss")


def test_prediction_family_and_tabs(app):
    app.radio(key="family").set_value("prediction").run()
    assert not app.exception
    assert any(m.label == "Target-side (seed) loss" for m in app.metric)
    open_tab(app, "Sanity checks")
    assert any("8 of 8 checks pass" in s.value for s in app.success)
    open_tab(app, "Gradients")
    assert len(app.get("plotly_chart")) == 4  # three class-mean heatmaps and the per-sample one


def test_only_the_open_tab_runs(app):
    results = len(app.get("plotly_chart"))
    assert results == 3 and not any("checks pass" in s.value for s in app.success)  # scatter, histogram, confusion
    open_tab(app, "Playground")
    assert len(app.get("plotly_chart")) == 1 and "unlensed cross-entropy" in {m.label for m in app.metric}


def test_bad_groups_text_shows_which_line(app):
    app.text_area(key="groups").set_value("cat, dog\ncat, unicorn").run()
    assert any("groups, line 2" in shown(e.value) and "unicorn" in shown(e.value) for e in app.error)


def test_lens_import_by_name(app):
    lens = ld.merge_lens(["truck", "automobile"], [["truck", "automobile"]])
    app.file_uploader(key="upload_lens").set_value(("lens.json", ld.lens_to_bytes(lens, "json"), "application/json"))
    app.run()
    assert not app.exception
    current = app.session_state["lens_current"]
    assert current[1, 9] == 0.5 and current[3, 3] == 1.0


def test_playground_shows_the_seed_numbers(app):
    open_tab(app, "Playground")
    values = {m.label: m.value for m in app.metric}
    assert values["unlensed cross-entropy"] == "0.9163"
    assert values["lensed, KL form (seed)"] == "0.3670"


def test_training_lab_runs_with_defaults_and_shows_both_models(app):
    open_tab(app, "Training lab")
    assert any("train both models" in i.value for i in app.info)
    app.button(key="lab_train").click().run()
    assert not app.exception, [e.value for e in app.exception]
    labels = [m.label for m in app.metric]
    assert labels.count("Test accuracy") == 2 and labels.count("Test lens-aware accuracy") == 2
    runs = app.session_state["lab"]["runs"]
    shown = [m.value for m in app.metric if m.label == "Test accuracy"]
    assert shown == [f"{runs[n].final()['test_accuracy']:.1%}" for n in ("unlensed", "lensed")]
    assert len(app.get("plotly_chart")) == 3 + 2 + 2  # curves, decision regions, confusions
    # The lensed model's test predictions become the analysed data.
    app.button(key="lab_send_lensed").click().run()
    open_tab(app, "Results")
    test = app.session_state["lab"]["problem"].y_test
    assert metric(app, "Samples × classes") == f"{len(test):,} × 4"


def test_training_lab_digits_and_a_lens_of_the_wrong_size(app):
    open_tab(app, "Training lab")
    app.radio(key="lab_lens").set_value("the page's lens").run()
    assert any("expected the page's lens over 4 classes, found one over 10" in shown(e.value) for e in app.error)
    app.radio(key="lab_problem").set_value("digits").run()
    assert not app.error  # the demo's 10 classes fit the digits' 10
    app.slider(key="lab_epochs").set_value(5).run()
    app.button(key="lab_train").click().run()
    assert not app.exception
    assert len(app.get("plotly_chart")) == 3 + 2  # no decision regions for 64-dimensional inputs


def test_suggested_groups_can_be_accepted_into_the_merge_preset(app):
    suggested = app.session_state["groups"]
    app.selectbox(key="preset").set_value("identity").run()
    assert any("this lens is the identity" in c.value for c in app.caption)
    app.button(key="accept_groups").click().run()
    assert not app.exception
    assert app.session_state["preset"] == "merge groups" and app.session_state["groups"] == suggested
    frames = [d.value for d in app.dataframe]
    pairs = next(f for f in frames if list(f.columns) == ["true label", "target", "weight"])
    assert set(pairs["weight"]) == {0.5} and {"cat", "dog"} <= set(pairs["true label"])
    assert any(list(f.columns) == ["a", "b", "a→b", "b→a", "mutual"] and len(f) == 8 for f in frames)
