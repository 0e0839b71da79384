r"""Reading a class hierarchy from the files people have.

:func:`read_hierarchy` takes a path, ``bytes`` or a binary file-like object (an upload) and reads:

* an **edge list**, one ``parent child`` pair a line, separated by spaces, tabs or commas, with or without a
  ``parent,child`` header: the "is-a" files published with WordNet-based hierarchies (``n02084071 n02085374``);
* **one row per class with its ancestors**, root first and the class last (``vehicles,road,truck``). A two-column
  ``superclass,class`` file (CIFAR-100's mapping) is both this and an edge list: each row is read as the chain
  of parent-child pairs it spells, so all of these mean the same. Rows may have different lengths;
* **nested JSON**: ``{"vehicles": {"road": ["truck", "bus"]}, "animals": ["cat", "dog"]}``.

Blank lines and lines starting with ``#`` are skipped. A first row whose cells are all column words (``parent``,
``child``, ``superclass``, ``class``, ``level1``, ...) and appear nowhere else is a header. Several top-level nodes
get a common root. The size (:data:`MAX_HIERARCHY_BYTES`), node count and depth are bounded; JSON nested past Python's
recursion limit stops the decoder early and is reported like any other error, so a hostile file is refused cheaply.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
from typing import BinaryIO

from lensdash.errors import InputError
from lensdash.hierarchy import MAX_DEPTH, Hierarchy

#: Largest hierarchy file read, in bytes (WordNet's whole noun "is-a" list is about 1.5 MB).
MAX_HIERARCHY_BYTES = 32 << 20
#: Longest node name accepted.
MAX_NAME_CHARS = 1000
#: Words a header cell may be made of (compared case-insensitively, digits, spaces, ``_`` and ``-`` ignored).
HEADER_WORDS = frozenset(
    [
        "parent",
        "child",
        "children",
        "superclass",
        "subclass",
        "class",
        "classes",
        "coarse",
        "fine",
        "label",
        "labels",
        "name",
        "names",
        "node",
        "nodes",
        "id",
        "level",
        "depth",
        "root",
        "leaf",
        "category",
        "categories",
        "supercategory",
        "subcategory",
        "group",
        "groups",
        "cluster",
        "superclassname",
        "classname",
        "coarselabel",
        "finelabel",
        "kingdom",
        "phylum",
        "order",
        "family",
        "genus",
        "species",
        "synset",
        "wnid",
        "hypernym",
        "hyponym",
        "ancestor",
        "ancestors",
        "path",
    ]
)

Source = str | os.PathLike | bytes | BinaryIO


def _read_bytes(source: Source) -> tuple[bytes, str]:
    limit = MAX_HIERARCHY_BYTES
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source[: limit + 1]), "the hierarchy"
    elif isinstance(source, (str, os.PathLike)):
        name = os.path.basename(os.fspath(source))
        try:
            size = os.path.getsize(source)
        except OSError as exc:
            raise InputError.build(
                "a readable file", f"{exc.strerror or exc}", where=name, fix="Check the path."
            ) from None
        if size > limit:
            data = b"\0" * (limit + 1)
        else:
            with open(source, "rb") as handle:
                data = handle.read(limit + 1)
    else:
        name = os.path.basename(str(getattr(source, "name", "") or "")) or "the hierarchy"
        data = source.read(limit + 1)
        if isinstance(data, str):
            data = data.encode()
    if len(data) > limit:
        raise InputError.build(
            f"a hierarchy file of at most {limit >> 20} MB",
            "a larger file",
            where=name,
            fix="Keep the part of the tree that your classes use.",
        )
    return data, name


def read_hierarchy(source: Source) -> Hierarchy:
    """Read a class hierarchy (edge list, ancestor rows or nested JSON; see the module notes).

    Args:
        source: a path, ``bytes`` or a binary file-like object.

    Returns:
        The :class:`~lensdash.hierarchy.Hierarchy`.

    Raises:
        InputError: an empty or undecodable file, bad JSON, a node with two parents, a cycle, an empty name,
            nesting or depth over :data:`~lensdash.hierarchy.MAX_DEPTH`, or a file over
            :data:`MAX_HIERARCHY_BYTES`. The message names the line (1-based) and what to fix.

    Example:
        >>> read_hierarchy(b"superclass,class\\nvehicles,truck\\nvehicles,bus\\nanimals,cat\\n").leaves
        ('truck', 'bus', 'cat')
    """
    data, name = _read_bytes(source)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError.build(
            "UTF-8 text",
            f"a byte {data[exc.start]:#04x} that is not",
            where=f"{name}, byte {exc.start + 1}",
            fix="Save the file as UTF-8 text.",
        ) from None
    stripped = text.lstrip()
    if not stripped:
        raise InputError.build(
            "parent-child pairs, rows of ancestors or nested JSON",
            "an empty file",
            where=name,
            fix="Give one 'parent,child' pair a line.",
        )
    if stripped[0] in "{[":
        return _read_json(stripped, name)
    return _read_rows(text, name)


def _read_json(text: str, name: str) -> Hierarchy:
    try:
        tree = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError.build(
            "valid JSON",
            exc.msg,
            where=f"{name}, line {exc.lineno}, column {exc.colno}",
            fix="Fix the JSON (a missing comma or quote is the usual cause).",
        ) from None
    except RecursionError:  # the C decoder stops at Python's recursion limit (~1,000 levels), cheaply
        raise InputError.build(
            f"JSON nested at most {MAX_DEPTH} levels", "deeper nesting", where=name, fix="Flatten the hierarchy."
        ) from None
    try:
        return Hierarchy.from_nested(tree)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    return next(csv.reader([line], delimiter=delimiter, skipinitialspace=True, strict=True))


def _is_header(row: list[str], others: set[str]) -> bool:
    words = [re.sub(r"[\d\s_\-]+", "", cell).casefold() for cell in row]
    return all(w in HEADER_WORDS for w in words) and not any(cell in others for cell in row)


def _read_rows(text: str, name: str) -> Hierarchy:
    lines = [(i + 1, line.strip()) for i, line in enumerate(io.StringIO(text))]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise InputError.build(
            "parent-child pairs", "only blank or comment lines", where=name, fix="Give one 'parent,child' a line."
        )
    sample = [line for _, line in lines[:200]]
    delimiter = "," if any("," in s for s in sample) else "\t" if any("\t" in s for s in sample) else None
    rows: list[tuple[int, list[str]]] = []
    for number, line in lines:
        try:
            cells = [c.strip() for c in _split(line, delimiter)]
        except csv.Error as exc:
            raise InputError.build(
                "comma-separated names", f"{exc}", where=f"{name}, line {number}", fix="Check the quotes."
            ) from None
        while cells and not cells[-1]:
            cells.pop()  # spreadsheets pad short rows with empty cells
        rows.append((number, cells))
    if len(rows) > 1:
        later = {cell for _, cells in rows[1:] for cell in cells}
        if _is_header(rows[0][1], later):
            rows = rows[1:]
    parent: dict[str, str | None] = {}
    where: dict[str, str] = {}
    for number, cells in rows:
        at = f"{name}, line {number}"
        for column, cell in enumerate(cells):
            if not cell:
                raise InputError.build(
                    "a node name in every column up to the class",
                    "an empty cell",
                    where=f"{at}, column {column + 1}",
                    fix="Fill in the ancestor or remove the empty column.",
                )
            if len(cell) > MAX_NAME_CHARS:
                raise InputError.build(
                    f"a name of at most {MAX_NAME_CHARS} characters", f"{len(cell):,}", where=at, fix="Shorten it."
                )
        if len(cells) > MAX_DEPTH + 1:
            raise InputError.build(
                f"at most {MAX_DEPTH + 1} names a row",
                f"{len(cells)}",
                where=at,
                fix="A row is one path from the root.",
            )
        chain: list[str | None] = [None, *cells]
        for par, child in itertools.pairwise(chain):
            assert child is not None
            if child == par:
                raise InputError.build(
                    "a parent different from its child",
                    f"{child!r} under itself",
                    where=at,
                    fix="Remove the pair; a node cannot be its own parent.",
                )
            known = parent.get(child, ...)
            if known is ...:
                parent[child] = par
                where[child] = at
            elif par is not None and known is None:
                parent[child] = par  # first seen as a top-level name (or as a parent), now placed
                where[child] = at
            elif par is not None and known != par:
                raise InputError.build(
                    "one parent for each node",
                    f"{child!r} under {par!r} here and under {known!r} at {where[child].rsplit(', ', 1)[-1]}",
                    where=at,
                    fix="Keep one of the two pairs (a hierarchy is a tree), or rename one of the two nodes.",
                )
    return Hierarchy(parent, where=where)
