r"""Sanity checks as data: the app's sanity panel shows exactly this list.

Each check compares lensdash with an independent computation (PyTorch's own
``F.cross_entropy``, autograd through the seed's formula, the seed's printed
numbers) and reports what was expected, what was found and whether they agree.
Lens convention: rows are target distributions, rows sum to 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lensdash.lens import lens_matrix, merge_lens
from lensdash.losses import (
    check_loss_inputs,
    lensed_cross_entropy,
    prediction_lensed_cross_entropy,
    soft_target_cross_entropy,
)

#: The seed notebook's worked example: softmax output Q for a 4-class problem.
SEED_Q = (0.4, 0.3, 0.2, 0.1)
#: Its printed results: unlensed (label 0) and lensed with classes 0 and 1 merged.
SEED_UNLENSED, SEED_LENSED = 0.9163, 0.3670


@dataclass(frozen=True)
class Check:
    """One sanity check: ``passed`` is whether ``actual`` matches ``expected`` within ``tolerance``."""

    name: str
    expected: float
    actual: float
    passed: bool
    tolerance: float

    def as_dict(self) -> dict:
        return asdict(self)


def _compare(name: str, expected: Tensor, actual: Tensor, tolerance: float) -> Check:
    """Worst element: the expected and actual values where they differ most."""
    expected, actual = expected.reshape(-1).double(), actual.reshape(-1).double()
    same_inf = torch.isinf(expected) & (expected == actual)
    gap = torch.where(same_inf, 0.0, (expected - actual).abs())
    gap = torch.nan_to_num(gap, nan=torch.inf)
    i = int(gap.argmax()) if gap.numel() else 0
    scale = 1.0 + expected.abs().nan_to_num(posinf=0.0)
    passed = bool((gap <= tolerance * scale).all())
    return Check(name, float(expected[i]), float(actual[i]), passed, tolerance)


def seed_example_checks() -> list[Check]:
    """The seed notebook's worked numbers: 0.9163 unlensed, 0.3670 with classes 0 and 1 merged.

    Example:
        >>> [c.passed for c in seed_example_checks()]
        [True, True]
    """
    logq = torch.log(torch.tensor([SEED_Q], dtype=torch.float64))
    label = torch.tensor([0])
    unlensed = lensed_cross_entropy(logq, label, torch.eye(4, dtype=torch.float64))
    lensed = lensed_cross_entropy(logq, label, merge_lens(4, [[0, 1]]).matrix)
    return [
        _compare(
            "seed example: unlensed loss, Q=[.4,.3,.2,.1], label 0",
            torch.tensor(SEED_UNLENSED, dtype=torch.float64),
            unlensed,
            5e-5,
        ),
        _compare(
            "seed example: lensed loss, classes 0 and 1 merged",
            torch.tensor(SEED_LENSED, dtype=torch.float64),
            lensed,
            5e-5,
        ),
    ]


def sanity_checks(
    logits: Tensor, labels: Tensor, lens: object | None = None, *, tolerance: float = 1e-6
) -> list[Check]:
    r"""Run the identity-lens and gradient checks on these predictions.

    Computed in float64 so that a failure means a wrong formula, not rounding.
    The same list as :func:`identity_checks` + :func:`lens_checks` +
    :func:`seed_example_checks` (the app caches the first per dataset).

    Checks:
        * identity lens vs ``F.cross_entropy`` for ``'mean'``, ``'sum'`` and ``'none'``;
        * prediction-side loss with the identity lens vs ``F.cross_entropy``;
        * analytic gradient vs autograd through the seed's formula
          ``F.kl_div(F.log_softmax(x, 1), C[y], reduction='sum') / N``;
        * CE form minus KL form equals the entropy of the lens rows;
        * the seed notebook's worked numbers.

    Args:
        logits: (N, K).
        labels: (N,) int64.
        lens: K×K lens (rows are target distributions) for the gradient and
            entropy checks; default: classes 0 and 1 merged.
        tolerance: relative tolerance of each comparison.

    Returns:
        A list of :class:`Check`.

    Example:
        >>> checks = sanity_checks(torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
        >>> all(c.passed for c in checks)
        True
    """
    return (
        identity_checks(logits, labels, tolerance=tolerance)
        + lens_checks(logits, labels, lens, tolerance=tolerance)
        + seed_example_checks()
    )


def identity_checks(
    logits: Tensor, labels: Tensor, *, tolerance: float = 1e-6, targets: Tensor | None = None
) -> list[Check]:
    """The identity lens (both families) against ``F.cross_entropy``, in float64; no lens needed.

    With soft labels (``targets``, (N, K) distributions) two checks more, against ``F.cross_entropy`` with
    probability targets: the prediction side with the identity lens equals it, and the target side (the KL
    form) equals it less the labels' entropy :math:`H(t_n)`.

    Example:
        >>> [c.passed for c in identity_checks(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))]
        [True, True, True, True]
        >>> t = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
        >>> [c.passed for c in identity_checks(torch.randn(2, 3), torch.tensor([0, 2]), targets=t)][4:]
        [True, True]
    """
    check_loss_inputs(logits, labels, ignore_index=None, allow_spatial=False, allow_probabilities=False)
    x = logits.detach().to(torch.float64)
    eye = torch.eye(x.shape[1], dtype=torch.float64, device=x.device)
    # One pass of the reference; its mean and sum are F.cross_entropy's 'mean' and 'sum' (each a pass over N × K).
    per_sample = F.cross_entropy(x, labels, reduction="none")
    plain = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}
    checks = [
        _compare(
            f"identity lens = F.cross_entropy ({reduction})",
            plain[reduction],
            lensed_cross_entropy(x, labels, eye, reduction=reduction),
            tolerance,
        )
        for reduction in ("mean", "sum", "none")
    ]
    checks.append(
        _compare(
            "prediction-side lens, identity = F.cross_entropy (mean)",
            plain["mean"],
            prediction_lensed_cross_entropy(x, labels, eye),
            tolerance,
        )
    )
    if targets is not None:
        check_loss_inputs(logits, targets, ignore_index=None, allow_spatial=False)
        t = targets.detach().to(device=x.device, dtype=torch.float64)
        reference = F.cross_entropy(x, t, reduction="none")
        entropy = torch.special.entr(t).sum(dim=1)
        checks += [
            _compare(
                "soft labels: target-side lens, identity + H(t) = F.cross_entropy(x, t) (none)",
                reference,
                lensed_cross_entropy(x, t, eye, reduction="none") + entropy,
                tolerance,
            ),
            _compare(
                "soft labels: prediction-side lens, identity = F.cross_entropy(x, t) (none)",
                reference,
                prediction_lensed_cross_entropy(x, t, eye, reduction="none"),
                tolerance,
            ),
        ]
    return checks


def lens_checks(logits: Tensor, labels: Tensor, lens: object | None = None, *, tolerance: float = 1e-6) -> list[Check]:
    """This lens: analytic gradient vs autograd of the seed's formula, and CE form - KL form = row entropy.

    Lens convention: rows are target distributions, rows sum to 1 (default: classes 0 and 1 merged).

    Example:
        >>> [c.passed for c in lens_checks(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))]
        [True, True]
    """
    check_loss_inputs(logits, labels, ignore_index=None, allow_spatial=False, allow_probabilities=False)
    x = logits.detach().to(torch.float64)
    k = x.shape[1]
    matrix = lens_matrix(merge_lens(k, [[0, 1]]) if lens is None else lens, dtype=torch.float64, device=x.device)
    # Zero probabilities (-inf logits) make the seed's formula NaN; move them far
    # below every finite logit instead, which changes neither side's softmax.
    neginf = torch.isneginf(x)
    floor = (x[~neginf].min() if (~neginf).any() else x.new_tensor(0.0)) - 1e4
    xs, ys = torch.where(neginf, floor, x), labels
    ref_x = xs.clone().requires_grad_(True)
    seed = F.kl_div(F.log_softmax(ref_x, 1), matrix[ys], reduction="sum") / max(len(ys), 1)
    (ref_grad,) = torch.autograd.grad(seed, ref_x)
    our_x = xs.clone().requires_grad_(True)
    (our_grad,) = torch.autograd.grad(lensed_cross_entropy(our_x, ys, matrix), our_x)
    entropy = -torch.special.xlogy(matrix, matrix).sum(dim=1)[ys]
    return [
        _compare("analytic gradient = autograd of the seed formula (max |diff|)", ref_grad, our_grad, tolerance),
        _compare(
            "CE form - KL form = entropy of the lens row",
            entropy,
            soft_target_cross_entropy(xs, ys, matrix, reduction="none")
            - lensed_cross_entropy(xs, ys, matrix, reduction="none"),
            tolerance,
        ),
    ]
