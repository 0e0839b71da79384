"""Lens section: presets, the K×K grid editor, row-sum checks, import/export, share link."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
import torch

from lensdash.analysis import confused_pairs, lens_pairs, suggest_groups
from lensdash.errors import LensdashError, LensError
from lensdash.figures import lens_groups
from lensdash.io import lens_to_bytes, read_lens
from lensdash.lens import ROW_SUM_ATOL, Lens, normalize_lens
from lensdash.presets import PRESETS, build_preset, format_groups, parse_groups
from lensdash.sanitize import markdown_text
from lensdash.ui import state
from lensdash.ui.cache import lens_digest, session_memo
from lensdash.ui.config import reader_limits
from lensdash.ui.data import Dataset, LensInputs, confusion_of, soft_confusion_of
from lensdash.ui.downloads import lens_csv
from lensdash.ui.hierarchy import hierarchy_lens_controls, soft_lens_beta, usable_hierarchy

GRID_KEY = "lens_grid"
#: Largest K edited as a whole grid; above it, a sub-grid of chosen classes (a 1,000² grid cannot be shown).
MAX_GRID_K = 40
#: Widget key of the sub-grid's group picker.
SUBGRID_GROUP = "subgrid_group"
#: The pinned, read-only first column of the grid (a class could be named like anything else).
LABEL_COLUMN = "true label ↓ / target →"
#: Largest K whose lens is put into the page link (K² numbers must fit a URL).
MAX_SHARE_K = 12
#: Longest lens text read from a link (K ≤ 12: 144 numbers of at most 10 characters).
MAX_LINK_CHARS = 2_000
#: Key of the lenses-from-data expander (open: its tables are drawn).
DATA_LENSES_OPEN = "data_lenses_open"
#: Samples every class of a suggested group needs: with ~10 per class, one confusion more or less is a 10% rate.
SUGGEST_MIN_SAMPLES = 30


def label_column(names: tuple[str, ...]) -> str:
    """The grid's pinned label column: :data:`LABEL_COLUMN`, made distinct from every class name.

    >>> label_column(("cat", LABEL_COLUMN)) == LABEL_COLUMN + " "
    True
    """
    column = LABEL_COLUMN
    while column in names:
        column += " "
    return column


def _confusion(inputs: LensInputs, soft: bool) -> torch.Tensor:
    return soft_confusion_of(inputs) if soft else confusion_of(inputs)


def suggested_groups(inputs: LensInputs) -> list[list[str]]:
    """The groups the data suggests (:func:`~lensdash.analysis.suggest_groups`, K² work at K = 1,000): once per data,
    kept in the session by its digest, for the preset's text, the offer under it and the lenses-from-data panel."""
    return session_memo(
        "suggested_groups",
        inputs.digest,
        lambda: suggest_groups(confusion_of(inputs), inputs.class_names, min_samples=SUGGEST_MIN_SAMPLES),
    )


def grid_key() -> str:
    """The grid's widget key; a new base gets a new key so the browser drops its old edits."""
    return state.versioned(GRID_KEY, state.LENS_VERSION)


def _set_base(matrix: np.ndarray) -> None:
    state.drop(grid_key())
    state.put(state.LENS_BASE, matrix)
    state.bump(state.LENS_VERSION)


def apply_preset(inputs: LensInputs) -> None:
    """Callback of every preset widget: rebuild the lens over the data's classes from the preset and its settings."""
    names = inputs.class_names
    preset = state.get(state.PRESET)
    try:
        groups = parse_groups(state.get(state.GROUPS) or "", names)
        soft = preset == "hierarchy soft labels"
        tree = usable_hierarchy(names) if soft else None
        lens = build_preset(
            preset,
            names,
            groups=groups,
            epsilon=state.get(state.EPSILON),
            beta=soft_lens_beta(names, tree if tree is not None else [list(g) for g in groups]) if soft else None,
            alpha=state.get(state.ALPHA),
            hierarchy=tree,
            confusion=_confusion(inputs, state.get(state.CONFUSION_KIND) == "soft")
            if preset == "from confusion"
            else None,
        )
    except LensdashError as exc:
        state.put(state.LENS_ERROR, str(exc))
        return
    state.drop(state.LENS_ERROR)
    _set_base(lens.matrix.numpy())


def _normalise() -> None:
    try:
        _set_base(normalize_lens(state.lens_current()).numpy())
        state.drop(state.LENS_ERROR)
    except LensError as exc:
        state.put(state.LENS_ERROR, str(exc))


def _init_for(dataset: Dataset) -> None:
    """First run for these classes: a link's lens if it fits, else the identity (the suggested groups are offered)."""
    names = dataset.predictions.class_names
    state.put(state.LENS_CLASSES, names)
    state.put(state.GROUPS, format_groups(suggested_groups(dataset.lens_inputs)))
    state.put(state.PRESET, "identity")
    state.init_widgets(state.EPSILON, state.BETA, state.ALPHA, state.CONFUSION_KIND)
    try:
        shared = _lens_from_query(names)
    except LensdashError as exc:
        apply_preset(dataset.lens_inputs)
        # Said after the preset is applied (which clears the lens message), so a bad link is never ignored silently.
        state.put(state.LENS_ERROR, f"{exc} Using the '{state.get(state.PRESET)}' preset instead.")
        return
    if shared is not None:
        linked = st.query_params.get("preset")
        state.put(state.PRESET, linked if linked in PRESETS else "merge groups")
        _set_base(shared)
        state.put(state.LENS_INFO, "The lens was loaded from the page link.")
        return
    apply_preset(dataset.lens_inputs)


def _lens_from_query(names: tuple[str, ...]) -> np.ndarray | None:
    """The lens in the page link (``?lens=r1c1,r1c2;r2c1,...``), or None without one.

    Raises:
        LensError: the link's lens is malformed or does not fit ``names``.
    """
    text = st.query_params.get("lens")
    if not text:
        return None
    where = "the lens in the page link"
    if len(text) > MAX_LINK_CHARS:
        raise LensError.build(
            f"at most {MAX_LINK_CHARS:,} characters", f"{len(text):,}", where=where, fix="Share the lens file instead."
        )
    try:
        rows = [[float(v) for v in row.split(",")] for row in text.split(";")]
    except ValueError:
        raise LensError.build(
            "rows of comma-separated numbers separated by ';'",
            f"'{text[:40]}{'…' if len(text) > 40 else ''}'",
            where=where,
            fix="Copy the whole link again, or remove 'lens=' from it.",
        ) from None
    k = len(names)
    widths = sorted({len(row) for row in rows})
    if len(rows) != k or widths != [k]:
        raise LensError.build(
            f"a {k}×{k} lens for the {k} classes of this data",
            f"{len(rows)} rows of {' or '.join(map(str, widths[:3]))} numbers",
            where=where,
            fix="Open the link with the data it was made for, or remove 'lens=' from it.",
        )
    matrix = np.asarray(rows, dtype=float)
    try:
        Lens(matrix, names)  # rows in [0, 1] summing to 1, else a LensError that says which row
    except LensError as exc:
        raise LensError(f"{where}: {exc}") from None
    return matrix


def _share(matrix: np.ndarray) -> None:
    st.query_params["lens"] = ";".join(",".join(f"{v:.4g}" for v in row) for row in matrix)
    st.query_params["preset"] = state.get(state.PRESET) or ""


def _import_lens(class_names: tuple[str, ...]) -> None:
    upload = state.get(state.UPLOAD_LENS)
    if upload is None:
        return
    try:
        upload.seek(0)
        lens, notes = read_lens(upload, class_names, **reader_limits(read_lens))
    except LensdashError as exc:
        state.put(state.LENS_ERROR, str(exc))
        return
    _set_base(lens.matrix.numpy())
    state.drop(state.LENS_ERROR)
    state.put(state.LENS_INFO, " ".join([f"Lens imported from {upload.name}.", *notes]))


def lens_section(dataset: Dataset) -> Lens | None:
    """Draw the lens editor; return the current valid lens, or None (with the reason shown)."""
    names = dataset.predictions.class_names
    if state.get(state.LENS_CLASSES) != names or not state.has(state.LENS_BASE):
        _init_for(dataset)
    k = len(names)
    # Callbacks get only the small inputs they need (names, two K×K matrices), never the data itself: a widget keeps
    # its callback's arguments for as long as the session's state lives, after the session's data has been released.
    rebuild: dict[str, Any] = {"on_change": apply_preset, "args": (dataset.lens_inputs,)}

    left, right = st.columns([1, 3], gap="large")
    with left:
        st.selectbox("Preset", PRESETS, key=state.PRESET, help="Rebuilds the grid; edit cells afterwards.", **rebuild)
        preset = state.get(state.PRESET)
        _offer_suggestion(dataset.lens_inputs)
        typed_tree = preset == "hierarchy soft labels" and usable_hierarchy(names) is None
        if preset == "merge groups" or typed_tree:
            st.text_area(
                "Groups of interchangeable classes (one per line, comma-separated)",
                key=state.GROUPS,
                height=110,
                help="Suggested from the data's most confused pairs. Every class in a group gets a uniform target "
                'over the group. Quote a name that holds a comma ("a, b"); class numbers and ranges (0-4, 7) work too.',
                **rebuild,
            )
        if preset == "label smoothing":
            st.slider("ε (smoothing mass)", 0.0, 1.0, step=0.01, key=state.EPSILON, **rebuild)
        hierarchy_lens_controls(names, preset, rebuild)
        if preset == "from confusion":
            st.radio(
                "Confusion",
                ["soft", "counts"],
                key=state.CONFUSION_KIND,
                horizontal=True,
                help="soft: mean predicted probability per true class; counts: argmax confusion matrix.",
                **rebuild,
            )
            st.slider("α (weight of the confusion; 0 = identity)", 0.0, 1.0, step=0.05, key=state.ALPHA, **rebuild)
        st.button("Normalise rows", key="normalise", on_click=_normalise, help="Divide each row by its sum.")
        st.file_uploader(
            "Import a lens (CSV, JSON, .pt)",
            type=["csv", "json", "pt"],
            key=state.UPLOAD_LENS,
            on_change=_import_lens,
            args=(names,),
        )
    with right:
        matrix = _whole_grid(names) if k <= MAX_GRID_K else _sub_grid(names)
    state.put(state.LENS_CURRENT, matrix)
    if state.get(state.LENS_ERROR):
        st.error(markdown_text(state.get(state.LENS_ERROR)))
    if state.get(state.LENS_INFO):
        st.info(markdown_text(state.get(state.LENS_INFO)))
        state.drop(state.LENS_INFO)
    sums = matrix.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1) > ROW_SUM_ATOL)
    try:
        lens = Lens(matrix, names)
    except LensError as exc:
        detail = ", ".join(f"{markdown_text(names[i])} ({sums[i]:.3f})" for i in off[:8])
        st.error(
            markdown_text(str(exc))
            + (f" Rows off: {detail}{'…' if len(off) > 8 else ''}. Use **Normalise rows**." if len(off) else "")
        )
        return None
    st.caption(f"All {k} rows sum to 1 (within {ROW_SUM_ATOL:g}).")
    with st.expander("Export and share this lens"):
        c1, c2, c3 = st.columns(3)
        # Files are made on click (a 100-class lens costs ~10 ms to format), and a download does not rerun the page.
        # Each file gets the grid's own matrix (kept in the session anyway), not the lens's copy of it: a download
        # button keeps its callable until the next run, and a K×K float64 copy is 8 MB at K = 1,000.
        c1.download_button(
            "Lens as CSV",
            partial(_lens_file, matrix, names, "csv"),
            "lens.csv",
            "text/csv",
            key="export_csv",
            on_click="ignore",
        )
        c2.download_button(
            "Lens as JSON",
            partial(_lens_file, matrix, names, "json"),
            "lens.json",
            "application/json",
            key="export_json",
            on_click="ignore",
        )
        c3.download_button(
            "Lens for torch (.pt)",
            partial(_lens_file, matrix, names, "pt"),
            "lens.pt",
            key="export_pt",
            on_click="ignore",
        )
        if k <= MAX_SHARE_K:
            st.button("Put this lens in the page link", key="share", on_click=_share, args=(matrix,))
            st.caption("The address bar then holds a link that opens the app with this lens.")
        else:
            st.caption(
                f"A {k}×{k} lens is too large for a link (at most {MAX_SHARE_K} classes); share the lens file instead."
            )
    return lens


def _lens_file(matrix: np.ndarray, names: tuple[str, ...], fmt: str) -> bytes:
    """The lens of the grid's ``matrix`` as a file (``'csv'``, ``'json'`` or ``'pt'``), made when downloaded."""
    lens = Lens(matrix, names)
    return lens_csv(lens) if fmt == "csv" else lens_to_bytes(lens, fmt)


def _whole_grid(names: tuple[str, ...]) -> np.ndarray:
    """The K×K grid editor (small K); returns the edited matrix."""
    k = len(names)
    labels = label_column(names)
    base = pd.DataFrame(state.get(state.LENS_BASE), columns=list(names))
    base.insert(0, labels, list(names))
    config = {
        c: st.column_config.NumberColumn(c, min_value=0.0, max_value=1.0, step=0.001, format="%.3f") for c in names
    }
    config[labels] = st.column_config.TextColumn(labels, pinned=True, disabled=True, width="small")
    st.caption(
        "Row = true label; the row is the target distribution the loss uses for it (rows sum to 1). "
        "Double-click a cell to edit."
    )
    state.put(state.LENS_GRID_KEY, grid_key())
    edited = st.data_editor(
        base, key=grid_key(), column_config=config, hide_index=True, height=min(38 + 35 * k, 560), width="stretch"
    )
    return edited[list(names)].to_numpy(dtype=float, na_value=0.0)


def _commit_sub_grid() -> None:
    """Before the sub-grid shows other classes: the edits so far become the base, and the editor starts afresh."""
    current = state.lens_current()
    if current is not None and current.shape == np.shape(state.get(state.LENS_BASE)):
        state.drop(grid_key())
        state.put(state.LENS_BASE, current)
        state.bump(state.LENS_VERSION)


def _edit_groups(names: tuple[str, ...]) -> dict[str, list[str]]:
    """Groups offered to the sub-grid: the hierarchy's at level 1, else the current lens's blocks (2+ classes)."""
    tree = usable_hierarchy(names)
    if tree is not None:
        return {f"{g[0]}… ({len(g)})" if len(g) > 1 else g[0]: list(g) for g in tree.groups_at(1, names)}
    base = state.get(state.LENS_BASE)
    ids = lens_groups(base) if base is not None else np.arange(len(names))
    members: dict[int, list[str]] = {}
    for g, n in zip(ids.tolist(), names):
        members.setdefault(g, []).append(n)
    return {f"{m[0]} +{len(m) - 1}": m for m in members.values() if len(m) > 1}


def _pick_group(names: tuple[str, ...]) -> None:
    groups = _edit_groups(names)
    chosen = groups.get(st.session_state.get(SUBGRID_GROUP) or "")
    if chosen:
        _commit_sub_grid()
        st.session_state[state.SUBGRID_CLASSES] = chosen[:MAX_GRID_K]


def _sub_grid(names: tuple[str, ...]) -> np.ndarray:
    """A focused sub-grid of chosen classes (large K): edits go into the lens, the rest of the lens is kept."""
    base = np.asarray(state.get(state.LENS_BASE), dtype=float)
    index = {n: i for i, n in enumerate(names)}
    if not st.session_state.get(state.SUBGRID_CLASSES):
        groups = _edit_groups(names)
        st.session_state[state.SUBGRID_CLASSES] = (
            next(iter(groups.values()))[:MAX_GRID_K] if groups else list(names[: min(8, len(names))])
        )
    k = len(names)
    st.caption(
        f"A {k:,}×{k:,} lens is edited a sub-grid at a time: pick classes (or a group); their rows and columns show "
        "below, and the rest of the lens is kept. 'rest of row' is the row's mass on the other classes."
    )
    c1, c2 = st.columns([3, 2])
    c1.multiselect(
        "Classes to edit",
        list(names),
        key=state.SUBGRID_CLASSES,
        max_selections=MAX_GRID_K,
        on_change=_commit_sub_grid,
        placeholder="Type to search class names",
    )
    groups = _edit_groups(names)
    if groups:
        c2.selectbox(
            "Or edit a group",
            list(groups),
            index=None,
            key=SUBGRID_GROUP,
            on_change=_pick_group,
            args=(names,),
            placeholder="Choose a group",
        )
    chosen = [c for c in st.session_state.get(state.SUBGRID_CLASSES, []) if c in index]
    if not chosen:
        return base
    idx = np.array([index[c] for c in chosen], dtype=np.int64)
    labels = label_column(tuple(chosen))
    rest = label_column((*chosen, labels, "rest of row"))
    rest = "rest of row" if "rest of row" not in chosen else rest
    frame = pd.DataFrame(base[np.ix_(idx, idx)], columns=chosen)
    frame.insert(0, labels, chosen)
    frame[rest] = base[idx].sum(axis=1) - frame[chosen].sum(axis=1).to_numpy()
    config = {
        c: st.column_config.NumberColumn(c, min_value=0.0, max_value=1.0, step=0.001, format="%.3f") for c in chosen
    }
    config[labels] = st.column_config.TextColumn(labels, pinned=True, disabled=True, width="small")
    config[rest] = st.column_config.NumberColumn(rest, disabled=True, format="%.3f")
    key = f"{grid_key()}_sub"
    state.put(state.LENS_GRID_KEY, key)
    edited = st.data_editor(
        frame, key=key, column_config=config, hide_index=True, height=min(38 + 35 * len(chosen), 560), width="stretch"
    )
    block = edited[chosen].to_numpy(dtype=float, na_value=0.0)
    if np.array_equal(block, base[np.ix_(idx, idx)]):
        return base  # no edit: the lens is its base, not a copy of it (8 MB at K = 1,000)
    matrix = base.copy()
    matrix[np.ix_(idx, idx)] = block
    return matrix


def _offer_suggestion(inputs: LensInputs) -> None:
    """Under the preset: the data's suggested groups as a one-click option while the lens is the identity."""
    if state.get(state.PRESET) != "identity":
        return
    suggested = suggested_groups(inputs)
    if not suggested:
        st.caption(
            f"No groups to suggest: none of this data's pairs is confused 10% of the time among classes with at least "
            f"{SUGGEST_MIN_SAMPLES} samples each."
        )
        return
    shown = "; ".join(", ".join(markdown_text(n) for n in g) for g in suggested[:3])
    st.caption(
        f"Suggested from this data's most confused pairs (≥ 10% of the time, classes with ≥ {SUGGEST_MIN_SAMPLES} "
        f"samples): {shown}{' …' if len(suggested) > 3 else ''}"
    )
    st.button(
        "Merge the suggested groups",
        key="suggest_groups",
        on_click=_accept_groups,
        args=(format_groups(suggested), inputs),
        help="Switches to the merge-groups preset with these groups; edit them there.",
    )


def _accept_groups(groups: str, inputs: LensInputs) -> None:
    state.put(state.GROUPS, groups)
    state.put(state.PRESET, "merge groups")
    apply_preset(inputs)


def data_lenses_section(dataset: Dataset, lens: Lens) -> None:
    """Lenses from data: the most confused pairs, suggested groups to accept, and where the current lens moves mass.

    Drawn only while its expander is open (it reruns the page when opened): its tables cost K² work at K = 1,000,
    and where the lens moves mass changes with every lens edit.
    """
    names = dataset.predictions.class_names
    counts = dataset.baseline.confusion
    panel = st.expander(
        "Lenses from this data: confused pairs and suggested groups", key=DATA_LENSES_OPEN, on_change="rerun"
    )
    if not panel.open:
        return
    with panel:
        left, right = st.columns(2)
        with left:
            st.markdown("**Most mutually confused pairs** (rates of the argmax confusion matrix, row = true class)")
            # Both depend on the data alone: once per dataset, not on every lens edit.
            pairs_of_data = session_memo("confused_pairs", dataset.digest, lambda: confused_pairs(counts, names, top=8))
            suggested = suggested_groups(dataset.lens_inputs)
            st.dataframe(pairs_of_data, hide_index=True, width="stretch", key="confused_pairs")
            if suggested:
                text = format_groups(suggested)
                st.markdown(
                    "**Suggested groups** (pairs confused at least 10% of the time, joined): "
                    + "; ".join(", ".join(markdown_text(n) for n in g) for g in suggested)
                )
                st.button(
                    "Use these groups in the merge preset",
                    key="accept_groups",
                    on_click=_accept_groups,
                    args=(text, dataset.lens_inputs),
                )
            else:
                st.caption(
                    f"No pair is confused often enough (10% of the time, with at least {SUGGEST_MIN_SAMPLES} samples "
                    "per class) to suggest a group."
                )
            st.caption(
                "The 'from confusion' preset builds a whole lens from this data: (1 − α)·identity + α·confusion, "
                "rows normalised."
            )
        with right:
            st.markdown(f"**Where the current lens moves target mass** (preset: {state.get(state.PRESET)})")
            pairs = session_memo("lens_pairs", lens_digest(lens), lambda: lens_pairs(lens, names, top=8))
            if len(pairs):
                st.dataframe(pairs, hide_index=True, width="stretch", key="lens_pairs")
            else:
                st.caption("Nowhere: this lens is the identity, so the lensed loss is cross-entropy.")
