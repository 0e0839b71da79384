"""The page, driven through Streamlit's AppTest (no browser)."""

import re
from pathlib import Path

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
    assert loss(metric(app, "Unlensed loss")) == pytest.approx(float(unlensed), abs=1e-4)
    assert loss(metric(app, "Lensed loss")) == pytest.approx(float(lensed), abs=1e-4)
    assert loss(metric(app, "Prediction-side")) == pytest.approx(
        float(ld.prediction_lensed_cross_entropy(preds.logits, preds.labels, lens)), abs=1e-4
    )
    assert metric(app, "Samples × classes") == "2,000 × 10"
    # The demo opens with the identity (a lens the user did not choose would change the numbers unasked); the data's
    # suggested groups are offered beside it.
    assert app.selectbox(key="preset").value == "identity"
    assert metric(app, "Lensed loss") == metric(app, "Unlensed loss")
    assert "cat" in app.session_state["groups"] and "dog" in app.session_state["groups"]
    assert app.button(key="suggest_groups")
    assert not app.error


def test_upload_changes_the_metrics_to_the_files_values(app):
    data = example_bytes("seed_4class.csv")
    uploader(app).set_value(("seed_4class.csv", data, "text/csv"))
    app.run()
    assert not app.exception
    preds = ld.read_predictions(data)
    assert metric(app, "Samples × classes") == "5 × 4"
    expected = float(ld.lensed_cross_entropy(preds.logits, preds.labels, torch.eye(4)))
    assert loss(metric(app, "Unlensed loss")) == pytest.approx(expected, abs=1e-4)
    # The file moved out of the (now empty) uploader; the data stays, and a kind change reads it again.
    assert uploader(app).value is None
    app.selectbox(key="kind").set_value("logits").run()
    assert not app.exception and metric(app, "Samples × classes") == "5 × 4"
    as_logits = ld.read_predictions(data, kind="logits")
    expected = float(ld.lensed_cross_entropy(as_logits.logits, as_logits.labels, torch.eye(4)))
    assert loss(metric(app, "Unlensed loss")) == pytest.approx(expected, abs=1e-4)
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
    before = metric(app, "Unlensed loss")
    uploader(app).set_value(("broken.csv", b"a,b,label\n0.5,x,0\n", "text/csv"))
    app.run()
    assert not app.exception
    messages = " ".join(shown(e.value) for e in app.error)
    assert "broken.csv, row 2, column 2: expected a number, found 'x'" in messages
    assert metric(app, "Unlensed loss") == before
    app.selectbox(key="preset").set_value("identity").run()
    assert not app.exception


def test_identity_preset_makes_lensed_equal_unlensed(app):
    app.selectbox(key="preset").set_value("identity").run()
    assert metric(app, "Lensed loss") == metric(app, "Unlensed loss")
    assert metric(app, "Prediction-side") == metric(app, "Unlensed loss")


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
    assert any(m.label == "Target-side" for m in app.metric)
    open_tab(app, "Sanity checks")
    assert any("8 of 8 checks pass" in s.value for s in app.success)
    open_tab(app, "Gradients")
    assert len(app.get("plotly_chart")) == 4  # three class-mean heatmaps and the per-sample one


def test_only_the_open_tab_runs(app):
    results = len(app.get("plotly_chart"))
    assert results == 2 and not any("checks pass" in s.value for s in app.success)  # scatter, histogram
    app.session_state["confusion_open"] = True  # the confusion matrix is drawn while its expander is open
    app.run()
    assert len(app.get("plotly_chart")) == 3
    open_tab(app, "Playground")
    assert len(app.get("plotly_chart")) == 1 and "unlensed cross-entropy" in {m.label for m in app.metric}


def test_bad_groups_text_shows_which_line(app):
    app.selectbox(key="preset").set_value("merge groups").run()
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
    assert not any("mutual" in d.value.columns for d in app.dataframe)  # the panel is closed: not drawn
    app.session_state["data_lenses_open"] = True  # the lenses-from-data panel is drawn while open
    app.selectbox(key="preset").set_value("identity").run()
    assert any("this lens is the identity" in c.value for c in app.caption)
    app.button(key="accept_groups").click().run()
    assert not app.exception
    assert app.session_state["preset"] == "merge groups" and app.session_state["groups"] == suggested
    frames = [d.value for d in app.dataframe]
    pairs = next(f for f in frames if list(f.columns) == ["true label", "target", "weight"])
    assert set(pairs["weight"]) == {0.5} and {"cat", "dog"} <= set(pairs["true label"])
    assert any(list(f.columns) == ["a", "b", "a→b", "b→a", "mutual"] and len(f) == 8 for f in frames)


# ---------------------------------------------------------------- issue 12: isolation, injection, errors, limits

EVIL_NAMES = ["![x](http://evil.example/a.png)", "<b>bold</b>", ":red[x]", "$x$", "[link](http://x)"]
EVIL_FILE = "![f](http://evil.example/f.png)<i>x</i>.csv"


def new_session(**query):
    at = AppTest.from_file("../app.py", default_timeout=90)
    for name, value in query.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def csv_bytes(names, logits, labels):
    """A predictions CSV (class names quoted as csv writes them) with a label column."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*names, "label"])
    for row, label in zip(logits.tolist(), labels.tolist()):
        writer.writerow([f"{v:.6f}" for v in row] + [label])
    return out.getvalue().encode()


def confused_data(names, n=150, seed=0):
    """Logits over ``names`` whose first two classes are confused half of the time (so a group is suggested)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(names)
    logits = torch.randn(n, len(names), generator=g)
    predicted = labels.clone()
    predicted[(labels < 2) & (torch.arange(n) % 4 < 2)] = 1 - labels[(labels < 2) & (torch.arange(n) % 4 < 2)]
    logits[torch.arange(n), predicted] += 4
    return logits, labels


def upload(at, name, data):
    uploader(at).set_value((name, data, "text/csv"))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def library_numbers(data, lens_of=None):
    preds = ld.read_predictions(data)
    return float(ld.lensed_cross_entropy(preds.logits, preds.labels, torch.eye(preds.num_classes)))


def test_two_sessions_with_different_seeds_see_their_own_training_lab_numbers():
    st.cache_data.clear()
    shown, expected = [], []
    sessions = [new_session(), new_session()]
    for seed, at in enumerate(sessions):
        open_tab(at, "Training lab")
        at.number_input(key="lab_seed").set_value(seed + 1).run()
        at.slider(key="lab_epochs").set_value(5).run()
        at.button(key="lab_train").click().run()
        at.button(key="lab_send_lensed").click().run()
        open_tab(at, "Results")
        run, problem = at.session_state["lab"]["runs"]["lensed"], at.session_state["lab"]["problem"]
        expected.append(float(torch.nn.functional.cross_entropy(run.test_logits.float(), problem.y_test)))
    for at in sessions:  # each session reruns after both trained: a shared cache would now mix them up
        at.run()
        shown.append(loss(metric(at, "Unlensed loss")))
    assert shown == pytest.approx(expected, abs=1e-4)
    assert expected[0] != pytest.approx(expected[1], abs=1e-3)


def test_two_sessions_uploading_different_files_of_the_same_name_see_their_own_numbers():
    st.cache_data.clear()
    names = ["a", "b", "c"]
    files = [csv_bytes(names, *confused_data(names, seed=seed)) for seed in (1, 2)]
    sessions = [upload(new_session(), "same.csv", data) for data in files]
    for at in sessions:
        at.run()
    shown = [loss(metric(at, "Unlensed loss")) for at in sessions]
    assert shown == pytest.approx([library_numbers(d) for d in files], abs=1e-4)
    assert shown[0] != shown[1]


def bodies(at):
    """Every markdown body and label the page drew (what Streamlit renders as markdown)."""
    texts = []
    for kind in ("markdown", "caption", "error", "info", "success", "warning", "subheader", "header", "title", "toast"):
        texts += [e.value for e in at.get(kind)]
    texts += [m.label for m in at.metric]
    for kind in ("button", "selectbox", "radio", "slider", "text_area", "text_input", "toggle", "number_input"):
        texts += [w.label for w in at.get(kind)]
    texts += [str(o) for r in at.radio for o in r.options]
    return texts


def assert_no_live_markup(at, raw_names):
    texts = bodies(at)
    for text in texts:
        for raw in raw_names:
            assert raw not in text, (raw, text)
        # No markdown image/link, HTML tag, LaTeX or colour directive survives unescaped.
        assert not re.search(r"(?<!\\)!(?<!\\)\[|(?<!\\)\]\(|(?<!\\)<[a-z]|(?<!\\):red(?<!\\)\[|(?<!\\)\$x", text), text
    return texts


def test_names_from_files_are_shown_as_text_never_as_markdown():
    from lensdash.sanitize import markdown_text

    at = new_session()
    names = EVIL_NAMES
    upload(at, EVIL_FILE, csv_bytes(names, *confused_data(names)))
    assert metric(at, "Samples × classes") == f"150 × {len(names)}"
    texts = assert_no_live_markup(at, [*names, EVIL_FILE])
    joined = " ".join(texts)
    assert markdown_text(EVIL_FILE) in joined  # the file name is shown, escaped
    assert markdown_text(names[0]) in joined and markdown_text(names[1]) in joined  # in the suggested groups
    assert any(EVIL_FILE in shown(t) for t in texts)  # and reads as the name itself
    # A row that does not sum to 1 names its class in the error: escaped too.
    at.session_state[at.session_state["lens_grid_key"]] = {
        "edited_rows": {0: {names[0]: 0.9}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    assert any(markdown_text(names[0]) in e.value for e in at.error)
    assert_no_live_markup(at, [*names, EVIL_FILE])


def test_an_error_that_quotes_a_file_name_and_a_cell_is_escaped():
    name = "![f](evil.png) <b>bold :red[x] $x$.csv"  # no '/': the reader quotes a file name's last path part
    at = new_session()
    upload(at, name, b"a,b,label\n0.5,[link](http://x),0\n")
    assert at.error
    assert_no_live_markup(at, [name, "[link](http://x)"])
    assert any("[link](http://x)" in shown(e.value) and name in shown(e.value) for e in at.error)


def test_a_class_named_like_the_grids_label_column_and_names_with_commas():
    from lensdash.ui.lens_editor import LABEL_COLUMN

    names = [LABEL_COLUMN, "cat, small", 'say "hi"', "dog"]
    at = new_session()
    upload(at, "odd.csv", csv_bytes(names, *confused_data(names)))
    assert not at.error, [e.value for e in at.error]
    assert metric(at, "Samples × classes") == "150 × 4"
    assert at.session_state["preset"] == "identity"
    at.button(key="suggest_groups").click().run()
    assert at.session_state["preset"] == "merge groups"
    assert '"cat, small"' in at.session_state["groups"]  # the suggested group, with the comma quoted
    current = at.session_state["lens_current"]
    assert current[0, 1] == 0.5 and current[1, 0] == 0.5  # the first two classes merged
    at.text_area(key="groups").set_value('"cat, small", dog\n0, 2').run()
    assert not at.error, [e.value for e in at.error]
    current = at.session_state["lens_current"]
    assert current[1, 3] == 0.5 and current[0, 2] == 0.5 and current[2, 0] == 0.5


def test_an_unexpected_failure_in_a_section_is_a_short_error_that_clears(monkeypatch):
    import lensdash.ui.data
    import lensdash.ui.results

    at = new_session()
    names = ["a", "b", "c"]
    good = csv_bytes(names, *confused_data(names))
    upload(at, "good.csv", good)
    before = metric(at, "Unlensed loss")

    def broken(*args, **kwargs):
        raise EOFError("internal detail that users should not see")

    monkeypatch.setattr(lensdash.ui.data, "read_predictions", broken)
    monkeypatch.setattr(lensdash.ui.results, "tables_section", broken)
    upload(at, "other.csv", csv_bytes(names, *confused_data(names, seed=5)))
    messages = [shown(e.value) for e in at.error]
    assert any("The data section could not be drawn (EOFError)" in m for m in messages), messages
    assert any("The results section could not be drawn (EOFError)" in m for m in messages), messages
    assert not any("internal detail" in m for m in messages)
    assert metric(at, "Unlensed loss") == before  # the last good data is kept
    monkeypatch.undo()
    at.selectbox(key="preset").set_value("identity").run()
    assert not at.exception and not at.error, [e.value for e in at.error]


@pytest.mark.parametrize(
    "link, expected",
    [
        ("1,0;0,1", "expected a 10×10 lens for the 10 classes of this data, found 2 rows of 2 numbers"),
        ("1,0;0,x", "expected rows of comma-separated numbers separated by ';'"),
        (";".join(["0.5," * 9 + "0.5"] * 10), "lens row 1"),
        ("1," * 3000, "at most 2,000 characters"),
    ],
    ids=["wrong size", "not numbers", "rows not summing to one", "too long"],
)
def test_a_bad_share_link_says_why(link, expected):
    at = new_session(lens=link)
    messages = [shown(e.value) for e in at.error]
    assert any("the lens in the page link" in m and expected in m for m in messages), messages
    assert any("Using the 'identity' preset instead" in m for m in messages)
    assert metric(at, "Lensed loss")  # the page works with the preset


def test_a_good_share_link_sets_the_lens():
    eye = torch.eye(10)
    eye[0] = torch.tensor([0.5, 0.5] + [0.0] * 8)
    link = ";".join(",".join(f"{v:g}" for v in row) for row in eye.tolist())
    at = new_session(lens=link, preset="identity")
    assert not at.error
    assert any("loaded from the page link" in i.value for i in at.info)
    assert at.session_state["lens_current"][0, 1] == 0.5


def test_an_upload_over_the_limit_says_why_and_points_to_the_command_line(monkeypatch):
    import lensdash.ui.data

    monkeypatch.setattr(lensdash.ui.data, "max_upload_bytes", lambda: 100)
    at = new_session()
    upload(at, "big.csv", example_bytes("animals_10class.csv"))
    messages = " ".join(shown(e.value) for e in at.error)
    assert "at most" in messages and "python -m lensdash report" in messages


def test_the_upload_limit_is_streamlits_option():
    from lensdash.ui.config import max_upload_bytes

    assert max_upload_bytes() == st.get_option("server.maxUploadSize") * 1_000_000
    config = (Path(__file__).parents[1] / ".streamlit" / "config.toml").read_text()
    assert "maxUploadSize = 400" in config and "MAX_UPLOAD_MB" not in config


def test_reader_limits_are_passed_where_the_reader_takes_them():
    from lensdash.ui.config import APP_MAX_CELLS, APP_MAX_CLASSES, reader_limits

    def with_budget(source, *, max_cells=None, max_classes=None): ...

    def without(source, *, max_bytes=None): ...

    assert reader_limits(with_budget) == {"max_cells": APP_MAX_CELLS, "max_classes": APP_MAX_CLASSES}
    assert reader_limits(without) == {}
    assert APP_MAX_CELLS >= 50_000 * 1_000 and APP_MAX_CLASSES >= 1_000


def test_every_cache_is_bounded_and_keyed_without_underscore_arguments():
    import ast

    ui = Path(__file__).parents[1] / "lensdash" / "ui"
    cached = 0
    for path in sorted(ui.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and ast.unparse(deco.func) in ("st.cache_data", "st.cache_resource"):
                    cached += 1
                    keywords = {k.arg for k in deco.keywords}
                    assert {"max_entries", "ttl"} <= keywords, (path.name, node.name)
                    assert not [a.arg for a in node.args.args if a.arg.startswith("_")], (path.name, node.name)
                elif ast.unparse(deco) in ("st.cache_data", "st.cache_resource"):
                    raise AssertionError(f"unbounded cache: {path.name}:{node.name}")
    assert cached >= 2


def test_session_results_are_bounded_keyed_by_content_and_kept_in_the_session_store(monkeypatch):
    from lensdash.ui import cache, state

    held = {}
    monkeypatch.setattr(state, "_held", lambda: held)
    calls = []
    for key in ("a", "b", "a", "c", "d", "e"):
        cache.session_memo("analysis", key, lambda key=key: calls.append(key) or key.upper())
    assert calls == ["a", "b", "c", "d", "e"]  # "a" came from the memo the second time
    assert list(held[state.MEMO]["analysis"]) == ["c", "d", "e"][-cache.MEMO_ENTRIES :]
    cache.clear_session_memo()
    assert state.MEMO not in held
    assert state.DATA in state.HELD and state.SOURCES in state.HELD  # the data leaves with the session


def test_csv_downloads_are_spreadsheet_safe_and_numbers_unchanged():
    import io

    import pandas as pd

    from lensdash.analysis import analyze, per_sample_table
    from lensdash.examples import EXAMPLES
    from lensdash.ui.data import example_download
    from lensdash.ui.downloads import frame_csv, lens_csv

    names = ['=HYPERLINK("http://x")', "+cmd", "-1+2", "@SUM(A1)", "cat"]
    logits, labels = confused_data(names)
    lens = ld.smoothing_lens(names, 0.1)
    table = per_sample_table(analyze(logits, labels, lens, class_names_=tuple(names)))
    written = pd.read_csv(io.BytesIO(frame_csv(table)))
    text_columns = [c for c in table.columns if table[c].dtype in (object, "category")]
    assert text_columns
    for column in text_columns:
        assert not written[column].astype(str).str.match(r"^[=+\-@\t\r]").any()
    numeric = [c for c in table.columns if c not in text_columns]
    pd.testing.assert_frame_equal(written[numeric], table[numeric].reset_index(drop=True), check_dtype=False)
    exported = lens_csv(lens).decode()
    assert "'=HYPERLINK" in exported and "'+cmd" in exported and "\n=" not in exported and ",=" not in exported
    plain = ld.Lens(lens.matrix, ["a", "b", "c", "d", "e"])
    back, _ = ld.read_lens(lens_csv(plain), ["a", "b", "c", "d", "e"])
    torch.testing.assert_close(back.matrix.double(), plain.matrix.double())
    for name in EXAMPLES:  # the shipped examples are already safe: offered as they are
        assert example_download(name) == example_bytes(name)
