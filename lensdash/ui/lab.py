"""Training lab: train a small model with and without a lens, watch it learn, compare what it predicts."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from lensdash import figures
from lensdash.errors import LensdashError
from lensdash.io import Predictions
from lensdash.lens import Lens, merge_lens, smoothing_lens
from lensdash.presets import parse_groups
from lensdash.sanitize import markdown_text
from lensdash.training import (
    RUNS,
    Problem,
    Run,
    TrainConfig,
    blobs,
    confusion_of,
    digits,
    group_mass,
    probability_grid,
    train_pair,
)
from lensdash.ui import state
from lensdash.ui.config import CACHE_MAX_ENTRIES, CACHE_TTL_SECONDS
from lensdash.ui.data import Dataset, use_dataset

LAB_LENSES = ("merge groups", "label smoothing", "the page's lens")
DEFAULT_GROUPS = {"blobs": "blob 0, blob 1", "digits": "3, 5, 8\n4, 9"}
RUN_LABELS = {"unlensed": "Unlensed (cross-entropy)", "lensed": "Lensed"}


@st.cache_data(show_spinner=False, max_entries=CACHE_MAX_ENTRIES, ttl=CACHE_TTL_SECONDS)
def cached_problem(name: str, num_classes: int, separation: float, seed: int) -> Problem:
    """The lab's problem: made from these arguments alone (no user data), so it is shared between sessions."""
    if name == "digits":
        return digits(seed=seed)
    return blobs(num_classes, overlapping=[(0, 1)], separation=separation, seed=seed)


def _lab_lens(problem: Problem, choice: str, page_lens: Lens) -> Lens:
    names = problem.class_names
    if choice == "the page's lens":
        if page_lens.num_classes != problem.num_classes:
            raise LensdashError.build(
                f"the page's lens over {problem.num_classes} classes",
                f"one over {page_lens.num_classes}",
                where="training lab",
                fix="Choose 'merge groups' or 'label smoothing' for the lab, or load data with the lab's classes.",
            )
        return Lens(page_lens.matrix, names)
    if choice == "label smoothing":
        return smoothing_lens(names, state.get(state.LAB_EPSILON))
    kind = state.get(state.LAB_PROBLEM)
    groups = state.get(state.lab_groups_key(kind))
    return merge_lens(names, parse_groups(DEFAULT_GROUPS[kind] if groups is None else groups, names))


def _settings() -> tuple[Problem, TrainConfig, str]:
    state.init_widgets(
        state.LAB_PROBLEM, state.LAB_BLOBS, state.LAB_SEPARATION, state.LAB_EPOCHS, state.LAB_LR, state.LAB_HIDDEN
    )
    state.init_widgets(state.LAB_SEED, state.LAB_EPSILON)
    c1, c2, c3, c4 = st.columns(4)
    kind = c1.radio(
        "Problem",
        ["blobs", "digits"],
        key=state.LAB_PROBLEM,
        horizontal=True,
        format_func={"blobs": "2-D Gaussian blobs", "digits": "handwritten digits (scikit-learn)"}.get,
    )
    if kind == "blobs":
        k = c1.slider("Blobs", 3, 8, key=state.LAB_BLOBS)
        separation = c1.slider(
            "Distance between blob 0 and blob 1 (0 = the same blob)", 0.0, 4.0, step=0.1, key=state.LAB_SEPARATION
        )
    else:
        k, separation = 10, 0.0
        c1.caption("1,797 8×8 images, 10 classes, shipped with scikit-learn; 25% held out for testing.")
    epochs = c2.slider("Epochs", 5, 150, key=state.LAB_EPOCHS)
    lr = c2.select_slider("Learning rate", [0.001, 0.003, 0.01, 0.03, 0.1], key=state.LAB_LR)
    hidden = c3.select_slider("Hidden units", [8, 16, 32, 64, 128, 256], key=state.LAB_HIDDEN)
    seed = int(c3.number_input("Seed", 0, 10_000, key=state.LAB_SEED))
    choice = c4.radio("Lens for the lab", LAB_LENSES, key=state.LAB_LENS)
    if choice == "merge groups":
        groups_key = state.lab_groups_key(kind)
        if not state.has(groups_key):
            state.put(groups_key, DEFAULT_GROUPS[kind])
        c4.text_area("Groups (one per line)", key=groups_key, height=80)
    elif choice == "label smoothing":
        c4.slider("ε", 0.0, 1.0, step=0.01, key=state.LAB_EPSILON)
    problem = cached_problem(kind, k, separation, seed)
    family = state.get(state.FAMILY)
    return problem, TrainConfig(epochs=epochs, learning_rate=lr, hidden=hidden, seed=seed, family=family), choice


def _curves(runs: dict[str, Run]) -> list:
    history = {RUN_LABELS[name]: run.history for name, run in runs.items()}
    return [
        figures.training_curves(history, "train_loss", "Training loss (each model's own loss)"),
        figures.training_curves(history, "test_accuracy", "Test accuracy (top-1)"),
        figures.training_curves(history, "test_lens_aware_accuracy", "Test lens-aware accuracy"),
    ]


def _train(problem: Problem, lens: Lens, config: TrainConfig) -> None:
    progress = st.progress(0.0, text="Training…")
    live = st.empty()

    def on_epoch(epoch: int, runs: dict[str, Run]) -> None:
        acc = {name: run.history["test_accuracy"][-1] for name, run in runs.items()}
        progress.progress(
            epoch / config.epochs,
            text=f"Epoch {epoch}/{config.epochs}: test accuracy unlensed {acc['unlensed']:.1%}, "
            f"lensed {acc['lensed']:.1%}",
        )
        if epoch % max(1, config.epochs // 10) == 0 or epoch == config.epochs:
            live.plotly_chart(_curves(runs)[1], key=f"lab_live_{epoch}")

    runs = train_pair(problem, lens, config, on_epoch=on_epoch)
    progress.empty()
    live.empty()
    state.put(state.LAB, state.LabResult(runs=runs, problem=problem, lens=lens, config=config))


def _test_logits(run: Run) -> torch.Tensor:
    """A finished run's test logits (every run in a LabResult has them)."""
    if run.test_logits is None:
        raise ValueError(f"the {run.name} run has no test predictions yet")
    return run.test_logits


def _send(lab: state.LabResult, name: str) -> None:
    """Put a model's test predictions on the analysis pages, as if uploaded."""
    problem, run, config = lab["problem"], lab["runs"][name], lab["config"]
    note = (
        f"Test predictions of the {name} model from the training lab "
        f"({problem.name}, {config.family} family, seed {config.seed})."
    )
    preds = Predictions(
        _test_logits(run).detach().clone(),
        problem.y_test.clone(),
        problem.class_names,
        "logits",
        f"training lab: {name} model",
        [note],
    )
    # Keyed by content (Dataset.of digests the logits and labels), not by a counter: two sessions' models never share
    # a result.
    use_dataset(Dataset.of(preds, f"training lab, {name} model"), None)


def _results(lab: state.LabResult) -> None:
    runs, problem, lens = lab["runs"], lab["problem"], lab["lens"]
    st.caption(
        f"{problem.name}: {len(problem.y_train):,} training and {len(problem.y_test):,} test samples; "
        "lens-aware accuracy and group mass use the lab's lens for both models."
    )
    cols = st.columns(2)
    for col, name in zip(cols, RUNS):
        final = runs[name].final()
        with col:
            st.markdown(f"**{RUN_LABELS[name]}**")
            a, b, c = st.columns(3)
            a.metric("Test accuracy", f"{final['test_accuracy']:.1%}")
            b.metric("Test lens-aware accuracy", f"{final['test_lens_aware_accuracy']:.1%}")
            c.metric(
                "Mass on its group",
                f"{final['test_group_mass']:.1%}",
                help="Mean predicted probability on the classes the lens row of the true class covers.",
            )
            if st.button(
                "Analyse these test predictions",
                key=f"lab_send_{name}",
                help="Replaces the data of the other tabs with this model's test logits and labels.",
            ):
                _send(lab, name)
                st.rerun(scope="app")  # the fragment alone would not redraw the analysis
    for col, fig, key in zip(st.columns(3), _curves(runs), ("loss", "accuracy", "lens_accuracy")):
        col.plotly_chart(fig, key=f"lab_curve_{key}")
    if problem.num_features == 2:
        st.subheader("Decision regions and predicted probabilities")
        options = [None, *range(problem.num_classes)]
        show = st.selectbox(
            "Colour the plane by",
            options,
            key=state.LAB_SHOW,
            format_func=lambda c: (
                "predicted class" if c is None else f"predicted probability of {problem.class_names[c]}"
            ),
        )
        points = torch.cat([problem.x_train, problem.x_test]).numpy()
        labels = torch.cat([problem.y_train, problem.y_test]).numpy()
        for col, name in zip(st.columns(2), RUNS):
            xs, ys, probs = probability_grid(runs[name].model, problem.x_train)
            fig = figures.decision_regions(
                xs, ys, probs, points, labels, problem.class_names, RUN_LABELS[name], show=show
            )
            col.plotly_chart(fig, key=f"lab_regions_{name}")
    st.subheader("Test confusion matrices")
    for col, name in zip(st.columns(2), RUNS):
        col.markdown(f"**{RUN_LABELS[name]}**")
        col.plotly_chart(
            figures.confusion_heatmap(confusion_of(runs[name], problem), problem.class_names),
            key=f"lab_confusion_{name}",
        )
    st.subheader("Probability on each class's group")
    support = lens.matrix > 0
    test_logits = {name: _test_logits(runs[name]) for name in RUNS}
    rows = []
    for index, cname in enumerate(problem.class_names):
        mask = problem.y_test == index
        if not mask.any():
            continue
        row: dict[str, object] = {
            "true class": cname,
            "group": ", ".join(n for n, s in zip(problem.class_names, support[index].tolist()) if s),
        }
        for name in RUNS:
            row[RUN_LABELS[name]] = round(
                float(group_mass(test_logits[name][mask], problem.y_test[mask], lens.matrix)), 4
            )
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="lab_group_table")


@st.fragment
def lab_section(page_lens: Lens) -> None:
    """The lab runs as a fragment: its widgets rerun the lab only, not the analysis above."""
    st.caption(
        "Trains the same small network (two hidden layers) from the same seed twice: with cross-entropy and with a "
        "lens, "
        "using the lens family chosen in the sidebar. With the identity lens the two runs are identical."
    )
    problem, config, choice = _settings()
    try:
        lens = _lab_lens(problem, choice, page_lens)
    except LensdashError as exc:
        st.error(markdown_text(str(exc)))
        return
    if st.button("Train both models", key="lab_train", type="primary"):
        _train(problem, lens, config)
    lab = state.lab_result()
    if lab is not None:
        _results(lab)
    else:
        st.info("Choose a problem and a lens, then train both models.")
