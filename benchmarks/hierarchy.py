"""Speed of ``read_hierarchy`` and ``hierarchy_metrics`` on a WordNet-like tree (issue 13's numbers).

The tree has 1,000 leaves at depths 6-16 under shared, unbalanced branches, written as a WordNet "is-a" file
(``n00001740 n00002684`` a line); the predictions are 50,000 × 1,000 float32 logits. Each step is timed as the
median of a few runs, interleaved with a reference measured in the same process:

* ``read_hierarchy`` against ``numpy.loadtxt`` of the same pairs (only splitting the text, no tree);
* ``hierarchy_metrics`` against one float64 ``softmax`` and ``topk(20)`` pass over the same logits (about what
  any of the metrics needs); the cost-aware decision's tree walk is the rest.

The logits are ``2 * randn`` with ``--boost`` (default 4) added to the true class: an unsure model (12% top-1 at
K = 1,000), the hard case, since every row needs the cost walk. ``--boost 8 --scale 1`` is a confident model
(most rows' top class holds over half the mass, which decides them without costs).

Run: ``python -m benchmarks.hierarchy`` (``--leaves 50 --samples 500 --repeats 1`` for a quick look).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

import lensdash as ld


def wordnet_like(leaves: int, seed: int = 0) -> bytes:
    """An "is-a" edge list with ``leaves`` leaves whose paths share random, unbalanced prefixes."""
    rng = np.random.default_rng(seed)
    children: dict[str, list[str]] = {"n00000000": []}
    edges: list[str] = []
    counter = 0
    for _ in range(leaves):
        node = "n00000000"
        for _ in range(int(rng.integers(6, 17)) - 1):
            inner = [c for c in children[node] if children.get(c)]
            if inner and rng.random() < 0.75:
                node = inner[int(rng.integers(len(inner)))]
                continue
            counter += 1
            kid = f"n{counter:08d}"
            children[node].append(kid)
            children[kid] = []
            edges.append(f"{node} {kid}")
            node = kid
        counter += 1
        leaf = f"n{counter:08d}"
        children[node].append(leaf)
        edges.append(f"{node} {leaf}")
    return ("\n".join(edges) + "\n").encode()


def _median(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(
    leaves: int = 1000, samples: int = 50_000, repeats: int = 5, boost: float = 4.0, scale: float = 2.0
) -> dict[str, float]:
    """Time both steps and their references; returns seconds and ratios."""
    data = wordnet_like(leaves)
    hierarchy = ld.read_hierarchy(data)
    classes = list(hierarchy.leaves)
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, len(classes), (samples,), generator=gen)
    logits = torch.randn(samples, len(classes), generator=gen) * scale
    logits[torch.arange(samples), labels] += boost

    def softmax_topk() -> None:
        for chunk in logits.split(4096):
            x = chunk.double()
            torch.softmax(x, dim=1)
            torch.topk(x, min(20, x.shape[1]), dim=1)

    read_s, loadtxt_s, metrics_s, reference_s = [], [], [], []
    for _ in range(repeats):  # interleaved, so machine noise hits both alike
        read_s.append(_median(lambda: ld.read_hierarchy(data), 1))
        loadtxt_s.append(_median(lambda: np.loadtxt(io.BytesIO(data), dtype=str), 1))
        metrics_s.append(_median(lambda: ld.hierarchy_metrics(logits, labels, hierarchy, classes), 1))
        reference_s.append(_median(softmax_topk, 1))
    result = {
        "leaves": float(len(classes)),
        "nodes": float(len(hierarchy)),
        "height": float(hierarchy.height[hierarchy.root]),
        "samples": float(samples),
        "top1_accuracy": float((logits.argmax(dim=1) == labels).double().mean()),
        "read_hierarchy_s": statistics.median(read_s),
        "loadtxt_s": statistics.median(loadtxt_s),
        "hierarchy_metrics_s": statistics.median(metrics_s),
        "softmax_topk_s": statistics.median(reference_s),
    }
    result["read_over_loadtxt"] = result["read_hierarchy_s"] / result["loadtxt_s"]
    result["metrics_over_softmax_topk"] = result["hierarchy_metrics_s"] / result["softmax_topk_s"]
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--boost", type=float, default=4.0, help="added to the true class's logit")
    parser.add_argument("--scale", type=float, default=2.0, help="standard deviation of the logits' noise")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.leaves, args.samples, args.repeats, args.boost, args.scale), indent=2))


if __name__ == "__main__":
    main()
