import json
from importlib import resources

import numpy as np
import pytest
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


# ------------------------------------------------------------------ many classes (K = 100 to 1,000)

CIFAR = ld.read_hierarchy(resources.files("lensdash.examples").joinpath("cifar100_hierarchy.csv").read_bytes())
CIFAR_NAMES = sorted(CIFAR.leaves)


def big_tree(k: int = 1000) -> tuple[ld.Hierarchy, list[str]]:
    parents = {f"g{g}": None for g in range(k // 10)}
    parents.update({f"c{i}": f"g{i % (k // 10)}" for i in range(k)})  # groups interleaved in index order
    return ld.Hierarchy(parents), [f"c{i}" for i in range(k)]


def is_contiguous(labels) -> bool:
    runs = [g for i, g in enumerate(labels) if i == 0 or labels[i - 1] != g]
    return len(runs) == len(set(runs))


def test_class_order_by_hierarchy_groups_and_data():
    order = figures.class_order(CIFAR_NAMES, hierarchy=CIFAR)
    assert sorted(order.tolist()) == list(range(100))
    supers = CIFAR.ancestor_at(1, CIFAR_NAMES)
    assert not is_contiguous(supers) and is_contiguous([supers[i] for i in order])
    by_groups = figures.class_order(CIFAR_NAMES, groups=supers)
    assert is_contiguous([supers[i] for i in by_groups]) and by_groups[0] == 0
    # The data's own clustering finds planted blocks of mutually confused classes.
    rng = np.random.default_rng(0)
    block = rng.permutation(np.repeat(np.arange(10), 10))
    counts = rng.poisson(1.0, (100, 100)) + 40 * (block[:, None] == block[None, :]) + np.diag(np.full(100, 500))
    data_order = figures.class_order(CIFAR_NAMES, confusion=counts)
    assert sorted(data_order.tolist()) == list(range(100)) and is_contiguous(block[data_order].tolist())
    with pytest.raises(ld.InputError, match="exactly one of hierarchy, groups, confusion"):
        figures.class_order(CIFAR_NAMES)
    with pytest.raises(ld.InputError, match="100 group labels"):
        figures.class_order(CIFAR_NAMES, groups=[1])
    with pytest.raises(ld.InputError, match="a 100×100 confusion matrix"):
        figures.class_order(CIFAR_NAMES, confusion=np.eye(3))


def test_lens_groups_are_the_merge_lens_groups():
    lens = ld.merge_lens(6, [[0, 3], [2, 4, 5]]).matrix
    assert figures.lens_groups(lens).tolist() == [0, 1, 2, 0, 2, 2]


def test_one_subset_for_the_three_gradient_panels_keeps_groups_whole():
    tree, names = big_tree()
    groups = tree.ancestor_at(1, names)
    rng = np.random.default_rng(1)
    diff = rng.normal(0, 1e-3, (1000, 1000))
    diff[5, 7] = 1.0  # c5 and c7 are in groups g5 and g7, ten classes each
    order = figures.class_order(names, hierarchy=tree)
    subset = figures.pick_classes(diff, limit=60, groups=groups, order=order)
    assert len(subset) <= 60 and {5, 7} <= set(subset.tolist())
    chosen = [groups[i] for i in subset]
    assert chosen.count("g5") == 10 and chosen.count("g7") == 10 and is_contiguous(chosen)
    panels = [
        figures.gradient_heatmap(m, names, title, subset=subset)
        for m, title in ((diff, "Unlensed"), (diff * 2, "Lensed"), (diff, "Lensed − unlensed"))
    ]
    xs = [list(p.data[0].x) for p in panels]
    assert xs[0] == xs[1] == xs[2] == [names[i] for i in subset]
    for p in panels:
        text = p.layout.title.text
        assert text.split("<br>")[0] in ("Unlensed", "Lensed", "Lensed − unlensed") and "60 of 1,000 classes" in text
        assert p.layout.height >= 360 and payload(p) < 2_000_000
    assert figures.pick_classes(diff, limit=3).tolist() == sorted(figures.pick_classes(diff, limit=3).tolist())
    with pytest.raises(ld.InputError, match=r"distinct class indices in 0..999"):
        figures.gradient_heatmap(diff, names, "t", subset=[0, 0])
    with pytest.raises(ld.InputError, match="at most 250 classes in one heatmap"):
        figures.gradient_heatmap(diff, names, "t", subset=range(300))


def test_tick_labels_are_thinned_and_shortened_but_hover_has_every_name():
    names = [f"a_rather_long_class_name_{i}" for i in range(200)]
    fig = figures.gradient_heatmap(np.random.default_rng(0).normal(size=(200, 200)), names, "t", subset=range(200))
    ticks = fig.layout.xaxis.tickvals
    assert 10 < len(ticks) < 200 and len(fig.data[0].x) == 200
    assert all(len(t) <= figures.TICK_CHARS for t in fig.layout.xaxis.ticktext)
    assert fig.layout.xaxis.type == "category" and fig.layout.height <= 900
    small = figures.gradient_heatmap(np.eye(3), ["0", "1", "2"], "t")
    assert list(small.layout.xaxis.tickvals) == ["0", "1", "2"] and small.layout.xaxis.type == "category"


def loop_rollup(values, labels, support=None):
    names = list(dict.fromkeys(labels))
    out = np.zeros((len(names), len(names)))
    for a, ga in enumerate(names):
        rows = [i for i, g in enumerate(labels) if g == ga]
        for b, gb in enumerate(names):
            cols = [j for j, g in enumerate(labels) if g == gb]
            if support is None:
                out[a, b] = sum(values[i, j] for i in rows for j in cols)
            else:
                total = sum(support[i] for i in rows)
                out[a, b] = sum(support[i] * sum(values[i, j] for j in cols) for i in rows) / total if total else 0
    return out, names


def test_rollup_to_a_hierarchy_level_against_a_loop():
    rng = np.random.default_rng(2)
    counts = rng.poisson(3.0, (100, 100)).astype(float)
    supers = CIFAR.ancestor_at(1, CIFAR_NAMES)
    rolled, names = figures.rollup(counts, supers)
    expected, expected_names = loop_rollup(counts, supers)
    np.testing.assert_allclose(rolled, expected)
    assert names == expected_names and len(names) == 20 and rolled.sum() == counts.sum()
    means = rng.normal(size=(100, 100))
    support = rng.integers(0, 50, 100).astype(float)
    support[:5] = 0
    rolled, _ = figures.rollup(torch.tensor(means), supers, support=torch.tensor(support))
    np.testing.assert_allclose(rolled, loop_rollup(means, supers, support)[0], atol=1e-12)
    fig = figures.confusion_heatmap(*figures.rollup(counts, supers), title="Confusion by superclass")
    assert len(fig.data[0].x) == 20 and fig.layout.title.text.startswith("Confusion by superclass")
    with pytest.raises(ld.InputError, match="K = 100 group labels"):
        figures.rollup(counts, supers[:3])
    with pytest.raises(ld.InputError, match="100 non-negative sample counts"):
        figures.rollup(means, supers, support=-np.ones(100))


def test_zoom_picks_a_sub_matrix():
    m = np.arange(16).reshape(4, 4)
    sub, names = figures.zoom(m, list("abcd"), ["d", 1])
    np.testing.assert_array_equal(sub, [[15, 13], [7, 5]])
    assert names == ["d", "b"]
    with pytest.raises(ld.InputError, match="found 'zz', '9'"):
        figures.zoom(m, list("abcd"), ["a", "zz", 9])


def test_confusion_colour_scale_is_not_taken_by_the_diagonal():
    counts = np.array([[900, 10, 0], [5, 800, 1], [0, 2, 950]])
    plain = figures.confusion_heatmap(counts, list("abc"), normalize=False)
    off = figures.confusion_heatmap(counts, list("abc"), normalize=False, diagonal=False)
    z = np.array(off.data[0].z, dtype=float)
    assert np.isnan(np.diag(z)).all() and np.nanmax(z) == 10 and np.array(plain.data[0].z)[0, 0] == 900
    assert "diagonal left out" in off.layout.title.text
    logged = figures.confusion_heatmap(counts, list("abc"), normalize=False, log=True)
    zl = np.array(logged.data[0].z, dtype=float)
    np.testing.assert_allclose(zl, np.round(np.log10(np.maximum(counts, 1)), 4))
    assert np.array(logged.data[0].customdata)[0, 1] == 10 and "log colour scale" in logged.layout.title.text


def test_delta_histogram_leaves_out_unchanged_samples_and_says_how_many():
    delta = torch.cat([torch.zeros(9000), torch.linspace(-1, 1, 1000)])
    fig = figures.delta_histogram(delta)
    assert sum(fig.data[0].y) == 1000 and "9,000 of 10,000 samples unchanged" in fig.layout.title.text
    kept = figures.delta_histogram(delta, unchanged_tol=None)
    assert sum(kept.data[0].y) == 10_000 and "unchanged" not in kept.layout.title.text
    assert figures.delta_histogram(delta, log_y=True).layout.yaxis.type == "log"
    none = figures.delta_histogram(torch.zeros(50))
    assert sum(none.data[0].y) == 0 and "every sample is unchanged" in none.layout.title.text


def test_every_figure_json_is_at_most_2_mb_at_k_1000():
    tree, names = big_tree()
    k = 1000
    rng = np.random.default_rng(3)
    counts = rng.poisson(2.0, (k, k)) + np.diag(np.full(k, 100))
    grads = rng.normal(size=(k, k))
    order = figures.class_order(names, hierarchy=tree)
    subset = figures.pick_classes(
        grads, limit=figures.MAX_HEATMAP_LIMIT, groups=tree.ancestor_at(1, names), order=order
    )
    rolled, groups = figures.rollup(counts, tree.ancestor_at(1, names))
    n = 50_000
    built = [
        figures.gradient_heatmap(grads, names, "Unlensed"),
        figures.gradient_heatmap(grads, names, "Unlensed", subset=subset),
        figures.confusion_heatmap(counts, names),
        figures.confusion_heatmap(counts, names, subset=subset, diagonal=False, log=True),
        figures.confusion_heatmap(rolled, groups),
        figures.lens_heatmap(ld.hierarchy_lens(names, tree, 5.0).matrix, names, subset=subset),
        figures.delta_histogram(torch.randn(n)),
        figures.loss_scatter(torch.rand(n), torch.rand(n), torch.randint(0, k, (n,)), names),
        figures.sample_gradient_heatmap(torch.randn(100, k), list(range(100)), names[:100], names, "t"),
    ]
    for fig in built:
        assert payload(fig) <= 2_000_000, fig.layout.title.text


def test_gradient_panel_can_leave_the_diagonal_out_and_fit_its_width():
    m = np.eye(80) * 0.9 + np.random.default_rng(4).normal(0, 0.01, (80, 80))
    names = [f"c{i}" for i in range(80)]
    fig = figures.gradient_heatmap(m, names, "Lensed", subset=range(80), diagonal=False, width=400)
    z = np.array(fig.data[0].z, dtype=float)
    assert np.isnan(np.diag(z)).all() and fig.data[0].zmax < 0.1 and "diagonal left out" in fig.layout.title.text
    narrow, wide = fig.layout.xaxis.tickvals, figures.gradient_heatmap(m, names, "t", width=1200).layout.xaxis.tickvals
    assert fig.layout.width == 400 and len(narrow) < len(wide) and len(fig.layout.yaxis.tickvals) > len(narrow)


LINK = '<a href="http://x">x</a>'
ESCAPED = "&lt;a href=&quot;http://x&quot;&gt;x&lt;/a&gt;"


def _strings(fig) -> list[str]:
    """Every string in the figure's JSON (axis values, tick text, hover text, titles)."""
    out: list[str] = []

    def walk(node) -> None:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)

    walk(json.loads(fig.to_json()))
    return out


def test_class_names_are_html_escaped_in_every_builder_once():
    names = [LINK, "b & c", "d"]
    k = len(names)
    m = torch.eye(k) * 0.5 + 0.1
    figs = [
        figures.gradient_heatmap(m, names, "g"),
        figures.confusion_heatmap(m, names),
        figures.confusion_heatmap(m, names, log=True, diagonal=False),
        figures.lens_heatmap(m, names),
        figures.sample_gradient_heatmap(m, [0, 1, 2], names, names, "s"),
        figures.loss_scatter(torch.rand(3), torch.rand(3), torch.tensor([0, 1, 2]), names),
    ]
    for fig in figs:
        strings = _strings(fig)
        joined = "\n".join(strings)
        assert "<a " not in joined and 'http://x">' not in joined  # never raw markup
        assert ESCAPED in joined  # the name is there, escaped once
        assert "&amp;lt;" not in joined and "&amp;quot;" not in joined  # not twice
        assert "b &amp; c" in joined


def test_short_tick_labels_never_cut_an_entity():
    long = "&" * 40
    fig = figures.confusion_heatmap(torch.eye(2), [long, "x"])
    ticks = fig.layout.yaxis.ticktext
    assert ticks[0] == "&amp;" * (figures.TICK_CHARS - 1) + "…"
