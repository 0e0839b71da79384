"""Figures of the evaluation: reliability diagrams and a confusion matrix whose cells can be clicked.

Pure functions from :mod:`lensdash.metrics` results to ``go.Figure`` (no Streamlit). Class names are data: they
go through :func:`lensdash.sanitize.html_text` before plotly renders them (tick labels and hover text are HTML).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor

from lensdash.errors import InputError
from lensdash.sanitize import html_text

FONT = {"size": 13}
#: Largest K whose confusion matrix gets a clickable marker per cell (K² markers go to the browser).
MAX_CLICKABLE_CLASSES = 40
#: Characters of a class name shown as a tick label (the full name is in the hover text).
TICK_CHARS = 18
#: Columns :func:`reliability_diagram` reads (what :func:`lensdash.metrics.reliability_table` returns).
RELIABILITY_COLUMNS = ("lower", "upper", "count", "confidence", "accuracy")
ACCURACY_COLOUR = "#7a3cc9"
CONFIDENCE_COLOUR = "#e08214"
COUNT_COLOUR = "#888888"


def _check_reliability(table: pd.DataFrame) -> None:
    missing = [c for c in RELIABILITY_COLUMNS if c not in getattr(table, "columns", ())]
    if missing:
        raise InputError.build(
            f"a reliability table with columns {', '.join(RELIABILITY_COLUMNS)}",
            f"no column {', '.join(missing[:3])}",
            fix="Pass MetricSums.reliability() or lensdash.metrics.reliability_table(bins).",
        )


def reliability_bars(table: pd.DataFrame) -> pd.DataFrame:
    """Where each bin of a reliability table is drawn: ``centre`` and ``width`` beside the table's columns.

    Bin ``[lower, upper)`` is drawn over its own width. The bin of confidences of exactly 1 (``lower == upper``,
    :func:`lensdash.metrics.calibration_bins`) has no width: it is drawn as a narrow bar just right of 1, a third of a
    bin wide, so an over-confident model's many certain predictions stay visible.

    Example:
        >>> from lensdash.metrics import calibration_bins, reliability_table
        >>> import torch
        >>> bins = calibration_bins(torch.tensor([0.2, 1.0]), torch.tensor([0, 1]), 2)
        >>> bars = reliability_bars(reliability_table(bins))
        >>> bars[["centre", "width"]].round(4).values.tolist()
        [[0.25, 0.5], [0.75, 0.5], [1.0833, 0.1667]]
    """
    _check_reliability(table)
    lower = table["lower"].to_numpy(dtype=float)
    upper = table["upper"].to_numpy(dtype=float)
    width = upper - lower
    regular = width[width > 0]
    point_width = (float(regular.min()) if regular.size else 1.0) / 3
    zero = width <= 0
    centre = np.where(zero, upper + point_width / 2, (lower + upper) / 2)
    return table.assign(centre=centre, width=np.where(zero, point_width, width))


def _bin_label(lower: float, upper: float) -> str:
    return "confidence = 1" if upper <= lower else f"confidence in [{lower:.3g}, {upper:.3g})"


def reliability_diagram(table: pd.DataFrame, title: str, *, height: int = 460) -> go.Figure:
    r"""Reliability diagram: each bin's accuracy against its mean confidence, with the count of samples per bin.

    Top panel: a bar per non-empty bin whose height is the bin's accuracy :math:`\bar a_b`, a marker at its mean
    confidence :math:`\bar c_b`, and the diagonal of perfect calibration; the gap between bar and marker is the bin's
    calibration error, and the ECE is the count-weighted mean of the gaps. Bottom panel: samples per bin (a log
    scale: a confident model puts most samples in the last bins). Empty bins are left out.

    Args:
        table: :meth:`lensdash.metrics.MetricSums.reliability` (``lensed=True`` too) or
            :func:`lensdash.metrics.reliability_table`: columns ``lower``, ``upper``, ``count``, ``confidence``,
            ``accuracy``, one row per bin.
        title: the figure's title (plain text; it is escaped).
        height: pixels.

    Returns:
        A figure with three traces in the top panel (``accuracy``, ``mean confidence``, ``perfect calibration``) and
        one in the bottom panel (``samples``).

    Raises:
        InputError: ``table`` lacks one of those columns.

    Example:
        >>> import torch
        >>> from lensdash.metrics import MetricSums
        >>> sums = MetricSums.of(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
        >>> [trace.name for trace in reliability_diagram(sums.reliability(), "Top label").data]
        ['accuracy', 'mean confidence', 'perfect calibration', 'samples']
    """
    bars = reliability_bars(table)
    shown = bars[bars["count"] > 0]
    labels = [_bin_label(lo, up) for lo, up in zip(shown["lower"], shown["upper"])]
    counts = shown["count"].to_numpy()
    hover = [
        f"{label}<br>{count:,} samples<br>accuracy {acc:.3f}<br>mean confidence {conf:.3f}<br>gap {acc - conf:+.3f}"
        for label, count, acc, conf in zip(labels, counts, shown["accuracy"], shown["confidence"])
    ]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.74, 0.26], vertical_spacing=0.05)
    fig.add_trace(
        go.Bar(
            x=shown["centre"],
            y=shown["accuracy"],
            width=shown["width"],
            name="accuracy",
            marker={"color": ACCURACY_COLOUR, "opacity": 0.75, "line": {"color": "white", "width": 1}},
            hovertext=hover,
            hoverinfo="text",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=shown["centre"],
            y=shown["confidence"],
            mode="markers",
            name="mean confidence",
            marker={"color": CONFIDENCE_COLOUR, "size": 9, "symbol": "diamond"},
            hovertext=hover,
            hoverinfo="text",
        ),
        row=1,
        col=1,
    )
    right = float(max(1.0, (bars["centre"] + bars["width"] / 2).max()))
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="perfect calibration",
            line={"color": COUNT_COLOUR, "dash": "dash", "width": 1.5},
            hoverinfo="skip",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=shown["centre"],
            y=counts,
            width=shown["width"],
            name="samples",
            marker={"color": COUNT_COLOUR, "line": {"color": "white", "width": 1}},
            hovertext=hover,
            hoverinfo="text",
            showlegend=False,
        ),
        row=2,
        col=1,
    )
    ticks = {"tickvals": [0, 0.2, 0.4, 0.6, 0.8, 1.0], "range": [0, right + 0.01]}
    fig.update_layout(
        title={"text": html_text(title), "x": 0.0, "xanchor": "left", "font": {"size": 15}},
        height=height,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        font=FONT,
        bargap=0,
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1.0, "xanchor": "right"},
        xaxis={**ticks},
        xaxis2={**ticks, "title": {"text": "confidence (bins of equal width; the last bar: exactly 1)"}},
        yaxis={"title": {"text": "accuracy"}, "range": [0, 1.02]},
        # Decades only: a confident model's counts span several, and minor log ticks would crowd a short panel.
        yaxis2={"title": {"text": "samples"}, "type": "log", "dtick": 1, "tickformat": "~s"},
    )
    return fig


def _tick(name: str) -> str:
    return html_text(name if len(name) <= TICK_CHARS else name[: TICK_CHARS - 1] + "…")


def confusion_cells(
    counts: Tensor | np.ndarray, names: Sequence[str], *, selected: tuple[int, int] | None = None, title: str = ""
) -> go.Figure:
    """Confusion counts (row = true class, column = predicted) with one clickable marker per cell.

    Plotly does not report clicks on heatmap cells to Streamlit's ``on_select``, but it does on scatter points: an
    invisible marker sits on every cell, in row-major order, so a selected point's index ``p`` is the cell
    ``divmod(p, K)`` (:func:`cell_of_point`). Colour is the row-normalised rate (so small classes show), the hover
    and the text the counts. Axes are numeric (tick labels are the names), so equal names never merge cells.

    Args:
        counts: (K, K) counts; K ≤ :data:`MAX_CLICKABLE_CLASSES`.
        names: K class names.
        selected: (true, predicted) cell to outline.
        title: plain text (escaped).

    Raises:
        InputError: K above :data:`MAX_CLICKABLE_CLASSES`, or names that do not match.

    Example:
        >>> fig = confusion_cells(np.array([[3, 1], [0, 2]]), ["a", "b"], selected=(0, 1))
        >>> [trace.type for trace in fig.data], len(fig.data[1].x)
        (['heatmap', 'scatter'], 4)
    """
    values = counts.detach().cpu().double().numpy() if isinstance(counts, Tensor) else np.asarray(counts, dtype=float)
    k = values.shape[0]
    if values.shape != (k, k) or len(names) != k:
        raise InputError.build(
            "K×K counts and K names", f"counts {values.shape} and {len(names)} names", fix="Pass one name per class."
        )
    if k > MAX_CLICKABLE_CLASSES:
        raise InputError.build(
            f"at most {MAX_CLICKABLE_CLASSES} classes for a clickable confusion matrix",
            f"{k}",
            fix="Choose the cell with the select boxes instead.",
        )
    rates = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    full = [html_text(n) for n in names]
    hover = [
        [f"true {full[i]}<br>predicted {full[j]}<br>{int(values[i, j]):,} samples ({rates[i, j]:.1%} of the row)"]
        for i in range(k)
        for j in range(k)
    ]
    rows, cols = np.divmod(np.arange(k * k), k)
    heat = go.Heatmap(
        z=np.round(rates, 4),
        x=np.arange(k),
        y=np.arange(k),
        colorscale="Purples",
        zmin=0,
        zmax=1,
        text=values.astype(int),
        texttemplate="%{text}" if k <= 15 else None,
        hoverinfo="skip",
        colorbar={"thickness": 12, "title": {"text": "share of row"}},
    )
    markers = go.Scatter(
        x=cols,
        y=rows,
        mode="markers",
        marker={"size": max(8, 300 // k), "symbol": "square", "color": "rgba(0,0,0,0)"},
        customdata=hover,
        hovertemplate="%{customdata[0]}<extra></extra>",
        showlegend=False,
        name="cells",
    )
    shapes = []
    if selected is not None:
        i, j = selected
        shapes.append(
            {
                "type": "rect",
                "x0": j - 0.5,
                "x1": j + 0.5,
                "y0": i - 0.5,
                "y1": i + 0.5,
                "line": {"color": CONFIDENCE_COLOUR, "width": 3},
            }
        )
    axis = {"tickvals": list(range(k)), "ticktext": [_tick(n) for n in names], "showgrid": False, "zeroline": False}
    return go.Figure(
        [heat, markers],
        layout={
            "title": {"text": html_text(title), "x": 0.0, "xanchor": "left", "font": {"size": 15}},
            "xaxis": {**axis, "title": {"text": "predicted class"}, "range": [-0.5, k - 0.5]},
            "yaxis": {**axis, "title": {"text": "true class"}, "autorange": "reversed"},
            "height": max(440, min(760, 160 + 34 * k)),
            "margin": {"l": 10, "r": 10, "t": 50, "b": 10},
            "font": FONT,
            "shapes": shapes,
            "clickmode": "event+select",
            "dragmode": False,
        },
    )


def cell_of_point(point_index: int, num_classes: int) -> tuple[int, int]:
    """The (true, predicted) cell of marker ``point_index`` of :func:`confusion_cells` (row-major).

    Example:
        >>> cell_of_point(7, 3)
        (2, 1)
    """
    if not 0 <= point_index < num_classes * num_classes:
        raise InputError.build(
            f"a point index in 0..{num_classes * num_classes - 1}", str(point_index), fix="Click a cell again."
        )
    row, col = divmod(int(point_index), num_classes)
    return row, col
