"""The Compare and Slices tabs and shared views, driven through Streamlit's AppTest on real models' predictions.

Model A is scikit-learn's logistic regression on its digits data, model B Gaussian naive Bayes (tests/models.py);
every number the page shows is checked against the library computed independently on the same files.
"""

from __future__ import annotations

import csv
import io
import os
import threading

import numpy as np
import pandas as pd
import pytest
import streamlit as st
import torch
from models import DIGITS, digits_lenses
from streamlit.testing.v1 import AppTest

import lensdash as ld
from lensdash.compare import comparison_summary
from lensdash.share_store import ShareStore, default_engine

pytestmark = pytest.mark.filterwarnings("ignore")


# ------------------------------------------------------------------ helpers


def predictions_csv(logits, labels, *, extra: dict | None = None, order=None) -> bytes:
    """A predictions CSV (class columns "0".."9", a label column and ``extra`` columns), rows in ``order``."""
    order = np.arange(len(labels)) if order is None else np.asarray(order)
    extra = extra or {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*DIGITS, "label", *extra])
    for i in order:
        writer.writerow([repr(float(v)) for v in logits[i].tolist()] + [int(labels[i])] + [extra[c][i] for c in extra])
    return out.getvalue().encode()


@pytest.fixture
def share_url(tmp_path, monkeypatch):
    """The app's share store in a fresh SQLite file."""
    import lensdash.ui.share

    url = f"sqlite:///{tmp_path / 'share.sqlite'}"
    monkeypatch.setattr(lensdash.ui.share, "DEFAULT_URL", url)
    return url


def new_session(**query) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=90)
    for name, value in query.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def ok(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def uploader(at, name):
    return at.file_uploader(key=f"{name}_{at.session_state['upload_version']}")


def upload(at, data, name="a.csv", key="upload_predictions"):
    uploader(at, key).set_value((name, data, "text/csv"))
    return ok(at)


def open_tab(at, label):
    at.session_state["view"] = label
    return ok(at)


#: A column that tells each of the page's tables apart (st.dataframe keys do not reach AppTest).
TABLES = {
    "compare_tests": "mcnemar_p",
    "compare_headline": "B − A",
    "compare_per_class": "recall_diff",
    "compare_disagreements": "predicted_b",
    "slice_table": "slice",
    "per_sample_table": "lens_mass",
}


def dataframe(at, key) -> pd.DataFrame:
    found = [d.value for d in at.dataframe if TABLES[key] in d.value.columns]
    assert len(found) == 1, f"{len(found)} tables {key}"
    return found[0]


def errors(at) -> list[str]:
    return [e.value for e in at.error]


@pytest.fixture(scope="module")
def digits(digits_predictions):
    strong, weak = digits_predictions["strong"], digits_predictions["weak"]
    return strong.logits.float(), weak.logits.float(), strong.labels


def read(data: bytes):
    return ld.read_predictions(data, kind="logits")


def expected_summary(data_a: bytes, data_b: bytes, lens, family="target"):
    a, b = read(data_a), read(data_b)
    return comparison_summary(a.logits, b.logits, a.labels, lens, family=family, resamples=1000, seed=0)


def compare_page(at, data_a, data_b):
    upload(at, data_a, "strong.csv")
    upload(at, data_b, "weak.csv", key="upload_model_b")
    return open_tab(at, "Compare")


# ------------------------------------------------------------------ compare


def check_comparison(at, expected, lens):
    tests = dataframe(at, "compare_tests").set_index("correct means")
    top1 = tests.loc["top-1"]
    assert top1["accuracy_a"] == pytest.approx(expected["accuracy_a"])
    assert top1["accuracy_b"] == pytest.approx(expected["accuracy_b"])
    assert (top1["a_only_correct"], top1["b_only_correct"]) == (expected["a_only_correct"], expected["b_only_correct"])
    assert top1["mcnemar_p"] == pytest.approx(expected["mcnemar_p"], rel=1e-9)
    headline = dataframe(at, "compare_headline").set_index("metric")
    lensed = headline.loc["lensed loss (target-side)"]
    assert lensed["A"] == pytest.approx(expected["lensed_loss_a"], rel=1e-5)
    assert lensed["B"] == pytest.approx(expected["lensed_loss_b"], rel=1e-5)
    assert lensed["B − A"] == pytest.approx(expected["lensed_loss_diff"], rel=1e-5)
    unlensed = headline.loc["unlensed loss (cross-entropy)"]
    assert unlensed["B − A"] == pytest.approx(expected["unlensed_loss_diff"], rel=1e-5)
    metrics = {m.label: float(m.value) for m in at.metric if "interval" in m.label or "B − A" in m.label}
    assert metrics["Mean lensed loss, B − A"] == pytest.approx(expected["lensed_loss_diff"], abs=1e-4)
    assert metrics["95% interval, low"] == pytest.approx(expected["lensed_loss_diff_low"], abs=1e-4)
    assert metrics["95% interval, high"] == pytest.approx(expected["lensed_loss_diff_high"], abs=1e-4)


def test_second_model_by_row_order_shows_the_librarys_comparison(digits):
    logits_a, logits_b, labels = digits
    data_a, data_b = predictions_csv(logits_a, labels), predictions_csv(logits_b, labels)
    at = compare_page(new_session(), data_a, data_b)
    assert not errors(at)
    assert any("by row order" in c.value for c in at.caption)
    lens = ld.Lens(at.session_state["lens_current"], DIGITS)
    expected = expected_summary(data_a, data_b, lens)
    assert expected["a_only_correct"] > 0 and expected["b_only_correct"] > 0  # a real comparison, not all zeros
    check_comparison(at, expected, lens)
    # the lens-aware row follows the library's rule (lens_hits) on both models
    a, b = read(data_a), read(data_b)
    hits = ld.analysis.lens_hits(lens)
    hit_a, hit_b = hits[a.labels, a.logits.argmax(1)], hits[b.labels, b.logits.argmax(1)]
    aware = dataframe(at, "compare_tests").set_index("correct means").loc["lens-aware"]
    assert aware["a_only_correct"] == int((hit_a & ~hit_b).sum())
    assert aware["b_only_correct"] == int((~hit_a & hit_b).sum())
    # per class and disagreements: the library's tables
    per_class = dataframe(at, "compare_per_class")
    assert per_class["recall_diff"].to_numpy() == pytest.approx(
        ld.compare.per_class_comparison(
            a.labels, a.logits.argmax(1) == a.labels, b.logits.argmax(1) == b.labels, DIGITS
        )["recall_diff"].to_numpy()
    )
    disagree = dataframe(at, "compare_disagreements")
    assert set(disagree["sample"]) == set(torch.nonzero(a.logits.argmax(1) != b.logits.argmax(1)).flatten().tolist())


def test_comparison_follows_the_lens_and_the_family(digits):
    logits_a, logits_b, labels = digits
    data_a, data_b = predictions_csv(logits_a, labels), predictions_csv(logits_b, labels)
    at = compare_page(new_session(), data_a, data_b)
    merge = digits_lenses()["merge"]
    at.session_state["family"] = "prediction"
    ok(at)
    at.session_state["lens_base"] = merge.matrix.numpy()
    at.session_state["lens_version"] = at.session_state["lens_version"] + 1
    ok(at)
    np.testing.assert_allclose(lens_of(at), merge.matrix.numpy(), atol=1e-7)
    lens = ld.Lens(at.session_state["lens_current"], DIGITS)
    expected = expected_summary(data_a, data_b, lens, family="prediction")
    headline = dataframe(at, "compare_headline").set_index("metric")
    assert headline.loc["lensed loss (prediction-side)", "B − A"] == pytest.approx(
        expected["lensed_loss_diff"], rel=1e-5
    )


def test_mismatched_files_are_refused_with_the_reason(digits):
    logits_a, logits_b, labels = digits
    at = new_session()
    upload(at, predictions_csv(logits_a, labels), "strong.csv")
    upload(at, predictions_csv(logits_b, labels, order=np.arange(len(labels) - 3)), "short.csv", "upload_model_b")
    open_tab(at, "Compare")
    messages = errors(at)
    assert any("cannot be compared" in m and "the same number of samples in A and B" in m for m in messages), messages
    assert any("does not pair" in e.value and "896 in B" in e.value for e in at.sidebar.error)  # seen on any tab
    assert not [d for d in at.dataframe if "mcnemar_p" in d.value.columns]
    # labels that differ at the same row: refused too, and the rest of the page keeps working
    shifted = predictions_csv(logits_b, labels.roll(1))
    upload(at, shifted, "shifted.csv", "upload_model_b")
    messages = errors(at)
    assert any("the same true label for each paired sample" in m for m in messages), messages
    assert any(m.label == "Lensed loss" for m in at.metric)


def test_without_a_second_model_the_tab_says_how(digits):
    at = open_tab(new_session(), "Compare")
    assert any("Compare with another model" in i.value for i in at.info)


# ------------------------------------------------------------------ share


def lens_of(at) -> np.ndarray:
    return np.asarray(at.session_state["lens_current"], dtype=float)


def test_a_shared_view_reopens_in_another_session(share_url):
    st.cache_data.clear()
    first = new_session()
    first.session_state["family"] = "prediction"
    ok(first)
    first.selectbox(key="preset").set_value("label smoothing")
    ok(first)
    first.slider(key="epsilon").set_value(0.3)
    ok(first)
    open_tab(first, "Sanity checks")
    first.button(key="share_view").click()
    ok(first)
    share_id = first.session_state["share_link"]
    assert len(share_id) == 22 and share_id in str(first.query_params["view"])
    assert any(share_id in c.value for c in first.sidebar.code)
    shared = lens_of(first)

    second = new_session(view=share_id)
    assert not errors(second)
    assert any("Opened the shared view" in i.value for i in second.info)
    np.testing.assert_allclose(lens_of(second), shared)
    assert second.session_state["family"] == "prediction"
    assert second.session_state["preset"] == "label smoothing"
    assert second.session_state["epsilon"] == 0.3
    assert second.session_state["view"] == "Sanity checks"
    # what is stored is the lens and settings, never the data
    view = ShareStore(default_engine(share_url)).load(share_id)
    assert set(view.settings) <= {"family", "preset", "view", "groups", "epsilon", "beta", "alpha", "confusion_kind"}


@pytest.mark.parametrize(
    "share_id, expected",
    [("not-an-id", "a share id of 22 letters"), ("A" * 22, "no view saved as")],
    ids=["malformed", "unknown"],
)
def test_an_unknown_or_malformed_view_is_a_message_and_the_page_works(share_url, share_id, expected):
    at = new_session(view=share_id)
    assert any("could not be opened" in e and expected in e for e in map(str, errors(at))), errors(at)
    assert any(m.label == "Lensed loss" for m in at.metric)
    assert "view" not in at.query_params  # the link no longer names it
    open_tab(at, "Results")  # and it stays usable, the message said once
    assert any(m.label == "Lensed loss" for m in at.metric) and not errors(at)


def test_a_view_of_other_classes_waits_for_matching_data(share_url, digits):
    logits_a, _, labels = digits
    lens = digits_lenses()["merge"]
    share_id = ShareStore(default_engine(share_url)).save(lens, {"family": "target", "preset": "merge groups"})
    at = new_session(view=share_id)  # the demo data has other classes
    assert any("Upload the predictions it was made for" in w.value for w in at.warning)
    upload(at, predictions_csv(logits_a, labels), "digits.csv")
    assert any("Opened the shared view" in i.value for i in at.info)
    np.testing.assert_allclose(lens_of(at), lens.matrix.numpy(), atol=1e-7)
    ok(at)
    assert not at.warning


def test_concurrent_saves_from_two_sessions(share_url):
    sessions = [new_session(), new_session()]
    sessions[1].selectbox(key="preset").set_value("label smoothing")  # the page opens on the identity
    ok(sessions[1])
    lenses = [lens_of(at) for at in sessions]
    assert not np.allclose(lenses[0], lenses[1])
    ids: dict[int, list[str]] = {0: [], 1: []}
    failures: list[BaseException] = []

    def save(i: int) -> None:
        # each thread is one server process: its own engine on the same file, writing at the same time
        from lensdash.ui.data import demo_predictions

        names = demo_predictions().class_names
        store = ShareStore(default_engine(share_url))
        try:
            for _ in range(10):
                ids[i].append(store.save(ld.Lens(lenses[i], names), {"family": "target"}))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=save, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for at in sessions:  # and the app saves meanwhile, through st.connection
        at.button(key="share_view").click()
        ok(at)
    for t in threads:
        t.join()
    assert not failures
    app_ids = [at.session_state["share_link"] for at in sessions]
    assert len(set(ids[0] + ids[1] + app_ids)) == 22
    for i in range(2):
        np.testing.assert_allclose(lens_of(new_session(view=app_ids[i])), lenses[i], atol=1e-7)
    assert ShareStore(default_engine(share_url)).usage()[0] == 22


def test_a_connection_in_the_secrets_file_is_used(tmp_path):
    """Hosted: [connections.lensdash_share] in .streamlit/secrets.toml (read from the working directory) is the store.

    Run in a subprocess, since Streamlit reads the secrets file of the process's working directory once.
    """
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / ".streamlit").mkdir()
    store = tmp_path / "hosted.sqlite"
    (tmp_path / ".streamlit" / "secrets.toml").write_text(f'[connections.lensdash_share]\nurl = "sqlite:///{store}"\n')
    script = (
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({str(root / 'app.py')!r}, default_timeout=90)\n"
        "at.run(); at.button(key='share_view').click(); at.run()\n"
        "assert not at.exception and not at.sidebar.error\n"
        "print(at.session_state['share_link'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    share_id = out.stdout.strip().splitlines()[-1]
    assert ShareStore(default_engine(f"sqlite:///{store}")).load(share_id).lens.num_classes == 10
    assert not (tmp_path / "lensdash_share.sqlite").exists()  # not the default file


# ------------------------------------------------------------------ metadata: slices, ids, per-sample table


@pytest.fixture
def with_metadata(monkeypatch):
    """Uploads get ``Predictions.metadata`` from this dict (by file name), whatever the reader keeps aside itself."""
    import lensdash.ui.data

    by_name: dict[str, pd.DataFrame] = {}
    parse = lensdash.ui.data._parse

    def parse_with_metadata(upload, labels, kind, meta_columns=None):
        predictions = parse(upload, labels, kind, meta_columns)
        if upload.name in by_name:
            predictions.metadata = by_name[upload.name]
        return predictions

    monkeypatch.setattr(lensdash.ui.data, "_parse", parse_with_metadata)
    return by_name


def sites(n: int) -> pd.Series:
    """A site per sample, unevenly spread, with a name a spreadsheet would run as a formula."""
    rng = np.random.default_rng(1)
    return pd.Series(rng.choice(["north", "south", "=cmd|' /C calc'!A0", "east"], size=n, p=[0.4, 0.3, 0.2, 0.1]))


def test_slices_table_equals_the_librarys_slice_table(digits, with_metadata):
    from lensdash.analysis import lens_hits
    from lensdash.slices import slice_table

    logits_a, _, labels = digits
    n = len(labels)
    metadata = pd.DataFrame({"site": sites(n), "id": np.arange(1000, 1000 + n)})
    with_metadata["strong.csv"] = metadata
    data = predictions_csv(logits_a, labels)
    at = upload(new_session(), data, "strong.csv")
    open_tab(at, "Slices")
    assert at.selectbox(key="slice_column").options == ["site", "id"]
    lens = ld.Lens(at.session_state["lens_current"], DIGITS)
    preds = read(data)
    predicted = preds.logits.argmax(1)
    expected = slice_table(
        metadata["site"],
        predicted == preds.labels,
        lens_hits(lens)[preds.labels, predicted],
        torch.nn.functional.cross_entropy(preds.logits, preds.labels, reduction="none"),
        ld.lensed_cross_entropy(preds.logits, preds.labels, lens, reduction="none"),
        column="site",
    ).table
    shown = dataframe(at, "slice_table")
    pd.testing.assert_frame_equal(shown, expected, check_exact=False, rtol=1e-5)
    # and against a pandas groupby of the same per-sample numbers
    counts = metadata.groupby("site").size()
    assert dict(zip(shown["slice"], shown["count"])) == counts.to_dict()
    # a numeric column: quantile bins, said in a caption
    at.selectbox(key="slice_column").set_value("id")
    ok(at)
    assert len(dataframe(at, "slice_table")) == 10
    assert any("quantile bins" in c.value for c in at.caption)


def test_without_metadata_the_slices_tab_says_how_to_get_it():
    at = open_tab(new_session(), "Slices")
    assert any("meta_columns=" in i.value and "--meta-columns" in i.value for i in at.info)


def test_second_model_paired_by_shuffled_ids(digits, with_metadata):
    logits_a, logits_b, labels = digits
    n = len(labels)
    ids = np.array([f"img_{i:04d}.png" for i in np.random.default_rng(2).permutation(n)])
    shuffle = np.random.default_rng(3).permutation(n)
    with_metadata["strong.csv"] = pd.DataFrame({"filename": ids, "site": sites(n)})
    with_metadata["weak_shuffled.csv"] = pd.DataFrame({"FileName": ids[shuffle]})
    data_a = predictions_csv(logits_a, labels)
    at = new_session()
    upload(at, data_a, "strong.csv")
    upload(at, predictions_csv(logits_b, labels, order=shuffle), "weak_shuffled.csv", "upload_model_b")
    open_tab(at, "Compare")
    assert not errors(at)
    assert any("by id" in c.value and "filename" in c.value for c in at.caption)
    lens = ld.Lens(at.session_state["lens_current"], DIGITS)
    check_comparison(at, expected_summary(data_a, predictions_csv(logits_b, labels), lens), lens)
    disagree = dataframe(at, "compare_disagreements")
    assert list(disagree.columns[:3]) == ["sample", "filename", "site"]
    assert (disagree["filename"].to_numpy() == ids[disagree["sample"].to_numpy()]).all()


def test_ids_found_in_one_file_only_are_refused(digits, with_metadata):
    logits_a, logits_b, labels = digits
    n = len(labels)
    with_metadata["a.csv"] = pd.DataFrame({"id": np.arange(n)})
    with_metadata["b.csv"] = pd.DataFrame({"id": np.arange(n) + 5})
    at = new_session()
    upload(at, predictions_csv(logits_a, labels), "a.csv")
    upload(at, predictions_csv(logits_b, labels), "b.csv", "upload_model_b")
    open_tab(at, "Compare")
    assert any("5 ids only in A" in e and "5 only in B" in e for e in errors(at)), errors(at)


def test_metadata_beside_the_per_sample_table_and_its_download_is_spreadsheet_safe(digits, with_metadata):
    logits_a, _, labels = digits
    metadata = pd.DataFrame({"site": sites(len(labels)), "label": np.arange(len(labels))})  # a name the table uses
    with_metadata["strong.csv"] = metadata
    at = upload(new_session(), predictions_csv(logits_a, labels), "strong.csv")
    open_tab(at, "Results")
    table = dataframe(at, "per_sample_table")
    assert list(table.columns[:4]) == ["sample", "site", "label (metadata)", "label"]
    assert (table["site"].to_numpy() == metadata["site"].to_numpy()[table["sample"].to_numpy()]).all()

    from lensdash.analysis import analyze, per_sample_table
    from lensdash.ui.downloads import frame_csv

    preds = read(predictions_csv(logits_a, labels))
    written = pd.read_csv(
        io.BytesIO(frame_csv(per_sample_table(analyze(preds.logits, preds.labels, ld.identity_lens(DIGITS)), metadata)))
    )
    assert not written["site"].str.match(r"^[=+\-@]").any()
    assert (written["label (metadata)"].to_numpy() == metadata["label"].to_numpy()).all()  # numbers unchanged


def test_metadata_beside_the_samples_of_a_clicked_confusion_cell(digits, with_metadata):
    logits_a, _, labels = digits
    metadata = pd.DataFrame({"site": sites(len(labels)), "id": np.arange(len(labels)) + 500})
    with_metadata["strong.csv"] = metadata
    at = upload(new_session(), predictions_csv(logits_a, labels), "strong.csv")
    open_tab(at, "Evaluation")
    at.selectbox(key="eval_true").set_value(3)
    at.selectbox(key="eval_predicted").set_value(3)  # the diagonal: many samples
    ok(at)
    found = [d.value for d in at.dataframe if "site" in d.value.columns and "lens_mass" in d.value.columns]
    assert len(found) == 1
    rows = found[0]
    assert len(rows) == int((labels == 3).logical_and(logits_a.argmax(1) == 3).sum())
    assert list(rows.columns[:3]) == ["sample", "site", "id"]
    samples = rows["sample"].to_numpy()
    assert (rows["site"].to_numpy() == metadata["site"].to_numpy()[samples]).all()
    assert (rows["id"].to_numpy() == samples + 500).all()


def test_settings_of_a_view_that_do_not_fit_are_ignored_and_the_lens_still_opens(share_url):
    from lensdash.ui.data import demo_predictions

    names = demo_predictions().class_names
    lens = ld.smoothing_lens(names, 0.2)
    settings = {"family": "bogus", "preset": "nope", "view": "Nope", "epsilon": 1, "beta": 99, "groups": "x" * 9000}
    share_id = ShareStore(default_engine(share_url)).save(lens, settings)
    at = new_session(view=share_id)
    assert not errors(at)
    np.testing.assert_allclose(lens_of(at), lens.matrix.numpy(), atol=1e-7)
    assert at.session_state["family"] == "target" and at.session_state["preset"] == "merge groups"
    assert at.session_state["epsilon"] == 1.0 and isinstance(at.session_state["epsilon"], float)
    assert at.session_state["beta"] != 99 and at.session_state["groups"] != "x" * 9000
    at.selectbox(key="preset").set_value("label smoothing")
    ok(at)
    assert any(m.label == "Lensed loss" for m in at.metric)


def test_sharing_the_same_view_twice_keeps_its_id(share_url):
    at = new_session()
    at.button(key="share_view").click()
    first = ok(at).session_state["share_link"]
    at.button(key="share_view").click()
    assert ok(at).session_state["share_link"] == first
    at.session_state["family"] = "prediction"
    ok(at)
    at.button(key="share_view").click()
    assert ok(at).session_state["share_link"] != first  # another view, another id
    assert ShareStore(default_engine(share_url)).usage()[0] == 2


def test_real_files_with_metadata_columns_pair_by_id_and_slice(digits):
    """End to end through the reader: a text `filename` and `site` column kept aside, B's rows shuffled."""
    from lensdash.slices import PAIRED_COLUMNS, slice_table

    logits_a, logits_b, labels = digits
    n = len(labels)
    names = np.array([f"img_{i:04d}.png" for i in range(n)])
    site = sites(n).to_numpy()
    shuffle = np.random.default_rng(4).permutation(n)
    data_a = predictions_csv(logits_a, labels, extra={"filename": names, "site": site})
    data_b = predictions_csv(logits_b, labels, extra={"filename": names}, order=shuffle)
    at = compare_page(new_session(), data_a, data_b)
    assert not errors(at)
    assert any("by id" in c.value for c in at.caption)
    lens = ld.Lens(at.session_state["lens_current"], DIGITS)
    a = ld.read_predictions(data_a, kind="logits")
    assert list(a.metadata.columns) == ["filename", "site"]
    check_comparison(at, expected_summary(data_a, predictions_csv(logits_b, labels), lens), lens)
    open_tab(at, "Slices")
    at.selectbox(key="slice_column").set_value("site")
    ok(at)
    analysis = ld.analysis.analyze(a.logits, a.labels, lens)
    b = ld.read_predictions(predictions_csv(logits_b, labels), kind="logits")  # B in A's order
    analysis_b = ld.analysis.analyze(b.logits, b.labels, lens)
    expected = slice_table(
        a.metadata["site"],
        analysis.predicted == analysis.labels,
        analysis.lens_hit,
        analysis.unlensed_loss,
        analysis.lensed_loss,
        column="site",
        model_b=(
            analysis_b.predicted == b.labels,
            analysis_b.lens_hit,
            analysis_b.unlensed_loss,
            analysis_b.lensed_loss,
        ),
    ).table
    shown = dataframe(at, "slice_table")
    assert list(shown.columns) == list(PAIRED_COLUMNS)  # A, B and B − A side by side
    pd.testing.assert_frame_equal(shown, expected, check_exact=False, rtol=1e-5)
    # against a pandas groupby of each model's correctness, by site
    frame = pd.DataFrame({"site": site, "a": (analysis.predicted == a.labels).numpy()})
    frame["b"] = (analysis_b.predicted == b.labels).numpy()
    by_site = frame.groupby("site").mean()
    got = shown.set_index("slice").loc[by_site.index]
    np.testing.assert_allclose(got["accuracy_a"], by_site["a"], rtol=1e-12)
    np.testing.assert_allclose(got["accuracy_b"], by_site["b"], rtol=1e-12)
    np.testing.assert_allclose(got["accuracy_diff"], by_site["b"] - by_site["a"], atol=1e-12)
    assert any("Model B (Compare tab) on the same slices" in c.value for c in at.caption)


def sidebar_captions(at) -> list[str]:
    return [c.value.replace("\\", "") for c in at.sidebar.caption]  # as read, without markdown's escapes


def test_numeric_metadata_columns_named_in_the_sidebar_re_read_both_models(digits):
    """A numeric `fold` column is read as scores until it is named; then both files are read again without it."""
    logits_a, logits_b, labels = digits
    fold = np.arange(len(labels)) % 5
    data_a = predictions_csv(logits_a, labels, extra={"fold": fold})
    data_b = predictions_csv(logits_b, labels, extra={"fold": fold})
    at = compare_page(new_session(), data_a, data_b)
    assert any("Model B" in c and "× 11 classes" in c for c in sidebar_captions(at))  # 'fold' taken for a class
    at.text_input(key="meta_columns").set_value(" fold ")
    ok(at)
    assert not errors(at)
    captions = sidebar_captions(at)
    assert any(c.startswith("**strong.csv**") and "× 10 classes" in c for c in captions), captions
    assert any("Model B" in c and "× 10 classes" in c for c in captions), captions  # B read again, same setting
    assert any("Kept aside as metadata (not scores): 'fold'" in c for c in captions), captions
    assert any("Model B: kept aside as metadata (not scores): 'fold'" in c for c in captions), captions
    lens = ld.Lens(at.session_state["lens_current"], DIGITS)
    check_comparison(
        at, expected_summary(predictions_csv(logits_a, labels), predictions_csv(logits_b, labels), lens), lens
    )
    open_tab(at, "Slices")
    assert at.selectbox(key="slice_column").options == ["fold"]
    shown = dataframe(at, "slice_table")
    assert shown["slice"].tolist() == ["0", "1", "2", "3", "4"] and shown["count"].sum() == len(labels)
    # the kind changes: B is read again too (from the kept file, the uploader is empty)
    at.selectbox(key="kind").set_value("logits")
    ok(at)
    assert at.session_state["data_b_key"].endswith(":logits:fold")
    # a name that is not a column: the reason is shown, the last good data stays
    at.text_input(key="meta_columns").set_value("nope")
    ok(at)
    assert any("nope" in e for e in errors(at))
    assert any(c.startswith("**strong.csv**") and "× 10 classes" in c for c in sidebar_captions(at))
