"""The in-memory reader: :func:`read_predictions` and :class:`Predictions`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import Tensor

from lensdash.errors import InputError
from lensdash.io._csv_parse import _concat_meta
from lensdash.io._kinds import _to_logits
from lensdash.io._labels import ClassNames, _LabelColumn, _settle, _unique_names
from lensdash.io._reader import (
    _frame,
    _labels_in_file,
    _Layout,
    _layout,
    _refuse_count,
    _Request,
    _separate_labels,
)
from lensdash.io._source import (
    DEFAULT_MAX_CELLS,
    DEFAULT_MAX_CLASSES,
    KINDS,
    Limits,
    Source,
    _decoding,
    _Input,
    _limits,
    _open,
)


@dataclass
class Predictions:
    """Predictions ready for the loss: ``logits`` (N, K) float32, ``labels`` (N,) int64."""

    logits: Tensor
    labels: Tensor
    class_names: tuple[str, ...]
    kind: str
    source: str = "predictions"
    notes: list[str] = field(default_factory=list)
    #: columns kept aside (text, ids, ``meta_columns=``), one row per sample, or None
    metadata: pd.DataFrame | None = None
    #: per-sample target distributions (N, K) float32 from a soft-label file (``labels`` is then their
    #: majority label: the argmax, ties to the lowest index), or None
    targets: Tensor | None = None

    @property
    def num_samples(self) -> int:
        return int(self.logits.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])


def read_predictions(
    source: Source,
    labels: Source | None = None,
    *,
    kind: str = "auto",
    label_column: str | int | None = None,
    max_bytes: int | None = None,
    max_cells: int | None = DEFAULT_MAX_CELLS,
    max_classes: int | None = DEFAULT_MAX_CLASSES,
    meta_columns: Sequence[str | int] | None = None,
    class_names: ClassNames | None = None,
) -> Predictions:
    r"""Read predictions (and labels) from CSV, Parquet, ``.npy`` or ``.npz``.

    CSV: a header of class names with a label column (``label``, ``labels``,
    ``target``, ``y``, ``true``, ``class``, any case, anywhere; or ``label_column``),
    pandas' ``to_csv()`` output with its index column, or a headerless numeric
    table (``numpy.savetxt``) with the labels in a separate file. Comma,
    semicolon or tab; a UTF-8 BOM, CRLF, quoted numbers and spaces are fine.

    Args:
        source: predictions: a path, ``bytes`` or a binary file object.
        labels: a separate labels file: one column, with or without a header; or soft labels, one
            numeric column per class (named as the prediction columns, or in their order), each row a
            distribution (values >= 0 summing to 1 within ``SOFT_LABEL_ATOL`` = 1e-3), returned as
            ``targets`` with ``labels`` their majority label.
        kind: ``'auto'`` (see the module's detection rule), ``'logits'``,
            ``'probs'`` or ``'log_probs'``.
        label_column: name or 0-based index of the label column.
        max_bytes: refuse larger files before parsing them.
        max_cells: refuse files of more rows × classes (from the header, footer or first line, before
            decoding; default :data:`DEFAULT_MAX_CELLS`, 800 MB as float32). ``None``: no limit.
        max_classes: refuse files of more classes (default :data:`DEFAULT_MAX_CLASSES`). ``None``: no limit.
        meta_columns: columns (names or 0-based indices) to keep aside as metadata even when numeric.
            Text columns, and columns named ``id``, ``sample_id``, ``index``, ``idx``, ``filename`` or
            ``path`` (any case) are metadata without it (CSV with a header, Parquet); at most 64.
        class_names: names of the prediction columns, for files without them (``.npy``, a headerless CSV):
            a list, or a file (path or bytes) with one name per line. A file that names its columns must
            name them the same.

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
    limits = _limits(max_cells, max_classes)
    with _open(source, "predictions", max_bytes) as inp, _decoding(lambda: inp.name, "predictions"):
        return _predictions(inp, labels, kind, label_column, max_bytes, limits, meta_columns, class_names)


def _predictions(
    inp: _Input,
    labels: Source | None,
    kind: str,
    label_column: str | int | None,
    max_bytes: int | None,
    limits: Limits,
    meta_columns: Sequence[str | int] | None = None,
    class_names: ClassNames | None = None,
) -> Predictions:
    """The file's rows in one float32 array, its labels and kind settled on all of them.

    Read whole by the layout's faster reader (polars, for CSV) where it accepts the file, else the parts a stream
    yields gathered.
    """
    request = _Request(kind, label_column, limits, meta_columns, class_names, file_labels=labels is None)
    layout = _layout(inp, request)
    separate = _separate_labels(layout, labels, max_bytes, limits)
    if separate is None and not layout.has_labels:
        raise layout.refuse_no_labels()
    fast = _read_whole(layout, separate)
    return fast if fast is not None else _settled(layout, separate, _gather(layout), list(layout.notes))


def _read_whole(layout: _Layout, separate: _LabelColumn | None) -> Predictions | None:
    """The file read whole by the layout's faster reader, or None where it declines or the file is refused.

    A refusal is made again by the parts' reader, whose messages are the reference (the faster reader reads
    ``nan`` as NaN, refused here as not finite, where the parts' reader refuses an empty cell). The faster
    reader's arrays are dropped before that.
    """
    if layout.whole is None:
        return None
    try:
        whole = layout.whole()
        if whole is None:
            return None
        gathered = _Gathered(whole.values, [whole.labels], [whole.meta])
        del whole
        return _settled(layout, separate, gathered, list(layout.notes))
    except InputError:
        return None


def _settled(layout: _Layout, separate: _LabelColumn | None, gathered: _Gathered, notes: list[str]) -> Predictions:
    """Labels and kind settled on all rows: the predictions."""
    name, k, out = layout.name, layout.k, gathered.values
    n = len(out)
    column = separate if separate is not None else _labels_in_file(layout, gathered.labels)
    if len(column) != n:
        raise _refuse_count(n, len(column), column.name)
    settled = _settle(column, layout.names, k, notes, discover=True)
    names = settled.names if settled.names is not None else layout.names
    final_names = _unique_names(name, names if names is not None else [str(i) for i in range(k)])
    logits = _to_logits(name, out, layout.kind, notes, layout.locate)
    metas = [m for m in gathered.metas if m is not None]
    meta = _frame(_concat_meta(metas)) if metas else None
    targets = torch.from_numpy(settled.targets) if settled.targets is not None else None
    labels_tensor = torch.from_numpy(settled.labels)
    return Predictions(logits.values, labels_tensor, final_names, logits.kind, name, notes, meta, targets)


@dataclass
class _Gathered:
    """A file's rows gathered: (N, K) float32 values, and its parts' raw labels and metadata."""

    values: np.ndarray
    labels: list[object | None]
    metas: list[pa.Table | None]


def _gather(layout: _Layout) -> _Gathered:
    """The parts a stream yields gathered into one float32 array."""
    name, k = layout.name, layout.k
    # One allocation: the rows the file says, or a bound (untouched pages cost no memory; resized at the end).
    out = np.empty((layout.rows if layout.rows is not None else layout.max_rows, k), dtype=np.float32)
    n, label_parts, metas = 0, [], []
    for part in layout.parts():
        n = part.row + len(part.values)
        if n > len(out):
            raise InputError.build(f"{len(out):,} rows, as the file says", "more", where=name, fix="Save it again.")
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, refused with its cell
            out[part.row : n] = part.values
        label_parts.append(part.labels)
        metas.append(part.meta)
    if layout.rows is not None and n != layout.rows:
        raise InputError.build(f"{layout.rows:,} rows, as the file says", f"{n:,}", where=name, fix="Save it again.")
    if n == 0:
        raise InputError.build("at least one data row", "none", where=name, fix="The file has no predictions.")
    out.resize((n, k), refcheck=False)
    return _Gathered(out, label_parts, metas)
