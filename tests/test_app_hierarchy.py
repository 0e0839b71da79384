"""Class hierarchies and many classes in the page, through Streamlit's AppTest (no browser)."""

import io
import math

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import lensdash as ld
from lensdash.examples import example_bytes

pytestmark = pytest.mark.filterwarnings("ignore")

CIFAR = ld.read_hierarchy(example_bytes("cifar100_hierarchy.csv"))


def check(at):
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def predictions_csv(names, n, seed=0, groups=None):
    """Logits of a classifier that is right most of the time and, when wrong, mostly within the true group."""
    rng = np.random.default_rng(seed)
    k = len(names)
    labels = rng.integers(0, k, n)
    logits = rng.normal(0.0, 1.0, (n, k)).astype(np.float32)
    logits[np.arange(n), labels] += 3.0
    if groups is not None:
        members: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)
        for row in range(0, n, 3):
            mates = members[groups[labels[row]]]
            logits[row, mates[rng.integers(len(mates))]] += 3.5
    frame = pd.DataFrame(np.round(logits, 3), columns=list(names))
    frame["label"] = [names[i] for i in labels]
    out = io.StringIO()
    frame.to_csv(out, index=False)
    return out.getvalue().encode()


def three_level_tree(k):
    """A 3-level tree over k classes: 10 top groups, 10 middle groups each, k / 100 classes each."""
    lines = ["top,middle,class"]
    names = [f"class_{i:04d}" for i in range(k)]
    for i, name in enumerate(names):
        lines.append(f"t{i * 10 // k},t{i * 10 // k}_m{(i * 100 // k) % 10},{name}")
    return names, ("\n".join(lines) + "\n").encode()


def new_app():
    st.cache_data.clear()
    at = AppTest.from_file("../app.py", default_timeout=240)
    at.session_state["confusion_open"] = True  # the Results tab's confusion matrix is drawn while its expander is open
    return check(at.run())


def upload(at, name, data, key=None):
    key = key or f"upload_predictions_{at.session_state['upload_version']}"
    at.file_uploader(key=key).set_value((name, data, "text/csv"))
    return check(at.run())


def open_tab(at, label):
    at.session_state["view"] = label
    return check(at.run())


@pytest.fixture(scope="module")
def cifar_app():
    names = list(CIFAR.leaves)
    groups = CIFAR.ancestor_at(1, names)
    data = predictions_csv(names, 3000, groups=list(groups))
    at = new_app()
    upload(at, "cifar100.csv", data)
    upload(at, "cifar100_hierarchy.csv", example_bytes("cifar100_hierarchy.csv"), key="upload_hierarchy")
    return at, ld.read_predictions(data)


def test_hierarchy_metrics_panel_equals_the_library(cifar_app):
    at, preds = cifar_app
    expected = ld.hierarchy_metrics(preds.logits, preds.labels, CIFAR, preds.class_names)
    assert float(metric(at, "Mistake severity")) == pytest.approx(expected["mistake_severity"], abs=1e-3)
    assert float(metric(at, "hdist@5")) == pytest.approx(expected["hdist@5"], abs=1e-3)
    assert metric(at, "Cost-aware top-1") == f"{expected['crm_top1_accuracy']:.1%}"
    assert metric(at, "Level 1 acc.") == f"{expected['accuracy@level1']:.1%}"


def test_mass_kept_sets_beta_of_the_soft_hierarchy_lens(cifar_app):
    at, preds = cifar_app
    at.selectbox(key="preset").set_value("hierarchy soft labels")
    check(at.run())
    lens = at.session_state["lens_current"]
    assert float(np.diagonal(lens).mean()) == pytest.approx(0.5, abs=1e-6)  # the default, at K = 100
    at.slider(key="mass_kept").set_value(0.8)
    check(at.run())
    d = CIFAR.distances(preds.class_names)
    beta = ld.beta_for_mass(d, 0.8)
    assert at.session_state["soft_beta"] == pytest.approx(beta)
    np.testing.assert_allclose(
        at.session_state["lens_current"], ld.hierarchy_lens(preds.class_names, CIFAR, beta).matrix.numpy(), atol=1e-9
    )
    expected = ld.lensed_cross_entropy(preds.logits, preds.labels, ld.hierarchy_lens(preds.class_names, CIFAR, beta))
    assert float(metric(at, "Lensed loss")) == pytest.approx(float(expected), abs=1e-4)
    at.radio(key="beta_mode").set_value("beta")
    check(at.run())
    at.slider(key="beta").set_value(12.0)
    check(at.run())
    np.testing.assert_allclose(
        at.session_state["lens_current"], ld.hierarchy_lens(preds.class_names, CIFAR, 12.0).matrix.numpy(), atol=1e-9
    )


def test_merge_at_a_level_fills_the_groups(cifar_app):
    at, preds = cifar_app
    at.selectbox(key="preset").set_value("merge groups")
    check(at.run())
    at.selectbox(key="hierarchy_level").set_value(1)
    at.button(key="merge_level").click()
    check(at.run())
    expected = ld.merge_lens(preds.class_names, [list(g) for g in CIFAR.groups_at(1, preds.class_names)])
    np.testing.assert_allclose(at.session_state["lens_current"], expected.matrix.numpy())


def test_missing_classes_are_named_with_a_count():
    at = new_app()  # the demo's 10 animal classes are not CIFAR-100's 100 ("automobile" is not among them)
    upload(at, "cifar100_hierarchy.csv", example_bytes("cifar100_hierarchy.csv"), key="upload_hierarchy")
    warning = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "of 10 classes are not in the hierarchy" in warning and "'airplane'" in warning
    assert not any(m.label == "Mistake severity" for m in at.metric)


@pytest.mark.slow
def test_k1000_upload_hierarchy_rollup_and_sub_grid_edit():
    names, tree_bytes = three_level_tree(1000)
    tree = ld.read_hierarchy(tree_bytes)
    data = predictions_csv(names, 3000, seed=2, groups=list(tree.ancestor_at(2, names)))
    at = new_app()
    upload(at, "k1000.csv", data)
    assert metric(at, "Samples × classes") == "3,000 × 1,000"
    upload(at, "tree.csv", tree_bytes, key="upload_hierarchy")
    assert any(m.label == "Mistake severity" for m in at.metric)
    # The 1,000² grid is not drawn: a sub-grid of chosen classes is.
    at.selectbox(key="preset").set_value("identity")
    check(at.run())
    before = float(metric(at, "Lensed loss"))
    assert at.session_state["lens_grid_key"].endswith("_sub")
    at.multiselect(key="subgrid_classes").set_value(["class_0000", "class_0001", "class_0002"])
    check(at.run())
    at.session_state[at.session_state["lens_grid_key"]] = {
        "edited_rows": {0: {"class_0000": 0.5, "class_0001": 0.5}},
        "added_rows": [],
        "deleted_rows": [],
    }
    check(at.run())
    lens = at.session_state["lens_current"]
    assert lens.shape == (1000, 1000)
    assert (lens[0, 0], lens[0, 1]) == (0.5, 0.5)
    np.testing.assert_array_equal(lens[1:], np.eye(1000)[1:])  # the rest of the lens is kept
    preds = ld.read_predictions(data)
    expected = ld.lensed_cross_entropy(preds.logits, preds.labels, ld.Lens(lens, preds.class_names))
    after = float(metric(at, "Lensed loss"))
    assert after != before and after == pytest.approx(float(expected), abs=1e-4)
    # Roll-ups to a hierarchy level, in the gradients and the confusion matrix.
    open_tab(at, "Gradients")
    at.selectbox(key="gradients_rollup_tree").set_value("hierarchy level 1")
    check(at.run())
    charts = {c.proto.id: c for c in at.get("plotly_chart")}
    assert len(charts) >= 3
    open_tab(at, "Results")
    at.selectbox(key="confusion_rollup_tree").set_value("hierarchy level 2")
    check(at.run())
    assert not at.error, [e.value for e in at.error]
    assert not math.isnan(after)


def chart(at, key):
    import json

    element = next(c for c in at.get("plotly_chart") if c.proto.id.endswith(key) or key in c.proto.id)
    return json.loads(element.proto.spec)


def test_zoom_shows_the_chosen_classes_in_hierarchy_order(cifar_app):
    at, _ = cifar_app
    at.multiselect(key="confusion_zoom").set_value(["whale", "beaver", "tank"])
    check(at.run())
    figure = chart(at, "confusion")
    heatmap = figure["data"][0]
    assert heatmap["x"] == ["beaver", "whale", "tank"]  # the hierarchy's order: aquatic mammals first
    at.multiselect(key="confusion_zoom").set_value([])
    check(at.run())


def test_a_malformed_hierarchy_file_says_which_line():
    at = new_app()
    upload(at, "loop.csv", b"parent,child\na,b\nb,a\n", key="upload_hierarchy")
    errors = " ".join(e.value for e in at.error).replace("\\", "")
    assert "cycle" in errors.lower() or "line" in errors.lower(), errors
    assert not any(m.label == "Mistake severity" for m in at.metric)
