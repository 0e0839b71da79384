"""Slices tab: accuracy, lens-aware accuracy and both mean losses per value of a metadata column.

With a second model uploaded (the Compare tab's model B, paired with the page's data), every number comes for A, for
B and as B − A on the same slices (A's metadata, B's rows in A's order)."""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from lensdash.analysis import Analysis
from lensdash.errors import InputError
from lensdash.figures_compare import slice_figure
from lensdash.lens import Lens
from lensdash.sanitize import markdown_text
from lensdash.slices import METRICS, PAIRED_COLUMNS, Slices, slice_table
from lensdash.ui import state
from lensdash.ui.cache import lens_digest, session_memo
from lensdash.ui.compare import paired_model_b
from lensdash.ui.data import Dataset
from lensdash.ui.downloads import frame_csv
from lensdash.ui.results import cached_analysis

HOW_TO_GET_METADATA = (
    "This data has no metadata columns to slice by. Add them to the predictions file beside the scores: a text "
    "column (a site, a split, a file name) is kept aside as metadata automatically, and a numeric one (an id, an "
    "index) when it is named `id`, `sample_id`, `index`, `idx`, `filename` or `path`, or listed with "
    "`meta_columns=` in `lensdash.read_predictions` or `--meta-columns` on the command line. "
    "The command line writes the same table with `--slice-by COLUMN`."
)


def cached_slices(
    dataset: Dataset,
    lens: Lens,
    analysis: Analysis,
    values: pd.Series,
    model_b: tuple[str, Analysis] | None = None,
) -> Slices:
    """:func:`lensdash.slices.slice_table` of one metadata column, kept in the session.

    The key holds the data's digest, the lens and the family; the metadata belongs to the data (new data empties the
    session's results), and the column's name (``values.name``) completes the key. ``model_b`` is (B's digest, B's
    analysis in A's row order): the table then has A, B and B − A, and B's digest joins the key.
    """

    def compute() -> Slices:
        b = model_b[1] if model_b is not None else None
        return slice_table(
            values,
            analysis.predicted == analysis.labels,
            analysis.lens_hit,
            analysis.unlensed_loss,
            analysis.lensed_loss,
            column=str(values.name),
            model_b=None if b is None else (b.predicted == b.labels, b.lens_hit, b.unlensed_loss, b.lensed_loss),
        )

    digest_b = None if model_b is None else model_b[0]
    key = (dataset.digest, lens_digest(lens), analysis.family, str(values.name), digest_b)
    return session_memo("slices", key, compute)


def _model_b(dataset: Dataset, lens: Lens, family: str) -> tuple[str, Analysis] | None:
    """The Compare tab's model B, paired with ``dataset`` and analysed under ``lens``; None without one (or when it
    does not pair: the sidebar and the Compare tab say why)."""
    read = state.get(state.DATA_B)
    if read is None:
        return None
    try:
        model_b = paired_model_b(dataset, read).model_b
    except InputError:
        return None
    return model_b.digest, cached_analysis(model_b, lens, family)


def slices_section(dataset: Dataset, lens: Lens, analysis: Analysis) -> None:
    """Choose a metadata column; per-slice count, accuracies and mean losses as a table, a figure and a download."""
    metadata = dataset.metadata
    if metadata is None:
        st.info(HOW_TO_GET_METADATA)
        return
    columns = list(metadata.columns)
    if state.get(state.SLICE_COLUMN) not in columns:
        state.drop(state.SLICE_COLUMN)
    column = st.selectbox(
        "Slice by",
        columns,
        key=state.SLICE_COLUMN,
        help="A metadata column of the predictions file. Numeric columns with many values are cut into quantile "
        "bins; text columns with many values keep the most frequent.",
    )
    model_b = _model_b(dataset, lens, analysis.family)
    slices = cached_slices(dataset, lens, analysis, metadata[column], model_b)
    if model_b is not None:
        st.caption(
            "Model B (Compare tab) on the same slices: each number for A, for B and B − A (`_diff`); positive "
            "accuracy differences and negative loss differences favour B."
        )
    if slices.note:
        st.caption(markdown_text(slices.note))
    st.plotly_chart(slice_figure(slices), key="slice_figure")
    st.dataframe(
        slices.table,
        hide_index=True,
        width="stretch",
        key="slice_table",
        column_config={c: st.column_config.NumberColumn(format="%.4f") for c in (*METRICS, *PAIRED_COLUMNS[2:])},
    )
    st.caption(
        "Lens-aware: the predicted class gets at least half the lens weight of the best class for the true label. "
        "Losses are means over the slice."
    )
    st.download_button(
        "Download the slices (CSV)",
        partial(frame_csv, slices.table),
        "lensdash_slices.csv",
        "text/csv",
        key="download_slices",
        on_click="ignore",
    )
