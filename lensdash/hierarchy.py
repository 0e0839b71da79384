r"""Class hierarchies: trees over class names, their distances, levels and metrics.

A :class:`Hierarchy` is a rooted tree of named nodes; the classes of a classifier are some of its nodes (usually
its leaves). The distance between two classes is the *height of their lowest common ancestor* (LCA), where the
height of a node is the number of edges on the longest path from it down to a leaf, and ``d(y, y) = 0``. For a tree
whose leaves all sit at the same depth this is the number of levels up to the common ancestor; it is the distance
of Bertinetto et al. 2020, "Making Better Mistakes", and Karthik et al. 2021, "No cost likelihood manipulation at
test time". Because heights grow strictly up the tree, ``d`` is an ultrametric: every ball ``{j : d(y, j) <= t}``
is the set of classes under one node, which the metrics below use to stay linear in K.

Levels count depth from the root: level 0 is the root, level 1 its children (CIFAR-100's 20 superclasses), and so
on; a negative level counts up from each class (level -1 is the class's parent). Lens convention where a lens is
built: row ``y`` is the target distribution when the true label is ``y``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from lensdash.errors import InputError, LensError
from lensdash.lens import _index_of

#: Deepest tree accepted (edges from the root to the deepest node). WordNet's noun tree is about 20 deep.
MAX_DEPTH = 100
#: Most nodes accepted; WordNet's whole noun hierarchy has about 82,000.
MAX_NODES = 500_000
#: Name of the root added above several top-level nodes (made unique if a node is already called that).
VIRTUAL_ROOT = "(root)"
#: Names listed in a message before "and N more".
_SHOWN = 5


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(repr(str(n)) for n in items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN:,} more" if len(items) > _SHOWN else "")


class Hierarchy:
    r"""A rooted tree over class names.

    Build it from a child → parent mapping (``None`` for a top-level node), from nested lists or dicts
    (:meth:`from_nested`), or read it from a file with :func:`lensdash.read_hierarchy`. Several top-level nodes
    get a common :data:`VIRTUAL_ROOT`. Children keep the order in which they were first given, so the leaf order
    of a depth-first walk (:attr:`leaves`, :meth:`order`) follows the file.

    Attributes:
        root: the root's name.
        nodes: every node, depth-first pre-order (a node before its descendants).
        parent: child → parent, for every node but the root.
        children: node → its children (empty for a leaf).
        leaves: the leaves in depth-first order.
        depth: node → edges from the root (the root is 0).
        height: node → edges on the longest path down to a leaf (a leaf is 0).
        levels: ``(0, 1, ..., max depth)``.

    Raises:
        InputError: a cycle (a node that is its own ancestor), a name used as two nodes' parent link that never
            reaches a root, more than :data:`MAX_NODES` nodes or deeper than :data:`MAX_DEPTH`.

    Example:
        >>> h = Hierarchy({"animals": None, "cat": "animals", "dog": "animals", "vehicles": None, "bus": "vehicles"})
        >>> h.root, h.leaves, h.height["(root)"]
        ('(root)', ('cat', 'dog', 'bus'), 2)
        >>> h.distances(["cat", "dog", "bus"])
        tensor([[0., 1., 2.],
                [1., 0., 2.],
                [2., 2., 0.]], dtype=torch.float64)
    """

    def __init__(self, parent: Mapping[str, str | None], *, where: Mapping[str, str] | None = None) -> None:
        parents: dict[str, str | None] = {}
        for child, par in parent.items():
            parents[str(child)] = None if par is None else str(par)
        for par in list(parents.values()):
            if par is not None and par not in parents:
                parents[par] = None
        if len(parents) > MAX_NODES:
            raise InputError.build(
                f"at most {MAX_NODES:,} nodes", f"{len(parents):,}", fix="Keep the part of the tree your classes use."
            )
        if not parents:
            raise InputError.build("a hierarchy with at least one class", "no nodes", fix="Give parent-child pairs.")
        roots = [n for n, p in parents.items() if p is None]
        if len(roots) != 1:
            root = VIRTUAL_ROOT
            while root in parents:
                root = f"({root})"
            for r in roots:
                parents[r] = root
            parents[root] = None
        else:
            root = roots[0]
        children: dict[str, list[str]] = {n: [] for n in parents}
        for child, par in parents.items():
            if par is not None:
                children[par].append(child)
        # Iterative depth-first walk: no recursion, whatever the depth of the file.
        order: list[str] = []
        depth = {root: 0}
        stack = [root]
        while stack:
            node = stack.pop()
            order.append(node)
            d = depth[node] + 1
            kids = children[node]
            if kids and d > MAX_DEPTH:
                raise InputError.build(
                    f"a tree at most {MAX_DEPTH} levels deep",
                    f"a path deeper than that, through {node!r}",
                    where=(where or {}).get(node),
                    fix="Check the file for a chain of parent-child pairs that loops or runs away.",
                )
            for kid in reversed(kids):
                depth[kid] = d
                stack.append(kid)
        if len(order) < len(parents):
            self._raise_cycle(parents, set(order), where or {})
        height = dict.fromkeys(order, 0)
        for node in reversed(order):
            par = parents[node]
            if par is not None and height[par] < height[node] + 1:
                height[par] = height[node] + 1
        self.root = root
        self.nodes: tuple[str, ...] = tuple(order)
        self.parent: Mapping[str, str] = {n: p for n, p in parents.items() if p is not None}
        self.children: Mapping[str, tuple[str, ...]] = {n: tuple(children[n]) for n in order}
        self.leaves: tuple[str, ...] = tuple(n for n in order if not children[n])
        self.depth: Mapping[str, int] = depth
        self.height: Mapping[str, int] = height
        self.levels: tuple[int, ...] = tuple(range(max(depth.values()) + 1))
        self._pre = {n: i for i, n in enumerate(order)}
        size = dict.fromkeys(order, 1)
        for node in reversed(order):
            par = parents[node]
            if par is not None:
                size[par] += size[node]
        self._end = np.array([self._pre[n] + size[n] for n in order], dtype=np.int64)
        self._heights = np.array([height[n] for n in order], dtype=np.int64)

    @staticmethod
    def _raise_cycle(parents: Mapping[str, str | None], reached: set[str], where: Mapping[str, str]) -> None:
        start = next(n for n in parents if n not in reached)
        seen: list[str] = []
        node: str | None = start
        while node is not None and node not in seen:
            seen.append(node)
            node = parents[node]
        cycle = seen[seen.index(node) :] if node is not None else seen
        shown = " → ".join(repr(n) for n in [*cycle[:6], cycle[0]]) if len(cycle) <= 6 else _names(cycle)
        raise InputError.build(
            "a tree (no node its own ancestor)",
            f"a cycle {shown}",
            where=where.get(cycle[0]),
            fix="Remove one of the parent-child pairs of the cycle.",
        )

    # ------------------------------------------------------------------ builders

    @classmethod
    def from_nested(cls, tree: object) -> Hierarchy:
        """A hierarchy from nested dicts and lists.

        A dict maps a node's name to its children (a dict, a list, a single name, or ``None``/``[]`` for a leaf);
        a list holds children, where an inner list is an unnamed group (named ``"(group N)"``). Several top-level
        entries get a :data:`VIRTUAL_ROOT`. The walk is iterative, so depth is limited by :data:`MAX_DEPTH` only.

        Raises:
            InputError: a name twice, a value that is not a name, list or dict, or a limit exceeded.

        Example:
            >>> Hierarchy.from_nested({"vehicles": {"road": ["truck", "bus"]}, "animals": ["cat", "dog"]}).leaves
            ('truck', 'bus', 'cat', 'dog')
        """
        parents: dict[str, str | None] = {}
        groups = [0]
        stack: list[tuple[object, str | None, int]] = [(tree, None, 0)]
        while stack:
            node, par, depth = stack.pop()
            if depth > MAX_DEPTH + 1:
                raise InputError.build(
                    f"nesting at most {MAX_DEPTH} levels deep", "deeper nesting", fix="Flatten the hierarchy."
                )
            if len(parents) > MAX_NODES:
                raise InputError.build(f"at most {MAX_NODES:,} nodes", "more", fix="Keep the part your classes use.")
            pending: list[tuple[object, str | None, int]] = []
            if isinstance(node, Mapping):
                for key, kids in node.items():
                    name = _node_name(key)
                    _add(parents, name, par)
                    pending.append((kids, name, depth + 1))
            elif isinstance(node, (list, tuple)):
                for kid in node:
                    if isinstance(kid, (list, tuple)):
                        groups[0] += 1
                        name = f"(group {groups[0]})"
                        _add(parents, name, par)
                        pending.append((kid, name, depth + 1))
                    else:
                        pending.append((kid, par, depth))
            elif node is None:
                continue
            else:
                _add(parents, _node_name(node), par)
            stack.extend(reversed(pending))
        return cls(parents)

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, name: object) -> bool:
        return str(name) in self._pre

    def __repr__(self) -> str:
        return f"Hierarchy({len(self.nodes):,} nodes, {len(self.leaves):,} leaves, height {self.height[self.root]})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hierarchy):
            return NotImplemented
        return self.root == other.root and dict(self.parent) == dict(other.parent)

    def __hash__(self) -> int:
        return hash((self.root, frozenset(self.parent.items())))

    def missing(self, classes: Iterable[object]) -> tuple[str, ...]:
        """The classes (in their order) that are no node of the hierarchy."""
        return tuple(str(c) for c in classes if str(c) not in self._pre)

    def explain_missing(self, classes: Sequence[object]) -> str | None:
        """A sentence on the classes the hierarchy lacks (first few by name, with the count), or ``None``.

        It also points out names that differ only in case or surrounding spaces, the usual cause.

        Example:
            >>> Hierarchy({"a": "r", "b": "r"}).explain_missing(["a", "B", "c"])
            "2 of 3 classes are not in the hierarchy: 'B', 'c' ('B' is there as 'b')."
        """
        lost = self.missing(classes)
        if not lost:
            return None
        folded = {n.strip().casefold(): n for n in self.nodes}
        near = [(m, folded[m.strip().casefold()]) for m in lost if m.strip().casefold() in folded][:3]
        hint = "; ".join(f"{m!r} is there as {n!r}" for m, n in near)
        return (
            f"{len(lost):,} of {len(classes):,} classes are not in the hierarchy: {_names(lost)}"
            + (f" ({hint})" if hint else "")
            + "."
        )

    def check_classes(self, classes: Sequence[object]) -> tuple[str, ...]:
        """``classes`` as names, after checking that each is a node.

        Raises:
            InputError: some classes are not in the hierarchy (first few named, with the count).
        """
        names = tuple(str(c) for c in classes)
        message = self.explain_missing(names)
        if message:
            raise InputError.build(
                "every class of the predictions in the hierarchy",
                message.rstrip("."),
                fix="Add them to the hierarchy file (a line 'parent,class' each) or rename them to match.",
            )
        if len(set(names)) != len(names):
            dup = [n for i, n in enumerate(names) if n in names[:i]]
            raise InputError.build("unique class names", f"{_names(dup)} more than once", fix="Rename the duplicates.")
        return names

    def order(self, classes: Sequence[object]) -> list[int]:
        """The permutation of ``classes`` that lists them in the hierarchy's depth-first order.

        Classes under one node are then contiguous, so a class×class matrix reordered with it shows the
        hierarchy's groups as blocks on the diagonal.

        Example:
            >>> Hierarchy.from_nested({"x": ["a", "c"], "y": ["b"]}).order(["a", "b", "c"])
            [0, 2, 1]
        """
        names = self.check_classes(classes)
        return sorted(range(len(names)), key=lambda i: self._pre[names[i]])

    def path(self, node: str) -> tuple[str, ...]:
        """The ancestors of ``node``, root first, ending with ``node``."""
        out = [node]
        while out[-1] in self.parent:
            out.append(self.parent[out[-1]])
        return tuple(reversed(out))

    def ancestor_at(self, level: int, classes: Sequence[object]) -> tuple[str, ...]:
        """Each class's ancestor at ``level``: a roll-up map (superclass accuracy, merge lenses, figure roll-ups).

        ``level >= 0`` is the depth from the root (0 is the root, 1 its children); a class shallower than that is
        its own ancestor. ``level < 0`` counts up from each class (-1 is its parent), stopping at the root.

        Example:
            >>> h = Hierarchy.from_nested({"vehicles": {"road": ["truck", "bus"]}, "animals": ["cat", "dog"]})
            >>> h.ancestor_at(1, ["truck", "cat"]), h.ancestor_at(-1, ["truck", "cat"])
            (('vehicles', 'animals'), ('road', 'animals'))
        """
        names = self.check_classes(classes)
        out = []
        for name in names:
            path = self.path(name)
            index = min(level, len(path) - 1) if level >= 0 else max(len(path) - 1 + level, 0)
            out.append(path[index])
        return tuple(out)

    def groups_at(self, level: int, classes: Sequence[object]) -> list[tuple[str, ...]]:
        """The classes grouped by their ancestor at ``level`` (see :meth:`ancestor_at`), in depth-first order.

        Every class is in exactly one group (singletons included), so the result feeds
        :func:`lensdash.merge_lens` directly.

        Example:
            >>> h = Hierarchy.from_nested({"vehicles": {"road": ["truck", "bus"]}, "animals": ["cat", "dog"]})
            >>> h.groups_at(1, ["cat", "bus", "dog", "truck"])
            [('truck', 'bus'), ('cat', 'dog')]
        """
        names = self.check_classes(classes)
        groups: dict[str, list[str]] = {}
        for name, top in zip(names, self.ancestor_at(level, names)):
            groups.setdefault(top, []).append(name)
        return [
            tuple(sorted(members, key=self._pre.__getitem__))
            for _, members in sorted(groups.items(), key=lambda kv: self._pre[kv[0]])
        ]

    def restrict(self, classes: Sequence[object]) -> Hierarchy:
        """The tree pruned to the classes and their ancestors (heights recomputed on the pruned tree)."""
        names = self.check_classes(classes)
        keep: dict[str, str | None] = {}
        for name in names:
            for node in self.path(name):
                keep.setdefault(node, self.parent.get(node))
        ordered = sorted(keep, key=self._pre.__getitem__)
        return Hierarchy({n: keep[n] for n in ordered})

    def distances(self, classes: Sequence[object]) -> Tensor:
        r"""K×K distances: the height of the lowest common ancestor, ``d(y, y) = 0``.

        Heights are those of this tree (use :meth:`restrict` first to measure on the classes' own subtree).
        A class that is an ancestor of another is at that class's height from it.

        Cost: one pass over the nodes holding two or more classes, each filling its (contiguous) block of the
        depth-first-ordered matrix; about 10 ms at K = 1,000 on a WordNet-like tree.

        Args:
            classes: K class names, each a node of the hierarchy.

        Returns:
            float64 tensor, symmetric, zero on the diagonal, entries in ``0..height(root)``.

        Raises:
            InputError: some classes are not in the hierarchy.

        Shape:
            ``(K, K)``, rows and columns in the order of ``classes``.

        Example:
            >>> h = Hierarchy.from_nested({"vehicles": {"road": ["truck", "bus"]}, "animals": ["cat", "dog"]})
            >>> h.distances(["truck", "bus", "cat"])
            tensor([[0., 1., 3.],
                    [1., 0., 3.],
                    [3., 3., 0.]], dtype=torch.float64)
        """
        names = self.check_classes(classes)
        order = np.asarray(self.order(names), dtype=np.int64)
        pre = np.asarray([self._pre[names[i]] for i in order], dtype=np.int64)
        starts = np.arange(len(self.nodes))
        lo = np.searchsorted(pre, starts, side="left")
        hi = np.searchsorted(pre, self._end, side="left")
        k = len(names)
        ordered = np.zeros((k, k), dtype=np.float64)
        # Pre-order puts each ancestor before its descendants, so deeper (lower) common ancestors overwrite.
        for node in np.nonzero(hi - lo >= 2)[0]:
            ordered[lo[node] : hi[node], lo[node] : hi[node]] = self._heights[node]
        np.fill_diagonal(ordered, 0.0)
        inverse = np.empty(k, dtype=np.int64)
        inverse[order] = np.arange(k)
        return torch.from_numpy(ordered[np.ix_(inverse, inverse)])


def as_hierarchy(hierarchy: object, classes: Sequence[str]) -> Hierarchy:
    """A :class:`Hierarchy` as given, or one built from nested lists of class names (missing classes at the root).

    Nested lists are the form :func:`lensdash.hierarchy_lens` has always taken: ``[["cat", "dog"], ["car",
    ["bus", "truck"]]]``, names or indices of ``classes``, each inner list an unnamed group.

    Raises:
        LensError: a name that is not a class, a class twice, or something that is neither form.
    """
    if isinstance(hierarchy, Hierarchy):
        return hierarchy
    names = tuple(classes)
    if not isinstance(hierarchy, (list, tuple)):
        raise LensError.build(
            "a Hierarchy (read_hierarchy) or nested lists of class names",
            type(hierarchy).__name__,
            fix="Read the file with read_hierarchy, or pass groups such as [['cat', 'dog'], ['car', 'bus']].",
        )
    seen: set[str] = set()

    def resolve(node: object) -> object:
        if isinstance(node, (list, tuple)):
            return [resolve(n) for n in node]
        name = names[_index_of(names, node, "hierarchy")]
        if name in seen:
            raise LensError.build("each class once in the hierarchy", f"{name!r} twice", fix="Remove the duplicate.")
        seen.add(name)
        return name

    if _json_like_depth(hierarchy) > MAX_DEPTH:
        raise LensError.build(f"groups nested at most {MAX_DEPTH} deep", "deeper", fix="Flatten the groups.")
    tree = [resolve(node) for node in hierarchy]
    return Hierarchy.from_nested([*tree, *[n for n in names if n not in seen]])


def _json_like_depth(tree: object) -> int:
    deepest, stack = 0, [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (list, tuple)):
            deepest = max(deepest, depth + 1)
            if deepest > MAX_DEPTH:
                break
            stack.extend((n, depth + 1) for n in node)
    return deepest


def _node_name(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError.build(
            "a node name (text), a list of children or a mapping",
            f"{type(value).__name__} {str(value)[:40]!r}",
            fix="Write each node as a string.",
        )
    name = str(value).strip()
    if not name:
        raise InputError.build("a non-empty node name", "an empty name", fix="Name every node.")
    return name


def _add(parents: dict[str, str | None], name: str, par: str | None) -> None:
    if name in parents:
        raise InputError.build(
            "each node once in the hierarchy",
            f"{name!r} twice (under {parents[name]!r} and {par!r})",
            fix="A node has one parent; remove or rename one of them.",
        )
    parents[name] = par


# ------------------------------------------------------------------------------------------- beta, in user terms

#: Share of each row's mass on the true class that :func:`default_beta` aims for (when K > 3).
DEFAULT_MASS_KEPT = 0.5


def _soft_rows(scaled: Tensor, beta: float) -> Tensor:
    return torch.softmax(-beta * scaled, dim=1)


def _normalised(distances: Tensor) -> Tensor:
    d = torch.as_tensor(distances, dtype=torch.float64)
    if d.dim() != 2 or d.shape[0] != d.shape[1] or d.shape[0] < 2:
        raise InputError.build("a K×K distance matrix, K >= 2", f"shape {tuple(d.shape)}", fix="Use distances().")
    top = float(d.max())
    if not math.isfinite(top) or top <= 0 or bool((d < 0).any()):
        raise InputError.build(
            "finite, non-negative distances, some positive", f"largest {top}", fix="Use Hierarchy.distances()."
        )
    return d / top


def _group_mask(groups: Sequence[Hashable], k: int) -> Tensor:
    if len(groups) != k:
        raise InputError.build(f"{k} group labels (one per class)", f"{len(groups)}", fix="Use ancestor_at().")
    ids: dict[Hashable, int] = {}
    index = torch.tensor([ids.setdefault(g, len(ids)) for g in groups])
    return index.unsqueeze(0) == index.unsqueeze(1)


def mass_kept(distances: Tensor, beta: float, *, groups: Sequence[Hashable] | None = None) -> float:
    r"""Mean over classes of the mass a soft-label row keeps on the true class (or inside its group).

    Row ``y`` is :math:`C_{yj} = \exp(-\beta d(y,j)/d_{max}) / Z_y` (Bertinetto et al. 2020); this returns
    :math:`\frac1K \sum_y C_{yy}`, or with ``groups`` :math:`\frac1K \sum_y \sum_{j: g_j = g_y} C_{yj}`.

    Example:
        >>> round(mass_kept(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), 0.0), 3)
        0.5
    """
    scaled = _normalised(distances)
    rows = _soft_rows(scaled, float(beta))
    if groups is None:
        return float(rows.diagonal().mean())
    return float((rows * _group_mask(groups, scaled.shape[0])).sum(dim=1).mean())


def beta_for_mass(distances: Tensor, mass: float, *, groups: Sequence[Hashable] | None = None) -> float:
    r"""The β at which :func:`mass_kept` equals ``mass``: "keep this share on the true class (or its group)".

    Convention: the *mean over classes* of each row's mass on the true class (with ``groups``: on the classes
    sharing the true class's group, e.g. ``hierarchy.ancestor_at(1, classes)``). Both grow monotonically with β
    (every class outside a hierarchy group is farther than every class inside it), so bisection on β finds it to
    1e-9 relative. The β is the paper's, on distances divided by their largest value.

    Args:
        distances: K×K class distances (``Hierarchy.distances``).
        mass: target share, strictly between its value at β = 0 (uniform rows) and 1.
        groups: one group label per class, or ``None`` for the true class alone.

    Returns:
        β >= 0.

    Raises:
        InputError: ``mass`` not reachable (at or below the uniform share, or >= 1).

    Example:
        >>> d = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 2.0], [2.0, 2.0, 0.0]])
        >>> beta = beta_for_mass(d, 0.8)
        >>> round(mass_kept(d, beta), 6)
        0.8
    """
    mass = float(mass)
    low_mass = mass_kept(distances, 0.0, groups=groups)
    if not (low_mass < mass < 1.0):
        raise InputError.build(
            f"a share between {low_mass:.4g} (uniform rows) and 1",
            f"{mass}",
            fix="Pick a share of the row's mass that the true class (or its group) should keep.",
        )
    scaled = _normalised(distances)
    mask = None if groups is None else _group_mask(groups, scaled.shape[0])

    def kept(beta: float) -> float:
        rows = _soft_rows(scaled, beta)
        return float(rows.diagonal().mean() if mask is None else (rows * mask).sum(dim=1).mean())

    lo, hi = 0.0, 1.0
    while kept(hi) < mass:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            return hi
    for _ in range(200):
        mid = (lo + hi) / 2
        if kept(mid) < mass:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-9 * hi:
            break
    return (lo + hi) / 2


def default_beta(distances: Tensor) -> float:
    """A β that is sensible at any K: the true class keeps half of each row on average.

    With K ≤ 3 half the mass is close to uniform (or is uniform at K = 2), so the target is then
    ``1/K + 0.25``. On CIFAR-100's tree (K = 100) this gives β ≈ 5.0: half of each row on the true class and two
    thirds inside its superclass, within the paper's 4–30.

    Example:
        >>> d = torch.tensor([[0.0, 1.0, 2.0, 2.0], [1.0, 0.0, 2.0, 2.0], [2.0, 2.0, 0.0, 1.0], [2.0, 2.0, 1.0, 0.0]])
        >>> round(mass_kept(d, default_beta(d)), 6)
        0.5
    """
    k = torch.as_tensor(distances).shape[0]
    return beta_for_mass(distances, max(DEFAULT_MASS_KEPT, 1.0 / max(k, 1) + 0.25))


# ------------------------------------------------------------------------------------------- metrics

#: Rows of logits turned into probabilities at once inside :meth:`HierarchySums.add_` (bounds memory at any N).
_CHUNK_ROWS = 4096


#: Below this many classes the cost-aware decision is one dense ``p @ D`` product (cheaper than the tree walk).
_DENSE_COST_CLASSES = 128
#: Rows per block of the tree walk's sparse products (small enough to stay in the cache).
_COST_BLOCK = 128
#: Expected costs closer than this (relative to the tree's height) are a tie, broken towards the lower index, so
#: the dense product and the tree walk (which round differently) take the same decision.
_TIE_RTOL = 1e-10


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
        by_class = probs.T
        cost = self.weights @ (self.members @ by_class)
        cost -= self.class_height * by_class
        return cost


def _first_min(cost: Tensor, tolerance: float, dim: int = 1) -> Tensor:
    """Along ``dim``, the lowest index whose cost is within ``tolerance`` of the minimum (the dense path's rule)."""
    near = cost <= cost.min(dim=dim, keepdim=True).values + tolerance
    return near.to(torch.uint8).argmax(dim=dim)


class HierarchySums:
    r"""Running sums of the hierarchical metrics, so a chunked or distributed stream gives the whole-data numbers.

    Add chunks with :meth:`add_`; all-reduce :attr:`totals` (one float64 vector, summed element-wise) across
    processes; read the metrics with :meth:`result`. See :func:`hierarchy_metrics` for what they mean.

    The cost-aware decision of Karthik et al. 2021, :math:`\hat y = \arg\min_k \sum_j p_j d(j, k)`, is one
    float64 matrix product per chunk at small K and a walk down the tree at large K (:class:`_PathCosts`,
    O(K · depth) per row); costs within 1e-10 of the tree's height are a tie, which goes to the lower class index.

    Args:
        hierarchy: the class tree.
        classes: the K class names, in the order of the logits' columns.
        ks: the k of ``hdist@k``; values above K are left out.

    Example:
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
        self.ks = tuple(sorted({int(k) for k in ks if 1 <= int(k) <= len(names)}))
        self.level_numbers = tuple(range(1, max(hierarchy.depth[n] for n in names)))
        paths = [hierarchy.path(n) for n in names]
        level_ids = []
        for level in self.level_numbers:
            ids: dict[str, int] = {}
            level_ids.append([ids.setdefault(p[min(level, len(p) - 1)], len(ids)) for p in paths])
        self._level_ids = torch.tensor(level_ids, dtype=torch.int64).reshape(len(level_ids), len(names))
        self.totals = torch.zeros(5 + len(self.ks) + len(self.level_numbers), dtype=torch.float64)
        self._path_costs = _PathCosts(hierarchy, names) if len(names) > _DENSE_COST_CLASSES else None
        self._tie = _TIE_RTOL * max(float(self.distances.max()), 1.0)

    def _cost_aware(self, probs: Tensor) -> Tensor:
        # The risk of each class is a row of p @ D (D symmetric): one dense product at small K, else the tree walk
        # of _PathCosts (O(K · depth) per row instead of O(K²)). Ties (within _TIE_RTOL) go to the lower index either
        # way, and rows do not depend on the chunk, so a stream decides as the whole data does.
        if self._path_costs is None:
            return _first_min(probs @ self.distances, self._tie, dim=1)
        rows = probs.numpy()
        out = np.empty(rows.shape[0], dtype=np.int64)
        for lo in range(0, rows.shape[0], _COST_BLOCK):  # numpy throughout: torch's reductions on small blocks lag
            cost = self._path_costs(rows[lo : lo + _COST_BLOCK])
            near = cost <= cost.min(axis=0, keepdims=True) + self._tie
            out[lo : lo + _COST_BLOCK] = near.argmax(axis=0)
        return torch.from_numpy(out)

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
        labels = labels.to(torch.int64)
        d = self.distances
        kmax = max(self.ks, default=1)
        for lo in range(0, logits.shape[0], _CHUNK_ROWS):
            raw = logits[lo : lo + _CHUNK_ROWS]
            x = raw.to(torch.float64)
            y = labels[lo : lo + _CHUNK_ROWS]
            # Ranked in the logits' own dtype (half the bytes of float64; widening is exact, so the order is the same).
            top = torch.topk(raw, kmax, dim=1).indices
            pred = top[:, 0].contiguous()
            wrong = pred != y
            crm = self._cost_aware(torch.softmax(x, dim=1))
            crm_wrong = crm != y
            row = [
                float(y.numel()),
                float((~wrong).sum()),
                float(d[y, pred].sum()),
                float((~crm_wrong).sum()),
                float(d[y, crm].sum()),
            ]
            gathered = d[y.unsqueeze(1), top]
            row += [float(gathered[:, :kk].mean(dim=1).sum()) for kk in self.ks]
            row += (self._level_ids[:, pred] == self._level_ids[:, y]).sum(dim=1).tolist()
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
        >>> h = Hierarchy.from_nested({"a": ["x", "y"], "b": ["z"]})
        >>> m = hierarchy_metrics(torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]]), torch.tensor([1, 1]), h, "xyz")
        >>> m["accuracy"], m["mistake_severity"], m["accuracy@level1"]
        (0.0, 1.5, 0.5)
    """
    return HierarchySums(hierarchy, classes, ks=ks).add_(logits, labels).result()
