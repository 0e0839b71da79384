"""Two models side by side, checked against statsmodels, scikit-learn, pandas and a plain numpy loop.

The models are real: scikit-learn's LogisticRegression and GaussianNB on its bundled digits data.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB
from statsmodels.stats.contingency_tables import mcnemar
from torch.testing import assert_close

from lensdash import InputError, lensed_cross_entropy, merge_lens, prediction_lensed_cross_entropy
from lensdash.compare import (
    PairedCounts,
    bootstrap_indices,
    comparison_from_counts,
    comparison_summary,
    confusion_difference,
    disagreements,
    mcnemar_exact_p,
    pair_predictions,
    paired_bootstrap,
    paired_counts,
    per_class_comparison,
    top1_correct,
)

NAMES = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def digits_models():
    """Log-probabilities of two real classifiers on the digits test split: (logp_a, logp_b, labels)."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.4, random_state=0)
    a = LogisticRegression(max_iter=2000).fit(x_train, y_train)
    b = GaussianNB().fit(x_train, y_train)
    logp_a = torch.tensor(a.predict_log_proba(x_test))
    logp_b = torch.tensor(b.predict_log_proba(x_test)).clamp_min(-1e4)  # NB gives -inf for impossible classes
    return logp_a, logp_b, torch.tensor(y_test)


def numpy_bootstrap(loss_a: np.ndarray, loss_b: np.ndarray, resamples: int, seed: int, confidence: float):
    """The paired percentile bootstrap as a plain loop: the reference."""
    rng = np.random.Generator(np.random.PCG64(seed))
    diff = loss_b - loss_a
    means = []
    for _ in range(resamples):
        idx = rng.integers(0, len(diff), size=len(diff))
        means.append(diff[idx].mean())
    tail = (1 - confidence) / 2
    return diff.mean(), np.percentile(means, 100 * tail), np.percentile(means, 100 * (1 - tail))


# ------------------------------------------------------------------ pairing


@pytest.mark.parametrize("kind", ["text", "int"])
def test_pairing_by_id_undoes_a_shuffle(digits_models, kind):
    logp_a, logp_b, labels = digits_models
    n = len(labels)
    ids = np.array([f"img_{i:04d}.png" for i in range(n)]) if kind == "text" else np.arange(1000, 1000 + n)
    perm = torch.from_numpy(np.random.default_rng(1).permutation(n))
    paired = pair_predictions(logp_a, labels, logp_b[perm], labels[perm], ids_a=ids, ids_b=ids[perm.numpy()])
    assert_close(paired.logits_b, logp_b)
    assert torch.equal(perm[paired.order_b], torch.arange(n))
    assert "by id" in paired.note
    # numbers compare as numbers across dtypes (an int id column and a float one)
    if kind == "int":
        again = pair_predictions(logp_a, labels, logp_b[perm], labels[perm], ids_a=ids, ids_b=ids[perm.numpy()] * 1.0)
        assert torch.equal(again.order_b, paired.order_b)


@given(st.integers(1, 60), st.integers(0, 2**32 - 1), st.sampled_from(["text", "int", "float"]))
def test_pairing_by_id_recovers_any_permutation(n, seed, kind):
    rng = np.random.default_rng(seed)
    logits = torch.from_numpy(rng.normal(size=(n, 4)))
    labels = torch.from_numpy(rng.integers(0, 4, size=n))
    ids = rng.choice(10 * n, size=n, replace=False)
    ids = ids.astype(str) if kind == "text" else ids.astype(float) if kind == "float" else ids
    perm = rng.permutation(n)
    paired = pair_predictions(logits, labels, logits[perm], labels[perm], ids_a=ids, ids_b=ids[perm])
    assert torch.equal(paired.logits_b, logits) and torch.equal(torch.from_numpy(perm)[paired.order_b], torch.arange(n))


def test_pairing_by_row_order_without_ids(digits_models):
    logp_a, logp_b, labels = digits_models
    paired = pair_predictions(logp_a, labels, logp_b, labels, ids_a=np.arange(len(labels)))
    assert torch.equal(paired.logits_b, logp_b) and "row order" in paired.note
    assert paired.ids is None


def test_shuffled_rows_without_ids_are_refused_by_their_labels(digits_models):
    logp_a, logp_b, labels = digits_models
    perm = torch.from_numpy(np.random.default_rng(2).permutation(len(labels)))
    with pytest.raises(InputError, match=r"same true label.*A row \d+ label \d+ vs B row \d+ label \d+.* more"):
        pair_predictions(logp_a, labels, logp_b[perm], labels[perm])


def _pair(**overrides):
    args = {
        "logits_a": torch.zeros(4, 3),
        "labels_a": torch.tensor([0, 1, 2, 0]),
        "logits_b": torch.zeros(4, 3),
        "labels_b": torch.tensor([0, 1, 2, 0]),
    }
    args.update(overrides)
    return pair_predictions(**args)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"logits_b": torch.zeros(4, 2)}, r"same number of classes in both models \(A has 3\), found 2 in B"),
        ({"logits_a": torch.zeros(4)}, r"logits \(N, K\) and labels \(N,\)"),
        ({"classes_a": ["a", "b", "c"], "classes_b": ["a", "c", "b"]}, r"class 2: expected the same class names"),
        (
            {"logits_b": torch.zeros(5, 3), "labels_b": torch.tensor([0, 1, 2, 0, 1])},
            r"same number of samples in A and B \(4 in A\), found 5 in B.*add an id column",
        ),
        ({"labels_b": torch.tensor([0, 1, 1, 0])}, r"1 of 4 samples with different labels \(A row 3 label 2"),
        ({"ids_a": ["a", "b", "c", "d"], "ids_b": ["a", "b", "c", "e"]}, r"1 ids only in A \('d'\).*1 only in B"),
        ({"ids_a": ["a", "b", "b", "d"], "ids_b": ["a", "b", "c", "d"]}, r"A ids: expected each id once.*'b'"),
        ({"ids_a": ["a", None, "c", "d"], "ids_b": ["a", "b", "c", "d"]}, r"A rows 2: expected an id on every row"),
        ({"ids_a": ["a", "b", "c", "d"], "ids_b": ["a", "b"]}, r"B ids: expected one id per row of B \(4\)"),
    ],
)
def test_mismatched_predictions_are_refused(overrides, match):
    with pytest.raises(InputError, match=match):
        _pair(**overrides)


def test_mismatch_message_lists_a_few_ids_and_counts():
    ids_a = np.arange(1000)
    with pytest.raises(InputError, match=r"500 ids only in A \(0, 1, 2, 3, 4 and 495 more\)") as info:
        pair_predictions(
            torch.zeros(1000, 2),
            torch.zeros(1000, dtype=torch.long),
            torch.zeros(1000, 2),
            torch.zeros(1000, dtype=torch.long),
            ids_a=ids_a,
            ids_b=ids_a + 500,
        )
    assert len(str(info.value)) < 400


# ------------------------------------------------------------------ McNemar


def _table(correct_a: torch.Tensor, correct_b: torch.Tensor) -> np.ndarray:
    a, b = correct_a.numpy(), correct_b.numpy()
    return np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])


def test_mcnemar_matches_statsmodels_on_real_models(digits_models):
    logp_a, logp_b, labels = digits_models
    counts = paired_counts(top1_correct(logp_a, labels), top1_correct(logp_b, labels))
    table = _table(top1_correct(logp_a, labels), top1_correct(logp_b, labels))
    assert (counts.a_only_correct, counts.b_only_correct) == (table[0, 1], table[1, 0])
    assert counts.a_only_correct > counts.b_only_correct > 0  # the two models really differ
    expected = mcnemar(table, exact=True).pvalue
    assert mcnemar_exact_p(counts.a_only_correct, counts.b_only_correct) == pytest.approx(expected, rel=1e-12)
    assert expected < 0.05


@given(st.integers(0, 3000), st.integers(0, 3000))
def test_mcnemar_matches_statsmodels_on_any_counts(b, c):
    expected = mcnemar(np.array([[5, b], [c, 7]]), exact=True).pvalue
    assert mcnemar_exact_p(b, c) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert mcnemar_exact_p(b, c) == mcnemar_exact_p(c, b)


def test_mcnemar_refuses_negative_counts():
    with pytest.raises(InputError, match="non-negative discordant counts"):
        mcnemar_exact_p(-1, 3)


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_indices_do_not_depend_on_the_block():
    whole = np.concatenate(list(bootstrap_indices(97, 40, 5, block=40)))
    blocks = np.concatenate(list(bootstrap_indices(97, 40, 5, block=3)))
    np.testing.assert_array_equal(whole, blocks)


@pytest.mark.parametrize(("resamples", "seed", "confidence"), [(400, 0, 0.95), (257, 11, 0.9)])
def test_bootstrap_matches_a_numpy_loop_on_real_models(digits_models, resamples, seed, confidence):
    logp_a, logp_b, labels = digits_models
    lens = merge_lens(NAMES, [["3", "5", "8"], ["1", "7"]])
    loss_a = lensed_cross_entropy(logp_a, labels, lens, reduction="none")
    loss_b = lensed_cross_entropy(logp_b, labels, lens, reduction="none")
    result = paired_bootstrap(loss_a, loss_b, resamples=resamples, seed=seed, confidence=confidence)
    diff, low, high = numpy_bootstrap(loss_a.numpy(), loss_b.numpy(), resamples, seed, confidence)
    assert_close(
        torch.tensor([result.difference, result.low, result.high], dtype=torch.float64),
        torch.tensor([diff, low, high], dtype=torch.float64),
        rtol=1e-9,
        atol=1e-12,
    )
    assert result.low < result.difference < result.high
    again = paired_bootstrap(loss_a, loss_b, resamples=resamples, seed=seed, confidence=confidence)
    assert again == result
    other = paired_bootstrap(loss_a, loss_b, resamples=resamples, seed=seed + 1, confidence=confidence)
    assert (other.low, other.high) != (result.low, result.high)


def test_bootstrap_in_blocks_equals_one_block(digits_models, monkeypatch):
    logp_a, logp_b, labels = digits_models
    loss_a, loss_b = (
        F.cross_entropy(logp_a, labels, reduction="none"),
        F.cross_entropy(logp_b, labels, reduction="none"),
    )
    whole = paired_bootstrap(loss_a, loss_b, resamples=100, seed=3)
    monkeypatch.setattr("lensdash._compare_stats.MAX_BOOTSTRAP_ELEMENTS", len(labels) * 7 + 3)
    blocks = paired_bootstrap(loss_a, loss_b, resamples=100, seed=3)
    assert_close(torch.tensor([blocks.low, blocks.high]), torch.tensor([whole.low, whole.high]), rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss_a": torch.ones(3), "loss_b": torch.ones(4)}, r"shapes \(3,\) and \(4,\)"),
        ({"loss_a": torch.ones(0), "loss_b": torch.ones(0)}, r"N >= 1"),
        ({"resamples": 0}, r"resamples >= 1"),
        ({"confidence": 1.0}, r"confidence in \(0, 1\)"),
    ],
)
def test_bootstrap_refuses_bad_arguments(kwargs, match):
    args = {"loss_a": torch.ones(3), "loss_b": torch.ones(3)} | kwargs
    with pytest.raises(InputError, match=match):
        paired_bootstrap(**args)


# ---------------------------------------------------------- per-class view


def test_per_class_comparison_matches_pandas_groupby(digits_models):
    logp_a, logp_b, labels = digits_models
    lensed_a = lensed_cross_entropy(logp_a, labels, torch.eye(10, dtype=torch.float64), reduction="none")
    lensed_b = lensed_cross_entropy(logp_b, labels, torch.eye(10, dtype=torch.float64), reduction="none")
    ca, cb = top1_correct(logp_a, labels), top1_correct(logp_b, labels)
    table = per_class_comparison(labels, ca, cb, NAMES, lensed_a=lensed_a, lensed_b=lensed_b)
    frame = pd.DataFrame({"y": labels.numpy(), "a": ca.numpy(), "b": cb.numpy(), "la": lensed_a, "lb": lensed_b})
    ref = frame.groupby("y").agg(
        count=("a", "size"), a=("a", "mean"), b=("b", "mean"), la=("la", "mean"), lb=("lb", "mean")
    )
    np.testing.assert_array_equal(table["count"], ref["count"])
    np.testing.assert_allclose(table["recall_a"], ref["a"], rtol=1e-12)
    np.testing.assert_allclose(table["recall_diff"], ref["b"] - ref["a"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(table["lensed_loss_diff"], ref["lb"] - ref["la"], rtol=1e-9)


def test_per_class_comparison_of_an_absent_class_is_nan():
    table = per_class_comparison(
        torch.tensor([0, 0]), torch.tensor([True, False]), torch.tensor([True, True]), NAMES[:3]
    )
    assert table["count"].tolist() == [2, 0, 0]
    assert table["recall_diff"].iloc[0] == 0.5 and table["recall_a"].iloc[1:].isna().all()


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_difference_matches_scikit_learn(digits_models, normalize):
    logp_a, logp_b, labels = digits_models
    pa, pb = logp_a.argmax(1), logp_b.argmax(1)
    got = confusion_difference(labels, pa, pb, 10, normalize=normalize)
    norm = "true" if normalize else None
    expected = confusion_matrix(labels, pb, normalize=norm) - confusion_matrix(labels, pa, normalize=norm)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
    assert got.abs().sum() > 0


def test_disagreements_lists_each_sample_where_predictions_differ(digits_models):
    logp_a, logp_b, labels = digits_models
    pa, pb = logp_a.argmax(1), logp_b.argmax(1)
    la, lb = F.cross_entropy(logp_a, labels, reduction="none"), F.cross_entropy(logp_b, labels, reduction="none")
    ids = np.array([f"s{i}" for i in range(len(labels))])
    table = disagreements(labels, pa, pb, NAMES, loss_a=la, loss_b=lb, ids=ids)
    expected = np.flatnonzero(pa.numpy() != pb.numpy())
    assert sorted(table["sample"]) == expected.tolist()
    row = table.iloc[0]
    s = int(row["sample"])
    assert row["id"] == f"s{s}" and row["predicted_a"] == str(int(pa[s])) and row["predicted_b"] == str(int(pb[s]))
    assert row["loss_a"] == pytest.approx(float(la[s])) and row["b_correct"] == bool(pb[s] == labels[s])
    assert (np.diff(table["loss_diff"].abs().to_numpy()) <= 0).all()
    top = disagreements(labels, pa, pb, NAMES, loss_a=la, loss_b=lb, limit=5)
    pd.testing.assert_frame_equal(top, table.drop(columns="id").head(5))


# ----------------------------------------------------------------- summary


@pytest.mark.parametrize("family", ["target", "prediction"])
def test_summary_on_real_models(digits_models, family):
    logp_a, logp_b, labels = digits_models
    lens = merge_lens(NAMES, [["3", "5", "8"], ["1", "7"]])
    summary = comparison_summary(logp_a, logp_b, labels, lens, family=family, resamples=200, seed=4)
    json.dumps(summary)
    fn = lensed_cross_entropy if family == "target" else prediction_lensed_cross_entropy
    la, lb = fn(logp_a, labels, lens, reduction="none"), fn(logp_b, labels, lens, reduction="none")
    ua, ub = F.cross_entropy(logp_a, labels, reduction="none"), F.cross_entropy(logp_b, labels, reduction="none")
    table = _table(top1_correct(logp_a, labels), top1_correct(logp_b, labels))
    assert summary["accuracy_a"] == pytest.approx((logp_a.argmax(1) == labels).double().mean().item())
    assert summary["accuracy_b"] == pytest.approx((logp_b.argmax(1) == labels).double().mean().item())
    assert (summary["a_only_correct"], summary["b_only_correct"]) == (table[0, 1], table[1, 0])
    assert summary["mcnemar_p"] == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)
    assert summary["lensed_loss_a"] == pytest.approx(la.mean().item(), rel=1e-12)
    assert summary["lensed_loss_diff"] == pytest.approx((lb - la).mean().item(), rel=1e-9)
    assert summary["unlensed_loss_b"] == pytest.approx(ub.mean().item(), rel=1e-12)
    _, low, high = numpy_bootstrap(la.numpy(), lb.numpy(), 200, 4, 0.95)
    assert (summary["lensed_loss_diff_low"], summary["lensed_loss_diff_high"]) == pytest.approx((low, high), rel=1e-9)
    _, low, high = numpy_bootstrap(ua.numpy(), ub.numpy(), 200, 4, 0.95)
    assert (summary["unlensed_loss_diff_low"], summary["unlensed_loss_diff_high"]) == pytest.approx((low, high))


def test_summary_takes_the_callers_correctness(digits_models):
    logp_a, logp_b, labels = digits_models
    lens = merge_lens(NAMES, [["3", "5", "8"], ["1", "7"]])
    # a lens-aware rule (any class the lens gives weight to counts): more samples are right than at top-1
    aware_a = lens.matrix[labels, logp_a.argmax(1)] > 0
    aware_b = lens.matrix[labels, logp_b.argmax(1)] > 0
    summary = comparison_summary(logp_a, logp_b, labels, lens, correct_a=aware_a, correct_b=aware_b, resamples=0)
    top1 = comparison_summary(logp_a, logp_b, labels, lens, resamples=0)
    assert summary["accuracy_b"] == pytest.approx(aware_b.double().mean().item())
    assert summary["accuracy_b"] > top1["accuracy_b"]
    assert summary["lensed_loss_diff_low"] is None and summary["bootstrap_resamples"] == 0


def test_streamed_counts_add_up_to_the_whole(digits_models):
    logp_a, logp_b, labels = digits_models
    ca, cb = top1_correct(logp_a, labels), top1_correct(logp_b, labels)
    ua, ub = F.cross_entropy(logp_a, labels, reduction="none"), F.cross_entropy(logp_b, labels, reduction="none")
    whole = paired_counts(ca, cb, unlensed_a=ua, unlensed_b=ub, lensed_a=ua, lensed_b=ub)
    total = PairedCounts()
    for part in torch.arange(len(labels)).tensor_split(4):  # four shards
        shard = paired_counts(
            ca[part], cb[part], unlensed_a=ua[part], unlensed_b=ub[part], lensed_a=ua[part], lensed_b=ub[part]
        )
        total = total + PairedCounts.from_tensor(shard.to_tensor())  # as all_reduce would carry it
    assert total.samples == whole.samples and total.a_only_correct == whole.a_only_correct
    assert isinstance(total.samples, int)
    assert total.lensed_loss_b == pytest.approx(whole.lensed_loss_b, rel=1e-12)
    assert comparison_from_counts(total)["mcnemar_p"] == comparison_from_counts(whole)["mcnemar_p"]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: paired_counts(torch.ones(3, dtype=torch.bool), torch.ones(2, dtype=torch.bool)),
            r"correct_b: .*\(3\)",
        ),
        (
            lambda: paired_counts(torch.ones(3).bool(), torch.ones(3).bool(), lensed_a=torch.ones(2)),
            r"lensed_a: .*loss",
        ),
        (lambda: comparison_from_counts(PairedCounts()), r"at least one paired sample"),
        (
            lambda: comparison_summary(
                torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([0, 1]), torch.eye(2), family="x"
            ),
            "family",
        ),
    ],
)
def test_summary_refuses_bad_inputs(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_comparison_figures_show_the_data_and_stay_bounded(digits_models):
    from lensdash.figures_compare import confusion_difference_heatmap, per_class_difference_figure

    logp_a, logp_b, labels = digits_models
    ca, cb = top1_correct(logp_a, labels), top1_correct(logp_b, labels)
    table = per_class_comparison(labels, ca, cb, NAMES)
    bars = per_class_difference_figure(table)
    np.testing.assert_allclose(np.asarray(bars.data[0].y), table["recall_diff"])
    diff = confusion_difference(labels, logp_a.argmax(1), logp_b.argmax(1), 10)
    heat = confusion_difference_heatmap(diff, NAMES)
    np.testing.assert_array_equal(np.asarray(heat.data[0].z), diff.numpy())
    assert heat.data[0].zmax == -heat.data[0].zmin == diff.abs().max().item()

    k = 300
    big = torch.zeros(k, k)
    big[7, 250] = 5
    names = [f"<b>c{i}</b>" for i in range(k)]
    heat = confusion_difference_heatmap(big, names)
    assert (
        len(heat.data[0].x) == 60
        and "&lt;b&gt;c250&lt;/b&gt;" in heat.data[0].x
        and "of 300 classes" in heat.layout.title.text
    )
    labels = torch.arange(k).repeat(2)
    wide = per_class_comparison(labels, labels % 3 == 0, labels % 2 == 0, names)
    assert len(per_class_difference_figure(wide, limit=40).data[0].x) == 40
