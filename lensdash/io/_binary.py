"""Binary formats: ``.npy``, ``.npz`` and Parquet, their sizes checked from headers and footers before decoding."""

from __future__ import annotations

import io
import math
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:  # pyarrow.parquet is imported when a Parquet file is read
    import pyarrow.parquet as pq

from lensdash.errors import InputError
from lensdash.io._csv_layout import (
    _label_index,
)
from lensdash.io._source import (
    _DECODE_ERRORS,
    META_NAMES,
    Limits,
    check_meta_count,
)


@dataclass(frozen=True)
class _NpyHeader:
    """What a ``.npy`` header says: the array's shape, whether it is column-major, its dtype."""

    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype


def _npy_header(name: str, handle: BinaryIO) -> _NpyHeader:
    """A ``.npy`` header, read without touching the data (the handle is left at the data's start)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # numpy's note on Python 2 headers: read all the same
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:  # 3.0 only differs for structured dtypes with non-Latin-1 names, which are refused anyway
                raise ValueError(f"format version {version}")
    except (ValueError, OSError, *_DECODE_ERRORS) as exc:
        raise InputError.build(
            "a numeric .npy array",
            f"a file numpy cannot read ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})",
            where=name,
            fix="Save it with numpy.save(path, array).",
        ) from None
    if dtype.hasobject or dtype.kind not in "fiubUS" or dtype.itemsize == 0 or dtype.fields is not None:
        raise InputError.build(
            "a numeric .npy array",
            f"dtype {dtype}",
            where=name,
            fix="Save numbers (float or int) with numpy.save(path, array).",
        )
    return _NpyHeader(tuple(int(d) for d in shape), bool(fortran), dtype)


def _check_array_shape(name: str, shape: tuple[int, ...], dtype: np.dtype, limits: Limits, ndim: int) -> None:
    """Refuse an array whose header declares more than ``limits`` allow, before its data is read."""
    if ndim == 1 and len(shape) == 2 and shape[1] == 1:
        shape = (shape[0],)
    if len(shape) != ndim:
        raise InputError.build(
            "an N×K numeric array" if ndim == 2 else "labels as one column",
            f"shape {shape}, dtype {dtype}",
            where=name,
            fix="One row per sample, one column per class." if ndim == 2 else "Give one label per row.",
        )
    rows, k = (shape[0], shape[1]) if ndim == 2 else (shape[0], 2)
    limits.check_cells(name, rows, k)
    if dtype.kind in "US":  # text labels: bound their bytes as the cells' (4 bytes each) are bounded
        budget = None if limits.max_cells is None else 4 * limits.max_cells
        if budget is not None and rows * dtype.itemsize > budget:
            raise InputError.build(
                f"at most {budget:,} bytes of text labels (4 × max_cells)",
                f"{rows:,} × {dtype.itemsize:,} bytes",
                where=name,
                fix="Raise max_cells=N (command line: --max-cells N), or write labels as integers 0..K-1.",
            )


def _array_from(
    name: str, data: bytes | memoryview, shape: tuple[int, ...], fortran: bool, dtype: np.dtype
) -> np.ndarray:
    """The array from its raw bytes (a copy: the source's memory may be released)."""
    count = math.prod(shape)
    if len(data) < count * dtype.itemsize:
        raise InputError.build(
            f"{count * dtype.itemsize:,} bytes of data for shape {shape}",
            f"{len(data):,}",
            where=name,
            fix="The file is truncated; save it again.",
        )
    flat = np.frombuffer(data, dtype=dtype, count=count)
    return (flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)).copy(order="C")


def _npy(name: str, data: bytes | memoryview, limits: Limits, ndim: int = 2) -> np.ndarray:
    handle = io.BytesIO(data[: 1 << 20])  # the header; numpy refuses headers over 10 KB anyway
    head = _npy_header(name, handle)
    shape, fortran, dtype = head.shape, head.fortran, head.dtype
    _check_array_shape(name, shape, dtype, limits, ndim)
    return _array_from(name, data[handle.tell() :], shape, fortran, dtype)


_NPZ_PREDICTIONS = ("logits", "probs", "log_probs", "predictions", "scores", "outputs")


_NPZ_LABELS = ("labels", "label", "targets", "target", "y")


def _npz_member(name: str, archive: zipfile.ZipFile, key: str, limits: Limits, ndim: int) -> np.ndarray:
    """One array of an archive, its header checked against ``limits`` before its data is decompressed.

    The zip directory's sizes can lie: only as many bytes as the array's header declares are
    decompressed (``ZipExtFile.read(n)`` stops there), and a member that ends sooner is truncated.
    """
    where = f"{name}, array {key!r}"
    with archive.open(key + ".npy") as member:
        head = _npy_header(where, member)  # type: ignore[arg-type]
        shape, fortran, dtype = head.shape, head.fortran, head.dtype
        _check_array_shape(where, shape, dtype, limits, ndim)
        return _array_from(where, member.read(math.prod(shape) * dtype.itemsize), shape, fortran, dtype)


@dataclass(frozen=True)
class _NpzArrays:
    """An archive's arrays: the predictions, the labels, the class names and the kind its array's name says."""

    values: np.ndarray
    labels: np.ndarray | None
    names: list[str] | None
    #: ``'logits'``, ``'probs'`` or ``'log_probs'`` when the predictions' array is named so, else None
    kind: str | None


def _npz(name: str, data: bytes | memoryview, limits: Limits) -> _NpzArrays:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        keys = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        pred_key = next((k for k in _NPZ_PREDICTIONS if k in keys), keys[0] if len(keys) == 1 else None)
        if pred_key is None:
            raise InputError.build(
                f"an array named one of {list(_NPZ_PREDICTIONS)}",
                f"the arrays {keys[:8]}",
                where=name,
                fix="Save with numpy.savez(path, logits=..., labels=...).",
            )
        label_key = next((k for k in _NPZ_LABELS if k in keys), None)
        values = _npz_member(name, archive, pred_key, limits, 2)
        labels = _npz_member(name, archive, label_key, limits, 1) if label_key else None
        names = None
        if "class_names" in keys:
            # numpy stores 4 bytes a character: room for names of up to 128 characters at the most classes allowed
            class_limits = Limits(128 * (limits.max_classes or values.shape[1]), limits.max_classes)
            names = [str(c) for c in _npz_member(name, archive, "class_names", class_limits, 1)]
        kind = pred_key if pred_key in ("logits", "probs", "log_probs") else None
        return _NpzArrays(values, labels, names, kind)
    except (ValueError, OSError, RuntimeError, NotImplementedError, *_DECODE_ERRORS) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError.build(
            "a numeric .npz archive",
            f"a file numpy cannot read ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})",
            where=name,
            fix="Save it with numpy.savez.",
        ) from None


@dataclass(frozen=True)
class _ParquetColumns:
    """Which columns of a Parquet file are classes, labels and metadata (0-based indices into ``header``)."""

    float_cols: list[int]
    label_idx: int | None
    header: list[str]
    meta_cols: list[int]


def _parquet_columns(
    name: str, schema: pa.Schema, label_column: str | int | None, meta_columns: Sequence[str | int] | None = None
) -> _ParquetColumns:
    """Which Parquet columns are classes (numeric), which holds the labels and which are metadata.

    Metadata: columns named by ``meta_columns`` (names or 0-based indices), with a common id name
    (:data:`~lensdash.io.META_NAMES`), or not numeric. pandas' stored index ``__index_level_0__`` is left out.
    """
    header = [str(c) for c in schema.names]
    label_idx = _label_index(header, label_column, name)
    lowered = [h.strip().lower() for h in header]
    meta = {i for i, h in enumerate(lowered) if h in META_NAMES}
    for wanted in meta_columns or ():
        if isinstance(wanted, int) and not isinstance(wanted, bool) and 0 <= wanted < len(header):
            meta.add(wanted)
        elif isinstance(wanted, str) and wanted.strip().lower() in lowered:
            meta.add(lowered.index(wanted.strip().lower()))
        else:
            raise InputError.build(
                f"a column named {str(wanted)[:60]!r} (meta_columns)",
                f"the columns {header[:8]}{'…' if len(header) > 8 else ''}",
                where=name,
                fix="Check the metadata column's name, or give its 0-based index.",
            )
    for i in range(len(header)):
        kind = schema.field(i).type
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)) and header[i] != "__index_level_0__":
            meta.add(i)
    meta.discard(label_idx)  # type: ignore[arg-type]
    skip = meta | ({label_idx} if label_idx is not None else set())
    skip |= {i for i, h in enumerate(header) if h == "__index_level_0__"}
    float_cols = [i for i in range(len(header)) if i not in skip]
    meta_cols = sorted(meta)
    check_meta_count(name, len(meta_cols))
    return _ParquetColumns(float_cols, label_idx, header, meta_cols)


def _check_meta_bytes(name: str, handle: pq.ParquetFile, meta_cols: list[int], limits: Limits) -> None:
    """Refuse metadata whose decoded size (from the footer) is over the cell limit's bytes (4 per cell)."""
    if limits.max_cells is None or not meta_cols:
        return
    meta = handle.metadata
    size = sum(
        meta.row_group(g).column(i).total_uncompressed_size for g in range(meta.num_row_groups) for i in meta_cols
    )
    if size > 4 * limits.max_cells:
        raise InputError.build(
            f"metadata columns of at most {4 * limits.max_cells:,} bytes decoded",
            f"{size:,} bytes",
            where=name,
            fix="Keep a few short metadata columns (ids, file names), or raise max_cells.",
        )


def _parquet_file(name: str, source: object) -> pq.ParquetFile:
    import pyarrow.parquet as pq

    try:  # memory: one row group's pages at a time, not the file
        return pq.ParquetFile(source, pre_buffer=False, buffer_size=1 << 20)
    except (pa.ArrowException, OSError) as exc:
        raise InputError.build(
            "a Parquet file",
            f"one pyarrow cannot read ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})",
            where=name,
            fix="Write it with DataFrame.to_parquet().",
        ) from None
