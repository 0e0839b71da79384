"""lensdash: see what a confusion lens does to a classifier's loss and gradients.

Run with ``streamlit run app.py``. This page only composes the sections of ``lensdash.ui``; each runs guarded, so an
unexpected failure in one shows a short message there and leaves the rest of the page and the session's state as they
were.
"""

import streamlit as st

st.set_page_config(page_title="lensdash · lensed cross-entropy", page_icon="🔍", layout="wide")

from lensdash.ui import state  # noqa: E402  (set_page_config must come first)
from lensdash.ui.compare import compare_section  # noqa: E402
from lensdash.ui.data import data_section, demo_dataset  # noqa: E402
from lensdash.ui.evaluation import evaluation_section  # noqa: E402
from lensdash.ui.guard import guarded  # noqa: E402
from lensdash.ui.hierarchy import hierarchy_metrics_section, hierarchy_section  # noqa: E402
from lensdash.ui.lab import lab_section  # noqa: E402
from lensdash.ui.lens_editor import data_lenses_section, lens_section  # noqa: E402
from lensdash.ui.playground import playground_section  # noqa: E402
from lensdash.ui.results import (  # noqa: E402
    FAMILY_LABELS,
    gradients_section,
    metrics_section,
    sanity_section,
    tables_section,
)
from lensdash.ui.share import share_section, shared_view_section  # noqa: E402
from lensdash.ui.slices import slices_section  # noqa: E402

TABS = ["Results", "Evaluation", "Compare", "Slices", "Gradients", "Sanity checks", "Playground", "Training lab"]

st.title("lensdash")
st.caption(
    "A lens C is a K×K matrix whose row i is the target distribution used when the true label is i. "
    "The seed (the notebook lensdash grew from, lensing_softmax_notebook) defines the lensed loss as KL(C[y] ‖ "
    "softmax(x)); with the identity lens it is ordinary cross-entropy."
)

dataset = None
with guarded("data"):
    dataset = data_section()
dataset = dataset or state.dataset() or demo_dataset()
hierarchy = None
with guarded("class hierarchy"):
    hierarchy = hierarchy_section(dataset.predictions.class_names)
with guarded("shared view"):
    shared_view_section(dataset, TABS)  # before the widgets a shared view sets
st.sidebar.header("2 · Lens family")
state.init_widgets(state.FAMILY)
family = st.sidebar.radio(
    "Lens family", list(FAMILY_LABELS), format_func=FAMILY_LABELS.get, key=state.FAMILY, label_visibility="collapsed"
)

headline = st.container()  # filled after the lens is known, shown above it
st.header("Lens")
lens = None
with guarded("lens"):
    lens = lens_section(dataset)
if lens is not None:
    with guarded("lenses from data"):
        data_lenses_section(dataset, lens)
    analysis = None
    with headline, guarded("metrics"):
        analysis = metrics_section(dataset, lens, family)
    with headline, guarded("hierarchical metrics"):
        hierarchy_metrics_section(dataset, hierarchy)
    # Only the open tab runs (on_change="rerun"), so a lens edit recomputes what is on screen.
    with guarded("share"):
        share_section(lens, TABS)
    results, evaluation, compare, slices, gradients, sanity, playground, lab = st.tabs(
        TABS, key=state.VIEW, on_change="rerun"
    )
    if results.open and analysis is not None:
        with results, guarded("results"):
            tables_section(analysis, dataset.metadata)
    if evaluation.open and analysis is not None:
        with evaluation, guarded("evaluation"):
            evaluation_section(dataset, lens, analysis)
    if compare.open:
        with compare, guarded("compare"):
            compare_section(dataset, lens, family)
    if slices.open and analysis is not None:
        with slices, guarded("slices"):
            slices_section(dataset, lens, analysis)
    if gradients.open and analysis is not None:
        with gradients, guarded("gradients"):
            gradients_section(dataset, lens, analysis)
    if sanity.open:
        with sanity, guarded("sanity checks"):
            sanity_section(dataset, lens)
    if playground.open:
        with playground, guarded("playground"):
            playground_section()
    if lab.open:
        with lab, guarded("training lab"):
            lab_section(lens)
