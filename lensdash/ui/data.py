"""Data section: the demo data, uploads, the kind selector, example downloads."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx
from torch import Tensor

from lensdash.analysis import Baseline, baseline, soft_confusion
from lensdash.errors import LensdashError
from lensdash.examples import EXAMPLES, demo_frame, example_bytes
from lensdash.io import KINDS, Predictions, read_predictions
from lensdash.sanitize import markdown_text
from lensdash.ui import state
from lensdash.ui.cache import clear_session_memo, tensor_digest
from lensdash.ui.config import CACHE_MAX_ENTRIES, CACHE_TTL_SECONDS, max_upload_bytes, reader_limits
from lensdash.ui.downloads import csv_file

KIND_LABELS = {
    "auto": "detect automatically",
    "logits": "logits",
    "probs": "probabilities",
    "log_probs": "log-probabilities",
}
#: For files over the upload limit: the command that reads any size in chunks.
CLI_HINT = "python -m lensdash report FILE --lens LENS --out REPORT_DIR"


@dataclass(frozen=True)
class LensInputs:
    """What the lens presets need from the data: small (K names, two K×K matrices), so widgets can hold it."""

    class_names: tuple[str, ...]
    confusion: Tensor  # (K, K) counts, row = true class
    soft_confusion: Tensor  # (K, K) mean predicted probability per true class


@dataclass(frozen=True)
class Dataset:
    """The predictions the page analyses, their content digest (the key of what is computed from them), and their
    unlensed baseline."""

    digest: str
    predictions: Predictions
    origin: str
    baseline: Baseline
    lens_inputs: LensInputs

    @classmethod
    def of(cls, predictions: Predictions, origin: str) -> Dataset:
        # The digest covers everything an analysis depends on (numbers, labels, names), so two sessions' results
        # can never be mixed up; the unlensed half is computed once per dataset, so a lens edit only does the rest.
        targets = () if predictions.targets is None else (predictions.targets,)  # soft labels change every loss
        digest = tensor_digest(predictions.logits, predictions.labels, *targets, names=predictions.class_names)
        unlensed = baseline(predictions.logits, predictions.labels, predictions.targets)
        soft = soft_confusion(predictions.logits, predictions.labels, predictions.num_classes)
        return cls(digest, predictions, origin, unlensed, LensInputs(predictions.class_names, unlensed.confusion, soft))

    @property
    def metadata(self) -> pd.DataFrame | None:
        """The columns kept aside from the scores (ids, file names, sites), one row per sample; None without any."""
        metadata = self.predictions.metadata
        return metadata if metadata is not None and metadata.shape[1] else None


@st.cache_data(show_spinner=False, max_entries=1, ttl=CACHE_TTL_SECONDS)
def demo_predictions() -> Predictions:
    """The built-in demo's predictions (the same for everyone: no user data)."""
    frame = demo_frame()
    return read_predictions(frame.to_csv(index=False).encode(), kind="logits")


@st.cache_data(show_spinner=False, max_entries=CACHE_MAX_ENTRIES, ttl=CACHE_TTL_SECONDS)
def example_download(name: str) -> bytes:
    """A shipped example file, spreadsheet-safe like every CSV the app offers."""
    return csv_file(example_bytes(name))


def demo_dataset() -> Dataset:
    """The built-in demo, built once per session."""
    if not state.has(state.DEMO):
        state.put(state.DEMO, Dataset.of(demo_predictions(), "built-in demo"))
    return state.get(state.DEMO)


def meta_column_names(text: str) -> list[str]:
    """The metadata columns typed in the sidebar: comma-separated names, blanks dropped.

    >>> meta_column_names(" sample, fold ,,")
    ['sample', 'fold']
    """
    return [name.strip() for name in str(text or "").split(",") if name.strip()]


def _parse(upload: Any, labels: Any, kind: str, meta_columns: list[str] | None = None) -> Predictions:
    for source in (upload, labels):
        if source is not None:
            source.seek(0)  # a kept upload is read again when the kind or the metadata columns change
    limits = reader_limits(read_predictions)
    return read_predictions(
        upload, labels, kind=kind, max_bytes=max_upload_bytes(), meta_columns=meta_columns or None, **limits
    )


def _release_upload(*uploads: Any) -> None:
    """Drop Streamlit's own copy of files that were read (the session's store keeps them, to re-read on a kind change).

    Streamlit's upload manager keeps a file until its session shuts down, which for a closed tab happens only when
    Streamlit later reaps the disconnected session: without this, every upload would stay in memory after its user
    left. The session store's copy goes as soon as the browser disconnects.
    """
    ctx = get_script_run_ctx()
    if ctx is None:
        return
    for upload in uploads:
        if upload is not None:
            # The stub types the manager as its abstract base; the runtime one (MemoryUploadedFileManager) has it.
            ctx.uploaded_file_mgr.remove_file(ctx.session_id, upload.file_id)  # type: ignore[attr-defined]


def _file_key(upload: Any) -> str:
    return f"{upload.file_id}:{upload.size}" if upload is not None else "-"


def use_dataset(dataset: Dataset, sources: dict[str, Any], source_key: str | None = None) -> None:
    """Make ``dataset`` the page's data; ``sources`` are the files it was read from (kept to re-read on a kind change)
    and ``source_key`` says which upload that was."""
    state.put(state.DATA, dataset)
    state.put(state.SOURCES, sources)
    state.put(state.SOURCE_KEY, source_key)
    clear_session_memo()  # results of the previous data are of no use now
    state.drop(state.FAILED_KEY, state.FAILED_MESSAGE)


def _back_to_demo() -> None:
    state.drop(state.DATA, state.SOURCE_KEY, state.SOURCES, state.FAILED_KEY, state.FAILED_MESSAGE)


def uploader_key(name: str) -> str:
    """The uploaders' widget keys; a new version empties them once their files are read."""
    return state.versioned(name, state.UPLOAD_VERSION)


def _too_large(upload: Any) -> bool:
    return upload is not None and upload.size > max_upload_bytes()


def data_section() -> Dataset:
    """Sidebar: choose the data. Parses each upload once (keyed by file id and size), keeps the last good data.

    A file that was read is moved out of its uploader into the session's store: Streamlit copies
    every widget's value on each rerun, which for a 100 MB upload would cost more than the analysis.
    """
    st.sidebar.header("1 · Data")
    state.init_widgets(state.UPLOAD_VERSION, state.KIND, state.META_COLUMNS)
    for what in state.data_lost():
        st.warning(
            f"The {what} file you uploaded is no longer held by the server (the page was away longer than the "
            "server keeps a disconnected session's data). Upload it again to continue."
            + (" Until then the page shows the built-in demo." if what == "predictions" else "")
        )
    limit_mb = max_upload_bytes() // 1_000_000
    upload = st.sidebar.file_uploader(
        "Predictions (CSV, Parquet, .npy, .npz)",
        type=["csv", "tsv", "txt", "parquet", "npy", "npz"],
        key=uploader_key(state.UPLOAD_PREDICTIONS),
        help=f"One row per sample, one column per class (logits or probabilities), and a 'label' column. "
        f"Files up to {limit_mb} MB; larger ones with the command line: `{CLI_HINT}`.",
    )
    # Streamlit's uploader refuses a larger file in the browser with a red icon only (this code never sees it), so the
    # limit and the way past it are said beside it, always.
    st.sidebar.caption(f"Up to {limit_mb} MB here. Larger files, in chunks, with the command line: `{CLI_HINT}`")
    labels = st.sidebar.file_uploader(
        "Labels, if not a column of the predictions (optional)",
        type=["csv", "tsv", "txt", "npy"],
        key=uploader_key(state.UPLOAD_LABELS),
    )
    kind = st.sidebar.selectbox("The numbers are", KINDS, format_func=KIND_LABELS.__getitem__, key=state.KIND)
    meta_text = st.sidebar.text_input(
        "Numeric metadata columns (optional)",
        key=state.META_COLUMNS,
        placeholder="e.g. sample, fold",
        help="Comma-separated names of numeric columns to keep aside as metadata (not scores), like `--meta-columns` "
        "on the command line. Text columns and columns named id, sample_id, index, idx, filename or path are kept "
        "aside without it. Metadata is shown beside each sample, sliced in the Slices tab, and an id column pairs "
        "model B's rows.",
    )
    meta_columns = meta_column_names(meta_text)
    meta_key = ",".join(meta_columns)
    kept = state.get(state.SOURCES) or {}
    if upload is None and labels is not None:
        upload = kept.get("predictions")  # labels for the predictions already read
    elif upload is None:
        upload, labels = kept.get("predictions"), kept.get("labels")
    key = f"upload:{_file_key(upload)}:{_file_key(labels)}:{kind}:{meta_key}" if upload is not None else None
    if upload is not None and state.get(state.SOURCE_KEY) != key and state.get(state.FAILED_KEY) != key:
        try:
            with st.spinner("Reading predictions…"):
                predictions = _parse(upload, labels, kind, meta_columns)
                use_dataset(Dataset.of(predictions, upload.name), {"predictions": upload, "labels": labels}, key)
                _release_upload(upload, labels)
            state.bump(state.UPLOAD_VERSION)
            st.rerun()  # show the uploaders empty; the data stays
        except LensdashError as exc:
            message = str(exc)
            if _too_large(upload) or _too_large(labels):
                message += f" Files of any size can be read in chunks with the command line: {CLI_HINT}"
            state.put(state.FAILED_KEY, key)
            state.put(state.FAILED_MESSAGE, message)
    if key is not None and state.get(state.FAILED_KEY) == key:
        assert upload is not None  # key is None exactly when upload is
        st.sidebar.error(f"{markdown_text(upload.name)} was not read: the reason is at the top of the page.")
        st.error("Could not use this upload. " + markdown_text(state.get(state.FAILED_MESSAGE)))
    if state.has(state.SOURCES):
        st.sidebar.button("Back to the demo data", key="use_demo", on_click=_back_to_demo)
    dataset = state.dataset() or demo_dataset()
    if key is not None and state.get(state.FAILED_KEY) == key:
        st.caption(f"Still showing the last good data: {markdown_text(dataset.origin)}.")
    elif state.has(state.SOURCES):
        st.sidebar.caption("Upload another file to replace it.")
    preds = dataset.predictions
    st.sidebar.caption(
        f"**{markdown_text(dataset.origin)}**: {preds.num_samples:,} samples × {preds.num_classes} classes, "
        f"read as {KIND_LABELS[preds.kind]}."
    )
    for note in preds.notes:
        st.sidebar.caption(markdown_text(note))
    model_b_section(dataset, str(kind), meta_columns)
    with st.sidebar.expander("Example files"):
        st.caption("The formats lensdash reads; download one to see, or upload it back.")
        for i, name in enumerate(EXAMPLES):
            st.download_button(
                name,
                partial(example_download, name),
                file_name=name,
                mime="text/csv",
                key=f"example_{i}",
                on_click="ignore",
            )
    return dataset


def _drop_model_b() -> None:
    state.drop(state.DATA_B, state.SOURCES_B, state.SOURCE_KEY_B, state.FAILED_KEY_B, state.FAILED_MESSAGE_B)


def model_b_section(model_a: Dataset, kind: str, meta_columns: list[str] | None = None) -> Dataset | None:
    """Sidebar, under the first upload: a second model's predictions of the same samples (model B).

    Read as model A's file is, with the same kind and metadata columns, once per upload and setting: the file is kept
    in the session's store and read again when the kind or the metadata columns change. It is paired
    with the page's data (``model_a``) on every run, since either can change (kept in the session by content, see
    :func:`lensdash.ui.compare.paired_model_b`); files that do not pair say why here and in the Compare tab.
    """
    from lensdash.ui.compare import paired_model_b  # compare builds on this module

    st.sidebar.markdown("**Compare with another model**")
    upload = st.sidebar.file_uploader(
        "Model B's predictions of the same samples (optional)",
        type=["csv", "tsv", "txt", "parquet", "npy", "npz"],
        key=uploader_key(state.UPLOAD_MODEL_B),
        help="Same classes and labels as the first file. Rows are paired by an id column when both files have one, "
        "by row order otherwise. The Compare tab shows both models side by side.",
    )
    if upload is None:
        upload = state.get(state.SOURCES_B)  # the file read before, read again when a setting changes
    meta_key = ",".join(meta_columns or [])
    key = f"upload_b:{_file_key(upload)}:{kind}:{meta_key}" if upload is not None else None
    if upload is not None and state.get(state.SOURCE_KEY_B) != key and state.get(state.FAILED_KEY_B) != key:
        try:
            with st.spinner("Reading model B's predictions…"):
                predictions = _parse(upload, None, kind, meta_columns)
                state.put(state.DATA_B, Dataset.of(predictions, upload.name))
                state.put(state.SOURCES_B, upload)
                state.put(state.SOURCE_KEY_B, key)
                state.drop(state.FAILED_KEY_B, state.FAILED_MESSAGE_B)
                _release_upload(upload)
            state.bump(state.UPLOAD_VERSION)
            st.rerun()  # show the uploader empty; model B stays
        except LensdashError as exc:
            state.put(state.FAILED_KEY_B, key)
            state.put(state.FAILED_MESSAGE_B, str(exc))
    if upload is not None and state.get(state.FAILED_KEY_B) == key:
        st.sidebar.error(
            f"{markdown_text(upload.name)} was not read: " + markdown_text(state.get(state.FAILED_MESSAGE_B))
        )
    model_b: Dataset | None = state.get(state.DATA_B)
    if model_b is not None:
        preds = model_b.predictions
        st.sidebar.caption(
            f"Model B: **{markdown_text(model_b.origin)}**, "
            f"{preds.num_samples:,} samples × {preds.num_classes} classes."
        )
        if model_b.metadata is not None:  # which columns are metadata (an id column in both pairs the rows)
            names = [repr(str(c)) for c in model_b.metadata.columns]
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            st.sidebar.caption("Model B: kept aside as metadata (not scores): " + markdown_text(shown) + ".")
        try:
            st.sidebar.caption(markdown_text(paired_model_b(model_a, model_b).note) + " See the Compare tab.")
        except LensdashError as exc:
            st.sidebar.error("Model B does not pair with the data shown: " + markdown_text(str(exc)))
        st.sidebar.button("Remove model B", key="remove_model_b", on_click=_drop_model_b)
    return model_b
