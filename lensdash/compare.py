r"""Two models on the same samples: pairing, a paired test, a paired bootstrap, per-class differences.

Lens convention: wherever a lens is taken, row ``i`` is the target distribution used when the true label is ``i``;
rows sum to 1. Every difference is **B − A** (positive: B has the larger value).

The pieces, each usable on its own by the app and the CLI:

* :func:`pair_predictions` lines up B's rows with A's (by an id column when both have one, by row order otherwise)
  and refuses predictions that are not of the same samples.
* :class:`PairedCounts` holds the discordant counts and loss sums. It is a sum over samples, so shards add up
  exactly (``counts_a + counts_b``, or ``all_reduce`` of :meth:`PairedCounts.to_tensor` under torchrun).
* :func:`mcnemar_exact_p` is McNemar's exact test on the discordant pairs:
  with :math:`b` = samples only A gets right and :math:`c` = samples only B gets right,
  :math:`p = \min\bigl(1,\ 2\,F_{\mathrm{Bin}(b+c,\,1/2)}(\min(b, c))\bigr)`, as ``statsmodels``'
  ``mcnemar(table, exact=True)``.
* :func:`paired_bootstrap` resamples the N samples with replacement (the same indices for A and B, so the pairing is
  kept) and gives a percentile interval for the difference of the mean losses.
* :func:`per_class_comparison`, :func:`confusion_difference`, :func:`disagreements` and
  :func:`comparison_summary` (the ``comparison.json`` dict).

Correctness is an input (a boolean vector per model), so the caller chooses the rule: top-1 (:func:`top1_correct`)
or a lens-aware rule.

Sharding (torchrun): the counts and loss sums stream exactly. The bootstrap needs the per-sample pairs; it only uses
the per-sample difference :math:`d_n = \ell^B_n - \ell^A_n`, so the CLI keeps one float64 per sample per loss
(8 bytes per sample for the lensed loss, 16 with the unlensed one too: 100 million samples are 0.8 GB) and gathers
the shards' differences in rank order before calling :func:`paired_bootstrap`. A streaming alternative (the Poisson
bootstrap, one Poisson(1) weight per sample and resample, drawn from a generator keyed by the sample's id) needs no
per-sample storage but costs B random draws per sample and gives a different, not numpy-reproducible, interval; at
8 bytes per sample keeping the differences is the simpler exact choice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from lensdash.analysis import _family, confusion_counts
from lensdash.errors import InputError

MAX_LISTED = 5
"""How many mismatching ids or rows an error message lists."""

MAX_BOOTSTRAP_ELEMENTS = 1 << 18
"""Resampled values held at once by :func:`paired_bootstrap` (2 MiB of int64 indices, cache-sized): it works in
blocks of resamples."""


# ------------------------------------------------------------------ pairing


@dataclass(frozen=True)
class PairedPredictions:
    """A's and B's predictions of the same samples, in A's row order.

    Attributes:
        logits_a: (N, K) A's logits, as given.
        logits_b: (N, K) B's logits, reordered so row ``n`` is the same sample as A's row ``n``.
        labels: (N,) true class indices (A's, equal to B's after reordering).
        order_b: (N,) int64, B's row for each of A's rows (``arange(N)`` when paired by row order).
        ids: A's ids when paired by id, else ``None``.
        note: how the rows were paired, for the page or the CLI.
    """

    logits_a: Tensor
    logits_b: Tensor
    labels: Tensor
    order_b: Tensor
    ids: np.ndarray | None
    note: str


def _listed(values: Sequence[object]) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:MAX_LISTED])
    more = len(values) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _id_index(ids: object, name: str, rows: int) -> pd.Index:
    """Ids as a pandas Index, checked: one per row, none missing, none repeated."""
    values = np.asarray(ids.cpu() if isinstance(ids, Tensor) else ids)
    if values.ndim != 1 or len(values) != rows:
        raise InputError.build(
            f"one id per row of {name} ({rows})",
            f"{values.shape[0] if values.ndim else 0} ids of shape {values.shape}",
            where=f"{name} ids",
            fix="Give the id column of the same file as the predictions.",
        )
    index = pd.Index(values)
    missing = np.flatnonzero(pd.isna(index))
    if len(missing):
        raise InputError.build(
            "an id on every row",
            f"{len(missing)} empty ids",
            where=f"{name} rows {_listed([int(r) + 1 for r in missing])}",
            fix="Fill the id column or drop those rows.",
        )
    repeated = index[index.duplicated()].unique()
    if len(repeated):
        raise InputError.build(
            "each id once",
            f"{len(repeated)} repeated ids: {_listed(list(repeated))}",
            where=f"{name} ids",
            fix="Ids must name one sample each; remove the duplicate rows.",
        )
    return index


def _comparable(a: pd.Index, b: pd.Index) -> tuple[pd.Index, pd.Index]:
    """Numbers compare as numbers (1 == 1.0); anything else compares as text ("007" stays "007")."""
    if pd.api.types.is_numeric_dtype(a.dtype) and pd.api.types.is_numeric_dtype(b.dtype):
        return a, b
    return a.astype(str), b.astype(str)


def _check_pair_inputs(logits_a: Tensor, labels_a: Tensor, logits_b: Tensor, labels_b: Tensor) -> None:
    for name, logits, labels in (("A", logits_a, labels_a), ("B", logits_b, labels_b)):
        if logits.dim() != 2 or labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
            raise InputError.build(
                "logits (N, K) and labels (N,)",
                f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)}",
                where=f"model {name}",
                fix="Pass one row of scores and one label per sample.",
            )
    if logits_a.shape[1] != logits_b.shape[1]:
        raise InputError.build(
            f"the same number of classes in both models (A has {logits_a.shape[1]})",
            f"{logits_b.shape[1]} in B",
            where="model B",
            fix="Compare two models of the same classes.",
        )


def pair_predictions(
    logits_a: Tensor,
    labels_a: Tensor,
    logits_b: Tensor,
    labels_b: Tensor,
    *,
    ids_a: object | None = None,
    ids_b: object | None = None,
    classes_a: Sequence[str] | None = None,
    classes_b: Sequence[str] | None = None,
) -> PairedPredictions:
    """Line up model B's predictions with model A's, refusing predictions that are not of the same samples.

    Rows are matched by id when both ``ids_a`` and ``ids_b`` are given (B is reordered to A's order, so shuffled
    files pair correctly), by row order otherwise. Numeric ids compare as numbers, others as text.

    Args:
        logits_a: (N, K) model A's logits (or log-probabilities).
        labels_a: (N,) int64 true labels read with A.
        logits_b: (M, K) model B's logits.
        labels_b: (M,) int64 true labels read with B.
        ids_a: optional (N,) ids of A's rows (array, list, Series or tensor).
        ids_b: optional (M,) ids of B's rows.
        classes_a: optional class names of A.
        classes_b: optional class names of B; compared with ``classes_a`` when both are given.

    Returns:
        A :class:`PairedPredictions` in A's row order.

    Raises:
        InputError: different class counts or class names, different row counts, missing or repeated ids, ids
            found in one model only (the first few listed, with counts), or labels that differ on a paired row.

    Shape:
        logits (N, K), labels (N,), ids (N,).

    Example:
        >>> a, b = torch.eye(3), torch.eye(3)[[2, 0, 1]]
        >>> p = pair_predictions(a, torch.tensor([0, 1, 2]), b, torch.tensor([2, 0, 1]),
        ...                      ids_a=["x", "y", "z"], ids_b=["z", "x", "y"])
        >>> p.order_b.tolist(), torch.equal(p.logits_b, a)
        ([1, 2, 0], True)
    """
    _check_pair_inputs(logits_a, labels_a, logits_b, labels_b)
    if classes_a is not None and classes_b is not None and tuple(classes_a) != tuple(classes_b):
        diff = [i for i, (x, y) in enumerate(zip(classes_a, classes_b)) if x != y]
        where = f"class {diff[0] + 1}" if diff else "class list"
        raise InputError.build(
            f"the same class names in the same order (A: {_listed(list(classes_a))})",
            f"B: {_listed(list(classes_b))}",
            where=where,
            fix="Both files must name the same classes in the same column order.",
        )
    n, m = logits_a.shape[0], logits_b.shape[0]
    if ids_a is not None and ids_b is not None:
        index_a, index_b = _comparable(_id_index(ids_a, "A", n), _id_index(ids_b, "B", m))
        found = index_b.get_indexer(index_a)
        only_a = index_a[found < 0]
        only_b = index_b.difference(index_a, sort=False)
        if len(only_a) or len(only_b):
            raise InputError.build(
                f"the same sample ids in A ({n} rows) and B ({m} rows)",
                f"{len(only_a)} ids only in A ({_listed(list(only_a))}) and "
                f"{len(only_b)} only in B ({_listed(list(only_b))})",
                where="id column",
                fix="Compare predictions of the same samples: export both models on the same evaluation set.",
            )
        order = torch.as_tensor(found, dtype=torch.int64)
        note = f"Paired {n} samples by id."
        ids = np.asarray(ids_a.cpu() if isinstance(ids_a, Tensor) else ids_a)
    else:
        if n != m:
            raise InputError.build(
                f"the same number of samples in A and B ({n} in A)",
                f"{m} in B",
                where="model B",
                fix="Without an id column in both files rows are paired by order, so both need the same rows; "
                "add an id column to pair by id.",
            )
        order = torch.arange(n)
        note = f"Paired {n} samples by row order (no id column in both files)."
        ids = None
    logits_b = logits_b[order.to(logits_b.device)]
    labels_b = labels_b[order.to(labels_b.device)]
    differ = torch.nonzero(labels_a != labels_b.to(labels_a.device)).flatten().cpu()
    if len(differ):
        rows = differ[:MAX_LISTED].tolist()
        shown = ", ".join(
            f"A row {r + 1} label {int(labels_a[r])} vs B row {int(order[r]) + 1} label {int(labels_b[r])}"
            for r in rows
        )
        more = len(differ) - len(rows)
        raise InputError.build(
            "the same true label for each paired sample",
            f"{len(differ)} of {n} samples with different labels ({shown}{f' and {more} more' if more else ''})",
            where="labels",
            fix="Check that both files hold the same evaluation set"
            + (" and the same ids." if ids is not None else " in the same row order, or add an id column."),
        )
    return PairedPredictions(logits_a, logits_b, labels_a, order, ids, note)


# ------------------------------------------------------------ paired counts


def top1_correct(logits: Tensor, labels: Tensor) -> Tensor:
    """Top-1 correctness per sample: ``argmax(logits) == label``, a (N,) bool tensor.

    Example:
        >>> top1_correct(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        tensor([ True, False])
    """
    return logits.argmax(dim=1) == labels


@dataclass(frozen=True)
class PairedCounts:
    """Sums over samples for two models: the 2×2 correctness table and the loss sums.

    A sum over samples, so chunks and shards add up exactly: ``a + b``, or ``all_reduce`` of :meth:`to_tensor` and
    :meth:`from_tensor` (float64 holds counts exactly up to 2**53).

    Example:
        >>> c = paired_counts(torch.tensor([True, True, False]), torch.tensor([True, False, True]))
        >>> (c.both_correct, c.a_only_correct, c.b_only_correct, c.neither_correct)
        (1, 1, 1, 0)
        >>> (c + c).samples
        6
    """

    samples: int = 0
    both_correct: int = 0
    a_only_correct: int = 0
    b_only_correct: int = 0
    neither_correct: int = 0
    unlensed_loss_a: float = 0.0
    unlensed_loss_b: float = 0.0
    lensed_loss_a: float = 0.0
    lensed_loss_b: float = 0.0

    def __add__(self, other: PairedCounts) -> PairedCounts:
        return PairedCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def to_tensor(self) -> Tensor:
        """All fields as one float64 tensor, for ``torch.distributed.all_reduce``."""
        return torch.tensor([float(getattr(self, f.name)) for f in fields(self)], dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: Tensor) -> PairedCounts:
        """Inverse of :meth:`to_tensor`."""
        items = values.tolist()
        kwargs: dict[str, Any] = {f.name: int(v) if f.type == "int" else float(v) for f, v in zip(fields(cls), items)}
        return cls(**kwargs)


def _as_bool(correct: Tensor, n: int, name: str) -> Tensor:
    correct = torch.as_tensor(correct)
    if correct.shape != (n,):
        raise InputError.build(
            f"one correctness value per sample ({n})",
            f"shape {tuple(correct.shape)}",
            where=name,
            fix="Pass a (N,) boolean tensor, e.g. top1_correct(logits, labels).",
        )
    return correct.bool()


def _loss_sum(loss: Tensor | None, n: int, name: str) -> float:
    if loss is None:
        return 0.0
    if loss.shape != (n,):
        raise InputError.build(
            f"one loss per sample ({n})",
            f"shape {tuple(loss.shape)}",
            where=name,
            fix="Use the loss with reduction='none'.",
        )
    return float(loss.double().sum())


def paired_counts(
    correct_a: Tensor,
    correct_b: Tensor,
    *,
    unlensed_a: Tensor | None = None,
    unlensed_b: Tensor | None = None,
    lensed_a: Tensor | None = None,
    lensed_b: Tensor | None = None,
) -> PairedCounts:
    """The 2×2 correctness table and loss sums of one chunk of paired samples.

    Args:
        correct_a: (N,) bool, whether A is right on each sample (the caller's rule: top-1 or lens-aware).
        correct_b: (N,) bool, the same for B.
        unlensed_a, unlensed_b, lensed_a, lensed_b: optional (N,) per-sample losses (summed in float64).

    Returns:
        A :class:`PairedCounts`; add chunks' counts with ``+``.

    Raises:
        InputError: a vector whose shape is not (N,).
    """
    correct_a = torch.as_tensor(correct_a)
    n = int(correct_a.shape[0]) if correct_a.dim() == 1 else -1
    a = _as_bool(correct_a, n, "correct_a")
    b = _as_bool(correct_b, n, "correct_b")
    return PairedCounts(
        samples=n,
        both_correct=int((a & b).sum()),
        a_only_correct=int((a & ~b).sum()),
        b_only_correct=int((~a & b).sum()),
        neither_correct=int((~a & ~b).sum()),
        unlensed_loss_a=_loss_sum(unlensed_a, n, "unlensed_a"),
        unlensed_loss_b=_loss_sum(unlensed_b, n, "unlensed_b"),
        lensed_loss_a=_loss_sum(lensed_a, n, "lensed_a"),
        lensed_loss_b=_loss_sum(lensed_b, n, "lensed_b"),
    )


def mcnemar_exact_p(a_only_correct: int, b_only_correct: int) -> float:
    r"""McNemar's exact (binomial) two-sided p-value from the discordant counts.

    .. math:: p = \min\Bigl(1,\ 2 \sum_{i=0}^{\min(b,c)} \binom{b+c}{i} 2^{-(b+c)}\Bigr)

    with :math:`b` = ``a_only_correct`` and :math:`c` = ``b_only_correct``; equal to
    ``statsmodels.stats.contingency_tables.mcnemar([[., b], [c, .]], exact=True).pvalue``. No discordant pairs
    give 1.

    Example:
        >>> mcnemar_exact_p(0, 6)
        0.03125
        >>> mcnemar_exact_p(3, 3)
        1.0
    """
    from scipy.stats import binom  # scipy comes with scikit-learn; imported here to keep `import lensdash` light

    if a_only_correct < 0 or b_only_correct < 0:
        raise InputError.build(
            "non-negative discordant counts", f"{a_only_correct} and {b_only_correct}", fix="Pass sample counts."
        )
    total = int(a_only_correct) + int(b_only_correct)
    return float(min(1.0, 2.0 * binom.cdf(min(a_only_correct, b_only_correct), total, 0.5)))


# --------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class BootstrapInterval:
    """A paired bootstrap percentile interval for the difference of two means (B − A).

    Attributes:
        difference: the observed ``mean(B) - mean(A)``.
        low, high: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the resampled
            differences (numpy's default linear interpolation).
        resamples, seed, confidence: what produced it.
    """

    difference: float
    low: float
    high: float
    resamples: int
    seed: int
    confidence: float


def bootstrap_indices(n: int, resamples: int, seed: int, *, block: int | None = None) -> Iterator[np.ndarray]:
    """The resampling indices, ``block`` resamples at a time: (rows, n) int64 numpy arrays.

    The stream is defined as a plain loop would draw it::

        rng = numpy.random.Generator(numpy.random.PCG64(seed))
        for _ in range(resamples):
            indices = rng.integers(0, n, size=n)

    Drawing ``size=(rows, n)`` at once gives the same numbers in the same order, so blocks change nothing.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    block = block or max(1, MAX_BOOTSTRAP_ELEMENTS // max(n, 1))
    done = 0
    while done < resamples:
        rows = min(block, resamples - done)
        yield rng.integers(0, n, size=(rows, n))
        done += rows


def paired_bootstrap(
    loss_a: Tensor,
    loss_b: Tensor,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapInterval:
    r"""Paired bootstrap percentile interval for :math:`\bar\ell^B - \bar\ell^A`.

    Each resample draws N sample indices with replacement (the same for A and B, which keeps the pairing) and takes
    the mean of :math:`d_n = \ell^B_n - \ell^A_n` over them; the interval is the percentiles of the ``resamples``
    means. Indices come from :func:`bootstrap_indices`, so a plain numpy loop with the same seed reproduces it.

    The means are taken a block of resamples at a time (``numpy.take`` on a (block, N) index array, float64, on the
    CPU). Drawing the indices with numpy's PCG64 is what makes the stream reproducible and it dominates the cost
    (N × B draws), so the arithmetic stays next to it: a torch gather of the same blocks measured 1.5-10× slower
    on CPU, and moving the indices to an accelerator would cost more than the means. Time grows as N × B.

    Args:
        loss_a: (N,) per-sample losses of A (e.g. ``lensed_cross_entropy(..., reduction="none")``).
        loss_b: (N,) per-sample losses of B on the same samples.
        resamples: number of bootstrap resamples B (at least 1).
        seed: seed of numpy's ``Generator(PCG64(seed))``.
        confidence: interval coverage in (0, 1).

    Returns:
        A :class:`BootstrapInterval`.

    Raises:
        InputError: shapes that differ or are not (N,) with N >= 1, resamples < 1, confidence outside (0, 1).

    Example:
        >>> r = paired_bootstrap(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.5, 2.5, 3.5]), resamples=50)
        >>> r.difference, r.low, r.high
        (0.5, 0.5, 0.5)
    """
    if loss_a.dim() != 1 or loss_a.shape != loss_b.shape or loss_a.shape[0] == 0:
        raise InputError.build(
            "two (N,) per-sample loss vectors of the same length, N >= 1",
            f"shapes {tuple(loss_a.shape)} and {tuple(loss_b.shape)}",
            fix="Pass the paired per-sample losses (reduction='none') of A and B.",
        )
    if resamples < 1 or not 0 < confidence < 1:
        raise InputError.build(
            "resamples >= 1 and a confidence in (0, 1)",
            f"resamples={resamples}, confidence={confidence}",
            fix="For example resamples=1000, confidence=0.95.",
        )
    diff = (loss_b.detach().double().cpu() - loss_a.detach().double().cpu()).numpy()
    means = np.concatenate([np.take(diff, idx).mean(axis=1) for idx in bootstrap_indices(len(diff), resamples, seed)])
    tail = (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [100 * tail, 100 * (1 - tail)])
    return BootstrapInterval(float(diff.mean()), float(low), float(high), resamples, seed, confidence)


# ---------------------------------------------------------- per-class view


def per_class_comparison(
    labels: Tensor,
    correct_a: Tensor,
    correct_b: Tensor,
    class_names: Sequence[str],
    *,
    lensed_a: Tensor | None = None,
    lensed_b: Tensor | None = None,
) -> pd.DataFrame:
    """One row per true class: support, A's and B's recall (per-class accuracy) and B − A; mean lensed loss too.

    Class names are data from files: the CLI passes the frame through ``lensdash.sanitize.spreadsheet_safe``
    before writing a CSV.

    Args:
        labels: (N,) int64 true labels.
        correct_a, correct_b: (N,) bool correctness of A and B (caller's rule).
        class_names: K names.
        lensed_a, lensed_b: optional (N,) per-sample lensed losses; adds ``lensed_loss_a``, ``lensed_loss_b``,
            ``lensed_loss_diff``.

    Returns:
        Columns ``class``, ``count``, ``recall_a``, ``recall_b``, ``recall_diff`` (+ loss columns); classes with no
        samples have ``count`` 0 and NaN rates.

    Example:
        >>> t = per_class_comparison(torch.tensor([0, 0, 1]), torch.tensor([True, False, True]),
        ...                          torch.tensor([True, True, False]), ["cat", "dog"])
        >>> t["recall_diff"].tolist()
        [0.5, -1.0]
    """
    k = len(class_names)
    n = labels.shape[0]
    a = _as_bool(correct_a, n, "correct_a").to(labels.device)
    b = _as_bool(correct_b, n, "correct_b").to(labels.device)
    count = torch.bincount(labels, minlength=k).double()
    safe = count.where(count > 0, torch.tensor(float("nan"), dtype=torch.float64, device=count.device))

    def per_class(values: Tensor) -> np.ndarray:
        sums = torch.zeros(k, dtype=torch.float64, device=labels.device).index_add_(0, labels, values.double())
        return (sums / safe).cpu().numpy()

    frame = pd.DataFrame({"class": list(class_names), "count": count.long().cpu().numpy()})
    frame["recall_a"] = per_class(a)
    frame["recall_b"] = per_class(b)
    frame["recall_diff"] = frame["recall_b"] - frame["recall_a"]
    if lensed_a is not None and lensed_b is not None:
        frame["lensed_loss_a"] = per_class(lensed_a.detach().to(labels.device))
        frame["lensed_loss_b"] = per_class(lensed_b.detach().to(labels.device))
        frame["lensed_loss_diff"] = frame["lensed_loss_b"] - frame["lensed_loss_a"]
    return frame


def confusion_difference(
    labels: Tensor, predicted_a: Tensor, predicted_b: Tensor, num_classes: int, *, normalize: bool = False
) -> Tensor:
    """B's confusion minus A's: K×K, row = true class, column = predicted class.

    With ``normalize`` each confusion is divided by its row's sample count first (rows of absent classes are 0), so
    entry ``[i, j]`` is the change in the share of class ``i`` predicted as ``j``.

    Example:
        >>> confusion_difference(torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([0, 1]), 2)
        tensor([[ 0,  0],
                [-1,  1]])
    """
    counts_a = confusion_counts(predicted_a, labels, num_classes)
    counts_b = confusion_counts(predicted_b, labels, num_classes)
    if not normalize:
        return counts_b - counts_a
    rows = counts_a.sum(dim=1, keepdim=True).double().clamp_min(1)
    return (counts_b.double() - counts_a.double()) / rows


def disagreements(
    labels: Tensor,
    predicted_a: Tensor,
    predicted_b: Tensor,
    class_names: Sequence[str],
    *,
    loss_a: Tensor | None = None,
    loss_b: Tensor | None = None,
    ids: object | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """The samples where A and B predict different classes, largest loss change first.

    Args:
        labels: (N,) true labels; predicted_a, predicted_b: (N,) predicted classes.
        class_names: K names.
        loss_a, loss_b: optional (N,) per-sample losses (e.g. lensed); adds ``loss_a``, ``loss_b``, ``loss_diff``
            (B − A) and sorts by ``|loss_diff|``.
        ids: optional (N,) sample ids, kept as an ``id`` column.
        limit: keep at most this many rows (the largest loss changes when losses are given, else the first).

    Returns:
        Columns ``sample`` (0-based row in A's order, as the per-sample table), ``id``, ``label``, ``predicted_a``,
        ``predicted_b``, ``a_correct``, ``b_correct`` and the loss columns.

    Example:
        >>> d = disagreements(torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([0, 1]), ["x", "y"])
        >>> d[["sample", "predicted_a", "predicted_b"]].values.tolist()
        [[1, 'x', 'y']]
    """
    rows = torch.nonzero(predicted_a != predicted_b).flatten().cpu()
    idx = rows.numpy()
    names = list(class_names)

    def named(values: Tensor) -> pd.Categorical:
        return pd.Categorical.from_codes(values.cpu()[rows].numpy(), categories=names)

    frame = pd.DataFrame({"sample": idx})
    if ids is not None:
        frame["id"] = np.asarray(ids.cpu() if isinstance(ids, Tensor) else ids)[idx]
    frame["label"] = named(labels)
    frame["predicted_a"] = named(predicted_a)
    frame["predicted_b"] = named(predicted_b)
    frame["a_correct"] = (predicted_a.cpu()[rows] == labels.cpu()[rows]).numpy()
    frame["b_correct"] = (predicted_b.cpu()[rows] == labels.cpu()[rows]).numpy()
    if loss_a is not None and loss_b is not None:
        frame["loss_a"] = loss_a.detach().double().cpu()[rows].numpy()
        frame["loss_b"] = loss_b.detach().double().cpu()[rows].numpy()
        frame["loss_diff"] = frame["loss_b"] - frame["loss_a"]
        frame = frame.iloc[np.argsort(-np.abs(frame["loss_diff"].to_numpy()), kind="stable")].reset_index(drop=True)
    return frame if limit is None else frame.head(limit)


# ----------------------------------------------------------------- summary


def comparison_from_counts(
    counts: PairedCounts,
    *,
    lensed_diff_interval: BootstrapInterval | None = None,
    unlensed_diff_interval: BootstrapInterval | None = None,
) -> dict[str, Any]:
    """The ``comparison.json`` dict from streamed counts (and the bootstrap intervals, when computed).

    Keys: ``samples``, ``accuracy_a``, ``accuracy_b``, ``accuracy_diff``, ``both_correct``, ``a_only_correct``,
    ``b_only_correct``, ``neither_correct``, ``mcnemar_p``, and for ``unlensed`` and ``lensed``:
    ``{kind}_loss_a``, ``{kind}_loss_b``, ``{kind}_loss_diff`` (B − A), ``{kind}_loss_diff_low``,
    ``{kind}_loss_diff_high`` (``None`` without an interval); plus ``bootstrap_resamples``, ``bootstrap_seed``,
    ``bootstrap_confidence``. Values are plain Python numbers, ready for ``json.dumps``.
    """
    n = counts.samples
    if n < 1:
        raise InputError.build("at least one paired sample", "0", fix="Compare predictions of a non-empty set.")
    acc_a = (counts.both_correct + counts.a_only_correct) / n
    acc_b = (counts.both_correct + counts.b_only_correct) / n
    out: dict[str, Any] = {
        "samples": n,
        "accuracy_a": acc_a,
        "accuracy_b": acc_b,
        "accuracy_diff": acc_b - acc_a,
        "both_correct": counts.both_correct,
        "a_only_correct": counts.a_only_correct,
        "b_only_correct": counts.b_only_correct,
        "neither_correct": counts.neither_correct,
        "mcnemar_p": mcnemar_exact_p(counts.a_only_correct, counts.b_only_correct),
    }
    for kind, interval in (("unlensed", unlensed_diff_interval), ("lensed", lensed_diff_interval)):
        mean_a = getattr(counts, f"{kind}_loss_a") / n
        mean_b = getattr(counts, f"{kind}_loss_b") / n
        out[f"{kind}_loss_a"] = mean_a
        out[f"{kind}_loss_b"] = mean_b
        out[f"{kind}_loss_diff"] = mean_b - mean_a
        out[f"{kind}_loss_diff_low"] = interval.low if interval else None
        out[f"{kind}_loss_diff_high"] = interval.high if interval else None
    interval = lensed_diff_interval or unlensed_diff_interval
    out["bootstrap_resamples"] = interval.resamples if interval else 0
    out["bootstrap_seed"] = interval.seed if interval else None
    out["bootstrap_confidence"] = interval.confidence if interval else None
    return out


def comparison_summary(
    logits_a: Tensor,
    logits_b: Tensor,
    labels: Tensor,
    lens: object,
    *,
    family: str = "target",
    correct_a: Tensor | None = None,
    correct_b: Tensor | None = None,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Every paired number for two models under one lens: the ``comparison.json`` dict.

    Keys as :func:`comparison_from_counts`, plus ``family``.

    Lens convention: row ``i`` of ``lens`` is the target distribution when the true label is ``i``; rows sum to 1.
    Unlensed loss is cross-entropy (the identity lens); lensed loss is the ``family`` loss under ``lens``
    (``'target'``: :func:`~lensdash.lensed_cross_entropy`, ``'prediction'``:
    :func:`~lensdash.prediction_lensed_cross_entropy`).

    Args:
        logits_a, logits_b: (N, K) paired logits (see :func:`pair_predictions`).
        labels: (N,) int64 true labels.
        lens: K×K lens.
        family: ``'target'`` or ``'prediction'``.
        correct_a, correct_b: optional (N,) bool correctness (e.g. lens-aware); top-1 when omitted.
        resamples, seed, confidence: the paired bootstrap (see :func:`paired_bootstrap`); ``resamples=0`` skips it.

    Raises:
        InputError: shapes, labels or family; LensError: an invalid lens.

    Example:
        >>> x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
        >>> s = comparison_summary(x, x.flip(1), torch.tensor([0, 1, 1]), torch.eye(2), resamples=0)
        >>> s["accuracy_a"], s["b_only_correct"], s["mcnemar_p"]
        (0.6666666666666666, 1, 1.0)
    """
    loss_fn = _family(family)
    identity = torch.eye(logits_a.shape[1], dtype=logits_a.dtype, device=logits_a.device)
    with torch.no_grad():
        unlensed_a = loss_fn(logits_a, labels, identity, reduction="none")
        unlensed_b = loss_fn(logits_b, labels, identity, reduction="none")
        lensed_a = loss_fn(logits_a, labels, lens, reduction="none")
        lensed_b = loss_fn(logits_b, labels, lens, reduction="none")
    counts = paired_counts(
        top1_correct(logits_a, labels) if correct_a is None else correct_a,
        top1_correct(logits_b, labels) if correct_b is None else correct_b,
        unlensed_a=unlensed_a,
        unlensed_b=unlensed_b,
        lensed_a=lensed_a,
        lensed_b=lensed_b,
    )
    intervals: dict[str, BootstrapInterval | None] = {"lensed": None, "unlensed": None}
    if resamples:
        intervals["lensed"] = paired_bootstrap(
            lensed_a, lensed_b, resamples=resamples, seed=seed, confidence=confidence
        )
        intervals["unlensed"] = paired_bootstrap(
            unlensed_a, unlensed_b, resamples=resamples, seed=seed, confidence=confidence
        )
    out = comparison_from_counts(
        counts, lensed_diff_interval=intervals["lensed"], unlensed_diff_interval=intervals["unlensed"]
    )
    out["family"] = family
    return out


__all__ = [
    "BootstrapInterval",
    "PairedCounts",
    "PairedPredictions",
    "bootstrap_indices",
    "comparison_from_counts",
    "comparison_summary",
    "confusion_difference",
    "disagreements",
    "mcnemar_exact_p",
    "pair_predictions",
    "paired_bootstrap",
    "paired_counts",
    "per_class_comparison",
    "top1_correct",
]
