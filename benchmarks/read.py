"""``read_predictions`` against polars, pyarrow and pandas reading the same CSV, side by side in one process.

python -m benchmarks.read [--rows 100000 --cols 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

from benchmarks._timing import header, peak_rss_of, rounds, run_module


def bench_read(rows: int, cols: int, repeats: int = 15) -> None:
    """Median per-round ratio of ``read_predictions`` to each engine, and peak memory above the imports."""
    import numpy as np
    import pandas as pd
    import polars as pl
    import pyarrow.csv as pacsv

    from lensdash.io import read_predictions

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "preds.csv")
        frame = pd.DataFrame(
            rng.standard_normal((rows, cols)).astype("float32") * 3, columns=[f"c{i}" for i in range(cols)]
        )
        frame.insert(cols // 2, "label", rng.integers(0, cols, rows))
        frame.to_csv(path, index=False)
        size = os.path.getsize(path)
        print(f"# file: {rows} x {cols} floats + label column, {size / 1e6:.0f} MB")
        cpu: dict[str, list[float]] = {}
        t = rounds(
            {
                "pandas": _cpu_timed(cpu, "pandas", lambda: pd.read_csv(path, engine="c")),
                "pyarrow": _cpu_timed(cpu, "pyarrow", lambda: pacsv.read_csv(path)),
                "polars": _cpu_timed(cpu, "polars", lambda: pl.read_csv(path)),
                "lensdash": _cpu_timed(cpu, "lensdash", lambda: read_predictions(path)),
            },
            repeats=repeats,
        )
        med = {name: statistics.median(ts) for name, ts in t.items()}
        # Ratios within each round: drift within the run hits both sides of every ratio alike.
        engines = {"polars": "polars.read_csv", "pyarrow": "pyarrow.csv.read_csv", "pandas": "pandas.read_csv"}
        ratios = {
            e: statistics.median(ours / theirs for ours, theirs in zip(t["lensdash"], t[e], strict=True))
            for e in engines
        }
        best = statistics.median(
            ours / min(others) for ours, *others in zip(t["lensdash"], *(t[e] for e in engines), strict=True)
        )
        print(
            f"medians of {repeats} rounds: "
            + ", ".join(f"{label} {med[e]:.3f}s" for e, label in engines.items())
            + f", read_predictions {med['lensdash']:.3f}s"
        )
        print(
            "read_predictions / engine of the same round, median over rounds: "
            + ", ".join(f"{label} {ratios[e]:.2f}" for e, label in engines.items())
            + f"; read_predictions / faster engine {best:.2f} (target <= 1.0 each)"
        )
        # CPU seconds of all the process's threads: what a busy machine's cores must give each reader, whatever the
        # scheduling (the warm-up round left out).
        cpu_med = {name: statistics.median(ts[1:]) for name, ts in cpu.items()}
        print(
            "CPU seconds (all threads), median: "
            + ", ".join(f"{label} {cpu_med[e]:.3f}" for e, label in engines.items())
            + f", read_predictions {cpu_med['lensdash']:.3f}; read_predictions / engine: "
            + ", ".join(f"{label} {cpu_med['lensdash'] / cpu_med[e]:.2f}" for e, label in engines.items())
        )
        imports = "import lensdash.io, pyarrow.csv, pandas, polars"
        base = peak_rss_of(imports)
        peak = peak_rss_of(f"{imports}; lensdash.io.read_predictions({path!r})")
        engine = peak_rss_of(f"{imports}; pyarrow.csv.read_csv({path!r})")
        budget = 3 * rows * cols * 4 + size
        print(
            f"peak memory while reading, above the import baseline of {base / 1e6:.0f} MB: "
            f"read_predictions {(peak - base) / 1e6:.0f} MB "
            f"(pyarrow.csv.read_csv alone {(engine - base) / 1e6:.0f} MB); "
            f"budget 3x float32 data + file = {budget / 1e6:.0f} MB"
        )


def _cpu_timed(cpu: dict[str, list[float]], name: str, fn: Callable[[], object]) -> Callable[[], None]:
    """``fn``, recording the process's CPU seconds of each call under ``name``."""

    def run() -> None:
        start = time.process_time()
        fn()
        cpu.setdefault(name, []).append(time.process_time() - start)

    return run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=15)


def run(args: argparse.Namespace) -> None:
    header()
    bench_read(args.rows, args.cols, args.repeats)


if __name__ == "__main__":
    run_module("benchmarks.read", __doc__, add_arguments, run)
