"""Data section: the demo data, uploads, the kind selector, example downloads."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from lensdash.errors import LensdashError
from lensdash.examples import EXAMPLES, demo_frame, example_bytes
from lensdash.files import KINDS, MAX_UPLOAD_MB, Predictions, read_predictions

KIND_LABELS = {"auto": "detect automatically", "logits": "logits", "probs": "probabilities", "log_probs": "log-probabilities"}


@dataclass(frozen=True)
class Dataset:
    """The predictions the page analyses and a key that identifies them (for caches)."""

    key: str
    predictions: Predictions
    origin: str


@st.cache_data(show_spinner=False)
def demo_predictions() -> Predictions:
    frame = demo_frame()
    return read_predictions(frame.to_csv(index=False).encode(), kind="logits")


def _parse(upload, labels, kind: str) -> Predictions:
    return read_predictions(upload, labels, kind=kind, max_bytes=MAX_UPLOAD_MB * 1_000_000)


def _file_key(upload) -> str:
    return f"{upload.file_id}:{upload.size}" if upload is not None else "-"


def data_section() -> Dataset:
    """Sidebar: choose the data. Parses each upload once (keyed by file id and size), keeps the last good data."""
    st.sidebar.header("1 · Data")
    upload = st.sidebar.file_uploader(
        "Predictions (CSV, Parquet, .npy, .npz)",
        type=["csv", "tsv", "txt", "parquet", "npy", "npz"],
        key="upload_predictions",
        help="One row per sample, one column per class (logits or probabilities), and a 'label' column.",
    )
    labels = st.sidebar.file_uploader(
        "Labels, if not a column of the predictions (optional)", type=["csv", "tsv", "txt", "npy"], key="upload_labels"
    )
    kind = st.sidebar.selectbox("The numbers are", KINDS, format_func=KIND_LABELS.get, key="kind")
    state = st.session_state
    key = f"upload:{_file_key(upload)}:{_file_key(labels)}:{kind}" if upload is not None else None
    if upload is not None:
        if state.get("data_key") != key and state.get("failed_key") != key:
            try:
                with st.spinner("Reading predictions…"):
                    state["data"] = Dataset(key, _parse(upload, labels, kind), upload.name)
                state["data_key"] = key
                state.pop("failed_key", None)
            except LensdashError as exc:
                state["failed_key"], state["failed_message"] = key, str(exc)
        if state.get("failed_key") == key:
            st.sidebar.error(state["failed_message"])
            st.error(f"Could not use {upload.name}: {state['failed_message']}")
    else:
        state.pop("data", None)
        state.pop("data_key", None)
    dataset = state.get("data") or Dataset("demo", demo_predictions(), "built-in demo")
    if key is not None and state.get("failed_key") == key:
        st.caption(f"Still showing the last good data: {dataset.origin}.")
    preds = dataset.predictions
    st.sidebar.caption(f"**{dataset.origin}**: {preds.num_samples:,} samples × {preds.num_classes} classes, read as {KIND_LABELS[preds.kind]}.")
    for note in preds.notes:
        st.sidebar.caption(note)
    with st.sidebar.expander("Example files"):
        st.caption("The formats lensdash reads; download one to see, or upload it back.")
        for i, name in enumerate(EXAMPLES):
            st.download_button(name, example_bytes(name), file_name=name, mime="text/csv", key=f"example_{i}")
    return dataset

