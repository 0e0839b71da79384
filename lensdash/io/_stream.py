r"""Predictions too large to hold: read chunk by chunk, each process of a sharded run its own range.

:func:`open_stream` reads CSV, Parquet or ``.npy`` files (paths) with the same
rules and the same :class:`~lensdash.InputError` messages as
:func:`~lensdash.read_predictions`, but yields :class:`Chunk`\ s whose size is
bounded by ``chunk_rows`` (or one CSV part of ``_csv_parse.PART_BYTES``), so memory does not grow with the file.
With ``shard=(rank, world_size)`` a process reads only its share: a byte range
cut at line ends (CSV), a range of row groups (Parquet) or of rows (``.npy``).
Parquet is read a row group at a time, so its memory is bounded by the writer's row-group size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from lensdash.errors import InputError
from lensdash.io import _csv_parse
from lensdash.io._kinds import _to_logits
from lensdash.io._labels import ClassNames, _LabelColumn, _Labels, _settle, _unique_names
from lensdash.io._reader import _frame, _Layout, _layout, _Request, _Rows, _separate_labels
from lensdash.io._source import (
    DEFAULT_MAX_CELLS,
    DEFAULT_MAX_CLASSES,
    KINDS,
    Limits,
    Locate,
    _decoding,
    _Input,
    _limits,
    _open,
)

#: Rows per chunk for Parquet and ``.npy`` (CSV chunks are parts of about ``PART_BYTES``).
CHUNK_ROWS = 100_000


@dataclass
class Chunk:
    """Consecutive samples: ``row`` is the 0-based index of the first among all samples of the file."""

    row: int
    logits: Tensor
    labels: Tensor
    done: int  # progress units (bytes or rows of this shard) read so far
    #: the chunk's rows of the columns kept aside (text, ids, ``meta_columns=``), or None
    metadata: pd.DataFrame | None = None
    #: the chunk's rows of the per-sample target distributions (n, K) float32 from a soft-label file
    #: (``labels`` is then their majority label: the argmax, ties to the lowest index), or None;
    #: as :attr:`~lensdash.io.Predictions.targets`
    targets: Tensor | None = None


@dataclass
class Stream:
    """A file opened for streaming: what is known before reading it, and its chunks (an iterator)."""

    name: str
    class_names: tuple[str, ...]
    kind: str
    total: int  # progress units in this shard: bytes of a CSV, rows of Parquet and .npy
    chunks: Iterator[Chunk]
    notes: list[str] = field(default_factory=list)
    label_count: int | None = None  # labels in a separate file, to compare with the rows read


def open_stream(
    path: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    *,
    kind: str = "auto",
    label_column: str | int | None = None,
    shard: tuple[int, int] = (0, 1),
    chunk_rows: int = CHUNK_ROWS,
    max_cells: int | None = DEFAULT_MAX_CELLS,
    max_classes: int | None = DEFAULT_MAX_CLASSES,
    meta_columns: Sequence[str | int] | None = None,
    class_names: ClassNames | None = None,
) -> Stream:
    """Open predictions for chunked reading; see the module docstring.

    A soft-label file (one column per class, see :func:`~lensdash.read_predictions`) gives each chunk its rows
    of :attr:`Chunk.targets` and ``labels`` their majority label.

    ``kind="auto"`` is decided on the file's first rows (the same rule as
    :func:`~lensdash.read_predictions`) and then enforced on every chunk, so a
    file whose later rows are not probabilities stops with the row that is not.
    Labels come from a label column, or a separate ``labels`` file that is read
    whole (N integers) and sliced. ``max_cells`` and ``max_classes`` bound the
    file's rows × classes and classes as for :func:`~lensdash.read_predictions`
    (checked before reading, from the header, footer or first line, and again as rows are read).
    Metadata columns (``meta_columns=``, text, common id names) are kept aside as for
    :func:`~lensdash.read_predictions`, each chunk's rows in :attr:`Chunk.metadata`. ``class_names``
    (a list, or a file with one name per line) names the columns of files without names (``.npy``).
    An ``.npz`` archive is decompressed whole and handed out in chunks, so it stays bounded by ``max_cells``, or by
    :data:`DEFAULT_MAX_CELLS` when ``max_cells`` is ``None`` (other formats are then read without a bound on their
    rows: a stream holds one chunk at a time).

    Raises:
        InputError: unreadable files; in the chunks, bad rows with their row and column.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "p.csv"
        >>> _ = path.write_text("a,b,label\\n0.9,0.1,a\\n0.2,0.8,b\\n")
        >>> s = open_stream(path)
        >>> s.kind, [c.labels.tolist() for c in s.chunks]
        ('probs', [[0, 1]])
    """
    if kind not in KINDS:
        raise InputError.build(
            f"kind in {KINDS}", repr(kind), fix="'auto' detects probabilities, log-probabilities and logits."
        )
    rank, world = shard
    if not 0 <= rank < world:
        raise InputError.build(
            "a shard (rank, world size) with 0 <= rank < world size",
            str(shard),
            fix="Run under torchrun, or leave shard alone.",
        )
    if chunk_rows < 1:
        raise InputError.build("chunk_rows >= 1", str(chunk_rows), fix="Give a positive number of rows per chunk.")
    limits = _limits(max_cells, max_classes)
    # An .npz is decompressed whole: bounded even when the other formats are not (one chunk at a time).
    whole = limits if limits.max_cells is not None else Limits(DEFAULT_MAX_CELLS, limits.max_classes)
    request = _Request(
        kind,
        label_column,
        limits,
        meta_columns,
        class_names,
        file_labels=labels is None,
        shard=shard,
        chunk_rows=chunk_rows,
        whole_limits=whole,
    )
    inp = _open(path, "predictions", None)
    try:
        with _decoding(lambda: inp.name, "predictions"):
            stream = _open_stream(inp, labels, request)
    except BaseException:
        inp.close()
        raise
    stream.chunks = _guarded(stream.name, stream.chunks)
    return stream


def _guarded(name: str, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    with _decoding(lambda: name, "predictions"):
        yield from chunks


def _open_stream(inp: _Input, labels_path: str | os.PathLike | None, request: _Request) -> Stream:
    """The file's layout, its labels settled before the first chunk, the kind decided on its first rows."""
    request = replace(request, part_bytes=_csv_parse.PART_BYTES)  # read now: tests patch it
    layout = _layout(inp, request)
    notes = layout.notes
    column = _separate_labels(layout, labels_path, None, request.limits)
    separate = _Separate(column, layout) if column is not None else None
    if separate is None and not layout.has_labels:
        raise layout.refuse_no_labels()
    checker = _Checker(layout.name, layout.kind, layout.head(), layout.locate, notes)
    names = separate.settled.names if separate is not None and separate.settled.names is not None else layout.names
    class_names = _unique_names(layout.name, names if names is not None else [str(i) for i in range(layout.k)])

    def chunks() -> Iterator[Chunk]:
        try:
            for part in layout.parts():
                yield _chunk(layout, part, separate, checker)
        finally:
            inp.close()

    label_count = len(separate.settled.labels) if separate is not None else None
    return Stream(layout.name, class_names, checker.kind, layout.total, chunks(), notes, label_count)


def _chunk(layout: _Layout, part: _Rows, separate: _Separate | None, checker: _Checker) -> Chunk:
    """A part's logits under the stream's kind, its labels (and targets), its metadata."""

    def locate(r: int, c: int) -> str:
        return layout.locate(r + part.row, c)

    logits = checker(part.values, locate)
    stop = part.row + len(logits)
    targets = None
    if separate is not None:
        labels, targets = separate.rows(part.row, stop)
    else:
        column = _LabelColumn(layout.name, part.labels, layout.first_row + part.row, layout.label_col)
        labels = torch.from_numpy(_settle(column, layout.names, layout.k, [], discover=False).labels)
    return Chunk(part.row, logits, labels, part.done, _frame(part.meta), targets)


class _Separate:
    """Labels of a separate file (or soft labels), read and settled whole, handed out by row range."""

    def __init__(self, column: _LabelColumn, layout: _Layout) -> None:
        self.settled: _Labels = _settle(column, layout.names, layout.k, layout.notes, discover=False)
        self.name = column.name

    def rows(self, start: int, stop: int) -> tuple[Tensor, Tensor | None]:
        labels, targets = self.settled.labels, self.settled.targets
        if stop > len(labels):
            raise InputError.build(
                "one label per prediction row",
                f"{len(labels)} labels but at least {stop} rows",
                where=self.name,
                fix="The labels and predictions must have the same rows.",
            )
        rows_targets = torch.from_numpy(targets[start:stop]) if targets is not None else None
        return torch.from_numpy(labels[start:stop]), rows_targets


class _Checker:
    """Turns chunk values into logits under one kind, decided on the first rows."""

    def __init__(self, name: str, kind: str, first: np.ndarray, locate: Locate, notes: list[str]) -> None:
        self.name = name
        self.kind = _to_logits(name, first.astype(np.float32, copy=True), kind, notes, locate).kind

    def __call__(self, values: np.ndarray, locate: Locate) -> Tensor:
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, refused with its cell
            as_float32 = values.astype(np.float32, copy=False)
        return _to_logits(self.name, as_float32, self.kind, [], locate).values
