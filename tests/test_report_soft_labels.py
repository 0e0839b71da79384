"""The report's stream with soft labels: chunks that carry ``targets`` (their rows' distributions) give the
in-memory analysis, across chunks and shares, and say so in summary.json and report.html.

The chunks come from a small fake source standing in for :func:`lensdash.io.open_stream` (``Chunk.targets`` is the
reader's name for a chunk's soft labels), so the report's side is tested whatever file reads them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

import lensdash as ld
import lensdash.report as report_module
from lensdash import _compare_stream
from lensdash.analysis import ClassSums, analyze
from lensdash.io import Chunk, Stream
from lensdash.metrics import MetricSums
from lensdash.report import report

NAMES = ("ant", "bee", "cat", "dog", "eel", "fox")
N = 90


@dataclass
class SoftChunk(Chunk):
    targets: torch.Tensor | None = None


def _data(seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, len(NAMES), generator=gen) * 2
    targets = torch.distributions.Dirichlet(torch.full((len(NAMES),), 0.4)).sample((N,))
    targets[::5] = F.one_hot(targets[::5].argmax(1), len(NAMES)).float()
    return logits, targets, targets.argmax(1)


def _fake_open_stream(logits, targets, labels, chunk=20):
    def open_stream(path, labels_path=None, *, shard=(0, 1), **kwargs):
        rank, world = shard
        share = torch.arange(N).tensor_split(world)[rank]
        start, stop = int(share[0]), int(share[-1]) + 1

        def chunks():
            for row in range(start, stop, chunk):
                end = min(row + chunk, stop)
                yield SoftChunk(row, logits[row:end], labels[row:end], end - start, None, targets[row:end])

        return Stream(str(path), NAMES, "logits", stop - start, chunks(), ["soft labels"])

    return open_stream


@pytest.fixture
def soft_stream(monkeypatch):
    logits, targets, labels = _data()
    monkeypatch.setattr(report_module, "open_stream", _fake_open_stream(logits, targets, labels))
    return logits, targets, labels


@pytest.mark.parametrize("family", ["target", "prediction"])
def test_streamed_soft_labels_equal_the_in_memory_analysis(soft_stream, family):
    logits, targets, labels = soft_stream
    lens = ld.merge_lens(list(NAMES), [["ant", "bee", "cat"]])
    result = report("soft.csv", lens, family=family)
    whole = analyze(logits, labels, lens.matrix.float(), family=family, class_names_=NAMES, targets=targets)
    expected = ClassSums.of(whole)
    for mine, theirs in zip(result.sums.tensors(), expected.tensors()):  # float32 class means, chunk by chunk
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    s = result.summary()
    assert s["soft_labels"] is True
    assert s["unlensed_loss"] == pytest.approx(float(whole.unlensed_loss.double().mean()), rel=1e-6)
    assert s["lensed_loss"] == pytest.approx(float(whole.lensed_loss.double().mean()), rel=1e-6)
    # The label-based metrics use the majority labels.
    metrics = MetricSums.of(logits, labels, lens).summary()
    for key in ("accuracy", "lens_aware_accuracy", "macro_f1", "ece", "lensed_ece"):
        assert s[key] == pytest.approx(metrics[key]), key
    # With the identity lens the difference is 0: the unlensed loss is the family's own.
    same = report("soft.csv", torch.eye(len(NAMES)), family=family).summary()
    assert same["delta"] == pytest.approx(0.0, abs=1e-6)


def test_soft_labels_are_exact_across_shares(soft_stream):
    lens = ld.smoothing_lens(list(NAMES), 0.2)
    whole = report("soft.csv", lens)
    shares = [report("soft.csv", lens, shard=(rank, 3)) for rank in range(3)]
    combined = shares[0]
    for share in shares[1:]:
        combined.add_(share)
    assert combined.soft_labels
    for mine, theirs in zip(combined.sums.tensors(), whole.sums.tensors()):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    for mine, theirs in zip(combined.metrics.tensors(), whole.metrics.tensors()):
        torch.testing.assert_close(mine, theirs)


def test_comparison_takes_model_b_with_the_same_soft_labels(soft_stream, monkeypatch):
    logits, targets, labels = soft_stream
    logits_b = logits.flip(0).clone()[: len(logits)] * 0.5
    monkeypatch.setattr(_compare_stream, "open_stream", _fake_open_stream(logits_b, targets, labels, chunk=35))
    monkeypatch.setattr(_compare_stream, "_row_sharded", lambda path: True)
    lens = ld.merge_lens(list(NAMES), [["dog", "eel"]])
    result = report("a.csv", lens, compare="b.csv", family="prediction", bootstrap_resamples=0)
    a = analyze(logits, labels, lens.matrix.float(), family="prediction", targets=targets)
    b = analyze(logits_b, labels, lens.matrix.float(), family="prediction", targets=targets)
    diff = torch.cat(result.comparison.lensed_diff)
    torch.testing.assert_close(diff, (b.lensed_loss - a.lensed_loss).double(), atol=1e-5, rtol=1e-5)
    unlensed = torch.cat(result.comparison.unlensed_diff)
    torch.testing.assert_close(unlensed, (b.unlensed_loss - a.unlensed_loss).double(), atol=1e-5, rtol=1e-5)


def test_summary_json_and_html_say_soft_labels(soft_stream, tmp_path):
    result = report("soft.csv", ld.merge_lens(list(NAMES), [["ant", "bee"]]))
    out = tmp_path / "out"
    result.write(out)
    assert json.loads((out / "summary.json").read_text())["soft_labels"] is True
    html = (out / "report.html").read_text()
    assert "Soft labels: the losses and gradients use each sample" in html and "majority label" in html


def test_hard_labels_say_no_soft_labels(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("a,b,label\n0.9,0.1,a\n0.2,0.8,b\n")
    result = report(path, torch.eye(2))
    assert result.summary()["soft_labels"] is False
    result.write(tmp_path / "out")
    assert "Soft labels" not in (tmp_path / "out" / "report.html").read_text()


def test_every_metric_comes_from_one_pass_over_the_stream(monkeypatch):
    """The file is opened once and each chunk read once, for the losses, gradients, metrics and calibration."""
    logits, targets, labels = _data(1)
    fake, opened, read = _fake_open_stream(logits, targets, labels), [], []

    def counting(*args, **kwargs):
        opened.append(args)
        stream = fake(*args, **kwargs)
        stream.chunks = (read.append(chunk.row) or chunk for chunk in stream.chunks)
        return stream

    monkeypatch.setattr(report_module, "open_stream", counting)
    s = report("soft.csv", ld.merge_lens(list(NAMES), [["ant", "bee"]])).summary()
    assert len(opened) == 1 and read == list(range(0, N, 20))
    assert s["num_samples"] == N and s["ece"] is not None and s["lensed_ece"] is not None and s["top5_accuracy"]


def test_the_command_line_says_soft_labels(soft_stream, tmp_path, capsys):
    from lensdash.cli import main

    (tmp_path / "soft.csv").write_text("stands in: the stream is the fake one\n")
    lens = tmp_path / "lens.json"
    lens.write_text(json.dumps({"classes": list(NAMES), "lens": torch.eye(len(NAMES)).tolist()}))
    assert main(["report", str(tmp_path / "soft.csv"), "--lens", str(lens), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "soft labels: losses use each distribution, accuracy the majority label" in out
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["soft_labels"] is True
