import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from models import DIGITS, digits_lenses
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, top_k_accuracy_score
from torchmetrics.classification import MulticlassCalibrationError
from torchmetrics.functional.classification.calibration_error import _binning_bucketize

import lensdash as ld
from lensdash import analysis as A
from lensdash import metrics as M

MODELS = ("weak", "strong")
LENSES = tuple(digits_lenses())


def _sklearn_scores(labels, predicted, k):
    """sklearn's per-class and averaged precision/recall/F1 over labels 0..K-1, zero_division=0."""
    y, p = labels.numpy(), predicted.numpy()
    per_class = precision_recall_fscore_support(y, p, labels=np.arange(k), zero_division=0)
    averages = {
        average: precision_recall_fscore_support(y, p, labels=np.arange(k), zero_division=0, average=average)[:3]
        for average in ("macro", "weighted")
    }
    return per_class, averages


def _check_scores_against_sklearn(sums: M.MetricSums, labels, predicted):
    k = sums.num_classes
    (precision, recall, f1, support), averages = _sklearn_scores(labels, predicted, k)
    table = sums.per_class_table([str(i) for i in range(k)])
    np.testing.assert_allclose(table["precision"], precision, rtol=1e-12, atol=0)
    np.testing.assert_allclose(table["recall"], recall, rtol=1e-12, atol=0)
    np.testing.assert_allclose(table["f1"], f1, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(table["support"], support)
    summary = sums.summary()
    for average, values in averages.items():
        for name, value in zip(("precision", "recall", "f1"), values):
            assert summary[f"{average}_{name}"] == pytest.approx(value, rel=1e-12, abs=1e-15), (average, name)
    assert summary["accuracy"] == pytest.approx(accuracy_score(labels.numpy(), predicted.numpy()), rel=1e-12)


def _torchmetrics_calibration(probs: torch.Tensor, labels: torch.Tensor, norm: str) -> float:
    """torchmetrics' calibration error of probabilities (logits would be taken as probabilities if in [0, 1])."""
    metric = MulticlassCalibrationError(num_classes=probs.shape[1], n_bins=15, norm=norm)
    metric.update(probs, labels)
    return float(metric.compute())


# ------------------------------------------------------------ against sklearn and torchmetrics on digits


@pytest.mark.parametrize("model", MODELS)
def test_per_class_scores_and_accuracy_match_sklearn(digits_predictions, model):
    p = digits_predictions[model]
    sums = M.MetricSums.of(p.logits, p.labels)
    _check_scores_against_sklearn(sums, p.labels, torch.as_tensor(p.probs.argmax(1)))
    table = sums.per_class_table(DIGITS)
    assert list(table.columns) == ["class", "precision", "recall", "f1", "support", "top5_accuracy"]
    assert list(table["class"]) == list(DIGITS)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_accuracy_matches_sklearn(digits_predictions, model, k):
    p = digits_predictions[model]
    expected = top_k_accuracy_score(p.labels.numpy(), p.logits.numpy(), k=k, labels=np.arange(10))
    summary = M.MetricSums.of(p.logits, p.labels, k=k).summary()
    assert summary[f"top{k}_accuracy"] == pytest.approx(expected, rel=1e-12)
    assert summary["top_k"] == k


def test_top_k_defaults_to_five_above_five_classes(digits_predictions):
    p = digits_predictions["weak"]
    summary = M.MetricSums.of(p.logits, p.labels).summary()
    expected = top_k_accuracy_score(p.labels.numpy(), p.logits.numpy(), k=5, labels=np.arange(10))
    assert summary["top5_accuracy"] == pytest.approx(expected) and expected < 1


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ece_and_mce_match_torchmetrics(digits_predictions, model, dtype):
    p = digits_predictions[model]
    logits = p.logits.to(dtype)
    summary = M.MetricSums.of(logits, p.labels).summary()
    for key, norm in (("ece", "l1"), ("mce", "max")):
        assert summary[key] == pytest.approx(
            _torchmetrics_calibration(torch.softmax(logits, 1), p.labels, norm), rel=1e-5, abs=1e-6
        )


def test_the_weak_model_fills_the_bin_of_confidence_one(digits_predictions):
    """Naive Bayes is often certain: those samples have a bin of their own, as in torchmetrics."""
    p = digits_predictions["weak"]
    sums = M.MetricSums.of(p.logits.float(), p.labels)
    table = sums.reliability()
    assert len(table) == 16 and table["count"].iloc[-1] > 100
    assert (table["lower"].iloc[-1], table["upper"].iloc[-1]) == (1.0, 1.0)


def test_confidence_one_has_its_own_bin_as_in_torchmetrics():
    """One right at 0.94 (bin [14/15, 1)) and one wrong at exactly 1: ECE 0.53 with the extra bin, 0.47 without."""
    probs, labels = torch.tensor([[0.94, 0.06], [1.0, 0.0]]), torch.tensor([0, 1])
    confidence, predicted = probs.max(1)
    bins = M.calibration_bins(confidence, predicted == labels)
    assert bins[0, -2:].tolist() == [1.0, 1.0]
    assert M.calibration_error(bins) == pytest.approx(0.53, abs=1e-6)
    assert M.calibration_error(bins) == pytest.approx(_torchmetrics_calibration(probs, labels, "l1"), abs=1e-6)
    assert M.calibration_error(bins, "max") == pytest.approx(_torchmetrics_calibration(probs, labels, "max"))


@pytest.mark.parametrize("model", MODELS)
def test_reliability_table_matches_torchmetrics_bins(digits_predictions, model):
    p = digits_predictions[model]
    probs = torch.softmax(p.logits.float(), 1)
    confidence, predicted = probs.max(1)
    acc_bin, conf_bin, prop_bin = _binning_bucketize(
        confidence, predicted.eq(p.labels).float(), torch.linspace(0, 1, 16, dtype=torch.float32)
    )
    table = M.MetricSums.of(p.logits.float(), p.labels).reliability()
    np.testing.assert_allclose(table["count"] / len(p.labels), prop_bin.numpy(), rtol=1e-6)
    np.testing.assert_allclose(table["confidence"].fillna(0), conf_bin.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(table["accuracy"].fillna(0), acc_bin.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(table["lower"], np.linspace(0, 1, 16), atol=1e-7)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("lens_name", LENSES)
def test_lens_aware_numbers_on_digits(digits_predictions, model, lens_name):
    p, lens = digits_predictions[model], digits_lenses()[lens_name]
    summary = M.MetricSums.of(p.logits, p.labels, lens).summary()
    assert summary["lens_aware_accuracy"] == pytest.approx(A.lens_aware_accuracy(p.logits, p.labels, lens), rel=1e-12)
    assert summary["lens_soft_score"] == pytest.approx(A.lens_soft_score(p.logits, p.labels, lens), rel=1e-12)
    analysis_summary = A.analyze(p.logits, p.labels, lens).summary()
    assert summary["lens_aware_accuracy"] == pytest.approx(analysis_summary["lens_aware_accuracy"], rel=1e-12)
    if lens_name in ("identity", "smoothing"):
        assert summary["lens_aware_accuracy"] == pytest.approx(summary["accuracy"])
    else:  # merge and soft hierarchy forgive confusions inside a group
        assert summary["lens_aware_accuracy"] > summary["accuracy"]
    # The lens changes neither the per-class scores nor the top-k nor the plain calibration.
    plain = M.MetricSums.of(p.logits, p.labels).summary()
    for key in ("accuracy", "top5_accuracy", "macro_f1", "weighted_f1", "ece", "mce"):
        assert summary[key] == plain[key]


# ------------------------------------------------------------ the lensed calibration


def _group_probabilities(probs: torch.Tensor, groups: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collapse K classes into groups (singletons for the rest): (N, G) summed probabilities, class → group."""
    k = probs.shape[1]
    grouped = {c for g in groups for c in g}
    all_groups = [list(g) for g in groups] + [[c] for c in range(k) if c not in grouped]
    all_groups.sort(key=min)  # groups in the order of their first class
    group_of = torch.empty(k, dtype=torch.long)
    for index, members in enumerate(all_groups):
        group_of[members] = index
    summed = torch.stack([probs[:, members].sum(1) for members in all_groups], dim=1)
    return summed, group_of


@pytest.mark.parametrize("model", MODELS)
def test_lensed_calibration_on_merge_groups_is_the_group_classifiers(digits_predictions, model):
    """Merge lens: the predicted group's summed softmax vs whether the truth is in it, as torchmetrics sees groups."""
    p = digits_predictions[model]
    groups = [[3, 5, 8], [1, 7], [4, 9]]
    lens = ld.merge_lens(10, groups)
    probs = torch.softmax(p.logits, 1)
    group_probs, group_of = _group_probabilities(probs, groups)
    group_labels = group_of[p.labels]
    summary = M.MetricSums.of(p.logits, p.labels, lens).summary()
    for key, norm in (("lensed_ece", "l1"), ("lensed_mce", "max")):
        expected = _torchmetrics_calibration(group_probs.clamp(max=1.0), group_labels, norm)
        assert summary[key] == pytest.approx(expected, rel=1e-5, abs=1e-6), key
    expected_accuracy = float((group_probs.argmax(1) == group_labels).double().mean())
    assert summary["lensed_accuracy"] == pytest.approx(expected_accuracy)
    assert summary["lensed_mean_confidence"] == pytest.approx(float(group_probs.max(1).values.mean()))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("lens_name", ["identity", "smoothing"])
def test_lensed_calibration_on_identity_and_smoothing_is_the_plain_one(digits_predictions, model, lens_name):
    p = digits_predictions[model]
    sums = M.MetricSums.of(p.logits, p.labels, digits_lenses()[lens_name])
    torch.testing.assert_close(sums.lensed_calibration, sums.calibration, rtol=0, atol=0)


def test_lensed_top_label_matches_its_definition_on_a_hierarchy(digits_predictions):
    """s = softmax(x) H, prediction argmax s (first on ties), correct H[y, prediction]: a plain loop."""
    p = digits_predictions["weak"]
    lens = digits_lenses()["hierarchy"]
    hits = A.lens_hits(lens).double().numpy()
    probs = torch.softmax(p.logits, 1).numpy()
    confidence, correct = [], []
    for row, y in zip(probs, p.labels.tolist()):
        scores = [sum(row[i] * hits[i, j] for i in range(10)) for j in range(10)]
        best = int(np.argmax(scores))
        confidence.append(min(scores[best], 1.0))
        correct.append(hits[y, best])
    expected = M.calibration_bins(torch.tensor(confidence), torch.tensor(correct))
    actual = M.MetricSums.of(p.logits, p.labels, lens).lensed_calibration
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-9)


def test_a_uniform_lens_makes_every_answer_right_with_confidence_one():
    x, y = torch.randn(50, 6), torch.randint(0, 6, (50,))
    summary = M.MetricSums.of(x, y, ld.uniform_lens(6)).summary()
    assert summary["lensed_accuracy"] == 1.0 and summary["lensed_ece"] == pytest.approx(0.0, abs=1e-6)
    assert summary["lens_aware_accuracy"] == 1.0 and summary["lens_soft_score"] == 1.0


def test_lens_rule_keeps_distinct_columns_in_class_order():
    rule = M.lens_rule(ld.merge_lens(5, [[1, 3]]))
    assert rule.first_class.tolist() == [0, 1, 2, 4]
    assert rule.columns.shape == (5, 4) and rule.columns[3, 1] and not rule.is_identity
    assert M.lens_rule(torch.eye(4)).is_identity and M.lens_rule(ld.smoothing_lens(4, 0.1)).is_identity
    assert M.lens_rule(rule) is rule


def _random_lens(k: int, gen: torch.Generator, floor: float) -> torch.Tensor:
    lens = torch.rand(k, k, generator=gen, dtype=torch.float64) ** 8 + floor
    return lens / lens.sum(1, keepdim=True)


@pytest.mark.parametrize(
    "k, floor, path",
    [(8, 0.2, "product"), (80, 0.0, "product"), (80, 1e-3, "gather")],
    ids=["few columns", "many dense columns", "many sparse columns"],
)
def test_lensed_scores_match_the_definition_on_every_path(k, floor, path):
    """s = softmax(x) H, its maximum and the first class reaching it, whichever way the scores are added."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(300, k, generator=gen, dtype=torch.float64) * 3
    lens = _random_lens(k, gen, floor)
    if floor == 0.0:  # many counted answers per row
        lens = (lens + 0.5 * lens.amax(1, keepdim=True) * (torch.rand(k, k, generator=gen) < 0.5)).double()
        lens = lens / lens.sum(1, keepdim=True)
    rule = M.lens_rule(lens)
    groups = rule.columns.shape[1]
    dense = groups <= M._DENSE_GROUPS or rule.columns.sum() * 8 > k * groups
    assert dense == (path == "product")
    probs = torch.softmax(x, 1)
    confidence, predicted = M.lensed_top_label(probs, rule)
    scores = probs @ A.lens_hits(lens).double()
    torch.testing.assert_close(confidence, scores.max(1).values.clamp(max=1))
    torch.testing.assert_close(predicted, scores.argmax(1))


# ------------------------------------------------------------ streaming and sharding


@pytest.mark.parametrize("lens_name", LENSES)
def test_chunked_updates_equal_one_update(digits_predictions, lens_name):
    p, lens = digits_predictions["weak"], digits_lenses()[lens_name]
    whole = M.MetricSums.of(p.logits, p.labels, lens)
    chunked = M.MetricSums.zeros(10)
    rule = M.lens_rule(lens)
    for start in range(0, len(p.labels), 128):
        chunked.update(p.logits[start : start + 128], p.labels[start : start + 128], rule)
    for name in ("confusion", "lens_hit", "top_k_hit"):
        assert torch.equal(getattr(chunked, name), getattr(whole, name)), name
    for name in ("calibration", "lensed_calibration"):
        assert torch.equal(getattr(chunked, name)[0], getattr(whole, name)[0])  # counts exactly
        torch.testing.assert_close(getattr(chunked, name), getattr(whole, name))
    torch.testing.assert_close(chunked.lens_score, whole.lens_score)
    for key, value in whole.summary().items():
        assert chunked.summary()[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_sum_of_shards_equals_the_concatenation(digits_predictions):
    """What torchrun's all_reduce does: each process sums its shard, the tensors are added."""
    weak, strong = digits_predictions["weak"], digits_predictions["strong"]
    lens = digits_lenses()["merge"]
    shards = [M.MetricSums.of(weak.logits, weak.labels, lens), M.MetricSums.of(strong.logits, strong.labels, lens)]
    reduced = M.MetricSums.zeros(10)
    for shard in shards:
        for total, part in zip(reduced.tensors(), shard.tensors()):
            total.add_(part)  # all_reduce(SUM), tensor by tensor
    together = M.MetricSums.of(torch.cat([weak.logits, strong.logits]), torch.cat([weak.labels, strong.labels]), lens)
    assert torch.equal(reduced.confusion, together.confusion)
    for mine, theirs in zip(reduced.tensors(), together.tensors()):
        torch.testing.assert_close(mine, theirs)
    assert shards[0].add_(shards[1]).summary() == pytest.approx(together.summary())


def test_no_samples_give_nan_shares():
    summary = M.MetricSums.zeros(4).summary()
    assert summary["num_samples"] == 0 and np.isnan(summary["accuracy"]) and np.isnan(summary["ece"])
    assert summary["macro_f1"] == 0.0 and summary["weighted_f1"] == 0.0  # sklearn's zero_division=0


# ------------------------------------------------------------ properties against the references


@st.composite
def predictions(draw, min_classes=2):
    k = draw(st.integers(min_classes, 7))
    n = draw(st.integers(1, 40))
    # Small integers make ties common; some classes get no samples and some no predictions.
    values = draw(st.lists(st.integers(-3, 3), min_size=n * k, max_size=n * k))
    present = draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    labels = draw(st.lists(st.sampled_from(present), min_size=n, max_size=n))
    return torch.tensor(values, dtype=torch.float64).reshape(n, k), torch.tensor(labels, dtype=torch.int64)


@given(predictions())
def test_scores_match_sklearn_on_random_predictions(data):
    logits, labels = data
    sums = M.MetricSums.of(logits, labels)
    _check_scores_against_sklearn(sums, labels, torch.as_tensor(torch.softmax(logits, 1).numpy().argmax(1)))


@given(predictions(min_classes=3), st.integers(1, 6))
def test_top_k_matches_sklearn_ties_included(data, k):
    logits, labels = data
    k = min(k, logits.shape[1])
    expected = top_k_accuracy_score(labels.numpy(), logits.numpy(), k=k, labels=np.arange(logits.shape[1]))
    assert float(M.top_k_hits(logits, labels, k).double().mean()) == pytest.approx(expected, rel=1e-12)


@given(predictions(), st.floats(0.1, 20.0))
def test_calibration_matches_torchmetrics_on_random_predictions(data, scale):
    logits, labels = data
    logits = (logits * scale).float()
    summary = M.MetricSums.of(logits, labels).summary()
    for key, norm in (("ece", "l1"), ("mce", "max")):
        assert summary[key] == pytest.approx(
            _torchmetrics_calibration(torch.softmax(logits, 1), labels, norm), rel=1e-5, abs=1e-6
        )


@given(predictions(), st.integers(1, 5))
def test_any_split_into_two_adds_up(data, cut):
    logits, labels = data
    cut = min(cut, len(labels))
    lens = ld.smoothing_lens(logits.shape[1], 0.3)
    split = M.MetricSums.of(logits[:cut], labels[:cut], lens).add_(M.MetricSums.of(logits[cut:], labels[cut:], lens))
    whole = M.MetricSums.of(logits, labels, lens)
    for mine, theirs in zip(split.tensors(), whole.tensors()):
        torch.testing.assert_close(mine, theirs)


# ------------------------------------------------------------ errors


def test_errors_users_can_cause():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ld.InputError, match=r"k in 1\.\.3 for the top-k accuracy, found 4"):
        M.MetricSums.of(x, y, k=4)
    with pytest.raises(ld.InputError, match="calibration bins >= 1, found 0"):
        M.MetricSums.zeros(3, n_bins=0)
    with pytest.raises(ld.InputError, match="sums of 3 classes, top-2, 15 bins"):
        M.MetricSums.zeros(3).add_(M.MetricSums.zeros(3, k=1))
    with pytest.raises(ld.InputError, match="3 class names, found 2"):
        M.MetricSums.zeros(3).per_class_table(["a", "b"])
    with pytest.raises(ld.InputError, match="norm 'l1' or 'max'"):
        M.calibration_error(M.MetricSums.zeros(3).calibration, "l2")
    with pytest.raises(ld.InputError, match="a lens rule for 3 classes, found one for 4"):
        M.MetricSums.of(x, y, M.lens_rule(torch.eye(4)))
    with pytest.raises(ld.LensError, match="expected a 3×3 lens"):
        M.MetricSums.of(x, y, torch.eye(4))
    with pytest.raises(ld.InputError, match="int64"):
        M.MetricSums.of(x, y.int())


# ------------------------------------------------------------ benchmark


def test_metrics_benchmark_runs_at_a_tiny_size(capsys):
    from benchmarks.__main__ import available, main

    assert "metrics" in available()
    main(["metrics", "--rows", "300", "--cols", "12", "--repeats", "1"])
    out = capsys.readouterr().out
    for lens in ("identity", "merge (3 groups of <= 5)", "smoothing 0.1", "hierarchy (soft)"):
        assert f"MetricSums.update / analyze, {lens}" in out


@given(predictions(min_classes=3), st.integers(0, 2**31 - 1))
def test_lens_aware_counts_follow_the_rule_for_random_lenses(data, seed):
    """Random lenses with exact zeros and ties: MetricSums' lens counts equal the rule applied sample by sample."""
    logits, labels = data
    k = logits.shape[1]
    gen = torch.Generator().manual_seed(seed)
    lens = torch.randint(0, 4, (k, k), generator=gen).double().fill_diagonal_(1.0)  # ties and halves are common
    lens = lens / lens.sum(1, keepdim=True)
    predicted = torch.softmax(logits, 1).argmax(1)
    hits = [bool(lens[y, p] >= 0.5 * lens[y].max()) for y, p in zip(labels.tolist(), predicted.tolist())]
    credit = [float(lens[y, p] / lens[y].max()) for y, p in zip(labels.tolist(), predicted.tolist())]
    sums = M.MetricSums.of(logits, labels, lens)
    assert float(sums.lens_hit.sum()) == sum(hits)
    assert float(sums.lens_score.sum()) == pytest.approx(sum(credit), rel=1e-12, abs=1e-12)
