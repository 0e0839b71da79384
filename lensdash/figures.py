"""Plotly figure builders: pure functions from core results to ``go.Figure``.

No Streamlit here. Every builder bounds what it sends to the browser
(:data:`MAX_POINTS`, :data:`MAX_HEATMAP_CLASSES`) whatever N is, and says in
the title when it shows a selection.

Class names are data: plotly draws tick labels, hover text, legends and titles as a small subset of HTML (``<a href>``,
``<b>``, ``<br>``), so every builder passes names through :func:`_label` (HTML-escaped) and callers pass raw names.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from torch import Tensor

from lensdash.errors import InputError
from lensdash.hierarchy import Hierarchy
from lensdash.lens import lens_matrix
from lensdash.losses import lensed_cross_entropy, prediction_lensed_cross_entropy
from lensdash.sanitize import html_text

#: Most points a scatter sends; above it an evenly spaced, seeded sample is shown.
MAX_POINTS = 5000
#: Most classes a K×K heatmap shows; above it, the classes with the largest values.
MAX_HEATMAP_CLASSES = 60
#: Most classes a heatmap may be asked to show (``limit=``): 250² cells keep the JSON well under 2 MB.
MAX_HEATMAP_LIMIT = 250
DIVERGING = "RdBu_r"
FONT = {"size": 13}
#: Pixels a tick label needs along an axis; labels beyond what fits are left to the hover text.
TICK_PX = 13
#: Characters of a class name shown as a tick label (the full name is in the hover text).
TICK_CHARS = 18


def _label(name: object) -> str:
    """A class name as plotly must get it: HTML-escaped, so a name shows as written and never makes a link.

    >>> _label('<a href="http://x">x</a>')
    '&lt;a href=&quot;http://x&quot;&gt;x&lt;/a&gt;'
    """
    return html_text(name)


def _labels(names: Iterable[object]) -> list[str]:
    return [_label(n) for n in names]


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


# ------------------------------------------------------------------------------------------- many classes


def lens_groups(lens: Tensor | np.ndarray) -> np.ndarray:
    """Group id per class: the connected blocks of the lens (classes that share target mass, in either direction).

    Ids are numbered by each block's first class. A merge lens gives its groups; a soft hierarchy lens, which
    spreads mass everywhere, gives one block (use the hierarchy's groups instead).

    Example:
        >>> lens_groups(np.array([[0.5, 0, 0.5], [0, 1, 0], [0.5, 0, 0.5]])).tolist()
        [0, 1, 0]
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    values = _np(lens)
    _, labels = connected_components(csr_matrix((values > 0) | (values.T > 0)), directed=False)
    first: dict[int, int] = {}
    for label in labels:
        first.setdefault(int(label), len(first))
    return np.array([first[int(label)] for label in labels], dtype=np.int64)


def class_order(
    names: Sequence[str],
    *,
    hierarchy: Hierarchy | None = None,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    confusion: Tensor | np.ndarray | None = None,
) -> np.ndarray:
    """A permutation of the classes that makes structure show as blocks on a heatmap's diagonal.

    Give one of:

    * ``hierarchy``: the leaf order of a depth-first walk (classes under one node are contiguous);
    * ``groups``: one group label per class (e.g. :func:`lens_groups` of a merge lens, or
      ``hierarchy.ancestor_at(1, names)``); groups in order of their first class, classes in index order;
    * ``confusion``: the data's own clustering, the leaf order of an average-linkage clustering of the
      symmetrised row-normalised confusion (classes confused with each other end up next to each other).

    Returns:
        Class indices in display order (feed ``subset=`` of the heatmaps, or index a matrix with it).

    Example:
        >>> class_order(["a", "b", "c", "d"], groups=["x", "y", "x", "y"]).tolist()
        [0, 2, 1, 3]
    """
    given = [v is not None for v in (hierarchy, groups, confusion)]
    if sum(given) != 1:
        raise InputError.build(
            "exactly one of hierarchy, groups, confusion", f"{sum(given)}", fix="Pick one way to order the classes."
        )
    k = len(names)
    if hierarchy is not None:
        return np.asarray(hierarchy.order(list(names)), dtype=np.int64)
    if groups is not None:
        labels = list(groups)
        if len(labels) != k:
            raise InputError.build(f"{k} group labels", f"{len(labels)}", fix="Give one group per class.")
        first: dict[Hashable, int] = {}
        for i, g in enumerate(labels):
            first.setdefault(g, i)
        return np.array(sorted(range(k), key=lambda i: (first[labels[i]], i)), dtype=np.int64)
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    assert confusion is not None  # exactly one of the three was given, and the other two have returned
    counts = _np(confusion)
    if counts.shape != (k, k):
        raise InputError.build(f"a {k}×{k} confusion matrix", f"shape {counts.shape}", fix="One row per class.")
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-300)
    similarity = rows + rows.T
    np.fill_diagonal(similarity, 0.0)
    top = similarity.max() or 1.0
    distance = 1.0 - similarity / top
    np.fill_diagonal(distance, 0.0)
    return leaves_list(linkage(squareform(distance, checks=False), method="average")).astype(np.int64)


def pick_classes(
    difference: Tensor | np.ndarray,
    *,
    limit: int = MAX_HEATMAP_CLASSES,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    order: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """One class subset for all three gradient panels (unlensed, lensed, difference), so they can be compared.

    Classes are taken by the size of their row and column in ``difference`` (``sum |d|``), largest first; with
    ``groups``, each class brings its whole group while the group fits in ``limit``, so blocks stay whole.

    Args:
        difference: K×K matrix whose large entries matter (lensed − unlensed gradients, confusion counts).
        limit: most classes returned (at most :data:`MAX_HEATMAP_LIMIT`).
        groups: one group label per class, or ``None``.
        order: display order of all K classes (:func:`class_order`); default index order.

    Returns:
        Class indices, in display order.

    Example:
        >>> d = np.zeros((5, 5)); d[3, 4] = 1.0
        >>> pick_classes(d, limit=3, groups=[0, 0, 1, 1, 1]).tolist()
        [2, 3, 4]
    """
    values = np.abs(_np(difference))
    k = values.shape[0]
    limit = max(1, min(int(limit), MAX_HEATMAP_LIMIT, k))
    weight = values.sum(axis=0) + values.sum(axis=1)
    ranked = np.argsort(-weight, kind="stable")
    members: dict[Hashable, list[int]] = {}
    labels = list(groups) if groups is not None else list(range(k))
    for i, g in enumerate(labels):
        members.setdefault(g, []).append(i)
    chosen: list[int] = []
    taken = np.zeros(k, dtype=bool)
    for i in ranked:
        if len(chosen) >= limit:
            break
        if taken[i]:
            continue
        block = members[labels[i]]
        block = [j for j in block if not taken[j]] if len(chosen) + len(block) <= limit else [int(i)]
        chosen.extend(block)
        taken[block] = True
    position = np.empty(k, dtype=np.int64)
    position[np.asarray(order if order is not None else np.arange(k), dtype=np.int64)] = np.arange(k)
    return np.array(sorted(chosen, key=lambda j: position[j]), dtype=np.int64)


def rollup(
    matrix: Tensor | np.ndarray,
    groups: Sequence[Hashable] | np.ndarray,
    *,
    support: Tensor | np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    r"""A class×class matrix rolled up to groups (a hierarchy level, lens groups).

    Counts (``support=None``) are summed: :math:`R_{ab} = \sum_{i \in a} \sum_{j \in b} M_{ij}`. Class means
    (``support`` = samples per true class, as for the class-mean gradients) average the rows weighted by
    support and sum the columns: :math:`R_{ab} = \sum_{i \in a} n_i \sum_{j \in b} M_{ij} / \sum_{i \in a} n_i`,
    the mean over the group's samples of the gradient with respect to the group's summed logits.

    Args:
        matrix: K×K, rows true class.
        groups: one group label per class (``hierarchy.ancestor_at(level, names)``, :func:`lens_groups`).
        support: per-class sample counts for a matrix of means; ``None`` for counts.

    Returns:
        The G×G matrix and the G group names, groups in order of their first class.

    Example:
        >>> rollup(np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]]), ["a", "a", "b"])
        (array([[11.,  1.],
               [ 0.,  4.]]), ['a', 'b'])
    """
    values = _np(matrix)
    labels = list(groups)
    k = values.shape[0]
    if values.shape != (k, k) or len(labels) != k:
        raise InputError.build(
            f"a K×K matrix and K = {k} group labels",
            f"shape {values.shape}, {len(labels)} labels",
            fix="One per class.",
        )
    ids: dict[Hashable, int] = {}
    index = np.array([ids.setdefault(g, len(ids)) for g in labels], dtype=np.int64)
    g = len(ids)
    member = np.zeros((k, g))
    member[np.arange(k), index] = 1.0
    if support is None:
        return member.T @ values @ member, [str(n) for n in ids]
    weights = _np(support).reshape(-1)
    if weights.shape != (k,) or (weights < 0).any():
        raise InputError.build(f"{k} non-negative sample counts", f"{weights.shape}", fix="Pass the class supports.")
    total = member.T @ weights
    rolled = (member * weights[:, None]).T @ values @ member
    return rolled / np.maximum(total, 1e-300)[:, None] * (total > 0)[:, None], [str(n) for n in ids]


def zoom(
    matrix: Tensor | np.ndarray, names: Sequence[str], chosen: Sequence[str | int]
) -> tuple[np.ndarray, list[str]]:
    """The sub-matrix of ``chosen`` classes (names or indices, in that order) and their names.

    Raises:
        InputError: a name that is not a class (first few named).

    Example:
        >>> zoom(np.arange(9).reshape(3, 3), ["a", "b", "c"], ["c", "a"])
        (array([[8., 6.],
               [2., 0.]]), ['c', 'a'])
    """
    values = _np(matrix)
    position = {str(n): i for i, n in enumerate(names)}
    index: list[int] = []
    unknown: list[str | int] = []
    for c in chosen:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if 0 <= int(c) < len(names):
                index.append(int(c))
            else:
                unknown.append(c)
        elif str(c) in position:
            index.append(position[str(c)])
        else:
            unknown.append(c)
    if unknown or not index:
        shown = ", ".join(repr(str(u)) for u in unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        raise InputError.build("names or indices of classes", shown or "none", fix="Pick classes from the list.")
    return values[np.ix_(index, index)], [str(names[i]) for i in index]


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
