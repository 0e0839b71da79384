"""The evaluation figures, checked on their data against independent references (torchmetrics, sklearn, numpy)."""

import re

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix
from torchmetrics.classification import MulticlassCalibrationError

from lensdash.errors import InputError
from lensdash.figures_eval import (
    MAX_CLICKABLE_CLASSES,
    cell_of_point,
    confusion_cells,
    reliability_bars,
    reliability_diagram,
)
from lensdash.metrics import MetricSums, reliability_table
from lensdash.sanitize import html_text
from tests.models import digits_lenses, digits_predictions

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:torchmetrics.*")


def traces(fig):
    return {t.name: t for t in fig.data}


@pytest.mark.parametrize("model", ["weak", "strong"])
def test_the_diagram_shows_each_bins_accuracy_confidence_and_count_and_they_give_torchmetrics_ece(model):
    preds = digits_predictions()[model]
    table = MetricSums.of(preds.logits, preds.labels).reliability()
    fig = reliability_diagram(table, "Top label")
    shown = traces(fig)
    counts = np.asarray(shown["samples"].y, dtype=float)
    accuracy = np.asarray(shown["accuracy"].y, dtype=float)
    confidence = np.asarray(shown["mean confidence"].y, dtype=float)
    assert counts.sum() == len(preds.labels) and (counts > 0).all()  # every sample, empty bins left out
    # What the reader sees adds up to the ECE of an independent implementation.
    from_figure = float((counts * np.abs(accuracy - confidence)).sum() / counts.sum())
    reference = MulticlassCalibrationError(num_classes=10, n_bins=15, norm="l1")(
        torch.softmax(preds.logits, dim=1), preds.labels
    )
    assert from_figure == pytest.approx(float(reference), abs=1e-6)
    # Each drawn bar lies over its bin: accuracy and confidence of the samples whose confidence falls there.
    probs = torch.softmax(preds.logits, dim=1)
    top, predicted = probs.max(dim=1)
    correct = (predicted == preds.labels).numpy()
    for x, width, acc, conf, count in zip(shown["accuracy"].x, shown["accuracy"].width, accuracy, confidence, counts):
        if x > 1:  # the bin of confidences of exactly 1 (in float32, as torchmetrics bins them)
            inside = top.float().numpy() == 1.0
        else:
            inside = (top.float().numpy() >= x - width / 2 + 1e-9) & (top.float().numpy() < x + width / 2 - 1e-9)
        assert inside.sum() == count
        assert correct[inside].mean() == pytest.approx(acc) and top.numpy()[inside].mean() == pytest.approx(conf)


def test_an_overconfident_models_certain_predictions_get_a_visible_bar_right_of_one():
    preds = digits_predictions()["weak"]  # naive Bayes: many top-label probabilities are exactly 1
    table = MetricSums.of(preds.logits, preds.labels).reliability()
    certain = int((torch.softmax(preds.logits, dim=1).max(dim=1).values.float() == 1).sum())  # binned in float32
    assert certain > 0
    bars = traces(reliability_diagram(table, "weak"))["accuracy"]
    last = int(np.argmax(bars.x))
    assert bars.x[last] > 1 and bars.width[last] == pytest.approx(1 / 45)
    assert traces(reliability_diagram(table, "weak"))["samples"].y[last] == certain


def test_the_lensed_diagram_draws_the_lensed_table():
    preds = digits_predictions()["strong"]
    sums = MetricSums.of(preds.logits, preds.labels, digits_lenses()["merge"])
    lensed = sums.reliability(lensed=True)
    bars = traces(reliability_diagram(lensed, "lensed"))["accuracy"]
    kept = lensed[lensed["count"] > 0]
    np.testing.assert_allclose(np.asarray(bars.y, dtype=float), kept["accuracy"].to_numpy())
    assert sum(traces(reliability_diagram(lensed, "lensed"))["samples"].y) == len(preds.labels)


def test_the_title_is_escaped_and_a_table_without_the_columns_is_refused():
    table = reliability_table(MetricSums.of(torch.zeros(2, 3), torch.tensor([0, 1])).calibration)
    fig = reliability_diagram(table, "<b>model</b>")
    assert fig.layout.title.text == html_text("<b>model</b>")
    with pytest.raises(InputError, match="no column accuracy"):
        reliability_diagram(table.drop(columns="accuracy"), "x")
    with pytest.raises(InputError, match="expected a reliability table"):
        reliability_bars(table[["lower"]])


def test_the_confusion_cells_sit_on_their_cell_and_say_its_count():
    preds = digits_predictions()["weak"]
    predicted = preds.logits.argmax(dim=1).numpy()
    counts = confusion_matrix(preds.labels.numpy(), predicted, labels=range(10))
    names = [f"digit {d}" for d in range(10)]
    fig = confusion_cells(counts, names, selected=(3, 5), title="Confusion")
    heat, cells = fig.data
    np.testing.assert_allclose(heat.z, np.round(counts / counts.sum(axis=1, keepdims=True), 4))
    for point in (0, 35, 99):
        true, pred = cell_of_point(point, 10)
        assert (cells.y[point], cells.x[point]) == (true, pred)
        assert (
            f"true digit {true}<br>predicted digit {pred}<br>{counts[true, pred]:,} samples"
            in cells.customdata[point][0]
        )
    (outline,) = fig.layout.shapes
    assert (outline.x0, outline.x1, outline.y0, outline.y1) == (4.5, 5.5, 2.5, 3.5)
    assert list(fig.layout.xaxis.ticktext) == names


def test_confusion_cells_escape_names_and_refuse_what_they_cannot_draw():
    fig = confusion_cells(np.eye(2), ["<img src=x>", "b"])
    assert "<img" not in fig.data[1].customdata[0][0] and "<img" not in fig.layout.xaxis.ticktext[0]
    k = MAX_CLICKABLE_CLASSES + 1
    with pytest.raises(InputError, match=f"at most {MAX_CLICKABLE_CLASSES} classes"):
        confusion_cells(np.eye(k), [str(i) for i in range(k)])
    with pytest.raises(InputError, match="K×K counts and K names"):
        confusion_cells(np.eye(3), ["a", "b"])
    with pytest.raises(InputError, match=re.escape("a point index in 0..8")):
        cell_of_point(9, 3)
