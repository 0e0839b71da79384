"""Plotly figure builders: pure functions from core results to ``go.Figure``.

No Streamlit here. Every builder bounds what it sends to the browser
(:data:`MAX_POINTS`, :data:`MAX_HEATMAP_CLASSES`) whatever N is, and says in
the title when it shows a selection.

Class names are data: plotly draws tick labels, hover text, legends and titles as a small subset of HTML (``<a href>``,
``<b>``, ``<br>``), so every builder passes names through :func:`_label` (HTML-escaped) and callers pass raw names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from torch import Tensor

from lensdash._figures_base import (
    DIVERGING,
    FONT,
    MAX_HEATMAP_CLASSES,
    MAX_HEATMAP_LIMIT,
    MAX_POINTS,
    TICK_CHARS,
    TICK_PX,
    _figure,
    _label,
    _labels,
    _np,
    _sample,
)
from lensdash._figures_classes import class_order, lens_groups, pick_classes, rollup, zoom
from lensdash._figures_lab import decision_regions, split_curve, training_curves
from lensdash.errors import InputError

__all__ = [
    "DIVERGING",
    "FONT",
    "MAX_HEATMAP_CLASSES",
    "MAX_HEATMAP_LIMIT",
    "MAX_POINTS",
    "TICK_CHARS",
    "TICK_PX",
    "class_order",
    "confusion_heatmap",
    "decision_regions",
    "delta_histogram",
    "gradient_heatmap",
    "lens_groups",
    "lens_heatmap",
    "loss_scatter",
    "pick_classes",
    "rollup",
    "sample_gradient_heatmap",
    "split_curve",
    "top_classes",
    "training_curves",
    "zoom",
]


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
        colorbar={"title": {"text": "gradient"}, "thickness": 12},
    )


def gradient_heatmap(
    matrix: Tensor | np.ndarray,
    names: Sequence[str],
    title: str,
    *,
    zmax: float | None = None,
    subset: Sequence[int] | np.ndarray | None = None,
    diagonal: bool = True,
    width: int | None = None,
) -> go.Figure:
    """A K×K class-mean gradient matrix: rows true class, columns logit; diverging colours centred at 0.

    ``subset`` (class indices, in display order, e.g. from :func:`pick_classes` and :func:`class_order`) shows
    the same classes in every panel; without it, up to :data:`MAX_HEATMAP_CLASSES` with the largest gradients.
    The size grows with the classes shown and tick labels are thinned to what fits (all names are in the hover);
    ``width`` (px) is the panel's width when known, so the column labels fit it. ``diagonal=False`` blanks the
    diagonal (each class's own logit), which otherwise sets the colour range.
    """
    values = _np(matrix)
    keep = top_classes(values) if subset is None else _checked_subset(subset, len(names))
    raw = [str(names[i]) for i in keep]
    shown = _labels(raw)
    values = values[np.ix_(keep, keep)].astype(float)
    if not diagonal:
        values[np.diag_indices_from(values)] = np.nan
    note = f"{len(keep)} of {len(names):,} classes" if len(keep) < len(names) else ""
    if note and subset is None:
        note += " with the largest gradients"
    if not diagonal:
        note = ", ".join(filter(None, [note, "diagonal left out"]))
    bound = zmax if zmax is not None else float(np.nanmax(np.abs(values), initial=0.0) or 1.0)
    trace = _diverging_heatmap(
        values, shown, shown, bound, "true class %{y}<br>logit %{x}<br>mean gradient %{z:.4f}<extra></extra>"
    )
    height = _heatmap_height(len(shown))
    sized = {"width": width} if width else {}
    return _figure(
        trace,
        _title(title, note),
        "gradient w.r.t. logit of class",
        "true class",
        height=height,
        xaxis=_category_ticks(raw, (width or 420) - 170, TICK_PX + 5),  # rotated labels need more room
        yaxis={"autorange": "reversed", **_category_ticks(raw, height - 150)},
        margin={"l": 10, "r": 10, "t": 70 if note else 50, "b": 10},
        **sized,
    )


def _title(title: str, note: str) -> str:
    """A title with its qualifier on a smaller second line, so narrow panels do not cut it."""
    return f"{title}<br><sup>{note}</sup>" if note else title


def _heatmap_height(n: int) -> int:
    """Height in px for an n×n heatmap: roughly square cells of 6 to 16 px, between 360 and 900 px."""
    return int(min(900, max(360, 150 + n * min(16, max(6, 700 // max(n, 1))))))


def _short(name: str) -> str:
    return name if len(name) <= TICK_CHARS else name[: TICK_CHARS - 1] + "…"


def _category_ticks(raw: Sequence[str], plot_px: int, px_per_label: int = TICK_PX) -> dict:
    """A category axis labelling as many classes as fit (every m-th), names shortened; the rest is in the hover.

    ``raw`` are the names as written: values and labels are escaped here (shortened before, so no entity is cut).
    """
    fit = max(1, plot_px // px_per_label)
    step = max(1, math.ceil(len(raw) / fit))
    values = list(raw[::step])
    return {
        "type": "category",
        "tickmode": "array",
        "tickvals": _labels(values),
        "ticktext": _labels(map(_short, values)),
    }


def _checked_subset(subset: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
    keep = np.asarray(subset, dtype=np.int64).reshape(-1)
    if keep.size == 0 or keep.min() < 0 or keep.max() >= k or len(np.unique(keep)) != keep.size:
        raise InputError.build(
            f"distinct class indices in 0..{k - 1}", f"{keep.tolist()[:5]}", fix="Pick classes that exist."
        )
    if keep.size > MAX_HEATMAP_LIMIT:
        raise InputError.build(
            f"at most {MAX_HEATMAP_LIMIT} classes in one heatmap", f"{keep.size}", fix="Roll up to groups or zoom."
        )
    return keep


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
    cols = _labels(str(names[int(i)]) for i in keep)
    rows = [f"#{i} ({_label(lab)})" for i, lab in zip(sample_ids, labels)]
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
        [_label(names[label_ids[i]]) if names is not None else str(label_ids[i]) for i in idx]
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


def delta_histogram(
    delta: Tensor, bins: int = 60, *, unchanged_tol: float | None = 1e-6, log_y: bool = False
) -> go.Figure:
    """Histogram of lensed minus unlensed loss, binned here so the payload does not grow with N.

    Samples the lens leaves unchanged (``|delta| < unchanged_tol``; all of a class the lens does not touch)
    would make one tall bar at 0 that flattens the rest, so they are left out and counted in the title; pass
    ``unchanged_tol=None`` to keep them. ``log_y`` puts the counts on a log scale.
    """
    d = _np(delta)
    d = d[np.isfinite(d)]
    total = d.size
    title = "Lensed − unlensed loss per sample"
    if unchanged_tol is not None:
        changed = np.abs(d) >= unchanged_tol
        unchanged = int(total - changed.sum())
        d = d[changed]
        if unchanged:
            title = _title(
                title,
                f"{unchanged:,} of {total:,} samples unchanged (|Δ| < {unchanged_tol:g}) left out"
                + ("; every sample is unchanged" if d.size == 0 else ""),
            )
    empty = d.size == 0
    if empty:
        d = np.zeros(1)
    lo, hi = float(d.min()), float(d.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(d, bins=bins, range=(lo, hi))
    if empty:
        counts = np.zeros_like(counts)
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
    return _figure(
        bars,
        title,
        "lensed − unlensed loss",
        "samples",
        shapes=[zero],
        yaxis={"type": "log"} if log_y else None,
        margin={"l": 10, "r": 10, "t": 70 if "<br>" in title else 50, "b": 10},
    )


def confusion_heatmap(
    counts: Tensor | np.ndarray,
    names: Sequence[str],
    *,
    normalize: bool = True,
    subset: Sequence[int] | np.ndarray | None = None,
    diagonal: bool = True,
    log: bool = False,
    title: str | None = None,
) -> go.Figure:
    """Confusion matrix, rows true class, columns predicted; row-normalised by default.

    Args:
        counts: K×K counts (rows true class).
        names: K class (or group) names.
        normalize: divide each row by its total.
        subset: class indices to show, in display order (:func:`class_order`, :func:`pick_classes`); default
            the :data:`MAX_HEATMAP_CLASSES` most confused classes.
        diagonal: ``False`` blanks the diagonal, so the colour scale spans the confusions alone.
        log: colour by ``log10`` of the value (the hover still shows the value), so small confusions show
            beside large ones.
        title: replaces "Confusion matrix".
    """
    values = _np(counts)
    if normalize:
        values = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    hover = "true %{y}<br>predicted %{x}<br>%{customdata}<extra></extra>" if log else None
    trace, raw = _class_heatmap(
        values,
        names,
        hover or "true %{y}<br>predicted %{x}<br>%{z}<extra></extra>",
        subset=subset,
        diagonal=diagonal,
        log=log,
    )
    kept = len(raw)
    qualifiers = ["row-normalised"] if normalize else []
    if not diagonal:
        qualifiers.append("diagonal left out")
    if log:
        qualifiers.append("log colour scale")
    if kept < len(names):
        qualifiers.append(f"{kept} of {len(names):,} classes" + (" most confused" if subset is None else ""))
    height = _heatmap_height(kept)
    axis = _category_ticks(raw, height - 150)
    return _figure(
        trace,
        _title(title or "Confusion matrix", ", ".join(qualifiers)),
        "predicted class",
        "true class",
        height=height,
        xaxis=axis,
        yaxis={"autorange": "reversed", **axis},
        margin={"l": 10, "r": 10, "t": 70 if qualifiers else 50, "b": 10},
    )


def lens_heatmap(
    matrix: Tensor | np.ndarray, names: Sequence[str], *, subset: Sequence[int] | np.ndarray | None = None
) -> go.Figure:
    """The lens itself: row = true label, column = target class (``subset`` as in :func:`confusion_heatmap`)."""
    trace, raw = _class_heatmap(
        _np(matrix), names, "true label %{y}<br>target class %{x}<br>weight %{z}<extra></extra>", zmax=1, subset=subset
    )
    kept = len(raw)
    note = f"{kept} of {len(names):,} classes" if kept < len(names) else ""
    height = _heatmap_height(kept)
    axis = _category_ticks(raw, height - 150)
    return _figure(
        trace,
        _title("Lens (rows are target distributions)", note),
        "target class",
        "true label",
        height=height,
        xaxis=axis,
        yaxis={"autorange": "reversed", **axis},
    )


def _class_heatmap(
    values: np.ndarray,
    names: Sequence[str],
    hovertemplate: str,
    zmax: float | None = None,
    *,
    subset: Sequence[int] | np.ndarray | None = None,
    diagonal: bool = True,
    log: bool = False,
) -> tuple[go.Heatmap, list[str]]:
    """A class-by-class heatmap of ``subset`` and the names it kept, as written (the trace has them escaped).

    Without ``subset``: the :data:`MAX_HEATMAP_CLASSES` classes with the most off-diagonal weight.
    """
    keep = top_classes(values - np.diag(np.diag(values))) if subset is None else _checked_subset(subset, len(names))
    raw = [str(names[i]) for i in keep]
    shown = _labels(raw)
    z = values[np.ix_(keep, keep)].astype(float)
    if not diagonal:  # rows and columns show the same classes, so the block's diagonal is theirs
        z[np.diag_indices_from(z)] = np.nan
    extra: dict = {}
    if log:
        positive = z[np.isfinite(z) & (z > 0)]
        floor = float(positive.min()) if positive.size else 1.0
        extra["customdata"] = np.round(z, 4)
        z = np.log10(np.where(np.isfinite(z), np.maximum(z, floor), np.nan))
        extra["colorbar"] = {"title": {"text": "log10"}, "thickness": 12}
        zmin, zmax = None, None
    else:
        zmin = 0
    trace = go.Heatmap(
        z=np.round(z, 4),
        x=shown,
        y=shown,
        colorscale="Purples",
        zmin=zmin,
        zmax=zmax,
        hovertemplate=hovertemplate,
        hoverongaps=False,
        **{"colorbar": {"thickness": 12}, **extra},
    )
    return trace, raw
