r"""Where a model fails: per-slice accuracy and losses by a metadata column.

Given per-sample correctness (top-1 and lens-aware, as the caller defines them), unlensed and lensed losses and a
metadata column, one row per value of the column:

.. math::
    \mathrm{accuracy}_s = \frac{1}{|s|} \sum_{n \in s} \mathbb{1}[\text{correct}_n],
    \qquad \mathrm{lensed\_loss}_s = \frac{1}{|s|} \sum_{n \in s} \ell^{C}_n

and likewise for lens-aware accuracy and the unlensed loss. Lens convention (for the lensed loss the caller
computes): row ``i`` of the lens is the target distribution when the true label is ``i``; rows sum to 1.

Missing values form their own slice, ``(missing)``. A numeric column with more than ``max_values`` distinct values
(a score, an age, an id) is cut into quantile bins exactly as ``pandas.qcut(column, bins, duplicates="drop")``;
a text column with more than ``max_slices`` values keeps the most frequent ones and groups the rest as
``(other)``. Both say so in :attr:`Slices.note`.

:class:`SliceAccumulator` is the streaming form for the CLI: per-value sums (count, correct, lens-aware correct,
loss sums) keyed by the raw value, updated chunk by chunk and merged across shards; the bins are made at the end
from the value counts, so streaming gives the same table as :func:`slice_table` on the whole column. Its memory is
one row per distinct value.

**Two models** (``model_b=``, the comparison's model B on the same samples, in A's row order): the slices are A's
(the same metadata column, the same bins), and each number comes for A, for B and as B − A: columns
``accuracy_a``, ``accuracy_b``, ``accuracy_diff``, and likewise ``lens_aware_accuracy``, ``unlensed_loss`` and
``lensed_loss`` (named as ``comparison.json``'s keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch  # noqa: F401  (the doctests use it)
from torch import Tensor

from lensdash.errors import InputError

MISSING = "(missing)"
OTHER = "(other)"
SUMS = ("count", "correct", "lens_aware_correct", "unlensed_loss", "lensed_loss")
SUMS_B = ("correct_b", "lens_aware_correct_b", "unlensed_loss_b", "lensed_loss_b")
METRICS = ("accuracy", "lens_aware_accuracy", "unlensed_loss", "lensed_loss")
COLUMNS = ("slice", "count", *METRICS)
#: The columns of a two-model table: each metric for A, for B and B − A.
PAIRED_COLUMNS = ("slice", "count", *(f"{m}_{side}" for m in METRICS for side in ("a", "b", "diff")))


@dataclass(frozen=True)
class Slices:
    """A per-slice table and what was done to make it.

    Attributes:
        table: columns ``slice`` (text), ``count``, ``accuracy``, ``lens_aware_accuracy``, ``unlensed_loss``,
            ``lensed_loss`` (means), one row per slice, largest first (with two models: :data:`PAIRED_COLUMNS`).
            Slice names are data from files: pass the table through ``lensdash.sanitize`` before showing or
            writing it.
        column: the metadata column's name.
        note: how values were grouped (quantile bins, an ``(other)`` slice), or ``None``.
    """

    table: pd.DataFrame
    column: str
    note: str | None


def _vector(values: object, n: int, name: str) -> np.ndarray:
    array = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, dtype=np.float64)
    if array.shape != (n,):
        raise InputError.build(
            f"one value per sample ({n}, as many as the metadata column)",
            f"shape {array.shape}",
            where=name,
            fix="Pass the per-sample vectors and the metadata column of the same rows.",
        )
    return array


def _weighted_quantiles(values: np.ndarray, counts: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """``numpy.quantile(np.repeat(values, counts), quantiles)`` (linear) without repeating the values.

    ``values`` sorted and distinct. The arithmetic follows numpy's, which pandas' ``Series.quantile`` (and so
    ``qcut``) calls: position ``(N - 1) q``, then numpy's two-sided lerp, so the bin edges are the same floats.
    """
    ends = np.cumsum(counts)  # element p (0-based) of the repeated array is values[searchsorted(ends, p, 'right')]
    total = int(ends[-1])
    position = (total - 1) * np.asarray(quantiles, dtype=np.float64)
    below = np.floor(position)
    above = np.minimum(below + 1, total - 1)
    gamma = position - below
    a = values[np.searchsorted(ends, below, side="right")]
    b = values[np.searchsorted(ends, above, side="right")]
    diff = b - a
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


def _qcut_quantiles(bins: int) -> np.ndarray:
    quantiles = np.linspace(0, 1, bins + 1)
    # as pandas.qcut: round up rather than to nearest where q * i / q is not exact in base 2
    np.putmask(quantiles, bins * quantiles != np.arange(bins + 1), np.nextafter(quantiles, 1))
    return quantiles


def _name(value: object, integral: bool) -> str:
    return str(int(value)) if integral else str(value)  # type: ignore[call-overload]


class SliceAccumulator:
    """Per-value sums of one metadata column, updated chunk by chunk: the streaming form of :func:`slice_table`.

    Args:
        column: the metadata column's name (for notes and errors).
        max_values: a numeric column with more distinct values is cut into quantile bins.
        bins: number of quantile bins (fewer when edges repeat, as ``qcut(..., duplicates="drop")``).
        max_slices: a text column with more distinct values keeps the ``max_slices - 1`` most frequent.
        paired: a second model's values come with each chunk (``update(..., model_b=...)``): A, B and B − A.

    Example:
        >>> acc = SliceAccumulator("site")
        >>> acc.update(pd.Series(["a", "b"]), [1, 0], [1, 1], [0.5, 1.5], [0.2, 0.4])
        >>> acc.update(pd.Series(["a", None]), [0, 1], [1, 1], [1.0, 1.0], [0.6, 0.1])
        >>> acc.result().table[["slice", "count", "accuracy", "lensed_loss"]].values.tolist()
        [['a', 2, 0.5, 0.4], ['(missing)', 1, 1.0, 0.1], ['b', 1, 0.0, 0.4]]
    """

    def __init__(
        self, column: str = "slice", *, max_values: int = 20, bins: int = 10, max_slices: int = 50, paired: bool = False
    ):
        if max_values < 1 or bins < 1 or max_slices < 2:
            raise InputError.build(
                "max_values >= 1, bins >= 1 and max_slices >= 2",
                f"{max_values}, {bins} and {max_slices}",
                fix="For example max_values=20, bins=10, max_slices=50.",
            )
        self.column = column
        self.max_values = max_values
        self.bins = bins
        self.max_slices = max_slices
        self.paired = paired
        self._sums = pd.DataFrame(columns=list(self._names), dtype=np.float64)
        self._missing = np.zeros(len(self._names))
        self._numeric: bool | None = None

    @property
    def _names(self) -> tuple[str, ...]:
        return SUMS + SUMS_B if self.paired else SUMS

    def update(
        self,
        values: pd.Series | np.ndarray | list,
        correct: object,
        lens_aware_correct: object,
        unlensed_loss: object,
        lensed_loss: object,
        *,
        model_b: Sequence[object] | None = None,
    ) -> None:
        """Add one chunk of samples.

        Args:
            values: (N,) metadata values (text or numbers; ``None``/``NaN`` are missing).
            correct: (N,) bool or 0/1, top-1 correctness.
            lens_aware_correct: (N,) bool or 0/1, lens-aware correctness (the caller's rule).
            unlensed_loss: (N,) per-sample unlensed loss.
            lensed_loss: (N,) per-sample lensed loss.
            model_b: with ``paired``, model B's four vectors on the same samples, in the order above (top-1,
                lens-aware, unlensed, lensed).

        Raises:
            InputError: vectors whose length is not the column's; ``model_b`` given or missing against ``paired``.
        """
        series = pd.Series(values).reset_index(drop=True)
        n = len(series)
        frame = pd.DataFrame(
            {
                "count": np.ones(n),
                "correct": _vector(correct, n, "correct"),
                "lens_aware_correct": _vector(lens_aware_correct, n, "lens_aware_correct"),
                "unlensed_loss": _vector(unlensed_loss, n, "unlensed_loss"),
                "lensed_loss": _vector(lensed_loss, n, "lensed_loss"),
            }
        )
        if (model_b is not None) != self.paired or (model_b is not None and len(model_b) != len(SUMS_B)):
            raise InputError.build(
                "model B's four per-sample vectors exactly when the accumulator is paired",
                f"paired={self.paired} and {'no' if model_b is None else len(model_b)} vectors of model B",
                fix="Make it with SliceAccumulator(..., paired=True) and pass model_b on every update.",
            )
        for name, values_b in zip(SUMS_B, model_b or ()):
            frame[name] = _vector(values_b, n, f"model_b {name}")
        missing = series.isna().to_numpy()
        self._missing += frame[missing].sum().to_numpy()
        present = series[~missing]
        if present.empty:
            return
        numeric = pd.api.types.is_numeric_dtype(present.dtype) and not pd.api.types.is_bool_dtype(present.dtype)
        if self._numeric is None:
            self._numeric = numeric
        if not (numeric and self._numeric):
            # text, or chunks that disagree: everything compares as text from here on
            if self._numeric:
                self._sums.index = self._sums.index.map(lambda v: _name(v, float(v).is_integer()))
            self._numeric = False
            integral = numeric and bool(np.all(np.mod(present.to_numpy(dtype=np.float64), 1) == 0))
            present = present.map(lambda v: _name(v, integral)) if numeric else present.astype(str)
        else:
            present = present.astype(np.float64)
        chunk = frame[~missing].groupby(present.to_numpy()).sum()
        self._sums = chunk if self._sums.empty else self._sums.add(chunk, fill_value=0.0)

    def merge(self, other: SliceAccumulator) -> SliceAccumulator:
        """Add another accumulator's sums (another shard's; gather them with ``all_gather_object``).

        An empty accumulator takes the other's form (one model or two)."""
        if self.paired != other.paired:
            if self._numeric is not None or self._missing.any():
                raise InputError.build(
                    "accumulators of the same form", "one of one model and one of two", fix="Merge like with like."
                )
            self.paired = other.paired
            self._sums = pd.DataFrame(columns=list(self._names), dtype=np.float64)
            self._missing = np.zeros(len(self._names))
        if other._numeric is not None:
            if self._numeric is None or self._numeric == other._numeric:
                sums = other._sums
                self._numeric = other._numeric
            else:
                if self._numeric:
                    self._sums.index = self._sums.index.map(lambda v: _name(v, float(v).is_integer()))
                sums = other._sums
                if other._numeric:
                    sums = sums.set_axis(sums.index.map(lambda v: _name(v, float(v).is_integer())))
                self._numeric = False
            self._sums = sums.copy() if self._sums.empty else self._sums.add(sums, fill_value=0.0)
        self._missing = self._missing + other._missing
        return self

    def result(self) -> Slices:
        """The per-slice table (see :class:`Slices`)."""
        sums = self._sums.sort_index()
        note = None
        if self._numeric and len(sums) > self.max_values:
            values = sums.index.to_numpy(dtype=np.float64)
            edges = np.unique(_weighted_quantiles(values, sums["count"].to_numpy(), _qcut_quantiles(self.bins)))
            if len(edges) < 2:
                edges = np.array([values[0], values[-1]])
            cut = pd.cut(values, edges, include_lowest=True, duplicates="drop")
            grouped = sums.groupby(np.asarray(cut.astype(str)), sort=False).sum()
            note = (
                f"{self.column!r} has {len(sums)} distinct numeric values: "
                f"grouped into {len(grouped)} quantile bins of about equal counts."
            )
            sums = grouped
        else:
            integral = bool(self._numeric) and bool(np.all(np.mod(sums.index.to_numpy(dtype=np.float64), 1) == 0))
            names = [_name(v, integral) for v in sums.index] if self._numeric else [str(v) for v in sums.index]
            sums = sums.set_axis(names)
            if len(sums) > self.max_slices:
                keep = sums.sort_values("count", ascending=False, kind="stable").index[: self.max_slices - 1]
                rest = sums.drop(index=keep)
                note = (
                    f"{self.column!r} has {len(sums)} distinct values: the {len(keep)} most frequent are shown, "
                    f"the other {len(rest)} ({int(rest['count'].sum())} samples) are grouped as {OTHER!r}."
                )
                sums = pd.concat([sums.loc[keep], rest.sum().to_frame(OTHER).T])
        if self._missing[0] > 0:
            sums = pd.concat([sums, pd.DataFrame([self._missing], columns=list(self._names), index=[MISSING])])
        counts = sums["count"].to_numpy()
        table = pd.DataFrame({"slice": sums.index.astype(str), "count": counts.astype(np.int64)})
        for metric, total in zip(METRICS, SUMS[1:]):
            if self.paired:
                table[f"{metric}_a"] = sums[total].to_numpy() / counts
                table[f"{metric}_b"] = sums[f"{total}_b"].to_numpy() / counts
                table[f"{metric}_diff"] = table[f"{metric}_b"] - table[f"{metric}_a"]
            else:
                table[metric] = sums[total].to_numpy() / counts
        order = np.lexsort((table["slice"].to_numpy(), -table["count"].to_numpy()))
        return Slices(table.iloc[order].reset_index(drop=True), self.column, note)


def slice_table(
    values: pd.Series | np.ndarray | list,
    correct: object,
    lens_aware_correct: object,
    unlensed_loss: object,
    lensed_loss: object,
    *,
    column: str | None = None,
    max_values: int = 20,
    bins: int = 10,
    max_slices: int = 50,
    model_b: Sequence[object] | None = None,
) -> Slices:
    """Per-slice count, accuracy, lens-aware accuracy and mean losses by one metadata column.

    Args:
        values: (N,) the metadata column (a pandas Series of text or numbers; missing values are a slice).
        correct: (N,) top-1 correctness (bool tensor or array).
        lens_aware_correct: (N,) lens-aware correctness (the caller's rule).
        unlensed_loss: (N,) per-sample cross-entropy.
        lensed_loss: (N,) per-sample lensed loss (e.g. ``lensed_cross_entropy(..., reduction="none")``; lens rows are
            target distributions, rows sum to 1).
        column: the column's name; defaults to the Series' name.
        max_values, bins, max_slices: see :class:`SliceAccumulator`.
        model_b: a second model's (N,) top-1 correctness, lens-aware correctness, unlensed and lensed losses on
            the same samples: the table has A, B and B − A (:data:`PAIRED_COLUMNS`).

    Returns:
        :class:`Slices`: the table (one row per slice, largest first) and a note on any grouping.

    Raises:
        InputError: vectors of another length than ``values``.

    Example:
        >>> s = slice_table(pd.Series(["x", "y", "x"], name="site"), torch.tensor([True, False, False]),
        ...                 torch.tensor([True, True, False]), torch.ones(3), torch.tensor([0.5, 1.0, 1.5]))
        >>> s.table.values.tolist()
        [['x', 2, 0.5, 0.5, 1.0, 1.0], ['y', 1, 0.0, 1.0, 1.0, 1.0]]
    """
    name = column if column is not None else str(getattr(values, "name", None) or "slice")
    accumulator = SliceAccumulator(
        name, max_values=max_values, bins=bins, max_slices=max_slices, paired=model_b is not None
    )
    accumulator.update(values, correct, lens_aware_correct, unlensed_loss, lensed_loss, model_b=model_b)
    return accumulator.result()


__all__ = ["COLUMNS", "METRICS", "MISSING", "OTHER", "PAIRED_COLUMNS", "SliceAccumulator", "Slices", "slice_table"]
