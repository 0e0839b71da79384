"""Page numbers at K = 1,000 (issue 13): upload → page ready, a lens edit's rerun, figure sizes, memory.

Against the core work measured in the same process: ``read_predictions`` + ``analyze`` for the page's first
run, ``analyze`` for a rerun after a lens edit (made in the sub-grid, as a user does at large K). Every tab that
draws from the upload is opened and each figure's JSON measured. Memory is the growth of the process's resident
set over the page's runs, against the decoded logits (rows × cols × 4 bytes). A small session of the same classes
goes through the same tabs first (``--no-warm-up`` to skip it), so that what a server does once, for its first
visitor (imports, lazy set-up), is not counted as the measured session's. With ``--fixed-mmap-threshold`` blocks of
1 MB and more are mapped on their own (glibc), so that the growth is what the session holds, not also the freed heap
glibc keeps by default (tens of MB at this size, varying run to run).

python -m benchmarks.app_scale --format npz --rows 50000 --cols 1000
python -m benchmarks.app_scale --format csv --rows 10000 --cols 1000
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from benchmarks._page import page_with_upload, upload_bytes
from benchmarks._timing import header, rounds, run_module

#: Tabs whose figures come from the upload (Compare and Slices need a second model or metadata; the lab and the
#: playground do not read the upload).
DATA_TABS = ("Results", "Evaluation", "Gradients", "Sanity checks")


def _rss() -> int:
    """Resident bytes after a full collection, with freed heap handed back to the system (glibc's malloc_trim, and
    arrow's memory pool, which the CSV reader parses into and which keeps freed blocks for reuse), so that what was
    freed but kept by an allocator does not count as held by the session, nor the reuse of it as memory given back."""
    import contextlib
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the figure then includes freed heap
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmRSS"))
    return int(line.split()[1]) * 1024


#: glibc's ``mallopt`` parameter of the size from which blocks are mapped on their own (and unmapped when freed).
_M_MMAP_THRESHOLD = -3
#: Blocks of this size and more are mapped on their own while measuring (see :func:`fixed_mmap_threshold`).
MMAP_THRESHOLD_BYTES = 1 << 20


def fixed_mmap_threshold() -> bool:
    """Map every block of :data:`MMAP_THRESHOLD_BYTES` or more on its own (glibc); True where that could be set.

    glibc raises its threshold as large blocks are freed, so later arrays of that size come from the heap, where freed
    memory stays resident: the session's growth then reads tens of MB over what it holds (at 10,000 × 1,000 the
    decoded data is 40 MB), varying run to run. With a fixed threshold each array's pages come and go with it, and
    the growth is what the session holds (plus Python's small-object arenas), as on a server that sets it.
    """
    import ctypes

    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc
        return False


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _check(at: object) -> None:
    problems = [e.value for e in getattr(at, "exception", [])] + [e.value for e in getattr(at, "error", [])]
    if problems:
        raise SystemExit(f"the page reported: {problems[:3]}")


#: Most rows of the warm-up session (:func:`_warm_up`).
WARM_UP_ROWS = 500


def _warm_up(rows: int, cols: int, fmt: str) -> object:
    """A small session of the same classes and format through every data tab, before the one measured.

    What a server does once for all sessions (imports made by the page's first visit, torch's and plotly's lazy
    set-up, shared libraries paged in) is then not counted as the measured session's time or memory. Returns the
    warm-up's page: kept until the measurements end, so that its session's memory is not freed while they run.
    """
    at, _ = page_with_upload(min(rows, WARM_UP_ROWS), cols, fmt)
    at.run()
    _check(at)
    for tab in DATA_TABS:
        at.session_state["view"] = tab
        at.run()
        _check(at)
    return at


def bench_scale(
    rows: int,
    cols: int,
    fmt: str,
    repeats: int,
    warm_up: bool = True,
    fixed_heap: bool = False,
    page_rounds: int = 3,
) -> dict[str, float]:
    """Run every measurement (after :func:`_warm_up`, unless ``warm_up`` is False; with :func:`fixed_mmap_threshold`
    if ``fixed_heap``); prints a table and returns the figures."""
    from lensdash import Lens, read_predictions
    from lensdash.analysis import analyze

    if fixed_heap:
        print(f"# blocks of {MMAP_THRESHOLD_BYTES >> 20} MB and more mapped on their own: {fixed_mmap_threshold()}")
    warm = _warm_up(rows, cols, fmt) if warm_up else None
    data = upload_bytes(rows, cols, fmt)
    at, preds = page_with_upload(rows, cols, fmt, data=data)
    names = preds.class_names
    decoded = rows * cols * 4
    rss_before = _rss()
    t0 = time.perf_counter()
    at.run()
    page_s = time.perf_counter() - t0
    _check(at)
    rss_page = _rss() - rss_before

    def core_analysis() -> None:
        analyze(preds.logits, preds.labels, Lens(at.session_state["lens_current"], names), class_names_=names)

    read_s = _median_time(lambda: read_predictions(data), max(1, repeats // 3))
    analysis_s = _median_time(core_analysis, max(1, repeats // 3))

    at.selectbox(key="preset").set_value("identity").run()
    _check(at)
    chosen = list(at.session_state["subgrid_classes"]) if cols > 40 else list(names)
    edits = iter(range(1, 10_000))

    def edit_and_rerun() -> None:
        i = next(edits)  # a new valid lens each time, so nothing comes from the cache
        row, col, v = i % len(chosen), (i * 7 + 1) % len(chosen), 0.1 + (i % 40) / 100
        if col == row:
            col = (col + 1) % len(chosen)
        at.session_state[at.session_state["lens_grid_key"]] = {
            "edited_rows": {row: {chosen[row]: 1 - v, chosen[col]: v}},
            "added_rows": [],
            "deleted_rows": [],
        }
        at.run()
        _check(at)

    t = rounds({"core": core_analysis, "rerun": edit_and_rerun}, repeats=repeats)
    edit_ratio = statistics.median(r / c for r, c in zip(t["rerun"], t["core"], strict=True))

    sizes: dict[str, int] = {}
    tab_s: dict[str, float] = {}
    for tab in DATA_TABS:
        at.session_state["view"] = tab
        t0 = time.perf_counter()
        at.run()
        tab_s[tab] = time.perf_counter() - t0
        _check(at)
        for chart in at.get("plotly_chart"):
            sizes[f"{tab}: {chart.proto.id or 'chart'}"] = len(chart.proto.spec.encode())
    rss_session = _rss() - rss_before
    del warm  # kept alive until here (see _warm_up)
    # One page's first run is a single sample (it moved by ±15% between runs on a quiet machine): more fresh sessions
    # of the same upload, each timed beside the core read + analysis of the same round, after the memory readings.
    page_ratios = [page_s / (read_s + analysis_s)]
    for _ in range(page_rounds - 1):
        again, _ = page_with_upload(rows, cols, fmt, data=data)
        t0 = time.perf_counter()
        again.run()
        page_again = time.perf_counter() - t0
        _check(again)
        del again
        core = _median_time(lambda: read_predictions(data), 1) + _median_time(core_analysis, 1)
        page_ratios.append(page_again / core)
    largest = max(sizes, key=sizes.__getitem__) if sizes else "none"
    out = {
        "page_ready_s": page_s,
        "core_read_s": read_s,
        "core_analysis_s": analysis_s,
        "page_over_core": statistics.median(page_ratios),
        "page_over_core_first": page_ratios[0],
        "rerun_s": statistics.median(t["rerun"]),
        "rerun_core_s": statistics.median(t["core"]),
        "rerun_over_core": edit_ratio,
        "largest_figure_mb": sizes.get(largest, 0) / 1e6,
        "figures": float(len(sizes)),
        "rss_first_run_over_decoded": rss_page / decoded,
        "rss_session_over_decoded": rss_session / decoded,
    }
    print(f"page ready {page_s:.2f}s; core read {read_s:.2f}s + analysis {analysis_s:.2f}s")
    print(
        f"page ready / (read + analysis), median of {len(page_ratios)} fresh sessions: {out['page_over_core']:.2f} "
        f"(target <= 1.5); each: {', '.join(f'{r:.2f}' for r in page_ratios)}"
    )
    print(
        f"medians of {repeats} rounds: rerun after a sub-grid lens edit {out['rerun_s']:.3f}s, "
        f"core analyze() alone {out['rerun_core_s']:.3f}s"
    )
    print(f"rerun / core of the same round, median over rounds: {edit_ratio:.2f} (target <= 1.5)")
    print("tab opened (s): " + ", ".join(f"{k} {v:.2f}" for k, v in tab_s.items()))
    print(f"largest figure: {out['largest_figure_mb']:.2f} MB ({largest}) of {len(sizes)} (target <= 2 MB each)")
    over = [k for k, v in sizes.items() if v > 2e6]
    if over:
        print(f"figures over 2 MB: {over}")
    print(
        f"resident memory grown by the session: {rss_session / 1e6:.0f} MB = "
        f"{out['rss_session_over_decoded']:.2f}x the decoded logits ({decoded / 1e6:.0f} MB) (target <= 3); "
        f"after the first run {out['rss_first_run_over_decoded']:.2f}x"
    )
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--cols", type=int, default=1000)
    parser.add_argument("--format", choices=["npz", "csv"], default="npz")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--page-rounds", type=int, default=3, help="fresh sessions whose first page is timed (median of the ratios)"
    )
    parser.add_argument(
        "--no-warm-up", dest="warm_up", action="store_false", help="measure the process's first session (cold)"
    )
    parser.add_argument(
        "--fixed-mmap-threshold",
        dest="fixed_heap",
        action="store_true",
        help="map blocks of 1 MB and more on their own (glibc), as a server that sets it would: the memory figure is "
        "then what the session holds, without the freed heap glibc keeps (tens of MB, varying run to run)",
    )


def run(args: argparse.Namespace) -> None:
    header()
    bench_scale(args.rows, args.cols, args.format, args.repeats, args.warm_up, args.fixed_heap, args.page_rounds)


if __name__ == "__main__":
    run_module("benchmarks.app_scale", __doc__, add_arguments, run)
