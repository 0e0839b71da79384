"""Data section: the demo data, uploads, the kind selector, example downloads."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import streamlit as st

from lensdash.analysis import Baseline, baseline
from lensdash.errors import LensdashError
from lensdash.examples import EXAMPLES, demo_frame, example_bytes
from lensdash.io import KINDS, MAX_UPLOAD_MB, Predictions, read_predictions

KIND_LABELS = {
    "auto": "detect automatically",
    "logits": "logits",
    "probs": "probabilities",
    "log_probs": "log-probabilities",
}


@dataclass(frozen=True)
class Dataset:
    """The predictions the page analyses, a key that identifies them (for caches), and their unlensed baseline."""

    key: str
    predictions: Predictions
    origin: str
    baseline: Baseline

    @classmethod
    def of(cls, key: str, predictions: Predictions, origin: str) -> Dataset:
        # The unlensed half is computed once per dataset, so a lens edit only computes the lensed half.
        return cls(key, predictions, origin, baseline(predictions.logits, predictions.labels))


@st.cache_data(show_spinner=False)
def demo_predictions() -> Predictions:
    frame = demo_frame()
    return read_predictions(frame.to_csv(index=False).encode(), kind="logits")


def demo_dataset() -> Dataset:
    """The built-in demo, built once per session."""
    state = st.session_state
    if "demo_dataset" not in state:
        state["demo_dataset"] = Dataset.of("demo", demo_predictions(), "built-in demo")
    return state["demo_dataset"]


def _parse(upload, labels, kind: str) -> Predictions:
    for source in (upload, labels):
        if source is not None:
            source.seek(0)  # a kept upload is read again when the kind changes
    return read_predictions(upload, labels, kind=kind, max_bytes=MAX_UPLOAD_MB * 1_000_000)


def _file_key(upload) -> str:
    return f"{upload.file_id}:{upload.size}" if upload is not None else "-"


def use_dataset(dataset: Dataset, sources: dict) -> None:
    """Make ``dataset`` the page's data; ``sources`` are the files it was read from (kept to re-read on a kind change)."""
    state = st.session_state
    state["data"], state["data_key"], state["sources"] = dataset, dataset.key, sources
    state.pop("failed_key", None)


def uploader_key(name: str) -> str:
    """The uploaders' widget keys; a new version empties them once their files are read."""
    return f"{name}_{st.session_state.get('upload_version', 0)}"


def data_section() -> Dataset:
    """Sidebar: choose the data. Parses each upload once (keyed by file id and size), keeps the last good data.

    A file that was read is moved out of its uploader into session state: Streamlit copies
    every widget's value on each rerun, which for a 100 MB upload would cost more than the analysis.
    """
    st.sidebar.header("1 · Data")
    state = st.session_state
    state.setdefault("upload_version", 0)
    upload = st.sidebar.file_uploader(
        "Predictions (CSV, Parquet, .npy, .npz)",
        type=["csv", "tsv", "txt", "parquet", "npy", "npz"],
        key=uploader_key("upload_predictions"),
        help="One row per sample, one column per class (logits or probabilities), and a 'label' column.",
    )
    labels = st.sidebar.file_uploader(
        "Labels, if not a column of the predictions (optional)",
        type=["csv", "tsv", "txt", "npy"],
        key=uploader_key("upload_labels"),
    )
    kind = st.sidebar.selectbox("The numbers are", KINDS, format_func=KIND_LABELS.get, key="kind")
    kept = state.get("sources", {})
    if upload is None and labels is not None:
        upload = kept.get("predictions")  # labels for the predictions already read
    elif upload is None:
        upload, labels = kept.get("predictions"), kept.get("labels")
    key = f"upload:{_file_key(upload)}:{_file_key(labels)}:{kind}" if upload is not None else None
    if upload is not None and state.get("data_key") != key and state.get("failed_key") != key:
        try:
            with st.spinner("Reading predictions…"):
                use_dataset(
                    Dataset.of(key, _parse(upload, labels, kind), upload.name),
                    {"predictions": upload, "labels": labels},
                )
            state["upload_version"] = state.get("upload_version", 0) + 1
            st.rerun()  # show the uploaders empty; the data stays
        except LensdashError as exc:
            state["failed_key"], state["failed_message"] = key, str(exc)
    if key is not None and state.get("failed_key") == key:
        st.sidebar.error(f"{upload.name} was not read: the reason is at the top of the page.")
        st.error(f"Could not use this upload. {state['failed_message']}")
    if "sources" in state and st.sidebar.button("Back to the demo data", key="use_demo"):
        for name in ("data", "data_key", "sources", "failed_key"):
            state.pop(name, None)
    dataset = state.get("data") or demo_dataset()
    if key is not None and state.get("failed_key") == key:
        st.caption(f"Still showing the last good data: {dataset.origin}.")
    elif "sources" in state:
        st.sidebar.caption("Upload another file to replace it.")
    preds = dataset.predictions
    st.sidebar.caption(
        f"**{dataset.origin}**: {preds.num_samples:,} samples × {preds.num_classes} classes, read as {KIND_LABELS[preds.kind]}."
    )
    for note in preds.notes:
        st.sidebar.caption(note)
    with st.sidebar.expander("Example files"):
        st.caption("The formats lensdash reads; download one to see, or upload it back.")
        for i, name in enumerate(EXAMPLES):
            st.download_button(
                name,
                partial(example_bytes, name),
                file_name=name,
                mime="text/csv",
                key=f"example_{i}",
                on_click="ignore",
            )
    return dataset
