"""The page's rerun after a lens edit with the Evaluation tab open, against the core computations that tab needs.

python -m benchmarks.app_evaluation [--rows 100000 --cols 100]

Core: ``analyze()`` (the headline numbers and the cell's samples) plus ``MetricSums.of()`` (scores and calibration) for
the new lens. The page's rerun also draws the per-class table, two reliability diagrams and the clickable confusion
matrix; target: the rerun within 1.5× the core, as for the Results tab (``python -m benchmarks.app``).
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks._page import page_with_upload
from benchmarks._timing import header, rounds, run_module


def bench_app_evaluation(rows: int, cols: int, repeats: int = 15) -> None:
    from lensdash import Lens
    from lensdash.analysis import analyze
    from lensdash.metrics import MetricSums

    at, preds = page_with_upload(rows, cols)
    at.run()
    at.session_state["view"] = "Evaluation"
    t0 = time.perf_counter()
    at.run()
    print(f"first run of the Evaluation tab: {time.perf_counter() - t0:.2f}s")
    if at.exception:
        raise SystemExit(f"the page raised: {[e.value for e in at.exception]}")
    names = preds.class_names
    edits = iter(range(1, 10_000))

    def edit_and_rerun() -> None:
        i = next(edits)  # a new valid lens each time, so nothing comes from the session's results
        row, col, v = i % cols, (i * 7 + 1) % cols, 0.1 + (i % 40) / 100
        if col == row:
            col = (col + 1) % cols
        at.session_state[at.session_state["lens_grid_key"]] = {
            "edited_rows": {row: {names[row]: 1 - v, names[col]: v}},
            "added_rows": [],
            "deleted_rows": [],
        }
        at.run()
        if at.exception or at.error:
            raise SystemExit(f"the page did not accept the edit: {[e.value for e in at.exception or at.error]}")

    def core() -> None:
        lens = Lens(at.session_state["lens_current"], names)
        analyze(preds.logits, preds.labels, lens, class_names_=names)
        MetricSums.of(preds.logits, preds.labels, lens)

    t = rounds({"core": core, "rerun": edit_and_rerun}, repeats=repeats)
    ratio = statistics.median(r / c for r, c in zip(t["rerun"], t["core"], strict=True))
    print(
        f"medians of {repeats} rounds: rerun after a lens edit (Evaluation tab) {statistics.median(t['rerun']):.3f}s, "
        f"core analyze() + MetricSums.of() {statistics.median(t['core']):.3f}s"
    )
    print(f"evaluation rerun / core of the same round, median over rounds: {ratio:.2f} (target <= 1.5)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=15)


def run(args: argparse.Namespace) -> None:
    header()
    bench_app_evaluation(args.rows, args.cols, args.repeats)


if __name__ == "__main__":
    run_module("benchmarks.app_evaluation", __doc__, add_arguments, run)
