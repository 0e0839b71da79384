"""Training lab (placeholder until the lab lands)."""

import streamlit as st


def lab_section(lens, family) -> None:
    st.info("The training lab is not built yet.")
