"""lensdash: run with `streamlit run app.py`."""

import streamlit as st

st.set_page_config(page_title="lensdash", layout="wide")
st.title("lensdash")
