"""lensdash: see what a confusion lens does to a classifier's loss and gradients.

Run with ``streamlit run app.py``. This page only composes the sections of ``lensdash.ui``.
"""

import streamlit as st

st.set_page_config(page_title="lensdash · lensed cross-entropy", page_icon="🔍", layout="wide")

from lensdash.ui.data import data_section  # noqa: E402  (set_page_config must come first)
from lensdash.ui.lab import lab_section  # noqa: E402
from lensdash.ui.lens_editor import data_lenses_section, lens_section  # noqa: E402
from lensdash.ui.playground import playground_section  # noqa: E402
from lensdash.ui.results import FAMILY_LABELS, gradients_section, metrics_section, sanity_section, tables_section  # noqa: E402

st.title("lensdash")
st.caption(
    "A lens C is a K×K matrix whose row i is the target distribution used when the true label is i. "
    "The seed's lensed loss is KL(C[y] ‖ softmax(x)); with the identity lens it is ordinary cross-entropy."
)

dataset = data_section()
st.sidebar.header("2 · Lens family")
family = st.sidebar.radio(
    "Lens family", list(FAMILY_LABELS), format_func=FAMILY_LABELS.get, key="family", label_visibility="collapsed"
)

headline = st.container()  # filled after the lens is known, shown above it
st.header("Lens")
lens = lens_section(dataset)
if lens is not None:
    data_lenses_section(dataset, lens)
    with headline:
        analysis = metrics_section(dataset, lens, family)
    # Only the open tab runs (on_change="rerun"), so a lens edit recomputes what is on screen.
    results, gradients, sanity, playground, lab = st.tabs(
        ["Results", "Gradients", "Sanity checks", "Playground", "Training lab"], key="view", on_change="rerun"
    )
    if results.open:
        with results:
            tables_section(analysis)
    if gradients.open:
        with gradients:
            gradients_section(dataset, lens, analysis)
    if sanity.open:
        with sanity:
            sanity_section(dataset, lens)
    if playground.open:
        with playground:
            playground_section()
    if lab.open:
        with lab:
            lab_section(lens)
