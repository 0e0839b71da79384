"""Slices tab: accuracy, lens-aware accuracy and both mean losses per value of a metadata column."""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from lensdash.analysis import Analysis
from lensdash.figures_compare import slice_figure
from lensdash.lens import Lens
from lensdash.sanitize import markdown_text
from lensdash.slices import Slices, slice_table
from lensdash.ui import state
from lensdash.ui.cache import lens_digest, session_memo
from lensdash.ui.data import Dataset
from lensdash.ui.downloads import frame_csv

HOW_TO_GET_METADATA = (
    "This data has no metadata columns to slice by. Add them to the predictions file beside the scores: a text "
    "column (a site, a split, a file name) is kept aside as metadata automatically, and a numeric one (an id, an "
    "index) when it is named `id`, `sample_id`, `index`, `idx`, `filename` or `path`, or listed with "
    "`meta_columns=` in `lensdash.read_predictions` or `--meta-columns` on the command line. "
    "The command line writes the same table with `--slice-by COLUMN`."
)


def cached_slices(dataset: Dataset, lens: Lens, analysis: Analysis, values: pd.Series) -> Slices:
    """:func:`lensdash.slices.slice_table` of one metadata column, kept in the session.

    The key holds the data's digest, the lens and the family; the metadata belongs to the data (new data empties the
    session's results), and the column's name (``values.name``) completes the key.
    """

    def compute() -> Slices:
        return slice_table(
            values,
            analysis.predicted == analysis.labels,
            analysis.lens_hit,
            analysis.unlensed_loss,
            analysis.lensed_loss,
            column=str(values.name),
        )

    return session_memo("slices", (dataset.digest, lens_digest(lens), analysis.family, str(values.name)), compute)


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
    slices = cached_slices(dataset, lens, analysis, metadata[column])
    if slices.note:
        st.caption(markdown_text(slices.note))
    st.plotly_chart(slice_figure(slices), key="slice_figure")
    st.dataframe(
        slices.table,
        hide_index=True,
        width="stretch",
        key="slice_table",
        column_config={
            c: st.column_config.NumberColumn(format="%.4f")
            for c in ("accuracy", "lens_aware_accuracy", "unlensed_loss", "lensed_loss")
        },
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
