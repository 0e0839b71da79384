"""Probability targets on the prediction side stay finite and exact where ``(softmax(x) C)_y`` underflows.

``-log q_y`` is finite for any finite logits, but ``q = softmax(x) C`` underflows to 0 once every class leading to
``y`` is ~100 (float32) or ~745 (float64) below the top logit; those pairs are computed again in log space.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.testing import assert_close

import lensdash._kernels as kernels
from lensdash import merge_lens, prediction_lensed_cross_entropy


def _reference(x: torch.Tensor, t: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """Mean over samples of -sum_y t_y log((softmax(x) C)_y), in float64 log space (a plain N×K×K sum)."""
    log_p = torch.log_softmax(x.double(), dim=1)
    log_q = torch.logsumexp(log_p.unsqueeze(2) + torch.log(lens.double()).unsqueeze(0), dim=1)
    return -(torch.where(t > 0, t.double() * log_q, 0.0)).sum(dim=1).mean()


def test_identity_lens_equals_cross_entropy_past_float32_underflow():
    x = torch.tensor([[0.0, -200.0, 3.0], [1.0, 2.0, -150.0], [0.0, 0.0, 0.0]], requires_grad=True)
    t = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    loss = prediction_lensed_cross_entropy(x, t, torch.eye(3))
    loss.backward()
    x_ref = x.detach().clone().requires_grad_()
    ref = F.cross_entropy(x_ref, t)
    ref.backward()
    assert torch.isfinite(loss)
    assert_close(loss, ref)
    assert_close(x.grad, x_ref.grad)


def test_float64_past_its_own_underflow_and_gradcheck():
    x = torch.tensor([[0.0, -800.0, 1.0], [-900.0, 0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0.25, 0.5, 0.25], [0.6, 0.0, 0.4]], dtype=torch.float64)
    lens = torch.tensor([[0.7, 0.3, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    assert_close(prediction_lensed_cross_entropy(x, t, lens), _reference(x.detach(), t, lens))
    assert torch.autograd.gradcheck(lambda z: prediction_lensed_cross_entropy(z, t, lens), (x,))


def test_a_merge_lens_whose_group_is_far_below_the_top(monkeypatch):
    lens = merge_lens(["a", "b", "c", "d"], [["a", "b"]])
    x = torch.tensor([[10.0, -190.0, -195.0, 0.0], [0.0, 1.0, -300.0, -310.0], [2.0, 1.0, 0.0, -1.0]])
    t = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.1, 0.1, 0.4, 0.4], [0.25, 0.25, 0.25, 0.25]])
    expected = _reference(x, t, lens.matrix)
    for cells in (1, 4, 1 << 20):  # one pair per block, a pair per row, everything at once
        monkeypatch.setattr(kernels, "_UNDERFLOW_BLOCK_CELLS", cells)
        xg = x.clone().requires_grad_()
        loss = prediction_lensed_cross_entropy(xg, t, lens)
        loss.backward()
        assert_close(loss.double(), expected, rtol=1e-5, atol=1e-4)
        x64 = x.double().requires_grad_()
        _reference(x64, t, lens.matrix).backward()
        assert_close(xg.grad.double(), x64.grad, rtol=1e-4, atol=1e-6)
