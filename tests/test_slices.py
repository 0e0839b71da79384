"""Per-slice tables checked against a pandas groupby on real models' predictions (scikit-learn's digits)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from lensdash import InputError, lensed_cross_entropy, merge_lens
from lensdash.slices import COLUMNS, MISSING, OTHER, PAIRED_COLUMNS, SliceAccumulator, slice_table

NAMES = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def digits_run():
    """A real model's per-sample results on the digits test split, with metadata columns."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.5, random_state=0)
    model = LogisticRegression(max_iter=3000, C=0.01).fit(x_train, y_train)
    logp = torch.tensor(model.predict_log_proba(x_test))
    labels = torch.tensor(y_test)
    lens = merge_lens(NAMES, [["3", "5", "8"], ["1", "7"], ["4", "9"]])
    predicted = logp.argmax(1)
    rng = np.random.default_rng(0)
    site = pd.Series(rng.choice(["north", "south", "east", "west"], size=len(labels)), dtype=object, name="site")
    site[rng.random(len(labels)) < 0.05] = None
    return {
        "correct": (predicted == labels).numpy(),
        "lens_aware": (lens.matrix[labels, predicted] > 0).numpy(),
        "unlensed": F.cross_entropy(logp, labels, reduction="none").numpy(),
        "lensed": lensed_cross_entropy(logp, labels, lens, reduction="none").numpy(),
        "site": site,
        "ink": pd.Series(x_test.sum(axis=1), name="ink"),  # total ink: many distinct numbers
        "parity": pd.Series(y_test % 2, name="parity"),  # two numbers
    }


def _groupby(run: dict, key: pd.Series) -> pd.DataFrame:
    """The reference: pandas groupby of the per-sample frame, largest slice first."""
    frame = pd.DataFrame(
        {
            "slice": key,
            "correct": run["correct"],
            "lens_aware": run["lens_aware"],
            "unlensed": run["unlensed"],
            "lensed": run["lensed"],
        }
    )
    grouped = frame.groupby("slice").agg(
        count=("correct", "size"),
        accuracy=("correct", "mean"),
        lens_aware_accuracy=("lens_aware", "mean"),
        unlensed_loss=("unlensed", "mean"),
        lensed_loss=("lensed", "mean"),
    )
    return grouped.reset_index().sort_values(["count", "slice"], ascending=[False, True]).reset_index(drop=True)


def _check(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == list(COLUMNS)
    assert got["slice"].tolist() == expected["slice"].astype(str).tolist()
    np.testing.assert_array_equal(got["count"], expected["count"])
    for name in COLUMNS[2:]:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, err_msg=name)


def _slices(run: dict, column: str, **options):
    return slice_table(run[column], run["correct"], run["lens_aware"], run["unlensed"], run["lensed"], **options)


def test_text_column_with_missing_values_matches_groupby(digits_run):
    result = _slices(digits_run, "site")
    _check(result.table, _groupby(digits_run, digits_run["site"].fillna(MISSING)))
    assert MISSING in result.table["slice"].tolist() and result.note is None and result.column == "site"
    assert result.table["accuracy"].nunique() > 1  # slices really differ


def test_few_numbers_are_kept_as_values(digits_run):
    result = _slices(digits_run, "parity")
    _check(result.table, _groupby(digits_run, digits_run["parity"].astype(str)))
    assert sorted(result.table["slice"]) == ["0", "1"]


@pytest.mark.parametrize("bins", [10, 4])
def test_many_numbers_are_quantile_bins_as_qcut(digits_run, bins):
    result = _slices(digits_run, "ink", bins=bins)
    key = pd.qcut(digits_run["ink"], bins, duplicates="drop").astype(str)
    _check(result.table, _groupby(digits_run, key))
    assert len(result.table) == bins and "quantile bins" in result.note and "'ink'" in result.note


def test_quantile_bins_with_missing_numbers(digits_run):
    ink = digits_run["ink"].copy()
    ink[::17] = np.nan
    run = dict(digits_run, ink=ink)
    result = _slices(run, "ink")
    _check(result.table, _groupby(run, pd.qcut(ink, 10, duplicates="drop").astype(str).where(ink.notna(), MISSING)))


@given(
    st.lists(st.one_of(st.integers(-5, 40), st.none()), min_size=1, max_size=80),
    st.integers(1, 8),
    st.integers(2, 30),
)
def test_any_numeric_column_matches_qcut_and_groupby(values, bins, max_values):
    column = pd.Series([np.nan if v is None else float(v) for v in values])
    n = len(column)
    rng = np.random.default_rng(n)
    run = {
        "x": column,
        "correct": rng.random(n) < 0.5,
        "lens_aware": rng.random(n) < 0.7,
        "unlensed": rng.random(n),
        "lensed": rng.random(n),
    }
    result = _slices(run, "x", bins=bins, max_values=max_values)
    present = column.dropna()
    if present.nunique() > max_values:
        key = pd.qcut(column, bins, duplicates="drop").astype(str)
    else:
        key = column.map(lambda v: MISSING if pd.isna(v) else str(int(v)))
    _check(result.table, _groupby(run, key.where(column.notna(), MISSING)))


def test_streamed_chunks_and_shards_give_the_same_table(digits_run):
    for column in ("site", "ink", "parity"):
        whole = _slices(digits_run, column)
        shards = []
        for rank_rows in np.array_split(np.arange(len(digits_run["correct"])), 2):
            acc = SliceAccumulator(column)
            for rows in np.array_split(rank_rows, 5):  # chunks as the CLI reads them
                acc.update(
                    digits_run[column].iloc[rows],
                    digits_run["correct"][rows],
                    digits_run["lens_aware"][rows],
                    digits_run["unlensed"][rows],
                    digits_run["lensed"][rows],
                )
            shards.append(acc)
        merged = shards[0].merge(shards[1]).result()
        pd.testing.assert_frame_equal(merged.table, whole.table, rtol=1e-12)
        assert merged.note == whole.note


def test_many_text_values_keep_the_most_frequent(digits_run):
    files = pd.Series([f"img_{i % 60}.png" for i in range(len(digits_run["correct"]))])
    result = _slices(dict(digits_run, files=files), "files", max_slices=10)
    assert len(result.table) == 10 and OTHER in result.table["slice"].tolist()
    assert result.table["count"].sum() == len(files)
    assert "60 distinct values" in result.note and "other 51" in result.note
    other = result.table.set_index("slice").loc[OTHER]
    kept = set(result.table["slice"]) - {OTHER}
    mask = ~files.isin(kept).to_numpy()
    assert other["count"] == mask.sum()
    assert other["lensed_loss"] == pytest.approx(digits_run["lensed"][mask].mean())


def test_chunks_that_disagree_on_the_kind_compare_as_text():
    acc = SliceAccumulator("code")
    acc.update(pd.Series([1, 2, 2]), [1, 0, 1], [1, 1, 1], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    acc.update(pd.Series(["2", "x"]), [0, 1], [0, 1], [1.0, 1.0], [2.0, 2.0])
    table = acc.result().table
    assert table["slice"].tolist() == ["2", "1", "x"]
    assert table["count"].tolist() == [3, 1, 1]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: slice_table(pd.Series(["a", "b"]), [1], [1, 1], [1, 1], [1, 1]), r"correct: expected one value per"),
        (lambda: slice_table(pd.Series(["a"]), [1], [1], [1], [1, 2]), r"lensed_loss: .*found shape \(2,\)"),
        (lambda: SliceAccumulator("x", bins=0), r"max_values >= 1, bins >= 1 and max_slices >= 2"),
        (
            lambda: SliceAccumulator("x", paired=True).update(["a"], [1], [1], [1], [1]),
            r"expected model B's four per-sample vectors exactly when the accumulator is paired, found paired=True",
        ),
        (
            lambda: slice_table(pd.Series(["a"]), [1], [1], [1], [1], model_b=([1], [1], [1])),
            r"found paired=True and 3 vectors of model B",
        ),
        (
            lambda: slice_table(pd.Series(["a"]), [1], [1], [1], [1], model_b=([1], [1], [1], [1, 2])),
            r"model_b lensed_loss_b: .*found shape \(2,\)",
        ),
    ],
)
def test_bad_inputs_are_refused(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_slice_figure_shows_the_table_bounded_and_escaped(digits_run):
    from lensdash.figures_compare import slice_figure

    result = _slices(digits_run, "site")
    fig = slice_figure(result)
    np.testing.assert_allclose(np.asarray(fig.data[0].y), result.table["accuracy"])
    np.testing.assert_allclose(np.asarray(fig.data[1].y), result.table["lens_aware_accuracy"])
    assert list(fig.data[0].text) == [f"n={c:,}" for c in result.table["count"]]
    names = pd.Series([f'<a href="http://x">{i % 80}</a>' for i in range(len(digits_run["correct"]))], name="f")
    many = slice_figure(_slices(dict(digits_run, f=names), "f", max_slices=100), limit=20)
    assert len(many.data[0].x) == 20 and "20 largest of 80 slices" in many.layout.title.text
    assert all("<a" not in x and "&lt;a" in x for x in many.data[0].x)


def _model_b(run: dict) -> dict:
    """A second model on the same samples: another classifier of the same digits, results in the same order."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.5, random_state=0)
    model = LogisticRegression(max_iter=3000, C=1.0).fit(x_train, y_train)
    logp = torch.tensor(model.predict_log_proba(x_test))
    labels = torch.tensor(y_test)
    lens = merge_lens(NAMES, [["3", "5", "8"], ["1", "7"], ["4", "9"]])
    predicted = logp.argmax(1)
    return {
        "correct": (predicted == labels).numpy(),
        "lens_aware": (lens.matrix[labels, predicted] > 0).numpy(),
        "unlensed": F.cross_entropy(logp, labels, reduction="none").numpy(),
        "lensed": lensed_cross_entropy(logp, labels, lens, reduction="none").numpy(),
    }


@pytest.mark.parametrize("column", ["site", "ink", "parity"])
def test_two_models_side_by_side_match_groupby_of_each(digits_run, column):
    run_b = _model_b(digits_run)
    vectors_b = (run_b["correct"], run_b["lens_aware"], run_b["unlensed"], run_b["lensed"])
    result = _slices(digits_run, column, model_b=vectors_b)
    got = result.table
    assert tuple(got.columns) == PAIRED_COLUMNS
    alone_a, alone_b = _slices(digits_run, column), _slices({**run_b, column: digits_run[column]}, column)
    assert got["slice"].tolist() == alone_a.table["slice"].tolist() == alone_b.table["slice"].tolist()
    assert result.note == alone_a.note  # the same slices (bins, missing) for both models
    for metric in COLUMNS[2:]:
        np.testing.assert_allclose(got[f"{metric}_a"], alone_a.table[metric], rtol=1e-12)
        np.testing.assert_allclose(got[f"{metric}_b"], alone_b.table[metric], rtol=1e-12)
        np.testing.assert_allclose(got[f"{metric}_diff"], alone_b.table[metric] - alone_a.table[metric], atol=1e-12)
    if column == "site":  # and against pandas directly, for B
        _check(alone_b.table, _groupby(run_b, digits_run["site"].fillna(MISSING)))


def test_two_model_shards_merge_into_an_empty_accumulator(digits_run):
    run_b = _model_b(digits_run)
    n = len(digits_run["site"])
    whole = _slices(
        digits_run, "site", model_b=(run_b["correct"], run_b["lens_aware"], run_b["unlensed"], run_b["lensed"])
    )
    shares = []
    for part in (slice(0, n // 3), slice(n // 3, n)):
        acc = SliceAccumulator("site", paired=True)
        vectors = [digits_run[k][part] for k in ("correct", "lens_aware", "unlensed", "lensed")]
        acc.update(
            digits_run["site"][part],
            *vectors,
            model_b=[run_b[k][part] for k in ("correct", "lens_aware", "unlensed", "lensed")],
        )
        shares.append(acc)
    merged = SliceAccumulator("site")  # as under torchrun: made before the shares' form is known
    for share in shares:
        merged.merge(share)
    pd.testing.assert_frame_equal(merged.result().table, whole.table, rtol=1e-12)
    with pytest.raises(InputError, match="expected accumulators of the same form"):
        _slices_acc = SliceAccumulator("site")
        _slices_acc.update(["a"], [1], [1], [1], [1])
        _slices_acc.merge(shares[0])
