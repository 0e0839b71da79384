"""Data section: the demo data, uploads, the kind selector, example downloads."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx
from torch import Tensor

from lensdash.analysis import Baseline, baseline, soft_confusion
from lensdash.errors import LensdashError, LensError
from lensdash.examples import EXAMPLES, demo_frame, example_bytes
from lensdash.io import KINDS, Predictions, file_format, read_predictions, reinterpret
from lensdash.sanitize import markdown_text
from lensdash.ui import state
from lensdash.ui.cache import clear_session_memo, session_memo, tensor_digest
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
#: Uploads up to this size (the files of one read together) are kept once read, so that a change of the metadata
#: columns reads them again; larger ones are dropped (a 10,000 × 1,000 CSV is 2.6 times its decoded numbers) and are
#: uploaded again for that. A change of kind needs no file (see :class:`Upload`).
KEEP_FILE_BYTES = 10_000_000


@dataclass(frozen=True)
class LensInputs:
    """What the lens presets need from the data: its K names and its digest, small, so widgets can hold it (a widget
    keeps its callback's arguments as long as the session's state, after the session's data was freed). The
    confusion matrices are looked up by the digest when a preset asks: :func:`confusion_of`,
    :func:`soft_confusion_of`."""

    class_names: tuple[str, ...]
    digest: str  # the data's content digest (Dataset.digest)


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
        return cls(digest, predictions, origin, unlensed, LensInputs(predictions.class_names, digest))

    @property
    def metadata(self) -> pd.DataFrame | None:
        """The columns kept aside from the scores (ids, file names, sites), one row per sample; None without any."""
        metadata = self.predictions.metadata
        return metadata if metadata is not None and metadata.shape[1] else None


def dataset_of(inputs: LensInputs) -> Dataset:
    """The page's data that ``inputs`` come from (the upload or the demo, by digest).

    Raises:
        LensError: that data is no longer the page's (a preset changed as new data came in).
    """
    held = [state.get(key) for key in (state.DATA, state.DEMO)]
    dataset = next((d for d in held if d is not None and d.digest == inputs.digest), None)
    if dataset is None:
        raise LensError.build(
            "the data the preset was chosen for", "other data on the page", fix="Choose the preset again."
        )
    return dataset


def confusion_of(inputs: LensInputs) -> Tensor:
    """The (K, K) confusion counts (row = true class) of the data ``inputs`` come from: its baseline's.

    Raises:
        LensError: see :func:`dataset_of`.
    """
    return dataset_of(inputs).baseline.confusion


def soft_confusion_of(inputs: LensInputs) -> Tensor:
    """The soft confusion (mean predicted probability per true class, K×K float64) of the data ``inputs`` come from.

    Only the "from confusion" preset uses it: made the first time it is asked for and kept in the session by the
    data's digest (8 MB at K = 1,000, N × K work), rather than with every upload.

    Raises:
        LensError: see :func:`dataset_of`.
    """
    preds = dataset_of(inputs).predictions
    return session_memo(
        "soft_confusion", inputs.digest, lambda: soft_confusion(preds.logits, preds.labels, preds.num_classes)
    )


@dataclass(frozen=True)
class Upload:
    """What the session keeps of an upload once read: the read itself, and its files only while they are small.

    The read holds the numbers as they were read (probabilities as their log), so another kind is taken from it
    without the file (:func:`lensdash.io.reinterpret`). The metadata columns change which columns are numbers, so a
    change of them reads the files again: kept up to :data:`KEEP_FILE_BYTES`, else the user is asked to upload again.
    """

    name: str
    #: which files were read (upload ids and sizes): part of the data's key
    file_key: str
    #: the reader's result, read as ``kind`` with the metadata columns ``meta_key``
    read: Predictions
    kind: str
    meta_key: str
    #: the files (predictions, labels) to read again, or None once dropped
    files: tuple[Any, Any] | None
    #: whether the metadata columns can change the read (CSV and Parquet name their columns; .npy and .npz do not)
    has_columns: bool

    @classmethod
    def of(cls, read: Predictions, upload: Any, labels: Any, kind: str, meta_key: str) -> Upload:
        size = upload.size + (labels.size if labels is not None else 0)
        upload.seek(0)
        has_columns = file_format(upload.read(8)) in ("text", "parquet")
        files = (upload, labels) if size <= KEEP_FILE_BYTES else None
        return cls(upload.name, _files_key(upload, labels), read, kind, meta_key, files, has_columns)

    def meta_key_for(self, meta_key: str) -> str:
        """The metadata columns the data can have: the typed ones where they can be applied, else those read with."""
        return meta_key if self.files is not None else self.meta_key

    def stale_columns(self, meta_key: str) -> bool:
        """Whether the typed metadata columns would change the read but cannot be applied without the file."""
        return self.has_columns and self.files is None and meta_key != self.meta_key

    def settled(self, kind: str, meta_columns: list[str]) -> Upload:
        """This upload under the sidebar's settings: read again from the files if the metadata columns changed (and
        the files are kept); a change of kind alone is taken from the read by :meth:`predictions`."""
        meta_key = ",".join(meta_columns)
        if self.files is None or meta_key == self.meta_key:
            return self
        return replace(self, read=_parse(*self.files, kind, meta_columns), kind=kind, meta_key=meta_key)

    def predictions(self, kind: str) -> Predictions:
        """The read taken as ``kind``: the read itself for its own kind, else :func:`lensdash.io.reinterpret` of it."""
        return self.read if kind == self.kind else reinterpret(self.read, kind)


def _files_key(upload: Any, labels: Any) -> str:
    return f"{_file_key(upload)}:{_file_key(labels)}"


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
            source.seek(0)  # a kept upload is read again when the metadata columns change
    limits = reader_limits(read_predictions)
    return read_predictions(
        upload, labels, kind=kind, max_bytes=max_upload_bytes(), meta_columns=meta_columns or None, **limits
    )


def _release_upload(*uploads: Any) -> None:
    """Drop Streamlit's own copy of files that were read (the session's store keeps them only while small: Upload).

    Streamlit's upload manager keeps a file until its session shuts down, which for a closed tab happens only when
    Streamlit later reaps the disconnected session: without this, every upload would stay in memory after its user
    left. The session store's copy (of small files only) goes as soon as the browser disconnects.
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


def use_dataset(dataset: Dataset, upload: Upload | None, source_key: str | None = None) -> None:
    """Make ``dataset`` the page's data; ``upload`` is what is kept of the upload it was read from (None: no file),
    and ``source_key`` says which upload and settings that was."""
    state.put(state.DATA, dataset)
    state.put(state.SOURCES, upload)
    state.put(state.SOURCE_KEY, source_key)
    clear_session_memo()  # results of the previous data are of no use now
    state.drop(state.FAILED_KEY, state.FAILED_MESSAGE)


def _back_to_demo() -> None:
    state.drop(state.DATA, state.SOURCE_KEY, state.SOURCES, state.FAILED_KEY, state.FAILED_MESSAGE)


def uploader_key(name: str) -> str:
    """The uploaders' widget keys; a new version empties them once their files are read."""
    return state.versioned(name, state.UPLOAD_VERSION)


def _kept(key: str) -> Upload | None:
    """The upload kept under ``key`` (None without one, or for data that came from no file: the training lab)."""
    kept = state.get(key)
    return kept if isinstance(kept, Upload) else None


def _data_key(
    prefix: str, upload: Any, labels: Any, kept: Upload | None, kind: str, meta_columns: list[str]
) -> str | None:
    """Which files and settings the data would be read with: new files in the uploaders, else the kept upload (with
    the metadata columns it can be read with). None without either."""
    meta_key = ",".join(meta_columns)
    if upload is not None:
        return f"{prefix}:{_files_key(upload, labels)}:{kind}:{meta_key}"
    if kept is not None:
        return f"{prefix}:{kept.file_key}:{kind}:{kept.meta_key_for(meta_key)}"
    return None


def _load(
    upload: Any, labels: Any, kept: Upload | None, kind: str, meta_columns: list[str]
) -> tuple[Predictions, Upload]:
    """New files read with the settings, or the kept upload under them (see :class:`Upload`): the predictions and what
    the session keeps."""
    if upload is not None:
        predictions = _parse(upload, labels, kind, meta_columns)
        return predictions, Upload.of(predictions, upload, labels, kind, ",".join(meta_columns))
    assert kept is not None  # _data_key gave no key otherwise
    settled = kept.settled(kind, meta_columns)
    return settled.predictions(kind), settled


def _stale_columns_note(kept: Upload) -> str:
    read_with = f"'{kept.meta_key}'" if kept.meta_key else "none named"
    return (
        f"{markdown_text(kept.name)} was read with the metadata columns {markdown_text(read_with)}. Files over "
        f"{KEEP_FILE_BYTES // 1_000_000} MB are not kept once read, to spare the server's memory: upload it again to "
        "read it with the columns named above. (A change of kind needs no new upload.)"
    )


def _too_large(upload: Any) -> bool:
    return upload is not None and upload.size > max_upload_bytes()


def data_section() -> Dataset:
    """Sidebar: choose the data. Parses each upload once (keyed by file id and size), keeps the last good data.

    A file that was read leaves its uploader: Streamlit copies every widget's value on each rerun, which for a 100 MB
    upload would cost more than the analysis. The session keeps the read (and small files, see :class:`Upload`), so a
    change of kind or of the metadata columns needs no new upload, except metadata columns for a large file (said in
    the sidebar).
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
    kept = _kept(state.SOURCES)
    if upload is None and labels is not None and kept is not None:  # labels for the predictions already read
        if kept.files is not None:
            upload = kept.files[0]
        else:
            st.sidebar.warning(
                f"Upload {markdown_text(kept.name)} again with this labels file: files over "
                f"{KEEP_FILE_BYTES // 1_000_000} MB are not kept once read, to spare the server's memory."
            )
    key = _data_key("upload", upload, labels, kept, kind, meta_columns)
    name = upload.name if upload is not None else kept.name if kept is not None else ""
    if key is not None and state.get(state.SOURCE_KEY) != key and state.get(state.FAILED_KEY) != key:
        try:
            with st.spinner("Reading predictions…"):
                predictions, read = _load(upload, labels, kept, kind, meta_columns)
                use_dataset(Dataset.of(predictions, name), read, key)
            if upload is not None:  # new files: out of the uploaders (the session keeps what it needs: Upload)
                _release_upload(upload, labels)
                state.release_freed_memory()  # the reader's parse buffers, kept by the allocators otherwise
                state.bump(state.UPLOAD_VERSION)
                st.rerun()  # show the uploaders empty; the data stays
        except LensdashError as exc:
            message = str(exc)
            if _too_large(upload) or _too_large(labels):
                message += f" Files of any size can be read in chunks with the command line: {CLI_HINT}"
            state.put(state.FAILED_KEY, key)
            state.put(state.FAILED_MESSAGE, message)
    if key is not None and state.get(state.FAILED_KEY) == key:
        st.sidebar.error(f"{markdown_text(name)} was not read: the reason is at the top of the page.")
        st.error("Could not use this upload. " + markdown_text(state.get(state.FAILED_MESSAGE)))
    if upload is None and kept is not None and kept.stale_columns(",".join(meta_columns)):
        st.sidebar.warning(_stale_columns_note(kept))
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

    Read as model A's file is, with the same kind and metadata columns, once per upload and setting: a change of kind
    is taken from the read, a change of the metadata columns reads the file again while it is kept (see
    :class:`Upload`). It is paired
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
    kept = _kept(state.SOURCES_B)
    meta_columns = meta_columns or []
    key = _data_key("upload_b", upload, None, kept, kind, meta_columns)
    name = upload.name if upload is not None else kept.name if kept is not None else ""
    if key is not None and state.get(state.SOURCE_KEY_B) != key and state.get(state.FAILED_KEY_B) != key:
        try:
            with st.spinner("Reading model B's predictions…"):
                predictions, read = _load(upload, None, kept, kind, meta_columns)
                state.put(state.DATA_B, Dataset.of(predictions, name))
                state.put(state.SOURCES_B, read)
                state.put(state.SOURCE_KEY_B, key)
                state.drop(state.FAILED_KEY_B, state.FAILED_MESSAGE_B)
            if upload is not None:
                _release_upload(upload)
                state.release_freed_memory()
                state.bump(state.UPLOAD_VERSION)
                st.rerun()  # show the uploader empty; model B stays
        except LensdashError as exc:
            state.put(state.FAILED_KEY_B, key)
            state.put(state.FAILED_MESSAGE_B, str(exc))
    if key is not None and state.get(state.FAILED_KEY_B) == key:
        st.sidebar.error(f"{markdown_text(name)} was not read: " + markdown_text(state.get(state.FAILED_MESSAGE_B)))
    if upload is None and kept is not None and kept.stale_columns(",".join(meta_columns)):
        st.sidebar.warning("Model B: " + _stale_columns_note(kept))
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
