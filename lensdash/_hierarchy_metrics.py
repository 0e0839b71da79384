r"""Hierarchical metrics: mistake severity, hdist@k, the cost-aware decision and accuracy per level, streamed.

``d`` is the distance of :meth:`lensdash.hierarchy.Hierarchy.distances` (height of the lowest common ancestor).
Public names are re-exported by :mod:`lensdash.hierarchy`; the sums are exact whatever the chunking, so a stream
(or an all-reduce across processes) gives the whole-data numbers.

Speed at K = 1,000 and N = 50,000 (``python -m benchmarks.hierarchy``) comes from doing each step once per chunk,
in the cheapest form: one ``topk`` of the logits in their own dtype gives the prediction and every ``hdist@k``
(a gather of ``d`` on the top indices, cumulated along the ranks); the level accuracies compare precomputed
class → ancestor-index arrays; the bookkeeping is numpy (torch's small operations pay a thread hand-off each);
the cost-aware decision skips the rows whose top class holds more than half the mass (provably its own
decision, see :meth:`HierarchySums._cost_aware`) and walks the tree for the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from lensdash.errors import InputError

if TYPE_CHECKING:
    from lensdash.hierarchy import Hierarchy

#: Rows of logits turned into probabilities at once inside :meth:`HierarchySums.add_` (bounds memory at any N).
_CHUNK_ROWS = 4096
#: Below this many classes the cost-aware decision is one dense ``p @ D`` product (cheaper than the tree walk).
_DENSE_COST_CLASSES = 128
#: Rows per block of the tree walk's sparse products (small enough to stay in the cache).
_COST_BLOCK = 128
#: Expected costs closer than this (relative to the tree's height) are a tie, broken towards the lower index, so
#: the dense product and the tree walk (which round differently) take the same decision.
_TIE_RTOL = 1e-10
#: A top class holding more than ``1/2 + _SURE_MARGIN`` of the mass is the cost-aware decision (its cost is lower
#: than any other class's by at least ``2 * _SURE_MARGIN``, far above the tie tolerance and float32 rounding).
_SURE_MARGIN = 1e-5


class _PathCosts:
    r"""The expected cost of predicting each class, :math:`c_k = \sum_j p_j d(j, k)`, in O(K · depth) per row.

    ``d`` is an ultrametric: for the path ``k = a_0, a_1, ..., a_m = root``, every class under ``a_i`` but not
    under ``a_{i-1}`` is at ``h(a_i)`` from ``k``. With :math:`S(n)` the probability under node ``n``,

    .. math:: c_k = h(k)\,(S(a_0) - p_k) + \sum_{i \ge 1} h(a_i)\,(S(a_i) - S(a_{i-1}))
              = \sum_{i} (h(a_i) - h(a_{i+1}))\,S(a_i) - h(k)\,p_k,\quad h(a_{m+1}) := 0.

    So ``S = M p`` (``M``: nodes × classes membership) and ``c = W^T S - h ⊙ p`` (``W``: nodes × classes, the
    weights ``h(a_i) - h(a_{i+1})`` on each class's path), two sparse products with about K · depth nonzeros each
    instead of the K² of ``D``. Nodes holding the same classes as their child (chains) are merged, which keeps at
    most 2K nodes; the products run on blocks of :data:`_COST_BLOCK` rows, which stay in the cache.
    """

    def __init__(self, hierarchy: Hierarchy, names: Sequence[str]) -> None:
        from scipy.sparse import csr_matrix

        order = np.asarray(hierarchy.order(names), dtype=np.int64)
        pre = np.asarray([hierarchy._pre[names[i]] for i in order], dtype=np.int64)
        lo = np.searchsorted(pre, np.arange(len(hierarchy.nodes)), side="left")
        hi = np.searchsorted(pre, hierarchy._end, side="left")
        # One node per distinct range of classes: the deepest (last in pre-order), whose height is the LCA's.
        rep: dict[tuple[int, int], int] = {}
        for spanned in np.nonzero(hi > lo)[0].tolist():
            rep[(int(lo[spanned]), int(hi[spanned]))] = spanned
        nodes = sorted(rep.values())  # pre-order: parents before children
        index = {node: i for i, node in enumerate(nodes)}
        parent = np.full(len(nodes), -1, dtype=np.int64)
        for i, node in enumerate(nodes):
            span = (lo[node], hi[node])
            name = hierarchy.nodes[node]
            while name in hierarchy.parent:
                up = hierarchy._pre[hierarchy.parent[name]]
                if (lo[up], hi[up]) != span:
                    parent[i] = index[rep[(int(lo[up]), int(hi[up]))]]
                    break
                name = hierarchy.nodes[up]
        heights = hierarchy._heights[nodes].astype(np.float64)
        weight = heights - np.where(parent >= 0, heights[np.maximum(parent, 0)], 0.0)
        member_rows = np.repeat(np.arange(len(nodes)), hi[nodes] - lo[nodes])
        member_cols = np.concatenate([order[lo[n] : hi[n]] for n in nodes])
        self.members = csr_matrix(
            (np.ones(member_rows.size), (member_rows, member_cols)), shape=(len(nodes), len(names))
        )
        # A class is the deepest node of its own range (its descendants hold fewer classes), so it is a node here.
        path_rows: list[int] = []
        path_cols: list[int] = []
        for k, name in enumerate(names):
            at = index[hierarchy._pre[name]]
            while at >= 0:
                path_rows.append(k)
                path_cols.append(at)
                at = int(parent[at])
        self.weights = csr_matrix((weight[path_cols], (path_rows, path_cols)), shape=(len(names), len(nodes)))
        self.class_height = np.array([float(hierarchy.height[n]) for n in names])[:, None]

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        """(n, K) float64 probabilities -> (K, n) expected costs."""
        by_class = np.ascontiguousarray(probs.T)  # scipy copies a strided operand on every product otherwise
        cost = self.weights @ (self.members @ by_class)
        cost -= self.class_height * by_class
        return cost


def _first_min(cost: np.ndarray, tolerance: float, axis: int = 1) -> np.ndarray:
    """Along ``axis``, the lowest index whose cost is within ``tolerance`` of the minimum (the dense path's rule)."""
    near = cost <= cost.min(axis=axis, keepdims=True) + tolerance
    return near.argmax(axis=axis)


class HierarchySums:
    r"""Running sums of the hierarchical metrics, so a chunked or distributed stream gives the whole-data numbers.

    Add chunks with :meth:`add_`; all-reduce :attr:`totals` (one float64 vector, summed element-wise) across
    processes; read the metrics with :meth:`result`. See :func:`hierarchy_metrics` for what they mean.

    The cost-aware decision of Karthik et al. 2021, :math:`\hat y = \arg\min_k \sum_j p_j d(j, k)` (``p`` in
    the logits' precision, at least float32; costs in float64), is one matrix product per chunk at small K and a
    walk down the tree at large K (:class:`_PathCosts`, O(K · depth) per row); costs within 1e-10 of the tree's
    height are a tie, which goes to the lower class index.

    Args:
        hierarchy: the class tree.
        classes: the K class names, in the order of the logits' columns.
        ks: the k of ``hdist@k``; values above K are left out.

    Example:
        >>> from lensdash.hierarchy import Hierarchy
        >>> h = Hierarchy.from_nested({"a": ["x", "y"], "b": ["z"]})
        >>> sums = HierarchySums(h, ["x", "y", "z"])
        >>> _ = sums.add_(torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([1]))  # a chunk: x predicted, y true
        >>> _ = sums.add_(torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([1]))  # another: z predicted
        >>> sums.result()["mistake_severity"]
        1.5
    """

    def __init__(self, hierarchy: Hierarchy, classes: Sequence[object], *, ks: Sequence[int] = (1, 5, 20)) -> None:
        names = hierarchy.check_classes(classes)
        if len(names) < 2:
            raise InputError.build("at least 2 classes", f"{len(names)}", fix="A classifier has two or more classes.")
        self.classes = names
        self.distances = hierarchy.distances(names)
        self._d = self.distances.numpy()
        self.ks = tuple(sorted({int(k) for k in ks if 1 <= int(k) <= len(names)}))
        self.level_numbers = tuple(range(1, max(hierarchy.depth[n] for n in names)))
        paths = [hierarchy.path(n) for n in names]
        level_ids = []
        for level in self.level_numbers:
            ids: dict[str, int] = {}
            level_ids.append([ids.setdefault(p[min(level, len(p) - 1)], len(ids)) for p in paths])
        # (levels, K): each class's ancestor at each level as an index, so a level's accuracy is one comparison.
        self._level_ids = np.asarray(level_ids, dtype=np.int64).reshape(len(level_ids), len(names))
        self.totals = torch.zeros(5 + len(self.ks) + len(self.level_numbers), dtype=torch.float64)
        self._path_costs = _PathCosts(hierarchy, names) if len(names) > _DENSE_COST_CLASSES else None
        self._tie = _TIE_RTOL * max(float(self.distances.max()), 1.0)

    def _cost_aware(self, logits: Tensor, top1: np.ndarray | None = None) -> np.ndarray:
        r"""The cost-aware decision for each row of ``logits`` (n, K), given their argmax ``top1`` if known.

        With ``p = softmax(logits)`` (in float64 for float64 logits, else in float32), the risk of class ``k`` is
        :math:`c_k = \sum_j p_j d(j, k)`, a row of ``p @ D``: one dense product at small K, else the tree walk of
        :class:`_PathCosts`. Ties (within :data:`_TIE_RTOL`) go to the lower index either way, and a row's decision
        does not depend on its chunk.

        Rows whose top class ``a`` holds :math:`p_a > 1/2` are decided without costs at large K: ``d`` is an
        ultrametric, so for any ``k`` at distance ``D = d(a, k) >= 1`` every class ``j`` farther than ``D`` from
        ``a`` is as far from ``k``, and every other ``j`` gains at most ``D``:
        :math:`c_k - c_a \ge p_a D - (1 - p_a) D = (2 p_a - 1) D > 0`.
        """
        # Probabilities in the logits' precision (float64 logits: float64; float32 and narrower: float32, a third of
        # the float64 softmax's time at K = 1,000), widened to float64 for the costs.
        work = logits if logits.dtype == torch.float64 else logits.to(torch.float32)
        probs = torch.softmax(work, dim=1).numpy()
        if self._path_costs is None:
            return _first_min(probs.astype(np.float64) @ self._d, self._tie, axis=1)
        if top1 is None:
            top1 = probs.argmax(axis=1)
        out = np.asarray(top1, dtype=np.int64).copy()
        unsure = probs[np.arange(len(out)), out] <= 0.5 + _SURE_MARGIN
        for lo in range(0, len(out), _COST_BLOCK):
            rows = np.nonzero(unsure[lo : lo + _COST_BLOCK])[0] + lo
            if rows.size == 0:
                continue
            # A block of mostly unsure rows is taken whole (a slice, no gather), and the sure rows keep their top class.
            block = probs[lo : lo + _COST_BLOCK] if 2 * rows.size > min(_COST_BLOCK, len(out) - lo) else probs[rows]
            decided = _first_min(self._path_costs(block.astype(np.float64)), self._tie, axis=0)
            out[rows] = decided[rows - lo] if block.shape[0] != rows.size else decided
        return out

    def add_(self, logits: Tensor, labels: Tensor) -> HierarchySums:
        """Add a chunk: ``logits`` (N, K) in the classes' order, ``labels`` (N,) class indices.

        Raises:
            InputError: wrong shapes, K different from the classes, or labels outside ``0..K-1``.
        """
        logits = torch.as_tensor(logits)
        labels = torch.as_tensor(labels)
        k = len(self.classes)
        if logits.dim() != 2 or logits.shape[1] != k:
            raise InputError.build(
                f"logits of shape (N, {k}), one column per class", f"shape {tuple(logits.shape)}", fix="Check K."
            )
        if labels.shape != (logits.shape[0],) or labels.is_floating_point():
            raise InputError.build(
                f"{logits.shape[0]} integer labels", f"shape {tuple(labels.shape)}, {labels.dtype}", fix="One per row."
            )
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
            bad = int(torch.nonzero((labels < 0) | (labels >= k))[0, 0])
            raise InputError.build(
                f"labels in 0..{k - 1}", f"{int(labels[bad])}", where=f"row {bad + 1}", fix="Use class indices."
            )
        all_labels = labels.to(torch.int64).numpy()
        kmax = max(self.ks, default=1)
        for lo in range(0, logits.shape[0], _CHUNK_ROWS):
            raw = logits[lo : lo + _CHUNK_ROWS]
            y = all_labels[lo : lo + _CHUNK_ROWS]
            # Ranked in the logits' own dtype (half the bytes of float64; widening is exact, so the order is the same).
            top = torch.topk(raw, kmax, dim=1).indices.numpy()
            pred = top[:, 0]
            crm = self._cost_aware(raw, pred)
            # Distances to the ranked classes, cumulated along the ranks: column k-1 sums the top k (integers, exact).
            ranked = np.cumsum(self._d[y[:, None], top], axis=1)
            correct = int(np.count_nonzero(pred == y))
            row = [
                float(y.size),
                float(correct),
                float(ranked[:, 0].sum()),
                float(np.count_nonzero(crm == y)),
                float(self._d[y, crm].sum()),
            ]
            row += [float(ranked[:, kk - 1].sum()) / kk for kk in self.ks]
            row += np.count_nonzero(self._level_ids[:, pred] == self._level_ids[:, y], axis=1).tolist()
            self.totals += torch.tensor(row, dtype=torch.float64)
        return self

    def merge_(self, other: HierarchySums) -> HierarchySums:
        """Add another stream's sums (same hierarchy, classes and ks)."""
        self.totals += other.totals
        return self

    def result(self) -> dict[str, float]:
        """The metrics so far (see :func:`hierarchy_metrics`); NaN where there is nothing to average."""
        t = self.totals.tolist()
        n, correct, severity, crm_correct, crm_severity = t[:5]

        def ratio(a: float, b: float) -> float:
            return a / b if b else math.nan

        out = {
            "n": n,
            "accuracy": ratio(correct, n),
            "mistake_severity": ratio(severity, n - correct),
            "crm_top1_accuracy": ratio(crm_correct, n),
            "crm_mistake_severity": ratio(crm_severity, n - crm_correct),
        }
        for kk, total in zip(self.ks, t[5 : 5 + len(self.ks)]):
            out[f"hdist@{kk}"] = ratio(total, n)
        for level, total in zip(self.level_numbers, t[5 + len(self.ks) :]):
            out[f"accuracy@level{level}"] = ratio(total, n)
        return out


def hierarchy_metrics(
    logits: Tensor,
    labels: Tensor,
    hierarchy: Hierarchy,
    classes: Sequence[object],
    *,
    ks: Sequence[int] = (1, 5, 20),
) -> dict[str, float]:
    r"""Hierarchical metrics of a classifier, with ``d`` the LCA height (:meth:`Hierarchy.distances`).

    * ``accuracy``: top-1 accuracy (argmax of the logits).
    * ``mistake_severity``: mean of :math:`d(y, \hat y)` over the mistakes (Bertinetto et al. 2020).
    * ``hdist@k``: mean over all samples of the mean distance between ``y`` and each of the ``k`` most probable
      classes (k > K left out).
    * ``crm_top1_accuracy`` and ``crm_mistake_severity``: the same for the cost-aware decision of Karthik et al.
      2021, :math:`\hat y = \arg\min_k \sum_j p_j\, d(j, k)` with ``p = softmax(logits)``, the trade-off
      available before training anything.
    * ``accuracy@levelL``: share of samples whose prediction has the same ancestor at level ``L`` (depth from
      the root; level 1 is the superclass) as the truth, for every level above the deepest class.

    Args:
        logits: (N, K) scores (probabilities or log-probabilities give the same decisions).
        labels: (N,) true class indices.
        hierarchy: the class tree.
        classes: K class names in the order of the columns.
        ks: the k of ``hdist@k``.

    Returns:
        ``{name: value}``; ``n`` is the sample count; a ratio with nothing to average (no mistakes) is NaN.

    Raises:
        InputError: classes not in the hierarchy, or shapes and labels that do not fit.

    Example:
        >>> from lensdash.hierarchy import Hierarchy
        >>> h = Hierarchy.from_nested({"a": ["x", "y"], "b": ["z"]})
        >>> m = hierarchy_metrics(torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]]), torch.tensor([1, 1]), h, "xyz")
        >>> m["accuracy"], m["mistake_severity"], m["accuracy@level1"]
        (0.0, 1.5, 0.5)
    """
    return HierarchySums(hierarchy, classes, ks=ks).add_(logits, labels).result()
