"""Plotly figures of the evaluation metrics (:mod:`lensdash.metrics`): pure functions returning ``go.Figure``.

No Streamlit here. A reliability diagram has one point per calibration bin (16 at most with the default 15 bins
plus the bin of confidences of exactly 1), so its size does not depend on N or K.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

#: Reliability tables' columns (:func:`lensdash.metrics.reliability_table`).
RELIABILITY_COLUMNS = ("lower", "upper", "count", "confidence", "accuracy")


def reliability_diagram(
    plain: pd.DataFrame,
    lensed: pd.DataFrame | None = None,
    *,
    title: str = "Reliability diagram",
) -> go.Figure:
    r"""Accuracy against mean confidence per bin, for the top label and (optionally) the lensed prediction.

    Each non-empty bin ``b`` is a point at :math:`(\bar c_b, \bar a_b)`, sized by its sample count (the count is
    in the hover, with the bin's edges); a perfectly calibrated model lies on the dashed diagonal. The lensed
    prediction is the lens-aware answer :func:`lensdash.metrics.lensed_top_label` (for a merge lens: the most
    probable group, its summed probability vs whether the truth is in it), so both traces read the same way.

    Args:
        plain: :meth:`lensdash.metrics.MetricSums.reliability` of the top label.
        lensed: the same with ``lensed=True``, or ``None``.
        title: the figure's title.

    Returns:
        A figure with the diagonal and one marker-and-line trace per table.

    Example:
        >>> table = pd.DataFrame({"lower": [0.0, 0.5], "upper": [0.5, 1.0], "count": [2, 0],
        ...                       "confidence": [0.3, float("nan")], "accuracy": [0.5, float("nan")]})
        >>> [trace.name for trace in reliability_diagram(table).data]
        ['perfect calibration', 'top label']
    """
    traces: list[go.BaseTraceType] = [
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line={"dash": "dash", "color": "#999"},
            name="perfect calibration",
            hoverinfo="skip",
        )
    ]
    for table, name, colour in ((plain, "top label", "#1f77b4"), (lensed, "lensed prediction", "#d62728")):
        if table is None:
            continue
        shown = table[table["count"] > 0]
        counts = shown["count"].to_numpy(dtype=float)
        sizes = 6 + 18 * np.sqrt(counts / counts.max()) if len(counts) else []
        traces.append(
            go.Scatter(
                x=shown["confidence"].to_numpy(dtype=float),
                y=shown["accuracy"].to_numpy(dtype=float),
                mode="lines+markers",
                name=name,
                marker={"size": sizes, "color": colour},
                line={"color": colour},
                customdata=np.stack(
                    [shown["lower"].to_numpy(dtype=float), shown["upper"].to_numpy(dtype=float), counts], axis=1
                )
                if len(counts)
                else None,
                hovertemplate=(
                    "confidence %{x:.3f}<br>accuracy %{y:.3f}<br>bin [%{customdata[0]:.3f}, %{customdata[1]:.3f}]"
                    "<br>%{customdata[2]:,.0f} samples<extra>" + name + "</extra>"
                ),
            )
        )
    return go.Figure(
        traces,
        layout={
            "title": {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 15}},
            "xaxis": {"title": {"text": "mean confidence in the bin"}, "range": [0, 1.02]},
            "yaxis": {"title": {"text": "accuracy in the bin"}, "range": [0, 1.02]},
            "height": 440,
            "margin": {"l": 10, "r": 10, "t": 50, "b": 10},
            "font": {"size": 13},
            "legend": {"x": 0.02, "y": 0.98},
        },
    )


__all__ = ["RELIABILITY_COLUMNS", "reliability_diagram"]
