"""Benchmarks: ratios against a reference measured side by side in the same run.

    python -m benchmarks loss [--device cpu|cuda] [--quick]
    python -m benchmarks read [--rows 100000 --cols 100]
    python -m benchmarks app [--rows 100000 --cols 100]
    python -m benchmarks lab
    python -m benchmarks report [--rows 10000000 --cols 100 --format npy|csv|parquet]

Each is also a module of its own (``python -m benchmarks.loss ...``). These machines are shared and noisy, so every
figure is a ratio against a reference run in the same process, over interleaved repeats: of medians, or (``read``,
``app``) the median of each round's ratio. ``tests/test_benchmarks.py`` runs each at a tiny size so they cannot rot.
"""
