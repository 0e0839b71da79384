"""The report's ``--compare B``: rows paired by an id column when both files have one (shuffled B gives the same
numbers), by row order otherwise; mismatched files refused; shards and torchrun exact; slices of A and B side by side.

Real models' predictions: scikit-learn's digits, a weak model A and a strong model B (tests/models.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from models import DIGITS, digits_lenses

import lensdash as ld
from lensdash.analysis import analyze
from lensdash.cli import main
from lensdash.compare import comparison_summary
from lensdash.report import check_label_count, report
from lensdash.slices import PAIRED_COLUMNS

N = 899
SITES = np.array(["north", "south", "east", "=west"])


def _frame(predictions, ids: str) -> pd.DataFrame:
    frame = pd.DataFrame(predictions.logits.float().numpy(), columns=list(DIGITS))
    frame["label"] = predictions.labels.numpy()
    if ids == "text":
        frame.insert(0, "sample_id", [f"img_{i:04d}" for i in range(len(frame))])
    elif ids == "number":
        frame.insert(0, "id", np.arange(len(frame)) * 7 + 1000)
    frame["site"] = SITES[np.arange(len(frame)) % len(SITES)]
    return frame


def _write(frame: pd.DataFrame, path):
    if str(path).endswith(".parquet"):
        frame.to_parquet(path, row_group_size=128)
    else:
        frame.to_csv(path, index=False, float_format="%.9g")  # float32 round-trips with 9 digits
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_predictions):
    root = tmp_path_factory.mktemp("compare")
    out = {"root": root}
    shuffle = np.random.default_rng(5).permutation(N)
    for ids in ("text", "number", "none"):
        a = _frame(digits_predictions["weak"], ids)
        b = _frame(digits_predictions["strong"], ids).drop(columns="site")
        out[f"a_{ids}"] = _write(a, root / f"a_{ids}.csv")
        out[f"a_{ids}_parquet"] = _write(a, root / f"a_{ids}.parquet")
        (root / "ordered").mkdir(exist_ok=True)
        (root / "shuffled").mkdir(exist_ok=True)
        for suffix in ("csv", "parquet"):
            out[f"b_{ids}_{suffix}"] = _write(b, root / "ordered" / f"b_{ids}.{suffix}")
            # the same file name in another folder: comparison.json names B by its file name
            out[f"b_{ids}_{suffix}_shuffled"] = _write(b.iloc[shuffle], root / "shuffled" / f"b_{ids}.{suffix}")
    ld.save_lens(digits_lenses()["merge"], root / "lens.json")
    out["lens"] = root / "lens.json"
    return out


def _cli(files, a, b, out, *extra) -> int:
    argv = ["report", str(a), "--lens", str(files["lens"]), "--compare", str(b), "--out", str(out), "--quiet"]
    return main([*argv, "--bootstrap-resamples", "200", "--seed", "3", *extra])


@pytest.mark.parametrize("ids", ["text", "number"])
@pytest.mark.parametrize("b_format", ["csv", "parquet"])
def test_shuffled_rows_give_the_same_comparison_as_ordered_rows(files, digits_predictions, tmp_path, ids, b_format):
    ordered, shuffled = tmp_path / "ordered", tmp_path / "shuffled"
    assert _cli(files, files[f"a_{ids}"], files[f"b_{ids}_{b_format}"], ordered, "--slice-by", "site") == 0
    assert _cli(files, files[f"a_{ids}"], files[f"b_{ids}_{b_format}_shuffled"], shuffled, "--slice-by", "site") == 0
    one, two = (json.loads((folder / "comparison.json").read_text()) for folder in (ordered, shuffled))
    assert one == two  # every number, the bootstrap's interval and the note on the pairing
    assert any("Paired 899 samples by id (column " in note for note in one["notes"])
    for name in ("comparison_per_class.csv", "slices.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(ordered / name), pd.read_csv(shuffled / name))
    # and the numbers are the in-memory library's on the same samples
    a, b = digits_predictions["weak"], digits_predictions["strong"]
    lens = digits_lenses()["merge"]
    want = comparison_summary(a.logits.float(), b.logits.float(), a.labels, lens, resamples=200, seed=3)
    for key in ("samples", "accuracy_a", "accuracy_b", "a_only_correct", "b_only_correct", "neither_correct"):
        assert two[key] == want[key], key
    for key in ("mcnemar_p", "lensed_loss_diff", "lensed_loss_diff_low", "lensed_loss_diff_high"):
        assert two[key] == pytest.approx(want[key], rel=1e-5, abs=1e-9), key


def test_without_ids_in_both_files_rows_pair_by_order(files, tmp_path):
    # A has ids, B has none: paired by row order, as the app does
    assert _cli(files, files["a_text"], files["b_none_csv"], tmp_path / "by_row") == 0
    assert _cli(files, files["a_text"], files["b_text_csv"], tmp_path / "by_id") == 0
    by_row, by_id = (json.loads((tmp_path / f / "comparison.json").read_text()) for f in ("by_row", "by_id"))
    assert "Paired by row order (no id column in both files)." in by_row["notes"]
    numbers = [k for k in by_id if k not in ("notes", "source_b")]
    assert {k: by_row[k] for k in numbers} == {k: by_id[k] for k in numbers}


@pytest.mark.parametrize("a_file", ["a_text", "a_text_parquet"])
def test_pairing_by_id_is_exact_across_chunks_and_shards(files, a_file):
    lens = digits_lenses()["hierarchy"].matrix
    b = files["b_text_csv_shuffled"]
    whole = report(files[a_file], lens, compare=b, bootstrap_resamples=100, slice_by="site")
    parts = [
        report(files[a_file], lens, compare=b, bootstrap_resamples=100, slice_by="site", shard=(r, 3), chunk_rows=64)
        for r in range(3)
    ]
    assert all(0 < part.rows < N for part in parts)
    combined = parts[0]
    for part in parts[1:]:
        combined.add_(part)
    check_label_count(combined)
    got, want = combined.comparison.summary(), whole.comparison.summary()
    for key, value in want.items():
        assert got[key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), key
    for kind in ("lensed", "unlensed"):  # the same per-sample differences in the same order: the same interval
        assert got[f"{kind}_loss_diff_low"] == want[f"{kind}_loss_diff_low"]
        assert got[f"{kind}_loss_diff_high"] == want[f"{kind}_loss_diff_high"]
    pd.testing.assert_frame_equal(combined.slices.result().table, whole.slices.result().table, rtol=1e-12)


def _refused(files, tmp_path, b: pd.DataFrame, match: str, *, a=None, shards: int = 1, name="b.csv"):
    b_path = _write(b, tmp_path / name)
    with pytest.raises(ld.InputError, match=match):
        parts = [
            report(a or files["a_text"], torch.eye(10), compare=b_path, bootstrap_resamples=0, shard=(r, shards))
            for r in range(shards)
        ]
        for part in parts[1:]:
            parts[0].add_(part)
        check_label_count(parts[0])


@pytest.fixture()
def b_text(files):
    return pd.read_csv(files["b_text_csv"])


def test_an_id_of_a_missing_from_b_is_refused(files, tmp_path, b_text):
    b_text.loc[5, "sample_id"] = "img_9999"
    _refused(files, tmp_path, b_text, r"ids only in A in this part \('img_0005'\)")


def test_an_id_of_b_missing_from_a_is_refused(files, tmp_path, b_text):
    extra = b_text.iloc[[3]].assign(sample_id="img_extra")
    _refused(files, tmp_path, pd.concat([b_text, extra]), r"1 ids only in B \('img_extra'\)")


def test_fewer_ids_in_b_are_refused_naming_the_first_missing(files, tmp_path, b_text):
    _refused(files, tmp_path, b_text.iloc[:-3], r"ids only in A in this part \('img_0896'")


def test_a_repeated_id_in_b_is_refused(files, tmp_path, b_text):
    b_text.loc[7, "sample_id"] = "img_0002"
    _refused(
        files, tmp_path, b_text, r"b.csv \(--compare\) ids: expected each id once, found 1 repeated ids: 'img_0002'"
    )


def test_a_repeated_id_in_a_is_refused_in_one_process_and_across_shards(files, tmp_path, b_text):
    a = pd.read_csv(files["a_text"])
    a.loc[N - 1, "sample_id"] = "img_0001"  # row 2 and the last row: in different shares of two processes
    a.loc[N - 1, "label"] = a.loc[1, "label"]
    a_path = _write(a, tmp_path / "a_repeated.csv")
    _refused(
        files, tmp_path, b_text, r"expected each id once in the predictions, found repeated ids: 'img_0001'", a=a_path
    )
    _refused(
        files,
        tmp_path,
        b_text,
        r"expected each id once in the predictions, found 1 repeated ids: 'img_0001'",
        a=a_path,
        shards=2,
    )


def test_another_label_for_an_id_is_refused(files, tmp_path, b_text):
    b_text.loc[10, "label"] = (b_text.loc[10, "label"] + 1) % 10
    shown = f"'img_0010': '{(b_text.loc[10, 'label'] + 9) % 10}' vs '{b_text.loc[10, 'label']}'"
    _refused(
        files,
        tmp_path,
        b_text,
        rf"expected the same true label for each id in both files, found 1 ids with "
        rf"another label in B \({shown}\)",
    )


def test_an_empty_id_is_refused(files, tmp_path, b_text):
    b_text.loc[4, "sample_id"] = None
    _refused(files, tmp_path, b_text, r"b.csv \(--compare\) rows 5: expected an id on every row, found 1 empty ids")


def test_different_counts_without_ids_are_refused_on_the_command_line(files, tmp_path, capsys):
    b = pd.read_csv(files["b_none_csv"])
    short = _write(b.iloc[:-4], tmp_path / "short.csv")
    assert _cli(files, files["a_none"], short, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "short.csv (--compare): expected at least" in err and "found 895" in err
    assert "or an id column in both files" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_torchrun_pairing_by_id_equals_one_process(files, tmp_path):
    b = files["b_number_csv_shuffled"]
    extra = ["--slice-by", "site", "--bootstrap-resamples", "100", "--quiet"]
    base = ["report", str(files["a_number"]), "--lens", str(files["lens"]), "--compare", str(b), *extra]
    assert main([*base, "--out", str(tmp_path / "one")]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "lensdash"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*cmd, *base, "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (json.loads((tmp_path / f / "comparison.json").read_text()) for f in ("one", "two"))
    for key, value in one.items():
        assert two[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), key
    for kind in ("lensed", "unlensed"):
        assert two[f"{kind}_loss_diff_low"] == one[f"{kind}_loss_diff_low"]
    for name in ("comparison_per_class.csv", "slices.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "two" / name), pd.read_csv(tmp_path / "one" / name), rtol=1e-9
        )
    # an id repeated in the other process's share is refused by both, and no report is written
    a = pd.read_csv(files["a_number"])
    a.loc[N - 1, ["id", "label"]] = a.loc[0, ["id", "label"]].to_numpy()
    _write(a, tmp_path / "a_repeated.csv")
    base[1] = str(tmp_path / "a_repeated.csv")
    done = subprocess.run(
        [*cmd, *base, "--out", str(tmp_path / "three")], capture_output=True, text=True, env=env, timeout=180
    )
    assert (
        done.returncode != 0 and "expected each id once in the predictions, found 1 repeated ids: 1000" in done.stderr
    )
    assert done.stderr.count("found 1 repeated ids: 1000. ") == 2  # both processes say why
    assert not (tmp_path / "three").exists()


def test_slices_of_two_models_match_a_pandas_groupby(files, digits_predictions):
    lens = digits_lenses()["merge"]
    result = report(
        files["a_text"], lens, compare=files["b_text_parquet_shuffled"], slice_by="site", bootstrap_resamples=0
    )
    table = result.slices.result().table
    assert tuple(table.columns) == PAIRED_COLUMNS
    site = pd.Series(SITES[np.arange(N) % len(SITES)])
    frame = pd.DataFrame({"site": site})
    for side, model in (("a", "weak"), ("b", "strong")):
        p = digits_predictions[model]
        analysis = analyze(p.logits.float(), p.labels, lens, class_names_=DIGITS)
        frame[f"accuracy_{side}"] = (analysis.predicted == p.labels).numpy()
        frame[f"lens_aware_accuracy_{side}"] = analysis.lens_hit.numpy()
        frame[f"unlensed_loss_{side}"] = analysis.unlensed_loss.double().numpy()
        frame[f"lensed_loss_{side}"] = analysis.lensed_loss.double().numpy()
    want = frame.groupby("site").mean()
    got = table.set_index("slice").loc[want.index]
    assert got["count"].tolist() == frame.groupby("site").size()[want.index].tolist()
    for metric in ("accuracy", "lens_aware_accuracy", "unlensed_loss", "lensed_loss"):
        for side in ("a", "b"):
            np.testing.assert_allclose(got[f"{metric}_{side}"], want[f"{metric}_{side}"], rtol=1e-5, err_msg=metric)
        np.testing.assert_allclose(
            got[f"{metric}_diff"], want[f"{metric}_b"] - want[f"{metric}_a"], rtol=1e-4, atol=1e-6
        )
    assert (got["accuracy_diff"] > 0).all()  # the strong model is better on every site


def test_a_labels_file_with_b_paired_by_id_says_b_needs_its_own_labels(files, tmp_path):
    a = pd.read_csv(files["a_text"])
    b = pd.read_csv(files["b_text_csv_shuffled"])
    a.pop("label").to_csv(tmp_path / "labels.csv", index=False)
    b = b.drop(columns="label")
    named = {d: f"digit {d}" for d in DIGITS}  # a header of numbers alone would read as a row of scores
    a, b = a.rename(columns=named), b.rename(columns=named)
    _write(a, tmp_path / "a.csv")
    _write(b, tmp_path / "b.csv")
    with pytest.raises(ld.InputError, match=r"ids with another label in B .*so a B paired by id needs its own label"):
        report(tmp_path / "a.csv", torch.eye(10), labels=tmp_path / "labels.csv", compare=tmp_path / "b.csv")


def test_an_id_repeated_many_times_in_one_chunk_is_refused(files, tmp_path, b_text):
    a = pd.read_csv(files["a_text"])
    a.loc[:300, "sample_id"] = "img_0000"  # 301 times in the first chunk: more than a byte counts
    a.loc[:300, "label"] = a.loc[0, "label"]
    a_path = _write(a, tmp_path / "a_many.csv")
    _refused(
        files, tmp_path, b_text, r"expected each id once in the predictions, found repeated ids: 'img_0000'", a=a_path
    )
