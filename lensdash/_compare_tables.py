"""Per-class differences, the confusion difference, disagreements and the ``comparison.json`` summary of two models;
see :mod:`lensdash.compare`. Lens convention: row ``i`` of a lens is the target distribution when the true label is
``i``; rows sum to 1. Differences are B − A."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from lensdash._compare_stats import (
    BootstrapInterval,
    PairedCounts,
    _as_bool,
    mcnemar_exact_p,
    paired_bootstrap,
    paired_counts,
    top1_correct,
)
from lensdash.analysis import _family, confusion_counts
from lensdash.errors import InputError


def per_class_comparison(
    labels: Tensor,
    correct_a: Tensor,
    correct_b: Tensor,
    class_names: Sequence[str],
    *,
    lensed_a: Tensor | None = None,
    lensed_b: Tensor | None = None,
) -> pd.DataFrame:
    """One row per true class: support, A's and B's recall (per-class accuracy) and B − A; mean lensed loss too.

    Class names are data from files: the CLI passes the frame through ``lensdash.sanitize.spreadsheet_safe``
    before writing a CSV.

    Args:
        labels: (N,) int64 true labels.
        correct_a, correct_b: (N,) bool correctness of A and B (caller's rule).
        class_names: K names.
        lensed_a, lensed_b: optional (N,) per-sample lensed losses; adds ``lensed_loss_a``, ``lensed_loss_b``,
            ``lensed_loss_diff``.

    Returns:
        Columns ``class``, ``count``, ``recall_a``, ``recall_b``, ``recall_diff`` (+ loss columns); classes with no
        samples have ``count`` 0 and NaN rates.

    Example:
        >>> t = per_class_comparison(torch.tensor([0, 0, 1]), torch.tensor([True, False, True]),
        ...                          torch.tensor([True, True, False]), ["cat", "dog"])
        >>> t["recall_diff"].tolist()
        [0.5, -1.0]
    """
    k = len(class_names)
    n = labels.shape[0]
    a = _as_bool(correct_a, n, "correct_a").to(labels.device)
    b = _as_bool(correct_b, n, "correct_b").to(labels.device)
    count = torch.bincount(labels, minlength=k).double()
    safe = count.where(count > 0, torch.tensor(float("nan"), dtype=torch.float64, device=count.device))

    def per_class(values: Tensor) -> np.ndarray:
        sums = torch.zeros(k, dtype=torch.float64, device=labels.device).index_add_(0, labels, values.double())
        return (sums / safe).cpu().numpy()

    frame = pd.DataFrame({"class": list(class_names), "count": count.long().cpu().numpy()})
    frame["recall_a"] = per_class(a)
    frame["recall_b"] = per_class(b)
    frame["recall_diff"] = frame["recall_b"] - frame["recall_a"]
    if lensed_a is not None and lensed_b is not None:
        frame["lensed_loss_a"] = per_class(lensed_a.detach().to(labels.device))
        frame["lensed_loss_b"] = per_class(lensed_b.detach().to(labels.device))
        frame["lensed_loss_diff"] = frame["lensed_loss_b"] - frame["lensed_loss_a"]
    return frame


def confusion_difference(
    labels: Tensor, predicted_a: Tensor, predicted_b: Tensor, num_classes: int, *, normalize: bool = False
) -> Tensor:
    """B's confusion minus A's: K×K, row = true class, column = predicted class.

    With ``normalize`` each confusion is divided by its row's sample count first (rows of absent classes are 0), so
    entry ``[i, j]`` is the change in the share of class ``i`` predicted as ``j``.

    Example:
        >>> confusion_difference(torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([0, 1]), 2)
        tensor([[ 0,  0],
                [-1,  1]])
    """
    counts_a = confusion_counts(predicted_a, labels, num_classes)
    counts_b = confusion_counts(predicted_b, labels, num_classes)
    if not normalize:
        return counts_b - counts_a
    rows = counts_a.sum(dim=1, keepdim=True).double().clamp_min(1)
    return (counts_b.double() - counts_a.double()) / rows


def disagreements(
    labels: Tensor,
    predicted_a: Tensor,
    predicted_b: Tensor,
    class_names: Sequence[str],
    *,
    loss_a: Tensor | None = None,
    loss_b: Tensor | None = None,
    ids: object | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """The samples where A and B predict different classes, largest loss change first.

    Args:
        labels: (N,) true labels; predicted_a, predicted_b: (N,) predicted classes.
        class_names: K names.
        loss_a, loss_b: optional (N,) per-sample losses (e.g. lensed); adds ``loss_a``, ``loss_b``, ``loss_diff``
            (B − A) and sorts by ``|loss_diff|``.
        ids: optional (N,) sample ids, kept as an ``id`` column.
        limit: keep at most this many rows (the largest loss changes when losses are given, else the first).

    Returns:
        Columns ``sample`` (0-based row in A's order, as the per-sample table), ``id``, ``label``, ``predicted_a``,
        ``predicted_b``, ``a_correct``, ``b_correct`` and the loss columns.

    Example:
        >>> d = disagreements(torch.tensor([0, 1]), torch.tensor([0, 0]), torch.tensor([0, 1]), ["x", "y"])
        >>> d[["sample", "predicted_a", "predicted_b"]].values.tolist()
        [[1, 'x', 'y']]
    """
    rows = torch.nonzero(predicted_a != predicted_b).flatten().cpu()
    idx = rows.numpy()
    names = list(class_names)

    def named(values: Tensor) -> pd.Categorical:
        return pd.Categorical.from_codes(values.cpu()[rows].numpy(), categories=names)

    frame = pd.DataFrame({"sample": idx})
    if ids is not None:
        frame["id"] = np.asarray(ids.cpu() if isinstance(ids, Tensor) else ids)[idx]
    frame["label"] = named(labels)
    frame["predicted_a"] = named(predicted_a)
    frame["predicted_b"] = named(predicted_b)
    frame["a_correct"] = (predicted_a.cpu()[rows] == labels.cpu()[rows]).numpy()
    frame["b_correct"] = (predicted_b.cpu()[rows] == labels.cpu()[rows]).numpy()
    if loss_a is not None and loss_b is not None:
        frame["loss_a"] = loss_a.detach().double().cpu()[rows].numpy()
        frame["loss_b"] = loss_b.detach().double().cpu()[rows].numpy()
        frame["loss_diff"] = frame["loss_b"] - frame["loss_a"]
        frame = frame.iloc[np.argsort(-np.abs(frame["loss_diff"].to_numpy()), kind="stable")].reset_index(drop=True)
    return frame if limit is None else frame.head(limit)


def comparison_from_counts(
    counts: PairedCounts,
    *,
    lensed_diff_interval: BootstrapInterval | None = None,
    unlensed_diff_interval: BootstrapInterval | None = None,
) -> dict[str, Any]:
    """The ``comparison.json`` dict from streamed counts (and the bootstrap intervals, when computed).

    Keys: ``samples``, ``accuracy_a``, ``accuracy_b``, ``accuracy_diff``, ``both_correct``, ``a_only_correct``,
    ``b_only_correct``, ``neither_correct``, ``mcnemar_p``, and for ``unlensed`` and ``lensed``:
    ``{kind}_loss_a``, ``{kind}_loss_b``, ``{kind}_loss_diff`` (B − A), ``{kind}_loss_diff_low``,
    ``{kind}_loss_diff_high`` (``None`` without an interval); plus ``bootstrap_resamples``, ``bootstrap_seed``,
    ``bootstrap_confidence``. Values are plain Python numbers, ready for ``json.dumps``.
    """
    n = counts.samples
    if n < 1:
        raise InputError.build("at least one paired sample", "0", fix="Compare predictions of a non-empty set.")
    acc_a = (counts.both_correct + counts.a_only_correct) / n
    acc_b = (counts.both_correct + counts.b_only_correct) / n
    out: dict[str, Any] = {
        "samples": n,
        "accuracy_a": acc_a,
        "accuracy_b": acc_b,
        "accuracy_diff": acc_b - acc_a,
        "both_correct": counts.both_correct,
        "a_only_correct": counts.a_only_correct,
        "b_only_correct": counts.b_only_correct,
        "neither_correct": counts.neither_correct,
        "mcnemar_p": mcnemar_exact_p(counts.a_only_correct, counts.b_only_correct),
    }
    for kind, interval in (("unlensed", unlensed_diff_interval), ("lensed", lensed_diff_interval)):
        mean_a = getattr(counts, f"{kind}_loss_a") / n
        mean_b = getattr(counts, f"{kind}_loss_b") / n
        out[f"{kind}_loss_a"] = mean_a
        out[f"{kind}_loss_b"] = mean_b
        out[f"{kind}_loss_diff"] = mean_b - mean_a
        out[f"{kind}_loss_diff_low"] = interval.low if interval else None
        out[f"{kind}_loss_diff_high"] = interval.high if interval else None
    interval = lensed_diff_interval or unlensed_diff_interval
    out["bootstrap_resamples"] = interval.resamples if interval else 0
    out["bootstrap_seed"] = interval.seed if interval else None
    out["bootstrap_confidence"] = interval.confidence if interval else None
    return out


def comparison_summary(
    logits_a: Tensor,
    logits_b: Tensor,
    labels: Tensor,
    lens: object,
    *,
    family: str = "target",
    correct_a: Tensor | None = None,
    correct_b: Tensor | None = None,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Every paired number for two models under one lens: the ``comparison.json`` dict.

    Keys as :func:`comparison_from_counts`, plus ``family``.

    Lens convention: row ``i`` of ``lens`` is the target distribution when the true label is ``i``; rows sum to 1.
    Unlensed loss is cross-entropy (the identity lens); lensed loss is the ``family`` loss under ``lens``
    (``'target'``: :func:`~lensdash.lensed_cross_entropy`, ``'prediction'``:
    :func:`~lensdash.prediction_lensed_cross_entropy`).

    Args:
        logits_a, logits_b: (N, K) paired logits (see :func:`pair_predictions`).
        labels: (N,) int64 true labels.
        lens: K×K lens.
        family: ``'target'`` or ``'prediction'``.
        correct_a, correct_b: optional (N,) bool correctness (e.g. lens-aware); top-1 when omitted.
        resamples, seed, confidence: the paired bootstrap (see :func:`paired_bootstrap`); ``resamples=0`` skips it.

    Raises:
        InputError: shapes, labels or family; LensError: an invalid lens.

    Example:
        >>> x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
        >>> s = comparison_summary(x, x.flip(1), torch.tensor([0, 1, 1]), torch.eye(2), resamples=0)
        >>> s["accuracy_a"], s["b_only_correct"], s["mcnemar_p"]
        (0.6666666666666666, 1, 1.0)
    """
    loss_fn = _family(family)
    identity = torch.eye(logits_a.shape[1], dtype=logits_a.dtype, device=logits_a.device)
    with torch.no_grad():
        unlensed_a = loss_fn(logits_a, labels, identity, reduction="none")
        unlensed_b = loss_fn(logits_b, labels, identity, reduction="none")
        lensed_a = loss_fn(logits_a, labels, lens, reduction="none")
        lensed_b = loss_fn(logits_b, labels, lens, reduction="none")
    counts = paired_counts(
        top1_correct(logits_a, labels) if correct_a is None else correct_a,
        top1_correct(logits_b, labels) if correct_b is None else correct_b,
        unlensed_a=unlensed_a,
        unlensed_b=unlensed_b,
        lensed_a=lensed_a,
        lensed_b=lensed_b,
    )
    intervals: dict[str, BootstrapInterval | None] = {"lensed": None, "unlensed": None}
    if resamples:
        intervals["lensed"] = paired_bootstrap(
            lensed_a, lensed_b, resamples=resamples, seed=seed, confidence=confidence
        )
        intervals["unlensed"] = paired_bootstrap(
            unlensed_a, unlensed_b, resamples=resamples, seed=seed, confidence=confidence
        )
    out = comparison_from_counts(
        counts, lensed_diff_interval=intervals["lensed"], unlensed_diff_interval=intervals["unlensed"]
    )
    out["family"] = family
    return out


__all__ = [
    "comparison_from_counts",
    "comparison_summary",
    "confusion_difference",
    "disagreements",
    "per_class_comparison",
]
