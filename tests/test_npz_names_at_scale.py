"""An ``.npz`` with ``class_names=`` is read at K = 1,000 within the app's budget (ImageNet-style names)."""

import io

import numpy as np
import pytest

import lensdash as ld
from lensdash.ui.config import APP_MAX_CELLS, APP_MAX_CLASSES


def archive(names):
    out = io.BytesIO()
    np.savez(out, logits=np.zeros((3, len(names)), np.float32), labels=np.arange(3), class_names=np.array(names))
    return out.getvalue()


def test_wordnet_ids_and_long_names_at_k1000():
    for names in ([f"n{i:08d}" for i in range(1000)], [f"{'x' * 100} {i}" for i in range(1000)]):
        read = ld.read_predictions(archive(names), max_cells=APP_MAX_CELLS, max_classes=APP_MAX_CLASSES)
        assert read.class_names == tuple(names)


def test_names_beyond_the_budget_are_refused():
    names = [f"{'x' * 200} {i}" for i in range(1000)]  # 204 characters each, over the 128 the budget allows
    with pytest.raises(ld.InputError, match="bytes of text labels"):
        ld.read_predictions(archive(names), max_cells=APP_MAX_CELLS, max_classes=1000)
