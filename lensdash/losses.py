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

from lensdash._kernel_args import index_args, probability_args
from lensdash._kernels import HALF, FusedLoss
from lensdash._plan import plan_for
from lensdash.errors import InputError
from lensdash.lens import lens_matrix

#: The oldest torch the losses are tested with (pyproject's ``torch>=2.13``). Under torch 2.11, a ``torch.compile``'d
#: training step that calls these losses was measured to return zero gradients (CPU and CUDA, eager values right),
#: so an older torch is said at import rather than trained with silently.
MIN_TORCH = (2, 13)


def _torch_version(text: str) -> tuple[int, int]:
    """``(major, minor)`` of a torch version string.

    >>> _torch_version("2.11.0+cu130"), _torch_version("2.13.0")
    ((2, 11), (2, 13))
    """
    major, minor = text.split("+")[0].split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


if _torch_version(str(torch.__version__)) < MIN_TORCH:
    warnings.warn(
        f"lensdash needs torch>={'.'.join(map(str, MIN_TORCH))}, found {torch.__version__}: its losses are right in "
        "eager mode, but under torch.compile this torch was measured to give zero gradients. Upgrade torch, or do "
        "not compile the loss.",
        RuntimeWarning,
        stacklevel=2,
    )

_REDUCTIONS = ("mean", "sum", "none")

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
    # Label values are counted inside the fused pass (no extra passes over the target), checked after it.
    probabilities = check_loss_inputs(
        input,
        target,
        reduction=reduction,
        ignore_index=ignore_index,
        weight=weight,
        label_smoothing=label_smoothing,
        validate_args=False,
    )
    k = input.shape[1]
    dtype = torch.float32 if input.dtype in HALF else input.dtype
    device = input.device
    eps = float(label_smoothing)
    w = None if weight is None else weight.detach().to(device=device, dtype=dtype)
    x, t, shape = _flatten(input, target, probabilities)
    if probabilities:
        kernel, scale, args = probability_args(side, t, lens, k, dtype, device, w, eps, with_entropy)
        if reduction != "mean":
            scale = torch.ones((), dtype=dtype, device=device)
    else:
        scale = None  # computed by the kernel, from the labels, in the same call as the pass
        plan = plan_for(lens, side, k, dtype, device)
        kernel, tables = index_args(side, plan, w, eps, k, with_entropy, compiled)
        args = (t, ignore_index, *tables)
    loss, bad = FusedLoss.apply(x, kernel, compiled, reduction, scale, *args)
    if validate_args and not probabilities and t.numel():
        if device.type != "cpu" or torch.compiler.is_compiling():
            # Checked where the data lives: no host synchronisation, no graph break.
            torch._assert_async(bad == 0, f"lensdash: target holds a class index outside 0..{k - 1}")
        elif int(bad):
            _check_labels(target, k, ignore_index)  # raises, naming the first bad position
    return loss.reshape(shape) if reduction == "none" else loss


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
        validate_args: check label values (counted inside the fused pass; on CPU an
            :class:`InputError` naming the position, elsewhere a device-side assert, no host
            sync); ``False`` skips it, and a label out of range then counts as ignored.
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
    (the identity lens gives ``F.cross_entropy``'s ``-1``), for class indices
    and probability targets alike.
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
