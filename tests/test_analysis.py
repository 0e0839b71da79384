import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from reference import forward_correction, seed_per_sample

import lensdash as ld
from lensdash import analysis as A
from lensdash.analysis import FAMILIES, analyze, baseline
from lensdash.sanity import identity_checks, lens_checks, sanity_checks, seed_example_checks


@pytest.fixture
def data():
    x = torch.randn(200, 5, dtype=torch.float64)
    y = torch.randint(0, 5, (200,))
    return x, y, ld.merge_lens(["a", "b", "c", "d", "e"], [["a", "b"]])


def test_analyze_matches_references(data):
    x, y, lens = data
    a = A.analyze(x, y, lens)
    torch.testing.assert_close(a.unlensed_loss, F.cross_entropy(x, y, reduction="none"))
    torch.testing.assert_close(a.lensed_loss, seed_per_sample(x, y, lens.matrix))
    p = torch.softmax(x, 1)
    torch.testing.assert_close(a.p_true, p[torch.arange(200), y])
    torch.testing.assert_close(a.lens_mass, (p * (lens.matrix[y] > 0)).sum(1))
    assert a.class_names == ("a", "b", "c", "d", "e")
    summary = a.summary()
    assert summary["num_samples"] == 200 and summary["num_classes"] == 5
    assert summary["accuracy"] == pytest.approx(A.accuracy(x, y))
    assert summary["lens_aware_accuracy"] == pytest.approx(A.lens_aware_accuracy(x, y, lens))
    assert summary["lens_aware_accuracy"] >= summary["accuracy"]
    assert summary["delta"] == pytest.approx(summary["lensed_loss"] - summary["unlensed_loss"])


def test_class_mean_gradients(data):
    x, y, lens = data
    a = A.analyze(x, y, lens)
    p = torch.softmax(x, 1)
    for i in range(5):
        rows = y == i
        torch.testing.assert_close(a.grad_unlensed[i], (p[rows] - F.one_hot(y[rows], 5)).mean(0))
        torch.testing.assert_close(a.grad_lensed[i], (p[rows] - lens.matrix[y[rows]]).mean(0))
    torch.testing.assert_close(a.grad_difference, a.grad_lensed - a.grad_unlensed)


def test_prediction_family(data):
    x, y, lens = data
    a = A.analyze(x, y, lens, family="prediction")
    torch.testing.assert_close(a.lensed_loss, forward_correction(x, y, lens.matrix))
    with pytest.raises(ld.InputError, match="lens family"):
        A.analyze(x, y, lens, family="other")


def test_per_sample_gradients_match_autograd_of_reference(data):
    x, y, lens = data
    _loss, grad = A.per_sample_losses_and_gradients(x, y, lens.matrix)
    xr = x.clone().requires_grad_(True)
    seed_per_sample(xr, y, lens.matrix).sum().backward()
    torch.testing.assert_close(grad, xr.grad)


def test_tables(data):
    x, y, lens = data
    a = A.analyze(x, y, lens)
    samples = A.per_sample_table(a)
    assert list(samples.columns) == [
        "sample",
        "label",
        "predicted",
        "unlensed_loss",
        "lensed_loss",
        "delta",
        "p_true",
        "lens_mass",
    ]
    assert len(samples) == 200 and samples["label"].iloc[0] == "abcde"[int(y[0])]
    classes = A.per_class_table(a)
    assert classes["count"].sum() == 200
    assert classes.loc[2, "delta"] == pytest.approx(0.0, abs=1e-12)  # 'c' is not lensed
    conf = A.confusion_table(a)
    assert conf.values.sum() == 200 and conf.index.name == "true"
    norm = A.confusion_table(a, normalize=True)
    pd.testing.assert_series_equal(norm.sum(axis=1), pd.Series(1.0, index=norm.index), check_names=False)
    grad = A.gradient_table(a.grad_lensed, a.class_names)
    assert grad.shape == (5, 5)


def test_class_with_no_samples_is_nan_in_per_class_table():
    x = torch.randn(4, 3)
    y = torch.tensor([0, 0, 1, 1])
    table = A.per_class_table(A.analyze(x, y, torch.eye(3)))
    assert table.loc[2, "count"] == 0 and pd.isna(table.loc[2, "accuracy"])


def test_confusion_counts():
    counts = A.confusion_counts(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 2]), 3)
    torch.testing.assert_close(counts, torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 1]]))


def test_sanity_checks_pass_on_random_data(data):
    x, y, lens = data
    checks = sanity_checks(x.float(), y, lens)
    assert len(checks) == 8
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    assert {"name", "expected", "actual", "passed", "tolerance"} <= set(checks[0].as_dict())


def test_sanity_checks_handle_zero_probabilities():
    logits = torch.log(torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]]))
    checks = sanity_checks(logits, torch.tensor([0, 1]))
    assert all(c.passed for c in checks)


def test_seed_checks_report_the_seed_numbers():
    unlensed, lensed = seed_example_checks()
    assert unlensed.expected == 0.9163 and abs(unlensed.actual - 0.9163) < 5e-5 and unlensed.passed
    assert lensed.expected == 0.3670 and lensed.passed


def test_a_wrong_value_fails_a_check():
    from lensdash.sanity import _compare

    check = _compare("x", torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.1]), 1e-6)
    assert not check.passed and check.actual == pytest.approx(2.1)


def test_analysis_with_a_cached_baseline_equals_the_full_one():
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(300, 12, generator=gen) * 3, torch.randint(0, 12, (300,), generator=gen)
    x[0, 1] = -torch.inf  # a zero probability
    lenses = [ld.merge_lens(12, [[0, 1, 2]]).matrix, torch.softmax(torch.randn(12, 12, generator=gen), 1)]
    base = baseline(x, y)
    for lens in lenses:
        for family in FAMILIES:
            full, reused = analyze(x, y, lens, family=family), analyze(x, y, lens, family=family, baseline=base)
            for field in (
                "unlensed_loss",
                "lensed_loss",
                "p_true",
                "lens_mass",
                "lens_hit",
                "grad_unlensed",
                "grad_lensed",
                "confusion",
            ):
                torch.testing.assert_close(getattr(reused, field), getattr(full, field))
            support = torch.as_tensor(lens) > 0
            torch.testing.assert_close(full.lens_mass, (torch.softmax(x, 1) * support[y]).sum(1))


def test_a_baseline_of_other_predictions_is_refused():
    with pytest.raises(ld.InputError, match=r"expected a baseline of these 4 × 3 predictions, found one of 5 × 3"):
        analyze(
            torch.zeros(4, 3),
            torch.zeros(4, dtype=torch.long),
            torch.eye(3),
            baseline=baseline(torch.zeros(5, 3), torch.zeros(5, dtype=torch.long)),
        )


def test_sanity_checks_are_identity_plus_lens_plus_seed_checks():
    x, y = torch.randn(20, 4), torch.randint(0, 4, (20,))
    names = [c.name for c in sanity_checks(x, y)]
    assert names == [c.name for c in identity_checks(x, y) + lens_checks(x, y) + seed_example_checks()]


def test_suggest_groups_ignores_classes_with_too_few_samples():
    counts = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 10]])  # two samples each: noise
    assert A.suggest_groups(counts, ["a", "b", "c"]) == []
    assert A.suggest_groups(counts * 5, ["a", "b", "c"]) == [["a", "b"]]


def test_lens_pairs_lists_off_diagonal_mass_largest_first():
    lens = ld.Lens([[0.6, 0.3, 0.1], [0, 1, 0], [0.2, 0, 0.8]], ["a", "b", "c"])
    table = A.lens_pairs(lens)
    assert table.values.tolist() == [["a", "b", 0.3], ["c", "a", 0.2], ["a", "c", 0.1]]
    assert A.lens_pairs(torch.eye(3)).empty


# ------------------------------------------------------------ the lens-aware rule


def _rule_by_loop(lens: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """The rule as the issue states it, one sample at a time: C[y, ŷ] >= 0.5 max_j C[y, j]; soft C[y, ŷ] / max."""
    hits, credit = [], []
    for row, y in zip(logits.tolist(), labels.tolist()):
        predicted = max(range(len(row)), key=lambda j: (row[j], -j))  # first maximum, as argmax
        weights = lens[y].tolist()
        hits.append(weights[predicted] >= 0.5 * max(weights))
        credit.append(weights[predicted] / max(weights))
    return sum(hits) / len(hits), sum(credit) / len(credit)


def _hand_built_lenses() -> dict[str, torch.Tensor]:
    names = ["a", "b", "c", "d"]
    return {
        "identity": ld.identity_lens(names).matrix,
        "smoothing 0.1": ld.smoothing_lens(names, 0.1).matrix,
        "smoothing 0.7": ld.smoothing_lens(names, 0.7).matrix,
        "uniform": ld.uniform_lens(names).matrix,
        "merge": ld.merge_lens(names, [["a", "b", "c"]]).matrix,
        # exp(-β d / d_max) with d_max = 2: siblings keep e^{-1/2} > 1/2 of the diagonal, cousins e^{-1} < 1/2.
        "hierarchy soft": ld.hierarchy_lens(names, [["a", "b"], ["c", "d"]], beta=1.0).matrix,
        "hierarchy sharp": ld.hierarchy_lens(names, [["a", "b"], ["c", "d"]], beta=50.0).matrix,
        # Row a: a tie for the maximum and an entry of exactly half of it; row d: just under half.
        "ties": torch.tensor(
            [[0.4, 0.4, 0.2, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.2, 0.2, 0.6]],
            dtype=torch.float64,
        ),
    }


def test_lens_hits_on_hand_built_lenses():
    lenses = _hand_built_lenses()
    eye = torch.eye(4, dtype=torch.bool)
    assert torch.equal(A.lens_hits(lenses["identity"]), eye)
    assert torch.equal(A.lens_hits(lenses["smoothing 0.1"]), eye)  # smoothing: top-1
    assert torch.equal(A.lens_hits(lenses["smoothing 0.7"]), eye)  # still top-1 below ε = K/(K+1) = 0.8
    assert torch.equal(A.lens_hits(ld.smoothing_lens(4, 0.8).matrix), torch.ones(4, 4, dtype=torch.bool))
    assert A.lens_hits(lenses["uniform"]).all()
    merge = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(A.lens_hits(lenses["merge"]), merge)
    ties = A.lens_hits(lenses["ties"])
    assert ties[0].tolist() == [True, True, True, False]  # both maxima, and exactly half of it
    assert ties[3].tolist() == [False, False, False, True]  # 0.2 < 0.3
    # Hierarchy: with a soft lens siblings count, with a sharp one only the class itself.
    siblings = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    soft = lenses["hierarchy soft"]
    assert soft[0, 1] >= 0.5 * soft[0, 0] and torch.equal(A.lens_hits(soft), siblings)
    assert torch.equal(A.lens_hits(lenses["hierarchy sharp"]), eye)
    torch.testing.assert_close(
        A.lens_credit(lenses["ties"])[3], torch.tensor([0, 1 / 3, 1 / 3, 1.0], dtype=torch.float64)
    )


@pytest.mark.parametrize("name", list(_hand_built_lenses()))
def test_lens_aware_accuracy_and_soft_score_match_the_rule_sample_by_sample(name):
    lens = _hand_built_lenses()[name]
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(300, 4, generator=gen, dtype=torch.float64), torch.randint(0, 4, (300,), generator=gen)
    hit, soft = _rule_by_loop(lens, x, y)
    assert A.lens_aware_accuracy(x, y, lens) == pytest.approx(hit, abs=1e-12)
    assert A.lens_soft_score(x, y, lens) == pytest.approx(soft, abs=1e-12)
    summary = A.analyze(x, y, lens).summary()
    assert summary["lens_aware_accuracy"] == pytest.approx(hit, abs=1e-12)
    assert summary["lens_soft_score"] == pytest.approx(soft, abs=1e-12)
    sums = A.ClassSums.of(A.analyze(x, y, lens))
    assert sums.summary()["lens_aware_accuracy"] == pytest.approx(hit, abs=1e-12)
    assert sums.summary()["lens_soft_score"] == pytest.approx(soft, abs=1e-12)
    top1 = A.accuracy(x, y)
    if name in ("identity", "smoothing 0.1", "smoothing 0.7", "hierarchy sharp"):
        assert hit == pytest.approx(top1) and soft < 1
    if name == "uniform":
        assert hit == 1.0 and soft == 1.0 and top1 < 0.5
    if name == "merge":  # group accuracy: both in {a, b, c}, or both d
        group = torch.tensor([0, 0, 0, 1])
        assert hit == pytest.approx(float((group[x.argmax(1)] == group[y]).double().mean()))
        assert hit == soft  # a merge lens gives full credit or none


def test_lens_aware_accuracy_no_longer_counts_every_non_zero_weight():
    """The old rule (weight > 0) read 100 % for smoothing; the new one gives top-1 accuracy."""
    x, y = torch.tensor([[3.0, 0.0, 0.0], [3.0, 0.0, 0.0]]), torch.tensor([0, 1])
    assert A.lens_aware_accuracy(x, y, ld.smoothing_lens(3, 0.1)) == 0.5
    assert A.lens_soft_score(x, y, ld.smoothing_lens(3, 0.1)) == pytest.approx((1 + (0.1 / 3) / (0.9 + 0.1 / 3)) / 2)


def test_class_sums_count_and_correct_are_the_confusion_rows_and_diagonal(data):
    x, y, lens = data
    sums = A.ClassSums.of(A.analyze(x, y, lens))
    torch.testing.assert_close(sums.count, torch.bincount(y, minlength=5).double())
    torch.testing.assert_close(sums.correct, A.per_class_total(x.argmax(1) == y, y, 5))
    table = sums.per_class_table("abcde")
    assert "lens_soft_score" in table.columns and (table["lens_soft_score"] <= 1).all()
