"""Soft labels (a target distribution per sample) through the analysis: losses, gradients, the label-based numbers.

References: ``F.cross_entropy`` with probability targets, a plain loop for the lensed target t·C and for the
prediction-side loss, and the hard-label analysis (one-hot soft labels must give exactly it).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from reference import random_lens

import lensdash as ld
from lensdash.analysis import (
    ClassSums,
    analyze,
    baseline,
    class_mean,
    lens_hits,
    per_sample_losses_and_gradients,
    target_entropy,
    unlensed_losses,
)

N, K = 60, 5


def _lensed_targets_loop(t, lens):
    """t·C, one sum at a time: row n, class j is Σ_i t[n, i] C[i, j]."""
    out = torch.zeros_like(t)
    for n in range(t.shape[0]):
        for j in range(t.shape[1]):
            out[n, j] = sum(float(t[n, i]) * float(lens[i, j]) for i in range(t.shape[1]))
    return out


def _prediction_loop(x, t, lens):
    """−Σ_y t[n, y] log (softmax(x_n) C)_y, one sample at a time."""
    out = []
    for n in range(x.shape[0]):
        p = torch.softmax(x[n], 0).tolist()
        total = 0.0
        for y in range(x.shape[1]):
            if float(t[n, y]) > 0:
                total -= float(t[n, y]) * math.log(sum(p[j] * float(lens[j, y]) for j in range(x.shape[1])))
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def _data(seed, *, zeros=True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, K, generator=gen, dtype=torch.float64) * 2
    alpha = torch.full((K,), 0.5, dtype=torch.float64)
    t = torch.distributions.Dirichlet(alpha).sample((N,))
    if zeros:  # some annotators agree: rows with zeros, and one-hot rows
        t[::4] = torch.where(t[::4] < 0.15, 0.0, t[::4])
        t[::4] /= t[::4].sum(1, keepdim=True)
        t[1::7] = F.one_hot(t[1::7].argmax(1), K).double()
    return x, t, t.argmax(1)


LENSES = {
    "identity": lambda gen: torch.eye(K, dtype=torch.float64),
    "merge": lambda gen: ld.merge_lens(K, [[0, 1], [2, 3, 4]]).matrix.double(),
    "smoothing": lambda gen: ld.smoothing_lens(K, 0.2).matrix.double(),
    "random": lambda gen: random_lens(K, generator=gen, zeros=False),
}


@pytest.mark.parametrize("lens_name", list(LENSES))
@pytest.mark.parametrize("seed", [0, 1])
def test_target_side_against_cross_entropy_with_probability_targets(lens_name, seed):
    x, t, y = _data(seed)
    lens = LENSES[lens_name](torch.Generator().manual_seed(seed))
    lensed_t = _lensed_targets_loop(t, lens)
    a = analyze(x, y, lens, targets=t)
    # KL(tC ‖ softmax) = F.cross_entropy(x, tC) − H(tC); its gradient is F.cross_entropy's.
    expected = F.cross_entropy(x, lensed_t, reduction="none") - target_entropy(lensed_t)
    torch.testing.assert_close(a.lensed_loss, expected)
    loss, grad = per_sample_losses_and_gradients(x, y, lens, targets=t)
    torch.testing.assert_close(loss, expected)
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(xr, lensed_t, reduction="sum").backward()
    torch.testing.assert_close(grad, xr.grad)
    torch.testing.assert_close(grad, torch.softmax(x, 1) - lensed_t)
    # The class means group by the majority label.
    torch.testing.assert_close(a.grad_lensed, class_mean(xr.grad, y, K))
    torch.testing.assert_close(a.grad_unlensed, class_mean(torch.softmax(x, 1) - t, y, K))
    # Unlensed: the same family with the identity lens, KL(t ‖ softmax) = cross-entropy − H(t).
    torch.testing.assert_close(a.unlensed_loss, F.cross_entropy(x, t, reduction="none") - target_entropy(t))
    # Mass on the support of each sample's own lensed target.
    torch.testing.assert_close(a.lens_mass, (torch.softmax(x, 1) * (lensed_t > 0)).sum(1))


@pytest.mark.parametrize("lens_name", list(LENSES))
def test_prediction_side_against_a_loop(lens_name):
    x, t, y = _data(2)
    lens = LENSES[lens_name](torch.Generator().manual_seed(2))
    a = analyze(x, y, lens, family="prediction", targets=t)
    torch.testing.assert_close(a.lensed_loss, _prediction_loop(x, t, lens))
    torch.testing.assert_close(a.unlensed_loss, F.cross_entropy(x, t, reduction="none"))
    xr = x.clone().requires_grad_(True)
    _prediction_loop_autograd = -(t * torch.log(torch.softmax(xr, 1) @ lens)).nan_to_num().sum()
    _prediction_loop_autograd.backward()
    _, grad = per_sample_losses_and_gradients(x, y, lens, family="prediction", targets=t)
    torch.testing.assert_close(grad, xr.grad)


@pytest.mark.parametrize("family", ["target", "prediction"])
def test_identity_lens_changes_nothing(family):
    x, t, y = _data(3)
    a = analyze(x, y, torch.eye(K, dtype=torch.float64), family=family, targets=t)
    torch.testing.assert_close(a.lensed_loss, a.unlensed_loss)
    torch.testing.assert_close(a.grad_lensed, a.grad_unlensed)
    torch.testing.assert_close(unlensed_losses(x, y, family=family, targets=t), a.unlensed_loss)


@pytest.mark.parametrize("family", ["target", "prediction"])
@pytest.mark.parametrize("lens_name", ["merge", "smoothing", "random"])
def test_one_hot_soft_labels_equal_hard_labels(family, lens_name):
    x, _, y = _data(4)
    lens = LENSES[lens_name](torch.Generator().manual_seed(4))
    hard = analyze(x, y, lens, family=family)
    soft = analyze(x, y, lens, family=family, targets=F.one_hot(y, K).double())
    assert soft.soft_labels and not hard.soft_labels
    for name in ("unlensed_loss", "lensed_loss", "p_true", "lens_mass", "grad_unlensed", "grad_lensed"):
        torch.testing.assert_close(getattr(soft, name), getattr(hard, name), msg=name)
    for name in ("predicted", "lens_hit", "lens_score", "confusion"):
        assert torch.equal(getattr(soft, name), getattr(hard, name)), name
    assert soft.summary() == pytest.approx(hard.summary())
    sums_soft, sums_hard = ClassSums.of(soft), ClassSums.of(hard)
    for mine, theirs in zip(sums_soft.tensors(), sums_hard.tensors()):
        torch.testing.assert_close(mine, theirs)


def test_label_based_numbers_use_the_majority_label():
    x, t, y = _data(5)
    lens = LENSES["merge"](None)
    a = analyze(x, y, lens, targets=t)
    assert a.summary()["accuracy"] == pytest.approx(float((x.argmax(1) == y).double().mean()))
    torch.testing.assert_close(a.p_true, torch.softmax(x, 1)[torch.arange(N), y])
    assert torch.equal(a.lens_hit, lens_hits(lens)[y, x.argmax(1)])
    assert int(a.confusion.sum()) == N and torch.equal(a.confusion.sum(1), torch.bincount(y, minlength=K))


def test_baseline_with_soft_labels_is_reused_and_checked():
    x, t, y = _data(6)
    lens = LENSES["smoothing"](None)
    base = baseline(x, y, t)
    reused = analyze(x, y, lens, baseline=base, targets=t)
    fresh = analyze(x, y, lens, targets=t)
    torch.testing.assert_close(reused.unlensed_loss, fresh.unlensed_loss)
    torch.testing.assert_close(reused.lensed_loss, fresh.lensed_loss)
    with pytest.raises(ld.InputError, match="without soft labels"):
        analyze(x, y, lens, baseline=baseline(x, y), targets=t)
    with pytest.raises(ld.InputError, match="with soft labels"):
        analyze(x, y, lens, baseline=base)
    with pytest.raises(ld.InputError, match="soft labels as a floating-point tensor"):
        analyze(x, y, lens, targets=t[:, :3])
    with pytest.raises(ld.InputError, match="soft labels as a floating-point tensor"):
        baseline(x, y, t.long())


def test_float32_targets_with_float64_logits():
    x, t, y = _data(7)
    a = analyze(x, y, LENSES["merge"](None), targets=t.float())
    b = analyze(x, y, LENSES["merge"](None), targets=t.float().double())
    torch.testing.assert_close(a.lensed_loss, b.lensed_loss)


def test_soft_label_file_end_to_end(tmp_path):
    """read_predictions detects the soft-label file; analyze takes Predictions.targets."""
    x, t, _ = _data(8, zeros=False)
    names = ["ant", "bee", "cat", "dog", "eel"]
    preds_path, labels_path = tmp_path / "p.csv", tmp_path / "soft.csv"
    preds_path.write_text(
        ",".join(names) + "\n" + "\n".join(",".join(f"{v:.17g}" for v in row) for row in x.tolist()) + "\n"
    )
    labels_path.write_text(
        ",".join(names) + "\n" + "\n".join(",".join(f"{v:.17g}" for v in row) for row in t.tolist()) + "\n"
    )
    preds = ld.read_predictions(preds_path, labels_path, kind="logits")
    assert preds.targets is not None
    lens = ld.merge_lens(names, [["ant", "bee"]])
    a = analyze(preds.logits, preds.labels, lens, targets=preds.targets, class_names_=preds.class_names)
    lensed_t = _lensed_targets_loop(preds.targets.double(), lens.matrix.double())
    expected = F.cross_entropy(preds.logits.double(), lensed_t, reduction="none") - target_entropy(lensed_t)
    torch.testing.assert_close(a.lensed_loss.double(), expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(preds.labels, preds.targets.argmax(1))


def test_unlensed_loss_stays_finite_for_extreme_logits():
    """The unlensed loss is F.cross_entropy's, in log space: a class with probability 1e-87 costs 200, not inf."""
    x = torch.tensor([[0.0, -200.0, 1.0]])
    t = torch.tensor([[0.5, 0.5, 0.0]])
    for family in ("target", "prediction"):
        a = analyze(x, torch.tensor([0]), torch.eye(3), family=family, targets=t)
        expected = F.cross_entropy(x, t, reduction="none") - (target_entropy(t) if family == "target" else 0)
        torch.testing.assert_close(a.unlensed_loss, expected)
        assert torch.isfinite(a.unlensed_loss).all()


def test_sanity_checks_with_soft_labels():
    from lensdash.sanity import identity_checks

    x, t, y = _data(9)
    checks = identity_checks(x, y, targets=t)
    soft = [c for c in checks if c.name.startswith("soft labels")]
    assert len(soft) == 2 and all(c.passed for c in checks)
    assert len(identity_checks(x, y)) == len(checks) - 2
