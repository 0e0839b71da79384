"""Lensed loss forward + backward against PyTorch's cross-entropy, side by side in one process.

python -m benchmarks.loss [--device cpu|cuda] [--quick] [--scale F] [--no-compiled | --only-compiled]

Two tables: eager (lensdash's eager path against eager ``F.cross_entropy``) and compiled (``compiled=True``, the
process-wide cached ``torch.compile`` kernel, against ``torch.compile``'d ``F.cross_entropy`` and against one
read+write pass over the logits, ``x * 2``), each a median of interleaved runs; for scale, compiled cross-entropy,
one exponential per entry and the parts of ``x * 2`` (the page faults of its fresh output, the pass itself) against
``x * 2``. First-call compile times are reported separately, and the extra memory the backward pass allocates, in
units of one N×K float32 buffer.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmarks._timing import compare, header, print_rows, run_module, sync


def _fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        x.grad = None
        fn(x).backward()

    return run


def bench_loss(device: str, quick: bool, scale: float = 1.0) -> list[tuple[str, str, float, float]]:
    """Ratios at (200k, 100), (20k, 1k) and (2k, 10k); ``quick`` is one tenth of the rows, ``scale`` any fraction."""
    scale = scale / 10 if quick else scale
    shapes = [(max(int(n * scale), 8), k) for n, k in [(200_000, 100), (20_000, 1_000), (2_000, 10_000)]]
    rows: list[tuple[str, str, float, float]] = []
    for n, k in shapes:
        rows += _bench_loss_shape(n, k, device, 7 if scale < 1 else 15)
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="one tenth of the rows")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the rows (and of the repeats) to run")
    parser.add_argument("--no-compiled", action="store_true", help="skip the compiled table (no torch.compile)")
    parser.add_argument("--only-compiled", action="store_true", help="skip the eager table")


def _lenses(k: int, device: str, gen: torch.Generator) -> dict[str, object]:
    from lensdash import merge_lens, smoothing_lens

    pairs = torch.eye(k)
    for i in range(0, min(k, 20), 2):  # a few confused pairs
        pairs[i, i], pairs[i, i + 1] = 0.8, 0.2
    return {
        "dense": torch.softmax(torch.randn(k, k, generator=gen), 1).to(device),
        "identity": torch.eye(k, device=device),
        "merge groups": merge_lens(k, [list(range(g, g + 4)) for g in range(0, min(k, 40), 4)]).to(device),
        "label smoothing": smoothing_lens(k, 0.1).to(device),
        "confused pairs": pairs.to(device),
    }


def bench_compiled(device: str, quick: bool, scale: float = 1.0) -> tuple[list[tuple[str, str, float, float]], dict]:
    """Compiled lensdash against compiled ``F.cross_entropy`` and ``x * 2`` at (200k, 100) and (20k, 1k)."""
    scale = scale / 10 if quick else scale
    shapes = [(max(int(n * scale), 8), k) for n, k in [(200_000, 100), (20_000, 1_000)]]
    rows: list[tuple[str, str, float, float]] = []
    first_calls: dict[str, float] = {}
    for n, k in shapes:
        rows += _bench_compiled_shape(n, k, device, 7 if scale < 1 else 15, first_calls)
        gc.collect()
    return rows, first_calls


def _bench_compiled_shape(
    n: int, k: int, device: str, repeats: int, first_calls: dict[str, float]
) -> list[tuple[str, str, float, float]]:
    from lensdash import lensed_cross_entropy, prediction_lensed_cross_entropy

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, k, generator=gen).to(device).requires_grad_(True)
    y = torch.randint(0, k, (n,), generator=gen).to(device)
    lenses = _lenses(k, device, gen)
    dense = lenses["dense"]
    ce_dense = torch.compile(lambda x: F.cross_entropy(x, dense[y]))
    ce_smooth = torch.compile(lambda x: F.cross_entropy(x, y, label_smoothing=0.1))
    into = torch.empty_like(x.detach())
    exp_pass = torch.compile(torch.exp)
    candidates = {
        "x*2": lambda: x.detach() * 2,
        # What one read+write pass costs: writing into a buffer that exists (no page faults), allocating and filling
        # a fresh one (the page faults alone), and one exponential per entry on top of the pass.
        "x*2 into an existing buffer": lambda: torch.mul(x.detach(), 2, out=into),
        "fresh buffer, filled": lambda: torch.empty_like(into).fill_(1.0),
        "compiled exp(x)": lambda: exp_pass(x.detach()),
        "compiled CE(x, C[y])": _fwd_bwd(ce_dense, x),
        "compiled CE(x, y, label_smoothing=0.1)": _fwd_bwd(ce_smooth, x),
        "label_smoothing=0.1, identity lens": _fwd_bwd(
            lambda x: lensed_cross_entropy(x, y, lenses["identity"], label_smoothing=0.1, compiled=True), x
        ),
    }
    for name, lens in lenses.items():
        candidates[name] = _fwd_bwd(lambda x, lens=lens: lensed_cross_entropy(x, y, lens, compiled=True), x)
        candidates[f"prediction-side {name}"] = _fwd_bwd(
            lambda x, lens=lens: prediction_lensed_cross_entropy(x, y, lens, compiled=True), x
        )
    for name, fn in candidates.items():  # the first call compiles: timed on its own, outside the table
        if not name.startswith(("x*2", "fresh", "compiled exp")) and name not in first_calls:
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            first_calls[name] = time.perf_counter() - t0
    t = compare(candidates, repeats=repeats, device=device)
    shape = f"{n}x{k}"
    rows = [
        (
            shape,
            "compiled: dense lens vs compiled F.cross_entropy(x, C[y])",
            t["dense"] / t["compiled CE(x, C[y])"],
            1.0,
        )
    ]
    smooth = t["compiled CE(x, y, label_smoothing=0.1)"]
    for name in ("label smoothing", "label_smoothing=0.1, identity lens", "merge groups"):
        rows.append(
            (shape, f"compiled: {name} vs compiled F.cross_entropy(..., label_smoothing)", t[name] / smooth, 1.0)
        )
    for name in ("identity", "merge groups", "label smoothing", "confused pairs"):
        rows.append((shape, f"compiled: {name} vs one read+write pass (x * 2)", t[name] / t["x*2"], 2.0))
        rows.append((shape, f"compiled: prediction-side {name} vs x * 2", t[f"prediction-side {name}"] / t["x*2"], 2.0))
    for name, what in (
        ("compiled CE(x, C[y])", "compiled F.cross_entropy(x, C[y])"),
        ("compiled CE(x, y, label_smoothing=0.1)", "compiled F.cross_entropy(x, y, label_smoothing=0.1)"),
        ("compiled exp(x)", "compiled exp(x) (one exponential per entry)"),
        ("fresh buffer, filled", "a fresh N×K buffer, filled (its page faults)"),
        ("x*2 into an existing buffer", "x * 2 into an existing buffer"),
    ):
        rows.append((shape, f"{what} vs x * 2 (for scale)", t[name] / t["x*2"], float("nan")))
    return rows


_PEAK_CODE = """
import torch, torch.nn.functional as F, lensdash as ld
n, k, which = {n}, {k}, {which!r}
x = torch.randn(n, k, requires_grad=True); y = torch.randint(0, k, (n,))
lens = ld.merge_lens(k, [[0, 1, 2, 3]])
loss = F.cross_entropy(x, y) if which == "F.cross_entropy" else ld.lensed_cross_entropy(x, y, lens)
def rss(field):
    return int([l for l in open('/proc/self/status') if l.startswith(field)][0].split()[1]) * 1024
before = rss('VmRSS')
open('/proc/self/clear_refs', 'w').write('5')  # restart the peak count (VmHWM) here
loss.backward()
print((rss('VmHWM') - before) / (n * k * 4))
"""


def backward_peak(n: int, k: int) -> dict[str, float]:
    """Extra resident memory during ``loss.backward()`` (after the forward), in N×K float32 buffers, fresh processes."""
    out = {}
    for which in ("F.cross_entropy", "lensdash merge lens"):
        code = _PEAK_CODE.format(n=n, k=k, which=which)
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        out[which] = float(result.stdout.strip().splitlines()[-1])
    return out


def run(args: argparse.Namespace) -> None:
    header(args.device)
    if not args.only_compiled:
        print("## eager")
        print_rows(bench_loss(args.device, args.quick, args.scale))
    if not args.no_compiled:
        print("## compiled (compiled=True against torch.compile)")
        rows, first_calls = bench_compiled(args.device, args.quick, args.scale)
        print_rows(rows)
        print("## first call (compiles; paid once per process, dtype and device)")
        for name, seconds in first_calls.items():
            print(f"{seconds:8.2f} s  {name}")
    if args.device == "cpu":
        n = max(int(200_000 * args.scale / (10 if args.quick else 1)), 8)
        print(f"## extra memory during backward at {n}x100 (N×K float32 buffers besides x and the forward's)")
        for which, buffers in backward_peak(n, 100).items():
            print(f"{buffers:8.2f}  {which}")


if __name__ == "__main__":
    run_module("benchmarks.loss", __doc__, add_arguments, run)
