"""The training lab's core: reproducible, identity = unlensed, overlapping blobs behave as the lens asks."""

import pytest
import torch

import lensdash as ld
from lensdash.training import (
    METRICS,
    TrainConfig,
    blobs,
    confusion_of,
    digits,
    group_mass,
    make_problem,
    probability_grid,
    train_pair,
)

QUICK = TrainConfig(epochs=4, hidden=16)


def weights(run):
    return [p.detach().clone() for p in run.model.parameters()]


def assert_same_run(a, b):
    assert a.history == b.history
    for wa, wb in zip(weights(a), weights(b)):
        torch.testing.assert_close(wa, wb, rtol=0, atol=0)


def test_runs_are_reproducible_from_the_seed():
    problem, lens = blobs(per_class=40), ld.merge_lens(4, [[0, 1]]).matrix
    first, second = train_pair(problem, lens, QUICK), train_pair(problem, lens, QUICK)
    for name in ("unlensed", "lensed"):
        assert_same_run(first[name], second[name])
    other = train_pair(problem, lens, TrainConfig(epochs=4, hidden=16, seed=1))
    assert other["lensed"].history["train_loss"] != first["lensed"].history["train_loss"]


@pytest.mark.parametrize("family", ["target", "prediction"])
def test_identity_lens_gives_two_identical_runs(family):
    runs = train_pair(blobs(3, per_class=40), torch.eye(3), TrainConfig(epochs=3, hidden=16, family=family))
    assert_same_run(runs["unlensed"], runs["lensed"])
    assert set(runs["lensed"].history) == set(METRICS) and len(runs["lensed"].history["test_accuracy"]) == 3


@pytest.mark.parametrize("family", ["target", "prediction"])
def test_fully_overlapping_blobs_lensed_model_keeps_mass_on_the_merged_pair(family):
    problem = blobs(3, per_class=150, overlapping=[(0, 1)], separation=0.0, seed=2)
    lens = ld.merge_lens(3, [[0, 1]]).matrix
    runs = train_pair(problem, lens, TrainConfig(epochs=25, family=family))
    pair = problem.y_test <= 1
    masses = {name: float(group_mass(run.test_logits[pair], problem.y_test[pair], lens)) for name, run in runs.items()}
    assert masses["lensed"] >= masses["unlensed"] - 1e-6, masses
    assert masses["lensed"] > 0.9
    # Both still separate the third blob, which the lens leaves alone.
    assert runs["lensed"].history["test_lens_aware_accuracy"][-1] > 0.9


def test_blobs_and_digits_problems():
    p = blobs(5, per_class=30, overlapping=[(0, 1), (2, 3)], separation=0.0, test_fraction=0.2)
    assert p.num_classes == 5 and p.num_features == 2
    assert torch.bincount(p.y_test).tolist() == [6] * 5 and len(p.y_train) == 120
    same = blobs(3, per_class=800, overlapping=[(0, 1)], separation=0.0)
    torch.testing.assert_close(
        same.x_train[same.y_train == 0].mean(0), same.x_train[same.y_train == 1].mean(0), atol=0.2, rtol=0
    )
    assert float((same.x_train[same.y_train == 2].mean(0) - same.x_train[same.y_train == 0].mean(0)).norm()) > 5
    d = digits()
    assert d.class_names == tuple(str(i) for i in range(10)) and d.x_train.dtype == torch.float32
    assert float(d.x_train.max()) <= 1.0 and len(d.y_test) + len(d.y_train) == 1797
    assert abs(len(d.y_test) / 1797 - 0.25) < 0.01
    assert make_problem("blobs", num_classes=3).num_classes == 3


def test_decision_grid_and_confusion():
    problem = blobs(3, per_class=30)
    runs = train_pair(problem, torch.eye(3), QUICK)
    xs, ys, probs = probability_grid(runs["lensed"].model, problem.x_train, steps=20)
    assert xs.shape == ys.shape == (20,) and probs.shape == (20, 20, 3)
    torch.testing.assert_close(torch.from_numpy(probs.sum(-1)), torch.ones(20, 20))
    confusion = confusion_of(runs["lensed"], problem)
    assert int(confusion.sum()) == len(problem.y_test)


def test_progress_callback_sees_every_epoch():
    seen = []
    train_pair(
        blobs(3, per_class=20),
        torch.eye(3),
        TrainConfig(epochs=3, hidden=8),
        on_epoch=lambda e, runs: seen.append((e, len(runs["lensed"].history["train_loss"]))),
    )
    assert seen == [(1, 1), (2, 2), (3, 3)]


def test_refusals():
    with pytest.raises(ld.LensError, match=r"expected a 4×4 lens for the 4 classes of 4 blobs, found 3×3"):
        train_pair(blobs(), torch.eye(3))
    with pytest.raises(ld.LensError, match="row"):
        train_pair(blobs(), torch.full((4, 4), 0.5))
    with pytest.raises(ld.InputError, match="positive learning rate"):
        train_pair(blobs(), torch.eye(4), TrainConfig(learning_rate=0.0))
    with pytest.raises(ld.InputError, match="a lens family"):
        train_pair(blobs(), torch.eye(4), TrainConfig(family="both"))
    with pytest.raises(ld.InputError, match="a problem in"):
        make_problem("mnist")
    with pytest.raises(ld.InputError, match="pairs of distinct classes"):
        blobs(3, overlapping=[(0, 3)])
    with pytest.raises(ld.InputError, match="at least 2 blobs"):
        blobs(1)
