r"""Compare tab: model A (the page's data) and model B (the second upload) on the same samples, under the current lens.

Every difference is B − A. Pairing, the paired test, the bootstrap and the tables are :mod:`lensdash.compare`'s; this
module only pairs the session's two datasets, keeps the results in the session (keyed by content) and draws them.
Correctness follows the page: top-1, and the lens-aware rule of :func:`lensdash.analysis.lens_hits`
(:math:`C_{y\hat y} \ge \tfrac12 \max_j C_{yj}`), as ``Analysis.lens_hit``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from functools import partial

import pandas as pd
import streamlit as st

from lensdash.analysis import Analysis
from lensdash.compare import (
    ID_COLUMNS,
    BootstrapInterval,
    confusion_difference,
    disagreements,
    mcnemar_exact_p,
    pair_predictions,
    paired_bootstrap,
    paired_counts,
    per_class_comparison,
    shared_id_column,
)
from lensdash.errors import InputError
from lensdash.figures_compare import confusion_difference_heatmap, per_class_difference_figure
from lensdash.lens import Lens
from lensdash.metrics import MetricSums
from lensdash.sanitize import markdown_text
from lensdash.ui import state
from lensdash.ui.cache import lens_digest, session_memo
from lensdash.ui.data import Dataset
from lensdash.ui.downloads import frame_csv
from lensdash.ui.results import FAMILY_LABELS, cached_analysis, cached_mean_loss

#: Rows of the disagreement table shown in the page; the download has all of them.
TABLE_ROWS = 1000
#: The paired bootstrap's seed (fixed, so the interval is the same on every run and equals the library's).
BOOTSTRAP_SEED = 0
#: Resamples of the paired bootstrap for small data; fewer above :data:`BOOTSTRAP_DRAWS` / N (see below).
BOOTSTRAP_RESAMPLES = 1000
#: Most index draws (N × resamples) of one bootstrap: about a second on one core.
BOOTSTRAP_DRAWS = 100_000_000
MIN_BOOTSTRAP_RESAMPLES = 100
CORRECTNESS = {"top-1": "top-1 (argmax = label)", "lens-aware": "lens-aware (C[y, ŷ] ≥ ½ max C[y])"}


@dataclass(frozen=True)
class Pairing:
    """Model B in model A's row order, and how its rows were paired."""

    model_b: Dataset
    note: str
    id_column: str | None


def bootstrap_resamples(num_samples: int) -> int:
    """Resamples of the page's bootstrap: :data:`BOOTSTRAP_RESAMPLES`, fewer for large N so it takes about a second.

    >>> bootstrap_resamples(899), bootstrap_resamples(1_000_000), bootstrap_resamples(10**8)
    (1000, 100, 100)
    """
    budget = BOOTSTRAP_DRAWS // max(num_samples, 1)
    return int(min(BOOTSTRAP_RESAMPLES, max(MIN_BOOTSTRAP_RESAMPLES, budget)))


def id_column(a: pd.DataFrame | None, b: pd.DataFrame | None) -> str | None:
    """A's name of the id column both metadata frames have (:func:`lensdash.compare.shared_id_column`), or None.

    >>> id_column(pd.DataFrame({"ID": [1]}), pd.DataFrame({"id": [1], "site": ["x"]}))
    'ID'
    """
    if a is None or b is None:
        return None
    shared = shared_id_column(a.columns, b.columns)
    return None if shared is None else shared[0]


def _column_digest(frame: pd.DataFrame | None, column: object) -> str:
    if frame is None or column is None:
        return "-"
    in_frame = {str(c).lower(): c for c in frame.columns}
    values = frame[in_frame[str(column).lower()]]
    return hashlib.blake2b(pd.util.hash_pandas_object(values, index=False).to_numpy().tobytes()).hexdigest()


def _pair(a: Dataset, b: Dataset) -> Pairing | InputError:
    meta_a, meta_b = a.metadata, b.metadata
    column = id_column(meta_a, meta_b)
    ids_a = ids_b = None
    if column is not None and meta_a is not None and meta_b is not None:
        ids_a = meta_a[column]
        ids_b = meta_b[{str(c).lower(): c for c in meta_b.columns}[str(column).lower()]]
    pa, pb = a.predictions, b.predictions
    try:
        paired = pair_predictions(
            pa.logits,
            pa.labels,
            pb.logits,
            pb.labels,
            ids_a=None if ids_a is None else ids_a.to_numpy(),
            ids_b=None if ids_b is None else ids_b.to_numpy(),
            classes_a=pa.class_names,
            classes_b=pb.class_names,
        )
    except InputError as exc:
        return exc
    # B's rows (and metadata) in A's row order
    metadata = None if meta_b is None else meta_b.iloc[paired.order_b.numpy()].reset_index(drop=True)
    # A's soft labels (if any) are the samples' targets for both models: B's losses are taken against them too.
    reordered = dataclasses.replace(
        pb, logits=paired.logits_b, labels=paired.labels, notes=[], metadata=metadata, targets=pa.targets
    )
    model_b = Dataset.of(reordered, b.origin)
    note = paired.note if column is None else f"{paired.note[:-1]} (column {column!r})."
    return Pairing(model_b, note, None if column is None else str(column))


def paired_model_b(a: Dataset, b: Dataset) -> Pairing:
    """Model B paired with model A, kept in the session (keyed by both contents and their id columns).

    Raises:
        InputError: the files are not predictions of the same samples (from :func:`lensdash.compare.pair_predictions`).
    """
    column = id_column(a.metadata, b.metadata)
    key = (a.digest, b.digest, _column_digest(a.metadata, column), _column_digest(b.metadata, column))
    outcome = session_memo("pairing", key, lambda: _pair(a, b))
    if isinstance(outcome, InputError):
        raise outcome
    return outcome


def cached_metrics(dataset: Dataset, lens: Lens) -> dict[str, float]:
    """The evaluation's headline numbers (:meth:`lensdash.metrics.MetricSums.summary`) under ``lens``."""
    preds = dataset.predictions
    return session_memo(
        "metric_sums",
        (dataset.digest, lens_digest(lens)),
        lambda: MetricSums.of(preds.logits, preds.labels, lens).summary(),
    )


def headline_table(a: Dataset, b: Dataset, lens: Lens, family: str) -> pd.DataFrame:
    """Every headline number for A and B under ``lens`` and their difference B − A (one row per metric)."""
    other = "prediction" if family == "target" else "target"
    rows: list[tuple[str, float, float]] = []
    summaries = [cached_analysis(d, lens, family).summary() for d in (a, b)]
    others = [cached_mean_loss(d, lens, other) for d in (a, b)]
    metrics = [cached_metrics(d, lens) for d in (a, b)]
    rows.append(("unlensed loss (cross-entropy)", summaries[0]["unlensed_loss"], summaries[1]["unlensed_loss"]))
    rows.append((f"lensed loss ({family}-side)", summaries[0]["lensed_loss"], summaries[1]["lensed_loss"]))
    rows.append((f"lensed loss ({other}-side)", others[0], others[1]))
    rows.append(("top-1 accuracy", summaries[0]["accuracy"], summaries[1]["accuracy"]))
    rows.append(("lens-aware accuracy", summaries[0]["lens_aware_accuracy"], summaries[1]["lens_aware_accuracy"]))
    rows.append(("lens soft score", summaries[0]["lens_soft_score"], summaries[1]["lens_soft_score"]))
    skip = {"accuracy", "lens_aware_accuracy", "lens_soft_score", "top_k", "num_samples"}
    for name in metrics[0]:
        if name not in skip:
            rows.append((name.replace("_", " "), float(metrics[0][name]), float(metrics[1][name])))
    frame = pd.DataFrame(rows, columns=["metric", "A", "B"])
    frame["B − A"] = frame["B"] - frame["A"]
    return frame


def paired_tests(a: Analysis, b: Analysis) -> pd.DataFrame:
    """McNemar's exact test for top-1 and lens-aware correctness: the discordant counts and the p-value."""
    rows = []
    for rule, correct_a, correct_b in (
        ("top-1", a.predicted == a.labels, b.predicted == b.labels),
        ("lens-aware", a.lens_hit, b.lens_hit),
    ):
        counts = paired_counts(correct_a, correct_b)
        rows.append(
            {
                "correct means": rule,
                "accuracy_a": (counts.both_correct + counts.a_only_correct) / counts.samples,
                "accuracy_b": (counts.both_correct + counts.b_only_correct) / counts.samples,
                "both_correct": counts.both_correct,
                "a_only_correct": counts.a_only_correct,
                "b_only_correct": counts.b_only_correct,
                "neither_correct": counts.neither_correct,
                "mcnemar_p": mcnemar_exact_p(counts.a_only_correct, counts.b_only_correct),
            }
        )
    return pd.DataFrame(rows)


def cached_bootstrap(a: Dataset, b: Dataset, lens: Lens, family: str) -> BootstrapInterval:
    """The paired bootstrap interval of mean lensed loss B − A (fixed seed), kept in the session by content."""
    resamples = bootstrap_resamples(a.predictions.num_samples)

    def compute() -> BootstrapInterval:
        loss_a = cached_analysis(a, lens, family).lensed_loss
        loss_b = cached_analysis(b, lens, family).lensed_loss
        return paired_bootstrap(loss_a, loss_b, resamples=resamples, seed=BOOTSTRAP_SEED)

    return session_memo("bootstrap", (a.digest, b.digest, lens_digest(lens), family, resamples), compute)


def disagreement_table(a: Dataset, analysis_a: Analysis, analysis_b: Analysis) -> pd.DataFrame:
    """The samples where A and B predict different classes (largest change of lensed loss first), with A's
    metadata columns beside (rows are in A's order)."""
    frame = disagreements(
        analysis_a.labels,
        analysis_a.predicted,
        analysis_b.predicted,
        analysis_a.class_names,
        loss_a=analysis_a.lensed_loss,
        loss_b=analysis_b.lensed_loss,
    )
    metadata = a.metadata
    if metadata is not None:
        beside = metadata.iloc[frame["sample"].to_numpy()].reset_index(drop=True)
        beside.columns = [c if c not in frame.columns else f"{c} (metadata)" for c in map(str, beside.columns)]
        frame = pd.concat([frame[["sample"]], beside, frame.drop(columns="sample")], axis=1)
    return frame


def _fmt(value: float) -> str:
    return "∞" if value == float("inf") else f"{value:+.4f}"


def compare_section(a: Dataset, lens: Lens, family: str) -> None:
    """The Compare tab: headline numbers of A and B, paired tests, the bootstrap interval, per-class differences,
    the confusion difference and the samples where the models disagree."""
    b_read: Dataset | None = state.get(state.DATA_B)
    if b_read is None:
        st.info(
            "Upload a second model's predictions of the same samples in the sidebar (**Compare with another model**) "
            "to compare the two under this lens: every headline number side by side, McNemar's exact test, a paired "
            "bootstrap interval for the lensed loss, per-class differences and the samples where they disagree."
        )
        return
    try:
        pairing = paired_model_b(a, b_read)
    except InputError as exc:
        st.error(f"Model B ({markdown_text(b_read.origin)}) cannot be compared with model A: " + markdown_text(exc))
        return
    b = pairing.model_b
    st.caption(
        f"A: **{markdown_text(a.origin)}** · B: **{markdown_text(b.origin)}** · {markdown_text(pairing.note)} "
        f"Lens family: {FAMILY_LABELS[family]}. Differences are B − A."
    )
    analysis_a, analysis_b = cached_analysis(a, lens, family), cached_analysis(b, lens, family)

    st.subheader("Headline numbers")
    st.dataframe(
        headline_table(a, b, lens, family),
        hide_index=True,
        width="stretch",
        key="compare_headline",
        column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("A", "B", "B − A")},
    )

    st.subheader("Is the difference real?")
    tests = paired_tests(analysis_a, analysis_b)
    st.dataframe(tests, hide_index=True, width="stretch", key="compare_tests")
    st.caption(
        "McNemar's exact test on the samples only one model gets right (a_only_correct vs b_only_correct): the "
        "chance of a split at least this uneven if both models were equally good on this data."
    )
    interval = cached_bootstrap(a, b, lens, family)
    cols = st.columns(3)
    cols[0].metric("Mean lensed loss, B − A", _fmt(interval.difference))
    cols[1].metric(f"{interval.confidence:.0%} interval, low", _fmt(interval.low))
    cols[2].metric(f"{interval.confidence:.0%} interval, high", _fmt(interval.high))
    st.caption(
        f"Paired bootstrap: {interval.resamples:,} resamples of the {a.predictions.num_samples:,} samples (the same "
        f"samples for both models), seed {interval.seed}; percentile interval. An interval that excludes 0 says the "
        "difference is unlikely to be resampling noise."
    )

    st.subheader("Per class")
    rule = st.radio(
        "Correct means", list(CORRECTNESS), format_func=CORRECTNESS.get, horizontal=True, key=state.COMPARE_CORRECT
    )
    if rule == "lens-aware":
        correct_a, correct_b = analysis_a.lens_hit, analysis_b.lens_hit
    else:
        correct_a, correct_b = analysis_a.predicted == analysis_a.labels, analysis_b.predicted == analysis_b.labels
    per_class = per_class_comparison(
        analysis_a.labels,
        correct_a,
        correct_b,
        analysis_a.class_names,
        lensed_a=analysis_a.lensed_loss,
        lensed_b=analysis_b.lensed_loss,
    )
    left, right = st.columns(2)
    left.plotly_chart(per_class_difference_figure(per_class), key="compare_per_class_figure")
    normalised = right.toggle("Row-normalised", value=True, key="compare_confusion_normalised")
    difference = confusion_difference(
        analysis_a.labels, analysis_a.predicted, analysis_b.predicted, a.predictions.num_classes, normalize=normalised
    )
    right.plotly_chart(
        confusion_difference_heatmap(difference, analysis_a.class_names, normalized=normalised),
        key="compare_confusion",
    )
    st.dataframe(per_class, hide_index=True, width="stretch", key="compare_per_class")
    st.download_button(
        "Download the per-class comparison (CSV)",
        partial(frame_csv, per_class),
        "lensdash_per_class_comparison.csv",
        "text/csv",
        key="download_compare_per_class",
        on_click="ignore",
    )

    st.subheader("Where they disagree")
    table = disagreement_table(a, analysis_a, analysis_b)
    shown = table.head(TABLE_ROWS)
    st.caption(
        f"{len(table):,} of {a.predictions.num_samples:,} samples get different predictions; "
        f"{'the first ' + format(len(shown), ',') + ' shown, ' if len(shown) < len(table) else ''}"
        "largest change of lensed loss first. The download has all of them."
    )
    st.dataframe(shown, hide_index=True, width="stretch", height=360, key="compare_disagreements")
    st.download_button(
        "Download the disagreements (CSV)",
        partial(frame_csv, table),
        "lensdash_disagreements.csv",
        "text/csv",
        key="download_disagreements",
        on_click="ignore",
    )


__all__ = ["ID_COLUMNS", "Pairing", "bootstrap_resamples", "compare_section", "id_column", "paired_model_b"]
