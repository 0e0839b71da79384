"""The evaluation metrics' accumulator against the core analysis, on the same predictions, side by side.

python -m benchmarks.metrics [--rows 100000 --cols 100 --repeats 7]

The report's stream computes both on every chunk, so the accumulator's update
(:meth:`lensdash.metrics.MetricSums.update`: confusion counts, top-5, calibration
bins of the top label and of the lensed prediction, lens-aware counts) should add
little to :func:`lensdash.analysis.analyze` on the same logits. Ratios of medians
over interleaved rounds, per lens; the target (<= 0.75: the metrics add less than
three quarters of the analysis to each chunk) keeps the stream one cheap pass.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks._timing import compare, header, print_rows, run_module


def _lenses(cols: int) -> dict[str, torch.Tensor]:
    import lensdash as ld

    groups = [list(range(start, min(start + 5, cols))) for start in range(0, cols - 1, 5)]
    groups = [g for g in groups if len(g) > 1]
    hierarchy = [[[str(c) for c in g] for g in groups[i : i + 2]] for i in range(0, len(groups), 2)]
    names = [str(c) for c in range(cols)]
    return {
        "identity": ld.identity_lens(names).matrix,
        f"merge ({len(groups)} groups of <= 5)": ld.merge_lens(names, groups).matrix,
        "smoothing 0.1": ld.smoothing_lens(names, 0.1).matrix,
        "hierarchy (soft)": ld.hierarchy_lens(names, hierarchy, beta=0.5).matrix,
    }


def bench_metrics(rows: int, cols: int, repeats: int) -> list[tuple[str, str, float, float]]:
    from lensdash.analysis import ClassSums, analyze
    from lensdash.metrics import MetricSums, lens_rule

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, cols, generator=gen) * 3
    labels = torch.randint(0, cols, (rows,), generator=gen)
    shape = f"{rows}x{cols}"
    out = []
    for name, matrix in _lenses(cols).items():
        lens = matrix.float()
        rule = lens_rule(lens)
        sums = MetricSums.zeros(cols)

        def core(lens: torch.Tensor = lens) -> None:
            ClassSums.of(analyze(logits, labels, lens))

        def metrics(sums: MetricSums = sums, rule: object = rule) -> None:
            sums.update(logits, labels, rule)

        times = compare({"analyze": core, "metrics": metrics}, repeats=repeats)
        print(f"# {name}: analyze + ClassSums {times['analyze']:.3f}s, MetricSums.update {times['metrics']:.3f}s")
        out.append((shape, f"MetricSums.update / analyze, {name}", times["metrics"] / times["analyze"], 0.75))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)


def run(args: argparse.Namespace) -> None:
    header()
    print_rows(bench_metrics(args.rows, args.cols, args.repeats))


if __name__ == "__main__":
    run_module("benchmarks.metrics", __doc__, add_arguments, run)
