"""The compiled side of the fused loss kernels in :mod:`lensdash._kernels` (private): the passes written for inductor,
the finish kernels that turn their row reductions into the loss, and the label helpers both sides share.

Lens convention: row ``i`` of a lens is the target distribution when the true label is ``i``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _labels(
    t: Tensor, k: int, ignore_index: int, w: Tensor | None, dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor]:
    """Usable labels ``y`` (ignored and out-of-range ones as 0), ``keep`` (0 for those) and ``w[y]·keep``."""
    kept = (t >= 0) & (t < k) & (t != ignore_index)
    y = torch.where(kept, t, 0)
    keep = kept.to(dtype)
    return y, keep, keep if w is None else w[y] * keep


def label_summary(
    t: Tensor, k: int, ignore_index: int, w: Tensor | None, mean: bool, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """The reduction's scale (the inverse of the summed weights for ``'mean'``, else 1) and the count of bad labels.

    A kernel of its own: computed before the fused pass, so that the pass's row loop never waits on a
    reduction over all rows.
    """
    bad = (((t < 0) | (t >= k)) & (t != ignore_index)).sum()
    counted = _labels(t, k, ignore_index, w, dtype)[2]
    scale = 1.0 / counted.sum() if mean else torch.ones((), dtype=dtype, device=t.device)
    return scale, bad


def grad_scale(scale: Tensor) -> Tensor:
    """The reduction's scale for the gradient: 0 where no sample counts (``'mean'`` over none: the loss is nan,
    0 / 0, and the gradient 0, as in PyTorch), else the scale itself."""
    return torch.where(torch.isinf(scale), 0.0, scale)


def _classes(k: int, device: torch.device) -> Tensor:
    """Class indices ``0..K-1`` to compare lens supports with, in int32: inductor compares 16 int32 lanes in one
    vector where int64 takes two and a mask conversion (5-9% of a pass with a four-wide support, measured)."""
    return torch.arange(k, dtype=torch.int32, device=device)


def _row_expression(
    y: Tensor, k: int, dense: Tensor | None, background: Tensor | None, idx: Tensor | None, val: Tensor | None
) -> Tensor:
    """Lens rows ``C[y]`` (M, K) as an expression for the compiler: an indexed read, or compares on the support."""
    if dense is not None:
        return dense[y]
    assert idx is not None and val is not None
    classes = _classes(k, y.device)
    rows = torch.zeros((), dtype=val.dtype, device=y.device)
    for j in range(idx.shape[1]):
        rows = rows + torch.where(idx[:, j][y].to(torch.int32).unsqueeze(1) == classes, val[:, j][y].unsqueeze(1), 0.0)
    if background is not None:
        rows = rows + background[y].unsqueeze(1)
    return rows


def _background_colsum(shifted: Tensor, v: Tensor | None, v_uniform: float) -> Tensor | None:
    """``sum_j v_j (x_j - m)`` per row, the background's part of the loss (None without a background)."""
    if v is not None:
        return torch.where(v > 0, v * shifted, 0.0).sum(dim=1)
    if v_uniform:
        return v_uniform * shifted.sum(dim=1)
    return None


def _background_mass(v: Tensor | None, v_uniform: float, k: int) -> Tensor | float:
    """``sum_j v_j``, the background's total mass: a column ``v`` or ``v_uniform`` on each of the ``k`` classes."""
    return v.sum() if v is not None else v_uniform * k


def _minus_column(grad: Tensor, scale: Tensor, keep: Tensor, v: Tensor | None, v_uniform: float) -> Tensor:
    if v is not None:
        return grad - (scale * keep).unsqueeze(1) * v
    if v_uniform:
        return grad - (scale * keep * v_uniform).unsqueeze(1)
    return grad


def _target_fused(
    x: Tensor,
    scale: Tensor,
    s: Tensor,
    a: Tensor,
    keep: Tensor,
    y: Tensor,
    dense: Tensor | None,
    background: Tensor | None,
    idx: Tensor | None,
    val: Tensor | None,
    v: Tensor | None,
    need_grad: bool,
) -> tuple[tuple[Tensor, Tensor, Tensor | None], Tensor | None]:
    """The target-side pass for the compiler: row reductions out, the gradient written in the same row loop.

    With ``m`` the row's max (0 if infinite) and ``e_j = exp(x_j - m)``: ``total = sum_j e_j``,
    ``dot = sum_j C[y, j] (x_j - m)`` and, with per-class smoothing weights ``v``, ``vdot = sum_j v_j (x_j - m)``
    (``0 * -inf`` counted as 0); :func:`_target_index_finish` turns them into the loss. Written for inductor:
    every output is a reduction over the row or the (M, K) gradient, so the max, the sums and the gradient are
    inner loops of one parallel loop over the rows (one read of ``x``, one write of the gradient). ``e`` is one
    expression read by the sum and the gradient, so inductor computes it once per entry into a row-sized buffer
    of its own instead of computing it twice.
    """
    k = x.shape[1]
    top = x.amax(dim=1, keepdim=True)
    shifted = x - torch.where(torch.isinf(top), 0.0, top)  # rows of infinite logits stay defined
    e = torch.exp(shifted)
    total = e.sum(dim=1)
    rows = _row_expression(y, k, dense, background, idx, val)
    dot = torch.where(rows > 0, rows * shifted, 0.0).sum(dim=1)
    vdot = None if v is None else torch.where(v > 0, v * shifted, 0.0).sum(dim=1)
    if not need_grad:
        return (total, dot, vdot), None
    grad = e * ((scale * s) / total).unsqueeze(1) - (scale * a).unsqueeze(1) * rows
    return (total, dot, vdot), _minus_column(grad, scale, keep, v, 0.0)


def _prediction_fused(
    x: Tensor,
    scale: Tensor,
    y: Tensor,
    keep: Tensor,
    a: Tensor,
    log_columns: Tensor | None,
    col_idx: Tensor | None,
    log_beta: Tensor | None,
    col_logfloor: Tensor | None,
    col_floor: Tensor | None,
    log_colsum: Tensor,
    v: Tensor | None,
    v_uniform: float,
    need_grad: bool,
) -> tuple[tuple[Tensor, Tensor | None, Tensor | None, Tensor | None], Tensor | None]:
    """The prediction-side pass for the compiler: row reductions out, the gradient written in the same row loop.

    With ``m`` the row's max and ``u_j = x_j - m + log C[j, y]``: ``total = sum_j exp(x_j - m)``,
    ``top2 = max_j u_j``, ``total2 = sum_j exp(u_j - top2)``, so ``log q = top2 + log total2 - log total``
    (finite for any logits), and ``colsum = sum_j v_j (x_j - m)`` for the smoothing term. Every output is a
    reduction over the row (a per-row value computed from them would split inductor's row loop in passes).
    A structured lens with a background ``beta > 0`` takes :func:`_prediction_background` instead (one exponential
    per entry); one where a single class leads to each label (identity, relabelling) needs no ``exp(u_j - top2)``:
    its posterior is 1 at that class and ``total2`` is 1 (returned as None).
    """
    k = x.shape[1]
    if col_floor is not None and log_columns is None:
        assert col_idx is not None and log_beta is not None
        return _prediction_background(x, scale, y, keep, a, col_idx, col_floor, log_beta, v, v_uniform, need_grad)
    if log_columns is not None:
        prior = log_columns[y]  # log C[:, y], read in place
    else:  # log (beta + the few larger entries of column y), built by compares (no log per entry)
        assert col_idx is not None and col_logfloor is not None
        classes = _classes(k, x.device)
        prior = torch.full((), -torch.inf, dtype=x.dtype, device=x.device) if log_beta is None else log_beta
        for j in range(col_idx.shape[1]):  # the support's columns are distinct: at most one matches
            prior = torch.where(
                col_idx[:, j][y].to(torch.int32).unsqueeze(1) == classes, col_logfloor[:, j][y].unsqueeze(1), prior
            )
    top = x.amax(dim=1, keepdim=True)
    shifted = x - torch.where(torch.isinf(top), 0.0, top)
    e = torch.exp(shifted)  # one expression read twice: inductor computes it once per entry (see _target_fused)
    total = e.sum(dim=1, keepdim=True)
    terms = shifted + prior
    top2 = terms.amax(dim=1, keepdim=True)
    if log_columns is None and log_beta is None and col_idx is not None and col_idx.shape[1] == 1:
        # One class leads to each y (identity, a relabelling): the posterior is 1 there, 0 elsewhere, and q is that
        # class's probability times its entry (total2 = 1): no second exponential.
        posterior = torch.where(torch.isneginf(prior), 0.0, 1.0)
        total2 = None
    else:
        posterior, total2 = _posterior(terms, top2, prior, log_colsum[y].unsqueeze(1))
    colsum = _background_colsum(shifted, v, v_uniform)
    parts = (total.squeeze(1), top2.squeeze(1), None if total2 is None else total2.squeeze(1), colsum)
    if not need_grad:
        return parts, None
    # As in the eager branch: d/dx_k = s p_k - a r_k, r the posterior of the clean class.
    s = a if v is None and not v_uniform else a + keep * _background_mass(v, v_uniform, k)
    share = (scale * a).unsqueeze(1) if total2 is None else (scale * a).unsqueeze(1) / total2
    grad = e * ((scale * s).unsqueeze(1) / total) - share * posterior
    return parts, _minus_column(grad, scale, keep, v, v_uniform)


def _posterior(terms: Tensor, top2: Tensor, prior: Tensor, log_colsum_y: Tensor) -> tuple[Tensor, Tensor]:
    """``exp(terms - top2)`` (the posterior of the clean class, unnormalised) and its row sum ``total2``.

    Where q is 0 (top2 = -inf: every class leading to y has logit -inf) the posterior is its limit, ``C[:, y]``
    normalised: taking those rows' lifted terms from the prior makes ``total2 = 1`` and the posterior that limit,
    with one exponential per entry shared by ``total2`` and the gradient.
    """
    dead = torch.isneginf(top2)
    lifted = torch.where(dead, prior - log_colsum_y, terms - torch.where(torch.isinf(top2), 0.0, top2))
    posterior = torch.exp(lifted)
    return posterior, posterior.sum(dim=1, keepdim=True)


def _prediction_background(
    x: Tensor,
    scale: Tensor,
    y: Tensor,
    keep: Tensor,
    a: Tensor,
    col_idx: Tensor,
    col_floor: Tensor,
    log_beta: Tensor,
    v: Tensor | None,
    v_uniform: float,
    need_grad: bool,
) -> tuple[tuple[Tensor, Tensor | None, Tensor | None, Tensor | None], Tensor | None]:
    """The prediction-side pass for a structured lens whose columns all have a background ``beta > 0``.

    ``q = (p C)_y >= beta`` never underflows, so it is summed in linear space: with ``e_j = exp(x_j - m)``,
    ``total = sum_j e_j`` and ``qsum = sum_j e_j C[j, y]`` (``C[:, y]`` built by compares: ``beta``, or
    ``col_floor`` on the support), ``q = qsum / total``; the posterior of the clean class is
    ``e_j C[j, y] / qsum``. One exponential per entry, read by both sums and the gradient.
    """
    k = x.shape[1]
    classes = _classes(k, x.device)
    column = torch.exp(log_beta)
    for j in range(col_idx.shape[1]):  # the support's columns are distinct: at most one matches
        column = torch.where(
            col_idx[:, j][y].to(torch.int32).unsqueeze(1) == classes, col_floor[:, j][y].unsqueeze(1), column
        )
    top = x.amax(dim=1, keepdim=True)
    shifted = x - torch.where(torch.isinf(top), 0.0, top)
    e = torch.exp(shifted)
    total = e.sum(dim=1, keepdim=True)
    qsum = (e * column).sum(dim=1, keepdim=True)
    colsum = _background_colsum(shifted, v, v_uniform)
    parts = (total.squeeze(1), None, qsum.squeeze(1), colsum)
    if not need_grad:
        return parts, None
    s = a if v is None and not v_uniform else a + keep * _background_mass(v, v_uniform, k)
    grad = e * ((scale * s).unsqueeze(1) / total - ((scale * a).unsqueeze(1) / qsum) * column)
    return parts, _minus_column(grad, scale, keep, v, v_uniform)


def _prediction_index_finish(
    parts: tuple[Tensor, Tensor | None, Tensor | None, Tensor | None],
    scale: Tensor,
    reduction: str,
    t: Tensor,
    ignore_index: int,
    w: Tensor | None,
    shrink: float,
    log_columns: Tensor | None,
    col_idx: Tensor | None,
    col_logval: Tensor | None,
    log_beta: Tensor | None,
    col_logfloor: Tensor | None,
    col_floor: Tensor | None,
    log_colsum: Tensor,
    v: Tensor | None,
    v_uniform: float,
    need_grad: bool,
) -> Tensor:
    """The reduced loss from the fused pass's row reductions (see :func:`_prediction_fused`)."""
    total, top2, total2, colsum = parts
    k = log_colsum.shape[0]
    keep, counted = _labels(t, k, ignore_index, w, total.dtype)[1:]
    log_total = torch.log(total)
    if top2 is None:  # summed in linear space (see _prediction_background): total2 is sum_j e_j C[j, y]
        assert total2 is not None
        logq = torch.log(total2) - log_total
    else:  # top2 = -inf: q is 0 (the pass's total2 is then 1, see _posterior; None: 1, one class leads to y)
        top = torch.where(torch.isinf(top2), 0.0, top2)
        lifted = top if total2 is None else top + torch.log(total2)
        logq = torch.where(torch.isneginf(top2), -torch.inf, lifted) - log_total
    loss = counted * shrink * -logq
    if colsum is not None:
        loss = loss + keep * (_background_mass(v, v_uniform, k) * log_total - colsum)
    return _reduce(torch.where(keep > 0, loss, 0.0), reduction, scale)


def _target_index_finish(
    parts: tuple[Tensor, Tensor, Tensor | None],
    scale: Tensor,
    reduction: str,
    t: Tensor,
    ignore_index: int,
    w: Tensor | None,
    dense: Tensor | None,
    background: Tensor | None,
    idx: Tensor | None,
    val: Tensor | None,
    rowsum: Tensor,
    ent_lens: Tensor | None,
    ent_column: Tensor | None,
    v: Tensor | None,
    need_grad: bool,
) -> Tensor:
    """The reduced loss from the fused target-side pass (see :func:`_target_fused`).

    Per row, with ``T' = a C[y] + keep v`` and ``s = sum_j T'_j``: ``s log(total) - a dot - keep vdot`` plus the
    KL form's ``sum_j T'_j log T_j``; 0 for ignored rows.
    """
    total, dot, vdot = parts
    y, keep, a = _labels(t, rowsum.shape[0], ignore_index, w, total.dtype)
    s = a * rowsum[y]
    loss = torch.where(s != 0, s * torch.log(total), 0.0) - torch.where(a != 0, a * dot, 0.0)
    if vdot is not None:
        assert v is not None
        loss = loss + keep * (v.sum() * torch.log(total) - vdot)
    if ent_lens is not None:  # the KL form's sum_j T'_j log T_j, per sample
        loss = loss + a * ent_lens[y]
        if ent_column is not None:
            loss = loss + keep * ent_column[y]
    return _reduce(torch.where(keep > 0, loss, 0.0), reduction, scale)


def _reduce(loss: Tensor, reduction: str, scale: Tensor) -> Tensor:
    if reduction == "none":
        return loss
    return loss.sum() * scale if reduction == "mean" else loss.sum()
