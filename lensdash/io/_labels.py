"""Labels: from a column or a separate file, as integers 0..K-1 or class names."""

from __future__ import annotations

import csv

import numpy as np
import pyarrow as pa

from lensdash.errors import InputError
from lensdash.io._binary import (
    _npy,
)
from lensdash.io._csv_layout import (
    _decode_head,
    _is_number,
    _label_index,
    _split,
)
from lensdash.io._csv_parse import (
    _csv_table,
    _null_row,
)
from lensdash.io._source import (
    LABEL_NAMES,
    Limits,
    Source,
    _decoding,
    _open,
    file_format,
)


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
        if pa.types.is_binary(column.type):
            raise InputError.build(
                "UTF-8 text labels",
                "bytes that are not UTF-8",
                where=f"{name}{where_col}",
                fix="Save the file as UTF-8.",
            )
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            return _string_labels(name, column, names, k, first_row, col, notes)
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
        try:
            text = pa.array(arr.astype(str) if arr.dtype.kind != "U" else arr, type=pa.string())
        except (pa.ArrowException, UnicodeError, TypeError):
            raise InputError.build(
                "UTF-8 text labels",
                "bytes that are not UTF-8",
                where=f"{name}{where_col}",
                fix="Save the file as UTF-8.",
            ) from None
        return _string_labels(name, text, names, k, first_row, col, notes)
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
    # Range checked in the file's own type: a cast first would wrap 2**63 to a negative number.
    bad = (arr < 0) | (arr >= k)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        hint = " They look 1-based: subtract 1." if arr.min() >= 1 and arr.max() == k else ""
        shown = arr[row].item()
        raise InputError.build(
            f"a class index in 0..{k - 1}",
            f"{int(shown) if float(shown).is_integer() else shown}",
            where=f"{name}, row {row + first_row}{where_col}",
            fix=f"Labels are 0-based indices into the {k} prediction columns.{hint}",
        )
    return arr.astype(np.int64), None


def _string_labels(
    name: str,
    column: pa.Array | pa.ChunkedArray,
    names: list[str] | None,
    k: int,
    first_row: int,
    col: int | None,
    notes: list[str],
) -> tuple[np.ndarray, list[str] | None]:
    """Class names as labels, mapped in arrow's C++ (distinct names once in Python, not every row)."""
    import pyarrow.compute as pc

    where_col = f", column {col + 1}" if col is not None else ""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.utf8_trim_whitespace(column.cast(pa.string())).dictionary_encode()
    distinct = encoded.dictionary.to_pylist()  # in order of first appearance
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    numeric_names = names is None or names == [str(i) for i in range(len(names))]
    if not numeric_names:
        lookup = {n: i for i, n in enumerate(names)}
        out = np.array([lookup.get(v, -1) for v in distinct], dtype=np.int64)[indices]
        if (out < 0).any():
            row = int(np.flatnonzero(out < 0)[0])
            raise InputError.build(
                f"a class name from the header {names[:8]}{'…' if len(names) > 8 else ''}",
                repr(str(distinct[indices[row]])),
                where=f"{name}, row {row + first_row}{where_col}",
                fix="Labels must match the prediction columns' names exactly.",
            )
        return out, None
    if len(distinct) != k:
        shown = sorted(distinct[: 10 * k + 100])[:8]
        raise InputError.build(
            f"{k} distinct label names (one per prediction column) to name the classes",
            f"{len(distinct)}: {shown}{'…' if len(distinct) > 8 else ''}",
            where=f"{name}{where_col}",
            fix="Add a header row with the class names to the predictions file.",
        )
    unique = sorted(distinct)
    notes.append(
        f"No class names in the header: classes are the sorted label names {unique[:8]}{'…' if k > 8 else ''}."
    )
    rank = {v: i for i, v in enumerate(unique)}
    return np.array([rank[v] for v in distinct], dtype=np.int64)[indices], unique


def _labels_file(
    source: Source, max_bytes: int | None, limits: Limits | None = None
) -> tuple[str, object, int, int | None]:
    with _open(source, "labels", max_bytes) as inp, _decoding(lambda: inp.name, "labels"):
        return _labels(inp.name, inp.data, limits or Limits())


def _labels(name: str, data: memoryview, limits: Limits) -> tuple[str, object, int, int | None]:
    if file_format(data) == "npy":
        return name, _npy(name, data, limits, ndim=1), 1, None
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
