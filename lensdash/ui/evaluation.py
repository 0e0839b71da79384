"""Evaluation tab: per-class scores, top-k accuracy, calibration with and without the lens, and the samples of a cell.

Every number comes from one :class:`lensdash.metrics.MetricSums` per (data, lens, k), whose shown parts are kept in
the session (:class:`Scores`, :func:`lensdash.ui.cache.session_memo`); the samples of a confusion-matrix cell come
from the analysis the other tabs use, so the losses listed are the ones shown elsewhere on the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from lensdash import figures_eval
from lensdash.analysis import Analysis, lens_credit, lens_hits, per_sample_table
from lensdash.lens import Lens
from lensdash.metrics import N_BINS, MetricSums, default_top_k, lens_rule
from lensdash.sanitize import markdown_text
from lensdash.ui import state
from lensdash.ui.cache import lens_digest, session_memo
from lensdash.ui.data import Dataset
from lensdash.ui.downloads import frame_csv

#: Rows of a cell's sample list shown in the page; the download has all of them.
CELL_ROWS = 500

LENS_RULE_HELP = (
    "A prediction ŷ counts when C[y, ŷ] ≥ 0.5·max_j C[y, j]: the lens treats it as at least half as right as the best "
    "answer for the true class y. Identity and label smoothing give top-1 accuracy; merge groups give group accuracy."
)
SOFT_SCORE_HELP = (
    "Mean C[y, ŷ] / max_j C[y, j] of the top-1 prediction ŷ: full credit for an answer the lens rates as highly as "
    "the best one, partial credit by the lens's own weights, 0 for one it gives no weight."
)
ECE_HELP = (
    f"Expected calibration error of the top-label confidence: {N_BINS} equal-width bins, Σ_b (n_b / N)·|accuracy_b − "
    "confidence_b| (L1), as torchmetrics' MulticlassCalibrationError(n_bins=15, norm='l1')."
)
MCE_HELP = "Maximum calibration error: the largest |accuracy_b − confidence_b| over the non-empty bins."
SOFT_UNLENSED_HELP = (
    " With soft labels (a distribution t per sample): the chosen family with the identity lens, so the difference "
    "is the lens's alone: target side KL(t ‖ softmax) (the cross-entropy less the labels' entropy H(t)), prediction "
    "side the cross-entropy with t."
)
#: What the soft labels change, said in each tab that shows numbers from them.
SOFT_LABELS_NOTES = {
    "results": "Soft labels in use: the losses use each sample's target distribution t, lensed as t·C (the unlensed "
    "loss is the same family with the identity lens). Accuracy, the lens-aware rule, the confusion matrix and the "
    "per-class rows use the majority label (the most likely class of t).",
    "gradients": "Soft labels in use: the gradients are softmax − t·C (lensed) and softmax − t (unlensed) with each "
    "sample's target distribution t; the class means group the samples by their majority label.",
    "evaluation": "Soft labels in use: these scores (accuracy, top-k, precision / recall / F1, calibration, the "
    "confusion matrix) use each sample's majority label, the most likely class of its distribution; the losses "
    "listed use the whole distribution, lensed as t·C.",
}
LENSED_CALIBRATION_HELP = (
    "The lensed prediction is the answer most probably right by the lens-aware rule: for merge groups, the most "
    "probable group, with the group's summed probability as its confidence, correct when the truth is in the group."
)


def soft_labels_note(analysis: Analysis, *, gradients: bool = False, evaluation: bool = False) -> None:
    """Say, at the top of a tab, that the data's labels are soft and what uses them (nothing without soft labels)."""
    if analysis.soft_labels:
        st.info(SOFT_LABELS_NOTES["gradients" if gradients else "evaluation" if evaluation else "results"], icon="ℹ️")


@dataclass(frozen=True)
class Scores:
    """What the tab shows of a :class:`MetricSums`: its summary, per-class table and reliability tables.

    Kept in the session instead of the sums themselves, whose K×K float64 confusion (8 MB at K = 1,000) the tab does
    not show (the confusion it shows is the analysis's counts).
    """

    k: int
    summary: dict[str, float]
    per_class: pd.DataFrame
    reliability_plain: pd.DataFrame
    reliability_lensed: pd.DataFrame

    @classmethod
    def of(cls, sums: MetricSums, names: tuple[str, ...]) -> Scores:
        return cls(
            sums.k,
            sums.summary(),
            sums.per_class_table(names),
            sums.reliability(lensed=False),
            sums.reliability(lensed=True),
        )

    def reliability(self, *, lensed: bool = False) -> pd.DataFrame:
        return self.reliability_lensed if lensed else self.reliability_plain


def cached_scores(dataset: Dataset, lens: Lens, k: int) -> Scores:
    """:class:`Scores` of the data under ``lens`` with top-``k`` (from :class:`MetricSums`), once per (data, lens, k)
    and session."""
    preds = dataset.predictions
    return session_memo(
        "scores",
        (dataset.digest, lens_digest(lens), k),
        lambda: Scores.of(MetricSums.of(preds.logits, preds.labels, lens, k=k), preds.class_names),
    )


def averages_table(summary: dict[str, float], support: int) -> pd.DataFrame:
    """Macro and support-weighted averages of precision, recall and F1 (sklearn's ``classification_report`` rows).

    Example:
        >>> s = {f"{a}_{m}": 0.5 for a in ("macro", "weighted") for m in ("precision", "recall", "f1")}
        >>> averages_table(s, 10)["average"].tolist()
        ['macro', 'weighted']
    """
    return pd.DataFrame(
        [
            {
                "average": average,
                "precision": summary[f"{average}_precision"],
                "recall": summary[f"{average}_recall"],
                "f1": summary[f"{average}_f1"],
                "support": support,
            }
            for average in ("macro", "weighted")
        ]
    )


def cell_samples(analysis: Analysis, true: int, predicted: int, metadata: pd.DataFrame | None = None) -> pd.DataFrame:
    """The per-sample rows (losses, p(true), any metadata) of samples of class ``true`` predicted as ``predicted``.

    Ordered by how much the lens changes their loss (largest |lensed − unlensed| first).
    """
    table = per_sample_table(analysis, metadata)
    mask = (analysis.labels == true) & (analysis.predicted == predicted)
    rows = table[mask.cpu().numpy()]
    change = np.abs(np.nan_to_num(rows["delta"].to_numpy(), posinf=1e30, neginf=-1e30))
    return rows.iloc[np.argsort(-change, kind="stable")]


def _top_k_input(num_classes: int) -> int:
    """The k of the top-k accuracy: 5 where K > 5 (else K − 1), kept while it fits the data's K."""
    current = st.session_state.get(state.EVAL_TOP_K)
    if not isinstance(current, int) or not 1 <= current <= num_classes:
        st.session_state[state.EVAL_TOP_K] = default_top_k(num_classes)
    return int(
        st.number_input(
            "k of the top-k accuracy",
            min_value=1,
            max_value=num_classes,
            step=1,
            key=state.EVAL_TOP_K,
            help="A sample counts when its true class is among the k highest scores (ties as "
            "sklearn.metrics.top_k_accuracy_score).",
        )
    )


def _scores(sums: Scores) -> None:
    s = sums.summary
    k = sums.k
    cols = st.columns(5)
    cols[0].metric("Top-1 accuracy", f"{s['accuracy']:.1%}")
    cols[1].metric(f"Top-{k} accuracy", f"{s[f'top{k}_accuracy']:.1%}", help=f"True class among the {k} highest.")
    cols[2].metric("Macro F1", f"{s['macro_f1']:.3f}", help="Mean F1 over the classes, each class weighing the same.")
    cols[3].metric("Weighted F1", f"{s['weighted_f1']:.3f}", help="Mean F1 over the classes, weighted by support.")
    cols[4].metric("Lens-aware acc.", f"{s['lens_aware_accuracy']:.1%}", help=LENS_RULE_HELP)
    table = sums.per_class
    st.caption(
        "Per class, as sklearn.metrics.precision_recall_fscore_support(zero_division=0): precision = right among the "
        "samples predicted as the class, recall = right among the class's samples, F1 their harmonic mean, support = "
        "samples of the class. Click a column to sort."
    )
    left, right = st.columns([3, 2])
    left.dataframe(
        table,
        hide_index=True,
        width="stretch",
        height=min(38 + 35 * len(table), 420),
        key="eval_per_class",
        column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns[1:] if c != "support"},
    )
    averages = averages_table(s, int(s["num_samples"]))
    right.dataframe(
        averages,
        hide_index=True,
        width="stretch",
        key="eval_averages",
        column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("precision", "recall", "f1")},
    )
    right.download_button(
        "Download per-class scores (CSV)",
        partial(frame_csv, table),
        "lensdash_per_class_scores.csv",
        "text/csv",
        key="eval_download_per_class",
        on_click="ignore",
    )


def _calibration(sums: Scores, lens: Lens) -> None:
    s = sums.summary
    st.subheader("Calibration")
    identity = lens_rule(lens).is_identity
    st.caption(
        "Does the model's confidence match how often it is right? Each bar is a bin of confidence; a bar below its "
        "diamond means over-confidence. Left: the top label. Right: the same for the lensed prediction, "
        + (
            "which equals the top label here, since the lens-aware rule of this lens counts the true class only."
            if identity
            else "at the lens's level (for merge groups: the probability of the predicted group vs whether the truth "
            "is in it), so you see how the lens changes calibration before training with it."
        )
    )
    left, right = st.columns(2)
    for column, lensed in ((left, False), (right, True)):
        prefix = "lensed_" if lensed else ""
        name = "Lensed" if lensed else "Plain"
        c1, c2, c3 = column.columns(3)
        c1.metric(f"{name} ECE", f"{s[prefix + 'ece']:.4f}", help=ECE_HELP + (" " + LENSED_CALIBRATION_HELP) * lensed)
        c2.metric(f"{name} MCE", f"{s[prefix + 'mce']:.4f}", help=MCE_HELP)
        c3.metric(
            "Accuracy",
            f"{s[prefix + 'accuracy']:.1%}",
            help="Accuracy of the lensed prediction (the most probable group for merge groups)."
            if lensed
            else "Top-1 accuracy.",
        )
        title = (
            "Lensed prediction (the lens's groups)" if lensed else "Top label (no lens)"
        ) + f": ECE {s[prefix + 'ece']:.4f}"
        column.plotly_chart(
            figures_eval.reliability_diagram(sums.reliability(lensed=lensed), title),
            key=f"eval_reliability_{prefix or 'plain'}",
        )


def _apply_click(num_classes: int) -> None:
    """A click on a confusion cell chooses that cell in the select boxes (once per click)."""
    event = st.session_state.get(state.EVAL_CELLS)
    points = [p for p in ((event or {}).get("selection") or {}).get("points", []) if p.get("curve_number") == 1]
    if not points:
        return
    cell = figures_eval.cell_of_point(int(points[-1]["point_index"]), num_classes)
    if st.session_state.get(state.EVAL_CLICKED) == cell:
        return
    st.session_state[state.EVAL_CLICKED] = cell
    st.session_state[state.EVAL_TRUE], st.session_state[state.EVAL_PREDICTED] = cell


def _most_confused(confusion: np.ndarray) -> tuple[int, int]:
    off = confusion.astype(float).copy()
    np.fill_diagonal(off, -1)
    i, j = np.unravel_index(int(np.argmax(off)), off.shape)
    return int(i), int(j)


def _click_through(analysis: Analysis, lens: Lens, metadata: pd.DataFrame | None = None) -> None:
    names = analysis.class_names
    k = len(names)
    confusion = analysis.confusion.cpu().numpy()
    st.subheader("From a number to the samples")
    for key, default in zip((state.EVAL_TRUE, state.EVAL_PREDICTED), _most_confused(confusion)):
        if not isinstance(st.session_state.get(key), int) or not 0 <= st.session_state[key] < k:
            st.session_state[key] = default
    clickable = k <= figures_eval.MAX_CLICKABLE_CLASSES
    if clickable:
        _apply_click(k)
    st.caption(
        ("Click a cell of the confusion matrix or choose" if clickable else "Choose")
        + " a true and a predicted class: the samples of that cell are listed with their loss without and with the "
        "lens. It opens on the most confused pair."
    )
    left, right = st.columns([1, 1])
    with right:
        c1, c2 = st.columns(2)
        true = c1.selectbox("True class", range(k), format_func=lambda i: names[i], key=state.EVAL_TRUE)
        predicted = c2.selectbox("Predicted class", range(k), format_func=lambda i: names[i], key=state.EVAL_PREDICTED)
        rows = cell_samples(analysis, true, predicted, metadata)
        credit = float(lens_credit(lens)[true, predicted])
        verdict = "counts as right" if bool(lens_hits(lens)[true, predicted]) else "counts as wrong"
        if len(rows):
            st.markdown(
                f"**{len(rows):,}** samples of **{markdown_text(names[true])}** predicted as "
                f"**{markdown_text(names[predicted])}**: "
                f"mean loss {rows['unlensed_loss'].mean():.4f} without the lens, "
                f"{rows['lensed_loss'].mean():.4f} with it. The lens-aware rule {verdict} "
                f"(C[y, ŷ] / max_j C[y, j] = {credit:.3g})."
            )
        else:
            st.markdown(
                f"No sample of **{markdown_text(names[true])}** is predicted as **{markdown_text(names[predicted])}**."
            )
        shown = rows.iloc[:CELL_ROWS]
        if len(rows) > CELL_ROWS:
            st.caption(f"The {CELL_ROWS:,} whose loss the lens changes most are shown; the download has all of them.")
        st.dataframe(shown, hide_index=True, width="stretch", height=320, key="eval_cell_samples")
        st.download_button(
            "Download these samples (CSV)",
            partial(frame_csv, rows),
            "lensdash_cell_samples.csv",
            "text/csv",
            key="eval_download_cell",
            on_click="ignore",
            disabled=not len(rows),
        )
    if clickable:
        with left:
            st.plotly_chart(
                figures_eval.confusion_cells(confusion, names, selected=(true, predicted), title="Confusion counts"),
                key=state.EVAL_CELLS,
                on_select="rerun",
                selection_mode="points",
            )


def evaluation_section(dataset: Dataset, lens: Lens, analysis: Analysis) -> None:
    """The Evaluation tab: scores, calibration (plain and lensed), and the samples behind a confusion cell."""
    num_classes = dataset.predictions.num_classes
    soft_labels_note(analysis, evaluation=True)
    st.subheader("Scores")
    with st.columns([1, 4])[0]:
        k = _top_k_input(num_classes)
    sums = cached_scores(dataset, lens, k)
    _scores(sums)
    _calibration(sums, lens)
    _click_through(analysis, lens, dataset.metadata)
