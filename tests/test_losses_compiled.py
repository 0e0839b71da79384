"""The ``compiled=True`` path of the losses: the fused pass as a ``torch.compile``'d kernel.

Values and gradients against ``F.cross_entropy`` (identity lens), the seed's formula and forward correction
(``reference.py``) and the eager kernels, for structured and dense lenses, weights, ignored labels, label
smoothing, reductions, spatial inputs, extreme logits and half inputs; ``gradcheck`` in float64. Each distinct lens
structure compiles once per process (seconds), so the cases share lenses and arguments where they can.
"""

import pytest
import torch
import torch.nn.functional as F
from reference import forward_correction, random_lens, seed_per_sample

import lensdash as ld
import lensdash._kernels as _kernels

K = 12
FAMILIES = {"target": ld.lensed_cross_entropy, "prediction": ld.prediction_lensed_cross_entropy}


@pytest.fixture(autouse=True)
def _compiles_every_case(monkeypatch):
    # More lens structures than dynamo's default of 8 graphs per function: without this, later cases would
    # silently run eager and test nothing compiled.
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 64)
    yield
    assert not _kernels._compile_failed, _kernels._compile_failed  # the compiled kernels ran, no fallback


def _lenses() -> dict[str, torch.Tensor]:
    return {
        "merge": ld.merge_lens(K, [[0, 1, 2], [5, 6]]).matrix.float(),  # structured, no background
        "smoothing": ld.smoothing_lens(K, 0.1).matrix.float(),  # structured, with a background
        "dense": random_lens(K, zeros=False, generator=torch.Generator().manual_seed(3)).float(),
    }


def _value_and_grad(fn, x, *args, **kwargs):
    x = x.detach().clone().requires_grad_(True)
    out = fn(x, *args, **kwargs)
    (out if out.dim() == 0 else out.sum()).backward()
    return out.detach(), x.grad


def _data(n=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, K, generator=gen) * 3
    y = torch.randint(0, K, (n,), generator=gen)
    return x, y


@pytest.mark.slow
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_identity_lens_compiled_equals_cross_entropy_with_every_argument(reduction):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, K, 5, generator=gen) * 2  # (N, K, d): a segmentation-shaped input
    y = torch.randint(0, K, (6, 5), generator=gen)
    y[0, :2] = 7  # ignored
    w = torch.rand(K, generator=gen) + 0.5
    kwargs = dict(weight=w, ignore_index=7, reduction=reduction, label_smoothing=0.1)
    expected, expected_grad = _value_and_grad(F.cross_entropy, x, y, **kwargs)
    out, grad = _value_and_grad(ld.soft_target_cross_entropy, x, y, torch.eye(K), compiled=True, **kwargs)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grad, expected_grad)
    # Both families with the identity lens and no smoothing are F.cross_entropy too.
    kwargs["label_smoothing"] = 0.0
    expected, expected_grad = _value_and_grad(F.cross_entropy, x, y, **kwargs)
    for fn in FAMILIES.values():
        out, grad = _value_and_grad(fn, x, y, torch.eye(K), compiled=True, **kwargs)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(grad, expected_grad)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["merge", "smoothing", "dense"])
def test_compiled_matches_the_seed_formula_and_forward_correction(name):
    lens = _lenses()[name]
    x, y = _data()
    for side, reference in (("target", seed_per_sample), ("prediction", forward_correction)):
        expected, expected_grad = _value_and_grad(lambda x, ref=reference: ref(x, y, lens).mean(), x)
        out, grad = _value_and_grad(FAMILIES[side], x, y, lens, compiled=True)
        torch.testing.assert_close(out, expected, msg=side)
        torch.testing.assert_close(grad, expected_grad, msg=side)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smoothing", "dense"])
def test_compiled_matches_eager_with_weights_ignored_labels_and_smoothing(name):
    lens = _lenses()[name]
    x, y = _data(seed=2)
    y[::7] = -100
    w = torch.rand(K, generator=torch.Generator().manual_seed(4)) + 0.5
    for side, fn in FAMILIES.items():
        kwargs = dict(weight=w, label_smoothing=0.2)
        expected, expected_grad = _value_and_grad(fn, x, y, lens, **kwargs)
        out, grad = _value_and_grad(fn, x, y, lens, compiled=True, **kwargs)
        torch.testing.assert_close(out, expected, msg=side)
        torch.testing.assert_close(grad, expected_grad, msg=side)


@pytest.mark.slow
def test_compiled_wide_support_lens_reads_the_dense_rows():
    # Supports wider than the compiled pass builds by compares (8) are read from a dense table instead.
    k = 48
    lens = ld.merge_lens(k, [list(range(10))]).matrix.float()
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(30, k, generator=gen) * 3, torch.randint(0, k, (30,), generator=gen)
    for side, reference in (("target", seed_per_sample), ("prediction", forward_correction)):
        expected, expected_grad = _value_and_grad(lambda x, ref=reference: ref(x, y, lens).sum(), x)
        out, grad = _value_and_grad(FAMILIES[side], x, y, lens, reduction="sum", compiled=True)
        torch.testing.assert_close(out, expected, msg=side)
        torch.testing.assert_close(grad, expected_grad, msg=side)


def test_compiled_extreme_logits_and_classes_with_probability_zero():
    lens = _lenses()["merge"]
    x, y = _data(n=8, seed=6)
    x[0] *= 1e4  # huge logits: log space keeps the loss finite
    x[1, 1:] = -torch.inf  # only class 0 possible
    y[1] = 5  # its true class has probability 0: loss inf, gradient finite
    x[2, 3] = -torch.inf
    for side, fn in FAMILIES.items():
        expected, expected_grad = _value_and_grad(fn, x, y, lens, reduction="none")
        out, grad = _value_and_grad(fn, x, y, lens, reduction="none", compiled=True)
        torch.testing.assert_close(out, expected, msg=side)
        torch.testing.assert_close(grad, expected_grad, msg=side)
        assert torch.isinf(out[1]) and torch.isfinite(out[[0, 2]]).all()
        assert torch.isfinite(grad).all()


def test_compiled_half_inputs_compute_in_float32():
    lens = _lenses()["smoothing"]
    x, y = _data(seed=7)
    for side, fn in FAMILIES.items():
        expected, expected_grad = _value_and_grad(fn, x.bfloat16().float(), y, lens)
        out, grad = _value_and_grad(fn, x.bfloat16(), y, lens, compiled=True)
        assert out.dtype == grad.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2, msg=side)
        torch.testing.assert_close(grad.float(), expected_grad, rtol=1e-2, atol=1e-3, msg=side)


@pytest.mark.slow
@pytest.mark.parametrize("side", ["target", "prediction"])
def test_compiled_gradcheck_float64(side):
    lens = ld.merge_lens(6, [[0, 1]]).matrix.double() * 0.9 + 0.1 / 6  # structured, with a background
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(7, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randint(0, 6, (7,), generator=gen)
    y[3] = -100
    w = torch.rand(6, dtype=torch.float64, generator=gen) + 0.5

    def loss(x):
        return FAMILIES[side](x, y, lens, weight=w, label_smoothing=0.1, compiled=True)

    assert torch.autograd.gradcheck(loss, (x,))


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("side", ["target", "prediction"])
def test_mean_over_no_counted_sample_is_nan_with_a_zero_gradient_as_in_pytorch(side, compiled):
    x = torch.randn(3, K, dtype=torch.float64)
    y = torch.full((3,), -100)
    ref, ref_grad = _value_and_grad(F.cross_entropy, x, y)
    for kwargs in ({}, {"weight": torch.rand(K, dtype=torch.float64) + 0.5, "label_smoothing": 0.1}):
        out, grad = _value_and_grad(FAMILIES[side], x, y, _lenses()["smoothing"].double(), compiled=compiled, **kwargs)
        assert torch.isnan(out) and torch.isnan(ref)
        torch.testing.assert_close(grad, ref_grad)
        assert not grad.any()


def test_compiled_prediction_side_with_a_background_is_summed_in_linear_space_and_stays_exact():
    # A structured lens whose columns all have a background (beta > 0): q = (p C)_y >= beta never underflows, so
    # the compiled pass sums it in linear space (one exponential per entry). Against the float64 forward correction,
    # with the true class's group far below the top logit, huge logits, impossible classes, weights and smoothing.
    lens = _lenses()["smoothing"] * 0.5 + ld.merge_lens(K, [[0, 1, 2], [5, 6]]).matrix.float() * 0.5
    x, y = _data(n=30, seed=9)
    x[0, 0], y[0] = 200.0, 5  # q_y is the background alone: the group of 5 is 200 below the top
    x[1] *= 1e4
    x[2, 1:] = -torch.inf
    y[3] = -100
    w = torch.rand(K, generator=torch.Generator().manual_seed(10)) + 0.5
    expected, expected_grad = _value_and_grad(
        lambda x: forward_correction(x.double(), y[:3], lens.double()).sum(), x[:3]
    )
    out, grad = _value_and_grad(FAMILIES["prediction"], x[:3], y[:3], lens, reduction="sum", compiled=True)
    torch.testing.assert_close(out.double(), expected)
    torch.testing.assert_close(grad, expected_grad)
    for kwargs in ({}, {"weight": w, "label_smoothing": 0.1, "reduction": "none"}):
        eager, eager_grad = _value_and_grad(FAMILIES["prediction"], x, y, lens, **kwargs)
        out, grad = _value_and_grad(FAMILIES["prediction"], x, y, lens, compiled=True, **kwargs)
        torch.testing.assert_close(out, eager)
        torch.testing.assert_close(grad, eager_grad)
        assert torch.isfinite(grad).all()


def test_compiled_prediction_side_with_one_class_per_label_needs_no_second_exponential_and_stays_exact():
    # Identity and relabelling lenses (one class leads to each y, no background): the posterior is 1 at that class.
    # Against F.cross_entropy of the relabelled logits, with huge logits and a true class of probability 0.
    order = torch.roll(torch.arange(K), 3)
    relabel = torch.eye(K)[order]  # C[i, order[i]] = 1: true label i is seen as order[i]
    x, y = _data(n=20, seed=11)
    x[0] *= 1e4
    x[1, 1:] = -torch.inf
    y[1] = 5  # its class has probability 0: loss inf, gradient finite
    w = torch.rand(K, generator=torch.Generator().manual_seed(12)) + 0.5
    # The prediction side's C maps clean classes to observed ones: with the relabel, q_y = p_{order^-1[y]}.
    for lens, clean in ((torch.eye(K), y), (relabel, torch.argsort(order)[y])):
        for kwargs in ({"reduction": "none"}, {"weight": w, "label_smoothing": 0.1, "reduction": "none"}):
            expected, expected_grad = _value_and_grad(F.cross_entropy, x[2:], clean[2:], **kwargs)
            out, grad = _value_and_grad(FAMILIES["prediction"], x, y, lens, compiled=True, **kwargs)
            if "weight" not in kwargs:
                torch.testing.assert_close(out[2:], expected)
                torch.testing.assert_close(grad[2:], expected_grad)
            eager, eager_grad = _value_and_grad(FAMILIES["prediction"], x, y, lens, **kwargs)
            torch.testing.assert_close(out, eager)
            torch.testing.assert_close(grad, eager_grad)
            assert torch.isinf(out[1]) and torch.isfinite(grad).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["relabel", "merge"])
def test_compiled_prediction_side_gradcheck_float64_without_a_background(name):
    # The two prediction-side passes without a background: one class per label (no second exponential) and a
    # merge lens (the posterior in log space).
    if name == "relabel":
        lens = torch.eye(6, dtype=torch.float64)[torch.roll(torch.arange(6), 2)]
    else:
        lens = ld.merge_lens(6, [[0, 1, 2]]).matrix.double()
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(7, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randint(0, 6, (7,), generator=gen)
    y[2] = -100
    w = torch.rand(6, dtype=torch.float64, generator=gen) + 0.5

    def loss(x):
        return FAMILIES["prediction"](x, y, lens, weight=w, label_smoothing=0.1, compiled=True)

    assert torch.autograd.gradcheck(loss, (x,))
