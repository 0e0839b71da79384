"""Labels: from a column or a separate file, as integers 0..K-1 or class names."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass

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
    _float_matrix,
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

#: Rows of a soft-label file (one column per class) sum to 1 within this (4 decimals written).
SOFT_LABEL_ATOL = 1e-3


@dataclass(frozen=True)
class _LabelColumn:
    """A label column as read, before it is settled: raw values and where they are in their file."""

    name: str
    #: a pyarrow or numpy column, or :class:`_SoftLabels`
    values: object
    #: 1-based file row of the first label
    first_row: int
    #: 0-based file column (None: the file has one column, or is an array)
    col: int | None

    def __len__(self) -> int:
        return len(self.values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Labels:
    """Labels settled: int64 in 0..K-1, soft targets (N, K) float32 or None, class names they define or None."""

    labels: np.ndarray
    targets: np.ndarray | None = None
    names: list[str] | None = None


@dataclass
class _SoftLabels:
    """A labels file with one numeric column per class: per-sample target distributions (not checked yet)."""

    values: np.ndarray  # (N, W) float64
    names: list[str] | None  # the header's class names, if it has one
    first_row: int  # 1-based file row of values[0]
    first_col: int  # 0-based file column of values[:, 0]

    def __len__(self) -> int:
        return len(self.values)


def _settle(column: _LabelColumn, names: list[str] | None, k: int, notes: list[str], *, discover: bool) -> _Labels:
    """Labels as 0..K-1 (and targets, for soft labels), checked against the K classes and their names.

    ``discover``: class names may come from the labels (every label is at hand); a stream sees one part at a
    time, so it refuses class names that no header defines.
    """
    if isinstance(column.values, _SoftLabels):
        return _soft_targets(column.name, column.values, names, k, notes)
    settled = _label_values(column, names, k, notes)
    if settled.names is not None and not discover:
        raise InputError.build(
            "integer labels, or class names that the prediction file's header lists",
            "class names with no header to match them",
            where=column.name,
            fix="Streaming cannot see every label first: add a header with the class names, or write labels as 0..K-1.",
        )
    return settled


def _soft_targets(name: str, soft: _SoftLabels, names: list[str] | None, k: int, notes: list[str]) -> _Labels:
    """Targets N×K float32 in the predictions' class order, majority labels, class names (or None).

    Each row must be a distribution: values >= 0 summing to 1 within :data:`SOFT_LABEL_ATOL`. The majority
    label is the argmax (ties to the lowest class index).
    """
    values, width = soft.values, soft.values.shape[1]
    if width != k:
        raise InputError.build(
            f"{k} soft-label columns (one per class of the predictions)",
            f"{width}",
            where=name,
            fix="Give one column per class, in the predictions' order or named as their columns.",
        )
    order = list(range(k))
    if soft.names is not None and names is not None:
        lookup = {n: i for i, n in enumerate(soft.names)}
        missing = [n for n in names if n not in lookup]
        if missing:
            raise InputError.build(
                "soft-label columns named as the prediction columns",
                f"{len(missing)} class(es) missing, e.g. {[m[:40] for m in missing[:3]]}",
                where=name,
                fix="Name the soft-label columns exactly as the prediction columns (or leave the header out).",
            )
        order = [lookup[n] for n in names]
    values = values[:, order]
    negative = np.argwhere(values < 0)
    if len(negative):
        r, c = (int(x) for x in negative[0])
        raise InputError.build(
            "soft labels >= 0 (a distribution per row)",
            f"{values[r, c]:g}",
            where=f"{name}, row {r + soft.first_row}, column {order[c] + soft.first_col + 1}",
            fix="Each row gives the share of each class, e.g. annotators' vote fractions.",
        )
    sums = values.sum(axis=1)
    off = np.flatnonzero(~(np.abs(sums - 1.0) <= SOFT_LABEL_ATOL))
    if len(off):
        r = int(off[0])
        raise InputError.build(
            f"soft-label rows summing to 1 (within {SOFT_LABEL_ATOL:g})",
            f"a sum of {sums[r]:.6g}",
            where=f"{name}, row {r + soft.first_row}",
            fix="Normalise each row (divide by its sum); rows of vote counts must be divided by the votes.",
        )
    notes.append(
        "Soft labels (one column per class): losses can use each sample's distribution; "
        "accuracy uses the majority label (the most likely class, ties to the first)."
    )
    majority = np.argmax(values, axis=1).astype(np.int64)
    return _Labels(majority, values.astype(np.float32), soft.names if names is None else None)


def _label_values(label_column: _LabelColumn, names: list[str] | None, k: int, notes: list[str]) -> _Labels:
    """int64 labels in 0..K-1 from a pyarrow or numpy column; maybe class names from string labels."""
    name, column, first_row, col = label_column.name, label_column.values, label_column.first_row, label_column.col
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
            return _string_labels(label_column, column, names, k, notes)
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
        return _string_labels(label_column, text, names, k, notes)
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
    return _Labels(arr.astype(np.int64))


def _string_labels(
    where: _LabelColumn, column: pa.Array | pa.ChunkedArray, names: list[str] | None, k: int, notes: list[str]
) -> _Labels:
    """Class names as labels, mapped in arrow's C++ (distinct names once in Python, not every row)."""
    name, first_row, col = where.name, where.first_row, where.col
    import pyarrow.compute as pc

    where_col = f", column {col + 1}" if col is not None else ""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.utf8_trim_whitespace(column.cast(pa.string())).dictionary_encode()
    distinct = encoded.dictionary.to_pylist()  # in order of first appearance
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    numeric_names = names is None or names == [str(i) for i in range(len(names))]
    if names is not None and not numeric_names:  # (names is None counts as numeric; said again for mypy)
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
        return _Labels(out)
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
    return _Labels(np.array([rank[v] for v in distinct], dtype=np.int64)[indices], None, unique)


def _labels_file(source: Source, max_bytes: int | None, limits: Limits | None = None) -> _LabelColumn:
    with _open(source, "labels", max_bytes) as inp, _decoding(lambda: inp.name, "labels"):
        return _labels(inp.name, inp.data, limits or Limits())


def _labels(name: str, data: memoryview, limits: Limits) -> _LabelColumn:
    if file_format(data) == "npy":
        return _LabelColumn(name, _npy(name, data, limits, ndim=1), 1, None)
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
    col: int | None
    if width == 1:
        col = 0
    else:
        col = _label_index(header, None, name) if header is not None else None
        if col is None:
            col = 1 if header is not None and header[0] in ("", "Unnamed: 0", "index") and width == 2 else None
        if col is None:
            soft = _soft_labels(name, data, delim, first, rows, width, limits)
            if soft is not None:
                return _LabelColumn(name, soft, soft.first_row, None)
            raise InputError.build(
                f"one label column (or one named {LABEL_NAMES[0]!r})",
                f"{width} columns",
                where=name,
                fix="Save the labels alone, e.g. Series.to_csv().",
            )
    table = _csv_table(name, data, delim, header is not None, width, [])
    return _LabelColumn(name, table.column(col), 2 if header is not None else 1, col if width > 1 else None)


def _has_index(first: list[str], width: int) -> bool:
    """pandas' unnamed index column before the classes of a soft-label file."""
    return first[0] in ("", "Unnamed: 0") and width > 2


def _soft_labels(
    name: str, data: memoryview, delim: str, first: list[str], rows: list[list[str]], width: int, limits: Limits
) -> _SoftLabels | None:
    """A numeric table (one column per class, maybe a pandas index first) as soft labels, else None."""
    data_rows = rows if all(_is_number(t) for t in first) else rows[1:]
    header = None if data_rows is rows else first
    if not data_rows or not all(_is_number(t) for r in data_rows for t in r):
        return None
    if any(float(t.strip().strip('"')) > 1 for r in data_rows for t in r[1 if _has_index(first, width) else 0 :]):
        return None  # not shares of a whole (e.g. an id and a label): refused as a labels file with many columns
    skip_index = _has_index(first, width)
    cols = list(range(1 if skip_index else 0, width))
    limits.check_classes(name, len(cols), "columns")
    table = _csv_table(name, data, delim, header is not None, width, cols)
    first_row = 2 if header is not None else 1
    limits.check_cells(name, table.num_rows, len(cols))
    values = _float_matrix(name, table, cols, first_row, dtype=np.float64)
    names = [header[i] for i in cols] if header is not None else None
    return _SoftLabels(values, names, first_row, cols[0])


ClassNames = Sequence[str] | str | os.PathLike | bytes


def _given_names(
    given: ClassNames | None, file_names: list[str] | None, k: int, where: str, limits: Limits
) -> list[str] | None:
    """The class names to use: ``given`` (a list, or a file with one name per line) or the file's own.

    ``given`` must have K names; when the file names its columns too, they must be the same.
    """
    if given is None:
        return file_names
    if isinstance(given, (str, os.PathLike, bytes)):
        with _open(given, "class names", None) as inp, _decoding(lambda: inp.name, "class names"):
            limits.check_classes(inp.name, bytes(inp.data[: 1 << 26]).count(b"\n"), "lines", slack=1)
            text = bytes(inp.data).decode("utf-8-sig")
            source = inp.name
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names, source = [str(n) for n in given], "class_names"
    if len(names) != k:
        raise InputError.build(
            f"{k} class names (one per prediction column)",
            f"{len(names)}",
            where=source,
            fix="Give one name per line, in the order of the prediction columns.",
        )
    if file_names is not None and list(file_names) != names:
        first = next(i for i, (a, b) in enumerate(zip(file_names, names, strict=True)) if a != b)
        raise InputError.build(
            "class names equal to the file's own column names",
            f"{names[first][:40]!r} for column {first + 1} named {file_names[first][:40]!r}",
            where=f"{where} and {source}",
            fix="Leave class_names out for files that name their columns, or give the same names.",
        )
    return names


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
