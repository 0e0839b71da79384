"""Kinds of predictions (logits, probabilities, log-probabilities): detection and checks, in bounded blocks; a read
taken again as another kind (:func:`reinterpret`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from lensdash.errors import InputError
from lensdash.io._source import (
    KINDS,
    PROB_SUM_ATOL,
    Locate,
)

if TYPE_CHECKING:  # the reader's result type; _predictions imports this module
    from lensdash.io._predictions import Predictions


@dataclass(frozen=True)
class _Logits:
    """Predictions as logits (probabilities as their log, in place) and the kind they were read as."""

    values: Tensor
    kind: str


def _to_logits(name: str, values: np.ndarray, kind: str, notes: list[str], locate: Locate) -> _Logits:
    """Check ``values`` (N, K) float32 as ``kind`` (or detect it under ``'auto'``) and turn them into logits."""
    x = torch.from_numpy(values)
    lo, hi = (float(v) for v in torch.aminmax(x))  # NaN and inf show in the extremes: one pass, no N×K mask
    if not (math.isfinite(lo) and math.isfinite(hi)):
        r, c = (int(v) for v in (~torch.isfinite(x)).nonzero()[0])
        raise InputError.build(
            "a finite number", f"{x[r, c].item()}", where=locate(r, c), fix="Replace inf and NaN with real values."
        )
    if kind == "auto":  # detection makes the same checks as the kind's own below
        kind = _detect_kind(x, lo, hi, locate)
        notes.append(f"Detected {kind.replace('_', '-')} (kind='auto').")
    elif kind == "probs":
        _check_probs(x, locate)
    elif kind == "log_probs":
        _check_log_probs(x, locate)
    return _Logits(x.log_() if kind == "probs" else x, kind)


def _row(locate: Locate, r: int) -> str:
    return locate(r, 0).rsplit(", column", 1)[0]


def _detect_kind(x: Tensor, lo: float, hi: float, locate: Locate) -> str:
    if lo >= 0 and hi <= 1:
        off = _off_sum_row(x)
        if off is not None:
            raise InputError.build(
                f"probability rows summing to 1 (within {PROB_SUM_ATOL:g}), since every value is in [0, 1]",
                f"a sum of {off[1]:.4g}",
                where=_row(locate, off[0]),
                fix="Normalise the rows, or choose kind='logits' if these are logits.",
            )
        return "probs"
    if hi <= 0 and _off_logsumexp_row(x) is None:
        return "log_probs"
    return "logits"


def _off_sum_row(x: Tensor) -> tuple[int, float] | None:
    """The first row whose sum is not 1 (within :data:`PROB_SUM_ATOL`), and its sum."""
    for start, block in _row_blocks(x):
        sums = block.numpy().sum(axis=1, dtype=np.float64)  # numpy's sum is several times torch's on narrow rows
        off = np.flatnonzero(np.abs(sums - 1) > PROB_SUM_ATOL)
        if len(off):
            return start + int(off[0]), float(sums[off[0]])
    return None


def _off_logsumexp_row(x: Tensor) -> tuple[int, float] | None:
    """The first row whose ``logsumexp`` is not 0 (within :data:`PROB_SUM_ATOL`), and its ``exp`` (the row's sum)."""
    for start, block in _row_blocks(x):
        lse = torch.logsumexp(block.double(), dim=1)
        off = (lse.abs() > PROB_SUM_ATOL).nonzero()
        if len(off):
            r = int(off[0, 0])
            return start + r, lse[r].exp().item()
    return None


def _row_blocks(x: Tensor) -> Iterator[tuple[int, Tensor]]:
    """Blocks of about 4 million cells: float64 temporaries stay at 32 MB whatever the file's size."""
    step = max(1, (1 << 22) // max(1, x.shape[1]))
    for start in range(0, x.shape[0], step):
        yield start, x[start : start + step]


def _check_probs(x: Tensor, locate: Locate) -> None:
    neg = x < 0
    if neg.any():
        r, c = (int(v) for v in neg.nonzero()[0])
        raise InputError.build(
            "a probability >= 0",
            f"{x[r, c].item():.4g}",
            where=locate(r, c),
            fix="Choose kind='logits' if these are logits.",
        )
    big = x > 1
    if big.any():
        r, c = (int(v) for v in big.nonzero()[0])
        raise InputError.build(
            "a probability <= 1",
            f"{x[r, c].item():.4g}",
            where=locate(r, c),
            fix="Choose kind='logits' if these are logits.",
        )
    off = _off_sum_row(x)
    if off is not None:
        raise InputError.build(
            f"probabilities summing to 1 (within {PROB_SUM_ATOL:g})",
            f"a sum of {off[1]:.4g}",
            where=_row(locate, off[0]),
            fix="Normalise each row, or choose kind='logits'.",
        )


def _check_log_probs(x: Tensor, locate: Locate) -> None:
    pos = x > PROB_SUM_ATOL
    if pos.any():
        r, c = (int(v) for v in pos.nonzero()[0])
        raise InputError.build(
            "a log-probability <= 0",
            f"{x[r, c].item():.4g}",
            where=locate(r, c),
            fix="Choose kind='logits' if these are logits.",
        )
    off = _off_logsumexp_row(x)
    if off is not None:
        raise InputError.build(
            "log-probabilities whose exp sums to 1",
            f"a sum of {off[1]:.4g}",
            where=_row(locate, off[0]),
            fix="Choose kind='logits' if these are unnormalised scores.",
        )


# ------------------------------------------------------------------ reading again as another kind, without the file


def detected_note(kind: str) -> str:
    """The note :func:`~lensdash.read_predictions` adds when ``kind='auto'`` found ``kind``.

    >>> detected_note("log_probs")
    "Detected log-probs (kind='auto')."
    """
    return f"Detected {kind.replace('_', '-')} (kind='auto')."


def _sample_locator(name: str) -> Locate:
    """Cells named by sample and class column (1-based): the file's own rows are not known once it is read."""

    def locate(r: int, c: int) -> str:
        return f"{name}, sample {r + 1}, column {c + 1} of the scores"

    return locate


def reinterpret(predictions: Predictions, kind: str) -> Predictions:
    r"""The same predictions taken as ``kind``: what reading their file again with ``kind=kind`` gives, without it.

    A reader's result keeps the values it read (logits and log-probabilities as they are, probabilities as their
    log), so the numbers can be taken as another kind without the file: ``kind='auto'`` detects it by the rule of
    :func:`~lensdash.read_predictions`, the other kinds make its checks, and probabilities become their log.
    Labels, names, metadata, soft labels and the read's other notes stay as they are.

    Exact in every case but one: predictions read as probabilities and taken as logits or log-probabilities are
    ``exp`` of the kept log, equal to the file's values within float32 rounding (a relative 1e-6). Taken from the
    read itself, the kind it was read as gives the read's own logits: keep the read, and take each kind from it.

    Args:
        predictions: a :class:`~lensdash.io.Predictions` from :func:`~lensdash.read_predictions` (or from this).
        kind: ``'auto'``, ``'logits'``, ``'probs'`` or ``'log_probs'``.

    Returns:
        A new :class:`~lensdash.io.Predictions` with ``kind`` settled; it shares its ``logits`` with ``predictions``
        wherever the values are taken unchanged (no copy).

    Raises:
        InputError: an unknown kind, or values that are not of ``kind`` (the sample and column, 1-based, and what to
            choose instead), as the reader says.

    Example:
        >>> from lensdash import read_predictions
        >>> p = read_predictions(b"cat,dog,label\n0.9,0.1,cat\n0.2,0.8,dog\n")
        >>> as_logits = reinterpret(p, "logits")  # the probabilities themselves, taken as logits
        >>> p.kind, as_logits.kind, torch.allclose(as_logits.logits, torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
        ('probs', 'logits', True)
        >>> again = reinterpret(p, "probs")  # from the read itself: its own tensor, no copy
        >>> again.kind, again.logits is p.logits
        ('probs', True)
    """
    if kind not in KINDS:
        raise InputError.build(
            f"kind in {KINDS}", repr(kind), fix="'auto' detects probabilities, log-probabilities and logits."
        )
    kept = predictions.logits
    values = kept.exp() if predictions.kind == "probs" else kept  # the values as read (exp(-inf) = 0 exactly)
    locate = _sample_locator(predictions.source)
    notes = [note for note in predictions.notes if note not in {detected_note(k) for k in KINDS}]
    lo, hi = (float(v) for v in torch.aminmax(values))
    if kind == "auto":
        kind = _detect_kind(values, lo, hi, locate)
        notes.append(detected_note(kind))
    elif kind == "probs":
        _check_probs(values, locate)
    elif kind == "log_probs":
        _check_log_probs(values, locate)
    if kind == predictions.kind:
        logits = kept  # the same values, turned into logits the same way: the read's own tensor
    elif kind == "probs":
        logits = values.log()  # a new tensor: the kept values stay as they were
    else:
        logits = values
    return dataclasses.replace(predictions, logits=logits, kind=kind, notes=notes)
