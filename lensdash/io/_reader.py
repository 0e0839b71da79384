"""The one reader: a file's layout from its format, then its rows part by part.

:func:`_layout` is the one dispatcher over the formats (the magic bytes are read by
:func:`~lensdash.io._source.file_format`). It checks what a header, footer or first lines say against the
limits, before anything that size is decoded, and returns a :class:`_Layout`: what the file is (its classes,
labels, rows) and a way to read its rows as :class:`_Rows`, consecutive parts in file order with their raw
labels and metadata. Both public readers consume it: :func:`~lensdash.io.open_stream` turns each part into a
:class:`~lensdash.io.Chunk`, :func:`~lensdash.io.read_predictions` gathers the parts into one float32 array.
So every format, limit and refusal is written once, here and in the modules it calls.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd
import pyarrow as pa

from lensdash.errors import InputError
from lensdash.io._binary import (
    _check_array_shape,
    _check_meta_bytes,
    _npy_header,
    _npz,
    _parquet_columns,
    _parquet_file,
)
from lensdash.io._csv_layout import _csv_layout, _CsvLayout, _head, _line_end
from lensdash.io._csv_parse import (
    _ARROW_ERRORS,
    _concat_labels,
    _csv_parts,
    _diagnose_csv,
    _empty_cell,
    _float_matrix,
    _parse_values,
)
from lensdash.io._csv_polars import _read_whole
from lensdash.io._labels import ClassNames, _given_names, _LabelColumn, _labels_file
from lensdash.io._source import LABEL_NAMES, Limits, Locate, Source, _Input, _meta_note, file_format

#: Rows of a kind-deciding head (Parquet, ``.npy``, ``.npz``): the first rows decide a stream's kind.
_HEAD_ROWS = 10_000


#: Cells per part when the reader chooses (Parquet batches, ``.npy`` reads): 16 MB of float32.
_PART_CELLS = 1 << 22


@dataclass(frozen=True)
class _Rows:
    """One part of a file as read, before its labels and kind are settled."""

    #: 0-based index of the part's first row among the file's samples
    row: int
    #: (n, K) numbers, row-major: the prediction columns, in the file's type or float32/float64
    values: np.ndarray
    #: the part's raw label column (arrow or numpy), or None when the file has none or it is not wanted
    labels: object | None
    #: the part's metadata columns, or None
    meta: pa.Table | None
    #: progress units (bytes of a CSV, rows otherwise) of this shard read so far
    done: int


@dataclass
class _Layout:
    """What a predictions file is, from its header, footer or first lines, and a reader of its rows."""

    name: str
    #: prediction columns (classes)
    k: int
    #: the class names, given or the file's own (``None``: the file has none)
    names: list[str] | None
    notes: list[str]
    #: the kind asked for, or the one an ``.npz`` array's name says under ``'auto'``
    kind: str
    #: the file holds a label column (or an ``.npz`` array of labels)
    has_labels: bool
    #: 1-based file row of the first data row, and the 0-based file column of the labels (None: no column)
    first_row: int
    label_col: int | None
    #: rows in the file, when its header or footer says (None for CSV: counted as they are read)
    rows: int | None
    #: an upper bound of the rows of this shard, for one allocation
    max_rows: int
    #: progress units in this shard (bytes of a CSV, rows otherwise)
    total: int
    #: where a cell is, from its 0-based row among the file's samples and its 0-based prediction column
    locate: Locate
    #: the first rows' values, which decide a stream's kind
    head: Callable[[], np.ndarray]
    #: the shard's rows, part by part in file order (labels included when ``file_labels``)
    parts: Callable[[], Iterator[_Rows]]
    #: the whole shard as one part by a faster reader (polars, for CSV), or None where it declines; None: no such
    #: reader. :func:`~lensdash.io.read_predictions` tries it first; streams read parts.
    whole: Callable[[], _Rows | None] | None = None
    #: how to fix a file without labels, in its format
    no_labels_fix: str = (
        "Add a 'label' column, pass label_column=, or pass the labels as a separate file (--labels FILE)."
    )

    def refuse_no_labels(self) -> InputError:
        return InputError.build(
            f"labels: a column named one of {list(LABEL_NAMES[:6])} or a labels file",
            "neither",
            where=self.name,
            fix=self.no_labels_fix,
        )


@dataclass(frozen=True)
class _Request:
    """What the caller asks of the reader: the options of :func:`~lensdash.io.read_predictions` / ``open_stream``."""

    kind: str
    label_column: str | int | None
    limits: Limits
    meta_columns: Sequence[str | int] | None
    class_names: ClassNames | None
    #: whether a separate labels file replaces the file's label column (which is then not read)
    file_labels: bool = True
    #: (rank, world size) of a sharded read
    shard: tuple[int, int] = (0, 1)
    #: rows per part (Parquet, ``.npy``, ``.npz``); None: the reader's choice
    chunk_rows: int | None = None
    #: bytes per CSV part; None: the reader's choice (smaller parts for smaller files, every thread busy)
    part_bytes: int | None = None
    #: limits for formats decompressed whole (``.npz``); None: ``limits``
    whole_limits: Limits | None = None


def _shard_range(total: int, rank: int, world: int) -> tuple[int, int]:
    return total * rank // world, total * (rank + 1) // world


def _frame(table: pa.Table | None) -> pd.DataFrame | None:
    """Metadata as pandas: text as pandas' string dtype, numbers as read."""
    if table is None:
        return None
    frame = table.to_pandas(types_mapper={pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}.get)
    frame.columns = list(table.column_names)
    return frame


def _check_matrix(name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse anything but an N×K numeric array with K >= 2."""
    if len(shape) != 2 or dtype.kind not in "fiu":
        raise InputError.build(
            "an N×K numeric array",
            f"shape {shape}, dtype {dtype}",
            where=name,
            fix="One row per sample, one column per class.",
        )
    _check_classes(name, shape[1])


def _check_classes(name: str, k: int) -> None:
    if k < 2:
        raise InputError.build(
            "at least 2 class columns", f"{k}", where=name, fix="Give one column per class (and a label column)."
        )


def _layout(inp: _Input, request: _Request) -> _Layout:
    """The file's layout by its format: the one dispatcher."""
    fmt = file_format(inp.data)
    if fmt == "parquet":
        layout = _parquet_layout(inp, request)
    elif fmt == "npy":
        layout = _npy_layout(inp, request)
    elif fmt == "zip":
        layout = _npz_layout(inp, request)
    else:
        layout = _csv_file_layout(inp, request)
    layout.names = _given_names(request.class_names, layout.names, layout.k, inp.name, request.limits)
    return layout


def _cell_locator(name: str, first_row: int, columns: Sequence[int] | None = None) -> Locate:
    def locate(r: int, c: int) -> str:
        return f"{name}, row {r + first_row}, column {(columns[c] if columns is not None else c) + 1}"

    return locate


# --------------------------------------------------------------------- CSV


def _csv_file_layout(inp: _Input, request: _Request) -> _Layout:
    name, data = inp.name, inp.data
    csv = _csv_layout(name, data, request.label_column, request.limits, request.meta_columns)
    k = len(csv.float_cols)
    _check_classes(name, k)
    lo, hi = (_line_end(data, b) if b else 0 for b in _shard_range(len(data), *request.shard))
    # Every row holds at least ``width`` bytes (its delimiters and line end), and the parts stop at max_cells.
    max_rows = (hi - lo) // csv.width + 1
    if request.limits.max_cells is not None:
        max_rows = min(max_rows, request.limits.max_cells // k + 1)

    def head() -> np.ndarray:
        # The kind is decided on the first rows of the file, the same for every shard.
        first = _head(data, lines=3, min_bytes=1 << 14)
        skip = csv.header is not None
        try:
            part = _parse_values(first, csv, skip)
        except _ARROW_ERRORS as exc:
            raise _diagnose_csv(name, first, csv.delim, skip, csv.width, csv.float_cols, str(exc)) from None
        if part.null is not None:
            raise _empty_cell(name, csv.first_row + part.null[0], csv.float_cols[part.null[1]] + 1)
        return part.values

    def parts() -> Iterator[_Rows]:
        # Closing the parts stops their threads before the file closes, when the caller stops early.
        first = _rows_before(data, lo, csv)
        with contextlib.closing(_csv_parts(inp, csv, (lo, hi), first, request.part_bytes)) as parsed:
            for row, stop, part in parsed:
                labels = part.labels if request.file_labels else None
                yield _Rows(row, part.values, labels, part.meta, stop - lo)

    def whole() -> _Rows | None:
        read = _read_whole(inp, csv)
        if read is None:
            return None
        return _Rows(0, read.values, read.labels if request.file_labels else None, read.meta, hi - lo)

    return _Layout(
        name=name,
        k=k,
        names=csv.class_names,
        notes=list(csv.notes),
        kind=request.kind,
        has_labels=csv.label_idx is not None,
        first_row=csv.first_row,
        label_col=csv.label_idx,
        rows=None,
        max_rows=max_rows,
        total=hi - lo,
        locate=csv.locate,
        head=head,
        parts=parts,
        whole=whole if request.shard == (0, 1) else None,
    )


def _rows_before(data: memoryview, offset: int, layout: _CsvLayout) -> int:
    """Data rows before a byte offset at a line start (a later shard's first row number)."""
    if offset == 0:
        return 0
    step = 24 << 20
    lines = sum(bytes(data[s : min(offset, s + step)]).count(b"\n") for s in range(0, offset, step))
    return lines - (1 if layout.header is not None else 0)


# ----------------------------------------------------------------- Parquet


def _parquet_layout(inp: _Input, request: _Request) -> _Layout:
    name, limits = inp.name, request.limits
    # A path is read through its file (a stream's memory stays one row group); bytes through their buffer.
    handle = _parquet_file(name, inp.path if inp.path is not None else pa.BufferReader(pa.py_buffer(inp.data)))
    limits.check_classes(name, len(handle.schema_arrow), "columns", slack=2)
    cols = _parquet_columns(name, handle.schema_arrow, request.label_column, request.meta_columns)
    header, k = cols.header, len(cols.float_cols)
    _check_classes(name, k)
    meta = handle.metadata
    limits.check_cells(name, meta.num_rows, k)
    _check_meta_bytes(name, handle, cols.meta_cols, limits)
    groups = range(*_shard_range(meta.num_row_groups, *request.shard))
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    label_name = [header[cols.label_idx]] if cols.label_idx is not None and request.file_labels else []
    read_labels = bool(label_name)
    columns = [header[i] for i in cols.float_cols] + label_name
    first_meta = len(columns)
    columns += [header[i] for i in cols.meta_cols]
    batch_rows = request.chunk_rows or max(1, _PART_CELLS // k)

    def matrix(table: pa.Table, row: int) -> np.ndarray:
        return _float_matrix(name, table, range(k), row + 1, shown=cols.float_cols)

    def head() -> np.ndarray:
        first = next(handle.iter_batches(batch_size=min(batch_rows, _HEAD_ROWS), columns=columns[:k]), None)
        return matrix(pa.Table.from_batches([first]), 0) if first is not None else np.zeros((0, k), np.float32)

    def parts() -> Iterator[_Rows]:
        row, done = sum(sizes[: groups.start]), 0
        for batch in handle.iter_batches(batch_size=batch_rows, row_groups=list(groups), columns=columns):
            table = pa.Table.from_batches([batch])
            done += table.num_rows
            labels = table.column(k) if read_labels else None
            metadata = table.select(list(range(first_meta, table.num_columns))) if cols.meta_cols else None
            yield _Rows(row, matrix(table, row), labels, metadata, done)
            row += table.num_rows

    total = sum(sizes[g] for g in groups)
    return _Layout(
        name=name,
        k=k,
        names=[header[i] for i in cols.float_cols],
        notes=[_meta_note([header[i] for i in cols.meta_cols])] if cols.meta_cols else [],
        kind=request.kind,
        has_labels=cols.label_idx is not None,
        first_row=1,
        label_col=cols.label_idx,
        rows=meta.num_rows,
        max_rows=total,
        total=total,
        locate=_cell_locator(name, 1, cols.float_cols),
        head=head,
        parts=parts,
    )


# -------------------------------------------------------------------- .npy


def _npy_layout(inp: _Input, request: _Request) -> _Layout:
    """Rows read from the file's bytes a range at a time (column by column when it is column-major)."""
    name, data = inp.name, inp.data
    header = io.BytesIO(data[: 1 << 20])  # numpy refuses headers over 10 KB anyway
    npy = _npy_header(name, header)
    shape, fortran, dtype = npy.shape, npy.fortran, npy.dtype
    _check_array_shape(name, shape, dtype, request.limits, 2)
    _check_matrix(name, shape, dtype)
    n, k = shape
    offset, size = header.tell(), n * k * dtype.itemsize
    if len(data) - offset < size:
        raise InputError.build(
            f"{size:,} bytes of data for shape {shape}",
            f"{len(data) - offset:,}",
            where=name,
            fix="The file is truncated; save it again.",
        )
    lo, hi = _shard_range(n, *request.shard)
    step = request.chunk_rows or max(1, _PART_CELLS // k)

    def read(start: int, count: int) -> np.ndarray:
        """Rows ``start`` .. ``start + count`` as a copy; their pages are then dropped from memory."""
        if not fortran:
            first = offset + start * k * dtype.itemsize
            out = np.frombuffer(data, dtype=dtype, count=count * k, offset=first).reshape(count, k).copy()
            inp.release(first, first + count * k * dtype.itemsize)
            return out
        # Column-major (e.g. numpy.save of DataFrame.to_numpy()): one range per column.
        out = np.empty((count, k), dtype=dtype)
        for j in range(k):
            first = offset + (j * n + start) * dtype.itemsize
            out[:, j] = np.frombuffer(data, dtype=dtype, count=count, offset=first)
            inp.release(first, first + count * dtype.itemsize)
        return out

    def parts() -> Iterator[_Rows]:
        for start in range(lo, hi, step):
            count = min(step, hi - start)
            yield _Rows(start, read(start, count), None, None, start + count - lo)

    return _Layout(
        name=name,
        k=k,
        names=None,
        notes=[],
        kind=request.kind,
        has_labels=False,
        first_row=1,
        label_col=None,
        rows=n,
        max_rows=hi - lo,
        total=hi - lo,
        locate=_cell_locator(name, 1),
        head=lambda: read(0, min(n, _HEAD_ROWS)),
        parts=parts,
        no_labels_fix="A .npy holds numbers only: pass a labels file with --labels FILE (labels=).",
    )


# -------------------------------------------------------------------- .npz


def _npz_layout(inp: _Input, request: _Request) -> _Layout:
    """An archive's members are compressed whole: decompressed at once (bounded by the limits), then parted."""
    name = inp.name
    arrays = _npz(name, inp.data, request.whole_limits or request.limits)
    values, labels = arrays.values, arrays.labels
    _check_matrix(name, values.shape, values.dtype)
    n, k = values.shape
    kind = arrays.kind if request.kind == "auto" and arrays.kind is not None else request.kind
    lo, hi = _shard_range(n, *request.shard)
    step = request.chunk_rows or n or 1
    wanted = labels if request.file_labels else None

    def parts() -> Iterator[_Rows]:
        for start in range(lo, hi, step):
            stop = min(hi, start + step)
            yield _Rows(start, values[start:stop], wanted[start:stop] if wanted is not None else None, None, stop - lo)

    return _Layout(
        name=name,
        k=k,
        names=arrays.names,
        notes=[],
        kind=kind,
        has_labels=labels is not None,
        first_row=1,
        label_col=None,
        rows=n,
        max_rows=hi - lo,
        total=hi - lo,
        locate=_cell_locator(name, 1),
        head=lambda: values[: min(n, _HEAD_ROWS)],
        parts=parts,
        no_labels_fix="Give an array named 'labels' in the archive, or --labels FILE (labels=): "
        "numpy.savez(path, logits=..., labels=...).",
    )


def _labels_in_file(layout: _Layout, parts: Sequence[object | None]) -> _LabelColumn:
    """The file's label column, gathered from its parts' labels."""
    pieces = [p for p in parts if p is not None]
    column: object
    if pieces and isinstance(pieces[0], np.ndarray):
        arrays = cast(list[np.ndarray], pieces)
        column = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    else:
        column = _concat_labels(cast(list[pa.ChunkedArray], pieces)) if pieces else pa.chunked_array([], pa.int64())
    return _LabelColumn(layout.name, column, layout.first_row, layout.label_col)


def _separate_labels(
    layout: _Layout, labels: Source | None, max_bytes: int | None, limits: Limits
) -> _LabelColumn | None:
    """A separate labels file, read whole (a file's own label column is then ignored, with a note).

    Its length is checked at once when the file says its rows."""
    if labels is None:
        return None
    if layout.has_labels:
        layout.notes.append(f"The label column in {layout.name} was ignored in favour of the labels file.")
    column = _labels_file(labels, max_bytes, limits)
    if layout.rows is not None and len(column) != layout.rows:
        raise _refuse_count(layout.rows, len(column), column.name)
    return column


def _refuse_count(rows: int, count: int, where: str) -> InputError:
    return InputError.build(
        f"{rows} labels (one per prediction row)",
        f"{count}",
        where=where,
        fix="The labels and predictions must have the same rows, in the same order.",
    )
