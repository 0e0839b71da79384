r"""What a lens changes on a set of predictions: tables, accuracies, gradients.

Lens convention: row ``i`` of the lens is the target distribution used when
the true label is ``i``; rows sum to 1.

:func:`analyze` does every tensor computation once (one forward and backward
per loss) and returns an :class:`Analysis`; the table builders only format it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import pandas as pd
import torch
from torch import Tensor

from lensdash.errors import InputError
from lensdash.families import FAMILIES as _REGISTRY
from lensdash.families import family as _registered_family
from lensdash.lens import Lens, class_names
from lensdash.losses import check_loss_inputs

#: Family name -> loss function, read from the one registry (lensdash.families).
FAMILIES = {name: entry.loss for name, entry in _REGISTRY.items()}


def _family(family: str):
    return _registered_family(family).loss


def per_sample_losses_and_gradients(
    logits: Tensor, labels: Tensor, lens: object, *, family: str = "target"
) -> tuple[Tensor, Tensor]:
    r"""Per-sample loss (N,) and its gradient with respect to the logits (N, K).

    Each sample's loss depends on its own row only, so the gradient of the sum
    is the per-sample gradient: :math:`\mathrm{softmax}(x_n) - C_{y_n}` for the
    target side. Lens convention: rows are target distributions, rows sum to 1.

    Example:
        >>> loss, grad = per_sample_losses_and_gradients(torch.zeros(1, 2), torch.tensor([0]), torch.eye(2))
        >>> grad
        tensor([[-0.5000,  0.5000]])
    """
    loss_fn = _family(family)
    x = logits.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(x, labels, lens, reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def class_mean(values: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Mean of the rows of ``values`` (N, D) per true class: (K, D); classes without samples give 0."""
    sums = torch.zeros(num_classes, values.shape[1], dtype=values.dtype, device=values.device)
    sums.index_add_(0, labels, values)
    counts = torch.bincount(labels, minlength=num_classes).to(values.dtype).clamp_min(1)
    return sums / counts.unsqueeze(1)


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


def confusion_counts(predicted: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """K×K counts: row = true class, column = predicted class.

    Example:
        >>> confusion_counts(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2)
        tensor([[1, 1],
                [0, 1]])
    """
    flat = labels * num_classes + predicted
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class Analysis:
    """Everything the dashboard and the report show, for one lens on one set of predictions."""

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
    """The unlensed half of an :class:`Analysis`: it depends on the predictions only, so lens edits reuse it."""

    labels: Tensor  # (N,)
    predicted: Tensor  # (N,)
    unlensed_loss: Tensor  # (N,)
    p_true: Tensor  # (N,)
    log_norm: Tensor  # (N,) logsumexp of each row
    grad_unlensed: Tensor  # (K, K)
    confusion: Tensor  # (K, K)


def baseline(logits: Tensor, labels: Tensor) -> Baseline:
    """Unlensed losses, class-mean gradients, predictions and confusion of (N, K) logits.

    Example:
        >>> baseline(torch.zeros(2, 3), torch.tensor([0, 2])).unlensed_loss
        tensor([1.0986, 1.0986])
    """
    check_loss_inputs(logits, labels, ignore_index=None, allow_spatial=False, allow_probabilities=False)
    return _baseline(logits, labels)


def _baseline(logits: Tensor, labels: Tensor) -> Baseline:
    k = logits.shape[1]
    identity = torch.eye(k, dtype=logits.dtype, device=logits.device)
    unlensed, probs = per_sample_losses_and_gradients(logits, labels, identity, family="target")
    grad_unlensed = class_mean(probs, labels, k)
    # softmax = unlensed gradient + one-hot: reuse that buffer rather than another pass.
    probs[torch.arange(len(labels), device=labels.device), labels] += 1
    predicted = probs.argmax(dim=1)
    p_true = probs.gather(1, labels.unsqueeze(1)).squeeze(1)
    log_norm = torch.logsumexp(logits.detach(), dim=1)
    return Baseline(
        labels, predicted, unlensed, p_true, log_norm, grad_unlensed, confusion_counts(predicted, labels, k)
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
) -> Analysis:
    r"""Compare the unlensed and lensed loss on fixed predictions.

    Lens convention: row ``i`` is the target distribution for true label ``i``;
    rows sum to 1. The unlensed loss is ``F.cross_entropy``; the lensed one is
    ``family`` (``'target'``: the seed's :math:`\mathrm{KL}(C_y\|\mathrm{softmax}(x))`,
    ``'prediction'``: :math:`-\log(\mathrm{softmax}(x) C)_y`).

    Args:
        logits: (N, K) logits (log-probabilities work too).
        labels: (N,) int64 class indices.
        lens: K×K lens or :class:`~lensdash.Lens`.
        family: ``'target'`` or ``'prediction'``.
        class_names_: K names (default: the lens's names, else ``"0"..``).
        baseline: the :func:`baseline` of these predictions, to skip the
            unlensed half (it does not depend on the lens).

    Returns:
        An :class:`Analysis`.

    Raises:
        InputError: bad shapes, dtypes or labels; unknown family; a baseline of other predictions.
        LensError: invalid lens.

    Example:
        >>> a = analyze(torch.log(torch.tensor([[.4, .3, .2, .1]])), torch.tensor([0]),
        ...             [[.5, .5, 0, 0], [.5, .5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        >>> round(a.summary()["unlensed_loss"], 4), round(a.summary()["lensed_loss"], 4)
        (0.9163, 0.367)
    """
    check_loss_inputs(logits, labels, ignore_index=None, allow_spatial=False, allow_probabilities=False)
    k = logits.shape[1]
    if baseline is None:
        baseline = _baseline(logits, labels)
    elif baseline.labels.shape != labels.shape or baseline.grad_unlensed.shape[0] != k:
        raise InputError.build(
            f"a baseline of these {len(labels)} × {k} predictions",
            f"one of {len(baseline.labels)} × {baseline.grad_unlensed.shape[0]}",
            fix="Compute it with baseline(logits, labels) on the same predictions.",
        )
    if class_names_ is None:
        class_names_ = lens.classes if isinstance(lens, Lens) else class_names(k)
    names = class_names(class_names_)
    lensed, grad_l = per_sample_losses_and_gradients(logits, labels, lens, family=family)
    grad_lensed = class_mean(grad_l, labels, k)
    del grad_l
    matrix = (lens.matrix if isinstance(lens, Lens) else torch.as_tensor(lens)).to(logits.device)
    lens_mass = _support_mass(logits.detach(), labels, matrix > 0, baseline.log_norm)
    lens_hit = lens_hits(matrix)[labels, baseline.predicted]
    lens_score = lens_credit(matrix)[labels, baseline.predicted]
    return Analysis(
        class_names=names,
        family=family,
        labels=labels,
        predicted=baseline.predicted,
        unlensed_loss=baseline.unlensed_loss,
        lensed_loss=lensed,
        p_true=baseline.p_true,
        lens_mass=lens_mass,
        lens_hit=lens_hit,
        lens_score=lens_score,
        grad_unlensed=baseline.grad_unlensed,
        grad_lensed=grad_lensed,
        confusion=baseline.confusion,
    )


# ---------------------------------------------------------------- tables


def per_sample_table(analysis: Analysis, metadata: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per sample: index, label, predicted class, both losses, their delta, p(true), lens mass.

    Args:
        analysis: from :func:`analyze`.
        metadata: optional columns kept aside from the scores (ids, file names, sites), one row per sample in the
            same order; added after ``sample`` (a name the table already uses gets `` (metadata)`` appended). Its
            values are data from files: pass the table through ``lensdash.sanitize.spreadsheet_safe`` before writing.

    Raises:
        InputError: metadata with another number of rows.

    Example:
        >>> a = analyze(torch.zeros(2, 2), torch.tensor([0, 1]), torch.eye(2))
        >>> list(per_sample_table(a).columns)[:4]
        ['sample', 'label', 'predicted', 'unlensed_loss']
        >>> list(per_sample_table(a, pd.DataFrame({"site": ["x", "y"]})).columns)[:3]
        ['sample', 'site', 'label']
    """
    names = pd.Categorical.from_codes(analysis.labels.cpu().numpy(), categories=list(analysis.class_names))
    pred = pd.Categorical.from_codes(analysis.predicted.cpu().numpy(), categories=list(analysis.class_names))
    table = pd.DataFrame(
        {
            "sample": range(analysis.num_samples),
            "label": names,
            "predicted": pred,
            "unlensed_loss": analysis.unlensed_loss.cpu().numpy(),
            "lensed_loss": analysis.lensed_loss.cpu().numpy(),
            "delta": analysis.delta.cpu().numpy(),
            "p_true": analysis.p_true.cpu().numpy(),
            "lens_mass": analysis.lens_mass.cpu().numpy(),
        }
    )
    if metadata is None or not metadata.shape[1]:
        return table
    if len(metadata) != len(table):
        raise InputError.build(
            f"one metadata row per sample ({len(table)})",
            f"{len(metadata)} rows",
            where="metadata",
            fix="Pass the metadata read with these predictions (Predictions.metadata).",
        )
    beside = metadata.reset_index(drop=True)
    beside.columns = [f"{c} (metadata)" if str(c) in table.columns else str(c) for c in beside.columns]
    return pd.concat([table[["sample"]], beside, table.drop(columns="sample")], axis=1)


@dataclass
class ClassSums:
    """Per-class sums of an analysis. Sums add across chunks of a file and across processes, so reports stream.

    ``count`` and ``correct`` are (K,) samples and top-1 hits per true class; ``lens_hit``
    and ``lens_score`` are (K,) sums of the lens-aware rule and the lens credit
    (:func:`lens_hits`, :func:`lens_credit`) per true class; losses are (K,) sums;
    ``grad_*`` are (K, K) sums of per-sample gradients (row = true class). All float64.
    The K×K confusion counts are :class:`~lensdash.metrics.MetricSums`' (the report
    holds both), so they are counted and all-reduced once.
    """

    count: Tensor
    correct: Tensor
    lens_hit: Tensor
    lens_score: Tensor
    unlensed: Tensor
    lensed: Tensor
    grad_unlensed: Tensor
    grad_lensed: Tensor

    @classmethod
    def zeros(cls, k: int, device: torch.device | str = "cpu") -> ClassSums:
        vec, mat = (
            (lambda: torch.zeros(k, dtype=torch.float64, device=device)),
            (lambda: torch.zeros(k, k, dtype=torch.float64, device=device)),
        )
        return cls(vec(), vec(), vec(), vec(), vec(), vec(), mat(), mat())

    @classmethod
    def of(cls, analysis: Analysis) -> ClassSums:
        labels, k = analysis.labels, analysis.num_classes
        count = torch.bincount(labels, minlength=k).double()
        return cls(
            count,
            analysis.confusion.diagonal().double(),
            per_class_total(analysis.lens_hit, labels, k),
            per_class_total(analysis.lens_score, labels, k),
            per_class_total(analysis.unlensed_loss, labels, k),
            per_class_total(analysis.lensed_loss, labels, k),
            analysis.grad_unlensed.double() * count.unsqueeze(1),
            analysis.grad_lensed.double() * count.unsqueeze(1),
        )

    def tensors(self) -> list[Tensor]:
        return [getattr(self, f.name) for f in fields(self)]

    def add_(self, other: ClassSums) -> ClassSums:
        for mine, theirs in zip(self.tensors(), other.tensors()):
            mine.add_(theirs)
        return self

    def _mean(self, sums: Tensor) -> Tensor:
        return per_class_mean(sums, self.count)

    def per_class_table(self, names: Sequence[str]) -> pd.DataFrame:
        """One row per true class: count, accuracy, lens-aware accuracy, lens soft score, mean losses and delta."""
        return pd.DataFrame(
            {
                "class": list(names),
                "count": self.count.long().cpu().numpy(),
                "accuracy": self._mean(self.correct).cpu().numpy(),
                "lens_aware_accuracy": self._mean(self.lens_hit).cpu().numpy(),
                "lens_soft_score": self._mean(self.lens_score).cpu().numpy(),
                "unlensed_loss": self._mean(self.unlensed).cpu().numpy(),
                "lensed_loss": self._mean(self.lensed).cpu().numpy(),
                "delta": self._mean(self.lensed - self.unlensed).cpu().numpy(),
            }
        )

    def class_mean_gradients(self) -> tuple[Tensor, Tensor]:
        """(unlensed, lensed) K×K class-mean gradients; classes without samples give 0."""
        counts = self.count.clamp_min(1).unsqueeze(1)
        return self.grad_unlensed / counts, self.grad_lensed / counts

    def summary(self) -> dict[str, float]:
        """Mean losses, their difference, accuracies, the lens soft score, N and K (as :meth:`Analysis.summary`)."""
        n = float(self.count.sum())
        unlensed, lensed = float(self.unlensed.sum()) / n, float(self.lensed.sum()) / n
        return {
            "unlensed_loss": unlensed,
            "lensed_loss": lensed,
            "delta": lensed - unlensed,
            "accuracy": float(self.correct.sum()) / n,
            "lens_aware_accuracy": float(self.lens_hit.sum()) / n,
            "lens_soft_score": float(self.lens_score.sum()) / n,
            "num_samples": int(n),
            "num_classes": int(self.count.shape[0]),
        }


def per_class_total(values: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """(K,) float64 sums of per-sample ``values`` (N,) per true class."""
    return torch.zeros(num_classes, dtype=torch.float64, device=labels.device).index_add_(0, labels, values.double())


def per_class_mean(sums: Tensor, count: Tensor) -> Tensor:
    """``sums / count`` per class; NaN where a class has no samples (a table shows it as missing, not 0)."""
    return (sums / count.clamp_min(1)).where(count > 0, torch.nan)


def per_class_table(analysis: Analysis) -> pd.DataFrame:
    """One row per true class: count, accuracy, lens-aware accuracy, mean losses and delta."""
    return ClassSums.of(analysis).per_class_table(analysis.class_names)


def confusion_table(analysis: Analysis, *, normalize: bool = False) -> pd.DataFrame:
    """The confusion matrix as a DataFrame (rows true, columns predicted), counts or row-normalised."""
    return confusion_frame(analysis.confusion, analysis.class_names, normalize=normalize)


def confusion_frame(counts: Tensor, names: Sequence[str], *, normalize: bool = False) -> pd.DataFrame:
    """K×K confusion counts (row = true class) as a DataFrame: integer counts, or row-normalised rates."""
    if normalize:
        values = (counts.double() / counts.double().sum(dim=1, keepdim=True).clamp_min(1)).cpu().numpy()
    else:
        values = counts.long().cpu().numpy()
    names = list(names)
    return pd.DataFrame(values, index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"))


def gradient_table(matrix: Tensor, names: Sequence[str]) -> pd.DataFrame:
    """A K×K class-mean gradient matrix as a DataFrame (row = true class, column = logit)."""
    return pd.DataFrame(
        matrix.detach().cpu().numpy(),
        index=pd.Index(list(names), name="true class"),
        columns=pd.Index(list(names), name="logit"),
    )


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


# ------------------------------------------------------------ lenses from data


def soft_confusion(logits: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Mean predicted probability per true class: K×K, row = true class (rows of absent classes are 0).

    ``S[i, j] = mean over samples n with y_n = i of softmax(x_n)_j``, accumulated in float64.

    Args:
        logits: (N, K) scores.
        labels: (N,) true classes in ``[0, K)``.
        num_classes: K.

    Returns:
        (K, K) float64; each row of a present class sums to 1.

    Example:
        >>> soft_confusion(torch.zeros(2, 2), torch.tensor([0, 0]), 2)
        tensor([[0.5000, 0.5000],
                [0.0000, 0.0000]], dtype=torch.float64)
    """
    sums = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=logits.device)
    # In row blocks: a float64 softmax of the whole (N, K) array would hold four times the float32 logits at once
    # (on a hosted server, for every user reading a file at that moment); a block keeps it to a few MB.
    rows = max(1, _SOFT_CONFUSION_CELLS // max(1, num_classes))
    for start in range(0, logits.shape[0], rows):
        block = torch.softmax(logits[start : start + rows].double(), dim=1)
        sums.index_add_(0, labels[start : start + rows], block)
    counts = torch.bincount(labels, minlength=num_classes).double().clamp_min(1)
    return sums / counts.unsqueeze(1)


#: Cells (rows × classes) of one block of :func:`soft_confusion` (8 MB of float64).
_SOFT_CONFUSION_CELLS = 1 << 20


def confused_pairs(confusion: Tensor, names: Sequence[str], top: int = 10) -> pd.DataFrame:
    """The most mutually confused class pairs: rates ``a→b`` and ``b→a`` (row-normalised) and their mean.

    Example:
        >>> confused_pairs(torch.tensor([[8, 2, 0], [3, 7, 0], [0, 0, 10]]), ["a", "b", "c"], top=1)
           a  b  a→b  b→a  mutual
        0  a  b  0.2  0.3    0.25
    """
    rates = confusion.double() / confusion.double().sum(dim=1, keepdim=True).clamp_min(1e-12)
    mutual = (rates + rates.T) / 2
    k = rates.shape[0]
    iu = torch.triu_indices(k, k, offset=1)
    scores = mutual[iu[0], iu[1]]
    order = torch.argsort(scores, descending=True, stable=True)[:top]
    rows = []
    for o in order.tolist():
        i, j = int(iu[0, o]), int(iu[1, o])
        rows.append(
            {
                "a": names[i],
                "b": names[j],
                "a→b": round(float(rates[i, j]), 4),
                "b→a": round(float(rates[j, i]), 4),
                "mutual": round(float(mutual[i, j]), 4),
            }
        )
    return pd.DataFrame(rows, columns=["a", "b", "a→b", "b→a", "mutual"])


def suggest_groups(
    confusion: Tensor, names: Sequence[str], *, threshold: float = 0.1, top: int = 5, min_samples: int = 5
) -> list[list[str]]:
    """Groups of interchangeable classes: pairs confused at a rate of at least ``threshold``, joined transitively.

    ``confusion`` holds counts (row = true class). Classes with fewer than
    ``min_samples`` samples are left out: their rates are noise.

    Example:
        >>> suggest_groups(torch.tensor([[8, 2, 0], [3, 7, 0], [0, 0, 10]]), ["a", "b", "c"])
        [['a', 'b']]
    """
    enough = confusion.sum(dim=1) >= min_samples
    pairs = confused_pairs(confusion * (enough.unsqueeze(0) & enough.unsqueeze(1)), names, top=top)
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            n = parent[n]
        return n

    for row in pairs.itertuples(index=False):
        if row.mutual >= threshold:
            parent[root(row.b)] = root(row.a)
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(root(n), []).append(n)
    return [g for g in groups.values() if len(g) > 1]


def lens_pairs(lens: object, names: Sequence[str] | None = None, top: int = 10) -> pd.DataFrame:
    """Where a lens moves target mass: its largest off-diagonal entries, ``true label → target: weight``.

    Lens convention: rows are target distributions, rows sum to 1.

    Example:
        >>> lens_pairs([[0.7, 0.3], [0, 1]], ["a", "b"])
          true label target  weight
        0          a      b     0.3
    """
    matrix = torch.as_tensor(getattr(lens, "matrix", lens), dtype=torch.float64)
    names = class_names(names if names is not None else getattr(lens, "classes", None) or matrix.shape[0])
    off = matrix.clone()
    off.fill_diagonal_(0)
    flat = off.reshape(-1)
    order = torch.argsort(flat, descending=True, stable=True)[:top]
    k = matrix.shape[0]
    rows = [
        {"true label": names[i // k], "target": names[i % k], "weight": round(float(flat[i]), 4)}
        for i in order.tolist()
        if flat[i] > 0
    ]
    return pd.DataFrame(rows, columns=["true label", "target", "weight"])
