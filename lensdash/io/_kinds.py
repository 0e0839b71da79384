"""Kinds of predictions (logits, probabilities, log-probabilities): detection and checks, in bounded blocks."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lensdash.errors import InputError
from lensdash.io._source import (
    PROB_SUM_ATOL,
    Locate,
)


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
