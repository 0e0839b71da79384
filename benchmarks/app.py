"""The page's rerun after a lens edit against the core analysis it needs, on an uploaded file.

python -m benchmarks.app [--rows 100000 --cols 100]
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks._page import page_with_upload
from benchmarks._timing import header, rounds, run_module


def bench_app(rows: int, cols: int, repeats: int = 15) -> None:
    """The page's rerun after a lens edit vs the core computation it needs, on an uploaded file."""
    from lensdash import Lens
    from lensdash.analysis import analyze
    from lensdash.ui.lens_editor import MAX_GRID_K

    at, preds = page_with_upload(rows, cols)
    t0 = time.perf_counter()
    at.run()
    print(f"first run with the upload (parse + analysis): {time.perf_counter() - t0:.2f}s")
    if at.exception:
        raise SystemExit(f"the page raised: {[e.value for e in at.exception]}")
    at.selectbox(key="preset").set_value("identity").run()
    names = preds.class_names
    edits = iter(range(1, 10_000))

    def edit_and_rerun() -> None:
        i = next(edits)  # a new valid lens each time, so nothing comes from the cache
        # The grid's classes: all of them, or above MAX_GRID_K classes the sub-grid's (its rows and columns).
        shown = list(at.session_state["subgrid_classes"]) if cols > MAX_GRID_K else list(names)
        n = len(shown)
        row, col, v = i % n, (i * 7 + 1) % n, 0.1 + (i % 40) / 100
        if col == row:
            col = (col + 1) % n
        edit = {row: {shown[row]: 1 - v, shown[col]: v}}
        at.session_state[at.session_state["lens_grid_key"]] = {
            "edited_rows": edit,
            "added_rows": [],
            "deleted_rows": [],
        }
        at.run()
        if at.exception or at.error:
            raise SystemExit(f"the page did not accept the edit: {[e.value for e in at.exception or at.error]}")

    def core() -> None:
        lens = Lens(at.session_state["lens_current"], names)
        analyze(preds.logits, preds.labels, lens, class_names_=names)

    t = rounds({"core": core, "rerun": edit_and_rerun}, repeats=repeats)
    ratio = statistics.median(r / c for r, c in zip(t["rerun"], t["core"], strict=True))
    print(
        f"medians of {repeats} rounds: rerun after a lens edit {statistics.median(t['rerun']):.3f}s, "
        f"core analyze() alone {statistics.median(t['core']):.3f}s"
    )
    print(f"rerun / core of the same round, median over rounds: {ratio:.2f} (target <= 1.5)")
    sizes = {}
    for chart in at.get("plotly_chart"):
        sizes[chart.proto.id or "chart"] = len(chart.proto.spec.encode())
    print(f"largest figure payload: {max(sizes.values()) / 1e6:.2f} MB of {len(sizes)} figures (target < 2 MB each)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=15)


def run(args: argparse.Namespace) -> None:
    header()
    bench_app(args.rows, args.cols, args.repeats)


if __name__ == "__main__":
    run_module("benchmarks.app", __doc__, add_arguments, run)
