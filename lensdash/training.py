r"""Training lab: train the same small model twice, without and with a lens, and compare.

Lens convention: row ``i`` of the lens is the target distribution used when the
true label is ``i``; rows sum to 1. The unlensed run trains with the same loss
family and the identity lens, which is ordinary cross-entropy for both families,
so with an identity lens the two runs are the same computation, step for step.

Everything here is pure torch: the app's lab tab and scripts call the same
:func:`train_pair`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from lensdash.analysis import _family, _support_mass, accuracy, confusion_counts, lens_aware_accuracy
from lensdash.errors import InputError, LensError
from lensdash.lens import lens_matrix

PROBLEMS = ("blobs", "digits")
RUNS = ("unlensed", "lensed")


@dataclass(frozen=True)
class Problem:
    """A classification problem with a train/test split: ``x`` float32 (N, D), ``y`` int64 (N,)."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])


def blobs(
    num_classes: int = 4,
    *,
    per_class: int = 150,
    overlapping: Sequence[tuple[int, int]] = ((0, 1),),
    separation: float = 0.6,
    spread: float = 1.0,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> Problem:
    """K Gaussian blobs in 2-D; each pair in ``overlapping`` has centres ``separation`` apart (0: the same blob).

    The other centres sit on a circle of radius 4, so they are well separated.

    Example:
        >>> p = blobs(3, per_class=10)
        >>> p.x_train.shape[1], p.num_classes, len(p.y_train) + len(p.y_test)
        (2, 3, 30)
    """
    if num_classes < 2:
        raise InputError.build("at least 2 blobs", str(num_classes), fix="Choose 2 or more classes.")
    for a, b in overlapping:
        if not (0 <= a < num_classes and 0 <= b < num_classes and a != b):
            raise InputError.build(
                f"pairs of distinct classes in 0..{num_classes - 1}",
                str((a, b)),
                where="overlapping",
                fix="Name two different blobs.",
            )
    gen = torch.Generator().manual_seed(seed)
    angles = torch.arange(num_classes, dtype=torch.float64) * (2 * math.pi / num_classes)
    centres = 4.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
    for a, b in overlapping:
        direction = centres[b] - centres[a]
        direction = direction / direction.norm().clamp_min(1e-12)
        centres[b] = centres[a] + separation * direction
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    points = centres[labels] + spread * torch.randn(len(labels), 2, generator=gen, dtype=torch.float64)
    return _split(
        f"{num_classes} blobs",
        points.float(),
        labels,
        tuple(f"blob {i}" for i in range(num_classes)),
        test_fraction,
        gen,
    )


def digits(*, test_fraction: float = 0.25, seed: int = 0) -> Problem:
    """scikit-learn's handwritten digits (1,797 8×8 images, 10 classes; shipped with the package), pixels in [0, 1].

    Example:
        >>> p = digits()
        >>> p.num_features, p.num_classes, len(p.y_train) + len(p.y_test)
        (64, 10, 1797)
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.from_numpy(np.asarray(data.data, dtype=np.float32) / 16.0)
    y = torch.from_numpy(np.asarray(data.target, dtype=np.int64))
    return _split(
        "digits",
        x,
        y,
        tuple(str(int(t)) for t in data.target_names),
        test_fraction,
        torch.Generator().manual_seed(seed),
    )


def _split(
    name: str, x: Tensor, y: Tensor, names: tuple[str, ...], test_fraction: float, gen: torch.Generator
) -> Problem:
    """A stratified split: the same fraction of every class goes to the test set."""
    test = torch.zeros(len(y), dtype=torch.bool)
    for c in range(len(names)):
        rows = torch.nonzero(y == c).squeeze(1)
        rows = rows[torch.randperm(len(rows), generator=gen)]
        test[rows[: round(len(rows) * test_fraction)]] = True
    return Problem(name, x[~test], y[~test], x[test], y[test], names)


def make_problem(name: str, **options) -> Problem:
    """``'blobs'`` or ``'digits'`` by name (the app's selector)."""
    if name == "blobs":
        return blobs(**options)
    if name == "digits":
        return digits(**options)
    raise InputError.build(f"a problem in {PROBLEMS}", repr(name), fix="Choose 'blobs' or 'digits'.")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults run both models on either problem in a few seconds on 2 CPU cores."""

    epochs: int = 30
    learning_rate: float = 0.01
    hidden: int = 64
    batch_size: int = 64
    seed: int = 0
    family: str = "target"


METRICS = ("train_loss", "test_accuracy", "test_lens_aware_accuracy", "test_group_mass")


@dataclass
class Run:
    """One trained model and its history.

    ``history`` holds, per epoch, ``train_loss``, ``test_accuracy``, ``test_lens_aware_accuracy`` and
    ``test_group_mass``.
    """

    name: str
    model: nn.Module
    history: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRICS})
    test_logits: Tensor | None = None

    def final(self) -> dict[str, float]:
        return {m: values[-1] for m, values in self.history.items() if values}


def make_model(num_features: int, num_classes: int, hidden: int) -> nn.Module:
    """A one-hidden-layer MLP: small enough to train in seconds, flexible enough to show decision regions."""
    return nn.Sequential(
        nn.Linear(num_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
    )


def group_mass(logits: Tensor, labels: Tensor, lens: Tensor) -> Tensor:
    """Mean probability the model puts on the classes the lens groups with the true class (the support of ``C[y]``)."""
    return _support_mass(logits, labels, lens > 0, torch.logsumexp(logits, dim=1)).mean()


class _Trainer:
    """One model, optimiser and data order; :meth:`epoch` runs one pass and records the metrics."""

    def __init__(self, name: str, problem: Problem, lens: Tensor, eval_lens: Tensor, config: TrainConfig) -> None:
        self.problem, self.lens, self.eval_lens, self.config = problem, lens, eval_lens, config
        self.loss_fn = _family(config.family)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = make_model(problem.num_features, problem.num_classes, config.hidden)
        self.run = Run(name, model)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        self.order = torch.Generator().manual_seed(config.seed + 1)

    def epoch(self) -> None:
        p, model, history = self.problem, self.run.model, self.run.history
        model.train()
        total, seen = 0.0, 0
        for batch in torch.randperm(len(p.y_train), generator=self.order).split(self.config.batch_size):
            x, y = p.x_train[batch], p.y_train[batch]
            loss = self.loss_fn(model(x), y, self.lens)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total, seen = total + loss.item() * len(batch), seen + len(batch)
        model.eval()
        with torch.no_grad():
            logits = model(p.x_test)
        history["train_loss"].append(total / seen)
        history["test_accuracy"].append(accuracy(logits, p.y_test))
        history["test_lens_aware_accuracy"].append(lens_aware_accuracy(logits, p.y_test, self.eval_lens))
        history["test_group_mass"].append(float(group_mass(logits, p.y_test, self.eval_lens)))
        self.run.test_logits = logits


def train_pair(
    problem: Problem,
    lens: object,
    config: TrainConfig = TrainConfig(),
    *,
    on_epoch: Callable[[int, dict[str, Run]], None] | None = None,
) -> dict[str, Run]:
    r"""Train the same model from the same seed twice: ``'unlensed'`` (identity lens) and ``'lensed'`` (``lens``).

    Both runs use ``config.family`` (``'target'``: :math:`\mathrm{KL}(C_y\|\mathrm{softmax}(f(x)))`,
    the seed's; ``'prediction'``: :math:`-\log(\mathrm{softmax}(f(x))\,C)_y`); with the identity
    lens both are cross-entropy. Epochs alternate between the runs so progress can be shown live.
    Lens-aware accuracy and group mass are measured with ``lens`` for both models.

    Args:
        problem: from :func:`blobs`, :func:`digits` or your own :class:`Problem`.
        lens: K×K lens or :class:`~lensdash.Lens`; rows are target distributions, rows sum to 1.
        config: epochs, learning rate, hidden size, batch size, seed, family.
        on_epoch: called after each epoch with its number (1-based) and both runs so far.

    Returns:
        ``{"unlensed": Run, "lensed": Run}``.

    Raises:
        LensError: the lens is invalid or its size is not the problem's K. InputError: a bad setting.

    Example:
        >>> runs = train_pair(blobs(3, per_class=20), torch.eye(3), TrainConfig(epochs=2))
        >>> runs["unlensed"].history["test_accuracy"] == runs["lensed"].history["test_accuracy"]
        True
    """
    matrix = lens_matrix(lens, dtype=torch.float32)
    k = problem.num_classes
    if matrix.shape[0] != k:
        raise LensError.build(
            f"a {k}×{k} lens for the {k} classes of {problem.name}",
            f"{matrix.shape[0]}×{matrix.shape[0]}",
            fix="Build the lab's lens over its classes.",
        )
    if config.epochs < 1 or config.batch_size < 1 or config.hidden < 1 or not config.learning_rate > 0:
        raise InputError.build(
            "epochs, batch size and hidden size >= 1 and a positive learning rate",
            str(config),
            fix="Change the settings.",
        )
    _family(config.family)
    trainers = [
        _Trainer("unlensed", problem, torch.eye(k), matrix, config),
        _Trainer("lensed", problem, matrix, matrix, config),
    ]
    runs = {t.run.name: t.run for t in trainers}
    for epoch in range(1, config.epochs + 1):
        for trainer in trainers:
            trainer.epoch()
        if on_epoch is not None:
            on_epoch(epoch, runs)
    return runs


def probability_grid(
    model: nn.Module, points: Tensor, steps: int = 120, margin: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's class probabilities over a ``steps``×``steps`` grid covering 2-D ``points``.

    Returns ``(xs, ys, probs)`` with ``probs`` of shape ``(steps, steps, K)``.
    """
    lo, hi = points.min(dim=0).values - margin, points.max(dim=0).values + margin
    xs, ys = torch.linspace(float(lo[0]), float(hi[0]), steps), torch.linspace(float(lo[1]), float(hi[1]), steps)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        probs = torch.softmax(model(torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)), dim=1)
    return xs.numpy(), ys.numpy(), probs.reshape(steps, steps, -1).numpy()


def confusion_of(run: Run, problem: Problem) -> Tensor:
    """K×K counts of the run's test predictions: row = true class, column = predicted."""
    if run.test_logits is None:
        raise ValueError(f"the {run.name} run has no test predictions yet")
    return confusion_counts(run.test_logits.argmax(dim=1), problem.y_test, problem.num_classes)
