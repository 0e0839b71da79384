r"""The report's comparison with a second model B (``--compare``): B's rows for A's chunks, and the paired sums.

Lens convention: row ``i`` of the lens is the target distribution when the true label is ``i``; rows sum to 1.
Differences are B − A.

Pairing, as the app's (:func:`~lensdash.compare.pair_predictions`): **by id** when both files have an id column
(:func:`~lensdash.compare.shared_id_column`, decided from the first rows of each file, the same on every process),
**by row order** otherwise.

* By row order (:class:`RowPairedRows`): B is streamed beside A; a chunk of A takes the same rows of B, whatever the
  two files' chunk sizes.
* By id (:class:`IdPairedRows`): A streams in chunks (and torchrun shares) in any order, so B's rows for a chunk of A
  can be anywhere in B. Each process reads B once, whole, before A: its ids into a pandas index (id → B's row; the
  ids are checked: none missing, none repeated), its labels into memory (8 bytes a row) and its scores, in A's class
  order, into a temporary float32 file mapped into memory (``numpy.memmap``: the pages are the operating system's
  cache, not the process's memory, so a B larger than memory still works). A chunk of A then looks its ids up and
  gathers B's rows from the map. Each process marks each row of B it takes (one byte a row; taken twice is
  refused at once); under torchrun the marks are added across processes, so an id repeated in A, in another
  process's share, or a B id that A never names is refused exactly (:meth:`Comparison.check_rows`). The temporary
  file (N × K × 4 bytes, in the system's temporary folder: ``TMPDIR``) is removed when the report ends.

:class:`Comparison` holds the paired sums (sums over samples, so chunks and processes add up exactly) and one
float64 per sample and loss for the paired bootstrap, in A's row order whatever the pairing, so a shuffled B gives
the same ``comparison.json`` as an ordered one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from lensdash._compare_pairing import _empty_ids, _id_index, _listed, shared_id_column
from lensdash._compare_stats import BootstrapInterval, PairedCounts, paired_bootstrap, paired_counts, top1_correct
from lensdash._compare_tables import comparison_from_counts
from lensdash.analysis import FAMILIES, lens_hits, per_class_mean, unlensed_losses
from lensdash.errors import InputError
from lensdash.io import Stream, open_stream
from lensdash.io._source import file_format

#: Rows of :attr:`Comparison.per_class`: sums per true class.
PER_CLASS_ROWS = ("count", "correct_a", "correct_b", "lensed_a", "lensed_b")
#: Rows read from the start of each file to learn its metadata columns (whether both have an id column).
PEEK_ROWS = 1024
#: Default bootstrap resamples (the CLI's ``--bootstrap-resamples``).
BOOTSTRAP_RESAMPLES = 1000

SAME_SAMPLES = "Give the second model's predictions for the same samples"


class ModelBValues(NamedTuple):
    """B's per-sample values on one chunk of A's rows (A's order), for the slices: (N,) each, in the order
    :meth:`lensdash.slices.SliceAccumulator.update` takes them."""

    correct: Tensor  # top-1
    lens_hit: Tensor  # lens-aware rule (lensdash.analysis.lens_hits)
    unlensed_loss: Tensor
    lensed_loss: Tensor


def _row_sharded(path: str | os.PathLike) -> bool:
    """Parquet and ``.npy`` shares are cut by rows (the same rows for two files of N rows); a CSV's by bytes."""
    with open(path, "rb") as handle:
        return file_format(handle.read(8)) in ("parquet", "npy")


def _class_order(stream: Stream, names: tuple[str, ...]) -> Tensor | None:
    """B's column for each of A's classes (None when B's columns are A's), or a refusal naming a few classes."""
    if stream.class_names == names:
        return None
    position = {name: index for index, name in enumerate(stream.class_names)}
    lost = [name for name in names if name not in position]
    extra = [name for name in stream.class_names if name not in set(names)]
    if lost or extra or len(stream.class_names) != len(names):
        shown = ", ".join(repr(n) for n in (lost or extra)[:5])
        more = len(lost or extra) - 5
        raise InputError.build(
            f"the same {len(names):,} classes as the predictions",
            f"{len(stream.class_names):,} classes"
            + (f"; {'missing' if lost else 'not in the predictions'}: {shown}" if shown else "")
            + (f" and {more:,} more" if more > 0 else ""),
            where=f"{stream.name} (--compare)",
            fix="Compare two models' predictions over the same classes.",
        )
    return torch.tensor([position[name] for name in names])


def _metadata_columns(chunk: Any) -> list[str]:
    metadata = None if chunk is None else chunk.metadata
    return [] if metadata is None else [str(c) for c in metadata.columns]


def _column(metadata: pd.DataFrame | None, name: str) -> pd.Series:
    by_name = {} if metadata is None else {str(c): c for c in metadata.columns}
    if name not in by_name:  # the first rows had it, so every chunk has it; a guard, not a user's case
        raise InputError.build(f"an id column {name!r} in every chunk", "none", fix="Report this file as a bug.")
    assert metadata is not None
    return metadata[by_name[name]].reset_index(drop=True)


class RowPairedRows:
    """B's rows for A's chunks, by row number: whatever B's chunk sizes are, :meth:`take` returns A's rows.

    Under ``torchrun`` B is read with A's shard when both files are cut into shares by rows (Parquet, ``.npy``);
    otherwise (a CSV is cut by bytes, so its shares are not another file's) each process reads B from the start
    and skips the rows before its own, which costs reading B's earlier rows but keeps the pairing exact.
    """

    note = "Paired by row order (no id column in both files)."

    def __init__(self, stream: Stream, order: Tensor | None, *, whole_file: bool, to_end: bool) -> None:
        self.name, self.notes = stream.name, [*stream.notes, self.note]
        self._stream = stream
        self._names = stream.class_names
        self._chunks = iter(stream.chunks)
        self._order = order
        self._whole_file, self._to_end = whole_file, to_end
        self._current: Any = None
        self._rows_seen = 0  # rows of B's chunks seen, skipped ones included
        self._end = 0  # one past the last row of B seen
        self.hits: np.ndarray | None = None

    def take(self, row: int, labels: Tensor, metadata: pd.DataFrame | None = None) -> Tensor:
        """B's logits for rows ``row .. row + len(labels) - 1`` (A's columns order), checking B's labels equal A's.

        Raises:
            InputError: B ends before, or its rows do not continue where A's are, or a label differs.
        """
        n = len(labels)
        start, stop = row, row + n
        parts, part_labels = [], []
        while start < stop:
            if self._current is None:
                self._current = next(self._chunks, None)
                if self._current is None:
                    raise InputError.build(
                        f"at least {stop:,} rows (as many as the predictions)",
                        f"{self._end:,}",
                        where=f"{self.name} (--compare)",
                        fix=f"{SAME_SAMPLES}, in the same order (or an id column in both files).",
                    )
                self._rows_seen += len(self._current.labels)
                self._end = max(self._end, self._current.row + len(self._current.labels))
            first, count = self._current.row, len(self._current.labels)
            if first + count <= start:  # rows before this process's share (or already taken)
                self._current = None
                continue
            if first > start:
                raise InputError.build(
                    f"row {start + 1:,} next",
                    f"row {first + 1:,}",
                    where=f"{self.name} (--compare)",
                    fix=f"{SAME_SAMPLES}, in the same order.",
                )
            lo, hi = start - first, min(first + count, stop) - first
            parts.append(self._current.logits[lo:hi])
            part_labels.append(self._current.labels[lo:hi])
            start = first + hi
            if hi == count:
                self._current = None
        logits, labels_b = torch.cat(parts), torch.cat(part_labels).to(labels.device)
        differ = torch.nonzero(labels_b != labels).flatten()
        if differ.numel():
            i = int(differ[0])
            raise InputError.build(
                f"the predictions' label {self._names_of(labels, i)!r} (the same samples in the same order)",
                repr(self._names_of(labels_b, i)),
                where=f"{self.name} (--compare), row {row + i + 1:,}",
                fix=f"{SAME_SAMPLES}, in the same order, or add an id column to both files to pair by id.",
            )
        return logits if self._order is None else logits[:, self._order]

    def _names_of(self, labels: Tensor, i: int) -> str:
        index = int(labels[i])
        names = self._names
        return names[int(self._order[index])] if self._order is not None else names[index]

    def close(self) -> None:
        """Stop reading B (its chunk iterator's threads end)."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def finish(self) -> int:
        """Rows of B this process answers for: its whole share (same shares), or B's length (the last process).

        Summed over processes this is B's row count, which must equal the predictions' (:meth:`Comparison.check_rows`).
        """
        if not self._to_end:
            return 0
        for chunk in self._chunks:
            self._rows_seen += len(chunk.labels)
            self._end = max(self._end, chunk.row + len(chunk.labels))
        return self._end if self._whole_file else self._rows_seen


class IdPairedRows:
    """B's rows for A's chunks, by id: B read whole once (ids indexed, scores in a mapped temporary file).

    See the module docstring for the memory and the checks.
    """

    def __init__(
        self,
        stream: Stream,
        first: Any,
        order: Tensor | None,
        id_a: str,
        id_b: str,
        rank: int,
        *,
        labels_file: bool = False,
    ) -> None:
        self.name = stream.name
        self._labels_file = labels_file
        self.id_a, self.id_b = id_a, id_b
        self._names = tuple(stream.class_names[int(i)] for i in order) if order is not None else stream.class_names
        self._rank = rank
        self._folder = Path(tempfile.mkdtemp(prefix="lensdash-compare-"))
        try:
            self._read(stream, first, order)
        except BaseException:
            self.close()
            raise
        self.notes = [*stream.notes, f"Paired {len(self._ids):,} samples by id (column {id_a!r})."]

    def _read(self, stream: Stream, first: Any, order: Tensor | None) -> None:
        ids: list[pd.Series] = []
        labels: list[np.ndarray] = []
        rows, k = 0, len(self._names)
        path = self._folder / "scores.f32"
        with open(path, "wb") as handle:
            chunk = first
            chunks = iter(stream.chunks)
            while chunk is not None:
                logits = chunk.logits if order is None else chunk.logits[:, order]
                handle.write(np.ascontiguousarray(logits.detach().cpu().numpy(), dtype=np.float32).tobytes())
                labels.append(chunk.labels.cpu().numpy().astype(np.int64, copy=False))
                ids.append(_column(chunk.metadata, self.id_b))
                rows += len(chunk.labels)
                chunk = next(chunks, None)
        values = pd.concat(ids, ignore_index=True) if ids else pd.Series([], dtype=object)
        self._ids = _id_index(values.to_numpy(), f"{self.name} (--compare)", rows)
        self._ids_text: pd.Index | None = None
        self._labels = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
        self._scores = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, k)) if rows else np.zeros((0, k))
        self.hits: np.ndarray | None = np.zeros(rows, dtype=np.uint8)

    @property
    def rows(self) -> int:
        """B's rows."""
        return len(self._ids)

    def _lookup(self, ids: pd.Index) -> np.ndarray:
        index = self._ids
        if not (pd.api.types.is_numeric_dtype(index.dtype) and pd.api.types.is_numeric_dtype(ids.dtype)):
            if self._ids_text is None:  # numbers compare as numbers, anything else as text (as pair_predictions)
                self._ids_text = index.astype(str)
            index = self._ids_text
            ids = ids.astype(str)
        return np.asarray(index.get_indexer(ids), dtype=np.int64)

    def take(self, row: int, labels: Tensor, metadata: pd.DataFrame | None = None) -> Tensor:
        """B's logits for A's rows ``row .. row + len(labels) - 1``, found by A's ids; B's labels must equal A's.

        Raises:
            InputError: an A row without id, an id not in B, an id taken twice, or a label that differs.
        """
        where = f"{self.name} (--compare), id column {self.id_a!r}"
        ids = pd.Index(_column(metadata, self.id_a))
        empty = np.flatnonzero(_empty_ids(ids))
        if len(empty):
            raise InputError.build(
                "an id on every row of the predictions",
                f"{len(empty):,} empty ids in this part",
                where=f"predictions rows {_listed([row + int(r) + 1 for r in empty])}",
                fix="Fill the id column or drop those rows.",
            )
        found = self._lookup(ids)
        absent = np.flatnonzero(found < 0)
        if len(absent):
            raise InputError.build(
                f"every id of the predictions among the {self.rows:,} ids of B",
                f"{len(absent):,} ids only in A in this part ({_listed([ids[int(i)] for i in absent])})",
                where=where,
                fix=f"{SAME_SAMPLES}: export both models on the same evaluation set.",
            )
        assert self.hits is not None
        # taken before (an earlier chunk) or twice in this chunk; marking, not counting, so nothing wraps
        again = np.flatnonzero((self.hits[found] > 0) | pd.Index(found).duplicated())
        if len(again):
            raise InputError.build(
                "each id once in the predictions",
                f"repeated ids: {_listed(list(dict.fromkeys(ids[int(i)] for i in again)))}",
                where=where,
                fix="Ids must name one sample each; remove the duplicate rows.",
            )
        self.hits[found] = 1
        labels_b = torch.from_numpy(self._labels[found]).to(labels.device)
        differ = torch.nonzero(labels_b != labels).flatten()
        if differ.numel():
            shown = [
                f"{ids[int(i)]!r}: {self._names[int(labels[i])]!r} vs {self._names[int(labels_b[i])]!r}"
                for i in differ[:5].tolist()
            ]
            raise InputError.build(
                "the same true label for each id in both files",
                f"{differ.numel():,} ids with another label in B ({'; '.join(shown)})",
                where=where,
                fix="Check that both files hold the same evaluation set with the same ids."
                + (
                    " A separate labels file follows the predictions' row order, so a B paired by id needs its own"
                    " label column."
                    if self._labels_file
                    else ""
                ),
            )
        return torch.from_numpy(np.asarray(self._scores[found], dtype=np.float32))

    def close(self) -> None:
        """Drop the mapped scores and remove the temporary file."""
        self._scores = np.zeros((0, 0), dtype=np.float32)
        shutil.rmtree(self._folder, ignore_errors=True)

    def finish(self) -> int:
        """B's rows, answered for by the first process (summed over processes, B's row count)."""
        return self.rows if self._rank == 0 else 0

    def ids_of(self, rows: np.ndarray) -> list[object]:
        """B's ids of some of its rows (for messages)."""
        return [self._ids[int(r)] for r in rows]


PairedRows = RowPairedRows | IdPairedRows


def open_paired(
    path: str | os.PathLike,
    predictions: str | os.PathLike,
    labels: str | os.PathLike | None,
    names: tuple[str, ...],
    kind: str,
    label_column: str | int | None,
    shard: tuple[int, int],
    chunk_rows: int,
    limits: dict[str, Any],
) -> PairedRows:
    """Open model B for a report of ``predictions``: paired by id when both files have an id column, else by row.

    ``limits`` (``max_cells``, ``max_classes``, ``meta_columns``, ``class_names``) are A's, so B is read as A is.

    Raises:
        InputError: other classes than A's; by id: B's ids missing or repeated.
    """
    rank, world = shard

    def opened(file: str | os.PathLike, part: tuple[int, int], rows: int) -> Stream:
        return open_stream(file, labels, kind=kind, label_column=label_column, shard=part, chunk_rows=rows, **limits)

    whole_b = opened(path, (0, 1), chunk_rows)
    chunks_b = iter(whole_b.chunks)
    first_b = next(chunks_b, None)
    shared = None
    if _metadata_columns(first_b):
        start_a = opened(predictions, (0, 1), min(chunk_rows, PEEK_ROWS))
        chunks_a = iter(start_a.chunks)
        first_a = next(chunks_a, None)
        getattr(chunks_a, "close", lambda: None)()
        shared = shared_id_column(_metadata_columns(first_a), _metadata_columns(first_b))
    if shared is not None:
        order = _class_order(whole_b, names)
        whole_b.chunks = chunks_b
        try:
            return IdPairedRows(whole_b, first_b, order, shared[0], shared[1], rank, labels_file=labels is not None)
        finally:
            getattr(chunks_b, "close", lambda: None)()
    getattr(chunks_b, "close", lambda: None)()
    same_shares = world == 1 or (_row_sharded(predictions) and _row_sharded(path))
    stream = opened(path, shard if same_shares else (0, 1), chunk_rows)
    order = _class_order(stream, names)
    return RowPairedRows(
        stream, order, whole_file=not same_shares or world == 1, to_end=same_shares or rank == world - 1
    )


@dataclass
class Comparison:
    r"""Paired sums of a second model B on the same samples as A (paired by id or row order), streamed and sharded.

    Differences are B − A. ``counts`` and ``per_class`` are sums over samples, so chunks and processes add up
    exactly (``all_reduce``). The paired bootstrap needs the per-sample differences
    :math:`d_n = \ell^B_n - \ell^A_n`: one float64 per sample and loss is kept (``lensed_diff``,
    ``unlensed_diff``, in A's row order) and, under ``torchrun``, gathered on rank 0 in rank order, so the interval is
    the one :func:`~lensdash.compare.paired_bootstrap` gives on the whole data in one process.

    Correctness is top-1 (:func:`~lensdash.compare.top1_correct`), as :func:`~lensdash.compare.comparison_summary`.
    """

    source: str
    counts: PairedCounts
    per_class: Tensor  # (5, K) float64: PER_CLASS_ROWS
    lensed_diff: list[Tensor]
    unlensed_diff: list[Tensor]
    rows_b: int = 0  # rows of B this process answers for (see RowPairedRows.finish); summed across processes
    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = 0
    notes: list[str] = field(default_factory=list)
    id_hits: Tensor | None = None  # by id: (N_B,) int32, 1 where this process took B's row; summed across processes
    paired: IdPairedRows | None = field(default=None, repr=False)  # by id: B's ids, for messages
    _summary: dict | None = field(default=None, repr=False)
    _lens_hits: Tensor | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls, paired: PairedRows, num_classes: int, device: str | torch.device, *, resamples: int, seed: int
    ) -> Comparison:
        """Empty sums for ``num_classes`` classes, comparing with ``paired``'s model B."""
        per_class = torch.zeros(len(PER_CLASS_ROWS), num_classes, dtype=torch.float64, device=device)
        return cls(paired.name, PairedCounts(), per_class, [], [], resamples=resamples, seed=seed, notes=paired.notes)

    def add_(self, analysis_a: Any, logits_b: Tensor, lens: Tensor, family: str) -> ModelBValues:
        """Add one chunk: A's :class:`~lensdash.analysis.Analysis` and B's logits for the same rows.

        B's losses are taken as A's: with A's soft labels (``analysis_a.targets``) when it has them. Returns B's
        per-sample values (for the slices)."""
        labels, targets = analysis_a.labels, analysis_a.targets
        with torch.no_grad():
            target = labels if targets is None else targets.to(logits_b.dtype)
            lensed_b = FAMILIES[family](logits_b, target, lens, reduction="none")
            unlensed_b = unlensed_losses(logits_b, labels, family=family, targets=targets)
        correct_a, correct_b = analysis_a.predicted == labels, top1_correct(logits_b, labels)
        self.counts = self.counts + paired_counts(
            correct_a,
            correct_b,
            unlensed_a=analysis_a.unlensed_loss,
            unlensed_b=unlensed_b,
            lensed_a=analysis_a.lensed_loss,
            lensed_b=lensed_b,
        )
        values = (torch.ones_like(lensed_b), correct_a, correct_b, analysis_a.lensed_loss, lensed_b)
        for index, value in enumerate(values):
            self.per_class[index].index_add_(0, labels, value.double().to(self.per_class.device))
        self.lensed_diff.append(lensed_b.detach().double().cpu() - analysis_a.lensed_loss.detach().double().cpu())
        self.unlensed_diff.append(unlensed_b.detach().double().cpu() - analysis_a.unlensed_loss.detach().double().cpu())
        if self._lens_hits is None or self._lens_hits.device != lens.device:
            self._lens_hits = lens_hits(lens)
        lens_hit = self._lens_hits[labels, logits_b.argmax(dim=1)]
        return ModelBValues(correct_b, lens_hit, unlensed_b, lensed_b)

    def finish_(self, paired: PairedRows) -> None:
        """After the last chunk: the rows of B this process answers for, and (by id) which rows of B were taken."""
        self.rows_b = paired.finish()
        self.id_hits = None if paired.hits is None else torch.from_numpy(paired.hits.astype(np.int32))
        self.paired = paired if isinstance(paired, IdPairedRows) else None

    def add_share_(self, other: Comparison) -> None:
        """Add another share's sums (shares in row order: the per-sample differences are appended)."""
        self.counts = self.counts + other.counts
        self.per_class.add_(other.per_class)
        self.lensed_diff += other.lensed_diff
        self.unlensed_diff += other.unlensed_diff
        self.rows_b += other.rows_b
        if self.id_hits is not None and other.id_hits is not None:
            self.id_hits = self.id_hits + other.id_hits
        self._summary = None

    def all_reduce_(self, device: str | torch.device) -> None:
        """Add every process's sums (``torch.distributed``); the per-sample differences are gathered on rank 0."""
        import torch.distributed as dist

        counts = torch.cat([self.counts.to_tensor(), torch.tensor([float(self.rows_b)])]).to(device)
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
        self.counts, self.rows_b = PairedCounts.from_tensor(counts[:-1].cpu()), int(counts[-1])
        dist.all_reduce(self.per_class, op=dist.ReduceOp.SUM)
        if self.id_hits is not None:
            hits = self.id_hits.to(device=device, dtype=torch.int32)  # int32: no wrap however many processes
            dist.all_reduce(hits, op=dist.ReduceOp.SUM)
            self.id_hits = hits.cpu()
        mine = (torch.cat(self.lensed_diff or [torch.zeros(0)]), torch.cat(self.unlensed_diff or [torch.zeros(0)]))
        gathered: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
        dist.gather_object(mine, gathered, dst=0)
        if gathered is not None:
            self.lensed_diff = [part[0].double() for part in gathered]
            self.unlensed_diff = [part[1].double() for part in gathered]
        else:
            self.lensed_diff, self.unlensed_diff = [], []
        self._summary = None

    def check_rows(self, rows_a: int) -> None:
        """Once every process's rows are added: B has A's samples, each taken once.

        Raises:
            InputError: by id, ids of B that A never names or names twice (in different shares); B's row count is
                not A's.
        """
        if self.id_hits is not None and self.paired is not None:
            hits = self.id_hits.numpy()
            where = f"{self.source} (--compare), id column {self.paired.id_b!r}"
            twice = np.flatnonzero(hits > 1)
            if len(twice):
                raise InputError.build(
                    "each id once in the predictions",
                    f"{len(twice):,} repeated ids: {_listed(self.paired.ids_of(twice[:5]))}",
                    where=where,
                    fix="Ids must name one sample each; remove the duplicate rows.",
                )
            never = np.flatnonzero(hits == 0)
            if len(never):
                raise InputError.build(
                    f"the same ids in both files ({rows_a:,} rows in the predictions, {len(hits):,} in B)",
                    f"{len(never):,} ids only in B ({_listed(self.paired.ids_of(never[:5]))})",
                    where=where,
                    fix=f"{SAME_SAMPLES}: export both models on the same evaluation set.",
                )
        if self.rows_b != rows_a:
            raise InputError.build(
                f"{rows_a:,} rows (as many as the predictions)",
                f"{self.rows_b:,}",
                where=f"{self.source} (--compare)",
                fix=f"{SAME_SAMPLES}, in the same order (or an id column in both files).",
            )

    def summary(self) -> dict[str, Any]:
        """The ``comparison.json`` dict (:func:`~lensdash.compare.comparison_from_counts`), bootstrap included.

        The bootstrap runs once (N × resamples draws) and the result is kept.
        """
        if self._summary is None:
            intervals: dict[str, BootstrapInterval | None] = {"lensed": None, "unlensed": None}
            if self.resamples and self.counts.samples:
                for kind, parts in (("lensed", self.lensed_diff), ("unlensed", self.unlensed_diff)):
                    diff = torch.cat(parts)
                    # paired_bootstrap takes d = b - a; with a = 0 it gets the stored differences exactly.
                    intervals[kind] = paired_bootstrap(
                        torch.zeros_like(diff), diff, resamples=self.resamples, seed=self.seed
                    )
            out = comparison_from_counts(
                self.counts, lensed_diff_interval=intervals["lensed"], unlensed_diff_interval=intervals["unlensed"]
            )
            self._summary = {**out, "source_b": self.source, "correct": "top-1", "notes": self.notes}
        return self._summary

    def per_class_table(self, names: Sequence[str]) -> pd.DataFrame:
        """One row per true class, as :func:`~lensdash.compare.per_class_comparison` with the lensed losses."""
        count, correct_a, correct_b, lensed_a, lensed_b = self.per_class.cpu()
        frame = pd.DataFrame({"class": list(names), "count": count.long().numpy()})
        frame["recall_a"] = per_class_mean(correct_a, count).numpy()
        frame["recall_b"] = per_class_mean(correct_b, count).numpy()
        frame["recall_diff"] = frame["recall_b"] - frame["recall_a"]
        frame["lensed_loss_a"] = per_class_mean(lensed_a, count).numpy()
        frame["lensed_loss_b"] = per_class_mean(lensed_b, count).numpy()
        frame["lensed_loss_diff"] = frame["lensed_loss_b"] - frame["lensed_loss_a"]
        return frame


__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "PER_CLASS_ROWS",
    "Comparison",
    "IdPairedRows",
    "ModelBValues",
    "PairedRows",
    "RowPairedRows",
    "open_paired",
]
