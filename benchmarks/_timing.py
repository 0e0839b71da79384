"""Timing helpers shared by the benchmarks: interleaved rounds, medians, peak memory of a fresh process.

These machines are shared and noisy, so every figure is a ratio against a reference run in the same process, over
interleaved repeats: of medians, or the median of each round's ratio.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch


def header(device: str = "cpu") -> None:
    where = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )
    print(
        f"# torch {torch.__version__}, python {platform.python_version()}, {device}: {where}, "
        f"threads={torch.get_num_threads()}"
    )


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def compare(candidates: dict[str, Callable[[], object]], *, repeats: int, device: str = "cpu") -> dict[str, float]:
    """Median seconds of each candidate, interleaved so drift hits all alike."""
    return {name: statistics.median(ts) for name, ts in rounds(candidates, repeats=repeats, device=device).items()}


def rounds(candidates: dict[str, Callable[[], object]], *, repeats: int, device: str = "cpu") -> dict[str, list[float]]:
    """Seconds of each candidate in each of ``repeats`` interleaved rounds (after one warm-up round)."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for fn in candidates.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in candidates.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def peak_rss_of(code: str) -> int:
    """Peak resident memory of a fresh process running ``code``, in bytes.

    Read from ``VmHWM``, which belongs to the new process image: ``ru_maxrss``
    would report the (larger) benchmark process it was forked from.
    """
    probe = "\nprint([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    out = subprocess.run([sys.executable, "-c", code + probe], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024


def print_rows(rows: list[tuple[str, str, float, float]]) -> None:
    """A table of (shape, what, ratio, target) rows; a NaN target means 'for information'."""
    print(f"{'shape':>14}  {'ratio':>6}  {'target':>6}  what")
    for shape, what, ratio, target in rows:
        flag = "" if target != target else ("ok" if ratio <= target else "OVER")
        tgt = "" if target != target else f"<={target:g}"
        print(f"{shape:>14}  {ratio:6.2f}  {tgt:>6}  {what} {flag}")


def run_module(prog: str, doc: str | None, add_arguments: Callable, run: Callable) -> None:
    """``python -m benchmarks.NAME``: one benchmark module's own command line (the package's is ``__main__``)."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc)
    add_arguments(parser)
    run(parser.parse_args())
