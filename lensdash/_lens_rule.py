r"""The lens-aware rule and the accuracies it gives (part of :mod:`lensdash.analysis`, imported from there).

Lens convention: row ``i`` of a lens is the target distribution used when the true label is ``i``; rows sum to 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The lens-aware rule: a prediction counts when its lens weight is at least this share of its row's largest weight.
LENS_HIT_SHARE = 0.5


def lens_credit(lens: object) -> Tensor:
    r"""K×K credit of predicting class ``j`` for true class ``y``: :math:`C_{yj} / \max_i C_{yi}`, in float64.

    Lens convention: rows are target distributions (row ``y`` is used when the
    true label is ``y``), rows sum to 1. The best answer of each row gets 1;
    the identity gives the identity, a merge lens 1 inside each group.

    Example:
        >>> lens_credit([[0.6, 0.3, 0.1], [0, 1, 0], [0, 0, 1]])[0]
        tensor([1.0000, 0.5000, 0.1667], dtype=torch.float64)
    """
    matrix = torch.as_tensor(getattr(lens, "matrix", lens), dtype=torch.float64)
    return matrix / matrix.amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)


def lens_hits(lens: object) -> Tensor:
    r"""K×K bool: the lens-aware rule, :math:`C_{yj} \ge \tfrac12 \max_i C_{yi}`.

    "The lens treats answer ``j`` as at least half as right as the best one for
    true class ``y``." Identity and label smoothing (any :math:`\varepsilon < 1`
    with K ≥ 3, or ε < 2/3 with K = 2) count the true class only, so lens-aware accuracy is top-1 accuracy;
    a merge lens counts every class of the true class's group (group accuracy);
    a uniform lens counts everything. Ties with the row maximum count, and a weight
    of exactly half counts. The comparison is made on the lens's own values
    (halving is exact in floating point), never on a rounded ratio.

    Lens convention: rows are target distributions, rows sum to 1.

    Example:
        >>> lens_hits([[0.5, 0.25, 0.25], [0, 1, 0], [0.1, 0.3, 0.6]]).int()
        tensor([[1, 1, 1],
                [0, 1, 0],
                [0, 1, 1]], dtype=torch.int32)
    """
    matrix = torch.as_tensor(getattr(lens, "matrix", lens))
    if not matrix.is_floating_point():
        matrix = matrix.double()
    return matrix >= LENS_HIT_SHARE * matrix.amax(dim=1, keepdim=True)


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy.

    Example:
        >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        0.5
    """
    return float((logits.argmax(dim=1) == labels).double().mean())


def lens_aware_accuracy(logits: Tensor, labels: Tensor, lens: object) -> float:
    r"""Share of samples whose top-1 prediction ``ŷ`` the lens counts: :math:`C_{y\hat y} \ge \tfrac12 \max_j C_{yj}`.

    The rule is :func:`lens_hits`: identity and label smoothing give top-1 accuracy,
    merge groups give group accuracy. Lens convention: rows are target
    distributions, rows sum to 1.

    Example:
        >>> lens_aware_accuracy(torch.tensor([[0.0, 3.0], [0.0, 3.0]]), torch.tensor([0, 1]), [[.5, .5], [.3, .7]])
        1.0
        >>> lens_aware_accuracy(torch.tensor([[0.0, 3.0]]), torch.tensor([0]), [[.9, .1], [0, 1]])
        0.0
    """
    hits = lens_hits(lens).to(logits.device)
    return float(hits[labels, logits.argmax(dim=1)].double().mean())


def lens_soft_score(logits: Tensor, labels: Tensor, lens: object) -> float:
    r"""Mean lens credit of the top-1 prediction: :math:`\frac1N \sum_n C_{y_n\hat y_n} / \max_j C_{y_n j}`.

    1 for a prediction the lens rates as highly as the best answer, 0 for one it gives no weight
    (:func:`lens_credit`). Lens convention: rows are target distributions, rows sum to 1.

    Example:
        >>> logits = torch.tensor([[0.0, 3.0, 0.0], [3.0, 0.0, 0.0]])
        >>> lens_soft_score(logits, torch.tensor([0, 0]), [[0.6, 0.3, 0.1], [0, 1, 0], [0, 0, 1]])
        0.75
    """
    credit = lens_credit(lens).to(logits.device)
    return float(credit[labels, logits.argmax(dim=1)].mean())
