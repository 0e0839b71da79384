"""Shared pieces of the figure builders: the house layout, class labels as plotly must get them, limits.

Class names are data: plotly draws tick labels, hover text, legends and titles as a small subset of HTML, so every
builder passes names through :func:`_label` (HTML-escaped). Public names are re-exported by :mod:`lensdash.figures`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import plotly.graph_objects as go
from torch import Tensor

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


def _sample(n: int, limit: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
