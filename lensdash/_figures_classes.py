"""Many classes made readable: class orders that show blocks, a shared subset, roll-ups to a level, zoom.

Pure numpy (no plotly): the figure builders of :mod:`lensdash.figures` and the app take their orders and
subsets from here. Public names are re-exported by :mod:`lensdash.figures`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from torch import Tensor

from lensdash._figures_base import MAX_HEATMAP_CLASSES, MAX_HEATMAP_LIMIT, _np
from lensdash.errors import InputError
from lensdash.hierarchy import Hierarchy


def lens_groups(lens: Tensor | np.ndarray) -> np.ndarray:
    """Group id per class: the connected blocks of the lens (classes that share target mass, in either direction).

    Ids are numbered by each block's first class. A merge lens gives its groups; a soft hierarchy lens, which
    spreads mass everywhere, gives one block (use the hierarchy's groups instead).

    Example:
        >>> lens_groups(np.array([[0.5, 0, 0.5], [0, 1, 0], [0.5, 0, 0.5]])).tolist()
        [0, 1, 0]
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    values = _np(lens)
    _, labels = connected_components(csr_matrix((values > 0) | (values.T > 0)), directed=False)
    first: dict[int, int] = {}
    for label in labels:
        first.setdefault(int(label), len(first))
    return np.array([first[int(label)] for label in labels], dtype=np.int64)


def class_order(
    names: Sequence[str],
    *,
    hierarchy: Hierarchy | None = None,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    confusion: Tensor | np.ndarray | None = None,
) -> np.ndarray:
    """A permutation of the classes that makes structure show as blocks on a heatmap's diagonal.

    Give one of:

    * ``hierarchy``: the leaf order of a depth-first walk (classes under one node are contiguous);
    * ``groups``: one group label per class (e.g. :func:`lens_groups` of a merge lens, or
      ``hierarchy.ancestor_at(1, names)``); groups in order of their first class, classes in index order;
    * ``confusion``: the data's own clustering, the leaf order of an average-linkage clustering of the
      symmetrised row-normalised confusion (classes confused with each other end up next to each other).

    Returns:
        Class indices in display order (feed ``subset=`` of the heatmaps, or index a matrix with it).

    Example:
        >>> class_order(["a", "b", "c", "d"], groups=["x", "y", "x", "y"]).tolist()
        [0, 2, 1, 3]
    """
    given = [v is not None for v in (hierarchy, groups, confusion)]
    if sum(given) != 1:
        raise InputError.build(
            "exactly one of hierarchy, groups, confusion", f"{sum(given)}", fix="Pick one way to order the classes."
        )
    k = len(names)
    if hierarchy is not None:
        return np.asarray(hierarchy.order(list(names)), dtype=np.int64)
    if groups is not None:
        labels = list(groups)
        if len(labels) != k:
            raise InputError.build(f"{k} group labels", f"{len(labels)}", fix="Give one group per class.")
        first: dict[Hashable, int] = {}
        for i, g in enumerate(labels):
            first.setdefault(g, i)
        return np.array(sorted(range(k), key=lambda i: (first[labels[i]], i)), dtype=np.int64)
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    assert confusion is not None  # exactly one of the three was given, and the other two have returned
    counts = _np(confusion)
    if counts.shape != (k, k):
        raise InputError.build(f"a {k}×{k} confusion matrix", f"shape {counts.shape}", fix="One row per class.")
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-300)
    similarity = rows + rows.T
    np.fill_diagonal(similarity, 0.0)
    top = similarity.max() or 1.0
    distance = 1.0 - similarity / top
    np.fill_diagonal(distance, 0.0)
    return leaves_list(linkage(squareform(distance, checks=False), method="average")).astype(np.int64)


def pick_classes(
    difference: Tensor | np.ndarray,
    *,
    limit: int = MAX_HEATMAP_CLASSES,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    order: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """One class subset for all three gradient panels (unlensed, lensed, difference), so they can be compared.

    Classes are taken by the size of their row and column in ``difference`` (``sum |d|``), largest first; with
    ``groups``, each class brings its whole group while the group fits in ``limit``, so blocks stay whole.

    Args:
        difference: K×K matrix whose large entries matter (lensed − unlensed gradients, confusion counts).
        limit: most classes returned (at most :data:`MAX_HEATMAP_LIMIT`).
        groups: one group label per class, or ``None``.
        order: display order of all K classes (:func:`class_order`); default index order.

    Returns:
        Class indices, in display order.

    Example:
        >>> d = np.zeros((5, 5)); d[3, 4] = 1.0
        >>> pick_classes(d, limit=3, groups=[0, 0, 1, 1, 1]).tolist()
        [2, 3, 4]
    """
    values = np.abs(_np(difference))
    k = values.shape[0]
    limit = max(1, min(int(limit), MAX_HEATMAP_LIMIT, k))
    weight = values.sum(axis=0) + values.sum(axis=1)
    ranked = np.argsort(-weight, kind="stable")
    members: dict[Hashable, list[int]] = {}
    labels = list(groups) if groups is not None else list(range(k))
    for i, g in enumerate(labels):
        members.setdefault(g, []).append(i)
    chosen: list[int] = []
    taken = np.zeros(k, dtype=bool)
    for i in ranked:
        if len(chosen) >= limit:
            break
        if taken[i]:
            continue
        block = members[labels[i]]
        block = [j for j in block if not taken[j]] if len(chosen) + len(block) <= limit else [int(i)]
        chosen.extend(block)
        taken[block] = True
    position = np.empty(k, dtype=np.int64)
    position[np.asarray(order if order is not None else np.arange(k), dtype=np.int64)] = np.arange(k)
    return np.array(sorted(chosen, key=lambda j: position[j]), dtype=np.int64)


def rollup(
    matrix: Tensor | np.ndarray,
    groups: Sequence[Hashable] | np.ndarray,
    *,
    support: Tensor | np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    r"""A class×class matrix rolled up to groups (a hierarchy level, lens groups).

    Counts (``support=None``) are summed: :math:`R_{ab} = \sum_{i \in a} \sum_{j \in b} M_{ij}`. Class means
    (``support`` = samples per true class, as for the class-mean gradients) average the rows weighted by
    support and sum the columns: :math:`R_{ab} = \sum_{i \in a} n_i \sum_{j \in b} M_{ij} / \sum_{i \in a} n_i`,
    the mean over the group's samples of the gradient with respect to the group's summed logits.

    Args:
        matrix: K×K, rows true class.
        groups: one group label per class (``hierarchy.ancestor_at(level, names)``, :func:`lens_groups`).
        support: per-class sample counts for a matrix of means; ``None`` for counts.

    Returns:
        The G×G matrix and the G group names, groups in order of their first class.

    Example:
        >>> rollup(np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]]), ["a", "a", "b"])
        (array([[11.,  1.],
               [ 0.,  4.]]), ['a', 'b'])
    """
    values = _np(matrix)
    labels = list(groups)
    k = values.shape[0]
    if values.shape != (k, k) or len(labels) != k:
        raise InputError.build(
            f"a K×K matrix and K = {k} group labels",
            f"shape {values.shape}, {len(labels)} labels",
            fix="One per class.",
        )
    ids: dict[Hashable, int] = {}
    index = np.array([ids.setdefault(g, len(ids)) for g in labels], dtype=np.int64)
    g = len(ids)
    member = np.zeros((k, g))
    member[np.arange(k), index] = 1.0
    if support is None:
        return member.T @ values @ member, [str(n) for n in ids]
    weights = _np(support).reshape(-1)
    if weights.shape != (k,) or (weights < 0).any():
        raise InputError.build(f"{k} non-negative sample counts", f"{weights.shape}", fix="Pass the class supports.")
    total = member.T @ weights
    rolled = (member * weights[:, None]).T @ values @ member
    return rolled / np.maximum(total, 1e-300)[:, None] * (total > 0)[:, None], [str(n) for n in ids]


def zoom(
    matrix: Tensor | np.ndarray, names: Sequence[str], chosen: Sequence[str | int]
) -> tuple[np.ndarray, list[str]]:
    """The sub-matrix of ``chosen`` classes (names or indices, in that order) and their names.

    Raises:
        InputError: a name that is not a class (first few named).

    Example:
        >>> zoom(np.arange(9).reshape(3, 3), ["a", "b", "c"], ["c", "a"])
        (array([[8., 6.],
               [2., 0.]]), ['c', 'a'])
    """
    values = _np(matrix)
    position = {str(n): i for i, n in enumerate(names)}
    index: list[int] = []
    unknown: list[str | int] = []
    for c in chosen:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if 0 <= int(c) < len(names):
                index.append(int(c))
            else:
                unknown.append(c)
        elif str(c) in position:
            index.append(position[str(c)])
        else:
            unknown.append(c)
    if unknown or not index:
        shown = ", ".join(repr(str(u)) for u in unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        raise InputError.build("names or indices of classes", shown or "none", fix="Pick classes from the list.")
    return values[np.ix_(index, index)], [str(names[i]) for i in index]
