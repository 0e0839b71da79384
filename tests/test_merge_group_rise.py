"""Why the prediction-side loss with merge groups reads above the cross-entropy (CIFAR superclasses: 1.69 → 2.59).

With a merge lens, :math:`(\\mathrm{softmax}(x) C)_y = P(G)/|G|` for the group G of y, so the prediction-side loss is
:math:`-\\log P(G) + \\log |G|` for every model, and its rise over the cross-entropy :math:`-\\log p_y` is
:math:`\\log |G| - \\log(P(G)/p_y)`: the whole :math:`\\log |G|` for a model that puts its group's probability on the
true class (the most it can be), 0 for one that spreads it evenly over the group. Built models of both kinds
reproduce it exactly.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import lensdash as ld
from lensdash.analysis import analyze

K, GROUP = 20, 5  # CIFAR-100-like: superclasses of 5 classes
GROUPS = [list(range(g, g + GROUP)) for g in range(0, K, GROUP)]
GROUP_OF = torch.tensor([c // GROUP for c in range(K)])


def _model(group_probability, *, uniform_within, seed=0):
    """Log-probabilities of a model that gives each sample's true group ``group_probability`` (rest spread evenly)
    and, inside that group, either all of it to the true class or an equal share to each member."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, K, (400,), generator=gen)
    probs = torch.full((len(labels), K), (1 - group_probability) / (K - GROUP), dtype=torch.float64)
    rows = torch.arange(len(labels))
    for offset in range(GROUP):
        members = GROUP_OF[labels] * GROUP + offset
        probs[rows, members] = group_probability / GROUP if uniform_within else 0.0
    if not uniform_within:
        probs[rows, labels] = group_probability
    return probs.log(), labels


@pytest.mark.parametrize("group_probability", [0.2, 0.6, 0.99])
def test_a_model_sure_of_the_class_within_its_group_rises_by_log_group_size(group_probability):
    logits, labels = _model(group_probability, uniform_within=False)
    a = analyze(logits, labels, ld.merge_lens(K, GROUPS), family="prediction")
    torch.testing.assert_close(a.lensed_loss - a.unlensed_loss, torch.full_like(a.lensed_loss, math.log(GROUP)))
    assert a.summary()["delta"] == pytest.approx(math.log(5))  # 1.609: CIFAR's 1.69 → 2.59 is 0.90 of it


@pytest.mark.parametrize("group_probability", [0.2, 0.6, 0.99])
def test_a_model_uniform_within_groups_does_not_rise(group_probability):
    logits, labels = _model(group_probability, uniform_within=True)
    a = analyze(logits, labels, ld.merge_lens(K, GROUPS), family="prediction")
    torch.testing.assert_close(a.lensed_loss, a.unlensed_loss)


def test_any_model_pays_minus_log_group_probability_plus_log_group_size():
    gen = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(300, K, generator=gen, dtype=torch.float64) * 3, torch.randint(0, K, (300,))
    a = analyze(logits, labels, ld.merge_lens(K, GROUPS), family="prediction")
    probs = torch.softmax(logits, 1)
    group_probability = torch.zeros(300, K // GROUP, dtype=torch.float64).index_add_(1, GROUP_OF, probs)
    p_group = group_probability[torch.arange(300), GROUP_OF[labels]]
    torch.testing.assert_close(a.lensed_loss, -p_group.log() + math.log(GROUP))
    p_true = probs[torch.arange(300), labels]
    torch.testing.assert_close(a.unlensed_loss, F.cross_entropy(logits, labels, reduction="none"))
    torch.testing.assert_close(a.delta, math.log(GROUP) - (p_group / p_true).log())
    # At most log |G|; below 0 where the group's probability sits on the other members.
    assert bool((a.delta <= math.log(GROUP) + 1e-12).all()) and bool((a.delta < 0).any())


def test_the_floor_the_page_states_with_hard_and_soft_labels():
    from lensdash.ui.results import prediction_side_floor

    lens = ld.merge_lens(K, [[0, 1], [2, 3, 4]])
    labels = torch.tensor([0, 2, 7])
    hard = prediction_side_floor(lens, labels)
    assert hard == pytest.approx((math.log(2) + math.log(3) + 0) / 3)
    assert prediction_side_floor(lens, labels, F.one_hot(labels, K).double()) == pytest.approx(hard)
    soft = torch.zeros(3, K, dtype=torch.float64)
    soft[0, [0, 7]], soft[1, [2, 9]], soft[2, 7] = 0.5, 0.25, 1.0
    soft[1, 9] = 0.75
    expected = (0.5 * math.log(2) + 0.25 * math.log(3) + 0) / 3
    assert prediction_side_floor(lens, labels, soft) == pytest.approx(expected)
    x = torch.randn(3, K, dtype=torch.float64)
    loss = analyze(x, labels, lens, family="prediction", targets=soft).lensed_loss.mean()
    assert float(loss) >= expected
