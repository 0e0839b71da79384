"""The fast path for plain CSVs: polars parses the whole file the layout describes, or it declines.

pyarrow's reader in parts (:mod:`lensdash.io._csv_parse`) defines what a CSV means and gives every error message.
polars (when it is installed) parses a plain numeric file with less CPU (0.52 against 0.74 CPU-seconds for all of
``read_predictions`` on ``python -m benchmarks read``'s 105 MB file), so
:func:`~lensdash.io.read_predictions` asks it first, with the layout already decided and its limits already
checked: an explicit schema (class columns float32, a label column of integers int64, other label and metadata
columns text), the layout's delimiter and header. Where polars could read the file differently from pyarrow, this
path declines (``None``) and the pyarrow path reads the file; a file refused after this path (its labels, its
numbers' kind) is read again by the pyarrow path, which makes the refusal with its message, row and column.
Differences found by testing (tests/test_io_polars_fast_path.py):

- polars reads ``nan``, ``NaN`` and ``-nan`` as NaN, pyarrow as null (an empty cell): NaN is refused as not finite,
  so the pyarrow path reads such a file again;
- polars reads an empty cell, a blank line or a short row as nulls where pyarrow refuses the row: any null declines;
- polars refuses spaces after a number, ``NA`` or ``null`` (pyarrow takes them): its error declines;
- pyarrow infers a label or metadata column's type part by part (``+3`` is a float, ``true`` a boolean, a date a
  date). A label column whose first rows hold integers is read as int64 (``+3`` then reads as 3, which pyarrow's
  3.0 settles to); other label and metadata columns are kept only when they hold plain integers
  (``-?[0-9]{1,18}``), typed int64, or plain text (no number, null token, boolean, date or time among their
  values), typed string; anything else declines.

Numbers are parsed straight to float32 by both paths (correctly rounded), so the values are the same bits.
polars runs on its own thread pool: as many threads as cores, or ``POLARS_MAX_THREADS`` when the user set it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from lensdash.io._csv_layout import _CsvLayout, _is_number
from lensdash.io._csv_parse import _NULLS
from lensdash.io._source import _Input

if TYPE_CHECKING:
    import polars as pl


#: A label or metadata column read as int64 by both paths: what pyarrow infers as an integer, and polars casts
#: the same (no sign ``+``, no spaces, no overflow). Matched whole.
_PLAIN_INT = re.compile(r"-?[0-9]{1,18}")


#: Values made only of these characters may be numbers, dates, times or timestamps to pyarrow's inference.
_NUMERIC_LOOKING = re.compile(r"[-+0-9:./ TZtz]*")


#: Files with more columns are left to the pyarrow path, for memory: polars keeps buffers per column and chunk
#: after the parse, and 10,000 x 1,000 peaked at 290 MB over the baseline (pyarrow's path 170 MB; the rule's
#: 3 x float32 + file is 225 MB), where 100,000 x 100 and 20,000 x 500 peak at 213 and 216 MB.
_MAX_COLUMNS = 512


#: A text column with more distinct values than this is left to the pyarrow path (each value is checked in Python).
_MAX_TEXT_VALUES = 65_536


@dataclass(frozen=True)
class _Whole:
    """A whole CSV as read by polars, as the pyarrow path would read it."""

    #: (N, K) float32, row-major: the class columns
    values: np.ndarray
    #: the label column, typed as pyarrow infers it (int64 or string), or None when the file has none
    labels: pa.ChunkedArray | None
    #: the metadata columns, or None
    meta: pa.Table | None


def _read_whole(inp: _Input, layout: _CsvLayout) -> _Whole | None:
    """The whole file read by polars, or None where polars is missing, fails or could read it differently."""
    source = _polars_source(inp)
    if source is None or layout.width > _MAX_COLUMNS or not layout.float_cols:
        return None
    if not all(0 <= i < layout.width for i in [*layout.meta_cols, layout.label_idx or 0]):
        return None  # a column past the first row's (label_column= on a file without a header): the pyarrow path
    try:
        import polars as pl
    except ImportError:
        return None
    k = len(layout.float_cols)
    max_cells = layout.limits.max_cells
    # Every row holds at least ``width`` bytes: past that bound polars could allocate more than the limit allows,
    # so it stops one row after it, and the pyarrow path refuses the file with the limit's message.
    cap = None
    if max_cells is not None and (len(inp.data) // layout.width + 1) * k > max_cells:
        cap = max_cells // k + 1
    try:
        frame = pl.read_csv(
            source,
            has_header=False,
            skip_rows=int(layout.header is not None),
            separator=layout.delim,
            quote_char='"',
            schema=_schema(pl, layout),
            n_rows=cap,
            empty_string_is_null=False,
            raise_if_empty=False,
            encoding="utf8",
        )
    except Exception:
        return None
    except pl.exceptions.PanicException:  # a panic inside polars (a BaseException): the pyarrow path decides
        return None
    if frame.height == 0 or (max_cells is not None and frame.height * k > max_cells):
        return None
    return _checked(frame, layout)


def _polars_source(inp: _Input) -> str | bytes | None:
    """What polars reads without a copy: the file's path, or the ``bytes`` given (None for other buffers)."""
    if inp.path is not None:
        return inp.path
    owner = inp.data.obj
    if isinstance(owner, bytes) and len(owner) == len(inp.data):
        return owner
    return None


def _schema(pl: Any, layout: _CsvLayout) -> dict[str, Any]:
    """Columns by position: the class columns float32, a label column of integers int64, the others text."""
    classes = set(layout.float_cols)
    schema = {f"c{i}": pl.Float32 if i in classes else pl.String for i in range(layout.width)}
    if layout.label_idx is not None and layout.label_idx in layout.int_cols:
        schema[f"c{layout.label_idx}"] = pl.Int64
    return schema


def _checked(frame: pl.DataFrame, layout: _CsvLayout) -> _Whole | None:
    """The frame as the pyarrow path would read it, or None where it could differ.

    NaN is left to the caller: the values are refused as not finite, and every refusal is made again by the
    pyarrow path, which reads ``nan`` as an empty cell.
    """
    classes = frame.select([f"c{i}" for i in layout.float_cols])
    if any(classes.null_count().row(0)):
        return None
    values = classes.to_numpy(order="c")
    del classes
    if values.dtype != np.float32 or not values.flags.c_contiguous:
        return None
    labels = None
    if layout.label_idx is not None:
        labels = _label_column(frame.get_column(f"c{layout.label_idx}"))
        if labels is None:
            return None
    meta = None
    if layout.meta_cols:
        columns = []
        for i in layout.meta_cols:
            series = frame.get_column(f"c{i}")
            column = _text(series) if i in layout.text_cols else _inferred(series)
            if column is None:
                return None
            columns.append(column)
        meta = pa.table(columns, names=layout.meta_names)
    return _Whole(values, labels, meta)


def _label_column(series: pl.Series) -> pa.ChunkedArray | None:
    """The labels as the pyarrow path settles them.

    Read as int64 (polars also takes ``+1``, which pyarrow reads as the float 1.0: the same label once settled,
    and any label refused is refused again by the pyarrow path), or as text typed by :func:`_inferred`.
    """
    if series.dtype.is_integer():
        return None if series.null_count() else _chunked(series.to_arrow())
    return _inferred(series)


def _text(series: pl.Series) -> pa.ChunkedArray | None:
    """A column pyarrow reads as strings (empty cells stay empty strings); None where a row was short."""
    if series.null_count():
        return None
    return _chunked(series.to_arrow().cast(pa.string()))


def _inferred(series: pl.Series) -> pa.ChunkedArray | None:
    """A column whose type pyarrow infers, typed the same: plain integers as int64, plain text as strings.

    None for anything else (floats, booleans, dates, null tokens, empty cells, values with spaces around).
    """
    import polars as pl

    if series.null_count():
        return None
    distinct = series.unique()  # labels take few values: each is checked once
    if len(distinct) <= _MAX_TEXT_VALUES:
        values = distinct.to_list()
        ints = all(_PLAIN_INT.fullmatch(v) for v in values)
    else:
        ints = bool(series.str.contains(f"^{_PLAIN_INT.pattern}$").all())
    if ints:
        return _chunked(series.cast(pl.Int64).to_arrow())
    if len(distinct) > _MAX_TEXT_VALUES or not all(_plain_text(v) for v in values):
        return None
    return _chunked(series.to_arrow().cast(pa.string()))


def _plain_text(value: str) -> bool:
    """Whether pyarrow's inference reads ``value`` as text and nothing else, whatever its neighbours."""
    return (
        value == value.strip()
        and value not in _NULLS
        and value.lower() not in ("true", "false")
        and not _NUMERIC_LOOKING.fullmatch(value)
        and not _is_number(value)
    )


def _chunked(array: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    return array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])
