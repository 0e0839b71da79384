"""The report's metrics, hierarchy and comparison: streamed results equal scikit-learn, torchmetrics, statsmodels
and the in-memory library functions on real models' predictions (scikit-learn's digits, tests/models.py)."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from models import DIGITS, digits_lenses
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, top_k_accuracy_score
from statsmodels.stats.contingency_tables import mcnemar
from torchmetrics.classification import MulticlassCalibrationError

import lensdash as ld
from lensdash.analysis import analyze, lens_aware_accuracy
from lensdash.cli import main
from lensdash.compare import comparison_summary, per_class_comparison, top1_correct
from lensdash.metrics import MetricSums
from lensdash.report import COMPARISON_FILES, REPORT_FILES, check_label_count, report
from lensdash.report_folder import MARKER
from lensdash.slices import slice_table

# CIFAR-like two-level structure over the digits: look-alikes share a superclass.
SUPERCLASSES = {"round": ["0", "6", "8", "9"], "straight": ["1", "4", "7"], "curly": ["2", "3", "5"]}


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_predictions):
    """Each model's float32 logits as Parquet (so the reference sees exactly what the stream reads), a lens, a tree."""
    root = tmp_path_factory.mktemp("digits")
    out = {}
    for name, predictions in digits_predictions.items():
        frame = pd.DataFrame(predictions.logits.float().numpy(), columns=list(DIGITS))
        frame["label"] = predictions.labels.numpy()
        frame.to_parquet(root / f"{name}.parquet", row_group_size=128)
        frame.to_csv(root / f"{name}.csv", index=False, float_format="%.9g")  # float32 round-trips with 9 digits
        out[name] = root / f"{name}.parquet"
        out[f"{name}_csv"] = root / f"{name}.csv"
    hierarchy = root / "digits_tree.csv"
    hierarchy.write_text("superclass,class\n" + "".join(f"{s},{c}\n" for s, cs in SUPERCLASSES.items() for c in cs))
    out["hierarchy"] = hierarchy
    out["root"] = root
    return out


def as_read(predictions):
    return predictions.logits.float(), predictions.labels


@pytest.mark.parametrize("model", ["weak", "strong"])
@pytest.mark.parametrize("lens_name", ["identity", "merge", "smoothing", "hierarchy"])
def test_streamed_metrics_equal_sklearn_torchmetrics_and_the_library(files, digits_predictions, model, lens_name):
    logits, labels = as_read(digits_predictions[model])
    lens = digits_lenses()[lens_name]
    result = report(files[model], lens, chunk_rows=100)  # 9 chunks
    s = result.summary()
    y, scores = labels.numpy(), logits.numpy()
    predicted = scores.argmax(axis=1)
    assert s["accuracy"] == pytest.approx(accuracy_score(y, predicted), abs=1e-12)
    assert s["top5_accuracy"] == pytest.approx(top_k_accuracy_score(y, scores, k=5, labels=range(10)), abs=1e-12)
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=range(10), zero_division=0)
    assert s["macro_precision"] == pytest.approx(precision.mean(), abs=1e-12)
    assert s["macro_recall"] == pytest.approx(recall.mean(), abs=1e-12)
    assert s["macro_f1"] == pytest.approx(f1.mean(), abs=1e-12)
    assert s["weighted_f1"] == pytest.approx(np.average(f1, weights=support), abs=1e-12)
    probs = torch.softmax(logits, dim=1)
    for key, norm in (("ece", "l1"), ("mce", "max")):
        want = MulticlassCalibrationError(num_classes=10, n_bins=15, norm=norm)(probs, labels)
        assert s[key] == pytest.approx(float(want), abs=1e-6), key
    table = result.per_class_table()
    np.testing.assert_allclose(table["precision"], precision, atol=1e-12)
    np.testing.assert_allclose(table["recall"], recall, atol=1e-12)
    np.testing.assert_allclose(table["f1"], f1, atol=1e-12)
    assert table["support"].tolist() == support.tolist()
    # The lens-aware numbers and the lensed calibration: as the in-memory library computes them.
    whole = MetricSums.of(logits, labels, lens).summary()
    for key in ("lens_aware_accuracy", "lens_soft_score", "lensed_accuracy", "lensed_ece", "lensed_mce"):
        assert s[key] == pytest.approx(whole[key], abs=1e-12), key
    assert s["lens_aware_accuracy"] == pytest.approx(lens_aware_accuracy(logits, labels, lens), abs=1e-12)
    in_memory = MetricSums.of(logits, labels, lens)
    pd.testing.assert_frame_equal(result.metrics.reliability(lensed=True), in_memory.reliability(lensed=True))
    if lens_name in ("identity", "smoothing"):  # the lens-aware rule is top-1 for these
        assert s["lens_aware_accuracy"] == s["accuracy"]


def test_cli_with_hierarchy_and_compare_writes_every_number(files, digits_predictions, tmp_path, capsys):
    lens_path = tmp_path / "lens.json"
    lens = digits_lenses()["merge"]
    ld.save_lens(lens, lens_path)
    out = tmp_path / "report"
    argv = [
        "report",
        str(files["weak_csv"]),
        "--lens",
        str(lens_path),
        "--hierarchy",
        str(files["hierarchy"]),
        "--compare",
        str(files["strong"]),  # B as Parquet, A as CSV: the chunks differ, the rows are matched
        "--bootstrap-resamples",
        "300",
        "--seed",
        "7",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    assert sorted(os.listdir(out)) == sorted([*REPORT_FILES, *COMPARISON_FILES, MARKER])
    printed = capsys.readouterr().out
    assert "compared with strong.parquet" in printed and "McNemar p" in printed
    summary = json.loads((out / "summary.json").read_text())
    for key in ("accuracy", "top5_accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "ece"):
        assert isinstance(summary[key], float), key
    for key in ("mce", "lens_aware_accuracy", "lens_soft_score", "lensed_ece", "lensed_mce", "lensed_accuracy"):
        assert isinstance(summary[key], float), key
    a_logits, labels = as_read(digits_predictions["weak"])
    b_logits, _ = as_read(digits_predictions["strong"])
    tree = ld.read_hierarchy(files["hierarchy"])
    want = ld.hierarchy_metrics(a_logits, labels, tree, DIGITS)
    assert summary["hierarchy"].keys() == want.keys()
    for key, value in want.items():
        assert summary["hierarchy"][key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    assert summary["hierarchy"]["accuracy@level1"] > summary["accuracy"]  # superclass accuracy
    comparison = json.loads((out / "comparison.json").read_text())
    reference = comparison_summary(a_logits, b_logits, labels, lens, resamples=300, seed=7)
    for key in ("samples", "accuracy_a", "accuracy_b", "a_only_correct", "b_only_correct", "neither_correct"):
        assert comparison[key] == reference[key], key
    for key in ("mcnemar_p", "lensed_loss_diff", "lensed_loss_diff_low", "lensed_loss_diff_high"):
        assert comparison[key] == pytest.approx(reference[key], rel=1e-5, abs=1e-9), key
    for key in ("unlensed_loss_diff", "unlensed_loss_diff_low", "unlensed_loss_diff_high"):
        assert comparison[key] == pytest.approx(reference[key], rel=1e-5, abs=1e-9), key
    table = [[comparison["both_correct"], comparison["a_only_correct"]], [comparison["b_only_correct"], 0]]
    table[1][1] = comparison["neither_correct"]
    assert comparison["mcnemar_p"] == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-9)
    assert comparison["lensed_loss_diff_low"] < comparison["lensed_loss_diff"] < comparison["lensed_loss_diff_high"]
    per_class = pd.read_csv(out / "comparison_per_class.csv")
    lensed = {
        name: ld.lensed_cross_entropy(x, labels, lens, reduction="none")
        for name, x in (("a", a_logits), ("b", b_logits))
    }
    want_table = per_class_comparison(
        labels,
        top1_correct(a_logits, labels),
        top1_correct(b_logits, labels),
        DIGITS,
        lensed_a=lensed["a"],
        lensed_b=lensed["b"],
    )
    want_table["class"] = want_table["class"].astype(int)
    pd.testing.assert_frame_equal(per_class, want_table, rtol=1e-5)
    html = (out / "report.html").read_text()
    for text in (
        "Hierarchical metrics",
        "Confusion by superclass",
        "Reliability",
        "Compared with B",
        "Recall per class",
    ):
        assert text in html, text
    analysis = analyze(a_logits, labels, lens, class_names_=DIGITS)
    assert summary["lensed_loss"] == pytest.approx(analysis.summary()["lensed_loss"], rel=1e-6)


@pytest.mark.parametrize("a_file", ["weak_csv", "weak"])
def test_compare_is_exact_across_chunks_and_shards(files, digits_predictions, a_file):
    """A as CSV (shares cut by bytes: B, Parquet, read from its start and skipped) or Parquet (B read with A's
    shares): added shares equal one pass."""
    lens = digits_lenses()["hierarchy"].matrix
    whole = report(files[a_file], lens, compare=files["strong"], bootstrap_resamples=200, hierarchy=files["hierarchy"])
    parts = [
        report(
            files[a_file],
            lens,
            compare=files["strong"],
            bootstrap_resamples=200,
            hierarchy=files["hierarchy"],
            shard=(rank, 3),
            chunk_rows=50,
        )
        for rank in range(3)
    ]
    assert 0 < parts[0].rows < whole.rows
    combined = parts[0]
    for part in parts[1:]:
        combined.add_(part)
    assert combined.comparison.rows_b == whole.rows == 899
    got, want = combined.comparison.summary(), whole.comparison.summary()
    assert got.keys() == want.keys()
    for key, value in want.items():  # loss sums differ by summation order only; the bootstrap's draws are the same
        assert got[key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), key
    for kind in ("lensed", "unlensed"):  # the per-sample differences do not depend on the chunks: exactly equal
        assert got[f"{kind}_loss_diff_low"] == want[f"{kind}_loss_diff_low"]
        assert got[f"{kind}_loss_diff_high"] == want[f"{kind}_loss_diff_high"]
    for key, value in whole.summary().items():
        if key == "processes":
            continue
        close = isinstance(value, (float, dict))
        assert combined.summary()[key] == (pytest.approx(value, rel=1e-12) if close else value), key
    pd.testing.assert_frame_equal(combined.comparison.per_class_table(DIGITS), whole.comparison.per_class_table(DIGITS))


def test_compare_matches_classes_by_name_and_refuses_other_samples(files, digits_predictions, tmp_path):
    strong = pd.read_parquet(files["strong"])
    shuffled = tmp_path / "shuffled.parquet"
    strong[["label", *reversed(DIGITS)]].to_parquet(shuffled)
    lens = digits_lenses()["merge"]
    plain = report(files["weak"], lens, compare=files["strong"], bootstrap_resamples=50).comparison.summary()
    reordered = report(files["weak"], lens, compare=shuffled, bootstrap_resamples=50).comparison.summary()
    assert {k: v for k, v in plain.items() if k != "source_b"} == {
        k: v for k, v in reordered.items() if k != "source_b"
    }

    def refused(frame, match, name):
        with pytest.raises(ld.InputError, match=match):
            check_label_count(report(files["weak"], lens, compare=_saved(frame, tmp_path / name)))

    moved = strong.copy()
    moved.loc[300, "label"] = 7 if moved.loc[300, "label"] != 7 else 1
    refused(moved, r"row 301: expected the predictions' label", "moved.parquet")
    refused(strong.iloc[:-5], r"expected at least 899 rows \(as many as the predictions\), found 894", "short.parquet")
    refused(
        pd.concat([strong, strong.iloc[:3]]),
        r"expected 899 rows \(as many as the predictions\), found 902",
        "long.parquet",
    )
    renamed = strong.rename(columns={d: f"digit {d}" for d in DIGITS})
    with pytest.raises(ld.InputError, match=r"missing: '0', '1', '2', '3', '4' and 5 more") as caught:
        report(files["weak"], lens, compare=_saved(renamed, tmp_path / "renamed.parquet"))
    assert "'5'" not in str(caught.value)  # at most a few names


def _saved(frame, path):
    frame.to_parquet(path)
    return path


def test_hierarchy_missing_classes_and_slice_by_are_refused_in_one_line(files, tmp_path, capsys):
    partial = tmp_path / "partial.csv"
    partial.write_text("superclass,class\nround,0\nround,6\nstraight,1\n")
    out = str(tmp_path / "out")
    lens = tmp_path / "lens.json"
    ld.save_lens(digits_lenses()["identity"], lens)
    args = ["report", str(files["weak"]), "--lens", str(lens), "--out", out, "--quiet"]
    assert main([*args, "--hierarchy", str(partial)]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "7 of 10 classes are not in the hierarchy: '2', '3', '4', '5', '7' and 2 more" in err
    )
    assert main([*args, "--slice-by", "site"]) == 2
    err = capsys.readouterr().err
    assert "--slice-by: expected a metadata column of the predictions" in err and "found 'site'" in err
    assert main([*args, "--bootstrap-resamples", "-1", "--compare", str(files["strong"])]) == 2
    assert "expected a whole number of bootstrap resamples >= 0, found -1" in capsys.readouterr().err
    assert not os.path.exists(out)


FORMULAS = ['=HYPERLINK("http://x")', "+cmd", "-x", "@a", "<b>plain</b>"]


def test_comparison_csv_is_spreadsheet_safe_and_hierarchy_names_are_escaped(tmp_path):
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 5, (120,), generator=gen)
    for name in ("a", "b"):
        frame = pd.DataFrame(torch.randn(120, 5, generator=gen).numpy(), columns=FORMULAS)
        frame["label"] = [FORMULAS[i] for i in labels.tolist()]
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    tree = {"<script>alert(1)</script>": FORMULAS[:3], "=SUM(A1)": FORMULAS[3:]}
    (tmp_path / "tree.json").write_text(json.dumps(tree))
    ld.save_lens(ld.identity_lens(FORMULAS), tmp_path / "lens.json")
    out = tmp_path / "report"
    argv = ["report", str(tmp_path / "a.csv"), "--lens", str(tmp_path / "lens.json"), "--out", str(out), "--quiet"]
    assert main([*argv, "--compare", str(tmp_path / "b.csv"), "--hierarchy", str(tmp_path / "tree.json")]) == 0
    with open(out / "comparison_per_class.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    names = [row[0] for row in rows[1:]]
    assert names == ["'" + n if n[0] in "=+-@" else n for n in FORMULAS]
    for row in rows:
        for cell in row:
            try:
                float(cell)
            except ValueError:
                assert not cell.startswith(("=", "+", "-", "@")), cell
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html and "<b>plain</b>" not in html
    assert "&lt;b&gt;plain&lt;/b&gt;" in html  # the per-class table shows the name as text


def test_slice_by_a_text_column_equals_slice_table_and_a_pandas_groupby(files, digits_predictions, tmp_path):
    logits, labels = as_read(digits_predictions["weak"])
    frame = pd.read_csv(files["weak_csv"])
    frame["site"] = np.array(["north", "south", "=east"])[np.arange(len(frame)) % 3]
    path = tmp_path / "with_site.csv"
    frame.to_csv(path, index=False, float_format="%.9g")
    lens = digits_lenses()["merge"]
    parts = [report(path, lens, slice_by="site", shard=(rank, 2)) for rank in range(2)]
    parts[0].add_(parts[1])  # shares merged as under torchrun
    got = parts[0].slices.result().table
    analysis = analyze(logits, labels, lens, class_names_=DIGITS)
    want = slice_table(
        pd.Series(frame["site"], name="site"),
        analysis.predicted == labels,
        analysis.lens_hit,
        analysis.unlensed_loss,
        analysis.lensed_loss,
    ).table
    pd.testing.assert_frame_equal(got, want, rtol=1e-6)
    grouped = pd.DataFrame(
        {"site": frame["site"], "correct": (analysis.predicted == labels).numpy(), "loss": analysis.lensed_loss}
    ).groupby("site")
    by_site = got.set_index("slice")
    np.testing.assert_allclose(by_site["accuracy"], grouped["correct"].mean()[by_site.index], rtol=1e-12)
    np.testing.assert_allclose(by_site["lensed_loss"], grouped["loss"].mean()[by_site.index], rtol=1e-5)
    out = tmp_path / "report"
    lens_path = tmp_path / "lens.json"
    ld.save_lens(lens, lens_path)
    assert (
        main(["report", str(path), "--lens", str(lens_path), "--slice-by", "site", "--out", str(out), "--quiet"]) == 0
    )
    written = pd.read_csv(out / "slices.csv")
    assert list(written.columns) == [
        "slice",
        "count",
        "accuracy",
        "lens_aware_accuracy",
        "unlensed_loss",
        "lensed_loss",
    ]
    assert "'=east" in written["slice"].tolist()  # spreadsheet-safe
