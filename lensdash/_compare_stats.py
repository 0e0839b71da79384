r"""Paired counts, McNemar's exact test and the paired bootstrap of two models; see :mod:`lensdash.compare`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lensdash.errors import InputError

MAX_BOOTSTRAP_ELEMENTS = 1 << 18
"""Resampled values held at once by :func:`paired_bootstrap` (2 MiB of int64 indices, cache-sized): it works in
blocks of resamples."""


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


__all__ = [
    "MAX_BOOTSTRAP_ELEMENTS",
    "BootstrapInterval",
    "PairedCounts",
    "bootstrap_indices",
    "mcnemar_exact_p",
    "paired_bootstrap",
    "paired_counts",
    "top1_correct",
]
