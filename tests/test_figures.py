import json

import numpy as np
import torch

import lensdash as ld
from lensdash import figures


def payload(fig) -> int:
    return len(fig.to_json())


def test_gradient_heatmap_data_and_axes():
    m = torch.tensor([[0.1, -0.2], [0.3, 0.0]])
    fig = figures.gradient_heatmap(m, ["a", "b"], "Lensed")
    trace = fig.data[0]
    assert trace.type == "heatmap" and trace.zmid == 0 and list(trace.x) == ["a", "b"]
    np.testing.assert_allclose(np.asarray(trace.z), m.numpy(), atol=1e-6)
    assert (
        fig.layout.xaxis.title.text == "gradient w.r.t. logit of class" and fig.layout.yaxis.title.text == "true class"
    )
    assert trace.zmin == -trace.zmax


def test_large_k_heatmap_is_bounded_and_says_so():
    k = 500
    m = torch.randn(k, k) * 0.01
    m[7, 9] = 5.0
    fig = figures.gradient_heatmap(m, [f"c{i}" for i in range(k)], "Lensed")
    assert len(fig.data[0].x) == figures.MAX_HEATMAP_CLASSES and "c7" in fig.data[0].x and "c9" in fig.data[0].x
    assert "of 500 classes" in fig.layout.title.text
    assert payload(fig) < 2_000_000


def test_scatter_and_histogram_payload_bounded_for_100k_samples():
    n = 100_000
    u, l_ = torch.rand(n), torch.rand(n)
    fig = figures.loss_scatter(u, l_, torch.randint(0, 3, (n,)), ["a", "b", "c"])
    assert len(fig.data[0].x) == figures.MAX_POINTS and "5,000 of 100,000" in fig.layout.title.text
    assert payload(fig) < 2_000_000
    hist = figures.delta_histogram(l_ - u)
    assert sum(hist.data[0].y) == n and payload(hist) < 100_000
    assert hist.layout.xaxis.title.text == "lensed − unlensed loss"
    zero = hist.layout.shapes[0]  # the dashed line at "no change"
    assert (zero.x0, zero.x1, zero.yref, zero.line.dash) == (0, 0, "y domain", "dash")
    assert fig.data[1].mode == "lines" and fig.layout.showlegend is False  # the diagonal lensed = unlensed


def test_scatter_values_match_inputs():
    fig = figures.loss_scatter(torch.tensor([0.5, 1.0]), torch.tensor([0.25, 2.0]))
    assert list(fig.data[0].x) == [0.5, 1.0] and list(fig.data[0].y) == [0.25, 2.0]


def test_sample_heatmap_and_confusion_and_lens():
    fig = figures.sample_gradient_heatmap(torch.randn(3, 4), [5, 9, 2], ["a", "b", "a"], list("abcd"), "t")
    assert list(fig.data[0].y) == ["#5 (a)", "#9 (b)", "#2 (a)"]
    assert (fig.layout.yaxis.autorange, fig.layout.yaxis.type) == ("reversed", "category")
    conf = figures.confusion_heatmap(torch.tensor([[3, 1], [0, 4]]), ["a", "b"])
    np.testing.assert_allclose(np.asarray(conf.data[0].z), [[0.75, 0.25], [0, 1]])
    lens = figures.lens_heatmap(ld.merge_lens(3, [[0, 1]]).matrix, ["a", "b", "c"])
    assert lens.data[0].zmax == 1
    for heatmap in (conf, lens, figures.gradient_heatmap(torch.eye(2), ["a", "b"], "t")):
        assert heatmap.layout.yaxis.autorange == "reversed"  # row 0 on top, like the matrix


def test_split_curve_shows_the_two_families_difference():
    fig = figures.split_curve(ld.merge_lens(4, [[0, 1]]).matrix, label=0, a=0, b=1)
    names = [t.name for t in fig.data]
    target = np.asarray(fig.data[names.index(next(n for n in names if n.startswith("target")))].y)
    prediction = np.asarray(fig.data[names.index(next(n for n in names if n.startswith("prediction")))].y)
    assert np.argmin(target) == 50  # the 50/50 split
    assert np.ptp(prediction) < 1e-3  # flat: any split is as good
    json.loads(fig.to_json())


def test_training_curves_one_line_per_run():
    history = {"Unlensed": {"test_accuracy": [0.5, 0.7, 0.8]}, "Lensed": {"test_accuracy": [0.4, 0.6, 0.9]}}
    fig = figures.training_curves(history, "test_accuracy", "Test accuracy")
    assert [t.name for t in fig.data] == ["Unlensed", "Lensed"]
    assert list(fig.data[1].y) == [0.4, 0.6, 0.9] and list(fig.data[0].x) == [1, 2, 3]
    assert fig.layout.xaxis.title.text == "epoch" and fig.layout.yaxis.title.text == "test accuracy"
    assert tuple(fig.layout.yaxis.range) == (0, 1.02) and fig.layout.yaxis.tickformat == ".0%"
    assert figures.training_curves({"a": {"train_loss": [2.0, 1.0]}}, "train_loss", "Loss").layout.yaxis.range is None


def test_decision_regions_class_and_probability_views():
    xs, ys = np.linspace(-1, 1, 5), np.linspace(-2, 2, 4)
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(4, 5))
    points, labels = np.random.default_rng(1).normal(size=(3000, 2)), np.arange(3000) % 3
    fig = figures.decision_regions(xs, ys, probs, points, labels, ["a", "b", "c"], "Lensed")
    assert (np.asarray(fig.data[0].z) == probs.argmax(-1)).all()
    assert len(fig.data[1].x) <= 1500  # points are sampled
    fig = figures.decision_regions(xs, ys, probs, points, labels, ["a", "b", "c"], "Lensed", show=2)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), np.round(probs[..., 2], 3))
    assert fig.data[0].zmin == 0 and fig.data[0].zmax == 1 and "p(c)" in fig.data[0].hovertemplate
