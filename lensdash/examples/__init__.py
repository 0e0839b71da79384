"""Small example files and the built-in demo data.

``seed_4class.csv`` is the seed notebook's example: Q = [.4, .3, .2, .1] with
label 0, plus a few rows around it. ``animals_10class.csv`` is a realistic
10-class set of logits from a model that confuses cats with dogs and cars with
trucks; ``animals_logits_headerless.csv`` holds the same logits as
``numpy.savetxt`` writes them, with 0-based labels in ``animals_labels.csv``.
``animals_lens.csv`` merges the confused pairs.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from lensdash.lens import class_names

EXAMPLES = (
    "seed_4class.csv",
    "animals_10class.csv",
    "animals_logits_headerless.csv",
    "animals_labels.csv",
    "animals_lens.csv",
)
ANIMALS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CONFUSED_PAIRS = (("cat", "dog"), ("automobile", "truck"))


def example_bytes(name: str) -> bytes:
    """The bytes of a shipped example file."""
    return resources.files(__package__).joinpath(name).read_bytes()


def demo_frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A classifier's logits on ``n`` samples of 10 classes, with two confused pairs, and labels."""
    rng = np.random.default_rng(seed)
    k = len(ANIMALS)
    labels = rng.integers(0, k, n)
    logits = rng.normal(0.0, 1.0, (n, k))
    logits[np.arange(n), labels] += rng.normal(3.0, 1.2, n)
    index = {c: i for i, c in enumerate(ANIMALS)}
    for a, b in CONFUSED_PAIRS:
        for src, dst in ((index[a], index[b]), (index[b], index[a])):
            rows = labels == src
            logits[rows, dst] += rng.normal(2.6, 1.0, rows.sum())
    frame = pd.DataFrame(np.round(logits, 4), columns=list(class_names(ANIMALS)))
    frame["label"] = [ANIMALS[i] for i in labels]
    return frame


def _write_examples(folder: str) -> None:  # pragma: no cover - how the shipped files were made
    import os

    seed = pd.DataFrame(
        [
            [0.4, 0.3, 0.2, 0.1, 0],
            [0.4, 0.3, 0.2, 0.1, 1],
            [0.1, 0.6, 0.2, 0.1, 0],
            [0.05, 0.05, 0.8, 0.1, 2],
            [0.25, 0.25, 0.25, 0.25, 3],
        ],
        columns=["class 0", "class 1", "class 2", "class 3", "label"],
    )
    seed["label"] = seed["label"].astype(int)
    seed.to_csv(os.path.join(folder, "seed_4class.csv"), index=False)
    demo = demo_frame(600, seed=1)
    demo.to_csv(os.path.join(folder, "animals_10class.csv"), index=False)
    np.savetxt(
        os.path.join(folder, "animals_logits_headerless.csv"),
        demo.drop(columns="label").to_numpy(),
        delimiter=",",
        fmt="%.4f",
    )
    demo["label"].map({c: i for i, c in enumerate(ANIMALS)}).to_csv(
        os.path.join(folder, "animals_labels.csv"), index=False
    )
    from lensdash.io import save_lens
    from lensdash.lens import merge_lens

    save_lens(merge_lens(ANIMALS, [list(p) for p in CONFUSED_PAIRS]), os.path.join(folder, "animals_lens.csv"))
