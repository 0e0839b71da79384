"""Pairing two models' predictions of the same samples (by an id column, or by row order); see :mod:`lensdash.compare`.

Lens convention (where a lens is taken downstream): row ``i`` is the target distribution when the true label is ``i``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from lensdash.errors import InputError
from lensdash.io import META_NAMES

MAX_LISTED = 5
"""How many mismatching ids or rows an error message lists."""

ID_COLUMNS = META_NAMES
"""Metadata columns that name a sample (the reader's, any case), in the order they are tried for pairing by id."""


def shared_id_column(columns_a: Iterable[object], columns_b: Iterable[object]) -> tuple[str, str] | None:
    """The id column both files have: the first of :data:`ID_COLUMNS` (any case) among A's metadata columns that B
    has too, as (A's name, B's name); ``None`` when they share none (pair by row order).

    Example:
        >>> shared_id_column(["ID", "site"], ["site", "id"])
        ('ID', 'id')
        >>> shared_id_column(["site"], ["site"]) is None
        True
    """
    names_a = [str(c) for c in columns_a]
    in_b = {str(c).lower(): str(c) for c in columns_b}
    for wanted in ID_COLUMNS:
        for column in names_a:
            if column.lower() == wanted and wanted in in_b:
                return column, in_b[wanted]
    return None


@dataclass(frozen=True)
class PairedPredictions:
    """A's and B's predictions of the same samples, in A's row order.

    Attributes:
        logits_a: (N, K) A's logits, as given.
        logits_b: (N, K) B's logits, reordered so row ``n`` is the same sample as A's row ``n``.
        labels: (N,) true class indices (A's, equal to B's after reordering).
        order_b: (N,) int64, B's row for each of A's rows (``arange(N)`` when paired by row order).
        ids: A's ids when paired by id, else ``None``.
        note: how the rows were paired, for the page or the CLI.
    """

    logits_a: Tensor
    logits_b: Tensor
    labels: Tensor
    order_b: Tensor
    ids: np.ndarray | None
    note: str


def _listed(values: Sequence[object]) -> str:
    """The first :data:`MAX_LISTED` values as Python writes them (numpy scalars as plain numbers) and how many more."""
    shown = ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in list(values)[:MAX_LISTED])
    more = len(values) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _id_index(ids: object, name: str, rows: int) -> pd.Index:
    """Ids as a pandas Index, checked: one per row, none missing, none repeated."""
    values = np.asarray(ids.cpu() if isinstance(ids, Tensor) else ids)
    if values.ndim != 1 or len(values) != rows:
        raise InputError.build(
            f"one id per row of {name} ({rows})",
            f"{values.shape[0] if values.ndim else 0} ids of shape {values.shape}",
            where=f"{name} ids",
            fix="Give the id column of the same file as the predictions.",
        )
    index = pd.Index(values)
    missing = np.flatnonzero(_empty_ids(index))
    if len(missing):
        raise InputError.build(
            "an id on every row",
            f"{len(missing)} empty ids",
            where=f"{name} rows {_listed([int(r) + 1 for r in missing])}",
            fix="Fill the id column or drop those rows.",
        )
    repeated = index[index.duplicated()].unique()
    if len(repeated):
        raise InputError.build(
            "each id once",
            f"{len(repeated)} repeated ids: {_listed(list(repeated))}",
            where=f"{name} ids",
            fix="Ids must name one sample each; remove the duplicate rows.",
        )
    return index


def _empty_ids(ids: pd.Index) -> np.ndarray:
    """Missing ids: NaN / None, or empty text (an empty CSV cell read as text)."""
    empty = np.asarray(pd.isna(ids), dtype=bool)
    if not pd.api.types.is_numeric_dtype(ids.dtype):
        empty |= np.asarray(ids.astype(str).str.strip() == "", dtype=bool)
    return empty


def _comparable(a: pd.Index, b: pd.Index) -> tuple[pd.Index, pd.Index]:
    """Numbers compare as numbers (1 == 1.0); anything else compares as text ("007" stays "007")."""
    if pd.api.types.is_numeric_dtype(a.dtype) and pd.api.types.is_numeric_dtype(b.dtype):
        return a, b
    return a.astype(str), b.astype(str)


def _check_pair_inputs(logits_a: Tensor, labels_a: Tensor, logits_b: Tensor, labels_b: Tensor) -> None:
    for name, logits, labels in (("A", logits_a, labels_a), ("B", logits_b, labels_b)):
        if logits.dim() != 2 or labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
            raise InputError.build(
                "logits (N, K) and labels (N,)",
                f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)}",
                where=f"model {name}",
                fix="Pass one row of scores and one label per sample.",
            )
    if logits_a.shape[1] != logits_b.shape[1]:
        raise InputError.build(
            f"the same number of classes in both models (A has {logits_a.shape[1]})",
            f"{logits_b.shape[1]} in B",
            where="model B",
            fix="Compare two models of the same classes.",
        )


def pair_predictions(
    logits_a: Tensor,
    labels_a: Tensor,
    logits_b: Tensor,
    labels_b: Tensor,
    *,
    ids_a: object | None = None,
    ids_b: object | None = None,
    classes_a: Sequence[str] | None = None,
    classes_b: Sequence[str] | None = None,
) -> PairedPredictions:
    """Line up model B's predictions with model A's, refusing predictions that are not of the same samples.

    Rows are matched by id when both ``ids_a`` and ``ids_b`` are given (B is reordered to A's order, so shuffled
    files pair correctly), by row order otherwise. Numeric ids compare as numbers, others as text.

    Args:
        logits_a: (N, K) model A's logits (or log-probabilities).
        labels_a: (N,) int64 true labels read with A.
        logits_b: (M, K) model B's logits.
        labels_b: (M,) int64 true labels read with B.
        ids_a: optional (N,) ids of A's rows (array, list, Series or tensor).
        ids_b: optional (M,) ids of B's rows.
        classes_a: optional class names of A.
        classes_b: optional class names of B; compared with ``classes_a`` when both are given.

    Returns:
        A :class:`PairedPredictions` in A's row order.

    Raises:
        InputError: different class counts or class names, different row counts, missing or repeated ids, ids
            found in one model only (the first few listed, with counts), or labels that differ on a paired row.

    Shape:
        logits (N, K), labels (N,), ids (N,).

    Example:
        >>> a, b = torch.eye(3), torch.eye(3)[[2, 0, 1]]
        >>> p = pair_predictions(a, torch.tensor([0, 1, 2]), b, torch.tensor([2, 0, 1]),
        ...                      ids_a=["x", "y", "z"], ids_b=["z", "x", "y"])
        >>> p.order_b.tolist(), torch.equal(p.logits_b, a)
        ([1, 2, 0], True)
    """
    _check_pair_inputs(logits_a, labels_a, logits_b, labels_b)
    if classes_a is not None and classes_b is not None and tuple(classes_a) != tuple(classes_b):
        diff = [i for i, (x, y) in enumerate(zip(classes_a, classes_b)) if x != y]
        where = f"class {diff[0] + 1}" if diff else "class list"
        raise InputError.build(
            f"the same class names in the same order (A: {_listed(list(classes_a))})",
            f"B: {_listed(list(classes_b))}",
            where=where,
            fix="Both files must name the same classes in the same column order.",
        )
    n, m = logits_a.shape[0], logits_b.shape[0]
    if ids_a is not None and ids_b is not None:
        index_a, index_b = _comparable(_id_index(ids_a, "A", n), _id_index(ids_b, "B", m))
        found = index_b.get_indexer(index_a)
        only_a = index_a[found < 0]
        only_b = index_b.difference(index_a, sort=False)
        if len(only_a) or len(only_b):
            raise InputError.build(
                f"the same sample ids in A ({n} rows) and B ({m} rows)",
                f"{len(only_a)} ids only in A ({_listed(list(only_a))}) and "
                f"{len(only_b)} only in B ({_listed(list(only_b))})",
                where="id column",
                fix="Compare predictions of the same samples: export both models on the same evaluation set.",
            )
        order = torch.as_tensor(found, dtype=torch.int64)
        note = f"Paired {n} samples by id."
        ids = np.asarray(ids_a.cpu() if isinstance(ids_a, Tensor) else ids_a)
    else:
        if n != m:
            raise InputError.build(
                f"the same number of samples in A and B ({n} in A)",
                f"{m} in B",
                where="model B",
                fix="Without an id column in both files rows are paired by order, so both need the same rows; "
                "add an id column to pair by id.",
            )
        order = torch.arange(n)
        note = f"Paired {n} samples by row order (no id column in both files)."
        ids = None
    logits_b = logits_b[order.to(logits_b.device)]
    labels_b = labels_b[order.to(labels_b.device)]
    differ = torch.nonzero(labels_a != labels_b.to(labels_a.device)).flatten().cpu()
    if len(differ):
        rows = differ[:MAX_LISTED].tolist()
        shown = ", ".join(
            f"A row {r + 1} label {int(labels_a[r])} vs B row {int(order[r]) + 1} label {int(labels_b[r])}"
            for r in rows
        )
        more = len(differ) - len(rows)
        raise InputError.build(
            "the same true label for each paired sample",
            f"{len(differ)} of {n} samples with different labels ({shown}{f' and {more} more' if more else ''})",
            where="labels",
            fix="Check that both files hold the same evaluation set"
            + (" and the same ids." if ids is not None else " in the same row order, or add an id column."),
        )
    return PairedPredictions(logits_a, logits_b, labels_a, order, ids, note)


__all__ = ["ID_COLUMNS", "MAX_LISTED", "PairedPredictions", "pair_predictions", "shared_id_column"]
