"""What the session keeps of an upload once read: the read (a kind change needs no file), and small files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import lensdash as ld
from lensdash.ui import data as data_ui

pytestmark = pytest.mark.filterwarnings("ignore")


def _csv(values: np.ndarray, labels: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> bytes:
    extra = extra or {}
    names = [f"c{j}" for j in range(values.shape[1])]
    lines = [",".join([*names, "label", *extra])]
    for i, (row, y) in enumerate(zip(values, labels)):
        lines.append(",".join([*(repr(float(v)) for v in row), str(int(y)), *(str(extra[c][i]) for c in extra)]))
    return ("\n".join(lines) + "\n").encode()


def _probs_file(n: int = 60, k: int = 6, fold: bool = False) -> bytes:
    rng = np.random.default_rng(5)
    probs = torch.softmax(torch.from_numpy(rng.standard_normal((n, k)) * 2), 1).numpy().astype(np.float32)
    labels = rng.integers(0, k, n)
    return _csv(probs, labels, {"fold": np.arange(n) % 3} if fold else None)


def _page() -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=90)
    at.run()
    return at


def _ok(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _upload(at: AppTest, data: bytes, name: str = "p.csv", key: str = "upload_predictions") -> AppTest:
    at.file_uploader(key=f"{key}_{at.session_state['upload_version']}").set_value((name, data, "text/csv"))
    return _ok(at)


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _unlensed(data: bytes, kind: str) -> float:
    preds = ld.read_predictions(data, kind=kind)
    return float(torch.nn.functional.cross_entropy(preds.logits, preds.labels))


def _sidebar_warnings(at: AppTest) -> list[str]:
    return [w.value.replace("\\", "") for w in at.sidebar.warning]


@pytest.fixture
def large(monkeypatch):
    """Every upload counts as large: read, then not kept."""
    monkeypatch.setattr(data_ui, "KEEP_FILE_BYTES", 0)


def test_a_large_upload_changes_kind_without_its_file(large):
    data = _probs_file()
    at = _upload(_page(), data)
    assert _metric(at, "Unlensed loss") == f"{_unlensed(data, 'auto'):.4f}"
    # The kind changes: taken from the read, equal to the library reading the file with that kind.
    at.selectbox(key="kind").set_value("logits")
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    assert float(_metric(at, "Unlensed loss")) == pytest.approx(_unlensed(data, "logits"), abs=1e-4)
    at.selectbox(key="kind").set_value("log_probs")
    _ok(at)
    message = " ".join(e.value for e in at.error).replace("\\", "")
    assert "expected a log-probability <= 0" in message and "sample 1, column 1 of the scores" in message
    assert float(_metric(at, "Unlensed loss")) == pytest.approx(_unlensed(data, "logits"), abs=1e-4)  # last good
    at.selectbox(key="kind").set_value("auto")
    _ok(at)
    assert not at.error
    assert _metric(at, "Unlensed loss") == f"{_unlensed(data, 'auto'):.4f}"


def test_a_large_upload_asks_for_the_file_again_for_metadata_columns(large):
    data = _probs_file(fold=True)
    at = _upload(_page(), data)
    captions = [c.value.replace("\\", "") for c in at.sidebar.caption]
    assert any("60 samples × 7 classes" in c for c in captions), captions  # 'fold' read as a class
    at.text_input(key="meta_columns").set_value("fold")
    _ok(at)
    warnings = _sidebar_warnings(at)
    assert any("p.csv was read with the metadata columns none named" in w and "upload it again" in w for w in warnings)
    assert any("60 samples × 7 classes" in c.value.replace("\\", "") for c in at.sidebar.caption)  # the data stays
    # Uploaded again, it is read with the columns.
    _upload(at, data)
    assert not _sidebar_warnings(at)
    captions = [c.value.replace("\\", "") for c in at.sidebar.caption]
    assert any("60 samples × 6 classes" in c for c in captions), captions
    # A labels file for predictions no longer kept: asked to upload them together.
    labels = ("label\n" + "\n".join("0" for _ in range(60)) + "\n").encode()
    _upload(at, labels, "labels.csv", key="upload_labels")
    assert any("Upload p.csv again with this labels file" in w for w in _sidebar_warnings(at))


def test_small_uploads_are_kept_and_read_again_with_metadata_columns():
    data = _probs_file(fold=True)
    at = _upload(_page(), data)
    at.text_input(key="meta_columns").set_value("fold")
    _ok(at)
    assert not _sidebar_warnings(at)
    captions = [c.value.replace("\\", "") for c in at.sidebar.caption]
    assert any("60 samples × 6 classes" in c for c in captions), captions
    expected = ld.read_predictions(data, meta_columns=["fold"])
    assert (
        _metric(at, "Unlensed loss")
        == f"{float(torch.nn.functional.cross_entropy(expected.logits, expected.labels)):.4f}"
    )


def test_the_store_keeps_the_read_not_the_large_file(large):
    from lensdash.ui.data import Upload

    data = _probs_file()
    at = _upload(_page(), data)
    token = at.session_state["session_token"]  # the session's store is the one its token owns
    store = next(o for o in _stores() if o["__owner__"] == token)
    kept = store["sources"]
    assert isinstance(kept, Upload) and kept.files is None
    assert kept.read.kind == "probs" and torch.equal(kept.read.logits, ld.read_predictions(data).logits)


def _stores() -> list[dict]:
    import gc

    return [o for o in gc.get_objects() if isinstance(o, dict) and "__owner__" in o]
