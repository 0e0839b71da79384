r"""The soft hierarchy lens's β in the terms a user thinks in: the mass a row keeps on the true class or its group.

Row ``y`` of the lens is :math:`C_{yj} = \exp(-\beta\, d(y, j) / d_{max}) / Z_y` (Bertinetto et al. 2020), with
``d`` the class distances of :meth:`lensdash.hierarchy.Hierarchy.distances`. Lens convention: row ``y`` is the
target distribution when the true label is ``y``. Public names are re-exported by :mod:`lensdash.hierarchy`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import torch
from torch import Tensor

from lensdash.errors import InputError

#: Share of each row's mass on the true class that :func:`default_beta` aims for (when K > 3).
DEFAULT_MASS_KEPT = 0.5


def _soft_rows(scaled: Tensor, beta: float) -> Tensor:
    return torch.softmax(-beta * scaled, dim=1)


def _normalised(distances: Tensor) -> Tensor:
    d = torch.as_tensor(distances, dtype=torch.float64)
    if d.dim() != 2 or d.shape[0] != d.shape[1] or d.shape[0] < 2:
        raise InputError.build("a K×K distance matrix, K >= 2", f"shape {tuple(d.shape)}", fix="Use distances().")
    top = float(d.max())
    if not math.isfinite(top) or top <= 0 or bool((d < 0).any()):
        raise InputError.build(
            "finite, non-negative distances, some positive", f"largest {top}", fix="Use Hierarchy.distances()."
        )
    return d / top


def _group_mask(groups: Sequence[Hashable], k: int) -> Tensor:
    if len(groups) != k:
        raise InputError.build(f"{k} group labels (one per class)", f"{len(groups)}", fix="Use ancestor_at().")
    ids: dict[Hashable, int] = {}
    index = torch.tensor([ids.setdefault(g, len(ids)) for g in groups])
    return index.unsqueeze(0) == index.unsqueeze(1)


def mass_kept(distances: Tensor, beta: float, *, groups: Sequence[Hashable] | None = None) -> float:
    r"""Mean over classes of the mass a soft-label row keeps on the true class (or inside its group).

    Row ``y`` is :math:`C_{yj} = \exp(-\beta d(y,j)/d_{max}) / Z_y` (Bertinetto et al. 2020); this returns
    :math:`\frac1K \sum_y C_{yy}`, or with ``groups`` :math:`\frac1K \sum_y \sum_{j: g_j = g_y} C_{yj}`.

    Example:
        >>> round(mass_kept(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), 0.0), 3)
        0.5
    """
    scaled = _normalised(distances)
    rows = _soft_rows(scaled, float(beta))
    if groups is None:
        return float(rows.diagonal().mean())
    return float((rows * _group_mask(groups, scaled.shape[0])).sum(dim=1).mean())


def beta_for_mass(distances: Tensor, mass: float, *, groups: Sequence[Hashable] | None = None) -> float:
    r"""The β at which :func:`mass_kept` equals ``mass``: "keep this share on the true class (or its group)".

    Convention: the *mean over classes* of each row's mass on the true class (with ``groups``: on the classes
    sharing the true class's group, e.g. ``hierarchy.ancestor_at(1, classes)``). Both grow monotonically with β
    (every class outside a hierarchy group is farther than every class inside it), so bisection on β finds it to
    1e-9 relative. The β is the paper's, on distances divided by their largest value.

    Args:
        distances: K×K class distances (``Hierarchy.distances``).
        mass: target share, strictly between its value at β = 0 (uniform rows) and 1.
        groups: one group label per class, or ``None`` for the true class alone.

    Returns:
        β >= 0.

    Raises:
        InputError: ``mass`` not reachable (at or below the uniform share, or >= 1).

    Example:
        >>> d = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 2.0], [2.0, 2.0, 0.0]])
        >>> beta = beta_for_mass(d, 0.8)
        >>> round(mass_kept(d, beta), 6)
        0.8
    """
    mass = float(mass)
    low_mass = mass_kept(distances, 0.0, groups=groups)
    if not (low_mass < mass < 1.0):
        raise InputError.build(
            f"a share between {low_mass:.4g} (uniform rows) and 1",
            f"{mass}",
            fix="Pick a share of the row's mass that the true class (or its group) should keep.",
        )
    scaled = _normalised(distances)
    mask = None if groups is None else _group_mask(groups, scaled.shape[0])

    def kept(beta: float) -> float:
        rows = _soft_rows(scaled, beta)
        return float(rows.diagonal().mean() if mask is None else (rows * mask).sum(dim=1).mean())

    lo, hi = 0.0, 1.0
    while kept(hi) < mass:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            return hi
    for _ in range(200):
        mid = (lo + hi) / 2
        if kept(mid) < mass:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-9 * hi:
            break
    return (lo + hi) / 2


def default_beta(distances: Tensor) -> float:
    """A β that is sensible at any K: the true class keeps half of each row on average.

    With K ≤ 3 half the mass is close to uniform (or is uniform at K = 2), so the target is then
    ``1/K + 0.25``. On CIFAR-100's tree (K = 100) this gives β ≈ 5.0: half of each row on the true class and two
    thirds inside its superclass, within the paper's 4–30.

    Example:
        >>> d = torch.tensor([[0.0, 1.0, 2.0, 2.0], [1.0, 0.0, 2.0, 2.0], [2.0, 2.0, 0.0, 1.0], [2.0, 2.0, 1.0, 0.0]])
        >>> round(mass_kept(d, default_beta(d)), 6)
        0.5
    """
    k = torch.as_tensor(distances).shape[0]
    return beta_for_mass(distances, max(DEFAULT_MASS_KEPT, 1.0 / max(k, 1) + 0.25))
