"""The arguments of the fused loss kernels in :mod:`lensdash._kernels`: lens tables per side (private).

Lens convention: row ``i`` of a lens is the target distribution when the true label is ``i``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor

from lensdash._kernels import (
    _FUSED_SUPPORT,
    _prediction_index_kernel,
    _prediction_probability_kernel,
    _target_index_kernel,
    _target_probability_kernel,
)
from lensdash._plan import PredictionPlan, TargetPlan
from lensdash.lens import Lens, lens_matrix


def index_args(
    side: str, plan: TargetPlan | PredictionPlan, w: Tensor | None, eps: float, k: int, entropy: bool, compiled: bool
) -> tuple[Callable, tuple]:
    """Kernel and its lens tables (K-sized) for class-index targets; the labels go in as they are.

    Unweighted, the tables depend on the plan and the arguments only: they are kept on the plan (which is
    rebuilt whenever the lens changes), so a training step does no K×K work of its own.
    """
    if w is None and not torch.compiler.is_compiling():
        key = (side, eps, k, entropy, compiled)
        if key not in plan.derived:
            plan.derived[key] = _index_args(side, plan, None, eps, k, entropy, compiled)
        return plan.derived[key]
    return _index_args(side, plan, w, eps, k, entropy, compiled)


def _index_args(
    side: str, plan: TargetPlan | PredictionPlan, w: Tensor | None, eps: float, k: int, entropy: bool, compiled: bool
) -> tuple[Callable, tuple]:
    if side == "target":
        assert isinstance(plan, TargetPlan)
        return _target_index_kernel, _target_index_args(plan, w, eps, k, entropy, compiled)
    assert isinstance(plan, PredictionPlan)
    # Prediction side with smoothing: (1-eps) * (-log (p C)_y) + eps/K * sum_j w_j (-log p_j).
    v, v_uniform = (None, eps / k) if w is None else ((w * (eps / k) if eps else None), 0.0)
    if plan.log_columns is not None:
        log_colsum = torch.logsumexp(plan.log_columns, dim=1)
    else:
        assert plan.col_logval is not None
        beta = torch.exp(plan.log_beta) if plan.log_beta is not None else 0.0
        log_colsum = torch.log(torch.exp(plan.col_logval).sum(dim=1) + beta * k)
    # log(beta + entry) per support entry, for the compiled pass (which builds log C[:, y] by compares alone)
    logfloor = plan.col_logval
    if logfloor is not None and plan.log_beta is not None:
        logfloor = torch.logaddexp(logfloor, plan.log_beta)
    # beta + entry per support entry, for the compiled pass of a lens with a background (summed in linear space)
    floor = None if logfloor is None or plan.log_beta is None else torch.exp(logfloor)
    tables = (plan.log_columns, plan.col_idx, plan.col_logval, plan.log_beta, logfloor, floor, log_colsum, v, v_uniform)
    if compiled and plan.col_idx is not None and plan.col_idx.shape[1] > _FUSED_SUPPORT:
        # Too many compares per entry: read the dense column instead (still never forming C[:, y]).
        assert plan.col_logval is not None
        dense = torch.full((k, k), -torch.inf, dtype=plan.col_logval.dtype, device=plan.col_logval.device)
        if plan.log_beta is not None:
            dense = torch.full_like(dense, float(plan.log_beta))
        dense = dense.scatter(1, plan.col_idx, torch.logaddexp(plan.col_logval, dense.gather(1, plan.col_idx)))
        tables = (dense, None, None, None, None, None, log_colsum, v, v_uniform)
    return _prediction_index_kernel, (w, 1.0 - eps, *tables)


def _target_index_args(plan: TargetPlan, w: Tensor | None, eps: float, k: int, entropy: bool, compiled: bool) -> tuple:
    """Lens tables for class-index targets: the lens folded with smoothing (and weights, as PyTorch does).

    Unweighted, the target is row ``y`` of ``C_eps = (1-eps) C + eps/K``, a lens of the same structure.
    Weighted, PyTorch weighs the one-hot part by ``w[y]`` and the uniform part class by class
    (``w_j eps/K``), so the lens term is ``(1-eps) C[y]`` scaled by ``w[y]`` plus a per-class term.
    """
    uniform = 0.0 if w is not None else eps / k
    shrink = 1.0 - eps
    if compiled and plan.idx is not None and plan.idx.shape[1] > _FUSED_SUPPORT:
        plan = TargetPlan(plan.rowsum, _dense_rows(plan), None, None, None)  # compares would cost more than a read
    dense = None if plan.dense is None else plan.dense * shrink + uniform
    val = None if plan.val is None else plan.val * shrink
    background = plan.background
    if background is not None:
        background = background * shrink + uniform
    elif plan.dense is None and uniform:
        background = torch.full_like(plan.rowsum, uniform)
    rowsum = plan.rowsum * shrink + uniform * k
    v = None if w is None or not eps else w * (eps / k)
    ent_lens, ent_column = _row_entropy(plan, eps, w, k) if entropy else (None, None)
    return (w, dense, background, plan.idx, val, rowsum, ent_lens, ent_column, v)


def _row_entropy(plan: TargetPlan, eps: float, w: Tensor | None, k: int) -> tuple[Tensor, Tensor | None]:
    """Per lens row ``i``: ``sum_j M_ij log T_ij`` and, weighted with smoothing, ``sum_j v_j log T_ij``.

    ``T = (1-eps) C + eps/K`` is the target distribution and ``M`` the lens term's
    coefficients (``T`` itself unweighted, ``(1-eps) C`` weighted); ``0 log 0 = 0``.
    """
    uniform = eps / k
    weighted = w is not None
    if plan.dense is None and not (weighted and eps):
        # Structured rows: m entries on the support, the other K - m at the background.
        assert plan.val is not None
        bg = plan.background if plan.background is not None else torch.zeros_like(plan.rowsum)
        support = (bg.unsqueeze(1) + plan.val) * (1 - eps) + uniform
        off = bg * (1 - eps) + uniform
        m = plan.val.shape[1]
        ent = torch.where(support > 0, support * torch.log(support), 0.0).sum(dim=1)
        return ent + (k - m) * torch.where(off > 0, off * torch.log(off), 0.0), None
    c = _dense_rows(plan)
    target = c * (1 - eps) + uniform
    log_target = torch.log(target)
    coef = c * (1 - eps) if weighted else target
    ent = torch.where(coef > 0, coef * log_target, 0.0).sum(dim=1)
    if not (weighted and eps):
        return ent, None
    assert w is not None
    v = w * uniform
    return ent, torch.where(v > 0, v * log_target, 0.0).sum(dim=1)


def _dense_rows(plan: TargetPlan) -> Tensor:
    if plan.dense is not None:
        return plan.dense
    assert plan.idx is not None and plan.val is not None
    k = plan.rowsum.shape[0]
    c = torch.zeros(k, k, dtype=plan.val.dtype, device=plan.val.device)
    if plan.background is not None:
        c += plan.background.unsqueeze(1)
    return c.scatter_add_(1, plan.idx, plan.val)


def probability_args(
    side: str,
    t: Tensor,
    lens: object,
    k: int,
    dtype: torch.dtype,
    device: torch.device,
    w: Tensor | None,
    eps: float,
    with_entropy: bool,
) -> tuple[Callable, Tensor, tuple]:
    """Kernel, scale and arguments for probability targets, lensed as ``t C`` (dense, as the target is)."""
    matrix = _dense_lens(lens, k, dtype, device)
    t = t.to(dtype)
    scale = torch.full((), 1.0 / t.shape[0] if t.shape[0] else torch.nan, dtype=dtype, device=device)
    if side == "target":
        lensed = (t @ matrix) * (1 - eps) + eps / k
        weighted = lensed if w is None else lensed * w
        entropy = torch.where(weighted > 0, weighted * torch.log(lensed), 0.0).sum(dim=1) if with_entropy else None
        return _target_probability_kernel, scale, (weighted, entropy)
    coef = t * (1 - eps) if w is None else t * w * (1 - eps)
    v, v_uniform = (None, eps / k) if w is None else ((w * (eps / k) if eps else None), 0.0)
    return _prediction_probability_kernel, scale, (coef, matrix, v, v_uniform)


def _dense_lens(lens: object, k: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The lens matrix for probability targets, cached on an immutable :class:`Lens`."""
    if isinstance(lens, Lens) and not torch.compiler.is_compiling():
        key = ("dense", dtype, device)
        if key not in lens._plans:
            lens._plans[key] = lens_matrix(lens, k, dtype=dtype, device=device)
        return cast(Tensor, lens._plans[key])  # the "dense" entry is always the lens matrix
    if torch.compiler.is_compiling():
        matrix = lens._matrix if isinstance(lens, Lens) else torch.as_tensor(lens)
        return matrix.detach().to(dtype=dtype, device=device)
    return lens_matrix(lens, k, dtype=dtype, device=device)
