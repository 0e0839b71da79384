"""Results: metrics for both lens families, tables, loss figures, gradient heatmaps, sanity checks."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st
import torch

from lensdash import figures
from lensdash.analysis import (
    FAMILIES,
    Analysis,
    analyze,
    confusion_table,
    per_class_table,
    per_sample_losses_and_gradients,
    per_sample_table,
)
from lensdash.families import FAMILIES as FAMILY_REGISTRY
from lensdash.lens import Lens
from lensdash.sanity import identity_checks, lens_checks, seed_example_checks
from lensdash.ui.cache import lens_digest, session_memo
from lensdash.ui.data import Dataset
from lensdash.ui.downloads import frame_csv

FAMILY_LABELS = {name: entry.label for name, entry in FAMILY_REGISTRY.items()}
#: Rows of the per-sample table shown in the page; the download has all of them.
TABLE_ROWS = 1000
#: The lens checks (float64, autograd through the seed's formula) run on at most this many samples.
SANITY_ROWS = 5000


def cached_analysis(dataset: Dataset, lens: Lens, family: str) -> Analysis:
    """The analysis of ``dataset`` under ``lens``, kept in the session (keyed by both contents and the family)."""

    def compute() -> Analysis:
        preds = dataset.predictions
        return analyze(
            preds.logits, preds.labels, lens, family=family, class_names_=preds.class_names, baseline=dataset.baseline
        )

    return session_memo("analysis", (dataset.digest, lens_digest(lens), family), compute)


def cached_mean_loss(dataset: Dataset, lens: Lens, family: str) -> float:
    """The other family's mean loss alone: no gradients or tables are needed for one metric."""
    preds = dataset.predictions
    return session_memo(
        "mean_loss",
        (dataset.digest, lens_digest(lens), family),
        lambda: float(FAMILIES[family](preds.logits, preds.labels, lens)),
    )


def cached_identity_checks(dataset: Dataset) -> pd.DataFrame:
    preds = dataset.predictions
    return session_memo(
        "identity_checks",
        dataset.digest,
        lambda: pd.DataFrame([c.as_dict() for c in identity_checks(preds.logits, preds.labels)]),
    )


def sanity_sample(n: int) -> torch.Tensor | None:
    """Rows the lens checks run on: all of them up to :data:`SANITY_ROWS`, else a fixed random sample."""
    if n <= SANITY_ROWS:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:SANITY_ROWS].sort().values


def cached_lens_checks(dataset: Dataset, lens: Lens) -> pd.DataFrame:
    def compute() -> pd.DataFrame:
        preds = dataset.predictions
        rows = sanity_sample(preds.num_samples)
        x, y = (preds.logits, preds.labels) if rows is None else (preds.logits[rows], preds.labels[rows])
        checks = lens_checks(x, y, lens) + seed_example_checks()
        return pd.DataFrame([c.as_dict() for c in checks])

    return session_memo("lens_checks", (dataset.digest, lens_digest(lens)), compute)


def _fmt(value: float) -> str:
    return "∞" if value == float("inf") else f"{value:.4f}"


def metrics_section(dataset: Dataset, lens: Lens, family: str) -> Analysis:
    """The headline numbers: both losses and their difference, accuracies, N and K."""
    analysis = cached_analysis(dataset, lens, family)
    s = analysis.summary()
    cols = st.columns(6)
    cols[0].metric(
        "Unlensed loss (cross-entropy)", _fmt(s["unlensed_loss"]), help="Mean F.cross_entropy over all samples."
    )
    cols[1].metric(
        "Lensed loss",
        _fmt(s["lensed_loss"]),
        delta=None if not np.isfinite(s["delta"]) else f"{s['delta']:+.4f} vs unlensed",
        delta_color="off",
        help=f"Mean {FAMILY_LABELS[family]}.",
    )
    other = "prediction" if family == "target" else "target"
    other_label = "Prediction-side lensed loss" if other == "prediction" else "Target-side (seed) loss"
    cols[2].metric(other_label, _fmt(cached_mean_loss(dataset, lens, other)), help=FAMILY_LABELS[other])
    cols[3].metric("Top-1 accuracy", f"{s['accuracy']:.1%}")
    cols[4].metric(
        "Lens-aware accuracy",
        f"{s['lens_aware_accuracy']:.1%}",
        help="The predicted class has non-zero lens weight for the true class.",
    )
    cols[5].metric("Samples × classes", f"{s['num_samples']:,} × {s['num_classes']}")
    return analysis


def tables_section(analysis: Analysis, metadata: pd.DataFrame | None = None) -> None:
    st.subheader("Per class")
    st.dataframe(per_class_table(analysis), hide_index=True, width="stretch", key="per_class_table")
    left, right = st.columns(2)
    left.plotly_chart(
        figures.loss_scatter(analysis.unlensed_loss, analysis.lensed_loss, analysis.labels, analysis.class_names),
        key="scatter",
    )
    right.plotly_chart(figures.delta_histogram(analysis.delta), key="histogram")
    st.subheader("Per sample")
    table = per_sample_table(analysis, metadata)  # metadata columns (ids, sites) beside the numbers
    order = np.argsort(-np.abs(np.nan_to_num(table["delta"].to_numpy(), posinf=1e30, neginf=-1e30)), kind="stable")
    shown = table.iloc[order[:TABLE_ROWS]]
    st.caption(
        f"The {len(shown):,} samples whose loss the lens changes most (of {len(table):,}); click a column to sort. "
        "The download has every sample."
    )
    st.dataframe(shown, hide_index=True, width="stretch", height=360, key="per_sample_table")
    st.download_button(
        "Download the per-sample table (CSV)",
        partial(frame_csv, table),
        "lensdash_per_sample.csv",
        "text/csv",
        key="download_samples",
        on_click="ignore",
    )
    with st.expander("Confusion matrix"):
        normalise = st.toggle("Row-normalised", value=True, key="confusion_normalised")
        st.plotly_chart(
            figures.confusion_heatmap(analysis.confusion, analysis.class_names, normalize=normalise), key="confusion"
        )
        st.dataframe(confusion_table(analysis, normalize=normalise), width="stretch", key="confusion_table")


def gradients_section(dataset: Dataset, lens: Lens, analysis: Analysis) -> None:
    names = analysis.class_names
    st.caption(
        "Class-mean gradient of the loss with respect to the logits: row = true class, column = logit. "
        "Red pushes the logit down, blue pushes it up. Unlensed rows are softmax − one-hot; lensed rows softmax − C[y]."
    )
    bound = float(max(analysis.grad_unlensed.abs().max(), analysis.grad_lensed.abs().max()))
    cols = st.columns(3)
    cols[0].plotly_chart(
        figures.gradient_heatmap(analysis.grad_unlensed, names, "Unlensed", zmax=bound), key="grad_unlensed"
    )
    cols[1].plotly_chart(figures.gradient_heatmap(analysis.grad_lensed, names, "Lensed", zmax=bound), key="grad_lensed")
    cols[2].plotly_chart(
        figures.gradient_heatmap(analysis.grad_difference, names, "Lensed − unlensed"), key="grad_difference"
    )
    st.subheader("Samples the lens changes most")
    c1, c2 = st.columns([1, 1])
    count = c1.slider("How many samples", 5, 100, 20, key="sample_count")
    which = c2.radio("Show", ["lensed − unlensed", "lensed", "unlensed"], horizontal=True, key="sample_gradient_kind")
    delta = analysis.delta.abs().nan_to_num(posinf=1e30)
    top = torch.argsort(delta, descending=True, stable=True)[:count]
    preds = dataset.predictions
    x, y = preds.logits[top], preds.labels[top]
    _, g_lensed = per_sample_losses_and_gradients(x, y, lens, family=analysis.family)
    _, g_plain = per_sample_losses_and_gradients(x, y, torch.eye(len(names)))
    grads = {"lensed − unlensed": g_lensed - g_plain, "lensed": g_lensed, "unlensed": g_plain}[which]
    st.plotly_chart(
        figures.sample_gradient_heatmap(
            grads,
            top.tolist(),
            [names[i] for i in y.tolist()],
            names,
            f"Per-sample gradient ({which}), top {count} by |loss change|",
        ),
        key="grad_samples",
    )


def sanity_section(dataset: Dataset, lens: Lens) -> None:
    st.caption(
        "lensdash checked against independent computations on the current data (in float64): "
        "PyTorch's F.cross_entropy, "
        "autograd through the seed notebook's formula, and the notebook's printed numbers."
    )
    table = pd.concat(
        [cached_identity_checks(dataset), cached_lens_checks(dataset, lens)],
        ignore_index=True,
    )
    if sanity_sample(dataset.predictions.num_samples) is not None:
        st.caption(
            f"The identity checks use all {dataset.predictions.num_samples:,} samples; the two lens checks use a fixed "
            "random "
            f"{SANITY_ROWS:,} of them, so that editing the lens stays quick."
        )
    passed = int(table["passed"].sum())
    (st.success if passed == len(table) else st.error)(f"{passed} of {len(table)} checks pass.")
    shown = table.assign(result=np.where(table["passed"], "✅ pass", "❌ fail")).drop(columns="passed")
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        key="sanity_table",
        column_config={
            "expected": st.column_config.NumberColumn(format="%.6g"),
            "actual": st.column_config.NumberColumn(format="%.6g"),
        },
    )
    st.markdown(
        "**The seed notebook's worked example.** A model outputs Q = [0.4, 0.3, 0.2, 0.1] and the true label is 0. "
        "Unlensed, the loss is −log 0.4 = **0.9163**. With the lens that makes classes 0 and 1 interchangeable "
        "(row 0 = [0.5, 0.5, 0, 0]) it is KL([.5,.5,0,0] ‖ Q) = **0.3670**."
    )
