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


# ------------------------------------------------- nn.CrossEntropyLoss parity


def _identity_case(data, dtype=torch.float64):
    """One random call of F.cross_entropy: shapes, weights, ignored positions, smoothing, reduction, target kind."""
    k = data.draw(st.integers(2, 7), label="K")
    n = data.draw(st.integers(1, 9), label="N")
    spatial = data.draw(st.lists(st.integers(1, 3), max_size=2), label="spatial dims")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, k, *spatial, generator=g, dtype=torch.float64) * 3).to(dtype)
    probabilities = data.draw(st.booleans(), label="probability targets")
    if probabilities:
        target = torch.softmax(torch.randn(n, k, *spatial, generator=g, dtype=torch.float64) * 2, 1).to(dtype)
    else:
        target = torch.randint(0, k, (n, *spatial), generator=g)
        ignored = torch.rand(target.shape, generator=g) < data.draw(st.sampled_from([0.0, 0.3]), label="ignored")
        target[ignored] = -100
    weight = torch.rand(k, generator=g, dtype=torch.float64).to(dtype) + 0.1 if data.draw(st.booleans()) else None
    kwargs = {
        "weight": weight,
        "reduction": data.draw(st.sampled_from(REDUCTIONS), label="reduction"),
        "label_smoothing": data.draw(st.sampled_from([0.0, 0.1, 0.35]), label="smoothing"),
    }
    return x, target, probabilities, kwargs


def _value_and_grad(fn, x, *args, **kwargs):
    xg = x.detach().clone().requires_grad_(True)
    out = fn(xg, *args, **kwargs)
    (grad,) = torch.autograd.grad(out.sum(), xg)
    return out.detach(), grad


@given(st.data())
def test_identity_lens_equals_cross_entropy_in_every_combination(data):
    x, target, probabilities, kwargs = _identity_case(data)
    k = x.shape[1]
    ref, ref_grad = _value_and_grad(F.cross_entropy, x, target, **kwargs)
    module = torch.nn.CrossEntropyLoss(**kwargs)
    # 'mean' over no counted sample (every label ignored) is nan, 0 / 0, in PyTorch: nan must match nan
    torch.testing.assert_close(module(x, target), ref, equal_nan=True)
    for fn in (ld.soft_target_cross_entropy, ld.prediction_lensed_cross_entropy, ld.lensed_cross_entropy):
        out, grad = _value_and_grad(fn, x, target, torch.eye(k, dtype=torch.float64), **kwargs)
        torch.testing.assert_close(grad, ref_grad, msg=fn.__name__)
        if fn is not ld.lensed_cross_entropy or not (probabilities or kwargs["label_smoothing"]):
            torch.testing.assert_close(out, ref, msg=fn.__name__, equal_nan=True)
    for cls in (ld.LensedCrossEntropyLoss, ld.PredictionLensedCrossEntropyLoss):
        out, grad = _value_and_grad(cls(ld.identity_lens(k), **kwargs).double(), x, target)
        torch.testing.assert_close(grad, ref_grad, msg=cls.__name__)


@given(st.data())
def test_kl_form_is_cross_entropy_minus_the_target_entropy(data):
    """Unweighted: KL(T || softmax) with T built by hand, against F.kl_div (independent of the CE form)."""
    x, target, probabilities, kwargs = _identity_case(data)
    kwargs["weight"] = None
    k, eps = x.shape[1], kwargs["label_smoothing"]
    lens = random_lens(k, generator=torch.Generator().manual_seed(k))
    flat_x = x.movedim(1, -1).reshape(-1, k)
    if probabilities:
        rows, keep = target.movedim(1, -1).reshape(-1, k) @ lens, torch.ones(flat_x.shape[0], dtype=torch.bool)
    else:
        flat_y = target.reshape(-1)
        keep = flat_y != -100
        rows = lens[flat_y.clamp_min(0)]
    lensed = (1 - eps) * rows + eps / k
    per_sample = F.kl_div(F.log_softmax(flat_x, 1), lensed, reduction="none").sum(1) * keep
    expected = {
        "none": per_sample.reshape(x.shape[0], *x.shape[2:]),
        "sum": per_sample.sum(),
        "mean": per_sample.sum() / keep.sum(),
    }[kwargs["reduction"]]
    torch.testing.assert_close(ld.lensed_cross_entropy(x, target, lens, **kwargs), expected)


@pytest.mark.parametrize("name", ["identity", "merge", "smoothing", "smooth+merge", "dense", "sparse-random"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_weighted_smoothed_lensed_losses_match_their_definitions(name, eps):
    k = 6
    lens = structured_lenses(k)[name]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, k, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (40,), generator=g)
    y[::5] = 7  # ignored
    w = torch.rand(k, generator=g, dtype=torch.float64) + 0.1
    keep = y != 7
    ys = y.clamp_max(k - 1)
    logp = F.log_softmax(x, 1)
    # PyTorch's weighting: the one-hot (here: lens) part by w[y], the uniform part by w[j].
    target_weighted = (1 - eps) * w[ys, None] * lens[ys] + eps / k * w
    soft = -(target_weighted * logp).sum(1) * keep
    pred = ((1 - eps) * w[ys] * forward_correction(x, ys, lens) - eps / k * (w * logp).sum(1)) * keep
    denominator = (w[ys] * keep).sum()
    for reduction in REDUCTIONS:
        expected_soft = {"none": soft, "sum": soft.sum(), "mean": soft.sum() / denominator}[reduction]
        expected_pred = {"none": pred, "sum": pred.sum(), "mean": pred.sum() / denominator}[reduction]
        kwargs = {"weight": w, "ignore_index": 7, "reduction": reduction, "label_smoothing": eps}
        torch.testing.assert_close(ld.soft_target_cross_entropy(x, y, lens, **kwargs), expected_soft)
        torch.testing.assert_close(ld.prediction_lensed_cross_entropy(x, y, lens, **kwargs), expected_pred)
        kl = ld.lensed_cross_entropy(x, y, lens, **kwargs)
        ce = ld.soft_target_cross_entropy(x, y, lens, **kwargs)
        smoothed = (1 - eps) * lens + eps / k
        negent = (torch.special.xlogy(target_weighted, smoothed[ys]).sum(1)) * keep
        expected_gap = {"none": negent, "sum": negent.sum(), "mean": negent.sum() / denominator}[reduction]
        torch.testing.assert_close(kl - ce, expected_gap)


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_probability_targets_are_lensed_as_t_times_c(eps):
    k = 5
    lens = random_lens(k, generator=torch.Generator().manual_seed(1))
    x = torch.randn(12, k, 3, dtype=torch.float64)
    t = torch.softmax(torch.randn(12, k, 3, dtype=torch.float64), 1)
    w = torch.rand(k, dtype=torch.float64) + 0.5
    lensed_t = torch.einsum("nkd,kj->njd", t, lens)
    for reduction in REDUCTIONS:
        kwargs = {"weight": w, "reduction": reduction, "label_smoothing": eps}
        torch.testing.assert_close(
            ld.soft_target_cross_entropy(x, t, lens, **kwargs), F.cross_entropy(x, lensed_t, **kwargs)
        )
    # Prediction side: sum over observed labels y of t_y (1-eps) w_y (-log (pC)_y), plus the smoothing term.
    flat_x, flat_t = x.movedim(1, -1).reshape(-1, k), t.movedim(1, -1).reshape(-1, k)
    logq = torch.log(torch.softmax(flat_x, 1) @ lens)
    smooth = -(w * F.log_softmax(flat_x, 1)).sum(1) * eps / k
    expected = (-(1 - eps) * (flat_t * w * logq).sum(1) + smooth).reshape(12, 3)
    torch.testing.assert_close(
        ld.prediction_lensed_cross_entropy(x, t, lens, weight=w, reduction="none", label_smoothing=eps), expected
    )


@pytest.mark.parametrize("name", ["identity", "smooth+merge", "dense"])
def test_gradcheck_new_paths(name):
    k = 4
    lens = structured_lenses(k)[name]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, k, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, k, (2, 2), generator=g)
    y[0, 1] = -100
    t = torch.softmax(torch.randn(2, k, 2, generator=g, dtype=torch.float64), 1)
    w = torch.rand(k, generator=g, dtype=torch.float64) + 0.1
    for fn in (ld.lensed_cross_entropy, ld.prediction_lensed_cross_entropy, ld.soft_target_cross_entropy):
        for target in (y, t):
            for reduction in ("mean", "none"):
                kwargs = {"weight": w, "reduction": reduction, "label_smoothing": 0.15}
                assert torch.autograd.gradcheck(
                    lambda v, fn=fn, target=target, kwargs=kwargs: fn(v, target, lens, **kwargs), (x,)
                )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32_and_return_the_input_dtype(dtype):
    x = torch.randn(30, 6, 4).to(dtype)
    y = torch.randint(0, 6, (30, 4))
    lens = ld.merge_lens(6, [[0, 1, 2]])
    for fn in (ld.lensed_cross_entropy, ld.prediction_lensed_cross_entropy):
        xg = x.clone().requires_grad_(True)
        out = fn(xg, y, lens, label_smoothing=0.1)
        out.backward()
        assert out.dtype == F.cross_entropy(x, y).dtype == dtype
        assert xg.grad.dtype == dtype
        x32 = x.float().requires_grad_(True)
        ref = fn(x32, y, lens, label_smoothing=0.1)
        ref.backward()
        torch.testing.assert_close(out.float(), ref, atol=1e-2, rtol=1e-2)
        torch.testing.assert_close(xg.grad.float(), x32.grad, atol=1e-3, rtol=2e-2)


def test_all_ignored_mean_is_nan_as_in_pytorch():
    x, y = torch.randn(3, 4), torch.full((3,), -100)
    assert torch.isnan(F.cross_entropy(x, y))
    assert torch.isnan(ld.lensed_cross_entropy(x, y, torch.eye(4)))
    assert ld.lensed_cross_entropy(x, y, torch.eye(4), reduction="sum") == 0


# ------------------------------------------- prediction side: zero probability


def test_prediction_side_gradient_where_the_true_class_has_probability_zero():
    x = torch.tensor([[0.0, -torch.inf, 1.0], [2.0, -torch.inf, -torch.inf]], requires_grad=True)
    y = torch.tensor([1, 2])
    out, grad = _value_and_grad(ld.prediction_lensed_cross_entropy, x, y, torch.eye(3), reduction="sum")
    ref, ref_grad = _value_and_grad(F.cross_entropy, x, y, reduction="sum")
    assert out == ref == torch.inf
    torch.testing.assert_close(grad, ref_grad)  # -1 at the true class, softmax elsewhere; no nan
    merged = ld.merge_lens(3, [[1, 2]]).matrix.float()
    _, grad = _value_and_grad(ld.prediction_lensed_cross_entropy, x[1:], y[1:], merged, reduction="sum")
    torch.testing.assert_close(grad, torch.tensor([[1.0, -0.5, -0.5]]))  # the posterior's limit: C[:, y] normalised
    from lensdash.analysis import per_sample_losses_and_gradients

    _, grad = per_sample_losses_and_gradients(x.detach(), y, torch.eye(3), family="prediction")
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad, ref_grad)


def test_prediction_side_probability_targets_where_the_true_class_has_probability_zero():
    x = torch.tensor([[0.0, -torch.inf, 1.0], [2.0, -torch.inf, -torch.inf]], requires_grad=True)
    y = torch.tensor([1, 2])
    for lens in (torch.eye(3), ld.merge_lens(3, [[1, 2]]).matrix.float()):
        out, grad = _value_and_grad(ld.prediction_lensed_cross_entropy, x, F.one_hot(y, 3).float(), lens)
        ref, ref_grad = _value_and_grad(ld.prediction_lensed_cross_entropy, x, y, lens)
        assert torch.isfinite(grad).all()  # was nan: 0 * (1 / 0)
        torch.testing.assert_close(grad, ref_grad)  # the class-index path's limit, C[:, y] normalised
        assert out == ref


# ------------------------------------------------------- compile, no host sync


def _training_step_parity(loss_fn, x, y, backend="aot_eager"):
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[-1], loss_fn.lens.shape[0]).double().to(x.device)

    def forward(inputs, targets):
        logits = model(inputs)
        if logits.dim() == 3:  # (N, d, K) -> (N, K, d)
            logits = logits.movedim(-1, 1)
        return loss_fn(logits, targets)

    eager = forward(x, y)
    eager.backward()
    eager_grad = model.weight.grad.clone()
    model.zero_grad()
    compiled = torch.compile(forward, fullgraph=True, backend=backend)(x, y)
    compiled.backward()
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(model.weight.grad, eager_grad)


@pytest.mark.parametrize("cls", [ld.LensedCrossEntropyLoss, ld.PredictionLensedCrossEntropyLoss])
def test_compiled_training_step_has_no_graph_break_and_matches_eager(cls):
    torch._dynamo.reset()
    lens = ld.merge_lens(4, [[0, 1]])
    loss_fn = cls(lens, weight=torch.rand(4) + 0.5, ignore_index=3, label_smoothing=0.1).double()
    x = torch.randn(16, 5, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (16, 5))
    _training_step_parity(loss_fn, x, y)
    _training_step_parity(cls(torch.eye(4)).double(), x[:, 0], y[:, 0])


def test_labels_are_checked_on_the_device_while_compiling():
    torch._dynamo.reset()
    fn = torch.compile(lambda x, y: ld.lensed_cross_entropy(x, y, torch.eye(3)), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(
        fn(torch.zeros(2, 3), torch.tensor([0, 2])), F.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 2]))
    )
    with pytest.raises(RuntimeError, match=r"class index outside 0\.\.2"):
        fn(torch.zeros(2, 3), torch.tensor([0, 3]))


def test_validate_args_false_skips_the_label_check():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 3])
    with pytest.raises(InputError, match="target row 4"):
        ld.lensed_cross_entropy(x, y, torch.eye(3))
    # Unchecked, a label out of range is never read out of bounds: it counts as ignored.
    expected = F.cross_entropy(x, torch.tensor([0, 1, 2, -100]))
    torch.testing.assert_close(ld.lensed_cross_entropy(x, y, torch.eye(3), validate_args=False), expected)
    torch.testing.assert_close(
        ld.lensed_cross_entropy(x, y, torch.eye(3), validate_args=False, compiled=True), expected
    )


def test_compiled_kernel_falls_back_to_eager_when_compiling_fails(monkeypatch):
    import lensdash._kernels as _kernels

    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler found")

        return run

    monkeypatch.setattr(_kernels, "_compiled", {})
    monkeypatch.setattr(_kernels, "_compile_failed", {})
    monkeypatch.setattr(torch, "compile", broken_compile)
    x, y = torch.randn(8, 4, requires_grad=True), torch.randint(0, 4, (8,))
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found"):
        out = ld.lensed_cross_entropy(x, y, SEED_LENS, compiled=True)
    torch.testing.assert_close(out, seed_lensed_cross_entropy(x, y, SEED_LENS))
    assert _kernels._target_index_kernel in _kernels._compile_failed
    ld.lensed_cross_entropy(x, y, SEED_LENS, compiled=True).backward()  # no second warning, eager from now on
    torch.testing.assert_close(x.grad, (torch.softmax(x, 1) - SEED_LENS[y]).detach() / 8)


# ------------------------------------------------------------------- snapshots


def test_a_lens_object_is_a_snapshot_of_its_source():
    source = torch.eye(4)
    lens = ld.Lens(source)
    x, y = torch.randn(8, 4), torch.randint(0, 4, (8,))
    before = ld.lensed_cross_entropy(x, y, lens)
    source.copy_(SEED_LENS)
    lens.matrix[0, 0] = 0.5  # writing into the returned tensor does not reach the lens
    torch.testing.assert_close(lens.matrix, torch.eye(4))
    torch.testing.assert_close(ld.lensed_cross_entropy(x, y, lens), before)
    torch.testing.assert_close(before, F.cross_entropy(x, y))


def test_a_plain_tensor_plan_is_rebuilt_after_an_in_place_edit():
    from lensdash._plan import plan_for

    lens = torch.eye(4)
    first = plan_for(lens, "target", 4, torch.float32, torch.device("cpu"))
    assert plan_for(lens, "target", 4, torch.float32, torch.device("cpu")) is first
    lens.copy_(SEED_LENS)
    second = plan_for(lens, "target", 4, torch.float32, torch.device("cpu"))
    assert second is not first
    assert first.dense is None and second.dense is not None  # identity is structured; the seed lens at K=4 is not
    lens[0, 0] = 5.0  # an edit into an invalid lens is refused, not used
    with pytest.raises(LensError, match="summing to 1"):
        ld.lensed_cross_entropy(torch.randn(2, 4), torch.tensor([0, 1]), lens)


# --------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "target", "match"),
    [
        ({"weight": torch.ones(4)}, torch.tensor([0, 1]), "weight as a floating-point tensor of 3"),
        ({"label_smoothing": 1.5}, torch.tensor([0, 1]), r"label_smoothing in \[0, 1\]"),
        ({}, torch.rand(2, 4), "probability targets shaped like the input"),
        ({}, torch.tensor([[0, 1]]), r"target of shape \(2,\)"),
        ({"ignore_index": 5}, torch.tensor([0, 3]), "class indices in 0..2"),
    ],
)
def test_new_argument_errors(kwargs, target, match):
    with pytest.raises(InputError, match=match):
        ld.lensed_cross_entropy(torch.randn(2, 3), target, torch.eye(3), **kwargs)


def test_spatial_label_error_names_the_position():
    y = torch.zeros(2, 3, dtype=torch.int64)
    y[1, 2] = 9
    with pytest.raises(InputError, match=r"target position \(2, 3\): expected class indices in 0..3, found 9"):
        ld.prediction_lensed_cross_entropy(torch.randn(2, 4, 3), y, torch.eye(4))


def test_module_argument_errors():
    with pytest.raises(InputError, match="weight as a tensor of 3"):
        ld.LensedCrossEntropyLoss(torch.eye(3), weight=torch.ones(2))
    with pytest.raises(InputError, match="label_smoothing"):
        ld.PredictionLensedCrossEntropyLoss(torch.eye(3), label_smoothing=-0.1)


def test_module_keeps_weights_in_state_dict_and_moves_them():
    loss_fn = ld.LensedCrossEntropyLoss(SEED_LENS, weight=torch.tensor([1.0, 2.0, 3.0, 4.0]), ignore_index=0)
    assert set(loss_fn.state_dict()) == {"lens", "weight"}
    assert loss_fn.double().weight.dtype == torch.float64
    assert "ignore_index=0" in repr(loss_fn)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_parity_with_every_argument():
    x = torch.randn(32, 6, 3, dtype=torch.float64)
    y = torch.randint(0, 6, (32, 3))
    y[::4] = -100
    w = torch.rand(6, dtype=torch.float64) + 0.1
    for fn in (ld.lensed_cross_entropy, ld.prediction_lensed_cross_entropy, ld.soft_target_cross_entropy):
        for lens in structured_lenses(6).values():
            kwargs = {"weight": w, "label_smoothing": 0.1}
            out, grad = _value_and_grad(fn, x, y, lens, **kwargs)
            out_c, grad_c = _value_and_grad(fn, x.cuda(), y.cuda(), lens.cuda(), weight=w.cuda(), label_smoothing=0.1)
            torch.testing.assert_close(out_c.cpu(), out)
            torch.testing.assert_close(grad_c.cpu(), grad)
    _, ref_grad = _value_and_grad(F.cross_entropy, x.cuda(), y.cuda(), weight=w.cuda(), label_smoothing=0.1)
    _, grad = _value_and_grad(
        ld.lensed_cross_entropy, x.cuda(), y.cuda(), torch.eye(6).cuda(), w.cuda(), label_smoothing=0.1, compiled=True
    )
    torch.testing.assert_close(grad, ref_grad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])  # inductor: the loss's Triton kernels
@pytest.mark.parametrize("cls", [ld.LensedCrossEntropyLoss, ld.PredictionLensedCrossEntropyLoss])
def test_cuda_compiled_training_step(backend, cls):
    torch._dynamo.reset()
    loss_fn = cls(ld.merge_lens(4, [[0, 1]]), label_smoothing=0.1).double().cuda()
    _training_step_parity(
        loss_fn, torch.randn(16, 6, dtype=torch.float64).cuda(), torch.randint(0, 4, (16,)).cuda(), backend
    )


def test_an_older_torch_is_said_at_import():
    """torch 2.11 compiled training steps through the loss got zero gradients: an older torch must not go unsaid."""
    import subprocess
    import sys

    code = (
        "import warnings, torch; torch.__version__ = '2.11.0+cu130'; warnings.simplefilter('error');\n"
        "try:\n    import lensdash\nexcept RuntimeWarning as w:\n    print('warned:', w)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "warned: lensdash needs torch>=2.13, found 2.11.0+cu130" in out
    same = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", "import lensdash"], capture_output=True, timeout=120
    )
    assert same.returncode == 0, same.stderr  # the pinned torch: no warning
