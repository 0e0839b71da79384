"""Figures of the lab and playground: the loss along a split between two classes, training curves, 2-D decisions.

Public names are re-exported by :mod:`lensdash.figures`. Lens convention: row ``y`` of a lens is the target
distribution when the true label is ``y``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from torch import Tensor

from lensdash._figures_base import _figure, _label, _sample
from lensdash.lens import lens_matrix
from lensdash.losses import lensed_cross_entropy, prediction_lensed_cross_entropy


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
    matrix = lens_matrix(lens, dtype=torch.float64)
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
    """Over a 2-D grid: the predicted class (``show=None``) or the probability of class ``show``; data points on top."""
    confidence = probs.max(axis=-1)
    extra: dict[str, Any]  # plotly's Heatmap keywords, by mode
    if show is None:
        z, colours, zrange = probs.argmax(axis=-1), "Viridis", {}
        hover = "x %{x}<br>y %{y}<br>predicted class %{z}<br>confidence %{customdata}<extra></extra>"
        extra = {"opacity": 0.45, "showscale": False}
    else:
        z, colours, zrange = np.round(probs[..., show], 3), "Purples", {"zmin": 0.0, "zmax": 1.0}
        hover = f"x %{{x}}<br>y %{{y}}<br>p({_label(names[show])}) %{{z}}<extra></extra>"
        extra = {
            "opacity": 0.8,
            "showscale": True,
            "colorbar": {"title": {"text": f"p({_label(names[show])})"}, "thickness": 12},
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
        text=[_label(names[i]) for i in labels[idx]],
        hovertemplate="true class %{text}<extra></extra>",
    )
    return _figure([regions, data], title, "x₁", "x₂", height=400, showlegend=False)
