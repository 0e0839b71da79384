"""Lens section: presets, the K×K grid editor, row-sum checks, import/export, share link."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st
import torch

from lensdash.analysis import confused_pairs, lens_pairs, soft_confusion, suggest_groups
from lensdash.errors import LensdashError, LensError
from lensdash.io import lens_to_bytes, read_lens
from lensdash.lens import ROW_SUM_ATOL, Lens, normalize_lens
from lensdash.presets import PRESETS, build_preset, format_groups, parse_groups
from lensdash.ui.data import Dataset

GRID_KEY = "lens_grid"
#: The pinned, read-only first column of the grid (a class could be named like anything else).
LABEL_COLUMN = "true label ↓ / target →"
#: Largest K whose lens is put into the page link (K² numbers must fit a URL).
MAX_SHARE_K = 12


def _confusion(dataset: Dataset, soft: bool) -> torch.Tensor:
    preds = dataset.predictions
    if soft:
        return soft_confusion(preds.logits, preds.labels, preds.num_classes)
    return dataset.baseline.confusion


def grid_key() -> str:
    """The grid's widget key; a new base gets a new key so the browser drops its old edits."""
    return f"{GRID_KEY}_{st.session_state.get('lens_version', 0)}"


def _set_base(matrix: np.ndarray) -> None:
    st.session_state.pop(grid_key(), None)
    st.session_state["lens_base"] = matrix
    st.session_state["lens_version"] = st.session_state.get("lens_version", 0) + 1


def apply_preset() -> None:
    """Callback of every preset widget: rebuild the lens from the preset and its parameters."""
    state = st.session_state
    dataset: Dataset = state["dataset_for_callbacks"]
    names = dataset.predictions.class_names
    try:
        groups = parse_groups(state.get("groups", ""), names)
        lens = build_preset(
            state["preset"],
            names,
            groups=groups,
            epsilon=state.get("epsilon", 0.1),
            beta=state.get("beta", 2.0),
            alpha=state.get("alpha", 0.5),
            confusion=_confusion(dataset, state.get("confusion_kind", "soft") == "soft")
            if state["preset"] == "from confusion"
            else None,
        )
    except LensdashError as exc:
        state["lens_message"] = str(exc)
        return
    state.pop("lens_message", None)
    _set_base(lens.matrix.numpy())


def _normalise() -> None:
    current = st.session_state.get("lens_current")
    try:
        _set_base(normalize_lens(current).numpy())
        st.session_state.pop("lens_message", None)
    except LensError as exc:
        st.session_state["lens_message"] = str(exc)


def _init_for(dataset: Dataset) -> None:
    """First run for these classes: a link's lens if it fits, else merge the most confused pairs."""
    state = st.session_state
    names = dataset.predictions.class_names
    state["lens_classes"] = names
    suggested = suggest_groups(_confusion(dataset, False), names)
    state["groups"] = format_groups(suggested)
    state["preset"] = "merge groups" if suggested else "identity"
    state.setdefault("epsilon", 0.1)
    state.setdefault("beta", 2.0)
    state.setdefault("alpha", 0.5)
    shared = _lens_from_query(names)
    if shared is not None:
        linked = st.query_params.get("preset")
        state["preset"] = linked if linked in PRESETS else "merge groups"
        _set_base(shared)
        state["lens_message_info"] = "The lens was loaded from the page link."
        return
    apply_preset()


def _lens_from_query(names: tuple[str, ...]) -> np.ndarray | None:
    text = st.query_params.get("lens")
    if not text:
        return None
    try:
        rows = [[float(v) for v in row.split(",")] for row in text.split(";")]
        matrix = np.asarray(rows, dtype=float)
        Lens(matrix, names)
    except (ValueError, LensdashError):
        st.session_state["lens_message"] = (
            "The lens in the page link does not fit these classes; using a preset instead."
        )
        return None
    return matrix


def _share(matrix: np.ndarray) -> None:
    st.query_params["lens"] = ";".join(",".join(f"{v:.4g}" for v in row) for row in matrix)
    st.query_params["preset"] = st.session_state.get("preset", "")


def _import_lens(dataset: Dataset) -> None:
    upload = st.session_state.get("upload_lens")
    if upload is None:
        return
    try:
        lens, notes = read_lens(upload, dataset.predictions.class_names)
    except LensdashError as exc:
        st.session_state["lens_message"] = str(exc)
        return
    _set_base(lens.matrix.numpy())
    st.session_state.pop("lens_message", None)
    st.session_state["lens_message_info"] = " ".join(["Lens imported from " + upload.name + ".", *notes])


def lens_section(dataset: Dataset) -> Lens | None:
    """Draw the lens editor; return the current valid lens, or None (with the reason shown)."""
    state = st.session_state
    names = dataset.predictions.class_names
    state["dataset_for_callbacks"] = dataset  # preset callbacks run before the next script run
    if state.get("lens_classes") != names or "lens_base" not in state:
        _init_for(dataset)
    k = len(names)

    left, right = st.columns([1, 3], gap="large")
    with left:
        st.selectbox(
            "Preset", PRESETS, key="preset", on_change=apply_preset, help="Rebuilds the grid; edit cells afterwards."
        )
        preset = state["preset"]
        if preset in ("merge groups", "hierarchy soft labels"):
            st.text_area(
                "Groups of interchangeable classes (one per line, comma-separated)",
                key="groups",
                on_change=apply_preset,
                height=110,
                help="Suggested from the data's most confused pairs. Every class in a group gets a uniform target over the group.",
            )
        if preset == "label smoothing":
            st.slider("ε (smoothing mass)", 0.0, 1.0, step=0.01, key="epsilon", on_change=apply_preset)
        if preset == "hierarchy soft labels":
            st.slider("β (sharpness; large = identity)", 0.0, 10.0, step=0.1, key="beta", on_change=apply_preset)
        if preset == "from confusion":
            st.radio(
                "Confusion",
                ["soft", "counts"],
                key="confusion_kind",
                on_change=apply_preset,
                horizontal=True,
                help="soft: mean predicted probability per true class; counts: argmax confusion matrix.",
            )
            st.slider(
                "α (weight of the confusion; 0 = identity)", 0.0, 1.0, step=0.05, key="alpha", on_change=apply_preset
            )
        st.button("Normalise rows", key="normalise", on_click=_normalise, help="Divide each row by its sum.")
        st.file_uploader(
            "Import a lens (CSV, JSON, .pt)",
            type=["csv", "json", "pt"],
            key="upload_lens",
            on_change=_import_lens,
            args=(dataset,),
        )
    with right:
        base = pd.DataFrame(state["lens_base"], columns=list(names))
        base.insert(0, LABEL_COLUMN, list(names))
        config = {
            c: st.column_config.NumberColumn(c, min_value=0.0, max_value=1.0, step=0.001, format="%.3f") for c in names
        }
        config[LABEL_COLUMN] = st.column_config.TextColumn(LABEL_COLUMN, pinned=True, disabled=True, width="small")
        st.caption(
            "Row = true label; the row is the target distribution the loss uses for it (rows sum to 1). Double-click a cell to edit."
        )
        st.session_state["lens_grid_key"] = grid_key()
        edited = st.data_editor(
            base, key=grid_key(), column_config=config, hide_index=True, height=min(38 + 35 * k, 560), width="stretch"
        )
    matrix = edited[list(names)].to_numpy(dtype=float, na_value=0.0)
    state["lens_current"] = matrix
    if state.get("lens_message"):
        st.error(state["lens_message"])
    if state.get("lens_message_info"):
        st.info(state.pop("lens_message_info"))
    sums = matrix.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1) > ROW_SUM_ATOL)
    try:
        lens = Lens(matrix, names)
    except LensError as exc:
        detail = ", ".join(f"{names[i]} ({sums[i]:.3f})" for i in off[:8])
        st.error(
            f"{exc}"
            + (f" Rows off: {detail}{'…' if len(off) > 8 else ''}. Use **Normalise rows**." if len(off) else "")
        )
        return None
    st.caption(f"All {k} rows sum to 1 (within {ROW_SUM_ATOL:g}).")
    with st.expander("Export and share this lens"):
        c1, c2, c3 = st.columns(3)
        # Files are made on click (a 100-class lens costs ~10 ms to format), and a download does not rerun the page.
        c1.download_button(
            "Lens as CSV",
            partial(lens_to_bytes, lens, "csv"),
            "lens.csv",
            "text/csv",
            key="export_csv",
            on_click="ignore",
        )
        c2.download_button(
            "Lens as JSON",
            partial(lens_to_bytes, lens, "json"),
            "lens.json",
            "application/json",
            key="export_json",
            on_click="ignore",
        )
        c3.download_button(
            "Lens for torch (.pt)", partial(lens_to_bytes, lens, "pt"), "lens.pt", key="export_pt", on_click="ignore"
        )
        if k <= MAX_SHARE_K:
            st.button("Put this lens in the page link", key="share", on_click=_share, args=(matrix,))
            st.caption("The address bar then holds a link that opens the app with this lens.")
        else:
            st.caption(
                f"A {k}×{k} lens is too large for a link (at most {MAX_SHARE_K} classes); share the lens file instead."
            )
    return lens


def _accept_groups(groups: str) -> None:
    state = st.session_state
    state["groups"], state["preset"] = groups, "merge groups"
    apply_preset()


def data_lenses_section(dataset: Dataset, lens: Lens) -> None:
    """Lenses from data: the most confused pairs, suggested groups to accept, and where the current lens moves mass."""
    names = dataset.predictions.class_names
    counts = _confusion(dataset, False)
    with st.expander("Lenses from this data: confused pairs and suggested groups"):
        left, right = st.columns(2)
        with left:
            st.markdown("**Most mutually confused pairs** (rates of the argmax confusion matrix, row = true class)")
            st.dataframe(confused_pairs(counts, names, top=8), hide_index=True, width="stretch", key="confused_pairs")
            suggested = suggest_groups(counts, names)
            if suggested:
                text = format_groups(suggested)
                st.markdown(
                    "**Suggested groups** (pairs confused at least 10% of the time, joined): "
                    + "; ".join(", ".join(g) for g in suggested)
                )
                st.button(
                    "Use these groups in the merge preset", key="accept_groups", on_click=_accept_groups, args=(text,)
                )
            else:
                st.caption(
                    "No pair is confused often enough (10% of the time, with at least 5 samples per class) to suggest a group."
                )
            st.caption(
                "The 'from confusion' preset builds a whole lens from this data: (1 − α)·identity + α·confusion, rows normalised."
            )
        with right:
            st.markdown(f"**Where the current lens moves target mass** (preset: {st.session_state.get('preset', '')})")
            pairs = lens_pairs(lens, names, top=8)
            if len(pairs):
                st.dataframe(pairs, hide_index=True, width="stretch", key="lens_pairs")
            else:
                st.caption("Nowhere: this lens is the identity, so the lensed loss is cross-entropy.")
