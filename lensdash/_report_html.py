"""``report.html`` and the JSON form of the summary: part of :mod:`lensdash.report`, imported from there.

Lens convention: row ``i`` of the lens is the target distribution used when the true label is ``i``; rows sum to 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lensdash import figures, figures_compare, figures_eval
from lensdash.sanitize import html_text

if TYPE_CHECKING:
    from lensdash.report import Report


def _json_ready(value: Any) -> Any:
    """NaN and infinities as ``None`` (JSON has no NaN), recursively; tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return html_text(str(value))
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _table(rows: Sequence[tuple[str, Any]], caption: str) -> str:
    """A two-column HTML table of (name, value); names and values escaped."""
    body = "".join(f"<tr><th>{html_text(name)}</th><td>{_number(value)}</td></tr>" for name, value in rows)
    return f"<h2>{html_text(caption)}</h2><table class='kv'>{body}</table>"


#: What the report says when the labels were soft (one distribution per sample).
SOFT_LABELS_NOTE = (
    "Soft labels: the losses and gradients use each sample's target distribution t, lensed as t·C; the unlensed "
    "loss is the same family with the identity lens (target side KL(t ‖ softmax), prediction side cross-entropy "
    "with t), so their difference is the lens's alone. Accuracy, the lens-aware rule, precision / recall / F1, "
    "top-k, calibration and the confusion matrix use the majority label (the most likely class of t)."
)

_SUMMARY_ROWS = (
    ("accuracy", "top-1 accuracy"),
    ("lens_aware_accuracy", "lens-aware accuracy (C[y, ŷ] ≥ ½ max C[y])"),
    ("lens_soft_score", "lens soft score (mean C[y, ŷ] / max C[y])"),
    ("macro_precision", "macro precision"),
    ("macro_recall", "macro recall"),
    ("macro_f1", "macro F1"),
    ("weighted_f1", "weighted F1"),
    ("ece", "expected calibration error (15 bins, L1)"),
    ("mce", "maximum calibration error"),
    ("lensed_accuracy", "lensed prediction's accuracy"),
    ("lensed_ece", "lensed calibration error (ECE)"),
    ("lensed_mce", "lensed maximum calibration error"),
    ("unlensed_loss", "unlensed loss"),
    ("lensed_loss", "lensed loss"),
)


def _html(result: Report, grad_u: Tensor, grad_l: Tensor) -> str:
    """``report.html``: headline, metric tables, ordered and rolled-up heatmaps, reliability diagram, per-class table.

    Every name from the files is escaped (:func:`~lensdash.sanitize.html_text`) in the tables; the figure builders
    escape the names in their labels themselves (plotly reads labels as a small HTML subset), so they get raw names.
    """
    names = result.class_names
    s = result.summary()
    order, groups, group_kind = result.class_groups()
    difference = grad_l - grad_u
    confusion = result.metrics.confusion
    off_diagonal = confusion.double() * (1 - torch.eye(len(names), dtype=torch.float64, device=confusion.device))
    shared = figures.pick_classes(difference, groups=groups, order=order)  # one subset for the three panels
    bound = float(max(grad_u[shared][:, shared].abs().max(), grad_l[shared][:, shared].abs().max()))
    figs = [
        figures.gradient_heatmap(grad_u, names, "Class-mean gradient, unlensed", zmax=bound, subset=shared),
        figures.gradient_heatmap(grad_l, names, "Class-mean gradient, lensed", zmax=bound, subset=shared),
        figures.gradient_heatmap(difference, names, "Lensed − unlensed", subset=shared),
        figures.confusion_heatmap(
            confusion, names, subset=figures.pick_classes(off_diagonal, groups=groups, order=order), diagonal=False
        ),
    ]
    if groups is not None:
        rolled, group_names = figures.rollup(confusion, groups)
        figs.append(figures.confusion_heatmap(rolled, group_names, diagonal=False, title=f"Confusion by {group_kind}"))
        count = result.sums.count
        for matrix, title in ((grad_l, "Class-mean gradient, lensed"), (difference, "Lensed − unlensed")):
            rolled, group_names = figures.rollup(matrix, groups, support=count)
            figs.append(figures.gradient_heatmap(rolled, group_names, f"{title}, by {group_kind}"))
    # One diagram per prediction, the builder's own layout (bars of accuracy, markers of confidence, counts below).
    reliability = [
        figures_eval.reliability_diagram(result.metrics.reliability(), "Top label"),
        figures_eval.reliability_diagram(
            result.metrics.reliability(lensed=True), "Lensed prediction (the lens-aware answer)"
        ),
    ]
    if result.comparison is not None:  # the builder escapes the names itself
        figs.append(figures_compare.per_class_difference_figure(result.comparison.per_class_table(names)))
    head = (
        f"<h1>lensdash report: {html_text(result.source)}</h1><p>{s['num_samples']:,} samples × "
        f"{s['num_classes']} classes ({html_text(result.kind)}), {html_text(result.family)}-side lens. "
        f"Unlensed loss {s['unlensed_loss']:.4f}, lensed {s['lensed_loss']:.4f}, "
        f"accuracy {s['accuracy']:.1%}, lens-aware accuracy {s['lens_aware_accuracy']:.1%}.</p>"
    )
    if result.soft_labels:
        head += f"<p class='note'>{html_text(SOFT_LABELS_NOTE)}</p>"
    top_k = s.get("top_k")
    rows = [(label, s[key]) for key, label in _SUMMARY_ROWS if key in s]
    if top_k is not None:
        rows.insert(1, (f"top-{top_k} accuracy", s.get(f"top{top_k}_accuracy")))
    tables = _table(rows, "Metrics")
    if "hierarchy" in s:
        tables += _table(list(s["hierarchy"].items()), "Hierarchical metrics")
    if result.comparison is not None:
        comparison = _json_ready(result.comparison.summary())
        tables += _table(
            [(key, value) for key, value in comparison.items() if key != "notes"],
            f"Compared with B ({result.comparison.source}), B − A",
        )
    if order is not None:
        tables += f"<p>Classes ordered by {html_text(group_kind)}; roll-ups sum each {html_text(group_kind)}.</p>"
    body = "".join(fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figs))
    body += "<h2>Reliability: top label and lensed prediction</h2>" + "".join(
        fig.to_html(full_html=False, include_plotlyjs=False) for fig in reliability
    )
    per_class = result.per_class_table()
    if order is not None:
        per_class = per_class.iloc[order]
    per_class_html = per_class.to_html(index=False, escape=True, float_format=lambda v: f"{v:.4g}", na_rep="–")
    style = (
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "th,td{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}th{text-align:left}</style>"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>lensdash report</title>{style}</head>"
        f"<body>{head}{tables}{body}<h2>Per class</h2>{per_class_html}</body></html>"
    )
