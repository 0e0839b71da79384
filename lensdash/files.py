r"""Reading predictions, labels and lenses from the files people have.

Predictions come as CSV (from pandas, numpy, Excel, a notebook), Parquet,
``.npy`` or ``.npz``; a source is a path, ``bytes`` or a binary file-like
object (a Streamlit upload). Anything that cannot be used raises
:class:`~lensdash.InputError` whose message names the file, the row and
column (1-based, as a spreadsheet shows them: the header is row 1), what was
expected, what was found and how to fix it.

Detection of ``kind="auto"`` (documented rule, applied to the whole matrix):

* every value in ``[0, 1]`` and every row sums to 1 within :data:`PROB_SUM_ATOL`: probabilities;
* every value in ``[0, 1]`` but some row does not sum to 1: refused (it looks like
  unnormalised probabilities; pass ``kind="logits"`` if they really are logits);
* every value ``<= 0`` and every row's ``logsumexp`` within :data:`PROB_SUM_ATOL` of 0: log-probabilities;
* anything else: logits.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import mmap
import os
import zipfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import torch
from torch import Tensor

from lensdash.errors import InputError, LensError
from lensdash.lens import Lens, align_lens, lens_matrix

#: Row sums of probabilities may differ from 1 by this much (files written with
#: 4-6 decimals); also the tolerance on ``logsumexp`` of log-probability rows.
PROB_SUM_ATOL = 1e-2
#: Default size limit of one upload, in MB; ``.streamlit/config.toml`` uses the same.
MAX_UPLOAD_MB = 400
#: Header names recognised as the label column, compared case-insensitively.
LABEL_NAMES = ("label", "labels", "target", "targets", "y", "true", "class", "y_true", "true_label")
KINDS = ("auto", "logits", "probs", "log_probs")

Source = str | os.PathLike | bytes | BinaryIO


@dataclass
class Predictions:
    """Predictions ready for the loss: ``logits`` (N, K) float32, ``labels`` (N,) int64."""

    logits: Tensor
    labels: Tensor
    class_names: tuple[str, ...]
    kind: str
    source: str = "predictions"
    notes: list[str] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return int(self.logits.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])


# ------------------------------------------------------------------ sources


class _Input:
    """One source's bytes as a zero-copy view: a memory map of a file, or the buffer of ``bytes`` / an upload.

    Large files are read part by part; :meth:`release` drops a parsed part's
    pages from memory, so a file's bytes are not all resident at once.
    """

    def __init__(self, name: str, data: memoryview, mapped: mmap.mmap | None = None) -> None:
        self.name, self.data, self._mapped = name, data, mapped

    def release(self, start: int, stop: int) -> None:
        if self._mapped is not None and stop > start:
            first = start - start % mmap.PAGESIZE
            self._mapped.madvise(mmap.MADV_DONTNEED, first, stop - first)

    def close(self) -> None:
        try:
            self.data.release()
            if self._mapped is not None:
                self._mapped.close()
        except BufferError:  # a pyarrow buffer still refers to it; the collector frees both
            pass

    def __enter__(self) -> _Input:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open(source: Source, what: str, max_bytes: int | None) -> _Input:
    """The source as an :class:`_Input`, refusing anything over ``max_bytes`` before reading it."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = memoryview(source).cast("B")
        name = f"the {what} bytes"
        _check_size(name, len(data), max_bytes)
        return _Input(name, data)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        name = os.path.basename(path) or path
        try:
            size = os.path.getsize(path)
            _check_size(name, size, max_bytes)
            if size == 0:
                return _Input(name, memoryview(b""))
            with open(path, "rb") as handle:
                mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise InputError.build(
                "a readable file", f"{exc.strerror or exc}", where=name, fix="Check the path."
            ) from None
        return _Input(name, memoryview(mapped), mapped)
    if hasattr(source, "read"):
        name = os.path.basename(str(getattr(source, "name", "") or f"the uploaded {what} file"))
        try:
            size = getattr(source, "size", None)
            if size is None and hasattr(source, "seek"):
                pos = source.tell()
                size = source.seek(0, io.SEEK_END) - pos
                source.seek(pos)
            if size is not None:
                _check_size(name, int(size), max_bytes)
            if isinstance(source, io.BytesIO):  # an upload: view its buffer rather than copy it
                pos = source.tell()
                data = memoryview(source.getbuffer())[pos:]
                source.seek(0, io.SEEK_END)
            else:
                raw = source.read()
                data = memoryview(raw.encode("utf-8") if isinstance(raw, str) else raw).cast("B")
        except (OSError, ValueError) as exc:
            raise InputError.build("a readable file", str(exc), where=name, fix="Upload the file again.") from None
        _check_size(name, len(data), max_bytes)
        return _Input(name, data)
    raise InputError.build(
        f"the {what} as a path, bytes or a binary file object",
        type(source).__name__,
        fix="Pass a file path or open(path, 'rb').",
    )


def _check_size(name: str, size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise InputError.build(
            f"a file of at most {max_bytes / 1e6:.0f} MB",
            f"{size / 1e6:.1f} MB",
            where=name,
            fix="Use the command line (python -m lensdash report FILE) for large files, or Parquet/.npy to save space.",
        )


# --------------------------------------------------------------------- CSV


def _is_number(text: str) -> bool:
    try:
        float(text.strip().strip('"').strip())
    except ValueError:
        return False
    return True


#: A file's layout is found from its first lines, read whole: at least this many bytes...
_HEAD_BYTES = 1 << 16
#: ...extended to the end of the line they cut (a row of 10,000 classes is ~100 KB), up to this many.
_MAX_HEAD_BYTES = 16 << 20


def _head(data: bytes | memoryview, lines: int = 6, min_bytes: int | None = None) -> bytes | memoryview:
    """Whole lines from the start: past ``min_bytes`` (64 KiB) and at least ``lines`` of them (or the whole file), within 16 MB."""
    capped = data[:_MAX_HEAD_BYTES]
    end = _line_end(capped, min(len(capped), min_bytes or _HEAD_BYTES) - 1) if len(capped) else 0
    found = bytes(capped[:end]).count(b"\n")
    while found < lines and end < len(capped):
        end, found = _line_end(capped, end), found + 1
    return capped[:end]


def _decode_head(name: str, data: bytes | memoryview) -> str:
    """The file's first whole lines as text; refuses empty, binary and non-UTF-8 files."""
    first = bytes(data[:_HEAD_BYTES])
    if not first.strip(b" \t\r\n\xef\xbb\xbf"):
        raise InputError.build(
            "a file with a table of numbers", "an empty file", where=name, fix="Check that the right file was chosen."
        )
    if b"\x00" in first:
        raise InputError.build(
            "a text CSV file (or Parquet, .npy, .npz)",
            "binary data",
            where=name,
            fix="Export the predictions as CSV, e.g. DataFrame.to_csv or numpy.savetxt(..., delimiter=',').",
        )
    head = bytes(_head(data))
    cut = len(head) < len(data) and not head.endswith(b"\n")  # a line longer than the head's limit
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if not (cut and exc.start >= len(head) - 4):  # not just a character cut at the limit
            line = head[: exc.start].count(b"\n") + 1
            raise InputError.build(
                "UTF-8 text",
                f"the byte 0x{head[exc.start]:02x}, which is not UTF-8",
                where=f"{name}, row {line}",
                fix="Save the file as 'CSV UTF-8' (Excel) or with encoding='utf-8'.",
            ) from None
        text = head[: exc.start].decode("utf-8-sig")
    if cut:
        raise InputError.build(
            f"rows of at most {_MAX_HEAD_BYTES >> 20} MB (about a million numbers)",
            "a longer row",
            where=f"{name}, row {text.count(chr(10)) + 1}",
            fix="Check the line ends; a file this wide is better saved as .npy or Parquet.",
        )
    return text


def _split(lines: list[str], delim: str, **options: bool) -> list[list[str]]:
    """The lines split at ``delim``; none if a field exceeds the csv module's limit (128 KiB: ``delim`` is not this file's)."""
    try:
        return list(csv.reader(lines, delimiter=delim, **options))
    except csv.Error:
        return []


def _sniff(name: str, text: str) -> tuple[str, list[list[str]]]:
    """The delimiter and the first few rows, split."""
    lines = [ln for ln in text.splitlines() if ln.strip()][:6]
    best: tuple[int, str, list[list[str]]] | None = None
    for delim in (",", ";", "\t"):
        rows = _split(lines, delim, skipinitialspace=True)
        widths = {len(r) for r in rows}
        if len(widths) == 1 and rows and len(rows[0]) > 1 and (best is None or len(rows[0]) > best[0]):
            best = (len(rows[0]), delim, rows)
    if best is None:
        for delim in (",", ";", "\t"):
            rows = _split(lines, delim)
            if rows and len(rows[0]) > 1:
                return delim, rows
        raise InputError.build(
            "at least 2 columns separated by commas, semicolons or tabs",
            f"{len(lines[0].split(',')) if lines else 0} column",
            where=f"{name}, row 1",
            fix="Put one column per class (and a label column), e.g. DataFrame.to_csv().",
        )
    return best[1], best[2]


def _has_header(rows: list[list[str]]) -> bool:
    first = [_is_number(t) for t in rows[0]]
    if all(first):
        return False
    if len(rows) == 1:
        return True
    return first != [_is_number(t) for t in rows[1]]


def _label_index(header: list[str], label_column: str | int | None, name: str) -> int | None:
    if label_column is not None:
        if isinstance(label_column, int):
            if not 0 <= label_column < len(header):
                raise InputError.build(
                    f"label_column in 0..{len(header) - 1}",
                    str(label_column),
                    where=name,
                    fix="Give the column's 0-based index or its name.",
                )
            return label_column
        lowered = [h.strip().lower() for h in header]
        if str(label_column).strip().lower() in lowered:
            return lowered.index(str(label_column).strip().lower())
        raise InputError.build(
            f"a column named {label_column!r}",
            f"the columns {header[:8]}{'…' if len(header) > 8 else ''}",
            where=name,
            fix="Check the label column's name.",
        )
    for i, h in enumerate(header):
        if h.strip().lower() in LABEL_NAMES:
            return i
    return None


def _is_index_column(header: list[str], rows: list[list[str]]) -> bool:
    """pandas' ``to_csv()`` writes an unnamed index first: header ``""``, values 0, 1, 2, … (judged on the first rows)."""
    if header[0].strip() not in ("", "Unnamed: 0", "index"):
        return False
    return [r[0].strip() for r in rows] == [str(i) for i in range(len(rows))]


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
) -> pa.Table:
    """pyarrow's reader; columns are addressed by position, ``float_cols`` typed ``dtype``; raises pyarrow's errors."""
    columns = [f"c{i}" for i in range(width)]
    return pacsv.read_csv(
        pa.BufferReader(pa.py_buffer(data)),
        read_options=pacsv.ReadOptions(
            column_names=columns, skip_rows=int(skip_header), use_threads=use_threads, block_size=block_size
        ),
        parse_options=pacsv.ParseOptions(delimiter=delim),
        convert_options=pacsv.ConvertOptions(
            column_types={columns[i]: dtype or pa.float32() for i in float_cols},
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
    text = bytes(data).decode("utf-8-sig", errors="replace")
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


def _first_bad_row(
    name: str, rows: Iterator[list[str]], has_header: bool, width: int, floats: set[int], first_line: int
) -> InputError | None:
    for line_no, row in enumerate(rows, start=first_line):
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
    """Refuse the first empty or NaN cell of the prediction columns ``cols`` (``shown``: their 1-based file columns - 1)."""
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
    name: str, table: pa.Table, float_cols: Sequence[int], first_row: int, dtype=np.float32
) -> np.ndarray:
    _check_filled(name, table, float_cols, first_row)
    columns = table.select(list(float_cols))
    return _row_major(
        columns.cast(pa.schema([pa.field(f.name, pa.from_numpy_dtype(dtype)) for f in columns.schema])),
        range(len(float_cols)),
    ).astype(dtype, copy=False)


@dataclass
class _CsvLayout:
    """What the first rows of a predictions CSV say: delimiter, header, which columns are classes and labels."""

    name: str
    delim: str
    header: list[str] | None
    width: int
    float_cols: list[int]
    label_idx: int | None
    notes: list[str]
    #: pyarrow's block size for this file: about a thousand rows, between 1 and 16 MB
    #: (pyarrow's cost per block and column dominates when its default 1 MB block
    #: holds few rows: 1,000 classes, ~100 rows, read 1.5x slower).
    block_size: int

    @property
    def first_row(self) -> int:
        return 2 if self.header is not None else 1

    @property
    def class_names(self) -> list[str] | None:
        return [self.header[i] for i in self.float_cols] if self.header is not None else None

    def locate(self, r: int, c: int) -> str:
        return f"{self.name}, row {r + self.first_row}, column {self.float_cols[c] + 1}"


def _csv_layout(name: str, data: bytes | memoryview, label_column: str | int | None) -> _CsvLayout:
    text = _decode_head(name, data)
    delim, rows = _sniff(name, text)
    header = [h.strip() for h in rows[0]] if _has_header(rows) else None
    width = len(rows[0])
    if header is not None and len(rows) == 1:
        raise InputError.build(
            "data rows below the header",
            "a header only",
            where=name,
            fix="The file has column names but no predictions.",
        )
    notes: list[str] = []
    if header is not None:
        label_idx = _label_index(header, label_column, name)
    else:
        label_idx = label_column if isinstance(label_column, int) else None
    skip = {label_idx} if label_idx is not None else set()
    if header is not None and label_idx != 0 and _is_index_column(header, rows[1:]):
        skip.add(0)
        notes.append("The first column is a pandas index (0, 1, 2, …) and was ignored.")
    row_bytes = len(text) / max(1, text.count("\n"))
    block_size = int(min(16 << 20, max(1 << 20, 1024 * row_bytes)))
    return _CsvLayout(
        name, delim, header, width, [i for i in range(width) if i not in skip], label_idx, notes, block_size
    )


def _csv_parts(
    inp: _Input,
    layout: _CsvLayout,
    span: tuple[int, int] | None = None,
    first_row: int = 0,
    part_bytes: int | None = None,
) -> Iterator[tuple[int, int, np.ndarray, pa.ChunkedArray | None]]:
    """``(first data row, end offset, float columns row-major, label column)`` for consecutive parts, in file order.

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
    bounds = _part_bounds(data, lo, hi, part_bytes)
    skip = layout.header is not None

    def parse(bound: tuple[int, int]) -> tuple[np.ndarray, pa.ChunkedArray | None, tuple[int, int] | None] | str:
        start, stop = bound
        try:
            table = _parse_csv(
                data[start:stop],
                layout.delim,
                start == 0 and skip,
                layout.width,
                layout.float_cols,
                pa.float64(),
                use_threads=False,
                block_size=layout.block_size,
            )
        except _ARROW_ERRORS as exc:
            return str(exc)
        finally:
            inp.release(start, stop)  # the table holds its own copy; a diagnosis re-reads the file
        labels = table.column(layout.label_idx) if layout.label_idx is not None else None
        return _row_major(table, layout.float_cols), labels, _first_null(table, layout.float_cols)

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
            values, labels, null = parsed
            if null is not None:
                raise _empty_cell(layout.name, layout.first_row + row + null[0], layout.float_cols[null[1]] + 1)
            yield row, stop, values, labels
            row += len(values)


def _part_bounds(data: memoryview, lo: int, hi: int, part_bytes: int) -> list[tuple[int, int]]:
    bounds, start = [], lo
    while start < hi:
        stop = hi if start + part_bytes >= hi else _line_end(data, start + part_bytes)
        bounds.append((start, stop))
        start = stop
    return bounds


def _in_order(fn: Callable[[_T], _R], items: Sequence[_T]) -> Iterator[_R]:
    """``fn`` over ``items`` on a thread pool, yielded in order, at most a few results ahead of the consumer (bounded memory)."""
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


def _line_end(data: memoryview, pos: int) -> int:
    """The offset just after the first line end at or after ``pos`` (or the end of the data)."""
    while pos < len(data):
        window = np.frombuffer(data[pos : pos + (1 << 16)], dtype=np.uint8)
        hits = np.flatnonzero(window == 10)
        if len(hits):
            return pos + int(hits[0]) + 1
        pos += len(window)
    return len(data)


def _csv(
    inp: _Input, label_column: str | int | None
) -> tuple[np.ndarray, tuple[pa.ChunkedArray | None, int, int | None], list[str] | None, list[str], Locate]:
    """(values N×K float32, (label column or None, its first row, its index), class names or None, notes, locate)."""
    layout = _csv_layout(inp.name, inp.data, label_column)
    k = len(layout.float_cols)
    # Every row holds at least ``width`` bytes, so this bounds N; untouched pages cost no memory.
    out = np.empty((len(inp.data) // layout.width + 1, k), dtype=np.float32)
    n, labels = 0, []
    for row, _stop, values, label_part in _csv_parts(inp, layout):
        n = row + len(values)
        out[row:n] = values
        if label_part is not None:
            labels.append(label_part)
    out.resize((n, k), refcheck=False)
    column = _concat_labels(labels) if layout.label_idx is not None else None
    return out, (column, layout.first_row, layout.label_idx), layout.class_names, layout.notes, layout.locate


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


# -------------------------------------------------------------- other formats


def _npy(name: str, data: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError.build(
            "a numeric .npy array",
            f"a file numpy cannot read ({exc})",
            where=name,
            fix="Save it with numpy.save(path, array).",
        ) from None


_NPZ_PREDICTIONS = ("logits", "probs", "log_probs", "predictions", "scores", "outputs")
_NPZ_LABELS = ("labels", "label", "targets", "target", "y")


def _npz(name: str, data: bytes) -> tuple[np.ndarray, np.ndarray | None, list[str] | None, str | None]:
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
        keys = list(archive.keys())
        pred_key = next((k for k in _NPZ_PREDICTIONS if k in keys), keys[0] if len(keys) == 1 else None)
        if pred_key is None:
            raise InputError.build(
                f"an array named one of {list(_NPZ_PREDICTIONS)}",
                f"the arrays {keys}",
                where=name,
                fix="Save with numpy.savez(path, logits=..., labels=...).",
            )
        label_key = next((k for k in _NPZ_LABELS if k in keys), None)
        names = [str(c) for c in archive["class_names"]] if "class_names" in keys else None
        kind = pred_key if pred_key in ("logits", "probs", "log_probs") else None
        return archive[pred_key], (archive[label_key] if label_key else None), names, kind
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise InputError.build(
            "a numeric .npz archive", f"a file numpy cannot read ({exc})", where=name, fix="Save it with numpy.savez."
        ) from None


def _parquet_columns(
    name: str, schema: pa.Schema, label_column: str | int | None
) -> tuple[list[int], int | None, list[str]]:
    """Which Parquet columns are classes (numeric) and which holds the labels."""
    header = [str(c) for c in schema.names]
    label_idx = _label_index(header, label_column, name)
    skip = {label_idx} if label_idx is not None else set()
    skip |= {i for i, h in enumerate(header) if h in ("__index_level_0__", "index")}
    float_cols = [i for i in range(len(header)) if i not in skip]
    for i in float_cols:
        if not (pa.types.is_floating(schema.field(i).type) or pa.types.is_integer(schema.field(i).type)):
            raise InputError.build(
                "numeric prediction columns",
                f"{schema.field(i).type} in column {header[i]!r}",
                where=f"{name}, column {i + 1}",
                fix="Name the label column 'label'.",
            )
    return float_cols, label_idx, header


def _parquet(name: str, data: bytes, label_column: str | int | None) -> tuple[np.ndarray, object, list[str]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError.build(
            "a Parquet file",
            f"one pyarrow cannot read ({exc})",
            where=name,
            fix="Write it with DataFrame.to_parquet().",
        ) from None
    float_cols, label_idx, header = _parquet_columns(name, table.schema, label_column)
    table = table.select(float_cols + ([label_idx] if label_idx is not None else []))
    values = _float_matrix(name, table, list(range(len(float_cols))), 1)
    labels = (table.column(len(float_cols)), 1, label_idx) if label_idx is not None else None
    return values, labels, [header[i] for i in float_cols]


# ------------------------------------------------------------------ labels


def _label_values(
    name: str, column: object, names: list[str] | None, k: int, first_row: int, col: int | None, notes: list[str]
) -> tuple[np.ndarray, list[str] | None]:
    """int64 labels in 0..K-1 from a pyarrow or numpy column; maybe class names from string labels."""
    where_col = f", column {col + 1}" if col is not None else ""
    if isinstance(column, (pa.ChunkedArray, pa.Array)):
        row = _null_row(column)
        if row is not None:
            raise InputError.build(
                "a label",
                "an empty cell",
                where=f"{name}, row {row + first_row}{where_col}",
                fix="Every row needs its true label.",
            )
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_binary(column.type):
            arr = np.asarray(column.to_pylist(), dtype=object)
            if pa.types.is_binary(column.type):
                raise InputError.build(
                    "UTF-8 text labels",
                    "bytes that are not UTF-8",
                    where=f"{name}{where_col}",
                    fix="Save the file as UTF-8.",
                )
        else:
            arr = column.to_numpy()
    else:
        arr = np.asarray(column)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise InputError.build(
                "labels as one column", f"shape {arr.shape}", where=name, fix="Give one label per row."
            )
    if arr.dtype == object or arr.dtype.kind in "US":
        return _string_labels(name, arr.astype(str), names, k, first_row, col, notes)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError.build(
                "an integer class index",
                f"{arr[row]:g}",
                where=f"{name}, row {row + first_row}{where_col}",
                fix="Labels are whole numbers 0..K-1 (or class names).",
            )
    if arr.dtype.kind not in "iuf":
        raise InputError.build(
            "integer class indices or class names",
            f"values of type {arr.dtype}",
            where=f"{name}{where_col}",
            fix="Write labels as 0..K-1 or as class names.",
        )
    labels = arr.astype(np.int64)
    bad = (labels < 0) | (labels >= k)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        hint = " They look 1-based: subtract 1." if labels.min() >= 1 and labels.max() == k else ""
        raise InputError.build(
            f"a class index in 0..{k - 1}",
            f"{labels[row]}",
            where=f"{name}, row {row + first_row}{where_col}",
            fix=f"Labels are 0-based indices into the {k} prediction columns.{hint}",
        )
    return labels, None


def _string_labels(
    name: str, arr: np.ndarray, names: list[str] | None, k: int, first_row: int, col: int | None, notes: list[str]
) -> tuple[np.ndarray, list[str] | None]:
    where_col = f", column {col + 1}" if col is not None else ""
    arr = np.char.strip(arr)
    unique = sorted(set(arr.tolist()))
    numeric_names = names is None or names == [str(i) for i in range(len(names))]
    if not numeric_names:
        lookup = {n: i for i, n in enumerate(names)}
        out = np.fromiter((lookup.get(v, -1) for v in arr), dtype=np.int64, count=len(arr))
        if (out < 0).any():
            row = int(np.flatnonzero(out < 0)[0])
            raise InputError.build(
                f"a class name from the header {names[:8]}{'…' if len(names) > 8 else ''}",
                repr(str(arr[row])),
                where=f"{name}, row {row + first_row}{where_col}",
                fix="Labels must match the prediction columns' names exactly.",
            )
        return out, None
    if len(unique) != k:
        raise InputError.build(
            f"{k} distinct label names (one per prediction column) to name the classes",
            f"{len(unique)}: {unique[:8]}{'…' if len(unique) > 8 else ''}",
            where=f"{name}{where_col}",
            fix="Add a header row with the class names to the predictions file.",
        )
    notes.append(
        f"No class names in the header: classes are the sorted label names {unique[:8]}{'…' if k > 8 else ''}."
    )
    lookup = {n: i for i, n in enumerate(unique)}
    return np.fromiter((lookup[v] for v in arr), dtype=np.int64, count=len(arr)), unique


def _labels_file(source: Source, max_bytes: int | None) -> tuple[str, object, int, int | None]:
    with _open(source, "labels", max_bytes) as inp:
        return _labels(inp.name, inp.data)


def _labels(name: str, data: memoryview) -> tuple[str, object, int, int | None]:
    if data[:6] == b"\x93NUMPY":
        return name, _npy(name, data), 1, None
    text = _decode_head(name, data)
    lines = [ln for ln in text.splitlines() if ln.strip()][:6]
    delim = ","
    for d in (",", ";", "\t"):
        if lines and d in lines[0]:
            delim = d
            break
    rows = _split(lines, delim, skipinitialspace=True)
    if not rows:
        row = next((i for i, ln in enumerate(text.splitlines(), start=1) if len(ln) > csv.field_size_limit()), 1)
        raise InputError.build(
            "one label per line",
            "a cell longer than 128 KiB",
            where=f"{name}, row {row}",
            fix="Save the labels alone, one per line, e.g. Series.to_csv().",
        )
    width = len(rows[0])
    first = [t.strip() for t in rows[0]]
    header = (
        first
        if width > 1
        or (len(rows) > 1 and not _is_number(first[0]) and _is_number(rows[1][0]))
        or first[0].lower() in LABEL_NAMES
        else None
    )
    if header is not None and len(rows) == 1:
        raise InputError.build(
            "labels below the header", "a header only", where=name, fix="The labels file has no rows."
        )
    if width == 1:
        col = 0
    else:
        col = _label_index(header, None, name) if header is not None else None
        if col is None:
            col = 1 if header is not None and header[0] in ("", "Unnamed: 0", "index") and width == 2 else None
        if col is None:
            raise InputError.build(
                f"one label column (or one named {LABEL_NAMES[0]!r})",
                f"{width} columns",
                where=name,
                fix="Save the labels alone, e.g. Series.to_csv().",
            )
    table = _csv_table(name, data, delim, header is not None, width, [])
    return name, table.column(col), 2 if header is not None else 1, col if width > 1 else None


def _unique_names(name: str, names: list[str]) -> tuple[str, ...]:
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise InputError.build(
                "unique class names in the header",
                f"{n!r} twice",
                where=f"{name}, prediction columns {seen[n] + 1} and {i + 1}",
                fix="Rename one of the columns.",
            )
        seen[n] = i
    return tuple(names)


# ------------------------------------------------------------------- kinds


Locate = Callable[[int, int], str]


def _to_logits(name: str, values: np.ndarray, kind: str, notes: list[str], locate: Locate) -> tuple[Tensor, str]:
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
    return (x.log_() if kind == "probs" else x), kind


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
    if hi <= 0 and (torch.logsumexp(x.double(), dim=1).abs() <= PROB_SUM_ATOL).all():
        return "log_probs"
    return "logits"


def _off_sum_row(x: Tensor) -> tuple[int, float] | None:
    """The first row whose sum is not 1 (within :data:`PROB_SUM_ATOL`), and its sum."""
    sums = x.sum(dim=1, dtype=torch.float64)
    off = (sums - 1).abs() > PROB_SUM_ATOL
    if not off.any():
        return None
    r = int(off.nonzero()[0, 0])
    return r, sums[r].item()


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
    lse = torch.logsumexp(x.double(), dim=1)
    off = lse.abs() > PROB_SUM_ATOL
    if off.any():
        r = int(off.nonzero()[0, 0])
        raise InputError.build(
            "log-probabilities whose exp sums to 1",
            f"a sum of {lse[r].exp().item():.4g}",
            where=_row(locate, r),
            fix="Choose kind='logits' if these are unnormalised scores.",
        )


# --------------------------------------------------------------- the reader


def _read_values(
    inp: _Input, kind: str, label_column: str | int | None
) -> tuple[np.ndarray, tuple[object, int, int | None] | None, list[str] | None, list[str], Locate, str]:
    """(values, (labels, first row, column) or None, class names, notes, locate, kind) by the file's format."""
    name, data = inp.name, inp.data

    def locate(r: int, c: int) -> str:
        return f"{name}, row {r + 1}, column {c + 1}"

    if data[:4] == b"PAR1":
        values, label_info, names = _parquet(name, data, label_column)
        return values, label_info, names, [], locate, kind
    if data[:6] == b"\x93NUMPY":
        return _npy(name, data), None, None, [], locate, kind
    if data[:4] == b"PK\x03\x04":
        values, npz_labels, names, npz_kind = _npz(name, data)
        kind = npz_kind if kind == "auto" and npz_kind is not None else kind
        return values, (npz_labels, 1, None) if npz_labels is not None else None, names, [], locate, kind
    values, label_info, names, notes, locate = _csv(inp, label_column)
    return values, label_info if label_info[0] is not None else None, names, notes, locate, kind


def read_predictions(
    source: Source,
    labels: Source | None = None,
    *,
    kind: str = "auto",
    label_column: str | int | None = None,
    max_bytes: int | None = None,
) -> Predictions:
    r"""Read predictions (and labels) from CSV, Parquet, ``.npy`` or ``.npz``.

    CSV: a header of class names with a label column (``label``, ``labels``,
    ``target``, ``y``, ``true``, ``class``, any case, anywhere; or ``label_column``),
    pandas' ``to_csv()`` output with its index column, or a headerless numeric
    table (``numpy.savetxt``) with the labels in a separate file. Comma,
    semicolon or tab; a UTF-8 BOM, CRLF, quoted numbers and spaces are fine.

    Args:
        source: predictions: a path, ``bytes`` or a binary file object.
        labels: a separate labels file (one column, with or without a header).
        kind: ``'auto'`` (see the module's detection rule), ``'logits'``,
            ``'probs'`` or ``'log_probs'``.
        label_column: name or 0-based index of the label column.
        max_bytes: refuse larger files before parsing them.

    Returns:
        :class:`Predictions` with ``logits`` (N, K) float32 (for probabilities
        their log: a zero probability becomes ``-inf``), ``labels`` (N,) int64,
        ``class_names``, ``kind`` and ``notes`` about what was inferred.

    Raises:
        InputError: anything it cannot use, with file, row and column.

    Example:
        >>> p = read_predictions(b"cat,dog,label\n0.9,0.1,cat\n0.2,0.8,dog\n")
        >>> p.kind, p.class_names, p.labels.tolist()
        ('probs', ('cat', 'dog'), [0, 1])
    """
    if kind not in KINDS:
        raise InputError.build(
            f"kind in {KINDS}", repr(kind), fix="'auto' detects probabilities, log-probabilities and logits."
        )
    with _open(source, "predictions", max_bytes) as inp:
        name, (values, label_info, names, notes, locate, kind) = inp.name, _read_values(inp, kind, label_column)
    values = np.asarray(values)
    if values.ndim != 2 or values.dtype.kind not in "fiu":
        raise InputError.build(
            "an N×K numeric array",
            f"shape {values.shape}, dtype {values.dtype}",
            where=name,
            fix="One row per sample, one column per class.",
        )
    n, k = values.shape
    if k < 2:
        raise InputError.build(
            "at least 2 class columns", f"{k}", where=name, fix="Give one column per class (and a label column)."
        )
    if n == 0:
        raise InputError.build("at least one data row", "none", where=name, fix="The file has no predictions.")
    if labels is not None:
        if label_info is not None:
            notes.append(f"The label column in {name} was ignored in favour of the labels file.")
        label_name, column, first_row, col = _labels_file(labels, max_bytes)
    elif label_info is not None:
        label_name, (column, first_row, col) = name, label_info
    else:
        raise InputError.build(
            f"labels: a column named one of {list(LABEL_NAMES[:6])} or a labels file",
            "neither",
            where=name,
            fix="Add a 'label' column, pass label_column=, or upload the labels as a separate file.",
        )
    count = len(column)
    if count != n:
        raise InputError.build(
            f"{n} labels (one per prediction row)",
            f"{count}",
            where=label_name,
            fix="The labels and predictions must have the same rows, in the same order.",
        )
    label_array, label_names = _label_values(label_name, column, names, k, first_row, col, notes)
    if label_names is not None:
        names = label_names
    final_names = _unique_names(name, names if names is not None else [str(i) for i in range(k)])
    logits, kind = _to_logits(name, values.astype(np.float32, copy=False), kind, notes, locate)
    return Predictions(logits, torch.from_numpy(label_array), final_names, kind, name, notes)


# ------------------------------------------------------------------ lenses


def read_lens(
    source: Source, class_names_: Sequence[str] | None = None, *, max_bytes: int | None = 10_000_000
) -> tuple[Lens, list[str]]:
    """Read a lens: headerless CSV, CSV with class names, JSON or a torch ``.pt`` file.

    Lens convention: row ``i`` is the target distribution for true label ``i``;
    rows sum to 1. JSON is ``{"classes": [...], "lens": [[...]]}``; ``.pt`` is
    loaded with ``weights_only=True`` (a tensor, or that dict), so no code in an
    upload runs. With ``class_names_`` the lens is matched by name (reordered,
    or expanded with identity rows when it covers a subset).

    Returns:
        The lens and notes about what was done.

    Raises:
        InputError: unreadable file. LensError: not a valid lens, or unknown classes.

    Example:
        >>> lens, notes = read_lens(b'{"classes": ["a", "b"], "lens": [[0.5, 0.5], [0, 1]]}')
        >>> lens.classes
        ('a', 'b')
    """
    with _open(source, "lens", max_bytes) as inp:
        name, data = inp.name, bytes(inp.data)
    try:
        return _read_lens(name, data, class_names_)
    except LensError as exc:
        raise LensError(f"{name}: {exc}") from None


def _read_lens(name: str, data: bytes, class_names_: Sequence[str] | None) -> tuple[Lens, list[str]]:
    notes: list[str] = []
    if data[:4] == b"PK\x03\x04" or name.endswith((".pt", ".pth")):
        lens = _lens_pt(name, data)
    elif data.lstrip()[:1] == b"{":
        try:
            obj = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError.build(
                "JSON text", f"invalid JSON ({exc})", where=name, fix='Write {"classes": [...], "lens": [[...]]}.'
            ) from None
        lens = _lens_from_obj(name, obj)
    else:
        lens = _lens_csv(name, data)
    if class_names_ is not None:
        lens, note = align_lens(lens, class_names_)
        if note:
            notes.append(note)
    return lens, notes


def _lens_from_obj(name: str, obj: object) -> Lens:
    if isinstance(obj, dict) and "lens" in obj:
        return Lens(obj["lens"], obj.get("classes"))
    if isinstance(obj, (list, Tensor)):
        return Lens(obj)
    raise InputError.build(
        'a lens: {"classes": [...], "lens": [[...]]} or a K×K matrix',
        type(obj).__name__,
        where=name,
        fix="Export the lens from the app.",
    )


def _lens_pt(name: str, data: bytes) -> Lens:
    try:
        obj = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many types for bad or unsafe pickles
        raise InputError.build(
            "a torch file holding only tensors, lists and strings",
            f"one that cannot be loaded safely ({str(exc).splitlines()[0][:120]})",
            where=name,
            fix="Save with torch.save({'classes': names, 'lens': tensor}, path).",
        ) from None
    return _lens_from_obj(name, obj)


def _lens_csv(name: str, data: bytes) -> Lens:
    text = _decode_head(name, data)
    delim, rows = _sniff(name, text)
    width = len(rows[0])
    named = not all(_is_number(t) for t in rows[0])
    float_cols = list(range(1 if named else 0, width))
    table = _csv_table(name, data, delim, named, width, float_cols, pa.float64())
    values = _float_matrix(name, table, float_cols, 2 if named else 1, np.float64)
    if named:
        cols = [h.strip() for h in rows[0]][1:]
        row_names = [str(v).strip() for v in table.column(0).to_pylist()]
        if row_names != cols:
            raise InputError.build(
                "the same class names in the first column as in the header",
                f"rows {row_names[:6]} vs columns {cols[:6]}",
                where=name,
                fix="Row i and column i name the same class.",
            )
        return Lens(torch.from_numpy(values), cols)
    return Lens(torch.from_numpy(values))


def lens_to_bytes(lens: Lens, fmt: str = "csv") -> bytes:
    """Serialise a lens: ``'csv'`` (class names as header and first column), ``'plain-csv'`` (headerless), ``'json'`` or ``'pt'``.

    Example:
        >>> print(lens_to_bytes(Lens([[1, 0], [0, 1]], ["a", "b"])).decode())
        class,a,b
        a,1,0
        b,0,1
        <BLANKLINE>
    """
    matrix = lens_matrix(lens, dtype=torch.float64, device="cpu")
    rows = [[f"{v:.10g}" for v in row] for row in matrix.tolist()]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["class", *lens.classes])
        writer.writerows([[c, *r] for c, r in zip(lens.classes, rows)])
        return out.getvalue().encode()
    if fmt == "plain-csv":
        return "".join(",".join(r) + "\n" for r in rows).encode()
    if fmt == "json":
        return json.dumps({"classes": list(lens.classes), "lens": matrix.tolist()}, indent=1).encode()
    if fmt == "pt":
        buffer = io.BytesIO()
        torch.save({"classes": list(lens.classes), "lens": matrix}, buffer)
        return buffer.getvalue()
    raise InputError.build("a format in ('csv', 'plain-csv', 'json', 'pt')", repr(fmt), fix="Choose one of those.")


def save_lens(lens: Lens, path: str | os.PathLike) -> None:
    """Write a lens; the format follows the file's ending (``.csv``, ``.json``, ``.pt``)."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    fmt = {".json": "json", ".pt": "pt", ".pth": "pt"}.get(ext, "csv")
    with open(path, "wb") as handle:
        handle.write(lens_to_bytes(lens, fmt))
