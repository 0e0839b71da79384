r"""What a lens changes on a set of predictions: tables, accuracies, gradients.

Lens convention: row ``i`` of the lens is the target distribution used when
the true label is ``i``; rows sum to 1.

:func:`analyze` does every tensor computation once (one forward and backward
per loss) and returns an :class:`Analysis`; the table builders only format it.
The lens-aware rule, the tables and the lenses suggested by the data live in
private modules (``_lens_rule``, ``_analysis_tables``, ``_data_lenses``) and
are imported from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lensdash._analysis_tables import (
    ClassSums,
    confusion_counts,
    confusion_frame,
    confusion_table,
    gradient_table,
    per_class_mean,
    per_class_table,
    per_class_total,
    per_sample_table,
)
from lensdash._data_lenses import confused_pairs, lens_pairs, soft_confusion, suggest_groups
from lensdash._lens_rule import (
    LENS_HIT_SHARE,
    accuracy,
    lens_aware_accuracy,
    lens_credit,
    lens_hits,
    lens_soft_score,
)
from lensdash.errors import InputError
from lensdash.families import FAMILIES as _REGISTRY
from lensdash.families import family as _registered_family
from lensdash.lens import Lens, class_names, lens_matrix
from lensdash.losses import check_loss_inputs

#: Family name -> loss function, read from the one registry (lensdash.families).
FAMILIES = {name: entry.loss for name, entry in _REGISTRY.items()}


def _family(family: str):
    return _registered_family(family).loss


def per_sample_losses_and_gradients(
    logits: Tensor, labels: Tensor, lens: object, *, family: str = "target", targets: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""Per-sample loss (N,) and its gradient with respect to the logits (N, K).

    Each sample's loss depends on its own row only, so the gradient of the sum
    is the per-sample gradient: :math:`\mathrm{softmax}(x_n) - C_{y_n}` for the
    target side. With soft labels (``targets``, per-sample distributions
    :math:`t_n`) the lensed target is :math:`t_n C` and the gradient
    :math:`\mathrm{softmax}(x_n) - t_n C`; ``labels`` are then not used.
    Lens convention: rows are target distributions, rows sum to 1.

    Args:
        logits: (N, K).
        labels: (N,) int64 class indices.
        lens: K×K lens or :class:`~lensdash.Lens`.
        family: ``'target'`` or ``'prediction'``.
        targets: (N, K) per-sample target distributions (soft labels), or None.

    Example:
        >>> loss, grad = per_sample_losses_and_gradients(torch.zeros(1, 2), torch.tensor([0]), torch.eye(2))
        >>> grad
        tensor([[-0.5000,  0.5000]])
        >>> _, grad = per_sample_losses_and_gradients(
        ...     torch.zeros(1, 2), torch.tensor([0]), torch.eye(2), targets=torch.tensor([[0.75, 0.25]]))
        >>> grad
        tensor([[-0.2500,  0.2500]])
    """
    loss_fn = _family(family)
    target = labels if targets is None else targets.to(device=logits.device, dtype=logits.dtype)
    x = logits.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(x, target, lens, reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def target_entropy(targets: Tensor) -> Tensor:
    r"""(N,) entropy :math:`H(t_n) = -\sum_j t_{nj} \log t_{nj}` of per-sample target distributions (0 log 0 = 0).

    The target-side (KL) and the cross-entropy forms of a loss differ by it: 0 for one-hot labels.

    Example:
        >>> target_entropy(torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
        tensor([0.6931, 0.0000])
    """
    return torch.special.entr(targets).sum(dim=1)


def unlensed_losses(logits: Tensor, labels: Tensor, *, family: str = "target", targets: Tensor | None = None) -> Tensor:
    r"""(N,) loss of ``family`` with the identity lens: what :attr:`Analysis.unlensed_loss` holds.

    With class labels it is ``F.cross_entropy`` for both families. With soft labels :math:`t_n`
    it is the family's loss with the identity lens, so that the lens alone makes the difference:
    prediction-side ``F.cross_entropy(x, t)``, target-side :math:`\mathrm{KL}(t_n \| \mathrm{softmax}(x_n))`,
    the cross-entropy minus :func:`target_entropy`.

    Example:
        >>> x = torch.zeros(1, 2)
        >>> unlensed_losses(x, torch.tensor([0]), targets=torch.tensor([[0.5, 0.5]]))
        tensor([0.])
        >>> unlensed_losses(x, torch.tensor([0]), family="prediction", targets=torch.tensor([[0.5, 0.5]]))
        tensor([0.6931])
    """
    _family(family)
    if targets is None:
        return F.cross_entropy(logits.detach(), labels, reduction="none")
    t = targets.to(device=logits.device, dtype=logits.dtype)
    loss = F.cross_entropy(logits.detach(), t, reduction="none")
    return loss - target_entropy(t) if family == "target" else loss


def class_mean(values: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Mean of the rows of ``values`` (N, D) per true class: (K, D); classes without samples give 0."""
    sums = torch.zeros(num_classes, values.shape[1], dtype=values.dtype, device=values.device)
    sums.index_add_(0, labels, values)
    counts = torch.bincount(labels, minlength=num_classes).to(values.dtype).clamp_min(1)
    return sums / counts.unsqueeze(1)


@dataclass(frozen=True)
class Analysis:
    """Everything the dashboard and the report show, for one lens on one set of predictions.

    With soft labels (``targets``, per-sample distributions) the losses and gradients use them, lensed as
    :math:`t_n C`; ``labels`` are their majority labels, which the label-based numbers use (accuracy, the
    lens-aware rule, the confusion matrix, ``p_true``, the grouping of the per-class means).
    """

    class_names: tuple[str, ...]
    family: str
    labels: Tensor  # (N,)
    predicted: Tensor  # (N,)
    unlensed_loss: Tensor  # (N,)
    lensed_loss: Tensor  # (N,)
    p_true: Tensor  # (N,) probability of the true class
    lens_mass: Tensor  # (N,) probability inside the support of the lens row of the true class
    lens_hit: Tensor  # (N,) bool: the lens-aware rule (lens_hits) holds for the predicted class
    lens_score: Tensor  # (N,) float64 lens_credit of the predicted class: C[y, pred] / max_j C[y, j]
    grad_unlensed: Tensor  # (K, K) class-mean gradient, row = true class
    grad_lensed: Tensor  # (K, K)
    confusion: Tensor  # (K, K) counts
    targets: Tensor | None = None  # (N, K) soft labels (rows sum to 1), or None for class labels

    @property
    def soft_labels(self) -> bool:
        """Whether the losses and gradients use per-sample target distributions (``labels`` are their majority)."""
        return self.targets is not None

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def grad_difference(self) -> Tensor:
        return self.grad_lensed - self.grad_unlensed

    @property
    def delta(self) -> Tensor:
        return self.lensed_loss - self.unlensed_loss

    def summary(self) -> dict[str, float]:
        """Mean losses, their difference, top-1 and lens-aware accuracy, the lens soft score, N and K.

        ``lens_aware_accuracy`` is the share of samples for which :func:`lens_hits` holds;
        ``lens_soft_score`` the mean :func:`lens_credit` of the predicted class.
        """
        return {
            "unlensed_loss": float(self.unlensed_loss.mean()),
            "lensed_loss": float(self.lensed_loss.mean()),
            "delta": float(self.delta.mean()),
            "accuracy": float((self.predicted == self.labels).double().mean()),
            "lens_aware_accuracy": float(self.lens_hit.double().mean()),
            "lens_soft_score": float(self.lens_score.mean()),
            "num_samples": self.num_samples,
            "num_classes": self.num_classes,
        }


@dataclass(frozen=True)
class Baseline:
    """The unlensed half of an :class:`Analysis`: it depends on the predictions only, so lens edits reuse it.

    ``unlensed_loss`` is the cross-entropy (``F.cross_entropy`` with the soft labels ``targets`` when given);
    ``entropy`` the soft labels' :func:`target_entropy`, which the target side subtracts (see :func:`unlensed_losses`).
    """

    labels: Tensor  # (N,)
    predicted: Tensor  # (N,)
    unlensed_loss: Tensor  # (N,)
    p_true: Tensor  # (N,)
    log_norm: Tensor  # (N,) logsumexp of each row
    grad_unlensed: Tensor  # (K, K)
    confusion: Tensor  # (K, K)
    targets: Tensor | None = None  # (N, K) soft labels, or None
    entropy: Tensor | None = None  # (N,) their entropy, or None

    def unlensed_for(self, family: str) -> Tensor:
        """(N,) :func:`unlensed_losses` of ``family``: cross-entropy less soft labels' entropy on the target side."""
        if family == "target" and self.entropy is not None:
            return self.unlensed_loss - self.entropy
        return self.unlensed_loss


def baseline(logits: Tensor, labels: Tensor, targets: Tensor | None = None) -> Baseline:
    """Unlensed losses, class-mean gradients, predictions and confusion of (N, K) logits.

    Args:
        logits: (N, K).
        labels: (N,) int64 class indices (with ``targets``: their majority labels).
        targets: (N, K) soft labels, each row a distribution, or None.

    Raises:
        InputError: bad shapes or dtypes, labels out of range.

    Example:
        >>> baseline(torch.zeros(2, 3), torch.tensor([0, 2])).unlensed_loss
        tensor([1.0986, 1.0986])
    """
    check_loss_inputs(logits, labels, ignore_index=None, allow_spatial=False, allow_probabilities=False)
    _check_targets(logits, targets)
    return _baseline(logits, labels, targets)


def _check_targets(logits: Tensor, targets: Tensor | None) -> None:
    if targets is None:
        return
    if not isinstance(targets, Tensor) or targets.shape != logits.shape or not targets.is_floating_point():
        found = f"{tuple(targets.shape)} {targets.dtype}" if isinstance(targets, Tensor) else type(targets).__name__
        raise InputError.build(
            f"soft labels as a floating-point tensor shaped like the logits {tuple(logits.shape)}",
            found,
            where="targets",
            fix="Pass one distribution over the classes per sample (Predictions.targets), or None.",
        )


def _baseline(logits: Tensor, labels: Tensor, targets: Tensor | None = None) -> Baseline:
    k = logits.shape[1]
    identity = torch.eye(k, dtype=logits.dtype, device=logits.device)
    if targets is None:
        unlensed, probs = per_sample_losses_and_gradients(logits, labels, identity, family="target")
        grad_unlensed = class_mean(probs, labels, k)
        # softmax = unlensed gradient + one-hot: reuse that buffer rather than another pass.
        probs[torch.arange(len(labels), device=labels.device), labels] += 1
        entropy = None
    else:
        # F.cross_entropy(x, t) works in log space (finite for any finite logits); its gradient is softmax − t.
        t = targets.to(device=logits.device, dtype=logits.dtype)
        unlensed = F.cross_entropy(logits.detach(), t, reduction="none")
        probs = torch.softmax(logits.detach(), dim=1)
        grad_unlensed = class_mean(probs - t, labels, k)
        entropy = target_entropy(t)
    predicted = probs.argmax(dim=1)
    p_true = probs.gather(1, labels.unsqueeze(1)).squeeze(1)
    log_norm = torch.logsumexp(logits.detach(), dim=1)
    return Baseline(
        labels,
        predicted,
        unlensed,
        p_true,
        log_norm,
        grad_unlensed,
        confusion_counts(predicted, labels, k),
        targets,
        entropy,
    )


def _support_mass(logits: Tensor, labels: Tensor, support: Tensor, log_norm: Tensor) -> Tensor:
    """Per sample, the softmax mass on the support of its true class's lens row.

    Lens rows usually have few non-zeros, so gather those columns only (N × width)
    rather than building an N×K softmax and mask.
    """
    width = int(support.sum(dim=1).max())
    if width > support.shape[1] // 4:
        return (torch.softmax(logits, dim=1) * support.index_select(0, labels)).sum(dim=1)
    order = torch.argsort(support.to(torch.int8), dim=1, descending=True, stable=True)[:, :width]
    valid = support.gather(1, order)
    cols, keep = order.index_select(0, labels), valid.index_select(0, labels)
    return (logits.gather(1, cols) - log_norm.unsqueeze(1)).exp().mul(keep).sum(dim=1)


def analyze(
    logits: Tensor,
    labels: Tensor,
    lens: object,
    *,
    family: str = "target",
    class_names_: Sequence[str] | None = None,
    baseline: Baseline | None = None,
    targets: Tensor | None = None,
) -> Analysis:
    r"""Compare the unlensed and lensed loss on fixed predictions.

    Lens convention: row ``i`` is the target distribution for true label ``i``;
    rows sum to 1. The unlensed loss is ``F.cross_entropy``; the lensed one is
    ``family`` (``'target'``: the seed's :math:`\mathrm{KL}(C_y\|\mathrm{softmax}(x))`,
    ``'prediction'``: :math:`-\log(\mathrm{softmax}(x) C)_y`).

    Soft labels (``targets``, a distribution :math:`t_n` per sample): the losses and
    gradients use :math:`t_n C` in place of :math:`C_{y_n}` (target side
    :math:`\mathrm{KL}(t_n C\|\mathrm{softmax}(x_n))`, prediction side
    :math:`-\sum_y t_{ny} \log(\mathrm{softmax}(x_n) C)_y`), and the unlensed loss is the
    same family with the identity lens (:func:`unlensed_losses`), so the difference is
    the lens's alone. Accuracy, the lens-aware rule, the confusion matrix and the
    per-class grouping use ``labels``, the majority labels.

    Args:
        logits: (N, K) logits (log-probabilities work too).
        labels: (N,) int64 class indices (with ``targets``: their majority labels).
        lens: K×K lens or :class:`~lensdash.Lens`.
        family: ``'target'`` or ``'prediction'``.
        class_names_: K names (default: the lens's names, else ``"0"..``).
        baseline: the :func:`baseline` of these predictions, to skip the
            unlensed half (it does not depend on the lens).
        targets: (N, K) soft labels (``Predictions.targets``), or None.

    Returns:
        An :class:`Analysis`.

    Raises:
        InputError: bad shapes, dtypes or labels; unknown family; a baseline of other predictions
            (or one computed with soft labels where none are given, or the reverse).
        LensError: invalid lens.

    Example:
        >>> a = analyze(torch.log(torch.tensor([[.4, .3, .2, .1]])), torch.tensor([0]),
        ...             [[.5, .5, 0, 0], [.5, .5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        >>> round(a.summary()["unlensed_loss"], 4), round(a.summary()["lensed_loss"], 4)
        (0.9163, 0.367)
    """
    check_loss_inputs(logits, labels, ignore_index=None, allow_spatial=False, allow_probabilities=False)
    _check_targets(logits, targets)
    k = logits.shape[1]
    if baseline is None:
        baseline = _baseline(logits, labels, targets)
    elif baseline.labels.shape != labels.shape or baseline.grad_unlensed.shape[0] != k:
        raise InputError.build(
            f"a baseline of these {len(labels)} × {k} predictions",
            f"one of {len(baseline.labels)} × {baseline.grad_unlensed.shape[0]}",
            fix="Compute it with baseline(logits, labels) on the same predictions.",
        )
    elif (baseline.targets is None) != (targets is None):
        raise InputError.build(
            "a baseline computed with the same labels" + (" (soft labels)" if targets is not None else ""),
            "one computed " + ("without soft labels" if targets is not None else "with soft labels"),
            fix="Compute it with baseline(logits, labels, targets) on the same labels.",
        )
    if class_names_ is None:
        class_names_ = lens.classes if isinstance(lens, Lens) else class_names(k)
    names = class_names(class_names_)
    lensed, grad_l = per_sample_losses_and_gradients(logits, labels, lens, family=family, targets=targets)
    grad_lensed = class_mean(grad_l, labels, k)
    del grad_l
    matrix = lens_matrix(lens, k, device=logits.device)
    if targets is None:
        lens_mass = _support_mass(logits.detach(), labels, matrix > 0, baseline.log_norm)
    else:  # the support of each sample's own lensed target t_n C
        lensed_targets = targets.to(device=logits.device, dtype=matrix.dtype) @ matrix
        lens_mass = (torch.softmax(logits.detach(), dim=1) * (lensed_targets > 0)).sum(dim=1)
    lens_hit = lens_hits(matrix)[labels, baseline.predicted]
    lens_score = lens_credit(matrix)[labels, baseline.predicted]
    return Analysis(
        class_names=names,
        family=family,
        labels=labels,
        predicted=baseline.predicted,
        unlensed_loss=baseline.unlensed_for(family),
        lensed_loss=lensed,
        p_true=baseline.p_true,
        lens_mass=lens_mass,
        lens_hit=lens_hit,
        lens_score=lens_score,
        grad_unlensed=baseline.grad_unlensed,
        grad_lensed=grad_lensed,
        confusion=baseline.confusion,
        targets=targets,
    )


__all__ = [
    "FAMILIES",
    "LENS_HIT_SHARE",
    "Analysis",
    "Baseline",
    "ClassSums",
    "accuracy",
    "analyze",
    "baseline",
    "class_mean",
    "confused_pairs",
    "confusion_counts",
    "confusion_frame",
    "confusion_table",
    "gradient_table",
    "lens_aware_accuracy",
    "lens_credit",
    "lens_hits",
    "lens_pairs",
    "lens_soft_score",
    "per_class_mean",
    "per_class_table",
    "per_class_total",
    "per_sample_losses_and_gradients",
    "per_sample_table",
    "soft_confusion",
    "suggest_groups",
    "target_entropy",
    "unlensed_losses",
]
