r"""Lensed cross-entropy: the seed's target-side lens and the prediction-side lens.

Lens convention: ``lens`` is K×K, row ``i`` is the target distribution used
when the true label is ``i``, entries in ``[0, 1]``, rows sum to 1.

Every loss here is a drop-in for ``F.cross_entropy`` / ``nn.CrossEntropyLoss``:
the same ``weight``, ``ignore_index``, ``reduction`` and ``label_smoothing``,
inputs ``(N, K)`` or ``(N, K, d1, …)``, class-index or probability targets,
and float16 / bfloat16 inputs (computed in float32, returned in the input's
dtype). With the identity lens each one equals ``F.cross_entropy`` in value
and gradient (the KL form :func:`lensed_cross_entropy` differs from it only by
the target entropy, see there).

How it runs: one pass computes the loss *and* its gradient
``s·softmax(x) − t`` (the gradient is known in the forward pass, as fused
cross-entropy kernels do); the backward pass only scales it. The lens itself
receives no gradient. Nothing is read back to the host in the hot path, so
the losses run inside ``torch.compile(fullgraph=True)``; with ``compiled=True``
the fused pass itself runs as a process-wide cached ``torch.compile`` kernel,
falling back to eager code where compilation is not available.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from lensdash._plan import PredictionPlan, TargetPlan, plan_for
from lensdash.errors import InputError
from lensdash.lens import Lens, lens_matrix

_REDUCTIONS = ("mean", "sum", "none")
_HALF = (torch.float16, torch.bfloat16)
_COMPILE_DEVICES = ("cpu", "cuda")
#: Widest lens-row support subtracted by fused compares in compiled kernels (wider: a scatter).
_FUSED_SUPPORT = 8

# --------------------------------------------------------------- validation


def check_loss_inputs(
    input: Tensor,
    target: Tensor,
    *,
    reduction: str = "mean",
    ignore_index: int | None = -100,
    weight: Tensor | None = None,
    label_smoothing: float = 0.0,
    validate_args: bool = True,
    allow_spatial: bool = True,
    allow_probabilities: bool = True,
) -> bool:
    """Check the arguments of a loss call the way the losses do; the one public check other modules use.

    Shapes and dtypes are checked from metadata only. Label values are
    checked when ``validate_args``: on CPU outside ``torch.compile`` with a
    readable :class:`InputError` naming the first bad position; on other
    devices, or while compiling, with ``torch._assert_async`` (a device-side
    assert: no host synchronisation, no graph break; it raises a
    ``RuntimeError`` when the values are seen).

    Args:
        input: logits, ``(N, K)`` or (``allow_spatial``) ``(N, K, d1, …)``, floating point.
        target: class indices (int64, ``(N,)`` or ``(N, d1, …)``), or (``allow_probabilities``)
            class probabilities shaped like ``input``.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
        ignore_index: a label value that is skipped, or ``None`` to allow none.
        weight: per-class weights, ``(K,)`` floating point, or ``None``.
        label_smoothing: in ``[0, 1]``.
        validate_args: check label values (see above); ``False`` skips it.
        allow_spatial: accept extra dimensions after K.
        allow_probabilities: accept probability targets.

    Returns:
        ``True`` when ``target`` holds probabilities, ``False`` for class indices.

    Raises:
        InputError: a wrong shape or dtype, a label out of range, an unknown
            reduction, bad weights or smoothing.

    Example:
        >>> check_loss_inputs(torch.zeros(2, 3), torch.tensor([0, 2]))
        False
    """
    dims_text = "N×K tensor (or N×K×d1×…)" if allow_spatial else "N×K tensor"
    if (
        not isinstance(input, Tensor)
        or input.dim() < 2
        or (input.dim() > 2 and not allow_spatial)
        or not input.is_floating_point()
    ):
        found = f"{tuple(input.shape)} {input.dtype}" if isinstance(input, Tensor) else type(input).__name__
        raise InputError.build(
            f"input logits as a floating-point {dims_text}",
            found,
            fix="Stack the per-sample logits into one (N, K) float tensor, classes in dimension 1.",
        )
    k = input.shape[1]
    if k < 2:
        raise InputError.build("at least 2 classes (K >= 2)", f"K={k}", fix="Give one logit per class.")
    if reduction not in _REDUCTIONS:
        raise InputError.build(
            f"reduction in {_REDUCTIONS}", repr(reduction), fix="'mean' divides the sum by N (KL's 'batchmean')."
        )
    if weight is not None and (
        not isinstance(weight, Tensor) or weight.shape != (k,) or not weight.is_floating_point()
    ):
        found = f"{tuple(weight.shape)} {weight.dtype}" if isinstance(weight, Tensor) else type(weight).__name__
        raise InputError.build(
            f"weight as a floating-point tensor of {k} per-class weights", found, fix="Pass one weight per class."
        )
    if not (0.0 <= float(label_smoothing) <= 1.0):
        raise InputError.build(
            "label_smoothing in [0, 1]", f"{label_smoothing}", fix="0 is no smoothing; 0.1 is common."
        )
    probabilities = isinstance(target, Tensor) and target.is_floating_point()
    if probabilities:
        if not allow_probabilities or target.shape != input.shape:
            raise InputError.build(
                f"probability targets shaped like the input {tuple(input.shape)}"
                if allow_probabilities
                else "target as an int64 tensor of N class indices",
                f"{tuple(target.shape)} {target.dtype}",
                fix="Pass class probabilities with the same shape as the logits, or class indices.",
            )
        return True
    if not isinstance(target, Tensor) or target.dtype != torch.int64:
        found = f"{tuple(target.shape)} {target.dtype}" if isinstance(target, Tensor) else type(target).__name__
        raise InputError.build(
            "target as an int64 tensor of N class indices", found, fix="Convert labels with target.long()."
        )
    expected = (input.shape[0], *input.shape[2:])
    if tuple(target.shape) != expected:
        if target.dim() == 1 and input.dim() == 2:
            raise InputError.build(
                f"{input.shape[0]} labels (one per input row)",
                f"{target.shape[0]}",
                fix="Pass one label per row of the input.",
            )
        raise InputError.build(
            f"target of shape {expected} (the input's shape without the class dimension)",
            f"{tuple(target.shape)}",
            fix="Pass one label per sample and position.",
        )
    if validate_args and target.numel():
        _check_labels(target, k, ignore_index)
    return False


def _check_labels(target: Tensor, k: int, ignore_index: int | None) -> None:
    valid = (target >= 0) & (target < k)
    if ignore_index is not None:
        valid |= target == ignore_index
    if target.device.type != "cpu" or torch.compiler.is_compiling():
        # Checked where the data lives: no host synchronisation, no graph break.
        torch._assert_async(valid.all(), f"lensdash: target holds a class index outside 0..{k - 1}")
        return
    if bool(valid.all()):
        return
    flat = int((~valid).reshape(-1).nonzero()[0, 0])
    position = [int(i) + 1 for i in torch.unravel_index(torch.tensor(flat), target.shape)]
    where = f"target row {position[0]}" if len(position) == 1 else f"target position {tuple(position)}"
    raise InputError.build(
        f"class indices in 0..{k - 1}",
        f"{int(target.reshape(-1)[flat])}",
        where=where,
        fix="Labels are 0-based class indices; subtract 1 if yours start at 1"
        + (f" (the label {ignore_index} is skipped)." if ignore_index is not None else "."),
    )


# ------------------------------------------------------------------ kernels
#
# Each kernel takes float logits x (M, K) and returns the per-sample loss (M,)
# and, when asked, the gradient of sum(scale * loss) with respect to x (M, K).
# They are pure tensor code with no host reads, so torch.compile can fuse each
# into a couple of loops. Coefficients: ``a`` (M,) weighs the lens term,
# ``keep`` (M,) is 0 for ignored samples, ``v`` (K,) or the scalar ``v_uniform``
# is the smoothing term's per-class weight.


def _log_softmax(x: Tensor, fusing: bool) -> Tensor:
    # Eager: one buffer that later becomes the gradient in place. Compiled: an expression inductor fuses away.
    return x - torch.logsumexp(x, dim=1, keepdim=True) if fusing else torch.log_softmax(x, dim=1)


def _subtract_at(grad: Tensor, cols: Tensor, amounts: Tensor, fusing: bool) -> Tensor:
    """``grad[n, cols[n, j]] -= amounts[n, j]``: in place when eager, as fusable compares when compiled."""
    if not fusing:
        return grad.scatter_add_(1, cols, amounts.neg())
    if cols.shape[1] > _FUSED_SUPPORT:
        return grad.scatter_add(1, cols, amounts.neg())
    classes = torch.arange(grad.shape[1], device=grad.device)
    for j in range(cols.shape[1]):
        grad = grad - torch.where(cols[:, j : j + 1] == classes, amounts[:, j : j + 1], 0.0)
    return grad


def _column_term(logp: Tensor, v: Tensor | None, v_uniform: float) -> tuple[Tensor, Tensor | float]:
    """``sum_j v_j * -log p_j`` per row (0 * -inf counted as 0), and ``sum_j v_j``."""
    if v is not None:
        return -torch.nansum(logp * v, dim=1), v.sum()
    return -v_uniform * logp.sum(dim=1), v_uniform * logp.shape[1]


def _target_index_kernel(
    x: Tensor,
    scale: Tensor,
    y: Tensor,
    a: Tensor | None,
    keep: Tensor,
    dense: Tensor | None,
    background: Tensor | None,
    idx: Tensor | None,
    val: Tensor | None,
    rowsum: Tensor,
    entropy: Tensor | None,
    v: Tensor | None,
    v_uniform: float,
    need_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    if a is None:  # unweighted: every counted sample weighs 1 (autograd.Function refuses one tensor twice)
        a = keep
    fusing = torch.compiler.is_compiling()
    logp = _log_softmax(x, fusing)
    if dense is not None:
        rows = dense.index_select(0, y)
        dot = torch.where(rows > 0, rows * logp, 0.0).sum(dim=1)  # 0 * -inf counts as 0
    else:
        assert idx is not None and val is not None
        cols, vals = idx.index_select(0, y), val.index_select(0, y)
        dot = torch.where(vals > 0, vals * logp.gather(1, cols), 0.0).sum(dim=1)
        if background is not None:
            bg = background.index_select(0, y)
            dot = dot + torch.where(bg > 0, bg * logp.sum(dim=1), 0.0)
    loss = a * -dot
    s = a * rowsum.index_select(0, y)
    if v is not None or v_uniform:
        column, v_sum = _column_term(logp, v, v_uniform)
        loss = loss + keep * column
        s = s + keep * v_sum
    if entropy is not None:  # the KL form's sum_j T'_j log T_j, per sample
        loss = loss + entropy
    loss = torch.where(keep > 0, loss, 0.0)
    if not need_grad:
        return loss, None
    # grad = s * softmax - T' (times the reduction's scale); eager reuses the log-softmax buffer.
    grad = torch.exp(logp) * (scale * s).unsqueeze(1) if fusing else logp.exp_().mul_((scale * s).unsqueeze(1))
    sa = scale * a
    if dense is not None:
        grad = grad - sa.unsqueeze(1) * rows if fusing else grad.sub_(sa.unsqueeze(1) * rows)
    else:
        if background is not None:
            grad = grad - (sa * bg).unsqueeze(1) if fusing else grad.sub_((sa * bg).unsqueeze(1))
        grad = _subtract_at(grad, cols, sa.unsqueeze(1) * vals, fusing)
    if v is not None:
        grad = grad - (scale * keep).unsqueeze(1) * v
    elif v_uniform:
        grad = grad - (scale * keep * v_uniform).unsqueeze(1)
    return loss, grad


def _prediction_index_kernel(
    x: Tensor,
    scale: Tensor,
    y: Tensor,
    a: Tensor,
    keep: Tensor,
    log_columns: Tensor | None,
    col_idx: Tensor | None,
    col_logval: Tensor | None,
    log_beta: Tensor | None,
    v: Tensor | None,
    v_uniform: float,
    need_grad: bool,
) -> tuple[Tensor, Tensor | None]:
    fusing = torch.compiler.is_compiling()
    logp = _log_softmax(x, fusing)
    if log_columns is not None:
        prior = log_columns.index_select(0, y)  # log C[:, y]
        terms = logp + prior
    else:
        assert col_idx is not None and col_logval is not None
        cols, prior = col_idx.index_select(0, y), col_logval.index_select(0, y)
        terms = logp.gather(1, cols) + prior
    logq = torch.logsumexp(terms, dim=1)  # log (softmax(x) C)[y] without the background
    dead = torch.isneginf(logq).unsqueeze(1)
    if log_beta is not None:  # sum_j p_j * beta = beta
        logq = torch.logaddexp(logq, log_beta)
    loss = a * -logq
    s = a
    if v is not None or v_uniform:
        column, v_sum = _column_term(logp, v, v_uniform)
        loss = loss + keep * column
        s = s + keep * v_sum
    loss = torch.where(keep > 0, loss, 0.0)
    if not need_grad:
        return loss, None
    # d/dx_k = p_k - r_k with r_k = p_k C[k, y] / q the posterior of the clean class.
    if log_beta is None:
        # Where q underflows to 0 (the true class has probability 0) the posterior is
        # the limit of equal logits on the lens's support: C[:, y] normalised (the
        # identity lens gives F.cross_entropy's -1), never 0 / 0.
        posterior = torch.softmax(torch.where(dead, prior, terms), dim=1)
        coefficient = scale * s
    else:
        posterior = torch.exp(terms - logq.unsqueeze(1))
        coefficient = scale * (s - a * torch.exp(log_beta - logq))
    del terms
    grad = torch.exp(logp) * coefficient.unsqueeze(1) if fusing else logp.exp_().mul_(coefficient.unsqueeze(1))
    sa = (scale * a).unsqueeze(1)
    if log_columns is not None:
        grad = grad - sa * posterior if fusing else grad.sub_(sa * posterior)
    else:
        grad = _subtract_at(grad, cols, sa * posterior, fusing)
    if v is not None:
        grad = grad - (scale * keep).unsqueeze(1) * v
    elif v_uniform:
        grad = grad - (scale * keep * v_uniform).unsqueeze(1)
    return loss, grad


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
    loss = -torch.where(coef > 0, coef * torch.log(q), 0.0).sum(dim=1)
    s = coef.sum(dim=1)
    if v is not None or v_uniform:
        column, v_sum = _column_term(x - lse.unsqueeze(1), v, v_uniform)
        loss = loss + column
        s = s + v_sum
    if not need_grad:
        return loss, None
    ratio = torch.where(coef > 0, coef / q, 0.0)
    grad = p * s.unsqueeze(1) - p * (ratio @ matrix.T)
    if v is not None:
        grad = grad - v
    elif v_uniform:
        grad = grad - v_uniform
    return loss, grad * scale


# ------------------------------------------------------ compiled kernels

_compiled: dict[Callable, Callable] = {}
_compile_failed: dict[Callable, str] = {}


def _run_kernel(kernel: Callable, compiled: bool, device: torch.device, *args):
    """Run ``kernel``, through a process-wide cached ``torch.compile`` when asked and possible.

    One compiled function per kernel serves every shape (dynamic shapes) and
    is specialised by torch per dtype and device. If compiling fails (no C++
    compiler, an unsupported device or backend), the failure is remembered,
    a warning says so once, and the eager kernel runs, now and from then on.
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


class _FusedLoss(torch.autograd.Function):
    """Loss and gradient from one kernel call; the backward pass only scales the saved gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, kernel: Callable, compiled: bool, reduction: str, scale: Tensor, *args):
        need_grad = ctx.needs_input_grad[0]
        work = x.float() if x.dtype in _HALF else x
        loss, grad = _run_kernel(kernel, compiled, x.device, work, scale, *args, need_grad)
        ctx.reduction = reduction
        if need_grad:
            ctx.save_for_backward(grad.to(x.dtype))
        if reduction == "none":
            return loss.to(x.dtype)
        total = loss.sum()
        return (total * scale if reduction == "mean" else total).to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        (grad,) = ctx.saved_tensors
        if ctx.reduction == "none":
            grad = grad * grad_output.unsqueeze(1)
        elif grad.device.type != "cpu" or torch.compiler.is_compiling() or grad_output.item() != 1.0:
            # Reading a CPU scalar is no device synchronisation; elsewhere, always scale.
            grad = grad * grad_output
        # else: loss.backward() of a scalar loss: the saved gradient is the answer, with no further pass over it.
        return (grad, *([None] * (len(ctx.needs_input_grad) - 1)))


# ---------------------------------------------------------------- assembly


def _flatten(input: Tensor, target: Tensor, probabilities: bool) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """(N, K, d1, …) logits and targets as (M, K) rows and (M,) labels or (M, K) probabilities."""
    k = input.shape[1]
    shape = (input.shape[0], *input.shape[2:])
    if input.dim() == 2:
        return input, target, shape
    x = input.movedim(1, -1).reshape(-1, k)
    t = target.movedim(1, -1).reshape(-1, k) if probabilities else target.reshape(-1)
    return x, t, shape


def _lensed_loss(
    side: str,
    input: Tensor,
    target: Tensor,
    lens: object,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    validate_args: bool,
    compiled: bool,
    with_entropy: bool,
) -> Tensor:
    probabilities = check_loss_inputs(
        input,
        target,
        reduction=reduction,
        ignore_index=ignore_index,
        weight=weight,
        label_smoothing=label_smoothing,
        validate_args=validate_args,
    )
    k = input.shape[1]
    dtype = torch.float32 if input.dtype in _HALF else input.dtype
    device = input.device
    eps = float(label_smoothing)
    w = None if weight is None else weight.detach().to(device=device, dtype=dtype)
    x, t, shape = _flatten(input, target, probabilities)
    if probabilities:
        kernel, scale, args = _probability_args(side, t, lens, k, dtype, device, w, eps, with_entropy)
        if reduction != "mean":
            scale = torch.ones((), dtype=dtype, device=device)
    else:
        keep = (t != ignore_index).to(dtype)
        y = torch.where(t == ignore_index, 0, t)  # any valid index: ignored samples weigh 0
        counted = keep if w is None else w.index_select(0, y) * keep
        scale = 1.0 / counted.sum() if reduction == "mean" else torch.ones((), dtype=dtype, device=device)
        plan = plan_for(lens, side, k, dtype, device)
        if side == "target":
            kernel, args = _target_index_kernel, _target_index_args(plan, y, keep, counted, w, eps, k, with_entropy)
        else:
            kernel, args = _prediction_index_kernel, _prediction_index_args(plan, y, keep, counted, w, eps, k)
    loss = _FusedLoss.apply(x, kernel, compiled, reduction, scale, *args)
    return loss.reshape(shape) if reduction == "none" else loss


def _prediction_index_args(
    plan: PredictionPlan, y: Tensor, keep: Tensor, counted: Tensor, w: Tensor | None, eps: float, k: int
) -> tuple:
    # Prediction side with smoothing: (1-eps) * (-log (p C)_y) + eps/K * sum_j w_j (-log p_j).
    v, v_uniform = (None, eps / k) if w is None else ((w * (eps / k) if eps else None), 0.0)
    a = counted * (1.0 - eps)
    return (y, a, keep, plan.log_columns, plan.col_idx, plan.col_logval, plan.log_beta, v, v_uniform)


def _target_index_args(
    plan: TargetPlan, y: Tensor, keep: Tensor, counted: Tensor, w: Tensor | None, eps: float, k: int, entropy: bool
) -> tuple:
    """Kernel arguments for class-index targets: the lens folded with smoothing (and weights, as PyTorch does).

    Unweighted, the target is row ``y`` of ``C_eps = (1-eps) C + eps/K``, a lens of the same structure.
    Weighted, PyTorch weighs the one-hot part by ``w[y]`` and the uniform part class by class
    (``w_j eps/K``), so the lens term is ``(1-eps) C[y]`` scaled by ``w[y]`` plus a per-class term.
    """
    uniform = 0.0 if w is not None else eps / k
    shrink = 1.0 - eps
    dense = None if plan.dense is None else plan.dense * shrink + uniform
    val = None if plan.val is None else plan.val * shrink
    background = plan.background
    if background is not None:
        background = background * shrink + uniform
    elif plan.dense is None and uniform:
        background = torch.full_like(plan.rowsum, uniform)
    rowsum = plan.rowsum * shrink + uniform * k
    v = None if w is None or not eps else w * (eps / k)
    per_sample = None
    if entropy:
        ent_lens, ent_column = _row_entropy(plan, eps, w, k)
        per_sample = counted * ent_lens.index_select(0, y)
        if ent_column is not None:
            per_sample = per_sample + keep * ent_column.index_select(0, y)
    return (y, None if w is None else counted, keep, dense, background, plan.idx, val, rowsum, per_sample, v, 0.0)


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


def _probability_args(
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
        return lens._plans[key]
    if torch.compiler.is_compiling():
        matrix = lens._matrix if isinstance(lens, Lens) else torch.as_tensor(lens)
        return matrix.detach().to(dtype=dtype, device=device)
    return lens_matrix(lens, k, dtype=dtype, device=device)


# ---------------------------------------------------------------- public API

_ARGS_DOC = """
    Args:
        input: logits, ``(N, K)`` or ``(N, K, d1, …)``; float16, bfloat16 (computed
            in float32), float32 or float64; any device.
        target: class indices, int64, ``(N,)`` or ``(N, d1, …)`` in ``0..K-1`` (or
            ``ignore_index``); or class probabilities shaped like ``input``.
        lens: K×K lens (tensor, nested list or :class:`~lensdash.Lens`); it
            receives no gradient. A :class:`~lensdash.Lens` is a snapshot; a plain
            tensor is re-read after an in-place edit.
        weight: per-class weights ``(K,)``, as ``F.cross_entropy``'s.
        ignore_index: a class-index target value that contributes nothing (default -100).
        reduction: ``'mean'``, ``'sum'`` or ``'none'``. ``'mean'`` divides by the summed
            weight ``w[y_n]`` of the counted samples (their number when unweighted), or by
            the number of samples for probability targets, as PyTorch does.
        label_smoothing: ``ε`` in ``[0, 1]``.
        validate_args: check label values (on CPU an :class:`InputError` naming
            the position; elsewhere a device-side assert, no host sync); ``False`` skips it.
        compiled: run the fused loss-and-gradient pass as a process-wide cached
            ``torch.compile`` kernel (the first call per dtype/device compiles, for
            seconds); falls back to eager code, with one warning, where compiling fails.

    Returns:
        A scalar, or the per-sample losses ``(N,)`` / ``(N, d1, …)`` for ``'none'``,
        in the input's dtype.

    Raises:
        InputError: wrong shapes or dtypes, labels out of range, unknown reduction, bad weights or smoothing.
        LensError: the lens is not a valid K×K row-stochastic matrix.

    Shape:
        input ``(N, K)`` or ``(N, K, d1, …)``; target ``(N,)`` / ``(N, d1, …)`` or like input;
        lens ``(K, K)``; output ``()`` or ``(N, d1, …)``.
"""


def lensed_cross_entropy(
    input: Tensor,
    target: Tensor,
    lens: object,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    validate_args: bool = True,
    compiled: bool = False,
) -> Tensor:
    (
        r"""Lensed cross-entropy, the seed notebook's loss: :math:`\mathrm{KL}(T_n\,\|\,\mathrm{softmax}(x_n))`.

    Lens convention: row ``i`` of ``lens`` is the target distribution used when
    the true label is ``i``; entries in ``[0, 1]``, rows sum to 1.

    The lensed target is :math:`T_n = (1-\varepsilon)\,C_{y_n} + \varepsilon/K`
    (class indices) or :math:`T_n = (1-\varepsilon)\,t_n C + \varepsilon/K`
    (probabilities :math:`t_n`). With per-class weights :math:`w` the weighted target is,
    as in PyTorch, :math:`T'_{nj} = w_{y_n}(1-\varepsilon) C_{y_n j} + w_j\,\varepsilon/K`
    (class indices) or :math:`T'_{nj} = w_j T_{nj}` (probabilities), :math:`T' = T` unweighted, and

    .. math::
        \ell_n = \sum_j T'_{nj}\,\bigl(\log T_{nj} - \log\mathrm{softmax}(x_n)_j\bigr),
        \qquad 0 \log 0 = 0.

    Its gradient with respect to the logits is
    :math:`(\sum_j T'_{nj})\,\mathrm{softmax}(x_n) - T'_n` (divided by the
    ``'mean'`` denominator); unweighted, :math:`\mathrm{softmax}(x_n) - T_n`.

    With the identity lens and no smoothing this equals ``F.cross_entropy``
    (value and gradient). It differs from ``F.cross_entropy`` in value only by
    the term :math:`\sum_j T'_{nj}\log T_{nj}`, which is 0 for one-hot targets:
    with ``label_smoothing`` or soft probability targets the KL form is the
    cross-entropy minus the target's entropy (0 when the model predicts the
    target exactly), while :func:`soft_target_cross_entropy` is equal to
    ``F.cross_entropy`` there too. The gradients of the two forms are identical.

    ``'mean'`` divides the sum by N, as the seed's ``size_average=True``. That
    is ``F.kl_div``'s ``'batchmean'``, not its ``'mean'`` (which divides by N·K).

    Structured lenses (identity, merged groups, smoothing, a few confused pairs)
    are found from the matrix itself and never expanded to ``C[y]`` (N×K).
    A row whose target puts mass on a class with probability 0 (a ``-inf``
    logit) has loss ``inf`` and a finite gradient.
    """
        + _ARGS_DOC
        + r"""
    Example:
        >>> x = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
        >>> seed = torch.tensor([[.5, .5, 0, 0], [.5, .5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        >>> round(lensed_cross_entropy(x, torch.tensor([0]), seed).item(), 4)
        0.367
        >>> round(lensed_cross_entropy(x, torch.tensor([0]), torch.eye(4)).item(), 4)
        0.9163
    """
    )
    return _lensed_loss(
        "target", input, target, lens, weight, ignore_index, reduction, label_smoothing, validate_args, compiled, True
    )


def soft_target_cross_entropy(
    input: Tensor,
    target: Tensor,
    lens: object,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    validate_args: bool = True,
    compiled: bool = False,
) -> Tensor:
    (
        r"""The cross-entropy form of the lensed loss: ``F.cross_entropy(input, lensed target)``.

    .. math:: \ell_n = -\sum_j T'_{nj} \log\mathrm{softmax}(x_n)_j
              = \mathrm{KL}\text{ form of } :func:`lensed_cross_entropy` - \sum_j T'_{nj} \log T_{nj}

    (``T``, ``T'`` as there). It differs from :func:`lensed_cross_entropy` by
    the entropy of the lensed target, a constant per label: the gradients are
    identical, the values are not (this one is not 0 when the model predicts
    the target exactly). With the identity lens it equals ``F.cross_entropy``
    in every combination of arguments, label smoothing included.
    Lens convention: rows are target distributions, rows sum to 1.
    """
        + _ARGS_DOC
        + r"""
    Example:
        >>> x = torch.log(torch.tensor([[0.5, 0.5]]))
        >>> round(soft_target_cross_entropy(x, torch.tensor([0]), [[.5, .5], [.5, .5]]).item(), 4)
        0.6931
    """
    )
    return _lensed_loss(
        "target", input, target, lens, weight, ignore_index, reduction, label_smoothing, validate_args, compiled, False
    )


def prediction_lensed_cross_entropy(
    input: Tensor,
    target: Tensor,
    lens: object,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    validate_args: bool = True,
    compiled: bool = False,
) -> Tensor:
    (
        r"""Prediction-side lensed cross-entropy (forward loss correction, Patrini et al. 2017).

    The lens is applied to the model's prediction rather than to the target:

    .. math:: \ell_n = -\log\bigl(\mathrm{softmax}(x_n)\, C\bigr)_{y_n}
              = -\log \sum_j \mathrm{softmax}(x_n)_j\, C_{j y_n}

    Lens convention: row ``j`` of ``lens`` is the distribution of observed
    labels when the true class is ``j``; rows sum to 1. Where the seed's
    target-side lens asks for exactly ``C[y]`` (a 50/50 split between two
    merged classes), this loss accepts any split between them. Computed in
    log space, so it stays finite for logits up to ±1e4.

    Weights, smoothing and probability targets (the prediction-side meaning):
    the lensed negative log-likelihood is weighted by ``w[y]`` and scaled by
    :math:`1-\varepsilon`, and label smoothing adds PyTorch's uniform term on
    the *model's own* prediction,

    .. math:: \ell_n = (1-\varepsilon)\,w_{y_n}\,\bigl(-\log(\mathrm{softmax}(x_n) C)_{y_n}\bigr)
              + \frac{\varepsilon}{K}\sum_j w_j\,\bigl(-\log\mathrm{softmax}(x_n)_j\bigr),

    so that with the identity lens it is ``F.cross_entropy`` with the same
    arguments. Probability targets :math:`t_n` sum the first term over
    :math:`y` with weights :math:`t_{ny}` (this forms :math:`\mathrm{softmax}(x) C`,
    N×K, for every class).

    The gradient is :math:`\mathrm{softmax}(x_n) - r_n` with
    :math:`r_{nk} = \mathrm{softmax}(x_n)_k C_{k y_n} / (\mathrm{softmax}(x_n) C)_{y_n}`
    (times the weights). Where the true label has probability 0 under
    :math:`\mathrm{softmax}(x_n) C` the loss is ``inf`` and :math:`r_n` is its
    limit, :math:`C_{\cdot y_n}` normalised over the classes with probability 0
    (the identity lens gives ``F.cross_entropy``'s ``-1``); for probability
    targets such a row's gradient is ``nan``.
    """
        + _ARGS_DOC
        + r"""
    Example:
        >>> x = torch.log(torch.tensor([[0.9, 0.1, 0.0 + 1e-9]]))
        >>> merged = [[.5, .5, 0], [.5, .5, 0], [0, 0, 1]]
        >>> round(prediction_lensed_cross_entropy(x, torch.tensor([1]), merged).item(), 4)
        0.6931
    """
    )
    return _lensed_loss(
        "prediction",
        input,
        target,
        lens,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        validate_args,
        compiled,
        False,
    )


# ------------------------------------------------------------------- modules


class _LensLoss(nn.Module):
    lens: Tensor
    weight: Tensor | None

    def __init__(
        self,
        lens: object,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        validate_args: bool = True,
        compiled: bool = False,
    ):
        super().__init__()
        matrix = lens_matrix(lens)
        if reduction not in _REDUCTIONS:
            raise InputError.build(f"reduction in {_REDUCTIONS}", repr(reduction), fix="Use 'mean', 'sum' or 'none'.")
        k = matrix.shape[0]
        if weight is not None and (not isinstance(weight, Tensor) or weight.shape != (k,)):
            found = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
            raise InputError.build(f"weight as a tensor of {k} per-class weights", f"{found}", fix="One per class.")
        if not (0.0 <= float(label_smoothing) <= 1.0):
            raise InputError.build("label_smoothing in [0, 1]", f"{label_smoothing}", fix="0.1 is common.")
        # Copies: the module's lens is its own (a registered buffer: it moves with .to() and is in state_dict).
        self.register_buffer("lens", matrix.detach().clone().to(torch.get_default_dtype()))
        self.register_buffer("weight", None if weight is None else weight.detach().clone())
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = float(label_smoothing)
        self.validate_args = validate_args
        self.compiled = compiled

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.lens.shape[0]}, reduction={self.reduction!r}, ignore_index={self.ignore_index}, "
            f"label_smoothing={self.label_smoothing}"
        )

    def _call(self, fn: Callable[..., Tensor], input: Tensor, target: Tensor) -> Tensor:
        return fn(
            input,
            target,
            self.lens,
            self.weight,
            self.ignore_index,
            self.reduction,
            self.label_smoothing,
            validate_args=self.validate_args,
            compiled=self.compiled,
        )


class LensedCrossEntropyLoss(_LensLoss):
    r"""Module form of :func:`lensed_cross_entropy`, a drop-in for ``nn.CrossEntropyLoss``.

    ``LensedCrossEntropyLoss(lens, weight=None, ignore_index=-100, reduction='mean',
    label_smoothing=0.0)`` takes ``nn.CrossEntropyLoss``'s arguments after the
    lens (rows are target distributions, rows sum to 1). The lens and the
    weights are registered buffers: they move with ``.to(device)`` and are
    saved in ``state_dict``. Arguments, shapes and the math: as the function.

    Example:
        >>> loss_fn = LensedCrossEntropyLoss(torch.eye(3), label_smoothing=0.0)
        >>> x, y = torch.zeros(2, 3), torch.tensor([0, 2])
        >>> torch.allclose(loss_fn(x, y), torch.nn.functional.cross_entropy(x, y))
        True
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return self._call(lensed_cross_entropy, input, target)


class PredictionLensedCrossEntropyLoss(_LensLoss):
    r"""Module form of :func:`prediction_lensed_cross_entropy`; the lens and weights are buffers.

    Takes ``nn.CrossEntropyLoss``'s arguments after the lens, as :class:`LensedCrossEntropyLoss`.

    Example:
        >>> loss_fn = PredictionLensedCrossEntropyLoss(torch.eye(3))
        >>> x, y = torch.zeros(2, 3), torch.tensor([0, 2])
        >>> torch.allclose(loss_fn(x, y), torch.nn.functional.cross_entropy(x, y))
        True
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return self._call(prediction_lensed_cross_entropy, input, target)


__all__ = [
    "LensedCrossEntropyLoss",
    "PredictionLensedCrossEntropyLoss",
    "check_loss_inputs",
    "lensed_cross_entropy",
    "prediction_lensed_cross_entropy",
    "soft_target_cross_entropy",
]
