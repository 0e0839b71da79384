"""CSV parsing in parts on a thread pool (arrow's reader, or its string kernels for wide files), and error diagnosis."""

from __future__ import annotations

import contextlib
import csv
import io
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from lensdash.errors import InputError
from lensdash.io._csv_layout import (
    _CsvLayout,
    _is_number,
    _line_end,
)
from lensdash.io._source import _Input

#: CSV predictions are parsed in parts of at most this many bytes (smaller parts
#: for smaller files, so every thread has work), each converted and dropped soon
#: after, so parsing never holds the whole file twice.
PART_BYTES = 24 << 20


#: Threads that parse parts side by side.
_THREADS = max(1, pa.cpu_count())


#: Several parts per thread, so the last ones to finish leave little idle time.
_PARTS_PER_THREAD = 4


_T = TypeVar("_T")


_R = TypeVar("_R")


_NULLS = ["", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "#N/A", "-nan", "-NaN"]


_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


def _parse_csv(
    data: bytes | memoryview,
    delim: str,
    skip_header: bool,
    width: int,
    float_cols: Sequence[int],
    dtype: pa.DataType | None,
    *,
    use_threads: bool = True,
    block_size: int = 1 << 20,
    text_cols: Sequence[int] = (),
) -> pa.Table:
    """pyarrow's reader; columns are addressed by position, ``float_cols`` typed ``dtype``, ``text_cols`` strings.

    Raises pyarrow's errors.
    """
    columns = [f"c{i}" for i in range(width)]
    types = {columns[i]: dtype or pa.float32() for i in float_cols} | {columns[i]: pa.string() for i in text_cols}
    return pacsv.read_csv(
        pa.BufferReader(pa.py_buffer(data)),
        read_options=pacsv.ReadOptions(
            column_names=columns, skip_rows=int(skip_header), use_threads=use_threads, block_size=block_size
        ),
        parse_options=pacsv.ParseOptions(delimiter=delim),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            strings_can_be_null=False,
            null_values=_NULLS,
        ),
    )


def _csv_table(
    name: str,
    data: bytes | memoryview,
    delim: str,
    skip_header: bool,
    width: int,
    float_cols: Sequence[int],
    dtype: pa.DataType | None = None,
    first_line: int = 1,
    block_size: int = 1 << 20,
) -> pa.Table:
    """Parse CSV bytes with pyarrow's multithreaded reader; anything it rejects is diagnosed with row and column."""
    try:
        return _parse_csv(data, delim, skip_header, width, float_cols, dtype, block_size=block_size)
    except _ARROW_ERRORS as exc:
        raise _diagnose_csv(name, data, delim, skip_header, width, float_cols, str(exc), first_line) from None


def _diagnose_csv(
    name: str,
    data: bytes | memoryview,
    delim: str,
    has_header: bool,
    width: int,
    float_cols: Sequence[int],
    detail: str,
    first_line: int = 1,
) -> InputError:
    """Find the first offending row and column with the slow reader (only on the error path)."""
    # Pure Python: bounded, so that a hostile file cannot hold the process (a part is at most 24 MB anyway).
    text = bytes(data[:_DIAGNOSE_BYTES]).decode("utf-8-sig", errors="replace")
    floats = set(float_cols)
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    try:
        return _first_bad_row(name, rows, has_header, width, floats, first_line) or InputError.build(
            "a CSV table",
            f"a file the CSV parser rejects ({detail.splitlines()[0][:160]})",
            where=name,
            fix="Re-export the file as CSV.",
        )
    except csv.Error:  # a cell over the csv module's 128 KiB limit
        return InputError.build(
            f"{width} cells per row, like row 1",
            "a cell longer than 128 KiB",
            where=f"{name}, row {first_line + rows.line_num - 1}",
            fix="Every row needs one value per column; check for a missing delimiter or line end.",
        )


#: The error diagnosis reads at most this many bytes and cells with the slow reader (a second or two).
_DIAGNOSE_BYTES = 32 << 20


_DIAGNOSE_CELLS = 2_000_000


def _first_bad_row(
    name: str, rows: Iterator[list[str]], has_header: bool, width: int, floats: set[int], first_line: int
) -> InputError | None:
    cells = 0
    for line_no, row in enumerate(rows, start=first_line):
        cells += len(row)
        if cells > _DIAGNOSE_CELLS:
            return InputError.build(
                "a CSV table",
                f"a cell the CSV parser rejects, after row {line_no} (not located further, to stay quick)",
                where=name,
                fix="Check the rows after this one for a text cell, a missing delimiter or a line end.",
            )
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            return InputError.build(
                f"{width} cells per row, like row 1",
                f"{len(row)}",
                where=f"{name}, row {line_no}",
                fix="Every row needs one value per column; check for a missing or extra delimiter.",
            )
        if has_header and line_no == first_line:
            continue
        for col, cell in enumerate(row):
            if col in floats and cell.strip() and not _is_number(cell):
                shown = cell if "\ufffd" not in cell else cell.encode("utf-8", "replace")[:20]
                return InputError.build(
                    "a number",
                    repr(shown) if isinstance(shown, str) else "bytes that are not UTF-8 text",
                    where=f"{name}, row {line_no}, column {col + 1}",
                    fix="Every prediction cell must be a number (logit or probability).",
                )
    return None


def _check_filled(
    name: str, table: pa.Table, cols: Sequence[int], first_row: int, shown: Sequence[int] | None = None
) -> None:
    """Refuse the first empty or NaN cell of the prediction columns ``cols``.

    ``shown``: their 1-based file columns - 1.
    """
    hit = _first_null(table, cols)
    if hit is not None:
        row, j = hit
        raise _empty_cell(name, row + first_row, (shown[j] if shown is not None else cols[j]) + 1)


def _first_null(table: pa.Table, cols: Sequence[int]) -> tuple[int, int] | None:
    """``(row, j)`` of the first null in the first of the columns ``cols`` that has one."""
    for j, col in enumerate(cols):
        row = _null_row(table.column(col))
        if row is not None:
            return row, j
    return None


def _null_row(column: pa.ChunkedArray | pa.Array) -> int | None:
    """The index of the column's first null, if it has one."""
    if not column.null_count:
        return None
    return int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])


def _empty_cell(name: str, row: int, column: int) -> InputError:
    return InputError.build(
        "a number",
        "an empty or NaN cell",
        where=f"{name}, row {row}, column {column}",
        fix="Fill every prediction cell; rows with missing predictions must be removed.",
    )


def _row_major(table: pa.Table, cols: Sequence[int]) -> np.ndarray:
    """The numeric columns ``cols`` as one row-major (N, len(cols)) array, written by arrow in C++."""
    if table.num_rows == 0:
        return np.zeros((0, len(cols)), dtype=np.float64)
    return np.asarray(table.select(list(cols)).to_tensor(row_major=True, null_to_nan=True))


def _float_matrix(
    name: str,
    table: pa.Table,
    float_cols: Sequence[int],
    first_row: int,
    dtype: type[np.floating] = np.float32,
    shown: Sequence[int] | None = None,
) -> np.ndarray:
    """The columns ``float_cols`` as a row-major ``dtype`` array, refusing the first empty cell.

    ``first_row``: the 1-based file row of the table's first row; ``shown``: the 0-based file columns of
    ``float_cols`` in messages (``float_cols`` themselves by default).
    """
    _check_filled(name, table, float_cols, first_row, shown)
    columns = table.select(list(float_cols))
    return _row_major(
        columns.cast(pa.schema([pa.field(f.name, pa.from_numpy_dtype(dtype)) for f in columns.schema])),
        range(len(float_cols)),
    ).astype(dtype, copy=False)


def _csv_parts(
    inp: _Input,
    layout: _CsvLayout,
    span: tuple[int, int] | None = None,
    first_row: int = 0,
    part_bytes: int | None = None,
) -> Generator[tuple[int, int, _Part], None, None]:
    """``(first data row, end offset, parsed part)`` for consecutive parts, in file order.

    Parts end at line ends and cover ``span`` (byte offsets at line starts; the
    whole file by default), whose first data row is ``first_row``. They are
    parsed on a pool of threads, each with pyarrow's single-threaded reader:
    pyarrow and numpy release the GIL, so parsing and the row-major conversion
    of different parts overlap with each other and with the caller's work on
    earlier parts. A worker keeps only what the caller needs and drops its
    part's pages at once. Row numbers are only known in file order, so a
    part's errors are raised here, not in its thread.
    """
    data = inp.data
    lo, hi = span if span is not None else (0, len(data))
    if part_bytes is None:
        part_bytes = min(PART_BYTES, max((hi - lo) // (_PARTS_PER_THREAD * _THREADS), 1 << 20))
    if layout.width > WIDE_COLUMNS:  # the split path holds about 3 copies of a part: keep parts small
        part_bytes = min(part_bytes, _WIDE_PART_BYTES)
    bounds = _part_bounds(data, lo, hi, part_bytes)
    skip = layout.header is not None

    def parse(bound: tuple[int, int]) -> _Part | str:
        start, stop = bound
        try:
            return _parse_values(data[start:stop], layout, start == 0 and skip)
        except _ARROW_ERRORS as exc:
            return str(exc)
        finally:
            inp.release(start, stop)  # the values are a copy; a diagnosis re-reads the file

    row = first_row
    with contextlib.closing(_in_order(parse, bounds)) as results:  # on an error, stop the pool before the file closes
        for (start, stop), parsed in zip(bounds, results, strict=True):
            if isinstance(parsed, str):
                first_line = layout.first_row + row if start else 1
                raise _diagnose_csv(
                    layout.name,
                    data[start:stop],
                    layout.delim,
                    start == 0 and skip,
                    layout.width,
                    layout.float_cols,
                    parsed,
                    first_line,
                )
            layout.limits.check_cells(layout.name, row + len(parsed.values), len(layout.float_cols))
            if parsed.null is not None:
                null = parsed.null
                raise _empty_cell(layout.name, layout.first_row + row + null[0], layout.float_cols[null[1]] + 1)
            yield row, stop, parsed
            row += len(parsed.values)


#: Files with more columns than this are split in arrow's compute kernels rather than parsed by its CSV
#: reader, whose cost of about 9 KB per column and block would exceed the memory rule on wide, short files.
WIDE_COLUMNS = 2_000


_WIDE_PART_BYTES = 4 << 20


@dataclass
class _Part:
    """One parsed part: float columns row-major (float32), the label column, the metadata, the first empty cell.

    Numbers are parsed straight to float32, correctly rounded (decimal to float64 to float32 would round twice,
    one ulp off for a decimal next to a float32 midpoint), as polars does in the fast path (``_csv_polars``).
    """

    values: np.ndarray
    labels: pa.ChunkedArray | None
    null: tuple[int, int] | None  # (row, j) of the first empty prediction cell
    meta: pa.Table | None = None


def _meta_table(layout: _CsvLayout, columns: list[pa.ChunkedArray | pa.Array]) -> pa.Table | None:
    if not layout.meta_cols:
        return None
    return pa.table(columns, names=layout.meta_names)


def _parse_values(part: bytes | memoryview, layout: _CsvLayout, skip_header: bool) -> _Part:
    """A part of whole lines parsed (see :class:`_Part`).

    Raises pyarrow's errors for what it cannot parse (the caller diagnoses them with row and column).
    """
    if layout.width > WIDE_COLUMNS:
        return _parse_wide(part, layout, skip_header)
    table = _parse_csv(
        part,
        layout.delim,
        skip_header,
        layout.width,
        layout.float_cols,
        pa.float32(),
        use_threads=False,
        block_size=layout.block_size,
        text_cols=sorted(layout.text_cols),
    )
    labels = table.column(layout.label_idx) if layout.label_idx is not None else None
    meta = _meta_table(layout, [table.column(i) for i in layout.meta_cols])
    return _Part(_row_major(table, layout.float_cols), labels, _first_null(table, layout.float_cols), meta)


def _parse_wide(part: bytes | memoryview, layout: _CsvLayout, skip_header: bool) -> _Part:
    """A wide part split at its delimiters by arrow's string kernels: memory is a few copies of the part.

    Quoted cells are unquoted, but a quoted delimiter is not supported here (numbers and labels need none).
    """
    import pyarrow.compute as pc

    raw = np.frombuffer(part, dtype=np.uint8)
    starts = np.concatenate(([0], np.flatnonzero(raw == 10) + 1)).astype(np.int64)
    if starts[-1] == len(raw):
        starts = starts[:-1]
    offsets = pa.py_buffer(np.append(starts, len(raw)))
    lines = pa.LargeStringArray.from_buffers(len(starts), offsets, pa.py_buffer(part))
    lines.validate(full=True)  # UTF-8
    lines = pc.utf8_trim_whitespace(lines)
    lines = lines.filter(pc.greater(pc.utf8_length(lines), 0))  # blank lines, as the CSV reader skips them
    if skip_header:
        lines = lines[1:]
    width, n = layout.width, len(lines)
    cells = pc.split_pattern(lines, pattern=layout.delim)
    lengths = pc.list_value_length(cells).to_numpy(zero_copy_only=False)
    if (lengths != width).any():
        raise pa.ArrowInvalid(f"Expected {width} columns, got {int(lengths[lengths != width][0])}")
    flat = pc.utf8_trim(pc.list_flatten(cells), characters=' \t\r"')
    labels = None
    rows = np.arange(n, dtype=np.int64) * width
    if layout.label_idx is not None:
        labels = _typed_labels(flat.take(pa.array(rows + layout.label_idx)))
    meta = _meta_table(
        layout,
        [
            flat.take(pa.array(rows + i)).cast(pa.string())
            if i in layout.text_cols
            else _typed_labels(flat.take(pa.array(rows + i)))
            for i in layout.meta_cols
        ],
    )
    k = len(layout.float_cols)
    if k < width:
        keep = np.zeros(width, dtype=bool)
        keep[layout.float_cols] = True
        flat = flat.filter(pa.array(np.tile(keep, n)))
    null = pc.is_in(flat, value_set=pa.array(_NULLS, pa.large_string()))
    if pc.any(null).as_py():
        first = int(np.flatnonzero(null.to_numpy(zero_copy_only=False))[0])
        return _Part(np.zeros((0, k), np.float32), labels, divmod(first, k), meta)
    return _Part(flat.cast(pa.float32()).to_numpy().reshape(n, k), labels, None, meta)


def _typed_labels(labels: pa.Array) -> pa.ChunkedArray:
    """Text labels as the CSV reader would type them: integers, else floats, else text."""
    for target in (pa.int64(), pa.float64(), pa.string()):
        try:
            return pa.chunked_array([labels.cast(target)])
        except pa.ArrowInvalid:
            continue
    raise pa.ArrowInvalid("labels that are not text")


def _part_bounds(data: memoryview, lo: int, hi: int, part_bytes: int) -> list[tuple[int, int]]:
    bounds, start = [], lo
    while start < hi:
        stop = hi if start + part_bytes >= hi else _line_end(data, start + part_bytes)
        bounds.append((start, stop))
        start = stop
    return bounds


def _in_order(fn: Callable[[_T], _R], items: Sequence[_T]) -> Generator[_R, None, None]:
    """``fn`` over ``items`` on a thread pool, yielded in order, a few results ahead of the consumer at most.

    So memory stays bounded.
    """
    with ThreadPoolExecutor(_THREADS) as pool:
        pending: deque[Future[_R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) > _THREADS:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _concat_meta(parts: list[pa.Table]) -> pa.Table:
    """One metadata table from the parts, each column's type unified as for labels."""
    names = parts[0].column_names
    columns = [_concat_labels([p.column(j) for p in parts]) for j in range(len(names))]
    return pa.table(columns, names=names)


def _concat_labels(parts: list[pa.ChunkedArray]) -> pa.ChunkedArray:
    """One label column from the parts, whose inferred types may differ (ints in one part, ``2.5`` in another)."""
    types = {p.type for p in parts}
    if len(types) > 1:
        if any(pa.types.is_binary(t) for t in types):
            target = pa.binary()
        elif any(pa.types.is_string(t) for t in types):
            target = pa.string()
        elif any(pa.types.is_floating(t) for t in types):
            target = pa.float64()
        else:
            target = pa.int64()
        parts = [p.cast(target) for p in parts]
    return pa.chunked_array([c for p in parts for c in p.chunks], type=parts[0].type)
