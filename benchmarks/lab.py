"""Wall time of the training lab's default run (both models) on each problem; the target is under 10 s.

python -m benchmarks.lab
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks._timing import header, run_module


def bench_lab(repeats: int = 3, epochs: int | None = None) -> None:
    """Wall time of the training lab's default run (both models) on each problem; the target is under 10 s."""
    from lensdash.lens import merge_lens
    from lensdash.training import TrainConfig, blobs, digits, train_pair

    config = TrainConfig() if epochs is None else TrainConfig(epochs=epochs)
    for problem, groups in ((blobs(), [[0, 1]]), (digits(), [[3, 5, 8], [4, 9]])):
        lens = merge_lens(problem.num_classes, groups)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            train_pair(problem, lens, config)
            times.append(time.perf_counter() - t0)
        print(
            f"{problem.name}: default run (2 models x {config.epochs} epochs) median "
            f"{statistics.median(times):.2f}s, first {times[0]:.2f}s (target < 10 s)"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the lab's default)")


def run(args: argparse.Namespace) -> None:
    header()
    bench_lab(args.repeats, args.epochs)


if __name__ == "__main__":
    run_module("benchmarks.lab", __doc__, add_arguments, run)
