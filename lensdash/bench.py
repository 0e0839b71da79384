"""Benchmarks: ratios against a reference measured side by side in the same run.

    python -m lensdash.bench loss [--device cpu|cuda] [--quick]
    python -m lensdash.bench read [--rows 100000 --cols 100]
    python -m lensdash.bench app [--rows 100000 --cols 100]
    python -m lensdash.bench lab
    python -m lensdash.bench report [--rows 10000000 --cols 100 --format npy|csv|parquet]

These machines are shared and noisy, so every figure is a ratio against a
reference run in the same process, over interleaved repeats: of medians, or
(``read``, ``app``) the median of each round's ratio.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def _header(device: str = "cpu") -> None:
    where = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )
    print(
        f"# torch {torch.__version__}, python {platform.python_version()}, {device}: {where}, threads={torch.get_num_threads()}"
    )


def _sync(device: str) -> None:
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
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


# ------------------------------------------------------------------- loss


def _fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        x.grad = None
        fn(x).backward()

    return run


def bench_loss(device: str, quick: bool) -> list[tuple[str, str, float, float]]:
    shapes = [(200_000, 100), (20_000, 1_000), (2_000, 10_000)]
    if quick:
        shapes = [(n // 10, k) for n, k in shapes]
    rows: list[tuple[str, str, float, float]] = []
    for n, k in shapes:
        rows += _bench_loss_shape(n, k, device, 7 if quick else 15)
        gc.collect()
    return rows


def _bench_loss_shape(n: int, k: int, device: str, repeats: int) -> list[tuple[str, str, float, float]]:
    from lensdash import lensed_cross_entropy, merge_lens, prediction_lensed_cross_entropy, smoothing_lens

    rows = []
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, k, generator=gen).to(device).requires_grad_(True)
    y = torch.randint(0, k, (n,), generator=gen).to(device)
    dense = torch.softmax(torch.randn(k, k, generator=gen), 1).to(device)
    pairs = torch.eye(k)
    for i in range(0, min(k, 20), 2):  # a few confused pairs
        pairs[i, i], pairs[i, i + 1] = 0.8, 0.2
    structured = {
        "identity": torch.eye(k, device=device),
        "merge groups": merge_lens(k, [list(range(g, g + 4)) for g in range(0, min(k, 40), 4)])
        .matrix.float()
        .to(device),
        "label smoothing": smoothing_lens(k, 0.1).matrix.float().to(device),
        "confused pairs": pairs.to(device),
    }
    t = compare(
        {
            "ce_prob": _fwd_bwd(lambda x: F.cross_entropy(x, dense[y]), x),
            "seed": _fwd_bwd(lambda x: F.kl_div(F.log_softmax(x, 1), dense[y], reduction="sum") / n, x),
            "dense": _fwd_bwd(lambda x: lensed_cross_entropy(x, y, dense), x),
        },
        repeats=repeats,
        device=device,
    )
    rows.append((f"{n}x{k}", "dense lens vs F.cross_entropy(x, C[y])", t["dense"] / t["ce_prob"], 1.0))
    rows.append((f"{n}x{k}", "seed formulation vs F.cross_entropy(x, C[y])", t["seed"] / t["ce_prob"], float("nan")))
    for name, lens in structured.items():
        t = compare(
            {
                "ce_hard": _fwd_bwd(lambda x: F.cross_entropy(x, y), x),
                "lensed": _fwd_bwd(lambda x, lens=lens: lensed_cross_entropy(x, y, lens), x),
                "prediction": _fwd_bwd(lambda x, lens=lens: prediction_lensed_cross_entropy(x, y, lens), x),
            },
            repeats=repeats,
            device=device,
        )
        rows.append((f"{n}x{k}", f"{name} vs F.cross_entropy(x, y)", t["lensed"] / t["ce_hard"], 1.1))
        rows.append(
            (f"{n}x{k}", f"prediction-side {name} vs F.cross_entropy(x, y)", t["prediction"] / t["ce_hard"], 1.5)
        )
    return rows


def _print_rows(rows: list[tuple[str, str, float, float]]) -> None:
    print(f"{'shape':>14}  {'ratio':>6}  {'target':>6}  what")
    for shape, what, ratio, target in rows:
        flag = "" if target != target else ("ok" if ratio <= target else "OVER")
        tgt = "" if target != target else f"<={target:g}"
        print(f"{shape:>14}  {ratio:6.2f}  {tgt:>6}  {what} {flag}")


# -------------------------------------------------------------------- read


def bench_read(rows: int, cols: int) -> None:
    import numpy as np
    import pandas as pd
    import pyarrow.csv as pacsv

    from lensdash.files import read_predictions

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
        t = rounds(
            {
                "pandas": lambda: pd.read_csv(path, engine="c"),
                "pyarrow": lambda: pacsv.read_csv(path),
                "lensdash": lambda: read_predictions(path),
            },
            repeats=15,
        )
        med = {name: statistics.median(ts) for name, ts in t.items()}
        # Each round's own faster engine: drift within the run hits both sides of every ratio alike.
        ratio = statistics.median(
            ours / min(pd_t, pa_t) for ours, pd_t, pa_t in zip(t["lensdash"], t["pandas"], t["pyarrow"], strict=True)
        )
        print(
            f"medians of 15 rounds: pandas.read_csv {med['pandas']:.3f}s, pyarrow.csv.read_csv {med['pyarrow']:.3f}s, read_predictions {med['lensdash']:.3f}s"
        )
        print(f"read_predictions / faster engine of the same round, median over rounds: {ratio:.2f} (target <= 1.2)")
        imports = "import lensdash.files, pyarrow.csv, pandas"
        base = _peak_rss_of(imports)
        peak = _peak_rss_of(f"{imports}; lensdash.files.read_predictions({path!r})")
        engine = _peak_rss_of(f"{imports}; pyarrow.csv.read_csv({path!r})")
        budget = 3 * rows * cols * 4 + size
        print(
            f"peak memory while reading, above the import baseline of {base / 1e6:.0f} MB: read_predictions {(peak - base) / 1e6:.0f} MB"
            f" (pyarrow.csv.read_csv alone {(engine - base) / 1e6:.0f} MB); budget 3x float32 data + file = {budget / 1e6:.0f} MB"
        )


# --------------------------------------------------------------------- app


def bench_app(rows: int, cols: int, repeats: int = 15) -> None:
    """The page's rerun after a lens edit vs the core computation it needs, on an uploaded file."""
    import warnings

    import numpy as np
    import pandas as pd
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from lensdash import Lens, read_predictions
    from lensdash.analysis import analyze

    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        rng.standard_normal((rows, cols)).astype("float32") * 3, columns=[f"class {i}" for i in range(cols)]
    )
    frame["label"] = rng.integers(0, cols, rows)
    data = frame.to_csv(index=False).encode()
    print(f"# upload: {rows} x {cols} logits + label column, {len(data) / 1e6:.0f} MB")
    preds = read_predictions(data)
    app_path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app.py")
    st.cache_data.clear()
    at = AppTest.from_file(app_path, default_timeout=600)
    at.run()
    at.file_uploader(key=f"upload_predictions_{at.session_state['upload_version']}").set_value(
        ("big.csv", data, "text/csv")
    )
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
        row, col, v = i % cols, (i * 7 + 1) % cols, 0.1 + (i % 40) / 100
        if col == row:
            col = (col + 1) % cols
        edit = {row: {names[row]: 1 - v, names[col]: v}}
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
        f"medians of {repeats} rounds: rerun after a lens edit {statistics.median(t['rerun']):.3f}s, core analyze() alone {statistics.median(t['core']):.3f}s"
    )
    print(f"rerun / core of the same round, median over rounds: {ratio:.2f} (target <= 1.5)")
    sizes = {}
    for chart in at.get("plotly_chart"):
        sizes[chart.proto.id or "chart"] = len(chart.proto.spec.encode())
    print(f"largest figure payload: {max(sizes.values()) / 1e6:.2f} MB of {len(sizes)} figures (target < 2 MB each)")


# --------------------------------------------------------------------- lab


def bench_lab(repeats: int = 3) -> None:
    """Wall time of the training lab's default run (both models) on each problem; the target is under 10 s."""
    from lensdash.lens import merge_lens
    from lensdash.training import TrainConfig, blobs, digits, train_pair

    for problem, groups in ((blobs(), [[0, 1]]), (digits(), [[3, 5, 8], [4, 9]])):
        lens = merge_lens(problem.num_classes, groups)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            train_pair(problem, lens, TrainConfig())
            times.append(time.perf_counter() - t0)
        print(
            f"{problem.name}: default run (2 models x {TrainConfig().epochs} epochs) median {statistics.median(times):.2f}s, first {times[0]:.2f}s (target < 10 s)"
        )


# ------------------------------------------------------------------ report


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
            f"# {fmt}: {rows:,} x {cols} float32 ({rows * cols * 4 / 1e9:.1f} GB of data, file {size / 1e9:.1f} GB), written in {time.perf_counter() - t0:.0f}s"
        )
        lens = os.path.join(tmp, "lens.csv")
        with open(lens, "wb") as handle:
            from lensdash.files import lens_to_bytes

            handle.write(lens_to_bytes(merge_lens(cols, [list(range(0, 10))]), "plain-csv"))
        argv = ["report", path, "--labels", labels, "--lens", lens, "--out", os.path.join(tmp, "report"), "--quiet"]
        code = f"import sys; from lensdash.cli import main; code = main({argv!r}); assert code == 0, code"
        t0 = time.perf_counter()
        peak = _peak_rss_of(code)
        seconds = time.perf_counter() - t0
        base = _peak_rss_of("import lensdash.cli, lensdash.report, pyarrow.parquet")
        print(
            f"report: {seconds:.1f}s, {rows / seconds:,.0f} rows/s; peak RSS {peak / 1e9:.2f} GB ({(peak - base) / 1e6:.0f} MB above the imports) (target < 1 GB)"
        )


def _peak_rss_of(code: str) -> int:
    """Peak resident memory of a fresh process running ``code``, in bytes.

    Read from ``VmHWM``, which belongs to the new process image: ``ru_maxrss``
    would report the (larger) benchmark process it was forked from.
    """
    import subprocess

    probe = "\nprint([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    out = subprocess.run([sys.executable, "-c", code + probe], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lensdash.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    loss = sub.add_parser("loss", help="lensed loss forward+backward vs PyTorch's cross-entropy")
    loss.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    loss.add_argument("--quick", action="store_true", help="one tenth of the rows")
    read = sub.add_parser("read", help="read_predictions vs pandas and pyarrow alone")
    read.add_argument("--rows", type=int, default=100_000)
    read.add_argument("--cols", type=int, default=100)
    app = sub.add_parser("app", help="the page's rerun after a lens edit vs the core analysis alone")
    app.add_argument("--rows", type=int, default=100_000)
    app.add_argument("--cols", type=int, default=100)
    sub.add_parser("lab", help="the training lab's default run time")
    rep = sub.add_parser("report", help="peak memory and throughput of the streaming report")
    rep.add_argument("--rows", type=int, default=10_000_000)
    rep.add_argument("--cols", type=int, default=100)
    rep.add_argument("--format", default="npy", choices=["npy", "csv", "parquet"])
    args = parser.parse_args(argv)
    if args.what == "loss":
        _header(args.device)
        _print_rows(bench_loss(args.device, args.quick))
    elif args.what == "read":
        _header()
        bench_read(args.rows, args.cols)
    elif args.what == "app":
        _header()
        bench_app(args.rows, args.cols)
    elif args.what == "lab":
        _header()
        bench_lab()
    elif args.what == "report":
        _header()
        bench_report(args.rows, args.cols, args.format)


if __name__ == "__main__":
    main()
