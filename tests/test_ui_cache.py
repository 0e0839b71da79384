"""Content digests, the keys of everything the app computes from a user's data."""

from __future__ import annotations

import torch

from lensdash.ui.cache import tensor_digest


def test_equal_content_equal_digest_whatever_the_layout():
    x = torch.randn(6, 5, dtype=torch.float64)
    strided = x.T.contiguous().T  # same values, column-major storage
    assert not strided.is_contiguous()
    assert tensor_digest(strided, names=("a",)) == tensor_digest(x, names=("a",))


def test_any_change_changes_the_digest():
    x, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 0])
    base = tensor_digest(x, labels, names=("a", "b", "c"), extra="e")
    nudged = x.clone()
    nudged[3, 2] = torch.nextafter(nudged[3, 2], torch.tensor(float("inf")))  # one ulp in the last cell
    others = [
        tensor_digest(nudged, labels, names=("a", "b", "c"), extra="e"),
        tensor_digest(x, torch.tensor([0, 2, 1, 1]), names=("a", "b", "c"), extra="e"),
        tensor_digest(x, labels, names=("a", "b", "d"), extra="e"),
        tensor_digest(x, labels, names=("a", "b", "c"), extra="f"),
        tensor_digest(x.double(), labels, names=("a", "b", "c"), extra="e"),  # same values, another dtype
        tensor_digest(x.reshape(3, 4), labels, names=("a", "b", "c"), extra="e"),  # same bytes, another shape
        tensor_digest(x, labels, names=("a", "bc"), extra="e"),  # names joined differently
    ]
    assert len({base, *others}) == len(others) + 1


def test_scalars_booleans_and_empty_tensors_have_digests():
    digests = {
        tensor_digest(torch.tensor(2.5)),
        tensor_digest(torch.tensor([True, False])),
        tensor_digest(torch.tensor([1, 0], dtype=torch.uint8)),
        tensor_digest(torch.zeros(0, 3)),
        tensor_digest(torch.zeros(3, 0)),
    }
    assert len(digests) == 5
