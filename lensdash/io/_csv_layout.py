"""A CSV's layout from its first lines: delimiter, header, which columns are classes and labels."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lensdash.errors import InputError
from lensdash.io._source import (
    LABEL_NAMES,
    META_NAMES,
    Limits,
    _meta_note,
    check_meta_count,
)


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
    """Whole lines from the start: past ``min_bytes`` (64 KiB) and at least ``lines`` of them (or the whole file).

    Within 16 MB.
    """
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


def _split(lines: list[str], delim: str, *, skipinitialspace: bool = False) -> list[list[str]]:
    """The lines split at ``delim``; none if a field exceeds the csv module's limit.

    A field over 128 KiB means ``delim`` is not this file's delimiter.
    """
    try:
        return list(csv.reader(lines, delimiter=delim, skipinitialspace=skipinitialspace))
    except csv.Error:
        return []


@dataclass(frozen=True)
class _Dialect:
    """A CSV's delimiter, and its first few rows split with it."""

    delim: str
    rows: list[list[str]]


def _sniff(name: str, text: str) -> _Dialect:
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
                return _Dialect(delim, rows)
        raise InputError.build(
            "at least 2 columns separated by commas, semicolons or tabs",
            f"{len(lines[0].split(',')) if lines else 0} column",
            where=f"{name}, row 1",
            fix="Put one column per class (and a label column), e.g. DataFrame.to_csv().",
        )
    return _Dialect(best[1], best[2])


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
    """pandas' ``to_csv()`` writes an unnamed index first: header ``""``, values 0, 1, 2, … (on the first rows)."""
    if header[0].strip() not in ("", "Unnamed: 0", "index"):
        return False
    return [r[0].strip() for r in rows] == [str(i) for i in range(len(rows))]


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
    limits: Limits = field(default_factory=Limits)
    #: metadata columns (file indices) and which of them are text (read as strings, never inferred)
    meta_cols: list[int] = field(default_factory=list)
    text_cols: set[int] = field(default_factory=set)
    #: columns whose first data rows hold integers only (the fast path reads such a label column as int64)
    int_cols: set[int] = field(default_factory=set)

    @property
    def meta_names(self) -> list[str]:
        header = self.header or []
        return [header[i] if i < len(header) else str(i) for i in self.meta_cols]

    @property
    def first_row(self) -> int:
        return 2 if self.header is not None else 1

    @property
    def class_names(self) -> list[str] | None:
        return [self.header[i] for i in self.float_cols] if self.header is not None else None

    def locate(self, r: int, c: int) -> str:
        return f"{self.name}, row {r + self.first_row}, column {self.float_cols[c] + 1}"


def _check_width(name: str, data: bytes | memoryview, limits: Limits) -> None:
    """Refuse a first line with far more cells than ``max_classes`` before it is split (two passes of C code).

    Any of the three delimiters may be the file's, and a ``;`` file may write decimal commas: refused only
    when even the least frequent delimiter that occurs is over twice the limit.
    """
    if limits.max_classes is None:
        return
    line = bytes(data[: _line_end(data[:_MAX_HEAD_BYTES], 0)])
    counts = [c for c in (line.count(d) for d in (b",", b";", b"\t")) if c]
    if counts and min(counts) + 1 > 2 * limits.max_classes + 2:
        limits.check_classes(f"{name}, row 1", min(counts) + 1, "columns", slack=limits.max_classes + 2)


@dataclass(frozen=True)
class _MetaColumns:
    """A CSV's metadata columns (0-based file indices, in file order) and those of them that are text."""

    cols: list[int]
    text: set[int]


def _meta_indices(
    name: str,
    header: list[str] | None,
    rows: list[list[str]],
    label_idx: int | None,
    meta_columns: Sequence[str | int] | None,
) -> _MetaColumns:
    """Metadata columns: named by ``meta_columns`` (names or 0-based indices), a common id name, or text.

    A column is text when its first data rows hold text and no number, and at least two score columns remain
    without the text columns (else a text cell is refused as a bad score, with its row and column); the
    label column is never metadata.
    """
    width = len(rows[0])
    chosen: set[int] = set()
    lowered = [h.strip().lower() for h in header] if header is not None else None
    for wanted in meta_columns or ():
        if isinstance(wanted, int) and not isinstance(wanted, bool):
            if not 0 <= wanted < width:
                raise InputError.build(
                    f"meta_columns indices in 0..{width - 1}",
                    str(wanted),
                    where=name,
                    fix="Give the metadata columns by name or 0-based index.",
                )
            chosen.add(wanted)
        elif lowered is not None and str(wanted).strip().lower() in lowered:
            chosen.add(lowered.index(str(wanted).strip().lower()))
        else:
            shown = header[:8] if header is not None else "no header"
            raise InputError.build(
                f"a column named {str(wanted)[:60]!r} (meta_columns)",
                f"the columns {shown}{'…' if header is not None and len(header) > 8 else ''}",
                where=name,
                fix="Check the metadata column's name, or give its 0-based index.",
            )
    text: set[int] = set()
    if header is not None:
        chosen |= {i for i, h in enumerate(lowered or []) if h in META_NAMES}
        data = [r for r in rows[1:] if len(r) == width]
        for i in range(width):
            filled = [r[i] for r in data if r[i].strip()]
            if filled and not any(_is_number(v) for v in filled):  # text throughout (a typo among numbers is not)
                text.add(i)
        text.discard(label_idx)  # type: ignore[arg-type]
        if width - len(chosen | text) - (label_idx is not None) >= 2:  # else a text cell is a bad score cell
            chosen |= text
        else:
            text = set()
    chosen.discard(label_idx)  # type: ignore[arg-type]
    return _MetaColumns(sorted(chosen), text & chosen)


def _csv_layout(
    name: str,
    data: bytes | memoryview,
    label_column: str | int | None,
    limits: Limits | None = None,
    meta_columns: Sequence[str | int] | None = None,
) -> _CsvLayout:
    limits = limits or Limits()
    _check_width(name, data, limits)
    text = _decode_head(name, data)
    dialect = _sniff(name, text)
    delim, rows = dialect.delim, dialect.rows
    header = [h.strip() for h in rows[0]] if _has_header(rows) else None
    width = len(rows[0])
    limits.check_classes(f"{name}, row 1", width, "columns", slack=2)  # a label and an index column
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
    else:  # an index is checked against the first row's cells (a name needs a header)
        label_idx = _label_index(rows[0], label_column, name) if isinstance(label_column, int) else None
    meta = _meta_indices(name, header, rows, label_idx, meta_columns)
    meta_cols, text_cols = meta.cols, meta.text
    check_meta_count(name, len(meta_cols))
    skip = {label_idx} if label_idx is not None else set()
    skip |= set(meta_cols)
    if header is not None and 0 not in skip and _is_index_column(header, rows[1:]):
        skip.add(0)
        notes.append("The first column is a pandas index (0, 1, 2, …) and was ignored.")
    if meta_cols:
        notes.append(_meta_note([header[i] if header is not None else str(i) for i in meta_cols]))
    row_bytes = len(text) / max(1, text.count("\n"))
    block_size = int(min(16 << 20, max(1 << 20, 1024 * row_bytes)))
    float_cols = [i for i in range(width) if i not in skip]
    # Rows estimated from the first lines' length; the parts count the real rows as they are read.
    header_bytes = len(text.split("\n", 1)[0]) + 1 if header is not None else 0
    data_row_bytes = (len(text) - header_bytes) / max(1, text.count("\n") - (header is not None))
    estimated_rows = int((len(data) - header_bytes) / max(data_row_bytes, 1.0))
    limits.check_cells(name, estimated_rows, len(float_cols), estimated=True)
    data_rows = [r for r in rows[header is not None :] if len(r) == width]
    int_cols = {i for i in range(width) if data_rows and all(r[i].strip().lstrip("-").isdigit() for r in data_rows)}
    return _CsvLayout(
        name, delim, header, width, float_cols, label_idx, notes, block_size, limits, meta_cols, text_cols, int_cols
    )


def _line_end(data: bytes | memoryview, pos: int) -> int:
    """The offset just after the first line end at or after ``pos`` (or the end of the data)."""
    while pos < len(data):
        window = np.frombuffer(data[pos : pos + (1 << 16)], dtype=np.uint8)
        hits = np.flatnonzero(window == 10)
        if len(hits):
            return pos + int(hits[0]) + 1
        pos += len(window)
    return len(data)
