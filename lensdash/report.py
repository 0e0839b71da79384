r"""The app's summary for files of any size: streamed, optionally sharded, written as CSV/JSON and HTML.

Lens convention: row ``i`` of the lens is the target distribution used when the
true label is ``i``; rows sum to 1. Per-class sums (:class:`~lensdash.analysis.ClassSums`)
are accumulated chunk by chunk and, under ``torchrun``, added across processes
with ``all_reduce``; the means are taken once, at the end.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import torch

from lensdash import figures
from lensdash.analysis import FAMILIES, ClassSums, analyze, confusion_frame, gradient_table
from lensdash.errors import InputError, LensdashError
from lensdash.io import CHUNK_ROWS, DEFAULT_MAX_CELLS, DEFAULT_MAX_CLASSES, open_stream, read_lens
from lensdash.lens import Lens, align_lens
from lensdash.report_folder import OutputFolder, check_output_folder
from lensdash.sanitize import html_text, spreadsheet_cell, spreadsheet_safe

#: Files of a report, written together or not at all.
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

__all__ = ["REPORT_FILES", "OutputFolder", "Report", "all_reduce", "check_label_count", "check_output_folder", "report"]

Progress = Callable[[int, int, int], None]  # (units done, units total, rows read)


@dataclass
class Report:
    """Sums over every sample read, and what they describe."""

    sums: ClassSums
    class_names: tuple[str, ...]
    lens: Lens
    family: str
    kind: str
    source: str
    notes: list[str] = field(default_factory=list)
    processes: int = 1
    label_count: int | None = None  # labels in a separate file, checked against the rows once all are read

    @property
    def rows(self) -> int:
        return int(self.sums.count.sum())

    def summary(self) -> dict:
        """The headline numbers (as the app's metrics) and what produced them."""
        return {
            **self.sums.summary(),
            "family": self.family,
            "kind": self.kind,
            "source": self.source,
            "class_names": list(self.class_names),
            "processes": self.processes,
            "notes": self.notes,
            "complete": True,
        }

    def write(self, out: str | os.PathLike) -> list[Path]:
        """Write :data:`REPORT_FILES` into ``out``, replacing only a previous lensdash report, crash-safely.

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
        """Write :data:`REPORT_FILES` into an existing ``folder`` (no marker, no replacement: see :meth:`write`).

        Names from the files are data: they are HTML-escaped in ``report.html`` (and in the figures' labels, which
        plotly reads as a small HTML subset) and made spreadsheet-safe in every CSV.
        """
        names = self.class_names
        grad_u, grad_l = self.sums.class_mean_gradients()
        _write_csv(self.sums.per_class_table(names), folder / "per_class.csv")
        for label, matrix in (("unlensed", grad_u), ("lensed", grad_l), ("difference", grad_l - grad_u)):
            _write_csv(gradient_table(matrix, names).reset_index(), folder / f"gradients_{label}.csv")
        _write_csv(confusion_frame(self.sums.confusion, names).reset_index(), folder / "confusion.csv")
        (folder / "lens.csv").write_bytes(_lens_csv(self.lens))
        bound = float(max(grad_u.abs().max(), grad_l.abs().max()))
        # plotly draws tick and hover labels as a subset of HTML (links, <b>, <br>) and decodes entities back.
        shown = [html_text(name) for name in names]
        figs = [
            figures.gradient_heatmap(grad_u, shown, "Class-mean gradient, unlensed", zmax=bound),
            figures.gradient_heatmap(grad_l, shown, "Class-mean gradient, lensed", zmax=bound),
            figures.gradient_heatmap(grad_l - grad_u, shown, "Lensed − unlensed"),
            figures.confusion_heatmap(self.sums.confusion, shown),
        ]
        s = self.summary()
        head = (
            f"<h1>lensdash report: {html_text(self.source)}</h1><p>{s['num_samples']:,} samples × "
            f"{s['num_classes']} classes ({html_text(self.kind)}), {html_text(self.family)}-side lens. "
            f"Unlensed loss {s['unlensed_loss']:.4f}, lensed {s['lensed_loss']:.4f}, "
            f"accuracy {s['accuracy']:.1%}, lens-aware accuracy {s['lens_aware_accuracy']:.1%}.</p>"
        )
        body = "".join(fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figs))
        (folder / "report.html").write_text(
            "<!doctype html><html><head><meta charset='utf-8'><title>lensdash report</title></head>"
            f"<body>{head}{body}</body></html>",
            encoding="utf-8",
        )
        (folder / "summary.json").write_text(json.dumps(s, indent=1), encoding="utf-8")


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
    max_cells: int | None = DEFAULT_MAX_CELLS,
    max_classes: int | None = DEFAULT_MAX_CLASSES,
    meta_columns: Sequence[str | int] | None = None,
    class_names: Sequence[str] | str | os.PathLike | None = None,
) -> Report:
    r"""Stream a predictions file and sum, per true class, what :func:`~lensdash.analysis.analyze` computes.

    Memory is bounded by one chunk, not by the file. With ``shard=(rank, world)``
    only this process's share is read; combine shares with :func:`all_reduce`.

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
        max_cells, max_classes: as for :func:`~lensdash.io.open_stream` (CLI: ``--max-cells``, ``--max-classes``).
        meta_columns: columns kept aside as metadata, as for :func:`~lensdash.io.open_stream` (``--meta-columns``).
        class_names: names of ``.npy`` / ``.npz`` columns, a list or a file of one name a line (``--class-names``).

    Returns:
        A :class:`Report`.

    Raises:
        InputError: bad files, with the row, and how many rows were read before it.
        LensError: a lens that is not valid for these classes.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "p.csv"
        >>> _ = path.write_text("a,b,label\n0.9,0.1,a\n0.2,0.8,b\n")
        >>> r = report(path, torch.eye(2))
        >>> round(r.summary()["unlensed_loss"], 4), r.rows
        (0.1643, 2)
    """
    if family not in FAMILIES:
        raise InputError.build(
            f"a lens family in {sorted(FAMILIES)}",
            repr(family),
            fix="'target' is the seed's loss, 'prediction' the forward correction.",
        )
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError.build("a CUDA device", "none available", fix="Use --device cpu.")
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
    sums = ClassSums.zeros(len(names), device)
    rows = 0
    try:
        for chunk in stream.chunks:
            analysis = analyze(
                chunk.logits.to(device), chunk.labels.to(device), matrix, family=family, class_names_=names
            )
            sums.add_(ClassSums.of(analysis))
            rows += len(chunk.labels)
            if progress is not None:
                progress(chunk.done, stream.total, rows)
    except LensdashError as exc:
        raise type(exc)(f"{exc} (stopped after reading {rows:,} rows; no report was written)") from None
    return Report(
        sums, names, the_lens, family, stream.kind, stream.name, stream.notes + notes, shard[1], stream.label_count
    )


def _lens(lens: object, names: tuple[str, ...]) -> tuple[Lens, list[str]]:
    if isinstance(lens, (str, os.PathLike)):
        return read_lens(lens, names)
    aligned, note = align_lens(lens if isinstance(lens, Lens) else Lens(lens), names)
    return aligned, [note] if note else []


def all_reduce(result: Report) -> Report:
    """Add every process's sums (``torch.distributed``, already initialised); every process gets the total."""
    import torch.distributed as dist

    for tensor in result.sums.tensors():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    result.processes = dist.get_world_size()
    return result


def check_label_count(result: Report) -> None:
    """A separate labels file must have exactly one label per row read (all processes' rows, once added)."""
    expected = result.label_count
    if expected is not None and expected != result.rows:
        raise InputError.build(
            f"{result.rows:,} labels (one per prediction row)",
            f"{expected:,}",
            where="the labels file",
            fix="The labels and predictions must have the same rows.",
        )
