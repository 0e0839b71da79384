"""The fused loss-and-gradient kernels of :mod:`lensdash.losses` (private; their lens tables: `_kernel_args`).

Each kernel takes float logits ``x`` (M, K) and returns the per-sample loss (M,) and, when asked, the gradient of
``sum(scale * loss)`` with respect to ``x``: one pass computes both, the backward pass of :class:`FusedLoss` only
scales the saved gradient. Lens convention: row ``i`` of a lens is the target distribution when the true label is ``i``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from lensdash._kernels_fused import (
    _labels,
    _minus_column,
    _prediction_fused,
    _prediction_index_finish,
    _reduce,
    _target_fused,
    _target_index_finish,
    grad_scale,
    label_summary,
)

HALF = (torch.float16, torch.bfloat16)
_COMPILE_DEVICES = ("cpu", "cuda")
#: Widest lens-row support subtracted by fused compares in compiled kernels (wider: a scatter).
_FUSED_SUPPORT = 8


# ------------------------------------------------------------------ kernels
#
# Each kernel takes float logits x (M, K) and returns the per-sample loss (M,),
# the gradient of sum(scale * loss) with respect to x (M, K) when asked, and for
# class-index targets the reduction's scale (the 'mean' denominator's inverse,
# else 1) and the number of labels out of range. They are pure tensor code with
# no host reads. Compiled (or traced by a user's torch.compile), the class-index
# kernels return, instead of the loss, a few reductions over each row that a
# finish function turns into it: inductor fuses a row's max, sum of exponentials,
# loss and gradient into inner loops of one parallel loop over the rows only if
# every output of the graph is such a reduction or the (M, K) gradient; a
# per-row output that is not a reduction (or a costly per-row intermediate read
# by several loops) splits it into one pass over x per loop. Lens rows are
# indexed (``C[y]`` is read in place, never formed) or, for a structured lens,
# built from a few compares per entry (the compiled passes and their finish
# kernels: `_kernels_fused`). Eager, the same math reuses one buffer.


def _column_term(logp: Tensor, v: Tensor | None, v_uniform: float) -> tuple[Tensor, Tensor | float]:
    """``sum_j v_j * -log p_j`` per row (0 * -inf counted as 0), and ``sum_j v_j``."""
    if v is not None:
        return -torch.where(v > 0, logp * v, 0.0).sum(dim=1), v.sum()
    return -v_uniform * logp.sum(dim=1), v_uniform * logp.shape[1]


def _target_index_kernel(
    x: Tensor,
    mean: bool,
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
) -> tuple[Tensor | tuple[Tensor, Tensor, Tensor | None], Tensor | None, Tensor, Tensor]:
    # The loss, or on the fused pass the row reductions (total, dot, vdot) that _target_index_finish turns into
    # it; then the reduction's scale and the count of labels out of range.
    k = x.shape[1]
    scale, bad = label_summary(t, k, ignore_index, w, mean, x.dtype)
    gscale = grad_scale(scale)
    y, keep, a = _labels(t, k, ignore_index, w, x.dtype)
    s = a * rowsum[y]  # sum_j T'_j: the softmax's coefficient in the gradient
    v_sum = None if v is None else v.sum()
    if v_sum is not None:
        s = s + keep * v_sum
    grad: Tensor | None
    if torch.compiler.is_compiling():
        return (*_target_fused(x, gscale, s, a, keep, y, dense, background, idx, val, v, need_grad), scale, bad)
    logp = torch.log_softmax(x, dim=1)  # the one buffer: it becomes the gradient in place
    if dense is not None:
        rows = dense.index_select(0, y)
        dot = torch.where(rows > 0, rows * logp, 0.0).sum(dim=1)
    else:
        assert idx is not None and val is not None
        cols, vals = idx.index_select(0, y), val.index_select(0, y)
        dot = torch.where(vals > 0, vals * logp.gather(1, cols), 0.0).sum(dim=1)
        if background is not None:
            bg = background.index_select(0, y)
            dot = dot + torch.where(bg > 0, bg * logp.sum(dim=1), 0.0)
    loss = a * -dot
    if v is not None:
        loss = loss + keep * _column_term(logp, v, 0.0)[0]
    grad = None
    if need_grad:
        sa = (gscale * a).unsqueeze(1)
        grad = logp.exp_().mul_((gscale * s).unsqueeze(1))
        if dense is not None:
            grad.sub_(sa * rows)
        else:
            if background is not None:
                grad.sub_(sa * bg.unsqueeze(1))
            grad.scatter_add_(1, cols, -sa * vals)
    if ent_lens is not None:  # the KL form's sum_j T'_j log T_j, per sample
        loss = loss + a * ent_lens[y]
        if ent_column is not None:
            loss = loss + keep * ent_column[y]
    loss = torch.where(keep > 0, loss, 0.0)
    if grad is not None:
        grad = _minus_column(grad, gscale, keep, v, 0.0)
    return loss, grad, scale, bad


def _prediction_index_kernel(
    x: Tensor,
    mean: bool,
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
) -> tuple[Tensor | tuple[Tensor, Tensor | None, Tensor | None, Tensor | None], Tensor | None, Tensor, Tensor]:
    # The loss, or on the fused pass the row reductions (total, top2, total2, colsum) that
    # _prediction_index_finish turns into it; then the reduction's scale and the count of labels out of range.
    k = x.shape[1]
    scale, bad = label_summary(t, k, ignore_index, w, mean, x.dtype)
    gscale = grad_scale(scale)
    y, keep, counted = _labels(t, k, ignore_index, w, x.dtype)
    a = counted * shrink
    if torch.compiler.is_compiling():
        return (
            *_prediction_fused(
                x,
                gscale,
                y,
                keep,
                a,
                log_columns,
                col_idx,
                log_beta,
                col_logfloor,
                col_floor,
                log_colsum,
                v,
                v_uniform,
                need_grad,
            ),
            scale,
            bad,
        )
    logp = torch.log_softmax(x, dim=1)
    if log_columns is not None:
        prior = log_columns.index_select(0, y)
        terms = logp + prior
    else:
        assert col_idx is not None and col_logval is not None
        cols, prior = col_idx.index_select(0, y), col_logval.index_select(0, y)
        terms = logp.gather(1, cols) + prior
    logq = torch.logsumexp(terms, dim=1)  # log (softmax(x) C)[y] without the background
    # sum_j p_j * beta = beta
    logq_all = torch.logaddexp(logq, log_beta) if log_beta is not None else logq
    loss = a * -logq_all
    s = a
    if v is not None or v_uniform:
        column, v_sum = _column_term(logp, v, v_uniform)
        loss = loss + keep * column
        s = s + keep * v_sum
    loss = torch.where(keep > 0, loss, 0.0)
    if not need_grad:
        return loss, None, scale, bad
    # d/dx_k = p_k - r_k with r_k = p_k C[k, y] / q the posterior of the clean class. Where q underflows
    # to 0 (the true class has probability 0) r is its limit: C[:, y] normalised (the identity lens gives
    # F.cross_entropy's -1), never 0 / 0.
    dead = torch.isneginf(logq).unsqueeze(1)
    if log_beta is None:
        lead = torch.where(dead, log_colsum[y].unsqueeze(1), logq.unsqueeze(1))
        posterior = torch.exp(torch.where(dead, prior, terms) - lead)
        coefficient = gscale * s
    else:
        posterior = torch.exp(terms - logq_all.unsqueeze(1))
        coefficient = gscale * (s - a * torch.exp(log_beta - logq_all))
    sa = (gscale * a).unsqueeze(1)
    del terms
    grad = logp.exp_().mul_(coefficient.unsqueeze(1))
    if log_columns is not None:
        grad.sub_(sa * posterior)
    else:
        grad.scatter_add_(1, cols, -sa * posterior)
    return loss, _minus_column(grad, gscale, keep, v, v_uniform), scale, bad


def _target_probability_kernel(
    x: Tensor, scale: Tensor, t: Tensor, entropy: Tensor | None, need_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """``t`` (M, K) is the weighted lensed target ``w * ((1-ε) t C + ε/K)``; ``entropy`` the KL form's constant."""
    lse = torch.logsumexp(x, dim=1)
    total = t.sum(dim=1)
    loss = total * lse - torch.where(t > 0, t * x, 0.0).sum(dim=1)
    if entropy is not None:
        loss = loss + entropy
    if not need_grad:
        return loss, None
    return loss, (torch.exp(x - lse.unsqueeze(1)) * total.unsqueeze(1) - t) * scale


def _prediction_probability_kernel(
    x: Tensor,
    scale: Tensor,
    coef: Tensor,
    matrix: Tensor,
    v: Tensor | None,
    v_uniform: float,
    need_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    """``coef`` (M, K) = ``(1-ε) w_y t_y``; loss ``sum_y coef_y (-log (p C)_y)`` plus the smoothing term."""
    lse = torch.logsumexp(x, dim=1)
    p = torch.exp(x - lse.unsqueeze(1))
    q = p @ matrix
    alive = q > 0
    loss = -torch.where((coef > 0) & alive, coef * torch.log(q), 0.0).sum(dim=1)
    s = coef.sum(dim=1)
    if v is not None or v_uniform:
        column, v_sum = _column_term(x - lse.unsqueeze(1), v, v_uniform)
        loss = loss + column
        s = s + v_sum
    # q_y underflows to 0 where every class that leads to y is far less likely than the top one (a logit gap over
    # ~100 in float32): -log q_y is then finite but q cannot give it. Those few (sample, y) pairs are computed again
    # in log space, log q_y = logsumexp_j(log p_j + log C[j, y]), with their exact gradient share (the posterior of
    # j given y). Elsewhere (below) the share is the limit C[:, y] normalised (the posterior when the classes leading
    # to y have equal logits) and the loss +inf.
    # Finding the pairs reads a count back, so it is done on the CPU only (on a GPU it would be a host sync on
    # every call) and not under torch.compile (a data-dependent shape): there the limit below is used.
    no_readback = torch.compiler.is_compiling() or x.device.type != "cpu"
    exact = None if no_readback else _underflowed_terms(x - lse.unsqueeze(1), coef, alive, matrix)
    if exact is not None:
        loss = loss.index_add(0, exact[0], exact[1])
    elif no_readback:
        loss = loss - torch.where((coef > 0) & ~alive, coef * torch.log(q), 0.0).sum(dim=1)
    if not need_grad:
        return loss, None
    # r = p_k C[k, y] / q_y summed over y with weights coef_y
    ratio = torch.where((coef > 0) & alive, coef / q, 0.0)
    grad = p * s.unsqueeze(1) - p * (ratio @ matrix.T)
    if exact is not None:
        grad = grad.index_add(0, exact[0], exact[2], alpha=-1)
    elif no_readback:
        dead = torch.where((coef > 0) & ~alive, coef, 0.0)
        grad = grad - dead @ (matrix / matrix.sum(dim=0)).T
    if v is not None:
        grad = grad - v
    elif v_uniform:
        grad = grad - v_uniform
    return loss, grad * scale


#: Cells of one block of :func:`_underflowed_terms` ((pairs, K) float64 arrays).
_UNDERFLOW_BLOCK_CELLS = 1 << 20


def _underflowed_terms(
    logp: Tensor, coef: Tensor, alive: Tensor, matrix: Tensor
) -> tuple[Tensor, Tensor, Tensor] | None:
    """For the (sample, y) pairs with ``coef > 0`` whose ``q_y`` underflowed: rows, ``-coef log q_y`` and
    ``coef · posterior`` (the pair's gradient share), computed in float64 log space; None when there are none."""
    rows, cols = torch.nonzero((coef > 0) & ~alive, as_tuple=True)
    if rows.numel() == 0:
        return None
    log_c = torch.log(matrix.double()).T  # (K_y, K_j): -inf off the support
    limits = (matrix.double() / matrix.double().sum(dim=0)).T  # (K_y, K_j): C[:, y] normalised
    k = logp.shape[1]
    losses, shares = [], []
    step = max(1, _UNDERFLOW_BLOCK_CELLS // max(1, k))
    for start in range(0, rows.numel(), step):
        r, c = rows[start : start + step], cols[start : start + step]
        joint = logp[r].double() + log_c[c]  # (P, K): log p_j + log C[j, y]
        log_q = torch.logsumexp(joint, dim=1)
        weight = coef[r, c].double()
        losses.append(-weight * log_q)
        # y truly impossible (every class leading to it has logit -inf): the loss is +inf and the share the limit
        # C[:, y] normalised, as for class indices
        posterior = torch.where(torch.isfinite(log_q).unsqueeze(1), torch.exp(joint - log_q.unsqueeze(1)), limits[c])
        shares.append(weight.unsqueeze(1) * posterior)
    return rows, torch.cat(losses).to(logp.dtype), torch.cat(shares).to(logp.dtype)


# ------------------------------------------------------ compiled kernels

_compiled: dict[Callable, Callable] = {}
_compile_failed: dict[Callable, str] = {}


def run_kernel(kernel: Callable, compiled: bool, device: torch.device, *args):
    """Run ``kernel``, through a process-wide cached ``torch.compile`` when asked and possible.

    One compiled function per kernel serves every shape (dynamic shapes: the
    row loop's code does not depend on N or K, and a new batch size must not
    recompile) and is specialised by torch per dtype, device and lens
    structure. If compiling fails (no C++ compiler, an unsupported device or
    backend), the failure is remembered, a warning says so once, and the eager
    kernel runs, now and from then on.
    """
    usable = device.type in _COMPILE_DEVICES and kernel not in _compile_failed
    if compiled and usable and not torch.compiler.is_compiling():
        fn = _compiled.get(kernel)
        if fn is None:
            fn = _compiled[kernel] = torch.compile(kernel, dynamic=True, fullgraph=True)
        try:
            return fn(*args)
        except Exception as exc:  # any compiler failure falls back to the same math in eager
            first_line = str(exc).splitlines()[0][:200] if str(exc) else ""
            _compile_failed[kernel] = f"{type(exc).__name__}: {first_line}"
            warnings.warn(
                f"lensdash: compiling the loss kernel failed ({_compile_failed[kernel]}); using eager code.",
                RuntimeWarning,
                stacklevel=4,
            )
    return kernel(*args)


_FINISH: dict[Callable, Callable] = {
    _target_index_kernel: _target_index_finish,
    _prediction_index_kernel: _prediction_index_finish,
}


class FusedLoss(torch.autograd.Function):
    """Loss and gradient from one kernel call; the backward pass only scales the saved gradient.

    Returns the reduced loss and the count of labels out of range (0 for probability targets). Class-index
    kernels compute the reduction's scale themselves (``scale`` None), in the same compiled call as the pass.
    """

    @staticmethod
    def forward(ctx, x: Tensor, kernel: Callable, compiled: bool, reduction: str, scale: Tensor | None, *args):
        need_grad = ctx.needs_input_grad[0]
        work = x.float() if x.dtype in HALF else x
        first = (reduction == "mean") if scale is None else scale
        out = run_kernel(kernel, compiled, x.device, work, first, *args, need_grad)
        loss, grad = out[0], out[1]
        bad = torch.zeros((), dtype=torch.int64, device=x.device)
        if len(out) == 4:
            scale, bad = out[2], out[3]
        assert scale is not None
        if isinstance(loss, tuple):  # a fused pass returns row reductions: the finish is a kernel of its own
            loss = run_kernel(_FINISH[kernel], compiled, x.device, loss, scale, reduction, *args, need_grad)
        else:
            loss = _reduce(loss, reduction, scale)
        ctx.reduction = reduction
        if need_grad:
            ctx.save_for_backward(grad.to(x.dtype))
        ctx.mark_non_differentiable(bad)
        return loss.to(x.dtype), bad

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor, _grad_bad: Tensor | None = None):
        (grad,) = ctx.saved_tensors
        if ctx.reduction == "none":
            grad = grad * grad_output.unsqueeze(1)
        elif grad.device.type != "cpu" or torch.compiler.is_compiling() or grad_output.item() != 1.0:
            # Reading a CPU scalar is no device synchronisation; elsewhere, always scale.
            grad = grad * grad_output
        # else: loss.backward() of a scalar loss: the saved gradient is the answer, with no further pass over it.
        return (grad, *([None] * (len(ctx.needs_input_grad) - 1)))
