"""The confusion table in the Results tab: a grid while it can be read, a download at any K."""

from __future__ import annotations

import io

import pandas as pd
import torch
from test_app_hierarchy import check, new_app, predictions_csv, upload

from lensdash.analysis import analyze
from lensdash.ui.results import TABLE_CLASSES, _confusion_csv


def _frames(at):
    return [d.value for d in at.dataframe]


def test_a_grid_up_to_table_classes_and_a_download_beyond():
    small = [f"c{i}" for i in range(12)]
    at = new_app()
    upload(at, "small.csv", predictions_csv(small, 300, seed=1))
    grids = [f for f in _frames(at) if list(f.columns) == small]
    assert len(grids) == 1 and list(grids[0].index) == small
    assert any(b.label == "Download the confusion matrix (CSV)" for b in at.get("download_button"))

    large = [f"class_{i:04d}" for i in range(TABLE_CLASSES + 20)]
    at = new_app()
    upload(at, "large.csv", predictions_csv(large, 600, seed=2))
    check(at)
    assert not [f for f in _frames(at) if f.shape[1] >= len(large)]  # no K×K grid sent to the browser
    assert any("too large to read here" in c.value for c in at.caption)
    assert any(b.label == "Download the confusion matrix (CSV)" for b in at.get("download_button"))


def test_the_download_has_every_cell_and_is_spreadsheet_safe():
    names = ["=cmd", "b", "+c"]
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    labels = torch.tensor([0, 1, 1, 2])
    analysis = analyze(logits, labels, torch.eye(3), class_names_=names)
    frame = pd.read_csv(io.BytesIO(_confusion_csv(analysis, False)))
    assert list(frame.columns) == ["true", "'=cmd", "b", "'+c"]
    assert frame["true"].tolist() == ["'=cmd", "b", "'+c"]
    assert frame.iloc[:, 1:].to_numpy().tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    rates = pd.read_csv(io.BytesIO(_confusion_csv(analysis, True)))
    assert rates.iloc[1, 1:].tolist() == [0.5, 0.5, 0.0]
