r"""The evaluation practitioners already read, with and without a lens, in one streamable pass.

Per-class precision, recall, F1 and support with macro and weighted averages (as
``sklearn.metrics.precision_recall_fscore_support(..., zero_division=0)``), top-k
accuracy (as ``sklearn.metrics.top_k_accuracy_score``), the expected and maximum
calibration error of the top-label confidence (as torchmetrics'
``MulticlassCalibrationError(n_bins=15, norm="l1" | "max")``) with the data of a
reliability diagram, and the same calibration for the lensed prediction.

Everything is a sum over samples: :class:`MetricSums` adds chunk by chunk and
across processes (``all_reduce`` of :meth:`MetricSums.tensors`), and the metrics
are taken once from the sums, so a streamed or sharded run equals one in memory.

Lens convention: a lens ``C`` is K×K, row ``y`` is the target distribution used
when the true label is ``y``; rows sum to 1. The lens-aware rule (a prediction
``ŷ`` counts when :math:`C_{y\hat y} \ge \tfrac12 \max_j C_{yj}`) and the lens
credit :math:`C_{y\hat y} / \max_j C_{yj}` live in :mod:`lensdash.analysis`
(:func:`~lensdash.analysis.lens_hits`, :func:`~lensdash.analysis.lens_credit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from lensdash.analysis import confusion_counts, lens_credit, lens_hits, per_class_mean, per_class_total
from lensdash.errors import InputError
from lensdash.lens import validate_lens
from lensdash.losses import check_loss_inputs

#: Equal-width confidence bins of the calibration error (torchmetrics' default too).
N_BINS = 15
#: Classes above which top-k accuracy uses k = 5.
TOP_K = 5


def default_top_k(num_classes: int) -> int:
    """k of the top-k accuracy: 5 where K > 5, else K - 1 (k ≥ K would always be 1), at least 1.

    Example:
        >>> default_top_k(10), default_top_k(4), default_top_k(2)
        (5, 3, 1)
    """
    return TOP_K if num_classes > TOP_K else max(1, num_classes - 1)


# ---------------------------------------------------------------- per-class scores


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator`` with 0 where the denominator is 0 (sklearn's ``zero_division=0``)."""
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), 0.0)


def precision_recall_f1(confusion: Tensor) -> dict[str, Tensor]:
    r"""Per-class precision, recall, F1 and support from K×K confusion counts (row = true class).

    With :math:`tp_i = M_{ii}`, support :math:`s_i = \sum_j M_{ij}` and predicted
    count :math:`c_i = \sum_j M_{ji}`: precision :math:`tp_i / c_i`, recall
    :math:`tp_i / s_i`, :math:`F_1 = 2\,tp_i / (s_i + c_i)`; a zero denominator gives
    0. Exactly ``sklearn.metrics.precision_recall_fscore_support(y, ŷ,
    labels=range(K), zero_division=0)`` (which computes F1 in the same form).

    Args:
        confusion: (K, K) counts, any dtype.

    Returns:
        ``precision``, ``recall``, ``f1``, ``support``: (K,) float64 each.

    Example:
        >>> s = precision_recall_f1(torch.tensor([[2, 1, 0], [0, 1, 0], [0, 0, 0]]))
        >>> s["precision"], s["recall"]
        (tensor([1.0000, 0.5000, 0.0000], dtype=torch.float64), tensor([0.6667, 1.0000, 0.0000], dtype=torch.float64))
    """
    counts = confusion.double()
    tp, support, predicted = counts.diagonal(), counts.sum(dim=1), counts.sum(dim=0)
    return {
        "precision": _ratio(tp, predicted),
        "recall": _ratio(tp, support),
        "f1": _ratio(2 * tp, support + predicted),
        "support": support,
    }


def averaged_scores(confusion: Tensor) -> dict[str, float]:
    r"""Macro and support-weighted averages of :func:`precision_recall_f1` over all K classes.

    Macro: the plain mean over the K classes (a class without samples or predictions
    counts as 0, as sklearn with ``labels=range(K), zero_division=0``). Weighted: the
    mean weighted by support; 0 when there are no samples.

    Returns:
        ``macro_precision``, ``macro_recall``, ``macro_f1``, ``weighted_precision``,
        ``weighted_recall``, ``weighted_f1``.

    Example:
        >>> round(averaged_scores(torch.tensor([[2, 1], [0, 1]]))["macro_f1"], 4)
        0.7333
    """
    scores = precision_recall_f1(confusion)
    support = scores["support"]
    total = float(support.sum())
    out = {}
    for name in ("precision", "recall", "f1"):
        out[f"macro_{name}"] = float(scores[name].mean())
    for name in ("precision", "recall", "f1"):
        out[f"weighted_{name}"] = float((scores[name] * support).sum()) / total if total > 0 else 0.0
    return out


# ---------------------------------------------------------------- top-k


def top_k_hits(scores: Tensor, labels: Tensor, k: int) -> Tensor:
    r"""(N,) bool: the true class is among the ``k`` highest scores, ties as ``sklearn.metrics.top_k_accuracy_score``.

    sklearn ranks with a stable ascending argsort read backwards, so among equal
    scores the *higher* class index ranks first. The rank of the true class ``y`` is
    :math:`\#\{j: x_j > x_y\} + \#\{j > y: x_j = x_y\}`; it is a hit when the rank is
    below ``k``. Two O(NK) counts bound it, :math:`\#\{x_j > x_y\} \le \mathrm{rank}
    \le \#\{x_j \ge x_y\} - 1`, and decide every row without ties at the k-th place;
    only the rest get the exact rank. No sort.

    Args:
        scores: (N, K) logits or probabilities (the ranks of either are the same, up
            to ties that rounding of the softmax creates; pass the scores you compare with).
        labels: (N,) int64.
        k: 1 ≤ k ≤ K.

    Example:
        >>> top_k_hits(torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]]), torch.tensor([0, 2]), 1)
        tensor([False, False])
        >>> top_k_hits(torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]]), torch.tensor([0, 2]), 2)
        tensor([True, True])
    """
    true = scores.gather(1, labels.unsqueeze(1))
    above = (scores > true).sum(dim=1, dtype=torch.int32)
    at_least = (scores >= true).sum(dim=1, dtype=torch.int32)  # the true class included
    hits = at_least <= k
    unsure = ((above < k) & ~hits).nonzero().squeeze(1)
    if unsure.numel():
        hits[unsure] = _rank(scores[unsure], labels[unsure], true[unsure].squeeze(1)) < k
    return hits


def _rank(scores: Tensor, labels: Tensor, true: Tensor) -> Tensor:
    """sklearn's 0-based rank of the true class: higher scores first, then equal scores of higher class index."""
    later = torch.arange(scores.shape[1], device=scores.device) > labels.unsqueeze(1)
    column = true.unsqueeze(1)
    return ((scores > column) | ((scores == column) & later)).sum(dim=1)


# ---------------------------------------------------------------- calibration


def bin_edges(n_bins: int = N_BINS, device: torch.device | str = "cpu") -> Tensor:
    """The ``n_bins + 1`` float32 edges ``linspace(0, 1)`` (torchmetrics' edges and dtype)."""
    return torch.linspace(0, 1, n_bins + 1, dtype=torch.float32, device=device)


def calibration_bins(confidence: Tensor, correct: Tensor, n_bins: int = N_BINS) -> Tensor:
    r"""Per-bin sums of a top-label calibration: (3, n_bins + 1) float64 rows count, confidence sum, correct sum.

    Bins are torchmetrics' exactly: the confidence is rounded to float32 and placed
    by ``bucketize(..., right=True)`` on the float32 edges ``linspace(0, 1,
    n_bins + 1)``, so bin ``b < n_bins`` holds :math:`[e_b, e_{b+1})` and a
    confidence of exactly 1 gets a bin of its own (index ``n_bins``, :math:`[1, 1]`).
    The sums use the confidence as given (not rounded).

    Args:
        confidence: (N,) in [0, 1].
        correct: (N,) bool or 0/1.
        n_bins: equal-width bins on [0, 1].

    Example:
        >>> calibration_bins(torch.tensor([0.05, 0.95, 1.0]), torch.tensor([0, 1, 1]), n_bins=2)
        tensor([[1.0000, 1.0000, 1.0000],
                [0.0500, 0.9500, 1.0000],
                [0.0000, 1.0000, 1.0000]], dtype=torch.float64)
    """
    edges = bin_edges(n_bins, confidence.device)
    index = (torch.bucketize(confidence.float(), edges, right=True) - 1).clamp_(0, n_bins)
    return torch.stack(
        [
            torch.bincount(index, minlength=n_bins + 1).double(),
            torch.bincount(index, weights=confidence.double(), minlength=n_bins + 1),
            torch.bincount(index, weights=correct.double(), minlength=n_bins + 1),
        ]
    )


def calibration_error(bins: Tensor, norm: str = "l1") -> float:
    r"""Calibration error from :func:`calibration_bins` sums.

    With :math:`n_b` samples, mean confidence :math:`\bar c_b` and accuracy
    :math:`\bar a_b` in bin ``b`` and :math:`N = \sum_b n_b`:
    ``"l1"`` (ECE) :math:`\sum_b \frac{n_b}{N} |\bar a_b - \bar c_b|`;
    ``"max"`` (MCE) :math:`\max_b |\bar a_b - \bar c_b|` over the non-empty bins
    (an empty bin counts 0, as torchmetrics). NaN without samples.

    Example:
        >>> bins = calibration_bins(torch.tensor([0.9, 0.9], dtype=torch.float64), torch.tensor([1, 0]))
        >>> round(calibration_error(bins), 6), round(calibration_error(bins, "max"), 6)
        (0.4, 0.4)
    """
    if norm not in ("l1", "max"):
        raise InputError.build("norm 'l1' or 'max'", repr(norm), fix="'l1' is the ECE, 'max' the MCE.")
    count, confidence, correct = bins.double()
    total = float(count.sum())
    if total == 0:
        return float("nan")
    if norm == "l1":
        return float((correct - confidence).abs().sum()) / total
    return float(((correct - confidence).abs() / count.clamp_min(1)).max())


def reliability_table(bins: Tensor) -> pd.DataFrame:
    """The reliability diagram's data: one row per bin, ``lower``, ``upper``, ``count``, ``confidence``, ``accuracy``.

    ``confidence`` and ``accuracy`` are the bin's means (NaN for an empty bin). The
    last row is the bin of confidences of exactly 1 (``lower == upper == 1``).

    Example:
        >>> reliability_table(calibration_bins(torch.tensor([0.2, 1.0]), torch.tensor([0, 1]), 2))
           lower  upper  count  confidence  accuracy
        0    0.0    0.5      1         0.2       0.0
        1    0.5    1.0      0         NaN       NaN
        2    1.0    1.0      1         1.0       1.0
    """
    count, confidence, correct = bins.double().cpu()
    n_bins = bins.shape[1] - 1
    edges = bin_edges(n_bins).double()
    return pd.DataFrame(
        {
            "lower": edges.numpy(),
            "upper": torch.cat([edges[1:], edges[-1:]]).numpy(),
            "count": count.long().numpy(),
            "confidence": per_class_mean(confidence, count).numpy(),
            "accuracy": per_class_mean(correct, count).numpy(),
        }
    )


# ---------------------------------------------------------------- the lensed prediction

#: Up to this many distinct lens columns the lensed scores are one dense matrix product.
_DENSE_GROUPS = 64


@dataclass(frozen=True)
class LensRule:
    """What the metrics need of a lens, computed once: the lens-aware rule, the credit, and the distinct columns.

    ``hits`` (K, K) bool is :func:`~lensdash.analysis.lens_hits`, ``credit`` (K, K)
    float64 :func:`~lensdash.analysis.lens_credit`. ``columns`` (K, G) holds the
    distinct columns of ``hits`` in the order of the first class that has each
    (``first_class``, (G,)): a merge lens has one per group, so the lensed scores
    are G group sums rather than K. Build it with :func:`lens_rule`.
    """

    hits: Tensor
    credit: Tensor
    columns: Tensor
    first_class: Tensor
    is_identity: bool

    @property
    def num_classes(self) -> int:
        return int(self.hits.shape[0])

    def to(self, device: torch.device | str) -> LensRule:
        return LensRule(
            self.hits.to(device),
            self.credit.to(device),
            self.columns.to(device),
            self.first_class.to(device),
            self.is_identity,
        )


def lens_rule(lens: object, num_classes: int | None = None) -> LensRule:
    """Validate a lens and prepare its :class:`LensRule` (pass the rule to :meth:`MetricSums.update` per chunk).

    Lens convention: rows are target distributions, rows sum to 1.

    Raises:
        LensError: not a valid K×K lens (K = ``num_classes`` when given).

    Example:
        >>> rule = lens_rule([[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0, 1]])
        >>> rule.columns.int(), rule.first_class
        (tensor([[1, 0],
                [1, 0],
                [0, 1]], dtype=torch.int32), tensor([0, 2]))
    """
    if isinstance(lens, LensRule):
        if num_classes is not None and lens.num_classes != num_classes:
            raise InputError.build(
                f"a lens rule for {num_classes} classes",
                f"one for {lens.num_classes}",
                fix="Build it with lens_rule(lens) for these predictions' classes.",
            )
        return lens
    matrix = validate_lens(lens, num_classes)
    hits = lens_hits(matrix)
    k = hits.shape[0]
    unique, inverse = torch.unique(hits.T, dim=0, return_inverse=True)
    classes = torch.arange(k, device=hits.device)
    first = torch.full((unique.shape[0],), k, dtype=torch.long, device=hits.device).scatter_reduce_(
        0, inverse, classes, reduce="amin"
    )
    order = torch.argsort(first)
    is_identity = bool(torch.equal(hits, torch.eye(k, dtype=torch.bool, device=hits.device)))
    return LensRule(hits, lens_credit(matrix), unique[order].T.contiguous(), first[order], is_identity)


def lensed_top_label(probs: Tensor, rule: LensRule) -> tuple[Tensor, Tensor]:
    r"""Confidence and class of the lensed prediction: the answer most probably right by the lens-aware rule.

    With :math:`p = \mathrm{softmax}(x)` and the rule's 0/1 matrix :math:`H_{yj} =
    [C_{yj} \ge \tfrac12 \max_i C_{yi}]`, the model's probability that answer
    ``j`` is lens-correct is :math:`s_j = \sum_y p_y H_{yj} = (pH)_j \in [0, 1]`.
    The lensed prediction is :math:`\hat\jmath = \arg\max_j s_j` (the first class on
    ties), its confidence :math:`s_{\hat\jmath}`, and it is correct when
    :math:`H_{y\hat\jmath}`. For a merge lens :math:`s_j` is the probability of
    ``j``'s group, so this is the top-label calibration of the group classifier
    (the predicted group's summed softmax vs whether the truth is in it); for the
    identity (and label smoothing below :math:`\varepsilon = K/(K+1)`) it is the
    plain top label; for a uniform lens every answer is right with confidence 1.

    Why not :math:`q = \mathrm{softmax}(x)\,C` (the prediction-side lensed
    distribution): on a merge group of size ``m`` it gives each member
    :math:`P(G)/m`, so its top label favours small groups and its confidence is not
    the group's probability.

    Args:
        probs: (N, K) probabilities.
        rule: the lens's :class:`LensRule`.

    Returns:
        (confidence (N,) in [0, 1], predicted class (N,) int64).
    """
    if rule.is_identity:
        return probs.max(dim=1)
    columns = rule.columns.to(probs.device)
    k, groups = columns.shape
    rows, cols = columns.nonzero(as_tuple=True)
    if groups <= _DENSE_GROUPS or rows.numel() * 8 > k * groups:
        # Few distinct columns (merge groups) or many non-zeros: one (N, K) × (K, G) product.
        scores = probs @ columns.to(probs.dtype)
    else:
        # Many sparse columns (large K, small groups): add the few classes of each column.
        scores = probs.new_zeros(groups, probs.shape[0]).index_add_(0, cols, probs.T[rows]).T
    confidence, column = scores.clamp_(max=1.0).max(dim=1)
    return confidence, rule.first_class.to(probs.device)[column]


# ---------------------------------------------------------------- the accumulator

_SUM_FIELDS = ("confusion", "lens_hit", "lens_score", "top_k_hit", "calibration", "lensed_calibration")


@dataclass
class MetricSums:
    r"""Sums behind every metric of this module; they add across chunks and processes.

    Fields (float64): ``confusion`` (K, K) counts, row = true class, column = top-1
    prediction (the first maximum of the softmax, as ``torch.max``); ``lens_hit``,
    ``lens_score`` and ``top_k_hit`` (K,) per true class: the lens-aware rule, the
    lens credit and top-``k`` hits; ``calibration`` and ``lensed_calibration``
    (3, n_bins + 1): :func:`calibration_bins` of the top label and of the lensed
    prediction (:func:`lensed_top_label`). ``k`` is the top-k's k (not a sum).

    ``tensors()`` lists the sums for ``torch.distributed.all_reduce``; adding two
    accumulators equals one over both sets of samples (exactly for the counts).

    Every field is a sum over samples of a function of (logits row, true label). With
    soft labels (a target distribution :math:`t_n` per sample) the true label is the
    majority label :math:`\arg\max_j t_{nj}` (``Predictions.labels``): accuracy, top-k,
    precision / recall / F1, the lens-aware rule and calibration are scored against it,
    as practitioners score against the majority vote; the distribution itself enters
    the losses and gradients (:func:`lensdash.analysis.analyze`'s ``targets``).

    Example:
        >>> sums = MetricSums.zeros(3)
        >>> _ = sums.update(torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]]), torch.tensor([0, 1]))
        >>> s = sums.summary()
        >>> s["accuracy"], s["top2_accuracy"], s["macro_recall"]
        (0.5, 1.0, 0.3333333333333333)
    """

    confusion: Tensor
    lens_hit: Tensor
    lens_score: Tensor
    top_k_hit: Tensor
    calibration: Tensor
    lensed_calibration: Tensor
    k: int

    @classmethod
    def zeros(
        cls, num_classes: int, *, k: int | None = None, n_bins: int = N_BINS, device: torch.device | str = "cpu"
    ) -> MetricSums:
        """Empty sums for K classes; ``k`` defaults to :func:`default_top_k`."""
        k, n_bins = _check_k(num_classes, k), _check_bins(n_bins)

        def zeros(*shape: int) -> Tensor:
            return torch.zeros(*shape, dtype=torch.float64, device=device)

        return cls(
            zeros(num_classes, num_classes),
            zeros(num_classes),
            zeros(num_classes),
            zeros(num_classes),
            zeros(3, n_bins + 1),
            zeros(3, n_bins + 1),
            k,
        )

    @classmethod
    def of(
        cls, logits: Tensor, labels: Tensor, lens: object = None, *, k: int | None = None, n_bins: int = N_BINS
    ) -> MetricSums:
        """The sums of one set of predictions (one chunk).

        Args:
            logits: (N, K) logits (log-probabilities work too); softmax in their dtype.
            labels: (N,) int64 class indices.
            lens: a K×K lens, a :class:`~lensdash.Lens` or a prepared :class:`LensRule`;
                default the identity. Rows are target distributions, rows sum to 1.
            k: the top-k's k (default :func:`default_top_k`).
            n_bins: calibration bins.

        Raises:
            InputError: bad logits or labels, a k outside 1..K.
            LensError: an invalid lens.
        """
        check_loss_inputs(logits, labels, ignore_index=None, allow_spatial=False, allow_probabilities=False)
        num_classes = logits.shape[1]
        k, n_bins = _check_k(num_classes, k), _check_bins(n_bins)
        if lens is None:
            lens = torch.eye(num_classes, dtype=torch.float64)
        rule = lens_rule(lens, num_classes)
        return cls._of(logits.detach(), labels, rule.to(logits.device), k, n_bins)

    @classmethod
    def _of(cls, logits: Tensor, labels: Tensor, rule: LensRule, k: int, n_bins: int) -> MetricSums:
        num_classes = logits.shape[1]
        probs = torch.softmax(logits, dim=1)
        confidence, predicted = probs.max(dim=1)
        if rule.is_identity:  # the lensed prediction is the top label
            lensed_confidence, lensed_predicted = confidence, predicted
        else:
            lensed_confidence, lensed_predicted = lensed_top_label(probs, rule)
        return cls(
            confusion_counts(predicted, labels, num_classes).double(),
            per_class_total(rule.hits[labels, predicted], labels, num_classes),
            per_class_total(rule.credit[labels, predicted], labels, num_classes),
            per_class_total(top_k_hits(logits, labels, k), labels, num_classes),
            calibration_bins(confidence, predicted == labels, n_bins),
            calibration_bins(lensed_confidence, rule.hits[labels, lensed_predicted], n_bins),
            k,
        )

    @property
    def num_classes(self) -> int:
        return int(self.confusion.shape[0])

    @property
    def n_bins(self) -> int:
        return int(self.calibration.shape[1]) - 1

    @property
    def count(self) -> Tensor:
        """(K,) samples per true class."""
        return self.confusion.sum(dim=1)

    def tensors(self) -> list[Tensor]:
        """The sums, for ``all_reduce`` (SUM) across processes."""
        return [getattr(self, name) for name in _SUM_FIELDS]

    def add_(self, other: MetricSums) -> MetricSums:
        """Add another accumulator's sums (same K, k and bins) in place."""
        if (other.num_classes, other.k, other.n_bins) != (self.num_classes, self.k, self.n_bins):
            raise InputError.build(
                f"sums of {self.num_classes} classes, top-{self.k}, {self.n_bins} bins",
                f"{other.num_classes} classes, top-{other.k}, {other.n_bins} bins",
                fix="Accumulate every chunk with the same MetricSums.zeros(...) settings.",
            )
        for mine, theirs in zip(self.tensors(), other.tensors()):
            mine.add_(theirs.to(mine.device))
        return self

    def update(self, logits: Tensor, labels: Tensor, lens: object = None) -> MetricSums:
        """Add one chunk of predictions (see :meth:`of`); returns ``self``."""
        return self.add_(MetricSums.of(logits, labels, lens, k=self.k, n_bins=self.n_bins))

    def summary(self) -> dict[str, float]:
        """The headline numbers (NaN for shares of zero samples).

        Keys: ``accuracy``, ``top{k}_accuracy``, ``macro_precision``, ``macro_recall``,
        ``macro_f1``, ``weighted_precision``, ``weighted_recall``, ``weighted_f1``,
        ``mean_confidence``, ``ece``, ``mce``, ``lens_aware_accuracy``,
        ``lens_soft_score``, ``lensed_accuracy``, ``lensed_mean_confidence``,
        ``lensed_ece``, ``lensed_mce``, ``top_k``, ``num_samples``.
        ``lensed_accuracy`` is the accuracy of the lensed prediction
        (:func:`lensed_top_label`); ``lens_aware_accuracy`` that of the top-1
        prediction under the rule (the two agree for merge groups except where the
        most probable group does not hold the most probable class).
        """
        n = float(self.count.sum())

        def share(total: Tensor) -> float:
            return float(total.sum()) / n if n > 0 else float("nan")

        return {
            "accuracy": share(self.confusion.diagonal()),
            f"top{self.k}_accuracy": share(self.top_k_hit),
            **averaged_scores(self.confusion),
            "mean_confidence": share(self.calibration[1]),
            "ece": calibration_error(self.calibration, "l1"),
            "mce": calibration_error(self.calibration, "max"),
            "lens_aware_accuracy": share(self.lens_hit),
            "lens_soft_score": share(self.lens_score),
            "lensed_accuracy": share(self.lensed_calibration[2]),
            "lensed_mean_confidence": share(self.lensed_calibration[1]),
            "lensed_ece": calibration_error(self.lensed_calibration, "l1"),
            "lensed_mce": calibration_error(self.lensed_calibration, "max"),
            "top_k": self.k,
            "num_samples": int(n),
        }

    def per_class_table(self, names: Sequence[str]) -> pd.DataFrame:
        """One row per true class: ``class``, ``precision``, ``recall``, ``f1``, ``support``, ``top{k}_accuracy``.

        Precision, recall and F1 are 0 where undefined (sklearn's ``zero_division=0``);
        the top-k accuracy is NaN for a class without samples.
        """
        names = list(names)
        if len(names) != self.num_classes:
            raise InputError.build(
                f"{self.num_classes} class names", f"{len(names)}", fix="Give one name per class, in column order."
            )
        scores = precision_recall_f1(self.confusion)
        return pd.DataFrame(
            {
                "class": names,
                "precision": scores["precision"].cpu().numpy(),
                "recall": scores["recall"].cpu().numpy(),
                "f1": scores["f1"].cpu().numpy(),
                "support": scores["support"].long().cpu().numpy(),
                f"top{self.k}_accuracy": per_class_mean(self.top_k_hit, self.count).cpu().numpy(),
            }
        )

    def reliability(self, *, lensed: bool = False) -> pd.DataFrame:
        """The reliability diagram's data (:func:`reliability_table`) of the top label, or of the lensed prediction."""
        return reliability_table(self.lensed_calibration if lensed else self.calibration)


def _check_k(num_classes: int, k: int | None) -> int:
    if k is None:
        return default_top_k(num_classes)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_classes:
        raise InputError.build(
            f"k in 1..{num_classes} for the top-k accuracy",
            repr(k),
            fix=f"k = {default_top_k(num_classes)} is the default for {num_classes} classes.",
        )
    return k


def _check_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise InputError.build("a whole number of calibration bins >= 1", repr(n_bins), fix=f"{N_BINS} is the default.")
    return n_bins
