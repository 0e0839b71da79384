"""Plotly figure builders: pure functions from core results to ``go.Figure``.

No Streamlit here. Every builder bounds what it sends to the browser
(:data:`MAX_POINTS`, :data:`MAX_HEATMAP_CLASSES`) whatever N is, and says in
the title when it shows a selection.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from torch import Tensor

from lensdash.losses import lensed_cross_entropy, prediction_lensed_cross_entropy

#: Most points a scatter sends; above it an evenly spaced, seeded sample is shown.
MAX_POINTS = 5000
#: Most classes a K×K heatmap shows; above it, the classes with the largest values.
MAX_HEATMAP_CLASSES = 60
DIVERGING = "RdBu_r"
FONT = {"size": 13}


def _np(values: Tensor | np.ndarray) -> np.ndarray:
    return values.detach().cpu().double().numpy() if isinstance(values, Tensor) else np.asarray(values, dtype=float)


def _figure(
    traces: object,
    title: str,
    x: str,
    y: str,
    *,
    height: int = 420,
    xaxis: dict | None = None,
    yaxis: dict | None = None,
    **layout: object,
) -> go.Figure:
    """A figure with the house layout, built in one call.

    Plotly validates every ``update_layout``/``update_yaxes`` call on its own (~5 ms each);
    a layout handed to the constructor costs ~0.3 ms, which matters on a page that redraws on every lens edit.
    """
    return go.Figure(
        traces,
        layout={
            "title": {"text": title, "x": 0.0, "xanchor": "left", "font": {"size": 15}},
            "xaxis": {"title": {"text": x}, **(xaxis or {})},
            "yaxis": {"title": {"text": y}, **(yaxis or {})},
            "height": height,
            "margin": {"l": 10, "r": 10, "t": 50, "b": 10},
            "font": FONT,
            **layout,
        },
    )


def top_classes(matrix: np.ndarray, limit: int = MAX_HEATMAP_CLASSES) -> np.ndarray:
    """Indices of the ``limit`` classes with the largest row+column magnitude, in class order."""
    k = matrix.shape[0]
    if k <= limit:
        return np.arange(k)
    weight = np.abs(matrix).sum(axis=0) + np.abs(matrix).sum(axis=1)
    return np.sort(np.argsort(-weight, kind="stable")[:limit])


def _diverging_heatmap(
    values: np.ndarray, x: Sequence[str], y: Sequence[str], bound: float, hovertemplate: str
) -> go.Heatmap:
    """A gradient heatmap: diverging colours centred at 0 and symmetric about it."""
    return go.Heatmap(
        z=np.round(values, 5),
        x=x,
        y=y,
        colorscale=DIVERGING,
        zmid=0.0,
        zmin=-bound,
        zmax=bound,
        hovertemplate=hovertemplate,
        colorbar={"title": {"text": "gradient"}},
    )


def gradient_heatmap(
    matrix: Tensor | np.ndarray, names: Sequence[str], title: str, *, zmax: float | None = None
) -> go.Figure:
    """A K×K class-mean gradient matrix: rows true class, columns logit; diverging colours centred at 0."""
    values = _np(matrix)
    keep = top_classes(values)
    shown = [str(names[i]) for i in keep]
    values = values[np.ix_(keep, keep)]
    if len(keep) < len(names):
        title += f" ({len(keep)} of {len(names)} classes with the largest gradients)"
    bound = zmax if zmax is not None else float(np.abs(values).max() or 1.0)
    trace = _diverging_heatmap(
        values, shown, shown, bound, "true class %{y}<br>logit %{x}<br>mean gradient %{z:.4f}<extra></extra>"
    )
    ticks = (
        {"tickmode": "array", "tickvals": shown} if len(shown) <= 30 else {}
    )  # name every class, not every other one
    return _figure(
        trace,
        title,
        "gradient w.r.t. logit of class",
        "true class",
        xaxis=ticks,
        yaxis={"autorange": "reversed", **ticks},
    )


def sample_gradient_heatmap(
    grads: Tensor | np.ndarray, sample_ids: Sequence[int], labels: Sequence[str], names: Sequence[str], title: str
) -> go.Figure:
    """Per-sample gradient rows (one row per selected sample), labelled ``#index (true class)``."""
    values = _np(grads)
    keep = np.arange(values.shape[1])
    if len(keep) > MAX_HEATMAP_CLASSES:
        keep = np.sort(np.argsort(-np.abs(values).sum(axis=0), kind="stable")[:MAX_HEATMAP_CLASSES])
        title += f" ({len(keep)} of {values.shape[1]} classes with the largest gradients)"
    values = values[:, keep]
    cols = [str(names[i]) for i in keep]
    rows = [f"#{i} ({lab})" for i, lab in zip(sample_ids, labels)]
    bound = float(np.abs(values).max() or 1.0)
    trace = _diverging_heatmap(
        values, cols, rows, bound, "sample %{y}<br>logit %{x}<br>gradient %{z:.4f}<extra></extra>"
    )
    return _figure(
        trace,
        title,
        "gradient w.r.t. logit of class",
        "sample",
        height=max(320, 22 * len(rows) + 120),
        yaxis={"autorange": "reversed", "type": "category"},
    )


def _sample(n: int, limit: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def loss_scatter(
    unlensed: Tensor, lensed: Tensor, labels: Tensor | None = None, names: Sequence[str] | None = None
) -> go.Figure:
    """Lensed vs unlensed loss per sample, with the diagonal; at most :data:`MAX_POINTS` points."""
    u, l_ = _np(unlensed), _np(lensed)
    idx = _sample(len(u))
    finite = np.isfinite(u[idx]) & np.isfinite(l_[idx])
    idx = idx[finite]
    title = "Lensed vs unlensed loss per sample"
    if len(idx) < len(u):
        title += f" ({len(idx):,} of {len(u):,} samples shown)"
    label_ids = _np(labels).astype(int) if labels is not None else None
    text = (
        [str(names[label_ids[i]]) if names is not None else str(label_ids[i]) for i in idx]
        if label_ids is not None
        else None
    )
    points = go.Scattergl(
        x=np.round(u[idx], 5),
        y=np.round(l_[idx], 5),
        mode="markers",
        marker={"size": 5, "opacity": 0.55, "color": "#7a3cc9"},
        text=text,
        customdata=idx,
        hovertemplate="sample #%{customdata}<br>label %{text}<br>unlensed %{x:.4f}<br>lensed %{y:.4f}<extra></extra>",
        name="samples",
    )
    hi = float(max(np.max(u[idx], initial=1.0), np.max(l_[idx], initial=1.0)))
    diagonal = go.Scatter(
        x=[0, hi], y=[0, hi], mode="lines", line={"dash": "dash", "color": "#888"}, name="lensed = unlensed"
    )
    return _figure([points, diagonal], title, "unlensed loss (cross-entropy)", "lensed loss", showlegend=False)


def delta_histogram(delta: Tensor, bins: int = 60) -> go.Figure:
    """Histogram of lensed minus unlensed loss, binned here so the payload does not grow with N."""
    d = _np(delta)
    d = d[np.isfinite(d)]
    if d.size == 0:
        d = np.zeros(1)
    lo, hi = float(d.min()), float(d.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(d, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    bars = go.Bar(
        x=np.round(centres, 5),
        y=counts,
        width=float(edges[1] - edges[0]),
        marker={"color": np.where(centres < 0, "#2166ac", "#b2182b")},
        hovertemplate="delta %{x:.4f}<br>%{y} samples<extra></extra>",
    )
    zero = {
        "type": "line",
        "x0": 0.0,
        "x1": 0.0,
        "xref": "x",
        "y0": 0,
        "y1": 1,
        "yref": "y domain",
        "line": {"dash": "dash", "color": "#555"},
    }
    return _figure(bars, "Lensed − unlensed loss per sample", "lensed − unlensed loss", "samples", shapes=[zero])


def confusion_heatmap(counts: Tensor | np.ndarray, names: Sequence[str], *, normalize: bool = True) -> go.Figure:
    """Confusion matrix, rows true class, columns predicted; row-normalised by default."""
    values = _np(counts)
    if normalize:
        values = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    trace, kept = _class_heatmap(values, names, "true %{y}<br>predicted %{x}<br>%{z}<extra></extra>")
    title = "Confusion matrix" + (" (row-normalised)" if normalize else "")
    if kept < len(names):
        title += f" ({kept} most confused of {len(names)} classes)"
    return _figure(trace, title, "predicted class", "true class", yaxis={"autorange": "reversed"})


def lens_heatmap(matrix: Tensor | np.ndarray, names: Sequence[str]) -> go.Figure:
    """The lens itself: row = true label, column = target class."""
    trace, _ = _class_heatmap(
        _np(matrix), names, "true label %{y}<br>target class %{x}<br>weight %{z}<extra></extra>", zmax=1
    )
    return _figure(
        trace, "Lens (rows are target distributions)", "target class", "true label", yaxis={"autorange": "reversed"}
    )


def _class_heatmap(
    values: np.ndarray, names: Sequence[str], hovertemplate: str, zmax: float | None = None
) -> tuple[go.Heatmap, int]:
    """A K×K class-by-class heatmap, limited to the classes with the most off-diagonal weight; and how many it kept (draw row 0 on top)."""
    keep = top_classes(values - np.diag(np.diag(values)))
    shown = [str(names[i]) for i in keep]
    trace = go.Heatmap(
        z=np.round(values[np.ix_(keep, keep)], 4),
        x=shown,
        y=shown,
        colorscale="Purples",
        zmin=0,
        zmax=zmax,
        hovertemplate=hovertemplate,
    )
    return trace, len(keep)


def split_curve(lens: Tensor, label: int, a: int, b: int, mass: float = 0.98, points: int = 101) -> go.Figure:
    r"""Both lens families' loss as the model moves probability between classes ``a`` and ``b``.

    The model puts ``mass`` on ``{a, b}`` split as ``t : 1 - t`` and spreads the
    rest evenly; ``t`` runs over ``[0, 1]``. With ``a, b`` merged, the seed's
    target-side lens is lowest at ``t = 0.5`` while the prediction-side lens is flat.
    """
    k = lens.shape[0]
    t = torch.linspace(0, 1, points, dtype=torch.float64)
    rest = (1 - mass) / max(k - 2, 1)
    probs = torch.full((points, k), rest, dtype=torch.float64)
    probs[:, a] = mass * t
    probs[:, b] = mass * (1 - t)
    if k == 2:
        probs = probs / probs.sum(dim=1, keepdim=True)
    logits = torch.log(probs.clamp_min(1e-12))
    y = torch.full((points,), label, dtype=torch.int64)
    matrix = torch.as_tensor(lens, dtype=torch.float64)
    eye = torch.eye(k, dtype=torch.float64)
    curves = {
        "unlensed cross-entropy": lensed_cross_entropy(logits, y, eye, reduction="none"),
        "target-side lens (seed): KL(C[y] ‖ p)": lensed_cross_entropy(logits, y, matrix, reduction="none"),
        "prediction-side lens: −log (pC)[y]": prediction_lensed_cross_entropy(logits, y, matrix, reduction="none"),
    }
    colours = ["#888888", "#7a3cc9", "#e08214"]
    lines = [
        go.Scatter(
            x=t.numpy(),
            y=np.round(values.numpy(), 5),
            mode="lines",
            name=name,
            line={"color": colour, "width": 3},
            hovertemplate="share on class a %{x:.2f}<br>loss %{y:.4f}<extra>" + name + "</extra>",
        )
        for (name, values), colour in zip(curves.items(), colours)
    ]
    return _figure(
        lines,
        f"Loss as probability moves between two classes (true label {label})",
        "share of the pair's probability on the first class",
        "loss",
        height=440,
        legend={"orientation": "h", "y": -0.25},
    )


def training_curves(history: dict[str, dict[str, list[float]]], metric: str, title: str) -> go.Figure:
    """One line per run for ``metric`` over epochs (training lab)."""
    lines = [
        go.Scatter(
            x=list(range(1, len(values[metric]) + 1)),
            y=values[metric],
            mode="lines+markers",
            name=run,
            line={"color": colour},
        )
        for (run, values), colour in zip(history.items(), ["#888888", "#7a3cc9", "#e08214"])
    ]
    shares = "accuracy" in metric or "mass" in metric  # on a full 0-100% axis, so small wiggles look small
    yaxis = {"range": [0, 1.02], "tickformat": ".0%"} if shares else {}
    return _figure(
        lines, title, "epoch", metric.replace("_", " "), height=340, yaxis=yaxis, legend={"orientation": "h", "y": -0.3}
    )


def decision_regions(
    grid_x: np.ndarray,
    grid_y: np.ndarray,
    probs: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    title: str,
    *,
    show: int | None = None,
) -> go.Figure:
    """Over a 2-D grid: the predicted class (``show=None``) or the predicted probability of class ``show``, with the data points on top."""
    confidence = probs.max(axis=-1)
    if show is None:
        z, colours, zrange = probs.argmax(axis=-1), "Viridis", {}
        hover = "x %{x}<br>y %{y}<br>predicted class %{z}<br>confidence %{customdata}<extra></extra>"
        extra = {"opacity": 0.45, "showscale": False}
    else:
        z, colours, zrange = np.round(probs[..., show], 3), "Purples", {"zmin": 0.0, "zmax": 1.0}
        hover = f"x %{{x}}<br>y %{{y}}<br>p({names[show]}) %{{z}}<extra></extra>"
        extra = {
            "opacity": 0.8,
            "showscale": True,
            "colorbar": {"title": {"text": f"p({names[show]})"}, "thickness": 12},
        }
    regions = go.Heatmap(
        x=np.round(grid_x, 3),
        y=np.round(grid_y, 3),
        z=z,
        customdata=np.round(confidence, 3),
        colorscale=colours,
        hovertemplate=hover,
        **zrange,
        **extra,
    )
    idx = _sample(len(points), 1500)
    data = go.Scattergl(
        x=np.round(points[idx, 0], 3),
        y=np.round(points[idx, 1], 3),
        mode="markers",
        marker={"color": labels[idx], "colorscale": "Viridis", "size": 6, "line": {"width": 0.5, "color": "white"}},
        text=[str(names[i]) for i in labels[idx]],
        hovertemplate="true class %{text}<extra></extra>",
    )
    return _figure([regions, data], title, "x₁", "x₂", height=400, showlegend=False)
