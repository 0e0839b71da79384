"""Peak memory and throughput of ``python -m lensdash report`` on a generated file (target < 1 GB RSS).

python -m benchmarks.report [--rows 10000000 --cols 100 --format npy|csv|parquet]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from benchmarks._timing import header, peak_rss_of, run_module


def bench_report(rows: int, cols: int, fmt: str) -> None:
    """Peak memory and throughput of ``python -m lensdash report`` on a generated file (the target is < 1 GB RSS)."""
    import numpy as np

    from lensdash.lens import merge_lens

    with tempfile.TemporaryDirectory() as tmp:
        path, labels = os.path.join(tmp, f"preds.{fmt}"), os.path.join(tmp, "labels.npy")
        rng = np.random.default_rng(0)
        block = 500_000
        t0 = time.perf_counter()
        y = rng.integers(0, cols, rows)
        np.save(labels, y)
        if fmt == "npy":
            out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, cols))
            for start in range(0, rows, block):
                out[start : start + block] = rng.standard_normal((min(block, rows - start), cols), dtype=np.float32) * 3
            out.flush()
            del out
        elif fmt == "csv":
            with open(path, "w") as handle:
                for start in range(0, rows, block):
                    np.savetxt(
                        handle,
                        rng.standard_normal((min(block, rows - start), cols), dtype=np.float32) * 3,
                        delimiter=",",
                        fmt="%.5g",
                    )
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            writer = None
            for start in range(0, rows, block):
                values = rng.standard_normal((min(block, rows - start), cols), dtype=np.float32) * 3
                table = pa.table({f"c{j}": values[:, j] for j in range(cols)})
                writer = writer or pq.ParquetWriter(path, table.schema)
                writer.write_table(table, row_group_size=100_000)
            writer.close()
        size = os.path.getsize(path)
        print(
            f"# {fmt}: {rows:,} x {cols} float32 ({rows * cols * 4 / 1e9:.1f} GB of data, file {size / 1e9:.1f} GB), "
            f"written in {time.perf_counter() - t0:.0f}s"
        )
        lens = os.path.join(tmp, "lens.csv")
        with open(lens, "wb") as handle:
            from lensdash.io import lens_to_bytes

            handle.write(lens_to_bytes(merge_lens(cols, [list(range(0, min(cols, 10)))]), "plain-csv"))
        argv = ["report", path, "--labels", labels, "--lens", lens, "--out", os.path.join(tmp, "report"), "--quiet"]
        code = f"import sys; from lensdash.cli import main; code = main({argv!r}); assert code == 0, code"
        t0 = time.perf_counter()
        peak = peak_rss_of(code)
        seconds = time.perf_counter() - t0
        base = peak_rss_of("import lensdash.cli, lensdash.report, pyarrow.parquet")
        print(
            f"report: {seconds:.1f}s, {rows / seconds:,.0f} rows/s; peak RSS {peak / 1e9:.2f} GB "
            f"({(peak - base) / 1e6:.0f} MB above the imports) (target < 1 GB)"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--format", default="npy", choices=["npy", "csv", "parquet"])


def run(args: argparse.Namespace) -> None:
    header()
    bench_report(args.rows, args.cols, args.format)


if __name__ == "__main__":
    run_module("benchmarks.report", __doc__, add_arguments, run)
