import math

import numpy as np
import pytest
import torch

import lensdash as ld
from lensdash import LensError


def test_validate_accepts_lists_numpy_and_lens_objects():
    for value in ([[1, 0], [0, 1]], np.eye(2), torch.eye(2), ld.identity_lens(2)):
        assert ld.validate_lens(value).shape == (2, 2)


@pytest.mark.parametrize(
    ("lens", "match"),
    [
        ([[1.0, 0.0, 0.0]], r"expected a square K×K matrix, found shape \(1, 3\)"),
        ([1.0, 0.0], r"square K×K matrix, found shape \(2,\)"),
        ([[1.0]], r"at least 2 classes, found K=1"),
        ([[1.0, math.nan], [0.0, 1.0]], r"lens row 1, column 2: expected a finite number, found nan"),
        ([[1.0, 0.0], [math.inf, 1.0]], r"lens row 2, column 1: expected a finite number, found inf"),
        ([[1.2, -0.2], [0.0, 1.0]], r"lens row 1, column 2: expected a non-negative entry, found -0.2"),
        ([[1.0, 0.0], [0.0, 0.0]], r"lens row 2: expected a row with some positive weight, found a row of zeros"),
        ([[0.5, 0.4], [0.0, 1.0]], r"lens row 1: expected a row summing to 1 \(within 0.001\), found a sum of 0.9"),
        ("abc", r"expected a K×K matrix of numbers"),
    ],
)
def test_validation_errors(lens, match):
    with pytest.raises(LensError, match=match):
        ld.validate_lens(lens)


def test_wrong_k_and_tolerance():
    with pytest.raises(LensError, match=r"expected a 3×3 lens .* found 2×2"):
        ld.validate_lens(torch.eye(2), 3)
    ld.validate_lens([[0.333, 0.333, 0.334]] * 3)
    ld.validate_lens([[0.5, 0.4995], [0, 1]])
    with pytest.raises(LensError, match="summing to 1"):
        ld.validate_lens([[0.5, 0.4995], [0, 1]], atol=1e-4)


def test_lens_errors_are_value_errors():
    assert issubclass(LensError, ValueError) and issubclass(ld.InputError, ValueError)


def test_normalize():
    out = ld.normalize_lens([[2.0, 2.0], [1.0, 3.0]])
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=torch.float64))
    with pytest.raises(LensError, match="row of zeros"):
        ld.normalize_lens([[0.0, 0.0], [1.0, 3.0]])
    with pytest.raises(LensError, match="non-negative"):
        ld.normalize_lens([[-1.0, 2.0], [1.0, 3.0]])


def test_lens_object_names_and_errors():
    lens = ld.Lens(torch.eye(3), ["a", "b", "c"])
    assert lens.classes == ("a", "b", "c") and lens.is_identity()
    assert "K=3" in repr(lens)
    assert lens == ld.identity_lens(["a", "b", "c"])
    with pytest.raises(LensError, match=r"expected 3 class names \(one per lens row\), found 2"):
        ld.Lens(torch.eye(3), ["a", "b"])
    with pytest.raises(LensError, match=r"class 1 and class 3: expected unique class names, found 'a' twice"):
        ld.Lens(torch.eye(3), ["a", "b", "a"])
    with pytest.raises(LensError, match="at least 2 classes"):
        ld.identity_lens(1)
    assert lens.to(torch.float32).matrix.dtype == torch.float32


def test_identity_uniform_smoothing():
    torch.testing.assert_close(ld.identity_lens(3).matrix, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(ld.uniform_lens(4).matrix, torch.full((4, 4), 0.25, dtype=torch.float64))
    s = ld.smoothing_lens(5, 0.1).matrix
    torch.testing.assert_close(s.diagonal(), torch.full((5,), 0.92, dtype=torch.float64))
    torch.testing.assert_close(s[0, 1], torch.tensor(0.02, dtype=torch.float64))
    with pytest.raises(LensError, match=r"expected epsilon in \[0, 1\], found 1.5"):
        ld.smoothing_lens(3, 1.5)


def test_merge_lens_is_the_seed_lens():
    seed = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(ld.merge_lens(4, [[0, 1]]).matrix, seed)
    named = ld.merge_lens(["cat", "dog", "car"], [["cat", "dog"]])
    torch.testing.assert_close(named.matrix[:2, :2], torch.full((2, 2), 0.5, dtype=torch.float64))
    three = ld.merge_lens(6, [[0, 1, 2], [4, 5]]).matrix
    torch.testing.assert_close(three[1, :3], torch.full((3,), 1 / 3, dtype=torch.float64))
    with pytest.raises(LensError, match=r"expected each class in at most one group, found 'b' in groups 1 and 2"):
        ld.merge_lens(["a", "b", "c"], [["a", "b"], ["b", "c"]])
    with pytest.raises(LensError, match=r"group 1: expected one of the class names .* found 'z'"):
        ld.merge_lens(["a", "b"], [["a", "z"]])
    with pytest.raises(LensError, match=r"group 1: expected a class index in 0..1, found 5"):
        ld.merge_lens(2, [[0, 5]])


def test_distance_and_hierarchy_lenses():
    d = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
    lens = ld.distance_lens(d, beta=1.0).matrix
    expected = torch.exp(-d.double())
    torch.testing.assert_close(lens, expected / expected.sum(1, keepdim=True))
    torch.testing.assert_close(
        ld.distance_lens(d, beta=100.0).matrix, torch.eye(3, dtype=torch.float64), atol=1e-40, rtol=0
    )
    with pytest.raises(
        LensError, match=r"distance row 1, column 2: expected a finite, non-negative distance value, found -1"
    ):
        ld.distance_lens([[0, -1], [1, 0]], 1.0)
    with pytest.raises(LensError, match="beta >= 0"):
        ld.distance_lens(d, -1.0)
    with pytest.raises(LensError, match="square K×K distance"):
        ld.distance_lens([[0, 1]], 1.0)
    h = ld.hierarchy_distances(["cat", "dog", "car", "bus", "truck"], [["cat", "dog"], ["car", ["bus", "truck"]]])
    assert h[0, 1] == 1 and h[3, 4] == 1 and h[2, 3] == 2 and h[0, 3] == 3
    torch.testing.assert_close(h, h.T)
    hl = ld.hierarchy_lens(["cat", "dog", "car"], [["cat", "dog"]], beta=1.0).matrix
    assert hl[0, 1] > hl[0, 2]
    with pytest.raises(LensError, match="each class once in the hierarchy"):
        ld.hierarchy_distances(["a", "b"], [["a", "a"]])


def test_confusion_lens():
    lens = ld.confusion_lens([[8, 2, 0], [0, 0, 0], [1, 1, 2]], alpha=0.5).matrix
    torch.testing.assert_close(lens[0], torch.tensor([0.9, 0.1, 0.0], dtype=torch.float64))
    torch.testing.assert_close(lens[1], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(lens[2], torch.tensor([0.125, 0.125, 0.75], dtype=torch.float64))
    with pytest.raises(LensError, match=r"alpha in \[0, 1\]"):
        ld.confusion_lens(np.eye(2), 2.0)
    with pytest.raises(LensError, match=r"confusion row 1, column 2: expected a finite, non-negative confusion value"):
        ld.confusion_lens([[1, -1], [0, 1]], 0.5)
    with pytest.raises(LensError, match="square K×K confusion"):
        ld.confusion_lens([[1, 1]], 0.5)


def test_expand_and_align():
    small = ld.Lens([[0.5, 0.5], [0.5, 0.5]], classes=["b", "c"])
    full = ld.expand_lens(small, ["a", "b", "c", "d"])
    assert full.classes == ("a", "b", "c", "d")
    torch.testing.assert_close(full.matrix[1], torch.tensor([0, 0.5, 0.5, 0], dtype=torch.float64))
    torch.testing.assert_close(full.matrix[3], torch.tensor([0, 0, 0, 1.0], dtype=torch.float64))
    with pytest.raises(LensError, match=r"found unknown \['z'\]"):
        ld.expand_lens(ld.Lens(torch.eye(2), ["a", "z"]), ["a", "b"])
    reordered, note = ld.align_lens(ld.Lens([[1, 0], [0.5, 0.5]], ["y", "x"]), ["x", "y"])
    torch.testing.assert_close(reordered.matrix, torch.tensor([[0.5, 0.5], [0, 1.0]], dtype=torch.float64))
    assert "reordered" in note
    _same, note = ld.align_lens(ld.identity_lens(["x", "y"]), ["x", "y"])
    assert note is None
    expanded, note = ld.align_lens(small, ["a", "b", "c"])
    assert "covers 2 of 3" in note and expanded.num_classes == 3


def test_lens_matrix_is_the_one_conversion():
    lens = ld.Lens([[0.5, 0.5], [0.0, 1.0]], classes=["a", "b"])
    for form in (lens, lens.matrix, lens.matrix.tolist(), lens.matrix.numpy()):
        out = ld.lens_matrix(form, 2, dtype=torch.float32)
        torch.testing.assert_close(out, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    own = ld.lens_matrix(lens)
    own[0, 0] = 9.0  # a Lens never hands out its own storage
    assert lens.matrix[0, 0] == 0.5
    with pytest.raises(LensError, match=r"a 3×3 lens"):
        ld.lens_matrix(lens, 3)
    with pytest.raises(LensError, match="summing to 1"):
        ld.lens_matrix([[0.5, 0.4], [0.0, 1.0]])


def test_lens_is_an_immutable_snapshot():
    source = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    lens = ld.Lens(source)
    source[0] = torch.tensor([1.0, 0.0])
    view = lens.matrix
    view[1, 1] = 7.0
    torch.testing.assert_close(lens.matrix, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    assert lens == ld.Lens([[0.5, 0.5], [0.0, 1.0]])
    assert not lens.is_identity() and ld.identity_lens(3).is_identity()


def test_families_are_named_once():
    from lensdash import analysis, cli
    from lensdash.families import FAMILIES, FAMILY_NAMES, family
    from lensdash.losses import lensed_cross_entropy, prediction_lensed_cross_entropy

    assert FAMILY_NAMES == ("target", "prediction")
    assert {"target": lensed_cross_entropy, "prediction": prediction_lensed_cross_entropy} == analysis.FAMILIES
    assert analysis._family("prediction") is prediction_lensed_cross_entropy
    family_action = next(
        a for a in cli._parser()._subparsers._group_actions[0].choices["report"]._actions if a.dest == "family"
    )
    assert tuple(family_action.choices) == FAMILY_NAMES
    assert all(FAMILIES[name].label for name in FAMILY_NAMES)
    with pytest.raises(ld.InputError, match="lens family"):
        family("both")
