"""Plotly figures for comparing two models and for slices: pure functions returning ``go.Figure``.

No Streamlit here. Each figure bounds what it sends to the browser (:data:`MAX_BARS`, :data:`MAX_HEATMAP_CLASSES`)
and says in its title when it shows a selection. Class and slice names come from users' files and plotly reads a
subset of HTML in text (links among it), so names are escaped with :func:`lensdash.sanitize.html_text`.
Differences are B − A throughout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from torch import Tensor

from lensdash.sanitize import html_text
from lensdash.slices import Slices

#: Most bars (slices or classes) a bar chart shows; above it, the largest slices / largest differences.
MAX_BARS = 50
#: Most classes the confusion-difference heatmap shows; above it, the classes with the largest changes.
MAX_HEATMAP_CLASSES = 60
DIVERGING = "RdBu_r"


def _layout(title: str, x: str, y: str, **extra: object) -> dict:
    return {
        "title": {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 15}},
        "xaxis": {"title": {"text": x}},
        "yaxis": {"title": {"text": y}},
        "height": 420,
        "margin": {"l": 10, "r": 10, "t": 50, "b": 10},
        "font": {"size": 13},
        **extra,
    }


def slice_figure(slices: Slices, *, limit: int = MAX_BARS) -> go.Figure:
    """Accuracy and lens-aware accuracy per slice as grouped bars, largest slices first, counts on the bars.

    A two-model table (:data:`lensdash.slices.PAIRED_COLUMNS`) draws A's and B's bars side by side.

    Args:
        slices: from :func:`lensdash.slices.slice_table` (or :meth:`SliceAccumulator.result`).
        limit: most slices shown (the largest).

    Example:
        >>> import pandas as pd
        >>> from lensdash.slices import slice_table
        >>> s = slice_table(pd.Series(["a", "b", "a"], name="site"), [1, 0, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1])
        >>> fig = slice_figure(s)
        >>> list(fig.data[0].x), list(fig.data[0].text)
        (['a', 'b'], ['n=2', 'n=1'])
        >>> b = ([0, 0], [1, 0], [1, 1], [1, 1])
        >>> two = slice_table(pd.Series(["a", "b"]), [1, 0], [1, 1], [1, 1], [1, 1], model_b=b)
        >>> [bar.name for bar in slice_figure(two).data]
        ['A accuracy', 'B accuracy', 'A lens-aware accuracy', 'B lens-aware accuracy']
    """
    table = slices.table.head(limit)
    names = [html_text(v) for v in table["slice"]]
    counts = table["count"].to_numpy()
    paired = "accuracy_a" in table.columns
    sides = (("A ", "_a"), ("B ", "_b")) if paired else (("", ""),)
    hover = (
        "%{x}<br>%{fullData.name} %{y:.3f}<br>%{customdata[0]} samples"
        "<br>unlensed loss %{customdata[1]:.3f}<br>lensed loss %{customdata[2]:.3f}<extra></extra>"
    )
    bars = [
        go.Bar(
            x=names,
            y=table[column + suffix].to_numpy(),
            name=prefix + label,
            text=[f"n={c:,}" for c in counts],
            textposition="outside",
            customdata=np.column_stack(
                [counts, table[f"unlensed_loss{suffix}"].to_numpy(), table[f"lensed_loss{suffix}"].to_numpy()]
            ),
            hovertemplate=hover,
        )
        for column, label in (("accuracy", "accuracy"), ("lens_aware_accuracy", "lens-aware accuracy"))
        for prefix, suffix in sides
    ]
    title = f"Accuracy per slice of {html_text(slices.column)}" + (", A and B" if paired else "")
    if len(slices.table) > limit:
        title += f" ({limit} largest of {len(slices.table)} slices)"
    layout = _layout(title, html_text(slices.column), "accuracy", barmode="group")
    layout["yaxis"]["range"] = [0, 1.1]
    layout["xaxis"]["type"] = "category"
    return go.Figure(bars, layout=layout)


def per_class_difference_figure(table: pd.DataFrame, *, limit: int = MAX_BARS) -> go.Figure:
    """Recall of B minus recall of A per true class (from :func:`lensdash.compare.per_class_comparison`).

    Above ``limit`` classes, the classes with the largest absolute difference are shown (in class order).

    Example:
        >>> import torch
        >>> from lensdash.compare import per_class_comparison
        >>> t = per_class_comparison(torch.tensor([0, 1]), torch.tensor([True, False]), torch.tensor([True, True]),
        ...                          ["cat", "dog"])
        >>> np.asarray(per_class_difference_figure(t).data[0].y).tolist()
        [0.0, 1.0]
    """
    shown = table
    title = "Recall per class: B − A"
    if len(table) > limit:
        keep = np.sort(np.argsort(-table["recall_diff"].abs().fillna(0).to_numpy(), kind="stable")[:limit])
        shown = table.iloc[keep]
        title += f" ({limit} largest changes of {len(table)} classes)"
    diff = shown["recall_diff"].to_numpy()
    bar = go.Bar(
        x=[html_text(v) for v in shown["class"]],
        y=diff,
        marker={"color": np.where(diff >= 0, "#2166ac", "#b2182b").tolist()},
        customdata=np.column_stack([shown["count"], shown["recall_a"], shown["recall_b"]]),
        hovertemplate="class %{x}<br>%{customdata[0]} samples<br>A %{customdata[1]:.3f}, B %{customdata[2]:.3f}"
        "<br>B − A %{y:+.3f}<extra></extra>",
    )
    layout = _layout(title, "true class", "recall B − recall A")
    layout["xaxis"]["type"] = "category"
    return go.Figure(bar, layout=layout)


def confusion_difference_heatmap(
    difference: Tensor | np.ndarray, names: Sequence[str], *, normalized: bool = False
) -> go.Figure:
    """The confusion-difference matrix (B − A), rows true class, columns predicted; diverging colours centred at 0.

    Args:
        difference: K×K from :func:`lensdash.compare.confusion_difference`.
        names: K class names.
        normalized: whether ``difference`` is row-normalised (shares) rather than counts; only changes the labels.

    Example:
        >>> fig = confusion_difference_heatmap(np.array([[0, 0], [-1, 1]]), ["a", "b"])
        >>> fig.data[0].zmid, fig.data[0].zmax
        (0.0, 1.0)
    """
    values = difference.detach().cpu().double().numpy() if isinstance(difference, Tensor) else np.asarray(difference)
    values = values.astype(np.float64)
    k = values.shape[0]
    title = "Confusion difference B − A" + (" (row-normalised)" if normalized else " (counts)")
    kept = np.arange(k)
    if k > MAX_HEATMAP_CLASSES:
        weight = np.abs(values).sum(axis=0) + np.abs(values).sum(axis=1)
        kept = np.sort(np.argsort(-weight, kind="stable")[:MAX_HEATMAP_CLASSES])
        title += f" ({MAX_HEATMAP_CLASSES} most changed of {k} classes)"
    shown = values[np.ix_(kept, kept)]
    labels = [html_text(names[int(i)]) for i in kept]
    bound = float(np.abs(shown).max()) or 1.0
    heatmap = go.Heatmap(
        z=np.round(shown, 5),
        x=labels,
        y=labels,
        colorscale=DIVERGING,
        zmid=0.0,
        zmin=-bound,
        zmax=bound,
        hovertemplate="true %{y}<br>predicted %{x}<br>B − A %{z}<extra></extra>",
        colorbar={"title": {"text": "B − A"}},
    )
    layout = _layout(title, "predicted class", "true class")
    layout["yaxis"]["autorange"] = "reversed"
    layout["xaxis"]["type"] = layout["yaxis"]["type"] = "category"
    return go.Figure(heatmap, layout=layout)


__all__ = [
    "MAX_BARS",
    "MAX_HEATMAP_CLASSES",
    "confusion_difference_heatmap",
    "per_class_difference_figure",
    "slice_figure",
]
