"""Lens presets by name, as the app offers them (pure; no Streamlit).

Lens convention: rows are target distributions, rows sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from lensdash.errors import LensError
from lensdash.lens import (
    Lens,
    confusion_lens,
    hierarchy_lens,
    identity_lens,
    merge_lens,
    smoothing_lens,
    uniform_lens,
)

PRESETS = ("identity", "merge groups", "label smoothing", "hierarchy soft labels", "from confusion", "uniform")


def parse_groups(text: str, names: Sequence[str]) -> list[list[str]]:
    """Groups written one per line, classes separated by commas: ``"cat, dog\\ncar, truck"``.

    Raises:
        LensError: a name that is not a class (line and name given).

    Example:
        >>> parse_groups("cat, dog\\n\\nbus,truck", ["cat", "dog", "bus", "truck"])
        [['cat', 'dog'], ['bus', 'truck']]
    """
    groups = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        members = [m.strip() for m in line.split(",") if m.strip()]
        if not members:
            continue
        unknown = [m for m in members if m not in names]
        if unknown:
            raise LensError.build(
                f"class names from {list(names)[:10]}{'…' if len(names) > 10 else ''}",
                f"{unknown}",
                where=f"groups, line {line_no}",
                fix="Write one group per line, class names separated by commas.",
            )
        groups.append(members)
    return groups


def format_groups(groups: Sequence[Sequence[str]]) -> str:
    return "\n".join(", ".join(g) for g in groups)


def build_preset(
    preset: str,
    names: Sequence[str],
    *,
    groups: Sequence[Sequence[str]] = (),
    epsilon: float = 0.1,
    beta: float = 2.0,
    alpha: float = 0.5,
    confusion: Tensor | None = None,
) -> Lens:
    """The lens of ``preset`` over ``names``.

    ``groups`` feed "merge groups" and, as the hierarchy's inner level,
    "hierarchy soft labels"; ``confusion`` (K×K, rows true class) feeds "from confusion".

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
        return hierarchy_lens(names, [list(g) for g in groups], beta)
    if preset == "from confusion":
        if confusion is None:
            raise LensError.build("a confusion matrix from the data", "none", fix="Load predictions first.")
        return confusion_lens(confusion, alpha, names)
    raise LensError.build(f"a preset in {PRESETS}", repr(preset), fix="Choose one of the listed presets.")
