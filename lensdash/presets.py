"""Lens presets by name, as the app offers them (pure; no Streamlit).

Lens convention: rows are target distributions, rows sum to 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from torch import Tensor

from lensdash.errors import LensError
from lensdash.hierarchy import Hierarchy, default_beta
from lensdash.lens import (
    Lens,
    confusion_lens,
    hierarchy_distances,
    hierarchy_lens,
    identity_lens,
    merge_lens,
    smoothing_lens,
    uniform_lens,
)

PRESETS = ("identity", "merge groups", "label smoothing", "hierarchy soft labels", "from confusion", "uniform")


#: Characters that make a class name need quotes in group text.
_NEEDS_QUOTES = (",", '"', "\n", "\r")
_RANGE = re.compile(r"(\d+)\s*-\s*(\d+)")


def _tokens(text: str) -> Iterator[tuple[int, list[tuple[str, bool]]]]:
    """Each non-empty line of group text as ``(line number, [(token, quoted), ...])``.

    Tokens are separated by commas and lines by line breaks; a token in double quotes is taken as written (``""`` is
    one quote, and commas and line breaks inside quotes are part of it), an unquoted one is stripped of spaces.
    """
    token: list[str] = []
    line_no, line, quoted, in_quotes, pos = 1, [], False, False, 0
    start_line = 1

    def flush() -> None:
        nonlocal token, quoted
        value = "".join(token)
        if quoted or value.strip():
            line.append((value if quoted else value.strip(), quoted))
        token, quoted = [], False

    while pos < len(text):
        c = text[pos]
        if in_quotes:
            if c == '"' and text[pos + 1 : pos + 2] == '"':
                token.append('"')
                pos += 1
            elif c == '"':
                in_quotes = False
            else:
                line_no += c == "\n"
                token.append(c)
        elif c == '"' and not "".join(token).strip():
            token, quoted, in_quotes = [], True, True
        elif c == ",":
            flush()
        elif c == "\n":
            flush()
            if line:
                yield start_line, line
            line, line_no = [], line_no + 1
            start_line = line_no
        elif c != "\r" and not (quoted and c in " \t"):
            token.append(c)
        pos += 1
    if in_quotes:
        raise LensError.build(
            "a closing double quote",
            "the end of the text",
            where=f"groups, line {start_line}",
            fix='Close the quoted name with ", or write "" for a quote inside a name.',
        )
    flush()
    if line:
        yield start_line, line


def _members(token: str, quoted: bool, names: Sequence[str], index: dict[str, int]) -> list[str] | None:
    """The classes one token names: a class name, else (unquoted) a 0-based class number or a range ``a-b``."""
    if token in index:
        return [token]
    if quoted:
        return None
    if token.isdigit() and int(token) < len(names):
        return [names[int(token)]]
    match = _RANGE.fullmatch(token)
    if match:
        lo, hi = int(match.group(1)), int(match.group(2))
        if lo <= hi < len(names):
            return list(names[lo : hi + 1])
    return None


def parse_groups(text: str, names: Sequence[str]) -> list[list[str]]:
    """Groups of classes, one group per line, members separated by commas.

    A member is a class name, in double quotes when it holds a comma, a quote or a line break (``""`` inside quotes is
    one ``"``), or an unquoted 0-based class number or range of numbers (``0-4``) when no class has that name.
    :func:`format_groups` writes this format.

    Raises:
        LensError: a member that names no class, or an unclosed quote (line and names given).

    Example:
        >>> parse_groups('cat, dog\\n\\nbus,truck', ["cat", "dog", "bus", "truck"])
        [['cat', 'dog'], ['bus', 'truck']]
        >>> parse_groups('"a, b", c\\n0-1, 3', ["a, b", "c", "d", "e"])
        [['a, b', 'c'], ['a, b', 'c', 'e']]
    """
    names = list(names)
    index = {name: i for i, name in enumerate(names)}
    groups = []
    for line_no, tokens in _tokens(text):
        members: list[str] = []
        unknown: list[str] = []
        for token, quoted in tokens:
            found = _members(token, quoted, names, index)
            if found is None:
                unknown.append(token)
            else:
                members.extend(m for m in found if m not in members)
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:3]) + (
                f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            )
            known = ", ".join(repr(n) for n in names[:5]) + ("…" if len(names) > 5 else "")
            raise LensError.build(
                f"class names (such as {known}) or class numbers 0-{len(names) - 1}",
                shown,
                where=f"groups, line {line_no}",
                fix='Write one group per line, members separated by commas; quote a name that holds a comma ("a, b").',
            )
        groups.append(members)
    return groups


def _quote(name: str) -> str:
    if any(c in name for c in _NEEDS_QUOTES) or name != name.strip() or not name:
        return '"' + name.replace('"', '""') + '"'
    return name


def format_groups(groups: Sequence[Sequence[str]]) -> str:
    """Groups as text that :func:`parse_groups` reads back: one group per line, names quoted where needed.

    Example:
        >>> print(format_groups([["cat", "dog"], ["a, b", 'say "hi" now']]))
        cat, dog
        "a, b", "say ""hi"" now"
    """
    return "\n".join(", ".join(_quote(str(n)) for n in g) for g in groups)


def build_preset(
    preset: str,
    names: Sequence[str],
    *,
    groups: Sequence[Sequence[str]] = (),
    epsilon: float = 0.1,
    beta: float | None = None,
    alpha: float = 0.5,
    confusion: Tensor | None = None,
    hierarchy: Hierarchy | None = None,
) -> Lens:
    """The lens of ``preset`` over ``names``.

    ``groups`` feed "merge groups" and, as the hierarchy's inner level, "hierarchy soft labels" (a
    :class:`~lensdash.hierarchy.Hierarchy` given as ``hierarchy`` replaces them there); ``confusion`` (K×K, rows
    true class) feeds "from confusion". ``beta=None`` takes :func:`~lensdash.hierarchy.default_beta` of the
    distances (half of each row on the true class on average), which is sensible at any K, where a fixed β is
    not: β = 2 at K = 100 puts more than half of every row on unrelated classes.

    Raises:
        LensError: unknown preset, bad parameters, or "from confusion" without a confusion matrix.

    Example:
        >>> build_preset("merge groups", ["a", "b", "c"], groups=[["a", "b"]]).matrix[0].tolist()
        [0.5, 0.5, 0.0]
    """
    if preset == "identity":
        return identity_lens(names)
    if preset == "uniform":
        return uniform_lens(names)
    if preset == "merge groups":
        return merge_lens(names, groups)
    if preset == "label smoothing":
        return smoothing_lens(names, epsilon)
    if preset == "hierarchy soft labels":
        tree: object = hierarchy if hierarchy is not None else [list(g) for g in groups]
        if beta is None:
            beta = default_beta(hierarchy_distances(names, tree))
        return hierarchy_lens(names, tree, beta)
    if preset == "from confusion":
        if confusion is None:
            raise LensError.build("a confusion matrix from the data", "none", fix="Load predictions first.")
        return confusion_lens(confusion, alpha, names)
    raise LensError.build(f"a preset in {PRESETS}", repr(preset), fix="Choose one of the listed presets.")
