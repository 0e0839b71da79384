"""Class hierarchies in the page, and the views that stay readable at K = 100 to 1,000.

* :func:`hierarchy_section`: upload a hierarchy file (any format of :func:`lensdash.read_hierarchy`), kept in the
  session's own state; classes it lacks are named (first few) with a count.
* :func:`hierarchy_lens_controls`, :func:`soft_lens_beta`, :func:`level_groups`: the lens presets' hierarchy inputs
  (merge at a level; soft labels set by the mass kept on the true class or by β).
* :func:`hierarchy_metrics_section`: mistake severity, hdist@k, the cost-aware decision and accuracy per level.
* :func:`class_view`, :func:`confusion_view`: ordering, roll-up, zoom and the shared class subset of the K×K views.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from lensdash import figures
from lensdash.analysis import Analysis
from lensdash.errors import InputError, LensdashError
from lensdash.hierarchy import DEFAULT_MASS_KEPT, Hierarchy, beta_for_mass, default_beta, hierarchy_metrics
from lensdash.io import MAX_HIERARCHY_BYTES, read_hierarchy
from lensdash.lens import hierarchy_distances
from lensdash.presets import format_groups
from lensdash.sanitize import markdown_text
from lensdash.ui import state
from lensdash.ui.cache import session_memo, tensor_digest
from lensdash.ui.config import max_upload_bytes
from lensdash.ui.data import Dataset, LensInputs

#: Most classes shown in one K×K view (the builders' limit; a roll-up or a zoom shows other ones).
MAX_SHOWN = figures.MAX_HEATMAP_LIMIT
NO_ROLLUP = "classes (no roll-up)"
LENS_GROUPS = "the lens's groups"


# ------------------------------------------------------------------------------------------- upload


def _read_upload() -> None:
    """Callback of the hierarchy uploader: read the file once, keep the tree (or why it failed) in the session."""
    upload = st.session_state.get(state.UPLOAD_HIERARCHY)
    if upload is None:
        return
    try:
        limit = min(max_upload_bytes(), MAX_HIERARCHY_BYTES)
        if upload.size > limit:
            raise InputError.build(
                f"a hierarchy file of at most {limit / 1e6:,.0f} MB",
                f"{upload.size / 1e6:,.1f} MB",
                where=upload.name,
                fix="Keep the part of the tree your classes use.",
            )
        upload.seek(0)
        data = upload.read()
        tree = read_hierarchy(data)
    except LensdashError as exc:
        state.put(state.HIERARCHY_ERROR, str(exc))
        return
    state.drop(state.HIERARCHY_ERROR)
    state.put(state.HIERARCHY, (tree, hashlib.blake2b(data, digest_size=20).hexdigest(), upload.name))


def _remove() -> None:
    state.drop(state.HIERARCHY, state.HIERARCHY_ERROR)


def usable_hierarchy(names: tuple[str, ...]) -> Hierarchy | None:
    """The session's hierarchy when every class of the data is in it, else None."""
    loaded = state.hierarchy()
    if loaded is None or loaded[0].missing(names):
        return None
    return loaded[0]


def hierarchy_section(names: tuple[str, ...]) -> Hierarchy | None:
    """Sidebar: upload a class hierarchy; return it when it holds every class of the data."""
    st.sidebar.header("Class hierarchy (optional)")
    st.sidebar.file_uploader(
        "Hierarchy: parent-child pairs, 'superclass,class' rows or nested JSON",
        type=["csv", "tsv", "txt", "json"],
        key=state.UPLOAD_HIERARCHY,
        on_change=_read_upload,
        help="An edge list ('n02084071 n02085374' a line), one row per class with its ancestors root first "
        "('vehicles,road,truck'), or nested JSON. CIFAR-100's mapping is among the example files.",
    )
    if state.get(state.HIERARCHY_ERROR):
        st.sidebar.error(markdown_text(state.get(state.HIERARCHY_ERROR)))
    loaded = state.hierarchy()
    if loaded is None:
        st.sidebar.caption("With a hierarchy: merge lenses at a level, soft hierarchy labels and hierarchical metrics.")
        return None
    tree, _, name = loaded
    st.sidebar.button("Remove the hierarchy", key="remove_hierarchy", on_click=_remove)
    missing = tree.explain_missing(names)
    if missing:
        st.sidebar.warning(
            markdown_text(missing) + " The hierarchy is used once it holds every class: add them to the file "
            "(a line 'parent,class' each) or rename them to match."
        )
        return None
    depth = max(tree.depth[n] for n in names)
    st.sidebar.caption(
        f"**{markdown_text(name)}**: {len(tree):,} nodes, classes {depth} levels below the root, "
        f"{len(tree.groups_at(1, names))} groups at level 1."
    )
    return tree


def levels(tree: Hierarchy, names: tuple[str, ...]) -> list[int]:
    """The levels worth a roll-up or a merge: from the root's children down to just above the deepest class."""
    deepest = max(tree.depth[n] for n in names)
    return list(range(1, max(deepest, 2)))


def level_label(tree: Hierarchy, names: tuple[str, ...], level: int) -> str:
    return f"level {level} ({len(tree.groups_at(level, names))} groups)"


# ------------------------------------------------------------------------------------------- lens inputs


def level_groups(names: tuple[str, ...]) -> list[tuple[str, ...]] | None:
    """The groups of the hierarchy at the chosen level (for the merge preset), or None without a hierarchy."""
    tree = usable_hierarchy(names)
    if tree is None:
        return None
    return tree.groups_at(int(state.get(state.HIERARCHY_LEVEL)), names)


def soft_lens_beta(names: tuple[str, ...], tree: object) -> float:
    """β of the soft hierarchy lens: from the mass kept on the true class (the default control), or as set.

    ``tree`` is a :class:`Hierarchy` or nested groups (typed groups). Without a chosen mass, the default of
    :func:`lensdash.hierarchy.default_beta` (half of each row on the true class; sensible at any K).
    """
    if state.get(state.BETA_MODE) == "beta":
        beta = float(state.get(state.BETA))
    else:
        d = hierarchy_distances(names, tree)
        mass = state.get(state.MASS_KEPT)
        beta = default_beta(d) if mass is None else beta_for_mass(d, float(mass))
    state.put(state.SOFT_BETA, beta)
    return beta


def default_mass(k: int) -> float:
    """The slider's default: :data:`DEFAULT_MASS_KEPT`, or ``1/K + 0.25`` where half is close to uniform."""
    return round(max(DEFAULT_MASS_KEPT, 1.0 / max(k, 1) + 0.25), 2)


def hierarchy_lens_controls(names: tuple[str, ...], preset: str, rebuild: dict) -> None:
    """The preset's hierarchy controls, drawn in the lens section's left column."""
    tree = usable_hierarchy(names)
    if preset == "merge groups" and tree is not None:
        options = levels(tree, names)
        if state.get(state.HIERARCHY_LEVEL) not in options:
            st.session_state[state.HIERARCHY_LEVEL] = options[0]
        st.selectbox(
            "The hierarchy's groups at",
            options,
            format_func=lambda level: level_label(tree, names, level),
            key=state.HIERARCHY_LEVEL,
            help="Level 1 is the root's children (CIFAR-100's 20 superclasses).",
        )
        st.button(
            "Merge the groups at this level",
            key="merge_level",
            on_click=_use_level,
            args=rebuild["args"],
            help="Fills the groups below (which stay editable) and rebuilds the lens.",
        )
    if preset != "hierarchy soft labels":
        return
    st.caption(
        "Distances from the uploaded hierarchy." if tree is not None else "Distances from the groups typed above."
    )
    state.init_widgets(state.BETA_MODE)
    st.radio(
        "Set the softness by",
        ["mass", "beta"],
        format_func={"mass": "mass kept on the true class", "beta": "β"}.get,
        key=state.BETA_MODE,
        horizontal=True,
        **rebuild,
    )
    k = len(names)
    if state.get(state.BETA_MODE) == "mass":
        if state.get(state.MASS_KEPT) is None:
            st.session_state[state.MASS_KEPT] = default_mass(k)
        low = math.ceil((1.0 / k + 0.005) * 100) / 100
        st.slider(
            "Mass kept on the true class (mean over classes)",
            low,
            0.99,
            step=0.01,
            key=state.MASS_KEPT,
            help="Row y of the lens is exp(−β·d(y, j)/d_max), normalised (Bertinetto et al. 2020); β is solved so "
            "that the true class keeps this share of its row on average. The rest goes to the nearest classes first.",
            **rebuild,
        )
        if state.get(state.SOFT_BETA) is not None:
            st.caption(f"β = {state.get(state.SOFT_BETA):.2f} (the paper uses 4–30).")
    else:
        state.init_widgets(state.BETA)
        st.slider("β (sharpness; 0 = uniform, large = identity)", 0.0, 40.0, step=0.1, key=state.BETA, **rebuild)


def _use_level(inputs: LensInputs) -> None:
    from lensdash.ui.lens_editor import apply_preset  # the lens editor imports this module

    groups = level_groups(inputs.class_names)
    if groups is not None:
        state.put(state.GROUPS, format_groups(groups))
    apply_preset(inputs)


# ------------------------------------------------------------------------------------------- metrics

METRIC_LABELS = {
    "mistake_severity": ("Mistake severity", "Mean tree distance between truth and prediction over the mistakes."),
    "crm_top1_accuracy": (
        "Cost-aware top-1",
        "Accuracy when predicting argmin_k Σ_j p_j d(j, k) (Karthik et al. 2021) instead of the argmax.",
    ),
    "crm_mistake_severity": (
        "CRM severity",
        "Mistake severity of the cost-aware decision (CRM: conditional risk minimisation, Karthik et al. 2021).",
    ),
}


def hierarchy_metrics_section(dataset: Dataset, tree: Hierarchy | None) -> dict[str, float] | None:
    """The hierarchical metrics beside the losses, when a hierarchy holding every class is loaded."""
    if tree is None:
        return None
    preds = dataset.predictions
    loaded = state.hierarchy()
    key = (dataset.digest, loaded[1] if loaded else "")
    metrics = session_memo(
        "hierarchy_metrics", key, lambda: hierarchy_metrics(preds.logits, preds.labels, tree, preds.class_names)
    )
    st.markdown("**Hierarchical metrics** (distance d = height of the lowest common ancestor in the hierarchy)")
    hdist = [k for k in metrics if k.startswith("hdist@")]
    per_level = [k for k in metrics if k.startswith("accuracy@level")]
    cols = st.columns(3 + len(hdist) + min(len(per_level), 3))
    i = 0
    for name in ("mistake_severity", "crm_top1_accuracy", "crm_mistake_severity"):
        label, help_text = METRIC_LABELS[name]
        value = metrics[name]
        text = "—" if math.isnan(value) else (f"{value:.1%}" if "accuracy" in name else f"{value:.3f}")
        cols[i].metric(label, text, help=help_text)
        i += 1
    for name in hdist:
        cols[i].metric(
            name,
            f"{metrics[name]:.3f}",
            help="Mean distance between the truth and each of the k most probable classes.",
        )
        i += 1
    for name in per_level[:3]:
        level = name.removeprefix("accuracy@level")
        cols[i].metric(
            f"Level {level} acc.",  # short: up to nine metrics share the row
            f"{metrics[name]:.1%}",
            help=f"Accuracy at level {level}: share of samples whose prediction has the truth's ancestor at this level "
            "(level 1: superclass).",
        )
        i += 1
    if len(per_level) > 3:
        st.caption(
            "Accuracy at deeper levels: "
            + ", ".join(f"level {n.removeprefix('accuracy@level')} {metrics[n]:.1%}" for n in per_level[3:])
        )
    return metrics


# ------------------------------------------------------------------------------------------- K×K views


@dataclass(frozen=True)
class ClassView:
    """What a K×K view shows: the classes (or groups) in display order, and how it was chosen."""

    names: list[str]  #: the rows' names (classes, or groups after a roll-up)
    subset: np.ndarray  #: indices into ``names``, in display order
    groups: list[str] | None  #: one group per class when rolled up, else None
    order: np.ndarray  #: the display order of all K classes

    def matrix(self, values: torch.Tensor | np.ndarray, support: np.ndarray | None = None) -> np.ndarray:
        """``values`` (K×K, rows true class) as this view shows them: rolled up when it is, in display order."""
        m = values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, float)
        if self.groups is None:
            return m
        o = self.order
        return figures.rollup(
            m[np.ix_(o, o)], [self.groups[i] for i in o], support=None if support is None else support[o]
        )[0]


def _lens_group_names(lens_matrix: np.ndarray | None, names: tuple[str, ...]) -> list[str]:
    if lens_matrix is None or lens_matrix.shape != (len(names), len(names)):
        return list(names)
    ids = figures.lens_groups(lens_matrix)
    members: dict[int, list[str]] = {}
    for g, n in zip(ids.tolist(), names):
        members.setdefault(g, []).append(n)
    return [members[g][0] if len(members[g]) == 1 else f"{members[g][0]} +{len(members[g]) - 1}" for g in ids.tolist()]


def class_view(
    prefix: str,
    names: tuple[str, ...],
    weight: np.ndarray,
    *,
    confusion: torch.Tensor,
    lens_matrix: np.ndarray | None,
    tree: Hierarchy | None,
    default_limit: int = figures.MAX_HEATMAP_CLASSES,
) -> ClassView:
    """Controls for ordering, roll-up, class count and zoom of a K×K view; one subset for every panel it feeds.

    ``weight`` (K×K) ranks the classes when only some fit (the gradient difference, the confusion counts).
    """
    k = len(names)
    orders = (["hierarchy"] if tree is not None else []) + ["lens groups", "data's clustering", "class index"]
    rollups = [NO_ROLLUP] + ([f"hierarchy level {lv}" for lv in levels(tree, names)] if tree is not None else [])
    rollups.append(LENS_GROUPS)
    c1, c2, c3, c4 = st.columns([1, 1, 1, 2])
    # Keys that change with the hierarchy, so that loading one switches the order to it (a kept value would stay).
    with_tree = "_tree" if tree is not None else ""
    how = c1.selectbox(
        "Order classes by", orders, key=f"{prefix}_order{with_tree}", help="So that groups show as blocks."
    )
    roll = c2.selectbox(
        "Roll up to", rollups, key=f"{prefix}_rollup{with_tree}", help="Sum (or average) over each group."
    )
    limit = (
        c3.slider("Classes shown", 10, min(MAX_SHOWN, k), min(default_limit, k), key=f"{prefix}_limit")
        if k > 10
        else k  # all of them: nothing to choose
    )
    chosen = c4.multiselect(
        "Zoom to classes",
        list(names),
        key=f"{prefix}_zoom",
        max_selections=MAX_SHOWN,
        placeholder="Type to search class names",
        help="Show only these classes (in the chosen order).",
    )
    if how == "hierarchy" and tree is not None:
        order = figures.class_order(names, hierarchy=tree)
    elif how == "lens groups":
        order = figures.class_order(names, groups=_lens_group_names(lens_matrix, names))
    elif how == "data's clustering":
        order = session_memo(
            "cluster_order",
            tensor_digest(confusion, names=names),
            lambda: figures.class_order(names, confusion=confusion),
        )
    else:
        order = np.arange(k)
    groups: list[str] | None = None
    if roll.startswith("hierarchy level") and tree is not None:
        groups = list(tree.ancestor_at(int(roll.rsplit(" ", 1)[1]), names))
    elif roll == LENS_GROUPS:
        groups = _lens_group_names(lens_matrix, names)
    if groups is not None:
        view = ClassView([], np.arange(0), groups, order)
        rolled, group_names = figures.rollup(np.abs(weight)[np.ix_(order, order)], [groups[i] for i in order])
        subset = figures.pick_classes(rolled, limit=limit)
        return ClassView(group_names, subset, groups, order) if len(group_names) else view
    if chosen:
        position = np.empty(k, dtype=np.int64)
        position[order] = np.arange(k)
        index = {n: i for i, n in enumerate(names)}
        subset = np.array(sorted((index[c] for c in chosen), key=lambda i: position[i]), dtype=np.int64)
        return ClassView(list(names), subset, None, order)
    group_labels = (
        tree.ancestor_at(-1, names)  # the smallest groups: whole blocks fit the limit
        if how == "hierarchy" and tree is not None
        else _lens_group_names(lens_matrix, names)
        if how == "lens groups"
        else None
    )
    subset = figures.pick_classes(weight, limit=limit, groups=group_labels, order=order)
    return ClassView(list(names), subset, None, order)


def confusion_view(analysis: Analysis) -> None:
    """The confusion matrix at any K: ordered, rolled up, zoomed, with its diagonal left out or a log scale."""
    names = analysis.class_names
    tree = usable_hierarchy(names)
    counts = analysis.confusion
    view = class_view(
        "confusion",
        names,
        counts.double().numpy() - np.diag(np.diag(counts.double().numpy())),
        confusion=counts,
        lens_matrix=state.lens_current(),
        tree=tree,
    )
    c1, c2, c3 = st.columns(3)
    normalise = c1.toggle("Row-normalised", value=True, key="confusion_normalised")
    diagonal = not c2.toggle(
        "Leave the diagonal out",
        value=len(names) > 20,
        key="confusion_no_diagonal",
        help="The correct predictions otherwise set the colour scale and hide the confusions.",
    )
    log = c3.toggle("Log colour scale", value=False, key="confusion_log")
    st.plotly_chart(
        figures.confusion_heatmap(
            view.matrix(counts),
            view.names,
            normalize=normalise,
            subset=view.subset,
            diagonal=diagonal,
            log=log,
            title="Confusion matrix" if view.groups is None else "Confusion between groups",
        ),
        key="confusion",
    )
