"""Playground: one example at a time, as in the seed notebook."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from lensdash import figures
from lensdash.errors import LensdashError
from lensdash.losses import lensed_cross_entropy, prediction_lensed_cross_entropy, soft_target_cross_entropy
from lensdash.sanitize import markdown_text


def _vector(text: str, what: str) -> torch.Tensor:
    try:
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise LensdashError.build(
            f"{what} as comma-separated numbers", repr(text), fix="For example 0.4, 0.3, 0.2, 0.1"
        ) from None
    if len(values) < 2:
        raise LensdashError.build(f"{what} with at least 2 numbers", f"{len(values)}", fix="One number per class.")
    return torch.tensor(values, dtype=torch.float64)


def interesting_top(figure: go.Figure, margin: float = 0.15) -> float:
    """Top of the y-axis that shows where the curves differ: the highest value over the middle 80% of the split.

    At a split of 0 or 1 the cross-entropy of a class with no probability runs up to −log 1e-12 ≈ 27.6, which would
    squash every curve's interesting region into the bottom of the plot; the ends stay reachable by zooming out.

    Example:
        >>> fig = go.Figure([go.Scatter(x=[0, 0.5, 1], y=[27.6, 1.0, 27.6])])
        >>> round(interesting_top(fig), 2)
        1.15
    """
    tops = []
    for trace in figure.data:
        x, y = np.asarray(trace.x, dtype=float), np.asarray(trace.y, dtype=float)
        middle = y[(x >= 0.1) & (x <= 0.9) & np.isfinite(y)]
        if middle.size:
            tops.append(float(middle.max()))
    return (max(tops) if tops else 1.0) * (1 + margin) or 1.0


def playground_section() -> None:
    st.caption(
        "The seed notebook's single example, editable (the seed is the notebook lensdash grew from, "
        "lensing_softmax_notebook: Q = [0.4, 0.3, 0.2, 0.1], true label 0, gives 0.9163 unlensed and 0.3670 with "
        "classes 0 and 1 merged). The lens row is the target distribution for the true label; "
        "the classes it names are treated as one group."
    )
    c1, c2, c3 = st.columns([2, 2, 1])
    kind = c1.radio("Model output is", ["probabilities", "logits"], horizontal=True, key="pg_kind")
    output = c1.text_input("Model output", "0.4, 0.3, 0.2, 0.1", key="pg_output")
    row = c2.text_input("Lens row for the true label", "0.5, 0.5, 0, 0", key="pg_lens_row")
    label = c3.number_input("True label", min_value=0, value=0, step=1, key="pg_label")
    try:
        out, target = _vector(output, "the model output"), _vector(row, "the lens row")
        k = len(out)
        if len(target) != k:
            raise LensdashError.build(
                f"a lens row of {k} numbers (one per class)",
                f"{len(target)}",
                fix="Give the lens row one weight per class.",
            )
        if kind == "probabilities":
            if (out < 0).any() or abs(float(out.sum()) - 1) > 1e-2:
                raise LensdashError.build(
                    "probabilities >= 0 summing to 1",
                    f"a sum of {float(out.sum()):.4g}",
                    fix="Fix the numbers or switch to logits.",
                )
            logits = torch.log(out)
        else:
            logits = out
        if (target < 0).any() or abs(float(target.sum()) - 1) > 1e-3:
            raise LensdashError.build(
                "a lens row >= 0 summing to 1",
                f"a sum of {float(target.sum()):.4g}",
                fix="Rows are target distributions.",
            )
        if not 0 <= label < k:
            raise LensdashError.build(f"a label in 0..{k - 1}", str(label), fix="Labels are 0-based.")
    except LensdashError as exc:
        st.error(markdown_text(str(exc)))
        return
    # The classes the row names are one group: each of them gets this row, so the
    # prediction-side lens (which reads C's columns) sees the same grouping.
    lens = torch.eye(k, dtype=torch.float64)
    lens[label] = target
    for j in torch.nonzero(target > 0).flatten().tolist():
        lens[j] = target
    x = logits.unsqueeze(0).clone().requires_grad_(True)
    y = torch.tensor([label])
    kl = lensed_cross_entropy(x, y, lens)
    (grad,) = torch.autograd.grad(kl, x)
    # Everything below is read as numbers: without the graph (float() of a tensor that requires grad warns).
    kl, x = kl.detach(), x.detach()
    values = {
        "unlensed cross-entropy": float(lensed_cross_entropy(x, y, torch.eye(k, dtype=torch.float64))),
        "lensed, KL form (seed)": float(kl),
        "lensed, CE form = KL + H(row)": float(soft_target_cross_entropy(x, y, lens)),
        "prediction-side: −log (pC)[y]": float(prediction_lensed_cross_entropy(x, y, lens)),
    }
    cols = st.columns(4)
    for col, (name, value) in zip(cols, values.items()):
        col.metric(name, "∞" if value == float("inf") else f"{value:.4f}")
    st.dataframe(
        pd.DataFrame(
            {
                "class": range(k),
                "softmax p": torch.softmax(logits, 0).numpy(),
                "lens row C[y]": target.numpy(),
                "gradient p − C[y]": grad[0].numpy(),
            }
        ),
        hide_index=True,
        key="pg_table",
    )
    pair = [j for j in range(k) if target[j] > 0][:2]
    a, b = (pair + [j for j in range(k) if j not in pair])[:2]
    figure = figures.split_curve(lens, label, a, b)
    figure.update_yaxes(range=[0, interesting_top(figure)])
    st.plotly_chart(figure, key="pg_split")
    st.caption(
        f"The model puts 98% of its probability on classes {a} and {b}, split as t : 1 − t. The target-side lens is "
        "lowest where the split matches the lens row; the prediction-side lens only asks that the pair together be "
        "likely, so any split is as good. The y-axis shows splits between 0.1 and 0.9 (at 0 or 1 a class with no "
        "probability sends the cross-entropy to ~28): double-click the plot to see all of it."
    )
