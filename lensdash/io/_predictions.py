"""The in-memory reader: :func:`read_predictions` and :class:`Predictions`."""

from __future__ import annotations

from collections.abc import Sequence, Sized
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import Tensor

from lensdash.errors import InputError
from lensdash.io._binary import (
    _npy,
    _npz,
    _parquet,
)
from lensdash.io._csv_parse import (
    _csv,
)
from lensdash.io._kinds import (
    _to_logits,
)
from lensdash.io._labels import (
    ClassNames,
    _given_names,
    _label_values,
    _labels_file,
    _soft_targets,
    _SoftLabels,
    _unique_names,
)
from lensdash.io._source import (
    DEFAULT_MAX_CELLS,
    DEFAULT_MAX_CLASSES,
    KINDS,
    LABEL_NAMES,
    Limits,
    Locate,
    Source,
    _decoding,
    _Input,
    _limits,
    _open,
    file_format,
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


@dataclass
class _Read:
    """What a file's format reader found, before labels and kinds are settled."""

    values: np.ndarray
    labels: tuple[object, int, int | None] | None  # (label values, first row, column) or None
    names: list[str] | None
    notes: list[str]
    locate: Locate
    kind: str
    metadata: pa.Table | None = None


def _read_values(
    inp: _Input, kind: str, label_column: str | int | None, limits: Limits, meta_columns: Sequence[str | int] | None
) -> _Read:
    """The values, labels, class names, notes, locator, kind and metadata, by the file's format."""
    name, data = inp.name, inp.data

    def locate(r: int, c: int) -> str:
        return f"{name}, row {r + 1}, column {c + 1}"

    names: list[str] | None
    fmt = file_format(data)
    if fmt == "parquet":
        values, label_info, names, meta, notes = _parquet(name, data, label_column, limits, meta_columns)
        return _Read(values, label_info, names, notes, locate, kind, meta)  # type: ignore[arg-type]
    if fmt == "npy":
        return _Read(_npy(name, data, limits), None, None, [], locate, kind)
    if fmt == "zip":
        values, npz_labels, names, npz_kind = _npz(name, data, limits)
        kind = npz_kind if kind == "auto" and npz_kind is not None else kind
        return _Read(values, (npz_labels, 1, None) if npz_labels is not None else None, names, [], locate, kind)
    values, label_info, names, notes, csv_locate, meta = _csv(inp, label_column, limits, meta_columns)
    return _Read(values, label_info if label_info[0] is not None else None, names, notes, csv_locate, kind, meta)


def _frame(table: pa.Table | None) -> pd.DataFrame | None:
    """Metadata as pandas: text as pandas' string dtype, numbers as read."""
    if table is None:
        return None
    frame = table.to_pandas(types_mapper={pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}.get)
    frame.columns = list(table.column_names)
    return frame


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
    read = _read_values(inp, kind, label_column, limits, meta_columns)
    name, values, label_info, names, notes, locate, kind = (
        inp.name,
        read.values,
        read.labels,
        read.names,
        read.notes,
        read.locate,
        read.kind,
    )
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
    names = _given_names(class_names, names, k, name, limits)
    if labels is not None:
        if label_info is not None:
            notes.append(f"The label column in {name} was ignored in favour of the labels file.")
        label_name, column, first_row, col = _labels_file(labels, max_bytes, limits)
    elif label_info is not None:
        label_name, (column, first_row, col) = name, label_info
    else:
        raise InputError.build(
            f"labels: a column named one of {list(LABEL_NAMES[:6])} or a labels file",
            "neither",
            where=name,
            fix="Add a 'label' column, pass label_column=, or upload the labels as a separate file.",
        )
    count = len(cast(Sized, column))  # a label array or _SoftLabels, typed object along the readers
    if count != n:
        raise InputError.build(
            f"{n} labels (one per prediction row)",
            f"{count}",
            where=label_name,
            fix="The labels and predictions must have the same rows, in the same order.",
        )
    targets = None
    if isinstance(column, _SoftLabels):
        soft_targets, label_array, label_names = _soft_targets(label_name, column, names, k, notes)
        targets = torch.from_numpy(soft_targets)
    else:
        label_array, label_names = _label_values(label_name, column, names, k, first_row, col, notes)
    if label_names is not None:
        names = label_names
    final_names = _unique_names(name, names if names is not None else [str(i) for i in range(k)])
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, refused with its cell
        as_float32 = values.astype(np.float32, copy=False)
    logits, kind = _to_logits(name, as_float32, kind, notes, locate)
    labels_tensor = torch.from_numpy(label_array)
    return Predictions(logits, labels_tensor, final_names, kind, name, notes, _frame(read.metadata), targets)
