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
from lensdash.metrics import lens_rule
from lensdash.sanity import identity_checks, lens_checks, seed_example_checks
from lensdash.ui.cache import lens_digest, session_memo
from lensdash.ui.data import Dataset
from lensdash.ui.downloads import frame_csv
from lensdash.ui.evaluation import LENS_RULE_HELP, SOFT_SCORE_HELP, SOFT_UNLENSED_HELP, soft_labels_note
from lensdash.ui.hierarchy import class_view, confusion_view, usable_hierarchy

FAMILY_LABELS = {name: entry.label for name, entry in FAMILY_REGISTRY.items()}
#: Most classes (or groups) per gradient panel for the three panels to sit side by side.
SIDE_BY_SIDE_CLASSES = 15
#: Rows of the per-sample table shown in the page; the download has all of them.
TABLE_ROWS = 1000
#: Most classes whose K×K confusion table is shown as a grid (larger ones: the figure and the download).
TABLE_CLASSES = 100
#: Key of the Results tab's confusion-matrix expander (open: the matrix is drawn).
CONFUSION_OPEN = "confusion_open"
#: The lens checks (float64, autograd through the seed's formula) run on at most this many samples, and at most
#: :data:`SANITY_CELLS` of samples × classes (2,000 samples at K = 1,000): a lens edit reruns them.
SANITY_ROWS = 5000
SANITY_CELLS = 2_000_000
#: The identity checks (float64, once per data) run on at most this many samples × classes (10,000 samples at
#: K = 1,000; all of them below), so that opening the tab stays quick on large uploads.
IDENTITY_CELLS = 10_000_000


def cached_analysis(dataset: Dataset, lens: Lens, family: str) -> Analysis:
    """The analysis of ``dataset`` under ``lens``, kept in the session (keyed by both contents and the family)."""

    def compute() -> Analysis:
        preds = dataset.predictions
        return analyze(
            preds.logits,
            preds.labels,
            lens,
            family=family,
            class_names_=preds.class_names,
            baseline=dataset.baseline,
            targets=preds.targets,
        )

    return session_memo("analysis", (dataset.digest, lens_digest(lens), family), compute)


def cached_mean_loss(dataset: Dataset, lens: Lens, family: str) -> float:
    """The other family's mean loss alone: no gradients or tables are needed for one metric."""
    preds = dataset.predictions
    return session_memo(
        "mean_loss",
        (dataset.digest, lens_digest(lens), family),
        lambda: float(FAMILIES[family](preds.logits, preds.labels if preds.targets is None else preds.targets, lens)),
    )


def cached_identity_checks(dataset: Dataset) -> pd.DataFrame:
    def compute() -> pd.DataFrame:
        preds = dataset.predictions
        rows = sanity_sample(preds.num_samples, identity_rows(preds.num_classes))
        x, y, t = preds.logits, preds.labels, preds.targets
        if rows is not None:
            x, y, t = x[rows], y[rows], (None if t is None else t[rows])
        return pd.DataFrame([c.as_dict() for c in identity_checks(x, y, targets=t)])

    return session_memo("identity_checks", dataset.digest, compute)


def lens_check_rows(num_classes: int) -> int:
    """Most samples the lens checks use: :data:`SANITY_ROWS`, fewer where K makes them over :data:`SANITY_CELLS`.

    >>> lens_check_rows(10), lens_check_rows(1000)
    (5000, 2000)
    """
    return max(1, min(SANITY_ROWS, SANITY_CELLS // max(1, num_classes)))


def identity_rows(num_classes: int) -> int:
    """Most samples the identity checks use: :data:`IDENTITY_CELLS` samples × classes.

    >>> identity_rows(10), identity_rows(1000)
    (1000000, 10000)
    """
    return max(1, IDENTITY_CELLS // max(1, num_classes))


def sanity_sample(n: int, limit: int = SANITY_ROWS) -> torch.Tensor | None:
    """Rows a check runs on: all ``n`` up to ``limit``, else a fixed random ``limit`` of them (in order)."""
    if n <= limit:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:limit].sort().values


def cached_lens_checks(dataset: Dataset, lens: Lens) -> pd.DataFrame:
    def compute() -> pd.DataFrame:
        preds = dataset.predictions
        rows = sanity_sample(preds.num_samples, lens_check_rows(preds.num_classes))
        x, y = (preds.logits, preds.labels) if rows is None else (preds.logits[rows], preds.labels[rows])
        checks = lens_checks(x, y, lens) + seed_example_checks()
        return pd.DataFrame([c.as_dict() for c in checks])

    return session_memo("lens_checks", (dataset.digest, lens_digest(lens)), compute)


def _count(value: int) -> str:
    """A count short enough for a headline metric: exact below 10,000, else 12k / 1.2M (the help has it exact).

    ``10,000 × 1,000`` does not fit its column beside six other metrics; ``10k × 1,000`` does.

    >>> _count(2000), _count(12_345), _count(123_456), _count(1_234_567)
    ('2,000', '12k', '123k', '1.2M')
    """
    if value < 10_000:
        return f"{value:,}"
    if value < 1_000_000:
        return f"{value / 1000:.0f}k"
    return f"{value / 1e6:.1f}M"


def _fmt(value: float) -> str:
    return "∞" if value == float("inf") else f"{value:.4f}"


#: What "seed" means wherever the page says it.
SEED_NOTE = (
    "The seed is the notebook lensdash grew from (lensing_softmax_notebook): its loss is the target-side "
    "KL(C[y] ‖ softmax(x)), and its example (Q = [0.4, 0.3, 0.2, 0.1], true label 0) gives 0.9163 without a lens and "
    "0.3670 with classes 0 and 1 merged."
)


#: Why the prediction-side loss with merge groups reads above the unlensed cross-entropy, and by how much.
RISE_NOTE = (
    "Against the unlensed −log p(y) it changes by log |group| − log(P(group) / p(y)): at most log |group|, reached by "
    "a model that puts its group's probability on the true class (CIFAR-100's superclasses hold 5 classes: up to "
    "log 5 = 1.61), 0 for one that spreads it evenly over the group, less where it sits on the other members."
)


def prediction_side_floor(lens: Lens, labels: torch.Tensor, targets: torch.Tensor | None = None) -> float:
    r"""The least mean prediction-side loss any model can reach under ``lens``: mean of :math:`-\log \max_j C_{j y}`.

    :math:`-\log (pC)_y = -\log \sum_j p_j C_{jy} \ge -\log \max_j C_{jy}`. For a merge group
    :math:`C_{jy} = 1/|G|` inside the group, so the loss is :math:`-\log P(G) + \log |G|` and its floor
    :math:`\log |G|`: even a model certain of the right group pays it. 0 for the identity.
    Lens convention: rows are target distributions, rows sum to 1.

    Example:
        >>> from lensdash import merge_lens
        >>> round(prediction_side_floor(merge_lens(3, [[0, 1]]), torch.tensor([0, 2])), 4)  # (log 2 + 0) / 2
        0.3466
    """
    column_max = lens.matrix.double().amax(dim=0)
    if targets is not None:  # soft labels: the loss is Σ_y t_y (−log (pC)_y), so its floor is Σ_y t_y (−log max_j C_jy)
        t, floor = targets.double().cpu(), -torch.log(column_max)
        return float(torch.where(t > 0, t * floor, 0.0).sum(dim=1).mean())  # an unreachable class with t_y > 0: inf
    return float(-torch.log(column_max[labels.cpu()]).mean())


def metrics_section(dataset: Dataset, lens: Lens, family: str) -> Analysis:
    """The headline numbers: both losses and their difference, the accuracies by both lens-aware rules, N and K.

    Labels are short (seven metrics share the row at 1,440 px); the detail is in each ``help``.
    """
    analysis = cached_analysis(dataset, lens, family)
    s = analysis.summary()
    floor = prediction_side_floor(lens, dataset.predictions.labels, dataset.predictions.targets)
    grouped = floor > 1e-9 and not lens_rule(lens).is_identity
    floor_note = (
        " With merge groups the prediction-side loss is −log P(group) + log |group|: the lens spreads each class's "
        "probability over its group, so even a model sure of the right group pays log |group|. " + RISE_NOTE + " In "
        f"general it is at least −log max_j C[j, y]; the mean of that floor here is {floor:.4f}."
        if grouped
        else ""
    )
    other = "prediction" if family == "target" else "target"
    cols = st.columns([1, 1, 1, 1, 1, 1, 1.5])
    unlensed_help = "Mean cross-entropy (F.cross_entropy), no lens." + (SOFT_UNLENSED_HELP * analysis.soft_labels)
    cols[0].metric("Unlensed loss", _fmt(s["unlensed_loss"]), help=unlensed_help)
    cols[1].metric(
        "Lensed loss",
        _fmt(s["lensed_loss"]),
        delta=None if not np.isfinite(s["delta"]) else f"{s['delta']:+.4f}",
        delta_color="off",
        help=f"Mean {FAMILY_LABELS[family]} (the family chosen in the sidebar); the small number is its difference "
        "from the unlensed loss. " + (floor_note if family == "prediction" else SEED_NOTE),
    )
    other_label = "Prediction-side" if other == "prediction" else "Target-side"
    cols[2].metric(
        other_label,
        _fmt(cached_mean_loss(dataset, lens, other)),
        help=f"The other family's lensed loss: mean {FAMILY_LABELS[other]}."
        + (floor_note if other == "prediction" else " " + SEED_NOTE),
    )
    majority = " With soft labels the true class is the majority label (the most likely class)."
    cols[3].metric(
        "Top-1 accuracy",
        f"{s['accuracy']:.1%}",
        help="Share of samples whose argmax is the true class." + majority * analysis.soft_labels,
    )
    cols[4].metric("Lens-aware acc.", f"{s['lens_aware_accuracy']:.1%}", help="Lens-aware accuracy. " + LENS_RULE_HELP)
    cols[5].metric("Lens soft score", f"{s['lens_soft_score']:.3f}", help=SOFT_SCORE_HELP)
    n, k = int(s["num_samples"]), int(s["num_classes"])
    cols[6].metric("Samples × classes", f"{_count(n)} × {_count(k)}", help=f"{n:,} samples × {k:,} classes.")
    if grouped:
        st.caption(
            "The prediction-side loss with merge groups is −log P(group) + log |group|: the lens spreads each class's "
            f"probability over its group, so it includes a floor no model goes below (log |group|; here {floor:.4f} "
            "on average) and reads higher than −log P(group) by that much. " + RISE_NOTE
        )
    return analysis


def tables_section(analysis: Analysis, metadata: pd.DataFrame | None = None) -> None:
    soft_labels_note(analysis)
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
    # Drawn only while open (opening reruns the page): a K×K figure at K = 1,000 is work on every lens edit.
    panel = st.expander("Confusion matrix", key=CONFUSION_OPEN, on_change="rerun")
    if not panel.open:
        return
    with panel:
        confusion_view(analysis)  # ordered, rolled up, zoomed (lensdash.ui.hierarchy)
        normalise = st.session_state.get("confusion_normalised", True)
        k = len(analysis.class_names)
        if k <= TABLE_CLASSES:
            st.dataframe(confusion_table(analysis, normalize=normalise), width="stretch", key="confusion_table")
        else:  # K² cells (a million at K = 1,000) would be sent on every rerun and cannot be read as a grid
            st.caption(
                f"The {k:,} × {k:,} table is too large to read here: the figure above orders, rolls up and zooms it, "
                "and the download has every cell."
            )
        st.download_button(
            "Download the confusion matrix (CSV)",
            partial(_confusion_csv, analysis, normalise),  # made on click
            "lensdash_confusion.csv",
            "text/csv",
            key="download_confusion",
            on_click="ignore",
        )


def _confusion_csv(analysis: Analysis, normalise: bool) -> bytes:
    """The whole confusion table as a CSV (row = true class, first column ``true``), spreadsheet-safe."""
    return frame_csv(confusion_table(analysis, normalize=normalise).reset_index())


def gradients_section(dataset: Dataset, lens: Lens, analysis: Analysis) -> None:
    soft_labels_note(analysis, gradients=True)
    names = analysis.class_names
    st.caption(
        "Class-mean gradient of the loss with respect to the logits: row = true class, column = logit. "
        "Red pushes the logit down, blue pushes it up. Unlensed rows are softmax − one-hot; lensed rows softmax − C[y]."
    )
    # One subset (or roll-up) for the three panels, so they can be compared cell by cell.
    view = class_view(
        "gradients",
        names,
        analysis.grad_difference.double().numpy(),
        confusion=analysis.confusion,
        lens_matrix=lens.matrix.numpy(),
        tree=usable_hierarchy(names),
    )
    support = torch.bincount(analysis.labels, minlength=len(names)).double().numpy()
    unlensed, lensed = view.matrix(analysis.grad_unlensed, support), view.matrix(analysis.grad_lensed, support)
    diagonal = not st.toggle(
        "Leave the diagonal out",
        value=len(view.names) > 20,
        key="gradients_no_diagonal",
        help="Each class's own logit otherwise sets the colour range of the first two panels and hides the rest.",
    )
    sub = view.subset
    shown = [m[np.ix_(sub, sub)] for m in (unlensed, lensed)]
    if not diagonal:
        shown = [m[~np.eye(len(sub), dtype=bool)] for m in shown]
    bound = float(max(np.abs(m).max(initial=0.0) for m in shown) or 1.0)
    if view.groups is not None:
        st.caption("Rolled up: row = group of true classes (its samples' mean), column = the group's summed logits.")
    panels = (("Unlensed", unlensed, bound), ("Lensed", lensed, bound), ("Lensed − unlensed", lensed - unlensed, None))
    keys = ("grad_unlensed", "grad_lensed", "grad_difference")
    # Side by side while the cells stay legible; else one above the other, each the page's width.
    side_by_side = len(sub) <= SIDE_BY_SIDE_CLASSES
    places = st.columns(3) if side_by_side else [st.container() for _ in panels]
    for place, (title, matrix, zmax), key in zip(places, panels, keys):
        place.plotly_chart(
            figures.gradient_heatmap(
                matrix,
                view.names,
                title,
                zmax=zmax,
                subset=sub,
                diagonal=diagonal,
                width=460 if side_by_side else 1100,
            ),
            key=key,
        )
    st.subheader("Samples the lens changes most")
    c1, c2 = st.columns([1, 1])
    count = c1.slider("How many samples", 5, 100, 20, key="sample_count")
    which = c2.radio("Show", ["lensed − unlensed", "lensed", "unlensed"], horizontal=True, key="sample_gradient_kind")
    delta = analysis.delta.abs().nan_to_num(posinf=1e30)
    top = torch.argsort(delta, descending=True, stable=True)[:count]
    preds = dataset.predictions
    x, y = preds.logits[top], preds.labels[top]
    t = None if preds.targets is None else preds.targets[top]  # soft labels: each sample's own distribution
    _, g_lensed = per_sample_losses_and_gradients(x, y, lens, family=analysis.family, targets=t)
    _, g_plain = per_sample_losses_and_gradients(x, y, torch.eye(len(names)), targets=t)
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
    n, k = dataset.predictions.num_samples, dataset.predictions.num_classes
    identity_n, lens_n = min(n, identity_rows(k)), min(n, lens_check_rows(k))
    if lens_n < n:
        identity_part = (
            f"all {n:,} samples" if identity_n == n else f"a fixed random {identity_n:,} of the {n:,} samples"
        )
        st.caption(
            f"The identity checks use {identity_part}; the two lens checks use a fixed random {lens_n:,}, so that "
            "opening this tab and editing the lens stay quick."
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
