"""Real models' predictions for tests: scikit-learn classifiers on its bundled digits data (nothing downloaded).

Two models on the same held-out half of ``sklearn.datasets.load_digits`` (10 classes, 899 test images):
``weak`` is Gaussian naive Bayes (about 80 % accurate and badly over-confident: many top-label
probabilities are exactly 1), ``strong`` a standardised logistic regression (about 97 %). Logits are the
models' own unnormalised log-probabilities, so ``softmax(logits)`` is their ``predict_proba``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

import lensdash as ld

DIGITS = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class Predictions:
    """One model's test-set predictions: (N, 10) float64 logits and (N,) int64 labels."""

    name: str
    logits: torch.Tensor
    labels: torch.Tensor

    @property
    def probs(self) -> np.ndarray:
        return torch.softmax(self.logits, dim=1).numpy()


@lru_cache(maxsize=1)
def digits_predictions() -> dict[str, Predictions]:
    """``{"weak": ..., "strong": ...}``, trained once per test process (about a second)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.5, random_state=0, stratify=y)
    weak = GaussianNB().fit(x_train, y_train)
    strong = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_train, y_train)
    labels = torch.as_tensor(y_test, dtype=torch.int64)
    return {
        "weak": Predictions("weak", torch.as_tensor(weak.predict_joint_log_proba(x_test)), labels),
        "strong": Predictions("strong", torch.as_tensor(strong.decision_function(x_test)), labels),
    }


def digits_lenses() -> dict[str, ld.Lens]:
    """Lenses over the ten digits: identity, merge groups of look-alikes, label smoothing, a soft hierarchy."""
    hierarchy = [[["3", "5", "8"], ["0", "6"]], [["1", "7"], ["4", "9"]], ["2"]]
    return {
        "identity": ld.identity_lens(DIGITS),
        "merge": ld.merge_lens(DIGITS, [["3", "5", "8"], ["1", "7"], ["4", "9"]]),
        "smoothing": ld.smoothing_lens(DIGITS, 0.1),
        # β / d_max = 1/2 per unit of LCA height: siblings keep e^{-1/2} > 1/2 of the diagonal (the lens-aware
        # rule counts them), classes further away e^{-1} < 1/2 (it does not).
        "hierarchy": ld.hierarchy_lens(
            DIGITS, hierarchy, beta=0.5 * float(ld.hierarchy_distances(DIGITS, hierarchy).max())
        ),
    }
