"""Tables and per-class sums of an analysis (part of :mod:`lensdash.analysis`, imported from there).

Lens convention: row ``i`` of a lens is the target distribution used when the true label is ``i``; rows sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import pandas as pd
import torch
from torch import Tensor

from lensdash.errors import InputError

if TYPE_CHECKING:
    from lensdash.analysis import Analysis


def confusion_counts(predicted: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """K×K counts: row = true class, column = predicted class.

    Example:
        >>> confusion_counts(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2)
        tensor([[1, 1],
                [0, 1]])
    """
    flat = labels * num_classes + predicted
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_sample_table(analysis: Analysis, metadata: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per sample: index, label, predicted class, both losses, their delta, p(true), lens mass.

    Args:
        analysis: from :func:`analyze`.
        metadata: optional columns kept aside from the scores (ids, file names, sites), one row per sample in the
            same order; added after ``sample`` (a name the table already uses gets `` (metadata)`` appended). Its
            values are data from files: pass the table through ``lensdash.sanitize.spreadsheet_safe`` before writing.

    Raises:
        InputError: metadata with another number of rows.

    Example:
        >>> from lensdash.analysis import analyze
        >>> a = analyze(torch.zeros(2, 2), torch.tensor([0, 1]), torch.eye(2))
        >>> list(per_sample_table(a).columns)[:4]
        ['sample', 'label', 'predicted', 'unlensed_loss']
        >>> list(per_sample_table(a, pd.DataFrame({"site": ["x", "y"]})).columns)[:3]
        ['sample', 'site', 'label']
    """
    names = pd.Categorical.from_codes(analysis.labels.cpu().numpy(), categories=list(analysis.class_names))
    pred = pd.Categorical.from_codes(analysis.predicted.cpu().numpy(), categories=list(analysis.class_names))
    table = pd.DataFrame(
        {
            "sample": range(analysis.num_samples),
            "label": names,
            "predicted": pred,
            "unlensed_loss": analysis.unlensed_loss.cpu().numpy(),
            "lensed_loss": analysis.lensed_loss.cpu().numpy(),
            "delta": analysis.delta.cpu().numpy(),
            "p_true": analysis.p_true.cpu().numpy(),
            "lens_mass": analysis.lens_mass.cpu().numpy(),
        }
    )
    if metadata is None or not metadata.shape[1]:
        return table
    if len(metadata) != len(table):
        raise InputError.build(
            f"one metadata row per sample ({len(table)})",
            f"{len(metadata)} rows",
            where="metadata",
            fix="Pass the metadata read with these predictions (Predictions.metadata).",
        )
    beside = metadata.reset_index(drop=True)
    beside.columns = [f"{c} (metadata)" if str(c) in table.columns else str(c) for c in beside.columns]
    return pd.concat([table[["sample"]], beside, table.drop(columns="sample")], axis=1)


@dataclass
class ClassSums:
    """Per-class sums of an analysis. Sums add across chunks of a file and across processes, so reports stream.

    ``count`` and ``correct`` are (K,) samples and top-1 hits per true class; ``lens_hit``
    and ``lens_score`` are (K,) sums of the lens-aware rule and the lens credit
    (:func:`lens_hits`, :func:`lens_credit`) per true class; losses are (K,) sums;
    ``grad_*`` are (K, K) sums of per-sample gradients (row = true class). All float64.
    The K×K confusion counts are :class:`~lensdash.metrics.MetricSums`' (the report
    holds both), so they are counted and all-reduced once.
    """

    count: Tensor
    correct: Tensor
    lens_hit: Tensor
    lens_score: Tensor
    unlensed: Tensor
    lensed: Tensor
    grad_unlensed: Tensor
    grad_lensed: Tensor

    @classmethod
    def zeros(cls, k: int, device: torch.device | str = "cpu") -> ClassSums:
        vec, mat = (
            (lambda: torch.zeros(k, dtype=torch.float64, device=device)),
            (lambda: torch.zeros(k, k, dtype=torch.float64, device=device)),
        )
        return cls(vec(), vec(), vec(), vec(), vec(), vec(), mat(), mat())

    @classmethod
    def of(cls, analysis: Analysis) -> ClassSums:
        labels, k = analysis.labels, analysis.num_classes
        count = torch.bincount(labels, minlength=k).double()
        return cls(
            count,
            analysis.confusion.diagonal().double(),
            per_class_total(analysis.lens_hit, labels, k),
            per_class_total(analysis.lens_score, labels, k),
            per_class_total(analysis.unlensed_loss, labels, k),
            per_class_total(analysis.lensed_loss, labels, k),
            analysis.grad_unlensed.double() * count.unsqueeze(1),
            analysis.grad_lensed.double() * count.unsqueeze(1),
        )

    def tensors(self) -> list[Tensor]:
        return [getattr(self, f.name) for f in fields(self)]

    def add_(self, other: ClassSums) -> ClassSums:
        for mine, theirs in zip(self.tensors(), other.tensors()):
            mine.add_(theirs)
        return self

    def _mean(self, sums: Tensor) -> Tensor:
        return per_class_mean(sums, self.count)

    def per_class_table(self, names: Sequence[str]) -> pd.DataFrame:
        """One row per true class: count, accuracy, lens-aware accuracy, lens soft score, mean losses and delta."""
        return pd.DataFrame(
            {
                "class": list(names),
                "count": self.count.long().cpu().numpy(),
                "accuracy": self._mean(self.correct).cpu().numpy(),
                "lens_aware_accuracy": self._mean(self.lens_hit).cpu().numpy(),
                "lens_soft_score": self._mean(self.lens_score).cpu().numpy(),
                "unlensed_loss": self._mean(self.unlensed).cpu().numpy(),
                "lensed_loss": self._mean(self.lensed).cpu().numpy(),
                "delta": self._mean(self.lensed - self.unlensed).cpu().numpy(),
            }
        )

    def class_mean_gradients(self) -> tuple[Tensor, Tensor]:
        """(unlensed, lensed) K×K class-mean gradients; classes without samples give 0."""
        counts = self.count.clamp_min(1).unsqueeze(1)
        return self.grad_unlensed / counts, self.grad_lensed / counts

    def summary(self) -> dict[str, float]:
        """Mean losses, their difference, accuracies, the lens soft score, N and K (as :meth:`Analysis.summary`)."""
        n = float(self.count.sum())
        unlensed, lensed = float(self.unlensed.sum()) / n, float(self.lensed.sum()) / n
        return {
            "unlensed_loss": unlensed,
            "lensed_loss": lensed,
            "delta": lensed - unlensed,
            "accuracy": float(self.correct.sum()) / n,
            "lens_aware_accuracy": float(self.lens_hit.sum()) / n,
            "lens_soft_score": float(self.lens_score.sum()) / n,
            "num_samples": int(n),
            "num_classes": int(self.count.shape[0]),
        }


def per_class_total(values: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """(K,) float64 sums of per-sample ``values`` (N,) per true class."""
    return torch.zeros(num_classes, dtype=torch.float64, device=labels.device).index_add_(0, labels, values.double())


def per_class_mean(sums: Tensor, count: Tensor) -> Tensor:
    """``sums / count`` per class; NaN where a class has no samples (a table shows it as missing, not 0)."""
    return (sums / count.clamp_min(1)).where(count > 0, torch.nan)


def per_class_table(analysis: Analysis) -> pd.DataFrame:
    """One row per true class: count, accuracy, lens-aware accuracy, mean losses and delta."""
    return ClassSums.of(analysis).per_class_table(analysis.class_names)


def confusion_table(analysis: Analysis, *, normalize: bool = False) -> pd.DataFrame:
    """The confusion matrix as a DataFrame (rows true, columns predicted), counts or row-normalised."""
    return confusion_frame(analysis.confusion, analysis.class_names, normalize=normalize)


def confusion_frame(counts: Tensor, names: Sequence[str], *, normalize: bool = False) -> pd.DataFrame:
    """K×K confusion counts (row = true class) as a DataFrame: integer counts, or row-normalised rates."""
    if normalize:
        values = (counts.double() / counts.double().sum(dim=1, keepdim=True).clamp_min(1)).cpu().numpy()
    else:
        values = counts.long().cpu().numpy()
    names = list(names)
    return pd.DataFrame(values, index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"))


def gradient_table(matrix: Tensor, names: Sequence[str]) -> pd.DataFrame:
    """A K×K class-mean gradient matrix as a DataFrame (row = true class, column = logit)."""
    return pd.DataFrame(
        matrix.detach().cpu().numpy(),
        index=pd.Index(list(names), name="true class"),
        columns=pd.Index(list(names), name="logit"),
    )
