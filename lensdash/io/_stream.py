r"""Predictions too large to hold: read chunk by chunk, each process of a sharded run its own range.

:func:`open_stream` reads CSV, Parquet or ``.npy`` files (paths) with the same
rules and the same :class:`~lensdash.InputError` messages as
:func:`~lensdash.read_predictions`, but yields :class:`Chunk`\ s whose size is
bounded by ``chunk_rows`` (or one CSV part of ``_csv_parse.PART_BYTES``), so memory does not grow with the file.
With ``shard=(rank, world_size)`` a process reads only its share: a byte range
cut at line ends (CSV), a range of row groups (Parquet) or of rows (``.npy``).
Parquet is read a row group at a time, so its memory is bounded by the writer's row-group size.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import Tensor

from lensdash.errors import InputError
from lensdash.io import _csv_parse
from lensdash.io._binary import _check_meta_bytes, _npy_header, _npz, _parquet_columns, _parquet_file
from lensdash.io._csv_layout import _csv_layout, _CsvLayout, _head, _line_end
from lensdash.io._csv_parse import (
    _ARROW_ERRORS,
    _check_filled,
    _csv_parts,
    _diagnose_csv,
    _empty_cell,
    _parse_values,
    _row_major,
)
from lensdash.io._kinds import _to_logits
from lensdash.io._labels import ClassNames, _given_names, _label_values, _labels_file, _SoftLabels, _unique_names
from lensdash.io._predictions import _frame
from lensdash.io._source import (
    DEFAULT_MAX_CELLS,
    DEFAULT_MAX_CLASSES,
    KINDS,
    Limits,
    _decoding,
    _Input,
    _limits,
    _meta_note,
    _open,
    file_format,
)

#: Rows per chunk for Parquet and ``.npy`` (CSV chunks are parts of about ``PART_BYTES``).
CHUNK_ROWS = 100_000


@dataclass
class Chunk:
    """Consecutive samples: ``row`` is the 0-based index of the first among all samples of the file."""

    row: int
    logits: Tensor
    labels: Tensor
    done: int  # progress units (bytes or rows of this shard) read so far
    #: the chunk's rows of the columns kept aside (text, ids, ``meta_columns=``), or None
    metadata: pd.DataFrame | None = None


@dataclass
class Stream:
    """A file opened for streaming: what is known before reading it, and its chunks (an iterator)."""

    name: str
    class_names: tuple[str, ...]
    kind: str
    total: int  # progress units in this shard: bytes of a CSV, rows of Parquet and .npy
    chunks: Iterator[Chunk]
    notes: list[str] = field(default_factory=list)
    label_count: int | None = None  # labels in a separate file, to compare with the rows read


def open_stream(
    path: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    *,
    kind: str = "auto",
    label_column: str | int | None = None,
    shard: tuple[int, int] = (0, 1),
    chunk_rows: int = CHUNK_ROWS,
    max_cells: int | None = DEFAULT_MAX_CELLS,
    max_classes: int | None = DEFAULT_MAX_CLASSES,
    meta_columns: Sequence[str | int] | None = None,
    class_names: ClassNames | None = None,
) -> Stream:
    """Open predictions for chunked reading; see the module docstring.

    ``kind="auto"`` is decided on the file's first rows (the same rule as
    :func:`~lensdash.read_predictions`) and then enforced on every chunk, so a
    file whose later rows are not probabilities stops with the row that is not.
    Labels come from a label column, or a separate ``labels`` file that is read
    whole (N integers) and sliced. ``max_cells`` and ``max_classes`` bound the
    file's rows × classes and classes as for :func:`~lensdash.read_predictions`
    (checked before reading, from the header, footer or first line, and again as rows are read).
    Metadata columns (``meta_columns=``, text, common id names) are kept aside as for
    :func:`~lensdash.read_predictions`, each chunk's rows in :attr:`Chunk.metadata`. ``class_names``
    (a list, or a file with one name per line) names the columns of files without names (``.npy``).
    An ``.npz`` archive is decompressed whole and handed out in chunks, so it stays bounded by ``max_cells``, or by
    :data:`DEFAULT_MAX_CELLS` when ``max_cells`` is ``None`` (other formats are then read without a bound on their
    rows: a stream holds one chunk at a time).

    Raises:
        InputError: unreadable files; in the chunks, bad rows with their row and column.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "p.csv"
        >>> _ = path.write_text("a,b,label\\n0.9,0.1,a\\n0.2,0.8,b\\n")
        >>> s = open_stream(path)
        >>> s.kind, [c.labels.tolist() for c in s.chunks]
        ('probs', [[0, 1]])
    """
    if kind not in KINDS:
        raise InputError.build(
            f"kind in {KINDS}", repr(kind), fix="'auto' detects probabilities, log-probabilities and logits."
        )
    rank, world = shard
    if not 0 <= rank < world:
        raise InputError.build(
            "a shard (rank, world size) with 0 <= rank < world size",
            str(shard),
            fix="Run under torchrun, or leave shard alone.",
        )
    if chunk_rows < 1:
        raise InputError.build("chunk_rows >= 1", str(chunk_rows), fix="Give a positive number of rows per chunk.")
    limits = _limits(max_cells, max_classes)
    inp = _open(path, "predictions", None)
    with _decoding(lambda: inp.name, "predictions"):
        stream = _open_stream(
            inp, path, labels, kind, label_column, rank, world, chunk_rows, limits, meta_columns, class_names
        )
    stream.chunks = _guarded(stream.name, stream.chunks)
    return stream


def _guarded(name: str, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    with _decoding(lambda: name, "predictions"):
        yield from chunks


def _open_stream(
    inp, path, labels, kind, label_column, rank, world, chunk_rows, limits: Limits, meta_columns=None, class_names=None
) -> Stream:
    fmt = file_format(inp.data)
    if fmt == "parquet":
        inp.close()
        return _parquet_stream(
            path, labels, kind, label_column, rank, world, chunk_rows, limits, meta_columns, class_names
        )
    if fmt == "npy":
        inp.close()
        return _npy_stream(path, labels, kind, rank, world, chunk_rows, limits, class_names)
    if fmt == "zip":
        try:
            whole = limits if limits.max_cells is not None else Limits(DEFAULT_MAX_CELLS, limits.max_classes)
            return _npz_stream(inp, labels, kind, rank, world, chunk_rows, whole, class_names)
        finally:
            inp.close()
    return _csv_stream(inp, labels, kind, label_column, rank, world, limits, meta_columns, class_names)


# ------------------------------------------------------------------ shared


class _Labels:
    """Labels of a separate file, read whole and handed out by row range."""

    def __init__(
        self, path: str | os.PathLike, names: list[str] | None, k: int, notes: list[str], limits: Limits
    ) -> None:
        name, column, first_row, col = _labels_file(path, None, limits)
        if isinstance(column, _SoftLabels):
            raise InputError.build(
                "one label per row for streaming",
                "soft labels (one column per class)",
                where=name,
                fix="Read the file with read_predictions (in memory), or pass the majority labels.",
            )
        self.values = _known_labels(name, column, names, k, first_row, col, notes)
        self.name = name

    def rows(self, start: int, stop: int) -> Tensor:
        if stop > len(self.values):
            raise InputError.build(
                "one label per prediction row",
                f"{len(self.values)} labels but at least {stop} rows",
                where=self.name,
                fix="The labels and predictions must have the same rows.",
            )
        return torch.from_numpy(self.values[start:stop])


def _count(separate: _Labels | None) -> int | None:
    return None if separate is None else len(separate.values)


def _known_labels(
    name: str, column: object, names: list[str] | None, k: int, first_row: int, col: int | None, notes: list[str]
) -> np.ndarray:
    """Labels as 0..K-1 (see ``_labels._label_values``), refusing class names that no header defines."""
    values, mapped = _label_values(name, column, names, k, first_row, col, notes)
    if mapped is not None:
        raise InputError.build(
            "integer labels, or class names that the prediction file's header lists",
            "class names with no header to match them",
            where=name,
            fix="Streaming cannot see every label first: add a header with the class names, or write labels as 0..K-1.",
        )
    return values


class _Checker:
    """Turns chunk values into logits under one kind, decided on the first rows."""

    def __init__(self, name: str, kind: str, first: np.ndarray, locate, notes: list[str]) -> None:
        self.name = name
        _, self.kind = _to_logits(name, first.astype(np.float32, copy=True), kind, notes, locate)

    def __call__(self, values: np.ndarray, locate) -> Tensor:
        logits, _ = _to_logits(self.name, values.astype(np.float32, copy=False), self.kind, [], locate)
        return logits


def _shard_range(total: int, rank: int, world: int) -> tuple[int, int]:
    return total * rank // world, total * (rank + 1) // world


# --------------------------------------------------------------------- CSV


def _csv_stream(
    inp: _Input,
    labels_path,
    kind: str,
    label_column,
    rank: int,
    world: int,
    limits: Limits,
    meta_columns=None,
    class_names=None,
) -> Stream:
    name, data = inp.name, inp.data
    layout = _csv_layout(name, data, label_column, limits, meta_columns)
    notes = list(layout.notes)
    k = len(layout.float_cols)
    names = _given_names(class_names, layout.class_names, k, name, limits)
    size = len(data)
    lo, hi = (_line_end(data, b) if b else 0 for b in _shard_range(size, rank, world))
    separate = _Labels(labels_path, names, k, notes, limits) if labels_path is not None else None
    if separate is None and layout.label_idx is None:
        raise InputError.build(
            "a label column or a labels file", "neither", where=name, fix="Add a 'label' column, or pass --labels FILE."
        )
    # The kind is decided on the first rows of the file, the same for every shard.
    head = _head(data, lines=3, min_bytes=1 << 14)
    skip = layout.header is not None
    try:
        first_part = _parse_values(head, layout, skip)
        first, null = first_part.values, first_part.null
    except _ARROW_ERRORS as exc:
        raise _diagnose_csv(name, head, layout.delim, skip, layout.width, layout.float_cols, str(exc)) from None
    if null is not None:
        raise _empty_cell(name, layout.first_row + null[0], layout.float_cols[null[1]] + 1)
    checker = _Checker(name, kind, first, layout.locate, notes)
    class_names = _unique_names(name, names if names is not None else [str(i) for i in range(k)])

    def chunks() -> Iterator[Chunk]:
        try:
            # Closing the parts stops their threads before the file closes, when the caller stops early.
            with contextlib.closing(
                _csv_parts(inp, layout, (lo, hi), _rows_before(data, lo, layout), _csv_parse.PART_BYTES)
            ) as parts:
                for row, stop, part in parts:
                    chunk = _csv_chunk(name, layout, names, row, part.values, part.labels, separate, checker, stop - lo)
                    chunk.metadata = _frame(part.meta)
                    yield chunk
        finally:
            inp.close()

    return Stream(name, class_names, checker.kind, hi - lo, chunks(), notes, _count(separate))


def _rows_before(data: memoryview, offset: int, layout: _CsvLayout) -> int:
    """Data rows before a byte offset at a line start (a later shard's first row number)."""
    if offset == 0:
        return 0
    step = _csv_parse.PART_BYTES
    lines = sum(bytes(data[s : min(offset, s + step)]).count(b"\n") for s in range(0, offset, step))
    return lines - (1 if layout.header is not None else 0)


def _csv_chunk(
    name: str,
    layout: _CsvLayout,
    names: list[str] | None,
    row: int,
    values: np.ndarray,
    label_part: pa.ChunkedArray | None,
    separate: _Labels | None,
    checker: _Checker,
    done: int,
) -> Chunk:
    def locate(r: int, c: int) -> str:
        return layout.locate(r + row, c)

    logits = checker(values, locate)
    if separate is not None:
        labels = separate.rows(row, row + len(logits))
    else:
        labels = torch.from_numpy(
            _known_labels(
                name,
                label_part,
                names,
                len(layout.float_cols),
                layout.first_row + row,
                layout.label_idx,
                [],
            )
        )
    return Chunk(row, logits, labels, done)


# ----------------------------------------------------------------- Parquet


def _parquet_stream(
    path,
    labels_path,
    kind: str,
    label_column,
    rank: int,
    world: int,
    chunk_rows: int,
    limits: Limits,
    meta_columns=None,
    class_names=None,
) -> Stream:
    name = os.path.basename(os.fspath(path))
    handle = _parquet_file(name, os.fspath(path))
    limits.check_classes(name, len(handle.schema_arrow), "columns", slack=2)
    float_cols, label_idx, header, meta_cols = _parquet_columns(name, handle.schema_arrow, label_column, meta_columns)
    names = _given_names(class_names, [header[i] for i in float_cols], len(float_cols), name, limits) or []
    k, notes = len(float_cols), [_meta_note([header[i] for i in meta_cols])] if meta_cols else []
    limits.check_cells(name, handle.metadata.num_rows, k)
    _check_meta_bytes(name, handle, meta_cols, limits)
    separate = _Labels(labels_path, names, k, notes, limits) if labels_path is not None else None
    if separate is None and label_idx is None:
        raise InputError.build(
            "a label column or a labels file", "neither", where=name, fix="Add a 'label' column, or pass --labels FILE."
        )
    meta = handle.metadata
    groups = range(*_shard_range(meta.num_row_groups, rank, world))
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    columns = [header[i] for i in float_cols] + (
        [header[label_idx]] if label_idx is not None and separate is None else []
    )
    first_meta = len(columns)
    columns += [header[i] for i in meta_cols]

    def locate(r: int, c: int) -> str:
        return f"{name}, row {r + 1}, column {float_cols[c] + 1}"

    first = next(handle.iter_batches(batch_size=min(chunk_rows, 10_000), columns=columns[:k]), None)
    checker = _Checker(
        name,
        kind,
        _row_major(pa.Table.from_batches([first]), list(range(k))) if first is not None else np.zeros((0, k)),
        locate,
        notes,
    )

    def chunks() -> Iterator[Chunk]:
        row, done = sum(sizes[: groups.start]), 0
        for batch in handle.iter_batches(batch_size=chunk_rows, row_groups=list(groups), columns=columns):
            table = pa.Table.from_batches([batch])
            _check_filled(name, table, range(k), row + 1, float_cols)
            logits = checker(_row_major(table, list(range(k))), lambda r, c, row=row: locate(r + row, c))
            if separate is not None:
                labels = separate.rows(row, row + len(logits))
            else:
                labels = torch.from_numpy(_known_labels(name, table.column(k), names, k, row + 1, label_idx, []))
            done += len(logits)
            meta = _frame(table.select(list(range(first_meta, table.num_columns)))) if meta_cols else None
            yield Chunk(row, logits, labels, done, meta)
            row += len(logits)

    total = sum(sizes[g] for g in groups)
    return Stream(name, _unique_names(name, names), checker.kind, total, chunks(), notes, _count(separate))


# -------------------------------------------------------------------- .npy


def _npy_stream(
    path, labels_path, kind: str, rank: int, world: int, chunk_rows: int, limits: Limits, class_names=None
) -> Stream:
    name = os.path.basename(os.fspath(path))
    handle = open(path, "rb")  # noqa: SIM115  (closed when the chunks are done)
    try:
        shape, fortran, dtype = _npy_header(name, handle)
    except InputError:
        handle.close()
        raise
    if len(shape) != 2 or dtype.kind not in "fiu" or shape[1] < 2:
        handle.close()
        raise InputError.build(
            "an N×K numeric array with K >= 2",
            f"shape {shape}, dtype {dtype}",
            where=name,
            fix="One row per sample, one column per class.",
        )
    if labels_path is None:
        handle.close()
        raise InputError.build(
            "a labels file with --labels",
            "none",
            where=name,
            fix="A .npy holds numbers only; save the labels separately.",
        )
    n, k = shape
    try:
        limits.check_cells(name, n, k)
    except InputError:
        handle.close()
        raise
    offset = handle.tell()
    notes: list[str] = []
    try:
        names = _given_names(class_names, None, k, name, limits)
        separate = _Labels(labels_path, names, k, notes, limits)
    except InputError:
        handle.close()
        raise
    if len(separate.values) != n:
        handle.close()
        raise InputError.build(
            f"{n} labels (one per prediction row)",
            f"{len(separate.values)}",
            where=separate.name,
            fix="The labels and predictions must have the same rows.",
        )
    lo, hi = _shard_range(n, rank, world)

    def read(start: int, count: int) -> np.ndarray:
        if not fortran:
            return _read_exactly(handle, offset + start * k * dtype.itemsize, dtype, count * k, name).reshape(count, k)
        # Column-major (e.g. numpy.save of DataFrame.to_numpy()): one read per column.
        out = np.empty((count, k), dtype=dtype)
        for j in range(k):
            out[:, j] = _read_exactly(handle, offset + (j * n + start) * dtype.itemsize, dtype, count, name)
        return out

    def locate(r: int, c: int) -> str:
        return f"{name}, row {r + 1}, column {c + 1}"

    checker = _Checker(name, kind, read(0, min(n, 10_000)), locate, notes)

    def chunks() -> Iterator[Chunk]:
        try:
            for start in range(lo, hi, chunk_rows):
                count = min(chunk_rows, hi - start)
                logits = checker(read(start, count), lambda r, c, start=start: locate(r + start, c))
                yield Chunk(start, logits, separate.rows(start, start + count), start + count - lo)
        finally:
            handle.close()

    final_names = _unique_names(name, names if names is not None else [str(i) for i in range(k)])
    return Stream(name, final_names, checker.kind, hi - lo, chunks(), notes, n)


# -------------------------------------------------------------------- .npz


def _npz_stream(
    inp: _Input, labels_path, kind: str, rank: int, world: int, chunk_rows: int, limits: Limits, class_names=None
) -> Stream:
    """An archive's members are compressed whole: decompressed at once (bounded by ``limits``), then chunked."""
    name = inp.name
    values, npz_labels, file_names, npz_kind = _npz(name, inp.data, limits)
    kind = npz_kind if kind == "auto" and npz_kind is not None else kind
    if values.ndim != 2 or values.dtype.kind not in "fiu" or values.shape[1] < 2:
        raise InputError.build(
            "an N×K numeric array with K >= 2",
            f"shape {values.shape}, dtype {values.dtype}",
            where=name,
            fix="One row per sample, one column per class.",
        )
    n, k = values.shape
    notes: list[str] = []
    names = _given_names(class_names, file_names, k, name, limits)
    separate = _Labels(labels_path, names, k, notes, limits) if labels_path is not None else None
    if separate is None:
        if npz_labels is None:
            raise InputError.build(
                "labels: an array named 'labels' in the archive, or --labels FILE",
                "neither",
                where=name,
                fix="Save with numpy.savez(path, logits=..., labels=...).",
            )
        known = _known_labels(name, npz_labels, names, k, 1, None, notes)
    else:
        known = separate.values
    if len(known) != n:
        raise InputError.build(
            f"{n} labels (one per prediction row)",
            f"{len(known)}",
            where=separate.name if separate is not None else name,
            fix="The labels and predictions must have the same rows.",
        )
    lo, hi = _shard_range(n, rank, world)

    def locate(r: int, c: int) -> str:
        return f"{name}, row {r + 1}, column {c + 1}"

    checker = _Checker(name, kind, values[: min(n, 10_000)], locate, notes)

    def chunks() -> Iterator[Chunk]:
        for start in range(lo, hi, chunk_rows):
            stop = min(hi, start + chunk_rows)
            logits = checker(values[start:stop], lambda r, c, start=start: locate(r + start, c))
            yield Chunk(start, logits, torch.from_numpy(known[start:stop]), stop - lo)

    final_names = _unique_names(name, names if names is not None else [str(i) for i in range(k)])
    return Stream(name, final_names, checker.kind, hi - lo, chunks(), notes, _count(separate))


def _read_exactly(handle, position: int, dtype: np.dtype, count: int, name: str) -> np.ndarray:
    handle.seek(position)
    values = np.fromfile(handle, dtype=dtype, count=count)
    if len(values) != count:
        raise InputError.build(
            f"{count} more values",
            f"a file that ends after {len(values)}",
            where=name,
            fix="The file is truncated; save it again.",
        )
    return values
