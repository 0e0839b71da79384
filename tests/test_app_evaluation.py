"""The Evaluation tab, the headline metrics, the identity default and the playground, through Streamlit's AppTest.

The data is an upload built from real models' predictions (tests/models.py: scikit-learn classifiers on its digits),
and every number the page shows is compared with scikit-learn or torchmetrics on the predictions as the app read them.
"""

import base64
import csv
import io
import json
import warnings

import numpy as np
import pytest
import streamlit as st
import torch
import torch.nn.functional as F
from sklearn.metrics import precision_recall_fscore_support, top_k_accuracy_score
from streamlit.testing.v1 import AppTest
from torchmetrics.classification import BinaryCalibrationError, MulticlassCalibrationError

import lensdash as ld
from lensdash.analysis import lens_hits
from lensdash.examples import example_bytes
from lensdash.ui.data import demo_predictions
from tests.models import digits_predictions

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning:torchmetrics.*")

NAMES = [f"digit {d}" for d in range(10)]
GROUPS = [["digit 3", "digit 5", "digit 8"], ["digit 1", "digit 7"], ["digit 4", "digit 9"]]


def digits_csv(model: str) -> bytes:
    preds = digits_predictions()[model]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*NAMES, "label"])
    for row, label in zip(preds.logits.tolist(), preds.labels.tolist()):
        writer.writerow([repr(v) for v in row] + [label])
    return out.getvalue().encode()


def new_session() -> AppTest:
    st.cache_data.clear()
    at = AppTest.from_file("../app.py", default_timeout=90)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def uploaded(model: str) -> tuple[AppTest, ld.Predictions]:
    """A session with the model's digits predictions uploaded, and those predictions as the app reads them."""
    at = new_session()
    data = digits_csv(model)
    at.file_uploader(key=f"upload_predictions_{at.session_state['upload_version']}").set_value(
        (f"digits_{model}.csv", data, "text/csv")
    )
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at, ld.read_predictions(data)


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def open_tab(at: AppTest, label: str) -> AppTest:
    at.session_state["view"] = label
    return run(at)


def metrics(at: AppTest) -> dict[str, str]:
    """Metric label → value; a label shown twice (Accuracy under each diagram) keeps a list."""
    shown: dict = {}
    for m in at.metric:
        shown.setdefault(m.label, []).append(m.value)
    return {k: v[0] if len(v) == 1 else v for k, v in shown.items()}


def frame(at: AppTest, first_columns: list[str]):
    return next(d.value for d in at.dataframe if list(d.value.columns)[: len(first_columns)] == first_columns)


def use_merge_groups(at: AppTest) -> ld.Lens:
    at.selectbox(key="preset").set_value("merge groups").run()
    at.text_area(key="groups").set_value("\n".join(", ".join(g) for g in GROUPS))
    run(at)
    return ld.merge_lens(NAMES, GROUPS)


@pytest.mark.parametrize("model", ["weak", "strong"])
def test_scores_equal_sklearn_and_torchmetrics_on_the_uploaded_predictions(model):
    at, preds = uploaded(model)
    open_tab(at, "Evaluation")
    y, logits = preds.labels.numpy(), preds.logits
    predicted = logits.argmax(dim=1).numpy()
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=range(10), zero_division=0)
    table = frame(at, ["class", "precision", "recall", "f1", "support"])
    assert table["class"].tolist() == NAMES
    np.testing.assert_allclose(table["precision"], precision, atol=1e-12)
    np.testing.assert_allclose(table["recall"], recall, atol=1e-12)
    np.testing.assert_allclose(table["f1"], f1, atol=1e-12)
    np.testing.assert_array_equal(table["support"], support)
    averages = frame(at, ["average", "precision", "recall", "f1"]).set_index("average")
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y, predicted, average=average, zero_division=0)
        np.testing.assert_allclose(averages.loc[average, ["precision", "recall", "f1"]], [p, r, f], atol=1e-12)
    shown = metrics(at)
    probs = torch.softmax(logits, dim=1)
    assert shown["Top-5 accuracy"] == f"{top_k_accuracy_score(y, logits.numpy(), k=5, labels=range(10)):.1%}"
    assert shown["Macro F1"] == f"{f1.mean():.3f}"
    ece = MulticlassCalibrationError(num_classes=10, n_bins=15, norm="l1")(probs, preds.labels)
    mce = MulticlassCalibrationError(num_classes=10, n_bins=15, norm="max")(probs, preds.labels)
    assert shown["Plain ECE"] == f"{float(ece):.4f}" and shown["Plain MCE"] == f"{float(mce):.4f}"
    # The identity lens: the lensed prediction is the top label, and the page says so.
    assert shown["Lensed ECE"] == shown["Plain ECE"]
    assert any("equals the top label here" in c.value for c in at.caption)
    # k is selectable; the default is 5 for K = 10.
    assert at.number_input(key="eval_top_k").value == 5
    at.number_input(key="eval_top_k").set_value(2)
    run(at)
    assert metrics(at)["Top-2 accuracy"] == f"{top_k_accuracy_score(y, logits.numpy(), k=2, labels=range(10)):.1%}"
    assert "top2_accuracy" in frame(at, ["class", "precision"]).columns


def test_the_lensed_calibration_is_that_of_the_most_probable_group():
    at, preds = uploaded("weak")
    lens = use_merge_groups(at)
    open_tab(at, "Evaluation")
    # Reference by hand: each class's group, the most probable group, its summed probability, truth in it or not.
    group_of = {n: i for i, g in enumerate(GROUPS) for n in g}
    group = torch.tensor([group_of.get(n, len(GROUPS) + i) for i, n in enumerate(NAMES)])
    probs = torch.softmax(preds.logits.double(), dim=1)
    group_probs = torch.zeros(len(probs), int(group.max()) + 1, dtype=torch.float64).index_add_(1, group, probs)
    confidence, chosen = group_probs.max(dim=1)
    correct = (chosen == group[preds.labels]).long()
    reference = BinaryCalibrationError(n_bins=15, norm="l1")(confidence.clamp(max=1.0), correct)
    shown = metrics(at)
    assert shown["Lensed ECE"] == f"{float(reference):.4f}"
    assert shown["Lensed ECE"] != shown["Plain ECE"]
    assert shown["Accuracy"][1] == f"{float(correct.double().mean()):.1%}"
    assert not any("equals the top label here" in c.value for c in at.caption)
    # The headline: the lens-aware rule is group accuracy here; the soft score is its mean credit (1 or 0).
    hits = lens_hits(lens)[preds.labels, preds.logits.argmax(dim=1)]
    assert shown["Lens-aware acc."] == [f"{float(hits.double().mean()):.1%}"] * 2  # headline and Evaluation tab
    assert shown["Lens soft score"] == f"{float(hits.double().mean()):.3f}"


def test_choosing_a_cell_lists_exactly_its_samples_with_their_losses():
    at, preds = uploaded("weak")
    lens = use_merge_groups(at)
    open_tab(at, "Evaluation")
    predicted = preds.logits.argmax(dim=1)
    counts = torch.bincount(preds.labels * 10 + predicted, minlength=100).reshape(10, 10)
    off = counts.clone().fill_diagonal_(-1)
    worst = divmod(int(off.argmax()), 10)
    # It opens on the most confused pair.
    assert (at.selectbox(key="eval_true").value, at.selectbox(key="eval_predicted").value) == worst
    for true, pred in [(3, 5), (8, 1), worst, (0, 0)]:
        at.selectbox(key="eval_true").set_value(true)
        at.selectbox(key="eval_predicted").set_value(pred)
        run(at)
        listed = frame(at, ["sample", "label", "predicted", "unlensed_loss", "lensed_loss"])
        expected = torch.nonzero((preds.labels == true) & (predicted == pred)).flatten()
        assert sorted(listed["sample"]) == expected.tolist()
        assert set(listed["label"]) <= {NAMES[true]} and set(listed["predicted"]) <= {NAMES[pred]}
        if len(expected):
            rows = listed.sort_values("sample")
            x, y = preds.logits[expected], preds.labels[expected]
            np.testing.assert_allclose(rows["unlensed_loss"], F.cross_entropy(x, y, reduction="none"), rtol=1e-5)
            target = lens.matrix[y]  # the seed's target-side loss: KL(C[y] ‖ softmax(x))
            kl = F.kl_div(F.log_softmax(x, dim=1), target, reduction="none").sum(dim=1)
            np.testing.assert_allclose(rows["lensed_loss"], kl, rtol=1e-5, atol=1e-6)
            assert any(f"**{len(expected):,}** samples of" in m.value for m in at.markdown)


def test_a_click_on_a_confusion_cell_chooses_it():
    at, _ = uploaded("strong")
    open_tab(at, "Evaluation")
    chart = next(c for c in at.get("plotly_chart") if json.loads(c.proto.spec)["data"][0]["type"] == "heatmap")
    assert chart.proto.id
    # What the browser sends when cell (true 7, predicted 2) is clicked: its marker, index 7 * 10 + 2.
    at.session_state["eval_cells"] = {"selection": {"points": [{"curve_number": 1, "point_index": 72}]}}
    run(at)
    assert (at.selectbox(key="eval_true").value, at.selectbox(key="eval_predicted").value) == (7, 2)
    # A later choice in the select boxes is not undone by the click the chart still holds.
    at.selectbox(key="eval_true").set_value(4)
    run(at)
    assert at.selectbox(key="eval_true").value == 4


def test_the_demo_opens_with_the_identity_and_offers_the_suggested_groups():
    at = new_session()
    assert at.selectbox(key="preset").value == "identity"
    shown = metrics(at)
    assert shown["Lensed loss"] == shown["Unlensed loss"] == shown["Prediction-side"]
    offer = next(c.value for c in at.caption if c.value.startswith("Suggested from this data"))
    assert "automobile, truck" in offer and "cat, dog" in offer and "30 samples" in offer
    at.button(key="suggest_groups").click()
    run(at)
    assert at.selectbox(key="preset").value == "merge groups"
    preds = demo_predictions()
    expected = ld.merge_lens(preds.class_names, [["automobile", "truck"], ["cat", "dog"]])
    np.testing.assert_allclose(at.session_state["lens_current"], expected.matrix.numpy())


def test_small_classes_get_no_suggestion_and_the_page_says_why():
    at, _ = uploaded("strong")  # ~90 samples per class: enough
    assert any(c.value.startswith("Suggested from this data") for c in at.caption) or any(
        "No groups to suggest" in c.value for c in at.caption
    )
    small = new_session()
    data = example_bytes("seed_4class.csv")  # 5 samples: too few to suggest anything
    small.file_uploader(key=f"upload_predictions_{small.session_state['upload_version']}").set_value(
        ("seed_4class.csv", data, "text/csv")
    )
    run(small)
    assert small.selectbox(key="preset").value == "identity"
    assert any("No groups to suggest" in c.value and "at least 30 samples" in c.value for c in small.caption)


def test_headline_help_states_both_rules_and_explains_the_prediction_side_floor():
    at, preds = uploaded("strong")
    helps = {m.label: m.proto.help for m in at.metric}
    assert "C[y, ŷ] ≥ 0.5·max_j C[y, j]" in helps["Lens-aware acc."]
    assert "C[y, ŷ] / max_j C[y, j]" in helps["Lens soft score"]
    assert "notebook lensdash grew from" in helps["Lensed loss"]  # "seed" explained where it is used
    assert not any("−log P(group) + log |group|" in c.value for c in at.caption)  # identity: nothing to say
    use_merge_groups(at)
    helps = {m.label: m.proto.help for m in at.metric}
    assert "−log P(group) + log |group|" in helps["Prediction-side"]
    size = {name: len(group) for group in GROUPS for name in group}
    floor = float(np.mean([np.log(size.get(NAMES[y], 1)) for y in preds.labels.tolist()]))  # mean log |group of y|
    caption = next(c.value for c in at.caption if "−log P(group) + log |group|" in c.value)
    assert f"{floor:.4f}" in caption
    lensed = float(ld.prediction_lensed_cross_entropy(preds.logits, preds.labels, ld.merge_lens(NAMES, GROUPS)))
    assert float(metrics(at)["Prediction-side"]) == pytest.approx(lensed, abs=1e-4)


def plotly_array(values) -> np.ndarray:
    """A plotly JSON array: a list, or numpy's bytes as ``{"dtype": ..., "bdata": base64}``."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).astype(float)
    return np.asarray(values, dtype=float)


def test_the_playground_runs_without_a_requires_grad_warning_and_shows_the_interesting_region():
    at = new_session()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        open_tab(at, "Playground")
    assert not [w for w in caught if "requires_grad" in str(w.message)], [str(w.message) for w in caught]
    (chart,) = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    low, high = spec["layout"]["yaxis"]["range"]
    curves = [plotly_array(t["y"]) for t in spec["data"]]
    assert max(c.max() for c in curves) > 20  # the ends of the split run far up …
    assert low == 0 and 1 < high < 5  # … the axis shows where the curves differ
    assert any("the seed is the notebook lensdash grew from" in c.value for c in at.caption)
