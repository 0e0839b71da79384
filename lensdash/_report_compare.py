"""A second model's paired sums for the report (``--compare``): part of :mod:`lensdash.report`, imported from there.

Lens convention: row ``i`` of the lens is the target distribution used when the true label is ``i``; rows sum to 1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from lensdash.analysis import FAMILIES, per_class_mean, unlensed_losses
from lensdash.compare import (
    BootstrapInterval,
    PairedCounts,
    comparison_from_counts,
    paired_bootstrap,
    paired_counts,
    top1_correct,
)
from lensdash.errors import InputError
from lensdash.io import Stream, open_stream
from lensdash.io._source import file_format

#: Bootstrap resamples of the paired loss difference (``--bootstrap-resamples``).
BOOTSTRAP_RESAMPLES = 1000

# Rows of Comparison.per_class: sums per true class.
_PER_CLASS_ROWS = ("count", "correct_a", "correct_b", "lensed_a", "lensed_b")


@dataclass
class Comparison:
    r"""Paired sums of a second model B on the same samples as A (matched by row order), streamed and sharded.

    Differences are B − A. ``counts`` and ``per_class`` are sums over samples, so chunks and processes add up
    exactly (``all_reduce``). The paired bootstrap needs the per-sample differences
    :math:`d_n = \ell^B_n - \ell^A_n`: one float64 per sample and loss is kept (``lensed_diff``,
    ``unlensed_diff``, in row order) and, under ``torchrun``, gathered on rank 0 in rank order, so the interval is
    the one :func:`~lensdash.compare.paired_bootstrap` gives on the whole data in one process.

    Correctness is top-1 (:func:`~lensdash.compare.top1_correct`), as :func:`~lensdash.compare.comparison_summary`.
    """

    source: str
    counts: PairedCounts
    per_class: Tensor  # (5, K) float64: _PER_CLASS_ROWS
    lensed_diff: list[Tensor]
    unlensed_diff: list[Tensor]
    rows_b: int = 0  # rows of B this process read to the end of (see _PairedRows.finish); summed across processes
    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = 0
    notes: list[str] = field(default_factory=list)
    _summary: dict | None = field(default=None, repr=False)

    def add_(self, analysis_a: Any, logits_b: Tensor, lens: Tensor, family: str) -> None:
        """Add one chunk: A's :class:`~lensdash.analysis.Analysis` and B's logits for the same rows.

        B's losses are taken as A's: with A's soft labels (``analysis_a.targets``) when it has them.
        """
        labels, targets = analysis_a.labels, analysis_a.targets
        with torch.no_grad():
            target = labels if targets is None else targets.to(logits_b.dtype)
            lensed_b = FAMILIES[family](logits_b, target, lens, reduction="none")
            unlensed_b = unlensed_losses(logits_b, labels, family=family, targets=targets)
        correct_a, correct_b = analysis_a.predicted == labels, top1_correct(logits_b, labels)
        self.counts = self.counts + paired_counts(
            correct_a,
            correct_b,
            unlensed_a=analysis_a.unlensed_loss,
            unlensed_b=unlensed_b,
            lensed_a=analysis_a.lensed_loss,
            lensed_b=lensed_b,
        )
        values = (torch.ones_like(lensed_b), correct_a, correct_b, analysis_a.lensed_loss, lensed_b)
        for index, value in enumerate(values):
            self.per_class[index].index_add_(0, labels, value.double().to(self.per_class.device))
        self.lensed_diff.append(lensed_b.detach().double().cpu() - analysis_a.lensed_loss.detach().double().cpu())
        self.unlensed_diff.append(unlensed_b.detach().double().cpu() - analysis_a.unlensed_loss.detach().double().cpu())

    def summary(self) -> dict[str, Any]:
        """The ``comparison.json`` dict (:func:`~lensdash.compare.comparison_from_counts`), bootstrap included.

        The bootstrap runs once (N × resamples draws) and the result is kept.
        """
        if self._summary is None:
            intervals: dict[str, BootstrapInterval | None] = {"lensed": None, "unlensed": None}
            if self.resamples and self.counts.samples:
                for kind, parts in (("lensed", self.lensed_diff), ("unlensed", self.unlensed_diff)):
                    diff = torch.cat(parts)
                    # paired_bootstrap takes d = b - a; with a = 0 it gets the stored differences exactly.
                    intervals[kind] = paired_bootstrap(
                        torch.zeros_like(diff), diff, resamples=self.resamples, seed=self.seed
                    )
            out = comparison_from_counts(
                self.counts, lensed_diff_interval=intervals["lensed"], unlensed_diff_interval=intervals["unlensed"]
            )
            self._summary = {**out, "source_b": self.source, "correct": "top-1", "notes": self.notes}
        return self._summary

    def per_class_table(self, names: Sequence[str]) -> pd.DataFrame:
        """One row per true class, as :func:`~lensdash.compare.per_class_comparison` with the lensed losses."""
        count, correct_a, correct_b, lensed_a, lensed_b = self.per_class.cpu()
        frame = pd.DataFrame({"class": list(names), "count": count.long().numpy()})
        frame["recall_a"] = per_class_mean(correct_a, count).numpy()
        frame["recall_b"] = per_class_mean(correct_b, count).numpy()
        frame["recall_diff"] = frame["recall_b"] - frame["recall_a"]
        frame["lensed_loss_a"] = per_class_mean(lensed_a, count).numpy()
        frame["lensed_loss_b"] = per_class_mean(lensed_b, count).numpy()
        frame["lensed_loss_diff"] = frame["lensed_loss_b"] - frame["lensed_loss_a"]
        return frame


def _row_sharded(path: str | os.PathLike) -> bool:
    """Parquet and ``.npy`` shares are cut by rows (the same rows for two files of N rows); a CSV's by bytes."""
    with open(path, "rb") as handle:
        return file_format(handle.read(8)) in ("parquet", "npy")


class _PairedRows:
    """B's rows for A's chunks, by row number: whatever B's chunk sizes are, :meth:`take` returns A's rows.

    Under ``torchrun`` B is read with A's shard when both files are cut into shares by rows (Parquet, ``.npy``);
    otherwise (a CSV is cut by bytes, so its shares are not another file's) each process reads B from the start
    and skips the rows before its own, which costs reading B's earlier rows but keeps the pairing exact.
    """

    def __init__(self, stream: Stream, order: Tensor | None, *, whole_file: bool, to_end: bool) -> None:
        self.name, self.notes = stream.name, list(stream.notes)
        self.label_count = stream.label_count
        self._names = stream.class_names
        self._chunks = iter(stream.chunks)
        self._order = order
        self._whole_file, self._to_end = whole_file, to_end
        self._current: Any = None
        self._rows_seen = 0  # rows of B's chunks seen, skipped ones included
        self._end = 0  # one past the last row of B seen

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        predictions: str | os.PathLike,
        labels: str | os.PathLike | None,
        names: tuple[str, ...],
        kind: str,
        label_column: str | int | None,
        shard: tuple[int, int],
        chunk_rows: int,
        limits: dict[str, Any],
    ) -> _PairedRows:
        rank, world = shard
        same_shares = world == 1 or (_row_sharded(predictions) and _row_sharded(path))
        stream = open_stream(
            path,
            labels,
            kind=kind,
            label_column=label_column,
            shard=shard if same_shares else (0, 1),
            chunk_rows=chunk_rows,
            **limits,
        )
        order = None
        if stream.class_names != names:
            position = {name: index for index, name in enumerate(stream.class_names)}
            lost = [name for name in names if name not in position]
            extra = [name for name in stream.class_names if name not in set(names)]
            if lost or extra or len(stream.class_names) != len(names):
                shown = ", ".join(repr(n) for n in (lost or extra)[:5])
                more = len(lost or extra) - 5
                raise InputError.build(
                    f"the same {len(names):,} classes as the predictions",
                    f"{len(stream.class_names):,} classes"
                    + (f"; {'missing' if lost else 'not in the predictions'}: {shown}" if shown else "")
                    + (f" and {more:,} more" if more > 0 else ""),
                    where=f"{stream.name} (--compare)",
                    fix="Compare two models' predictions over the same classes.",
                )
            order = torch.tensor([position[name] for name in names])
        return cls(stream, order, whole_file=not same_shares or world == 1, to_end=same_shares or rank == world - 1)

    def take(self, row: int, labels: Tensor) -> Tensor:
        """B's logits for rows ``row .. row + len(labels) - 1`` (A's columns order), checking B's labels equal A's.

        Raises:
            InputError: B ends before, or its rows do not continue where A's are, or a label differs.
        """
        n = len(labels)
        start, stop = row, row + n
        parts, part_labels = [], []
        while start < stop:
            if self._current is None:
                self._current = next(self._chunks, None)
                if self._current is None:
                    raise InputError.build(
                        f"at least {stop:,} rows (as many as the predictions)",
                        f"{self._end:,}",
                        where=f"{self.name} (--compare)",
                        fix="Give the second model's predictions for the same samples, in the same order.",
                    )
                self._rows_seen += len(self._current.labels)
                self._end = max(self._end, self._current.row + len(self._current.labels))
            first, count = self._current.row, len(self._current.labels)
            if first + count <= start:  # rows before this process's share (or already taken)
                self._current = None
                continue
            if first > start:
                raise InputError.build(
                    f"row {start + 1:,} next",
                    f"row {first + 1:,}",
                    where=f"{self.name} (--compare)",
                    fix="Give the second model's predictions for the same samples, in the same order.",
                )
            lo, hi = start - first, min(first + count, stop) - first
            parts.append(self._current.logits[lo:hi])
            part_labels.append(self._current.labels[lo:hi])
            start = first + hi
            if hi == count:
                self._current = None
        logits, labels_b = torch.cat(parts), torch.cat(part_labels).to(labels.device)
        differ = torch.nonzero(labels_b != labels).flatten()
        if differ.numel():
            i = int(differ[0])
            raise InputError.build(
                f"the predictions' label {self._names_of(labels, i)!r} (the same samples in the same order)",
                repr(self._names_of(labels_b, i)),
                where=f"{self.name} (--compare), row {row + i + 1:,}",
                fix="Give the second model's predictions for the same samples, in the same order.",
            )
        return logits if self._order is None else logits[:, self._order]

    def _names_of(self, labels: Tensor, i: int) -> str:
        index = int(labels[i])
        names = self._names
        return names[int(self._order[index])] if self._order is not None else names[index]

    def close(self) -> None:
        """Stop reading B (its chunk iterator's threads end)."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def finish(self) -> int:
        """Rows of B this process answers for: its whole share (same shares), or B's length (the last process).

        Summed over processes this is B's row count, which must equal the predictions' (:func:`check_label_count`).
        """
        if not self._to_end:
            return 0
        for chunk in self._chunks:
            self._rows_seen += len(chunk.labels)
            self._end = max(self._end, chunk.row + len(chunk.labels))
        return self._end if self._whole_file else self._rows_seen
