r"""The app's summary for files of any size: streamed, optionally sharded, written as CSV/JSON and HTML.

Lens convention: row ``i`` of the lens is the target distribution used when the
true label is ``i``; rows sum to 1. In one pass over the file, chunk by chunk:
per-class losses and gradients (:class:`~lensdash.analysis.ClassSums`), the
evaluation metrics (:class:`~lensdash.metrics.MetricSums`), the hierarchical
metrics (:class:`~lensdash.hierarchy.HierarchySums`) and a second model's paired
sums (:class:`Comparison`). Under ``torchrun`` every sum is added across
processes with ``all_reduce``; the means and metrics are taken once, at the end.
The comparison (``_compare_stream``) and the HTML page (``_report_html``) live
in private modules; their public names are imported here."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import torch

from lensdash import figures
from lensdash._compare_stream import BOOTSTRAP_RESAMPLES, Comparison, open_paired
from lensdash._report_html import _html, _json_ready
from lensdash.analysis import FAMILIES, ClassSums, analyze, confusion_frame, gradient_table
from lensdash.errors import InputError, LensdashError
from lensdash.hierarchy import Hierarchy, HierarchySums
from lensdash.io import (
    CHUNK_ROWS,
    DEFAULT_MAX_CELLS,
    DEFAULT_MAX_CLASSES,
    open_stream,
    read_hierarchy,
    read_lens,
)
from lensdash.lens import Lens, align_lens
from lensdash.metrics import MetricSums, lens_rule
from lensdash.report_folder import OutputFolder, check_output_folder
from lensdash.sanitize import spreadsheet_cell, spreadsheet_safe
from lensdash.slices import SliceAccumulator

#: Files of every report, written together or not at all.
REPORT_FILES = (
    "summary.json",
    "per_class.csv",
    "gradients_unlensed.csv",
    "gradients_lensed.csv",
    "gradients_difference.csv",
    "confusion.csv",
    "lens.csv",
    "report.html",
)
#: Files a report with a second model (``--compare``) adds.
COMPARISON_FILES = ("comparison.json", "comparison_per_class.csv")

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "COMPARISON_FILES",
    "REPORT_FILES",
    "Comparison",
    "OutputFolder",
    "Report",
    "all_reduce",
    "check_label_count",
    "check_output_folder",
    "report",
]

Progress = Callable[[int, int, int], None]  # (units done, units total, rows read)


@dataclass
class Report:
    """Sums over every sample read, and what they describe.

    ``sums`` holds the losses and gradients per class (the app's analysis); ``metrics`` the evaluation
    (accuracies, per-class precision / recall / F1, top-k, calibration, plain and lensed); ``hierarchy_sums`` the
    hierarchical metrics when a hierarchy is given; ``comparison`` a second model's paired sums. Each is a sum
    over samples, added across chunks and processes.
    """

    sums: ClassSums
    metrics: MetricSums
    class_names: tuple[str, ...]
    lens: Lens
    family: str
    kind: str
    source: str
    notes: list[str] = field(default_factory=list)
    processes: int = 1
    label_count: int | None = None  # labels in a separate file, checked against the rows once all are read
    hierarchy: Hierarchy | None = None
    hierarchy_sums: HierarchySums | None = None
    comparison: Comparison | None = None
    slices: SliceAccumulator | None = None
    soft_labels: bool = False  # the losses and gradients used per-sample target distributions

    @property
    def rows(self) -> int:
        return int(self.sums.count.sum())

    @property
    def files(self) -> tuple[str, ...]:
        """The files this report writes: :data:`REPORT_FILES`, and :data:`COMPARISON_FILES` with a comparison."""
        extra = (COMPARISON_FILES if self.comparison is not None else ()) + (("slices.csv",) if self.slices else ())
        return REPORT_FILES + extra

    def add_(self, other: Report) -> Report:
        """Add another share's sums in place (the in-process form of :func:`all_reduce`; same classes and lens).

        A comparison's per-sample differences are appended, so add shares in row order.
        """
        self.sums.add_(other.sums)
        self.metrics.add_(other.metrics)
        self.soft_labels = self.soft_labels or other.soft_labels
        if self.hierarchy_sums is not None and other.hierarchy_sums is not None:
            self.hierarchy_sums.merge_(other.hierarchy_sums)
        if self.comparison is not None and other.comparison is not None:
            self.comparison.add_share_(other.comparison)
        if self.slices is not None and other.slices is not None:
            self.slices.merge(other.slices)
        return self

    def summary(self) -> dict:
        """The headline numbers (as the app's metrics) and what produced them; NaN is written as ``null``.

        Accuracy, lens-aware accuracy and the lens soft score come from :attr:`metrics` when it is there (the same
        rule, :func:`~lensdash.analysis.lens_hits`, on the same samples as :attr:`sums`). ``soft_labels`` says
        whether the losses and gradients used per-sample target distributions; the accuracies, per-class scores
        and calibration then use their majority labels.
        """
        out: dict[str, Any] = {**self.sums.summary(), **self.metrics.summary()}
        if self.hierarchy_sums is not None:
            out["hierarchy"] = self.hierarchy_sums.result()
        out.update(
            {
                "family": self.family,
                "kind": self.kind,
                "source": self.source,
                "class_names": list(self.class_names),
                "processes": self.processes,
                "soft_labels": self.soft_labels,
                "notes": self.notes,
                "complete": True,
            }
        )
        return _json_ready(out)

    def per_class_table(self) -> pd.DataFrame:
        """``per_class.csv``: the losses and accuracies per class, then precision, recall, F1, support and top-k."""
        table = self.sums.per_class_table(self.class_names)
        return pd.concat([table, self.metrics.per_class_table(self.class_names).drop(columns="class")], axis=1)

    def write(self, out: str | os.PathLike) -> list[Path]:
        """Write :attr:`files` into ``out``, replacing only a previous lensdash report, crash-safely.

        See :class:`OutputFolder` for what may be replaced and how. Returns the paths written.

        Raises:
            InputError: ``out`` is not a new folder, an empty one or a previous report, or cannot be created.
        """
        folder = OutputFolder.prepare(out)
        try:
            return folder.commit(self)
        finally:
            folder.discard()

    def write_files(self, folder: Path) -> None:
        """Write :attr:`files` into an existing ``folder`` (no marker, no replacement: see :meth:`write`).

        Names from the files are data: they are HTML-escaped in ``report.html`` (and in the figures' labels, which
        plotly reads as a small HTML subset) and made spreadsheet-safe in every CSV.
        """
        names = self.class_names
        grad_u, grad_l = self.sums.class_mean_gradients()
        _write_csv(self.per_class_table(), folder / "per_class.csv")
        for label, matrix in (("unlensed", grad_u), ("lensed", grad_l), ("difference", grad_l - grad_u)):
            _write_csv(gradient_table(matrix, names).reset_index(), folder / f"gradients_{label}.csv")
        _write_csv(confusion_frame(self.metrics.confusion, names).reset_index(), folder / "confusion.csv")
        (folder / "lens.csv").write_bytes(_lens_csv(self.lens))
        if self.comparison is not None:
            comparison = _json_ready(self.comparison.summary())
            (folder / "comparison.json").write_text(json.dumps(comparison, indent=1), encoding="utf-8")
            _write_csv(self.comparison.per_class_table(names), folder / "comparison_per_class.csv")
        if self.slices is not None:
            _write_csv(self.slices.result().table, folder / "slices.csv")
        (folder / "report.html").write_text(_html(self, grad_u, grad_l), encoding="utf-8")
        (folder / "summary.json").write_text(json.dumps(self.summary(), indent=1), encoding="utf-8")

    def class_groups(self) -> tuple[list[int] | None, list[str] | None, str]:
        """Display order of the classes, a group per class and what the groups are, for the ordered views.

        The hierarchy's depth-first order and level-1 ancestors when there is one; else the lens's groups
        (:func:`~lensdash.figures.lens_groups`) when it has more than one and fewer than K; else no order.
        """
        names = list(self.class_names)
        if self.hierarchy is not None:
            order = figures.class_order(names, hierarchy=self.hierarchy)
            return [int(i) for i in order], [str(g) for g in self.hierarchy.ancestor_at(1, names)], "superclass"
        groups = figures.lens_groups(self.lens.matrix)
        if 1 < len(set(groups.tolist())) < len(names):
            order = figures.class_order(names, groups=groups)
            first: dict[int, str] = {}
            for index, group in enumerate(groups.tolist()):
                first.setdefault(group, names[index])
            return [int(i) for i in order], [f"group of {first[g]}" for g in groups.tolist()], "lens group"
        return None, None, ""


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """pyarrow's writer: K×K float tables for 1,000 classes take 0.2 s instead of pandas' 1.4 s, and read back exactly.

    Text cells, column names and index labels are made spreadsheet-safe first (numbers are left as they are).
    """
    pacsv.write_csv(pa.Table.from_pandas(spreadsheet_safe(frame), preserve_index=False), path)


def _lens_csv(lens: Lens) -> bytes:
    """The lens as :func:`~lensdash.lens_to_bytes` writes it (``class`` header, first column), names spreadsheet-safe.

    Lens convention: row ``i`` is the target distribution used when the true label is ``i``.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["class", *(spreadsheet_cell(str(c)) for c in lens.classes)])
    for name, row in zip(lens.classes, lens.matrix.detach().cpu().double().tolist()):
        writer.writerow([spreadsheet_cell(str(name)), *(f"{v:.10g}" for v in row)])
    return out.getvalue().encode()


def report(
    predictions: str | os.PathLike,
    lens: str | os.PathLike | object,
    *,
    labels: str | os.PathLike | None = None,
    kind: str = "auto",
    family: str = "target",
    label_column: str | int | None = None,
    device: str = "cpu",
    chunk_rows: int = CHUNK_ROWS,
    shard: tuple[int, int] = (0, 1),
    progress: Progress | None = None,
    hierarchy: str | os.PathLike | Hierarchy | None = None,
    compare: str | os.PathLike | None = None,
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    slice_by: str | None = None,
    max_cells: int | None = DEFAULT_MAX_CELLS,
    max_classes: int | None = DEFAULT_MAX_CLASSES,
    meta_columns: Sequence[str | int] | None = None,
    class_names: Sequence[str] | str | os.PathLike | None = None,
) -> Report:
    r"""Stream a predictions file and sum, in one pass, everything the report shows.

    Per chunk: what :func:`~lensdash.analysis.analyze` computes (losses, gradients per class), the evaluation
    metrics (:class:`~lensdash.metrics.MetricSums`), the hierarchical metrics
    (:class:`~lensdash.hierarchy.HierarchySums`) and a second model's paired sums (:class:`Comparison`). Memory is
    bounded by one chunk, not by the file (plus 16 bytes per sample with ``compare``, for the paired bootstrap; by id,
    B's ids and labels too, its scores in a temporary mapped file).
    With ``shard=(rank, world)`` only this process's share is read; combine shares with :func:`all_reduce`.

    Args:
        predictions: CSV, Parquet, ``.npy`` or ``.npz`` path.
        lens: a lens file (CSV, JSON, ``.pt``), a K×K tensor or a :class:`~lensdash.Lens`;
            rows are target distributions, rows sum to 1. Matched to the classes by name.
        labels: a separate labels file (one per prediction row).
        kind, label_column: as for :func:`~lensdash.read_predictions`.
        family: ``'target'`` (the seed's) or ``'prediction'``.
        device: ``'cpu'`` or ``'cuda'``.
        chunk_rows: rows per chunk for Parquet and ``.npy``.
        shard: (rank, world size).
        progress: called after each chunk with (done, total, rows read).
        hierarchy: a hierarchy file (:func:`~lensdash.read_hierarchy`) or a :class:`~lensdash.Hierarchy`.
        compare: predictions of a second model B for the same samples, with the same labels (its own label column,
            or the same ``labels`` file), the same classes (in any column order); paired by an id column when both
            files have one (rows in any order), by row order otherwise (:mod:`lensdash._compare_stream`).
        bootstrap_resamples: resamples of the paired bootstrap of B − A (0 skips it).
        seed: the bootstrap's seed.
        slice_by: a metadata column (``meta_columns``, a text or id column) to slice by: ``slices.csv``.
        max_cells, max_classes: as for :func:`~lensdash.io.open_stream` (CLI: ``--max-cells``, ``--max-classes``).
        meta_columns: columns kept aside as metadata, as for :func:`~lensdash.io.open_stream` (``--meta-columns``).
        class_names: names of ``.npy`` / ``.npz`` columns, a list or a file of one name a line (``--class-names``).

    Returns:
        A :class:`Report`.

    Raises:
        InputError: bad files, with the row, and how many rows were read before it; B's rows, labels or classes
            that are not A's.
        LensError: a lens that is not valid for these classes.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "p.csv"
        >>> _ = path.write_text("a,b,label\n0.9,0.1,a\n0.2,0.8,b\n")
        >>> r = report(path, torch.eye(2))
        >>> round(r.summary()["unlensed_loss"], 4), r.rows, r.summary()["ece"] is not None
        (0.1643, 2, True)
    """
    if family not in FAMILIES:
        raise InputError.build(
            f"a lens family in {sorted(FAMILIES)}",
            repr(family),
            fix="'target' is the seed's loss, 'prediction' the forward correction.",
        )
    if isinstance(bootstrap_resamples, bool) or not isinstance(bootstrap_resamples, int) or bootstrap_resamples < 0:
        raise InputError.build(
            "a whole number of bootstrap resamples >= 0",
            repr(bootstrap_resamples),
            fix=f"{BOOTSTRAP_RESAMPLES} is the default; 0 skips the interval.",
        )
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError.build("a CUDA device", "none available", fix="Use --device cpu.")
    tree = None if hierarchy is None or isinstance(hierarchy, Hierarchy) else read_hierarchy(hierarchy)
    tree = hierarchy if isinstance(hierarchy, Hierarchy) else tree
    stream = open_stream(
        predictions,
        labels,
        kind=kind,
        label_column=label_column,
        shard=shard,
        chunk_rows=chunk_rows,
        max_cells=max_cells,
        max_classes=max_classes,
        meta_columns=meta_columns,
        class_names=class_names,
    )
    names = stream.class_names
    the_lens, notes = _lens(lens, names)
    matrix = the_lens.matrix.to(device=device, dtype=torch.float32)
    rule = lens_rule(the_lens.matrix, len(names)).to(device)
    sums = ClassSums.zeros(len(names), device)
    metrics = MetricSums.zeros(len(names), device=device)
    hierarchy_sums = None if tree is None else HierarchySums(tree, names)
    paired, comparison = None, None
    if compare is not None:
        # B is read as A is: the same limits, metadata columns and names for .npy columns.
        limits: dict[str, Any] = {"max_cells": max_cells, "max_classes": max_classes, "meta_columns": meta_columns}
        limits["class_names"] = class_names
        paired = open_paired(compare, predictions, labels, names, kind, label_column, shard, chunk_rows, limits)
        comparison = Comparison.start(paired, len(names), device, resamples=bootstrap_resamples, seed=seed)
    slices = None if slice_by is None else SliceAccumulator(slice_by, paired=compare is not None)
    rows, soft_labels = 0, False
    try:
        for chunk in stream.chunks:
            logits, targets = chunk.logits.to(device), chunk.labels.to(device)
            # Soft labels (a distribution per row) drive the losses and gradients; the metrics and every count use
            # their majority labels (chunk.labels).
            soft = getattr(chunk, "targets", None)
            soft = None if soft is None else soft.to(device=device, dtype=logits.dtype)
            soft_labels = soft_labels or soft is not None
            analysis = analyze(logits, targets, matrix, family=family, class_names_=names, targets=soft)
            sums.add_(ClassSums.of(analysis))
            metrics.update(logits, targets, rule)
            if hierarchy_sums is not None:
                hierarchy_sums.add_(chunk.logits, chunk.labels)
            model_b = None
            if paired is not None and comparison is not None:
                logits_b = paired.take(chunk.row, targets, chunk.metadata)
                model_b = comparison.add_(analysis, logits_b.to(device), matrix, family)
            if slices is not None and slice_by is not None:
                slices.update(
                    _slice_values(chunk.metadata, slice_by),
                    analysis.predicted == targets,
                    analysis.lens_hit,
                    analysis.unlensed_loss,
                    analysis.lensed_loss,
                    model_b=model_b,
                )
            rows += len(chunk.labels)
            if progress is not None:
                progress(chunk.done, stream.total, rows)
        if paired is not None and comparison is not None:
            comparison.finish_(paired)
    except LensdashError as exc:
        raise type(exc)(f"{exc} (stopped after reading {rows:,} rows; no report was written)") from None
    finally:
        if paired is not None:
            paired.close()  # a CSV stream parses ahead on threads: stop them when A stops first
    return Report(
        sums,
        metrics,
        names,
        the_lens,
        family,
        stream.kind,
        stream.name,
        stream.notes + notes,
        shard[1],
        stream.label_count,
        hierarchy=tree,
        hierarchy_sums=hierarchy_sums,
        comparison=comparison,
        slices=slices,
        soft_labels=soft_labels,
    )


def _slice_values(metadata: pd.DataFrame | None, column: str) -> pd.Series:
    """The chunk's values of the ``--slice-by`` column, or a refusal naming (a few of) the columns kept aside."""
    kept = [] if metadata is None else [str(c) for c in metadata.columns]
    if column not in kept:
        shown = ", ".join(repr(c) for c in kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
        raise InputError.build(
            "a metadata column of the predictions (a text or id column, or one named with --meta-columns)",
            repr(column),
            where="--slice-by",
            fix=f"Pick one of {shown}." if kept else "Name the column with --meta-columns.",
        )
    assert metadata is not None
    return metadata[column]


def _lens(lens: object, names: tuple[str, ...]) -> tuple[Lens, list[str]]:
    if isinstance(lens, (str, os.PathLike)):
        return read_lens(lens, names)
    aligned, note = align_lens(lens if isinstance(lens, Lens) else Lens(lens), names)
    return aligned, [note] if note else []


def all_reduce(result: Report) -> Report:
    """Add every process's sums (``torch.distributed``, already initialised); every process gets the totals.

    The comparison's per-sample differences (for the bootstrap) are gathered on rank 0 only, in rank order, which is
    row order: each process reads a contiguous share, in rank order.
    """
    import torch.distributed as dist

    device = result.sums.count.device
    for tensor in [*result.sums.tensors(), *result.metrics.tensors()]:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    if result.hierarchy_sums is not None:
        totals = result.hierarchy_sums.totals.to(device)
        dist.all_reduce(totals, op=dist.ReduceOp.SUM)
        result.hierarchy_sums.totals = totals.cpu()
    if result.comparison is not None:
        result.comparison.all_reduce_(device)
    if result.slices is not None:  # per-value sums of a column whose values no process knows in advance
        shares: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(shares, result.slices)
        merged = SliceAccumulator(result.slices.column)
        for share in shares:
            merged.merge(share)
        result.slices = merged
    result.processes = dist.get_world_size()
    return result


def check_label_count(result: Report) -> None:
    """Counts known once every process's rows are added: a separate labels file's, and the compared file's rows.

    Raises:
        InputError: a labels file without exactly one label per row, or a ``--compare`` file of another length.
    """
    expected = result.label_count
    if expected is not None and expected != result.rows:
        raise InputError.build(
            f"{result.rows:,} labels (one per prediction row)",
            f"{expected:,}",
            where="the labels file",
            fix="The labels and predictions must have the same rows.",
        )
    if result.comparison is not None:
        result.comparison.check_rows(result.rows)
