"""Lensed loss forward + backward against PyTorch's cross-entropy, side by side in one process.

python -m benchmarks.loss [--device cpu|cuda] [--quick]
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmarks._timing import compare, header, print_rows


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


def run(args: argparse.Namespace) -> None:
    header(args.device)
    print_rows(bench_loss(args.device, args.quick, args.scale))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loss", description=__doc__)
    add_arguments(parser)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
