"""Lenses suggested by the data: confused pairs, groups, where a lens moves mass (imported from lensdash.analysis).

Lens convention: row ``i`` of a lens is the target distribution used when the true label is ``i``; rows sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch import Tensor

from lensdash.lens import class_names


def soft_confusion(logits: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Mean predicted probability per true class: K×K, row = true class (rows of absent classes are 0).

    ``S[i, j] = mean over samples n with y_n = i of softmax(x_n)_j``, accumulated in float64.

    Args:
        logits: (N, K) scores.
        labels: (N,) true classes in ``[0, K)``.
        num_classes: K.

    Returns:
        (K, K) float64; each row of a present class sums to 1.

    Example:
        >>> soft_confusion(torch.zeros(2, 2), torch.tensor([0, 0]), 2)
        tensor([[0.5000, 0.5000],
                [0.0000, 0.0000]], dtype=torch.float64)
    """
    sums = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=logits.device)
    # In row blocks: a float64 softmax of the whole (N, K) array would hold four times the float32 logits at once
    # (on a hosted server, for every user reading a file at that moment); a block keeps it to a few MB.
    rows = max(1, _SOFT_CONFUSION_CELLS // max(1, num_classes))
    for start in range(0, logits.shape[0], rows):
        block = torch.softmax(logits[start : start + rows].double(), dim=1)
        sums.index_add_(0, labels[start : start + rows], block)
    counts = torch.bincount(labels, minlength=num_classes).double().clamp_min(1)
    return sums / counts.unsqueeze(1)


#: Cells (rows × classes) of one block of :func:`soft_confusion` (8 MB of float64).
_SOFT_CONFUSION_CELLS = 1 << 20


def confused_pairs(confusion: Tensor, names: Sequence[str], top: int = 10) -> pd.DataFrame:
    """The most mutually confused class pairs: rates ``a→b`` and ``b→a`` (row-normalised) and their mean.

    Example:
        >>> confused_pairs(torch.tensor([[8, 2, 0], [3, 7, 0], [0, 0, 10]]), ["a", "b", "c"], top=1)
           a  b  a→b  b→a  mutual
        0  a  b  0.2  0.3    0.25
    """
    rates = confusion.double() / confusion.double().sum(dim=1, keepdim=True).clamp_min(1e-12)
    mutual = (rates + rates.T) / 2
    k = rates.shape[0]
    iu = torch.triu_indices(k, k, offset=1)
    scores = mutual[iu[0], iu[1]]
    order = torch.argsort(scores, descending=True, stable=True)[:top]
    rows = []
    for o in order.tolist():
        i, j = int(iu[0, o]), int(iu[1, o])
        rows.append(
            {
                "a": names[i],
                "b": names[j],
                "a→b": round(float(rates[i, j]), 4),
                "b→a": round(float(rates[j, i]), 4),
                "mutual": round(float(mutual[i, j]), 4),
            }
        )
    return pd.DataFrame(rows, columns=["a", "b", "a→b", "b→a", "mutual"])


def suggest_groups(
    confusion: Tensor, names: Sequence[str], *, threshold: float = 0.1, top: int = 5, min_samples: int = 5
) -> list[list[str]]:
    """Groups of interchangeable classes: pairs confused at a rate of at least ``threshold``, joined transitively.

    ``confusion`` holds counts (row = true class). Classes with fewer than
    ``min_samples`` samples are left out: their rates are noise.

    Example:
        >>> suggest_groups(torch.tensor([[8, 2, 0], [3, 7, 0], [0, 0, 10]]), ["a", "b", "c"])
        [['a', 'b']]
    """
    enough = confusion.sum(dim=1) >= min_samples
    pairs = confused_pairs(confusion * (enough.unsqueeze(0) & enough.unsqueeze(1)), names, top=top)
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            n = parent[n]
        return n

    for row in pairs.itertuples(index=False):
        if row.mutual >= threshold:
            parent[root(row.b)] = root(row.a)
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(root(n), []).append(n)
    return [g for g in groups.values() if len(g) > 1]


def lens_pairs(lens: object, names: Sequence[str] | None = None, top: int = 10) -> pd.DataFrame:
    """Where a lens moves target mass: its largest off-diagonal entries, ``true label → target: weight``.

    Lens convention: rows are target distributions, rows sum to 1.

    Example:
        >>> lens_pairs([[0.7, 0.3], [0, 1]], ["a", "b"])
          true label target  weight
        0          a      b     0.3
    """
    matrix = torch.as_tensor(getattr(lens, "matrix", lens), dtype=torch.float64)
    names = class_names(names if names is not None else getattr(lens, "classes", None) or matrix.shape[0])
    off = matrix.clone()
    off.fill_diagonal_(0)
    flat = off.reshape(-1)
    order = torch.argsort(flat, descending=True, stable=True)[:top]
    k = matrix.shape[0]
    rows = [
        {"true label": names[i // k], "target": names[i % k], "weight": round(float(flat[i]), 4)}
        for i in order.tolist()
        if flat[i] > 0
    ]
    return pd.DataFrame(rows, columns=["true label", "target", "weight"])
