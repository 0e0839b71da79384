r"""Lensed cross-entropy: the seed's target-side lens and the prediction-side lens.

Lens convention: ``lens`` is K×K, row ``i`` is the target distribution used
when the true label is ``i``, entries in ``[0, 1]``, rows sum to 1.

Both losses are ``torch.autograd.Function``\ s with analytic backward passes;
the lens itself receives no gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lensdash._plan import PredictionPlan, TargetPlan, plan_for
from lensdash.errors import InputError

_REDUCTIONS = ("mean", "sum", "none")


def _check_inputs(input: Tensor, target: Tensor, reduction: str) -> None:
    if not isinstance(input, Tensor) or input.dim() != 2 or not input.is_floating_point():
        found = f"{tuple(input.shape)} {input.dtype}" if isinstance(input, Tensor) else type(input).__name__
        raise InputError.build(
            "input logits as a floating-point N×K tensor",
            found,
            fix="Stack the per-sample logits into one (N, K) float tensor.",
        )
    if input.shape[1] < 2:
        raise InputError.build("at least 2 classes (K >= 2)", f"K={input.shape[1]}", fix="Give one logit per class.")
    if not isinstance(target, Tensor) or target.dim() != 1 or target.dtype != torch.int64:
        found = f"{tuple(target.shape)} {target.dtype}" if isinstance(target, Tensor) else type(target).__name__
        raise InputError.build(
            "target as an int64 tensor of N class indices",
            found,
            fix="Convert labels with target.long().",
        )
    if target.shape[0] != input.shape[0]:
        raise InputError.build(
            f"{input.shape[0]} labels (one per input row)",
            f"{target.shape[0]}",
            fix="Pass one label per row of the input.",
        )
    if target.numel():
        lo, hi = torch.aminmax(target)
        if int(lo) < 0 or int(hi) >= input.shape[1]:
            bad = int(((target < 0) | (target >= input.shape[1])).nonzero()[0, 0])
            raise InputError.build(
                f"class indices in 0..{input.shape[1] - 1}",
                f"{int(target[bad])}",
                where=f"target row {bad + 1}",
                fix="Labels are 0-based class indices; subtract 1 if yours start at 1.",
            )
    if reduction not in _REDUCTIONS:
        raise InputError.build(
            f"reduction in {_REDUCTIONS}", repr(reduction), fix="'mean' divides the sum by N (KL's 'batchmean')."
        )


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    total = loss.sum()
    return total / loss.shape[0] if reduction == "mean" else total


def _grad_scale(grad_output: Tensor, n: int, reduction: str) -> Tensor:
    if reduction == "none":
        return grad_output.unsqueeze(1)
    return grad_output / n if reduction == "mean" else grad_output


# --------------------------------------------------------------- target side


def _target_dot(logp: Tensor, target: Tensor, plan: TargetPlan, rows: Tensor | None) -> Tensor:
    """``sum_j C[y, j] * logp[:, j]`` per row; ``rows`` is ``C[y]`` for dense lenses, structured ones never form it."""
    if rows is not None:
        return torch.linalg.vecdot(rows, logp)
    dot = (plan.val.index_select(0, target) * logp.gather(1, plan.idx.index_select(0, target))).sum(dim=1)
    if plan.background is not None:
        dot = dot + plan.background.index_select(0, target) * logp.sum(dim=1)
    return dot


def _target_dot_masked(logp: Tensor, target: Tensor, plan: TargetPlan) -> Tensor:
    """The same dot where ``0 * -inf`` counts as 0 (zero probabilities from a file)."""
    if plan.dense is not None:
        rows = plan.dense.index_select(0, target)
    else:
        rows = torch.zeros_like(logp)
        if plan.background is not None:
            rows += plan.background.index_select(0, target).unsqueeze(1)
        rows.scatter_add_(1, plan.idx.index_select(0, target), plan.val.index_select(0, target))
    return torch.where(rows > 0, rows * logp, 0.0).sum(dim=1)


class _TargetLensedCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input: Tensor, target: Tensor, plan: TargetPlan, reduction: str, with_entropy: bool):
        logp = torch.log_softmax(input, dim=1)
        # A dense lens's C[y] is formed once and kept for the backward pass.
        rows = plan.dense.index_select(0, target) if plan.dense is not None else None
        dot = _target_dot(logp, target, plan, rows)
        nan = torch.isnan(dot)
        if nan.any():  # rare: -inf logits where the lens has zeros
            bad = nan.nonzero().squeeze(1)
            dot[bad] = _target_dot_masked(logp[bad], target[bad], plan)
        loss = plan.negent.index_select(0, target) - dot if with_entropy else -dot
        ctx.save_for_backward(logp, target, rows)
        ctx.plan, ctx.reduction = plan, reduction
        return _reduce(loss, ctx.reduction)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        logp, target, rows = ctx.saved_tensors
        plan: TargetPlan = ctx.plan
        grad = logp.exp()
        if rows is not None:
            grad.sub_(rows)
        else:
            if plan.background is not None:
                grad.sub_(plan.background.index_select(0, target).unsqueeze(1))
            grad.scatter_add_(1, plan.idx.index_select(0, target), plan.val.index_select(0, target).neg())
        grad.mul_(_grad_scale(grad_output, logp.shape[0], ctx.reduction))
        return grad, None, None, None, None


def lensed_cross_entropy(input: Tensor, target: Tensor, lens: object, *, reduction: str = "mean") -> Tensor:
    r"""Lensed cross-entropy, the seed notebook's loss: :math:`\mathrm{KL}(C_{y}\,\|\,\mathrm{softmax}(x))`.

    Lens convention: row ``i`` of ``lens`` is the target distribution used when
    the true label is ``i``; entries in ``[0, 1]``, rows sum to 1.

    .. math::
        \ell_n = \sum_j C_{y_n j}\,\bigl(\log C_{y_n j} - \log\mathrm{softmax}(x_n)_j\bigr),
        \qquad 0 \log 0 = 0.

    With the identity lens this equals ``F.cross_entropy(input, target)``. The
    gradient with respect to the logits is :math:`\mathrm{softmax}(x_n) - C_{y_n}`
    per sample (divided by N under ``'mean'``).

    ``'mean'`` divides the sum by N, as the seed's ``size_average=True``. That
    is ``F.kl_div``'s ``'batchmean'``, not its ``'mean'`` (which divides by N·K).

    Structured lenses (identity, merged groups, smoothing, a few confused pairs)
    are found from the matrix itself and never expanded to ``C[y]`` (N×K).

    Args:
        input: logits, (N, K), float32 or float64, any device.
        target: true class indices, (N,), int64 in ``0..K-1``.
        lens: K×K lens (tensor, nested list or :class:`~lensdash.Lens`); it
            receives no gradient.
        reduction: ``'mean'`` (sum / N), ``'sum'`` or ``'none'``.

    Returns:
        A scalar, or (N,) for ``'none'``. A row whose lens puts mass on a class
        with probability 0 (a ``-inf`` logit) has loss ``inf``.

    Raises:
        InputError: wrong shapes or dtypes, labels out of range, unknown reduction.
        LensError: the lens is not a valid K×K row-stochastic matrix.

    Shape:
        input (N, K), target (N,), lens (K, K); output () or (N,).

    Example:
        >>> x = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
        >>> seed = torch.tensor([[.5, .5, 0, 0], [.5, .5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        >>> round(lensed_cross_entropy(x, torch.tensor([0]), seed).item(), 4)
        0.367
        >>> round(lensed_cross_entropy(x, torch.tensor([0]), torch.eye(4)).item(), 4)
        0.9163
    """
    _check_inputs(input, target, reduction)
    plan = plan_for(lens, "target", input.shape[1], input.dtype, input.device)
    return _TargetLensedCE.apply(input, target, plan, reduction, True)


def soft_target_cross_entropy(input: Tensor, target: Tensor, lens: object, *, reduction: str = "mean") -> Tensor:
    r"""The cross-entropy form of the lensed loss: ``F.cross_entropy(input, lens[target])``.

    .. math:: \ell_n = -\sum_j C_{y_n j} \log\mathrm{softmax}(x_n)_j
              = \mathrm{KL}(C_{y_n} \| \mathrm{softmax}(x_n)) + H(C_{y_n})

    It differs from :func:`lensed_cross_entropy` by the entropy of the lens
    row, a constant per label: the gradients are identical, the values are not
    (this one is not 0 when the model predicts the lens row exactly).
    Lens convention: rows are target distributions, rows sum to 1.

    Args, Returns, Raises, Shape: as :func:`lensed_cross_entropy`.

    Example:
        >>> x = torch.log(torch.tensor([[0.5, 0.5]]))
        >>> round(soft_target_cross_entropy(x, torch.tensor([0]), [[.5, .5], [.5, .5]]).item(), 4)
        0.6931
    """
    _check_inputs(input, target, reduction)
    plan = plan_for(lens, "target", input.shape[1], input.dtype, input.device)
    return _TargetLensedCE.apply(input, target, plan, reduction, False)


# ----------------------------------------------------------- prediction side


def _prediction_logq(logp: Tensor, target: Tensor, plan: PredictionPlan) -> tuple[Tensor, Tensor | None]:
    """``log (softmax(x) @ C)[y]`` per row, and the N×m support terms for the backward."""
    if plan.log_columns is not None:
        return torch.logsumexp(logp + plan.log_columns.index_select(0, target), dim=1), None
    terms = logp.gather(1, plan.col_idx.index_select(0, target)) + plan.col_logval.index_select(0, target)
    logq = torch.logsumexp(terms, dim=1)
    if plan.log_beta is not None:  # sum_j p_j * beta = beta
        logq = torch.logaddexp(logq, torch.full_like(logq, plan.log_beta))
    return logq, terms


class _PredictionLensedCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input: Tensor, target: Tensor, plan: PredictionPlan, reduction: str):
        logp = torch.log_softmax(input, dim=1)
        logq, terms = _prediction_logq(logp, target, plan)
        ctx.save_for_backward(logp, target, logq, terms)
        ctx.plan, ctx.reduction = plan, reduction
        return _reduce(-logq, reduction)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        # d/dx_k = p_k - r_k, r_k = p_k C[k, y] / q the posterior of the clean class.
        logp, target, logq, terms = ctx.saved_tensors
        plan: PredictionPlan = ctx.plan
        if plan.log_columns is not None:
            posterior = (logp + plan.log_columns.index_select(0, target)).sub_(logq.unsqueeze(1)).exp_()
            grad = logp.exp().sub_(posterior)
        else:
            grad = logp.exp()
            if plan.log_beta is not None:
                grad.mul_((1.0 - torch.exp(plan.log_beta - logq)).unsqueeze(1))
            posterior = (terms - logq.unsqueeze(1)).exp_()
            grad.scatter_add_(1, plan.col_idx.index_select(0, target), posterior.neg_())
        grad.mul_(_grad_scale(grad_output, logp.shape[0], ctx.reduction))
        return grad, None, None, None


def prediction_lensed_cross_entropy(input: Tensor, target: Tensor, lens: object, *, reduction: str = "mean") -> Tensor:
    r"""Prediction-side lensed cross-entropy (forward loss correction, Patrini et al. 2017).

    The lens is applied to the model's prediction rather than to the target:

    .. math:: \ell_n = -\log\bigl(\mathrm{softmax}(x_n)\, C\bigr)_{y_n}
              = -\log \sum_j \mathrm{softmax}(x_n)_j\, C_{j y_n}

    Lens convention: row ``j`` of ``lens`` is the distribution of observed
    labels when the true class is ``j``; rows sum to 1. Where the seed's
    target-side lens asks for exactly ``C[y]`` (a 50/50 split between two
    merged classes), this loss accepts any split between them. Computed in
    log space, so it stays finite for logits up to ±1e4.

    The gradient is :math:`\mathrm{softmax}(x_n) - r_n` with
    :math:`r_{nk} = \mathrm{softmax}(x_n)_k C_{k y_n} / (\mathrm{softmax}(x_n) C)_{y_n}`.

    Args, Returns, Raises, Shape: as :func:`lensed_cross_entropy`.

    Example:
        >>> x = torch.log(torch.tensor([[0.9, 0.1, 0.0 + 1e-9]]))
        >>> merged = [[.5, .5, 0], [.5, .5, 0], [0, 0, 1]]
        >>> round(prediction_lensed_cross_entropy(x, torch.tensor([1]), merged).item(), 4)
        0.6931
    """
    _check_inputs(input, target, reduction)
    plan = plan_for(lens, "prediction", input.shape[1], input.dtype, input.device)
    return _PredictionLensedCE.apply(input, target, plan, reduction)


# ------------------------------------------------------------------- modules


class _LensLoss(nn.Module):
    def __init__(self, lens: object, reduction: str = "mean"):
        super().__init__()
        from lensdash.lens import Lens, validate_lens

        matrix = lens.matrix if isinstance(lens, Lens) else validate_lens(lens)
        if reduction not in _REDUCTIONS:
            raise InputError.build(f"reduction in {_REDUCTIONS}", repr(reduction), fix="Use 'mean', 'sum' or 'none'.")
        self.register_buffer("lens", matrix.detach().clone().to(torch.get_default_dtype()))
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"num_classes={self.lens.shape[0]}, reduction={self.reduction!r}"


class LensedCrossEntropyLoss(_LensLoss):
    r"""Module form of :func:`lensed_cross_entropy`, a drop-in for ``nn.CrossEntropyLoss``.

    The lens (rows are target distributions, rows sum to 1) is a registered
    buffer: it moves with ``.to(device)`` and is saved in ``state_dict``.

    Example:
        >>> loss_fn = LensedCrossEntropyLoss(torch.eye(3))
        >>> x, y = torch.zeros(2, 3), torch.tensor([0, 2])
        >>> torch.allclose(loss_fn(x, y), torch.nn.functional.cross_entropy(x, y))
        True
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return lensed_cross_entropy(input, target, self.lens, reduction=self.reduction)


class PredictionLensedCrossEntropyLoss(_LensLoss):
    r"""Module form of :func:`prediction_lensed_cross_entropy`; the lens is a buffer.

    Example:
        >>> loss_fn = PredictionLensedCrossEntropyLoss(torch.eye(3))
        >>> x, y = torch.zeros(2, 3), torch.tensor([0, 2])
        >>> torch.allclose(loss_fn(x, y), torch.nn.functional.cross_entropy(x, y))
        True
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return prediction_lensed_cross_entropy(input, target, self.lens, reduction=self.reduction)


__all__ = [
    "LensedCrossEntropyLoss",
    "PredictionLensedCrossEntropyLoss",
    "lensed_cross_entropy",
    "prediction_lensed_cross_entropy",
    "soft_target_cross_entropy",
]
