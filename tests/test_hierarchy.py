"""Hierarchy distances, soft-label lens, β solvers and metrics against references written here by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import lensdash as ld
from lensdash import InputError, LensError
from lensdash.hierarchy import Hierarchy, HierarchySums, as_hierarchy

#: CIFAR-100's 20 superclasses × 5 classes (the dataset's published coarse/fine mapping).
CIFAR100 = {
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}
#: CIFAR-100's fine labels in the dataset's order (alphabetical).
CIFAR_CLASSES = sorted(c for members in CIFAR100.values() for c in members)


def cifar() -> Hierarchy:
    return Hierarchy.from_nested(CIFAR100)


# ------------------------------------------------------------------ references, by walking the tree by hand


def ref_parents(h: Hierarchy) -> dict[str, str | None]:
    return {n: h.parent.get(n) for n in h.nodes}


def ref_heights(parents: dict[str, str | None]) -> dict[str, int]:
    """Height of every node: for each leaf, walk up and raise every ancestor to the edges walked so far."""
    has_child = {p for p in parents.values() if p is not None}
    height = dict.fromkeys(parents, 0)
    for leaf in (n for n in parents if n not in has_child):
        node, steps = leaf, 0
        while node is not None:
            height[node] = max(height[node], steps)
            node, steps = parents[node], steps + 1
    return height


def ref_distance(parents: dict[str, str | None], heights: dict[str, int], a: str, b: str) -> float:
    if a == b:
        return 0.0
    ancestors = []
    node: str | None = a
    while node is not None:
        ancestors.append(node)
        node = parents[node]
    node = b
    while node not in ancestors:
        node = parents[node]
    return float(heights[node])


def ref_distances(h: Hierarchy, classes: list[str]) -> torch.Tensor:
    parents = ref_parents(h)
    heights = ref_heights(parents)
    return torch.tensor([[ref_distance(parents, heights, a, b) for b in classes] for a in classes], dtype=torch.float64)


def paper_lens(d: np.ndarray, beta: float) -> np.ndarray:
    """Bertinetto et al. 2020, eq. for soft labels, written out with a loop."""
    k = d.shape[0]
    out = np.zeros((k, k))
    d_max = d.max()
    for y in range(k):
        weights = [math.exp(-beta * d[y, j] / d_max) for j in range(k)]
        out[y] = np.array(weights) / sum(weights)
    return out


@st.composite
def trees(draw, max_nodes: int = 40) -> Hierarchy:
    """Random trees, biased towards deep chains and unbalanced fans."""
    n = draw(st.integers(3, max_nodes))
    chainy = draw(st.booleans())
    parents: dict[str, str | None] = {"n0": None}
    for i in range(1, n):
        p = i - 1 if chainy and draw(st.booleans()) else draw(st.integers(0, i - 1))
        parents[f"n{i}"] = f"n{p}"
    return Hierarchy(parents)


# ------------------------------------------------------------------ the tree


def test_structure_of_a_small_tree():
    h = Hierarchy.from_nested({"vehicles": {"road": ["truck", "bus"]}, "animals": ["cat", "dog"]})
    assert h.root == "(root)" and h.leaves == ("truck", "bus", "cat", "dog")
    assert h.children["vehicles"] == ("road",) and h.parent["cat"] == "animals"
    assert (h.depth["truck"], h.height["vehicles"], h.height["(root)"], h.levels) == (3, 2, 3, (0, 1, 2, 3))
    assert h.path("bus") == ("(root)", "vehicles", "road", "bus")
    assert h.ancestor_at(0, ["bus"]) == ("(root)",) and h.ancestor_at(9, ["bus"]) == ("bus",)
    assert h.ancestor_at(-5, ["bus"]) == ("(root)",)
    assert h.groups_at(2, ["cat", "dog", "truck", "bus"]) == [("truck", "bus"), ("cat",), ("dog",)]
    assert h == Hierarchy.from_nested({"vehicles": {"road": ["truck", "bus"]}, "animals": ["cat", "dog"]})
    assert hash(h) == hash(Hierarchy(ref_parents(h)))
    assert "road" in h and len(h) == 8 and "8 nodes" in repr(h)


def test_virtual_root_does_not_collide():
    h = Hierarchy({"(root)": None, "a": "(root)", "b": None})
    assert h.root == "((root))" and h.parent["(root)"] == "((root))"


def test_cycles_and_limits_are_input_errors(monkeypatch):
    with pytest.raises(InputError, match=r"a cycle 'a' → 'b' → 'a'"):
        Hierarchy({"a": "b", "b": "a", "c": None})
    with pytest.raises(InputError, match=r"each node once in the hierarchy.*'x' twice"):
        Hierarchy.from_nested({"a": ["x"], "b": ["x"]})
    with pytest.raises(InputError, match=r"a node name .* found bool 'True'"):
        Hierarchy.from_nested({"a": ["b", True]})
    with pytest.raises(InputError, match="a non-empty node name"):
        Hierarchy.from_nested(["a", " "])
    monkeypatch.setattr("lensdash.hierarchy.MAX_DEPTH", 5)
    with pytest.raises(InputError, match="at most 5 levels deep"):
        Hierarchy({f"n{i}": (f"n{i - 1}" if i else None) for i in range(10)})
    with pytest.raises(InputError, match="nesting at most 5 levels deep"):
        Hierarchy.from_nested([[[[[[[[["a"]]]]]]]]])
    monkeypatch.setattr("lensdash.hierarchy.MAX_NODES", 3)
    with pytest.raises(InputError, match="at most 3 nodes"):
        Hierarchy({"a": None, "b": "a", "c": "a", "d": "a"})


def test_missing_classes_are_named_with_a_count():
    h = cifar()
    classes = [*CIFAR_CLASSES[:90], "Beaver", *[f"extra{i}" for i in range(9)]]
    message = h.explain_missing(classes)
    assert message is not None and message.startswith("10 of 100 classes are not in the hierarchy:")
    assert "'Beaver', 'extra0', 'extra1', 'extra2', 'extra3' and 5 more" in message
    assert "'Beaver' is there as 'beaver'" in message and "extra8" not in message
    assert h.explain_missing(CIFAR_CLASSES) is None
    with pytest.raises(InputError, match=r"every class of the predictions in the hierarchy, found 10 of 100 classes"):
        h.distances(classes)
    with pytest.raises(InputError, match="unique class names"):
        h.distances(["beaver", "beaver"])


# ------------------------------------------------------------------ distances


def test_cifar100_distances_against_the_hand_walk():
    h = cifar()
    d = h.distances(CIFAR_CLASSES)
    torch.testing.assert_close(d, ref_distances(h, CIFAR_CLASSES))
    i, j, o = CIFAR_CLASSES.index("beaver"), CIFAR_CLASSES.index("whale"), CIFAR_CLASSES.index("tulip")
    assert (d[i, j], d[i, o], d[i, i]) == (1, 2, 0)
    assert int((d == 1).sum()) == 100 * 4 and int((d == 2).sum()) == 100 * 95


@given(trees(), st.data())
def test_distances_on_random_deep_and_unbalanced_trees(h, data):
    nodes = list(h.nodes)
    classes = data.draw(st.lists(st.sampled_from(nodes), min_size=2, max_size=12, unique=True))
    d = h.distances(classes)
    torch.testing.assert_close(d, ref_distances(h, classes))
    torch.testing.assert_close(d, d.T)
    # An ultrametric: d(a, c) <= max(d(a, b), d(b, c)), what the fast metrics rely on.
    assert bool((d.unsqueeze(2) <= torch.maximum(d.unsqueeze(1), d.T.unsqueeze(0))).all())
    leaves = list(h.leaves)
    if len(leaves) >= 2:
        order = h.order(leaves)
        assert [leaves[i] for i in order] == list(h.leaves)


def test_nested_lists_keep_working_and_match_a_hierarchy():
    names = ["cat", "dog", "car", "bus", "truck", "tree"]
    nested = [["cat", "dog"], ["car", ["bus", "truck"]]]
    d = ld.hierarchy_distances(names, nested)
    explicit = Hierarchy.from_nested({"pets": ["cat", "dog"], "motor": ["car", {"big": ["bus", "truck"]}], "tree": []})
    torch.testing.assert_close(d, ld.hierarchy_distances(names, explicit))
    torch.testing.assert_close(d, ref_distances(explicit, names))
    assert as_hierarchy(explicit, names) is explicit
    with pytest.raises(LensError, match=r"a Hierarchy .* or nested lists"):
        ld.hierarchy_distances(names, "cat,dog")
    with pytest.raises(LensError, match="one of the class names"):
        ld.hierarchy_distances(names, [["cat", "lion"]])


# ------------------------------------------------------------------ lens and β


@pytest.mark.parametrize("beta", [0.0, 4.0, 15.0, 30.0])
def test_hierarchy_lens_is_the_papers_formula_on_cifar100(beta):
    h = cifar()
    lens = ld.hierarchy_lens(CIFAR_CLASSES, h, beta)
    d = ref_distances(h, CIFAR_CLASSES).numpy()
    np.testing.assert_allclose(lens.matrix.numpy(), paper_lens(d, beta), rtol=1e-12, atol=1e-15)
    assert lens.classes == tuple(CIFAR_CLASSES)


@given(trees(), st.floats(0.0, 40.0))
def test_hierarchy_lens_on_random_trees(h, beta):
    leaves = list(h.leaves)
    if len(leaves) < 2:
        return
    lens = ld.hierarchy_lens(leaves, h, beta)
    np.testing.assert_allclose(lens.matrix.numpy(), paper_lens(ref_distances(h, leaves).numpy(), beta), atol=1e-12)


def test_beta_for_mass_kept_and_in_group():
    h = cifar()
    d = h.distances(CIFAR_CLASSES)
    supers = h.ancestor_at(1, CIFAR_CLASSES)
    for mass in (0.2, 0.5, 0.9):
        beta = ld.beta_for_mass(d, mass)
        lens = paper_lens(d.numpy(), beta)
        assert np.diag(lens).mean() == pytest.approx(mass, rel=1e-7)
    beta = ld.beta_for_mass(d, 0.8, groups=supers)
    lens = paper_lens(d.numpy(), beta)
    same = np.array([[a == b for b in supers] for a in supers])
    assert (lens * same).sum(axis=1).mean() == pytest.approx(0.8, rel=1e-7)
    kept = [ld.mass_kept(d, b) for b in (0.0, 1.0, 4.0, 16.0, 64.0)]
    assert kept == sorted(kept) and kept[0] == pytest.approx(0.01)
    with pytest.raises(InputError, match=r"a share between 0.01 \(uniform rows\) and 1, found 0.005"):
        ld.beta_for_mass(d, 0.005)
    with pytest.raises(InputError, match=r"found 1.0"):
        ld.beta_for_mass(d, 1.0)
    with pytest.raises(InputError, match="100 group labels"):
        ld.mass_kept(d, 1.0, groups=["a"])
    with pytest.raises(InputError, match="K×K distance matrix"):
        ld.mass_kept(torch.zeros(3), 1.0)
    with pytest.raises(InputError, match="some positive"):
        ld.mass_kept(torch.zeros(3, 3), 1.0)


def test_default_beta_is_sensible_at_any_k():
    h = cifar()
    d = h.distances(CIFAR_CLASSES)
    beta = ld.default_beta(d)
    assert ld.mass_kept(d, beta) == pytest.approx(0.5, rel=1e-7)
    assert 4.0 <= beta <= 30.0  # inside the paper's range at K = 100
    two = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert ld.mass_kept(two, ld.default_beta(two)) == pytest.approx(0.75, rel=1e-7)
    flat = Hierarchy({f"c{i}": None for i in range(1000)})
    names = list(flat.leaves)
    assert ld.mass_kept(flat.distances(names), ld.default_beta(flat.distances(names))) == pytest.approx(0.5)


# ------------------------------------------------------------------ metrics


def ref_metrics(logits: torch.Tensor, labels: torch.Tensor, h: Hierarchy, classes: list[str], ks) -> dict:
    d = ref_distances(h, classes).numpy()
    p = torch.softmax(logits.double(), dim=1).numpy()
    x = logits.double().numpy()
    y = labels.numpy()
    n, k = x.shape
    pred = x.argmax(axis=1)
    risk = p @ d  # the plain N×K×K product the fast path avoids
    crm = risk.argmin(axis=1)
    out = {"n": float(n), "accuracy": float((pred == y).mean()), "crm_top1_accuracy": float((crm == y).mean())}
    wrong = pred != y
    out["mistake_severity"] = float(d[y[wrong], pred[wrong]].mean()) if wrong.any() else math.nan
    wrong = crm != y
    out["crm_mistake_severity"] = float(d[y[wrong], crm[wrong]].mean()) if wrong.any() else math.nan
    for kk in ks:
        if kk <= k:
            top = np.argsort(-x, axis=1, kind="stable")[:, :kk]
            out[f"hdist@{kk}"] = float(np.mean([d[y[i], top[i]].mean() for i in range(n)]))
    parents = ref_parents(h)
    deepest = max(len(h.path(c)) - 1 for c in classes)
    for level in range(1, deepest):

        def up(c: str, level: int = level) -> str:
            path = [c]
            while parents[path[-1]] is not None:
                path.append(parents[path[-1]])
            path.reverse()
            return path[min(level, len(path) - 1)]

        out[f"accuracy@level{level}"] = float(np.mean([up(classes[a]) == up(classes[b]) for a, b in zip(pred, y)]))
    return out


def assert_metrics_equal(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), key


def test_metrics_on_cifar100_against_the_reference():
    h = cifar()
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 100, (3000,), generator=gen)
    logits = torch.randn(3000, 100, generator=gen) * 2
    logits[torch.arange(3000), labels] += 3.0
    got = ld.hierarchy_metrics(logits, labels, h, CIFAR_CLASSES)
    assert_metrics_equal(got, ref_metrics(logits, labels, h, CIFAR_CLASSES, (1, 5, 20)))
    assert {"hdist@1", "hdist@5", "hdist@20", "accuracy@level1"} <= got.keys()
    assert got["hdist@1"] == pytest.approx(got["mistake_severity"] * (1 - got["accuracy"]))


@given(trees(max_nodes=30), st.integers(0, 2**31 - 1), st.integers(1, 40))
def test_metrics_on_random_trees_against_the_reference(h, seed, n):
    classes = list(h.leaves)
    if len(classes) < 2:
        return
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, len(classes), generator=gen, dtype=torch.float64) * 3
    labels = torch.randint(0, len(classes), (n,), generator=gen)
    got = ld.hierarchy_metrics(logits, labels, h, classes, ks=(1, 2, 5))
    assert_metrics_equal(got, ref_metrics(logits, labels, h, classes, (1, 2, 5)))


def test_cost_aware_decision_trades_accuracy_for_milder_mistakes():
    # The model spreads mass over one superclass but its top class is elsewhere: CRM picks inside the superclass.
    h = Hierarchy.from_nested({"a": ["a1", "a2", "a3"], "b": ["b1"]})
    probs = torch.tensor([[0.25, 0.25, 0.2, 0.3]])
    m = ld.hierarchy_metrics(probs.log(), torch.tensor([0]), h, ["a1", "a2", "a3", "b1"], ks=(1,))
    assert (m["accuracy"], m["crm_top1_accuracy"], m["mistake_severity"]) == (0.0, 1.0, 2.0)
    assert math.isnan(m["crm_mistake_severity"])


def test_streamed_sums_equal_the_whole():
    h = cifar()
    gen = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 100, (5000,), generator=gen)
    logits = torch.randn(5000, 100, generator=gen)
    whole = HierarchySums(h, CIFAR_CLASSES).add_(logits, labels)
    chunks = [HierarchySums(h, CIFAR_CLASSES) for _ in range(3)]
    for part, (x, y) in enumerate(zip(logits.split(777), labels.split(777))):
        chunks[part % 3].add_(x, y)
    summed = chunks[0]
    for other in chunks[1:]:
        summed.merge_(other)
    torch.testing.assert_close(summed.totals, whole.totals, rtol=1e-12, atol=1e-9)
    assert summed.result() == pytest.approx(whole.result())
    reduced = HierarchySums(h, CIFAR_CLASSES)
    for c in chunks:  # what an all-reduce of the totals vectors does
        reduced.totals += c.totals
    assert reduced.totals.dtype == torch.float64 and reduced.totals.dim() == 1


def test_metric_input_errors():
    h = cifar()
    sums = HierarchySums(h, CIFAR_CLASSES)
    with pytest.raises(InputError, match=r"logits of shape \(N, 100\)"):
        sums.add_(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(InputError, match="2 integer labels"):
        sums.add_(torch.zeros(2, 100), torch.zeros(2))
    with pytest.raises(InputError, match=r"row 2: expected labels in 0..99, found 100"):
        sums.add_(torch.zeros(2, 100), torch.tensor([0, 100]))
    with pytest.raises(InputError, match="at least 2 classes"):
        HierarchySums(h, ["beaver"])
    assert all(math.isnan(v) for k, v in sums.result().items() if k != "n")
    assert HierarchySums(h, CIFAR_CLASSES, ks=(1, 500)).ks == (1,)


@pytest.mark.parametrize("with_inner_classes", [False, True])
def test_tree_walk_decides_as_the_dense_product_at_large_k(with_inner_classes):
    """Above _DENSE_COST_CLASSES the cost-aware decision walks the tree: same costs and decisions as p @ D."""
    from benchmarks.hierarchy import wordnet_like
    from lensdash._hierarchy_metrics import _DENSE_COST_CLASSES, HierarchySums, _PathCosts

    h = ld.read_hierarchy(wordnet_like(300, seed=3))
    classes = list(h.leaves)
    if with_inner_classes:  # classes that are ancestors of other classes (d = the ancestor's height)
        classes = classes[:200] + [n for n in h.nodes if h.children[n]][3:40]
    assert len(classes) > _DENSE_COST_CLASSES
    d = ref_distances(h, classes)
    gen = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(600, len(classes), generator=gen, dtype=torch.float64) * 3, dim=1)
    p[:5] = 1.0 / len(classes)  # exact ties: every class has the same probability
    p[5:10] = 0.0
    p[5:10, [7, 11]] = 0.5  # two classes tied for the mass
    torch.testing.assert_close(torch.from_numpy(_PathCosts(h, classes)(p.numpy())).T, p @ d)
    sums = HierarchySums(h, classes)
    assert sums._path_costs is not None
    risk = (p @ d).numpy()
    near = risk <= risk.min(axis=1, keepdims=True) + 1e-10 * float(d.max())
    expected = near.argmax(axis=1)  # the lowest index among the (near-)minimal costs
    assert sums._cost_aware(p.log()).tolist() == expected.tolist()  # softmax(log p) = p
    assert (risk.argmin(axis=1)[10:] == expected[10:]).all()  # without ties, the plain argmin


@given(trees(max_nodes=30), st.data())
def test_tree_walk_costs_on_random_trees(h, data):
    from lensdash._hierarchy_metrics import _PathCosts

    classes = data.draw(st.lists(st.sampled_from(h.nodes), min_size=2, max_size=len(h.nodes), unique=True))
    p = torch.softmax(torch.randn(7, len(classes), dtype=torch.float64), dim=1)
    got = torch.from_numpy(_PathCosts(h, classes)(p.numpy())).T
    torch.testing.assert_close(got, p @ ref_distances(h, classes))


def test_hierarchy_preset_defaults_to_half_the_mass_on_the_true_class_at_any_k():
    from lensdash.examples import example_bytes
    from lensdash.presets import build_preset

    h = ld.read_hierarchy(example_bytes("cifar100_hierarchy.csv"))
    assert h == cifar()
    lens = build_preset("hierarchy soft labels", CIFAR_CLASSES, hierarchy=h)
    assert float(lens.matrix.diagonal().mean()) == pytest.approx(0.5, rel=1e-6)
    expected = paper_lens(ref_distances(h, CIFAR_CLASSES).numpy(), ld.default_beta(h.distances(CIFAR_CLASSES)))
    np.testing.assert_allclose(lens.matrix.numpy(), expected, rtol=1e-9)
    fixed = build_preset("hierarchy soft labels", CIFAR_CLASSES, hierarchy=h, beta=2.0)
    assert float(fixed.matrix.diagonal().mean()) < 0.1  # what the old fixed β = 2 did at K = 100
    typed = build_preset("hierarchy soft labels", list("abcdef"), groups=[["a", "b"], ["c", "d", "e"]])
    assert float(typed.matrix.diagonal().mean()) == pytest.approx(0.5, rel=1e-6)


@given(trees(max_nodes=30), st.integers(0, 2**31 - 1), st.integers(1, 60), st.floats(0.5, 8.0))
def test_tree_walk_metrics_on_random_trees_against_the_reference(h, seed, n, scale):
    """The large-K path (tree walk, and rows whose top class holds over half the mass decided without costs)
    forced on small trees, against the plain N×K×K reference; ``scale`` makes some rows confident, some not."""
    import lensdash._hierarchy_metrics as hm

    classes = list(h.leaves)
    if len(classes) < 2:
        return
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, len(classes), generator=gen, dtype=torch.float64) * scale
    labels = torch.randint(0, len(classes), (n,), generator=gen)
    dense = hm._DENSE_COST_CLASSES
    try:
        hm._DENSE_COST_CLASSES = 1
        sums = HierarchySums(h, classes, ks=(1, 2, 5))
    finally:
        hm._DENSE_COST_CLASSES = dense
    assert sums._path_costs is not None
    got = sums.add_(logits, labels).result()
    assert_metrics_equal(got, ref_metrics(logits, labels, h, classes, (1, 2, 5)))


def test_a_class_holding_over_half_the_mass_is_the_cost_aware_decision():
    """The shortcut's bound (2 p_a - 1) d(a, k) > 0: at p_a just above 1/2 the top class still wins; at exactly
    1/2 the costs decide (here the tie goes to the lower index, as the dense rule does)."""
    from benchmarks.hierarchy import wordnet_like

    h = ld.read_hierarchy(wordnet_like(300, seed=5))
    classes = list(h.leaves)
    d = ref_distances(h, classes)
    sums = HierarchySums(h, classes)
    assert sums._path_costs is not None
    gen = torch.Generator().manual_seed(3)
    p = torch.softmax(torch.randn(200, len(classes), generator=gen, dtype=torch.float64), dim=1) * 0.49
    top = torch.randint(0, len(classes), (200,), generator=gen)
    p[torch.arange(200), top] += 0.51 - 1e-12  # a little over half on a random class
    p[:20] = 0.0
    p[torch.arange(20), top[:20]] = 0.5  # exactly half: a tie with a class far away
    far = (top[:20] + len(classes) // 2) % len(classes)
    p[torch.arange(20), far] = 0.5
    risk = (p @ d).numpy()
    expected = (risk <= risk.min(axis=1, keepdims=True) + 1e-10 * float(d.max())).argmax(axis=1)
    got = sums._cost_aware(p.log(), p.argmax(dim=1).numpy())
    assert got.tolist() == expected.tolist()
    assert (got[20:] == top[20:].numpy()).all()
