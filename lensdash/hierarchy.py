r"""Class hierarchies: trees over class names, their distances, levels and metrics.

A :class:`Hierarchy` is a rooted tree of named nodes; the classes of a classifier are some of its nodes (usually
its leaves). The distance between two classes is the *height of their lowest common ancestor* (LCA), where the
height of a node is the number of edges on the longest path from it down to a leaf, and ``d(y, y) = 0``. For a tree
whose leaves all sit at the same depth this is the number of levels up to the common ancestor; it is the distance
of Bertinetto et al. 2020, "Making Better Mistakes", and Karthik et al. 2021, "No cost likelihood manipulation at
test time". Because heights grow strictly up the tree, ``d`` is an ultrametric: every ball ``{j : d(y, j) <= t}``
is the set of classes under one node, which the metrics below use to stay linear in K.

The β solvers live in :mod:`lensdash._hierarchy_beta` and the metrics in :mod:`lensdash._hierarchy_metrics`;
their public names are importable from here.

Levels count depth from the root: level 0 is the root, level 1 its children (CIFAR-100's 20 superclasses), and so
on; a negative level counts up from each class (level -1 is the class's parent). Lens convention where a lens is
built: row ``y`` is the target distribution when the true label is ``y``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from lensdash._hierarchy_beta import DEFAULT_MASS_KEPT, beta_for_mass, default_beta, mass_kept
from lensdash._hierarchy_metrics import HierarchySums, hierarchy_metrics
from lensdash.errors import InputError, LensError
from lensdash.lens import _index_of

__all__ = [
    "DEFAULT_MASS_KEPT",
    "MAX_DEPTH",
    "MAX_NODES",
    "VIRTUAL_ROOT",
    "Hierarchy",
    "HierarchySums",
    "as_hierarchy",
    "beta_for_mass",
    "default_beta",
    "hierarchy_metrics",
    "mass_kept",
]

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
