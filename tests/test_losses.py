import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from reference import forward_correction, random_lens, seed_lensed_cross_entropy, seed_per_sample

import lensdash as ld
from lensdash import InputError, LensError

SEED_LENS = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
REDUCTIONS = ["mean", "sum", "none"]


def structured_lenses(k):
    return {
        "identity": ld.identity_lens(k).matrix,
        "merge": ld.merge_lens(k, [[0, 1], list(range(2, min(k, 5)))]).matrix,
        "smoothing": ld.smoothing_lens(k, 0.1).matrix,
        "smooth+merge": 0.5 * ld.smoothing_lens(k, 0.2).matrix + 0.5 * ld.merge_lens(k, [[0, 1]]).matrix,
        "dense": random_lens(k, zeros=False),
        "sparse-random": random_lens(k),
    }


# ---------------------------------------------------------------- seed numbers


def test_seed_single_example_numbers():
    logq = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
    y = torch.tensor([0])
    torch.testing.assert_close(ld.lensed_cross_entropy(logq, y, torch.eye(4)), torch.tensor(0.9163), atol=5e-5, rtol=0)
    torch.testing.assert_close(ld.lensed_cross_entropy(logq, y, SEED_LENS), torch.tensor(0.3670), atol=5e-5, rtol=0)


def test_seed_five_class_example_rounded_inputs():
    x = torch.tensor([[0.5616, 0.8824, 0.8206, 0.0873, 0.4063]])
    out = ld.lensed_cross_entropy(x, torch.tensor([0]), torch.eye(5))
    torch.testing.assert_close(out, torch.tensor(1.6394), atol=1e-3, rtol=0)


def test_seed_lens_equals_seed_function_on_notebook_shapes():
    x = torch.rand(3, 4)
    y = torch.tensor([0, 2, 2])
    for size_average, reduction in [(True, "mean"), (False, "sum")]:
        torch.testing.assert_close(
            ld.lensed_cross_entropy(x, y, SEED_LENS, reduction=reduction),
            seed_lensed_cross_entropy(x, y, SEED_LENS, size_average=size_average),
        )


# ------------------------------------------------------------------ references


@pytest.mark.parametrize("k", [2, 7, 40])
@pytest.mark.parametrize("name", ["identity", "merge", "smoothing", "smooth+merge", "dense", "sparse-random"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_seed_reference_and_soft_target_cross_entropy(k, name, dtype):
    lens = structured_lenses(k)[name].to(dtype)
    x = torch.randn(33, k, dtype=dtype) * 3
    y = torch.randint(0, k, (33,))
    per_sample = seed_per_sample(x, y, lens)
    expected = {
        "none": per_sample,
        "sum": seed_lensed_cross_entropy(x, y, lens, False),
        "mean": seed_lensed_cross_entropy(x, y, lens),
    }
    for reduction in REDUCTIONS:
        torch.testing.assert_close(ld.lensed_cross_entropy(x, y, lens, reduction=reduction), expected[reduction])
        torch.testing.assert_close(
            ld.soft_target_cross_entropy(x, y, lens, reduction=reduction),
            F.cross_entropy(x, lens[y], reduction=reduction),
        )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_identity_equals_cross_entropy_hard_and_probability_targets(reduction):
    x = torch.randn(50, 9)
    y = torch.randint(0, 9, (50,))
    eye = torch.eye(9)
    out = ld.lensed_cross_entropy(x, y, eye, reduction=reduction)
    torch.testing.assert_close(out, F.cross_entropy(x, y, reduction=reduction))
    torch.testing.assert_close(out, F.cross_entropy(x, F.one_hot(y, 9).float(), reduction=reduction))
    torch.testing.assert_close(
        ld.prediction_lensed_cross_entropy(x, y, eye, reduction=reduction), F.cross_entropy(x, y, reduction=reduction)
    )


def test_smoothing_lens_matches_pytorch_label_smoothing_up_to_entropy():
    x = torch.randn(20, 6, dtype=torch.float64)
    y = torch.randint(0, 6, (20,))
    lens = ld.smoothing_lens(6, 0.1).matrix
    torch.testing.assert_close(ld.soft_target_cross_entropy(x, y, lens), F.cross_entropy(x, y, label_smoothing=0.1))


@pytest.mark.parametrize("name", ["identity", "merge", "smoothing", "smooth+merge", "dense", "sparse-random"])
def test_prediction_side_matches_definition(name):
    lens = structured_lenses(12)[name]
    x = torch.randn(40, 12, dtype=torch.float64)
    y = torch.randint(0, 12, (40,))
    torch.testing.assert_close(
        ld.prediction_lensed_cross_entropy(x, y, lens, reduction="none"), forward_correction(x, y, lens)
    )


def test_gradient_is_softmax_minus_lens_row():
    x = torch.randn(10, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (10,))
    ld.lensed_cross_entropy(x, y, SEED_LENS.double()).backward()
    torch.testing.assert_close(x.grad, (torch.softmax(x, 1) - SEED_LENS.double()[y]).detach() / 10)


def test_prediction_side_accepts_any_split_between_merged_classes():
    lens = ld.merge_lens(3, [[0, 1]]).matrix
    y = torch.tensor([0, 0, 0])
    splits = torch.log(torch.tensor([[0.98, 0.01, 0.01], [0.495, 0.495, 0.01], [0.01, 0.98, 0.01]]))
    pred = ld.prediction_lensed_cross_entropy(splits, y, lens, reduction="none")
    torch.testing.assert_close(pred, torch.full((3,), -torch.log(torch.tensor(0.495)).item()))
    target = ld.lensed_cross_entropy(splits, y, lens, reduction="none")
    assert target[1] < target[0] and target[1] < target[2]


# ---------------------------------------------------------- extreme values


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["identity", "merge", "smoothing", "dense"])
def test_logits_up_to_1e4_stay_finite_and_accurate(dtype, name):
    lens = structured_lenses(16)[name]
    x64 = (torch.rand(64, 16, dtype=torch.float64) * 2 - 1) * 1e4
    y = torch.randint(0, 16, (64,))
    for fn, ref in [(ld.lensed_cross_entropy, seed_per_sample), (ld.prediction_lensed_cross_entropy, None)]:
        xin = x64.to(dtype).requires_grad_(True)
        out = fn(xin, y, lens.to(dtype), reduction="none")
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(xin.grad).all()
        truth = fn(x64.to(dtype).double(), y, lens, reduction="none")
        if ref is not None:
            torch.testing.assert_close(truth, ref(x64.to(dtype).double(), y, lens))
        eps = torch.finfo(dtype).eps
        torch.testing.assert_close(out.double(), truth, rtol=8 * eps, atol=8 * eps * 1e4)


def test_zero_probability_gives_inf_where_the_lens_needs_it_and_finite_elsewhere():
    logits = torch.log(torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    y = torch.tensor([0, 0, 2])
    lens = ld.merge_lens(3, [[0, 1]]).matrix
    out = ld.lensed_cross_entropy(logits, y, lens, reduction="none")
    torch.testing.assert_close(out[:2], torch.tensor([0.0, torch.inf]))
    assert out[2] == torch.inf
    dense = ld.lensed_cross_entropy(logits, y, random_lens(3, zeros=False).float(), reduction="none")
    assert torch.isinf(dense).all()
    pred = ld.prediction_lensed_cross_entropy(logits, y, lens, reduction="none")
    torch.testing.assert_close(pred[:2], torch.log(torch.tensor([2.0, 2.0])))
    assert pred[2] == torch.inf


# ------------------------------------------------------------- properties

dims = st.tuples(
    st.integers(2, 64), st.integers(1, 256), st.sampled_from([1.0, 10.0, 1e2, 1e4]), st.integers(0, 2**31 - 1)
)


@given(dims)
def test_properties(params):
    k, n, scale, seed = params
    g = torch.Generator().manual_seed(seed)
    lens = random_lens(k, generator=g)
    x = (torch.rand(n, k, generator=g, dtype=torch.float64) * 2 - 1) * scale
    y = torch.randint(0, k, (n,), generator=g)
    eye = torch.eye(k, dtype=torch.float64)
    torch.testing.assert_close(
        ld.lensed_cross_entropy(x, y, eye, reduction="none"), F.cross_entropy(x, y, reduction="none")
    )
    kl = ld.lensed_cross_entropy(x, y, lens, reduction="none")
    assert (kl >= -1e-9 * scale).all()
    ce = ld.soft_target_cross_entropy(x, y, lens, reduction="none")
    entropy = -torch.special.xlogy(lens, lens).sum(1)[y]
    torch.testing.assert_close(ce - kl, entropy, atol=1e-9 * scale * k, rtol=1e-9)
    torch.testing.assert_close(kl.mean(), ld.lensed_cross_entropy(x, y, lens, reduction="mean"))
    xg = x.clone().requires_grad_(True)
    ld.lensed_cross_entropy(xg, y, lens, reduction="sum").backward()
    torch.testing.assert_close(xg.grad.sum(1), torch.zeros(n, dtype=torch.float64), atol=1e-10, rtol=0)
    xg.grad = None
    ld.prediction_lensed_cross_entropy(xg, y, lens, reduction="sum").backward()
    torch.testing.assert_close(xg.grad.sum(1), torch.zeros(n, dtype=torch.float64), atol=1e-10, rtol=0)


@given(st.integers(2, 32), st.integers(1, 64), st.integers(0, 2**31 - 1))
def test_kl_is_zero_when_softmax_equals_lens_row(k, n, seed):
    g = torch.Generator().manual_seed(seed)
    lens = random_lens(k, generator=g, zeros=False)
    y = torch.randint(0, k, (n,), generator=g)
    x = torch.log(lens[y]) + torch.randn(n, 1, generator=g, dtype=torch.float64)  # shift-invariant
    torch.testing.assert_close(
        ld.lensed_cross_entropy(x, y, lens, reduction="none"), torch.zeros(n, dtype=torch.float64)
    )


@pytest.mark.parametrize("name", ["identity", "merge", "smoothing", "smooth+merge", "dense", "sparse-random"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_both_families(name, reduction):
    lens = structured_lenses(6)[name]
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 6, (5,))
    assert torch.autograd.gradcheck(lambda t: ld.lensed_cross_entropy(t, y, lens, reduction=reduction), (x,))
    assert torch.autograd.gradcheck(lambda t: ld.prediction_lensed_cross_entropy(t, y, lens, reduction=reduction), (x,))
    assert torch.autograd.gradcheck(lambda t: ld.soft_target_cross_entropy(t, y, lens, reduction=reduction), (x,))


# ---------------------------------------------------------------- structure


def test_in_place_edit_of_a_plain_tensor_lens_is_seen():
    lens = torch.eye(4)
    x, y = torch.randn(8, 4), torch.randint(0, 4, (8,))
    before = ld.lensed_cross_entropy(x, y, lens)
    lens.copy_(SEED_LENS)
    after = ld.lensed_cross_entropy(x, y, lens)
    torch.testing.assert_close(before, F.cross_entropy(x, y))
    torch.testing.assert_close(after, seed_lensed_cross_entropy(x, y, SEED_LENS))


def test_structured_plan_is_chosen_for_structured_lenses():
    from lensdash._plan import plan_for

    k = 100
    for name in ["identity", "merge", "smoothing", "smooth+merge"]:
        plan = plan_for(structured_lenses(k)[name].float(), "target", k, torch.float32, torch.device("cpu"))
        assert plan.dense is None, name
        assert plan.idx.shape[1] <= 3, name
    dense = plan_for(random_lens(k, zeros=False).float(), "target", k, torch.float32, torch.device("cpu"))
    assert dense.dense is not None


# -------------------------------------------------------------------- module


def test_module_is_a_drop_in_and_keeps_the_lens_in_state_dict():
    loss_fn = ld.LensedCrossEntropyLoss(SEED_LENS)
    assert "lens" in loss_fn.state_dict()
    x, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    torch.testing.assert_close(loss_fn(x, y), seed_lensed_cross_entropy(x, y, SEED_LENS))
    clone = ld.LensedCrossEntropyLoss(torch.eye(4))
    clone.load_state_dict(loss_fn.state_dict())
    torch.testing.assert_close(clone(x, y), loss_fn(x, y))
    assert loss_fn.double().lens.dtype == torch.float64
    pred = ld.PredictionLensedCrossEntropyLoss(ld.merge_lens(4, [[0, 1]]), reduction="none")
    torch.testing.assert_close(pred(x.double(), y), forward_correction(x.double(), y, SEED_LENS.double()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    for name, lens in structured_lenses(10).items():
        x = torch.randn(64, 10, dtype=torch.float64, requires_grad=True)
        y = torch.randint(0, 10, (64,))
        for fn in (ld.lensed_cross_entropy, ld.prediction_lensed_cross_entropy):
            xc = x.detach().cuda().requires_grad_(True)
            out_c = fn(xc, y.cuda(), lens.cuda())
            out_c.backward()
            out = fn(x, y, lens)
            out.backward()
            torch.testing.assert_close(out_c.cpu(), out, msg=name)
            torch.testing.assert_close(xc.grad.cpu(), x.grad, msg=name)
            x.grad = None
        module = ld.LensedCrossEntropyLoss(lens).cuda()
        assert module.lens.is_cuda


# --------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("input", "target", "match"),
    [
        (torch.randn(3), torch.tensor([0, 1, 2]), "N×K tensor"),
        (torch.randint(0, 3, (3, 3)), torch.tensor([0, 1, 2]), "floating-point"),
        (torch.randn(3, 1), torch.tensor([0, 0, 0]), "at least 2 classes"),
        (torch.randn(3, 3), torch.tensor([0, 1, 2], dtype=torch.int32), "int64"),
        (torch.randn(3, 3), torch.tensor([0, 1]), "3 labels"),
        (torch.randn(3, 3), torch.tensor([0, 3, 1]), r"target row 2: expected class indices in 0\.\.2, found 3"),
        (torch.randn(3, 3), torch.tensor([0, -1, 1]), "subtract 1"),
    ],
)
def test_input_errors(input, target, match):
    with pytest.raises(InputError, match=match):
        ld.lensed_cross_entropy(input, target, torch.eye(3))


def test_unknown_reduction():
    with pytest.raises(InputError, match="reduction in"):
        ld.lensed_cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), torch.eye(3), reduction="batchmean")
    with pytest.raises(InputError, match="reduction in"):
        ld.LensedCrossEntropyLoss(torch.eye(3), reduction="avg")


def test_lens_of_the_wrong_size():
    with pytest.raises(LensError, match=r"a 3×3 lens"):
        ld.lensed_cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), torch.eye(4))
    with pytest.raises(LensError, match=r"a 3×3 lens"):
        ld.prediction_lensed_cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), ld.identity_lens(4))
