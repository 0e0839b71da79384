"""A soft-label file uploaded in the app: the numbers shown use each sample's distribution, and the tabs say so.

Predictions are a real model's (scikit-learn's strong model on its digits, tests/models.py); the soft labels mix each
sample's true class with vote fractions, as several annotators would give. Every number checked is recomputed from
the files as the library reads them, against ``F.cross_entropy`` with probability targets.
"""

import io

import numpy as np
import pytest
import streamlit as st
import torch
import torch.nn.functional as F
from streamlit.testing.v1 import AppTest

import lensdash as ld
from lensdash.analysis import target_entropy
from tests.models import digits_predictions

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning:torchmetrics.*")

NAMES = [f"digit {d}" for d in range(10)]
GROUPS = [["digit 3", "digit 5", "digit 8"], ["digit 1", "digit 7"]]


def _files() -> tuple[bytes, bytes]:
    preds = digits_predictions()["strong"]  # finite logits: float32 and float64 agree to 4 places
    gen = torch.Generator().manual_seed(0)
    votes = torch.distributions.Dirichlet(torch.full((10,), 0.3)).sample((len(preds.labels),))
    soft = 0.6 * F.one_hot(preds.labels, 10).double() + 0.4 * votes.double()
    agree = torch.rand(len(soft), generator=gen) < 0.3  # some samples' annotators all agree
    soft[agree] = F.one_hot(preds.labels, 10).double()[agree]
    soft = soft / soft.sum(1, keepdim=True)
    header = ",".join(NAMES) + "\n"
    predictions = header + "".join(",".join(repr(v) for v in row) + "\n" for row in preds.logits.tolist())
    labels = io.StringIO()
    np.savetxt(labels, soft.numpy(), delimiter=",", fmt="%.17g", header=",".join(NAMES), comments="")
    return predictions.encode(), labels.getvalue().encode()


def _run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _infos(at: AppTest) -> str:
    return " ".join(i.value for i in at.info)


def test_uploaded_soft_labels_drive_the_losses_and_every_tab_says_so():
    st.cache_data.clear()
    at = AppTest.from_file("../app.py", default_timeout=120)
    _run(at)
    predictions, labels = _files()
    version = at.session_state["upload_version"]
    at.file_uploader(key=f"upload_predictions_{version}").set_value(("digits.csv", predictions, "text/csv"))
    at.file_uploader(key=f"upload_labels_{version}").set_value(("votes.csv", labels, "text/csv"))
    _run(at)
    read = ld.read_predictions(predictions, labels)
    assert read.targets is not None
    x, t, y = read.logits.double(), read.targets.double(), read.labels
    shown = {m.label: m.value for m in at.metric}
    # Identity lens (the page opens on it): the unlensed loss is the family's own, KL(t ‖ softmax).
    unlensed = F.cross_entropy(x, t, reduction="none") - target_entropy(t)
    assert shown["Unlensed loss"] == f"{float(unlensed.mean()):.4f}"
    assert shown["Lensed loss"] == f"{float(unlensed.mean()):.4f}"
    assert shown["Top-1 accuracy"] == f"{float((x.argmax(1) == y).double().mean()):.1%}"  # the majority label
    help_text = next(m.help for m in at.metric if m.label == "Unlensed loss")
    assert "soft labels" in help_text.lower()
    assert "Soft labels in use" in _infos(at) and "majority label" in _infos(at)  # the Results tab opens first
    # A merge lens: the lensed target-side loss is KL(t·C ‖ softmax), against F.cross_entropy with t·C.
    at.selectbox(key="preset").set_value("merge groups").run()
    at.text_area(key="groups").set_value("\n".join(", ".join(g) for g in GROUPS))
    _run(at)
    lens = ld.merge_lens(NAMES, GROUPS).matrix.double()
    lensed_t = t @ lens
    lensed = F.cross_entropy(x, lensed_t, reduction="none") - target_entropy(lensed_t)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Lensed loss"] == f"{float(lensed.mean()):.4f}"
    prediction_side = -(t * torch.log(torch.softmax(x, 1) @ lens)).sum(1).mean()
    assert shown["Prediction-side"] == f"{float(prediction_side):.4f}"
    for tab, words in (("Evaluation", "majority label"), ("Gradients", "softmax − t·C")):
        at.session_state["view"] = tab
        _run(at)
        assert "Soft labels in use" in _infos(at) and words in _infos(at), tab


def test_hard_labels_show_no_soft_label_note():
    st.cache_data.clear()
    at = AppTest.from_file("../app.py", default_timeout=120)
    _run(at)
    assert "Soft labels in use" not in _infos(at)
    at.session_state["view"] = "Evaluation"
    _run(at)
    assert "Soft labels in use" not in _infos(at)


def test_model_b_is_scored_against_model_a_soft_labels():
    """B's file has its own (hard) label column; the samples' soft labels come with A and hold for both models."""
    from lensdash.ui.compare import _pair
    from lensdash.ui.data import Dataset

    predictions, labels = _files()
    a = Dataset.of(ld.read_predictions(predictions, labels), "digits.csv")
    weak = digits_predictions()["weak"]
    b_csv = ",".join([*NAMES, "label"]) + "\n"
    b_csv += "".join(
        ",".join(repr(v) for v in row) + f",{NAMES[y]}\n" for row, y in zip(weak.logits.tolist(), weak.labels.tolist())
    )
    b = Dataset.of(ld.read_predictions(b_csv.encode()), "weak.csv")
    assert b.predictions.targets is None
    pairing = _pair(a, b)
    paired = pairing.model_b.predictions
    assert paired.targets is a.predictions.targets
    t = a.predictions.targets.double()
    x_b = paired.logits.double()
    # the baseline keeps the cross-entropy against t (the target side subtracts H(t) from it)
    expected = F.cross_entropy(x_b, t, reduction="none")
    torch.testing.assert_close(pairing.model_b.baseline.unlensed_loss.double(), expected, rtol=1e-5, atol=1e-4)
    hard = F.cross_entropy(x_b, paired.labels, reduction="none")
    assert not torch.allclose(expected, hard)  # the soft labels make a difference here
