"""Command line: ``python -m lensdash report PREDICTIONS --lens LENS [...]``.

Streams files of any size (memory is bounded by the chunk, not the file) and
writes the app's summary into a folder. Under ``torchrun`` each process reads
its own share and the per-class sums are added with ``all_reduce``::

    torchrun --nproc-per-node 4 -m lensdash report big.csv --lens lens.csv --out report/
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from lensdash.errors import LensdashError
from lensdash.io import CHUNK_ROWS, DEFAULT_MAX_CELLS, DEFAULT_MAX_CLASSES, KINDS


class ProgressBar:
    """Rows read and throughput on stderr: redrawn in place on a terminal, a line per 10% otherwise."""

    def __init__(self, stream=None, prefix: str = "") -> None:
        self.stream, self.prefix = stream or sys.stderr, prefix
        self.start = self.last = time.perf_counter()
        self.tty = self.stream.isatty()
        self.next_tenth = 1

    def __call__(self, done: int, total: int, rows: int) -> None:
        now = time.perf_counter()
        share = done / total if total else 1.0
        if self.tty and now - self.last < 0.2 and done < total:
            return
        if not self.tty and share * 10 < self.next_tenth and done < total:
            return
        self.last, self.next_tenth = now, int(share * 10) + 1
        rate = rows / max(now - self.start, 1e-9)
        width = 30
        bar = "#" * int(share * width) + "-" * (width - int(share * width))
        line = f"{self.prefix}[{bar}] {share:6.1%}  {rows:,} rows  {rate:,.0f} rows/s"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        if self.tty and done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lensdash", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="stream a predictions file and write the summary the app shows")
    rep.add_argument("predictions", help="CSV, Parquet or .npy file")
    rep.add_argument("--labels", help="a separate labels file (one label per prediction row)")
    rep.add_argument(
        "--lens",
        required=True,
        help="lens file: CSV (headerless or with class names), JSON or .pt; rows are target distributions summing to 1",
    )
    rep.add_argument("--kind", default="auto", choices=KINDS, help="what the numbers are (default: detect)")
    rep.add_argument(
        "--family", default="target", choices=["target", "prediction"], help="lens family (default: target, the seed's)"
    )
    rep.add_argument("--label-column", help="name of the label column, if not one of label/target/y/...")
    rep.add_argument("--out", default="lensdash-report", help="output folder (default: lensdash-report)")
    rep.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    rep.add_argument(
        "--chunk-rows",
        type=int,
        default=CHUNK_ROWS,
        help=f"rows per chunk for Parquet and .npy (default {CHUNK_ROWS:,})",
    )
    rep.add_argument(
        "--max-cells",
        type=int,
        default=DEFAULT_MAX_CELLS,
        help=f"refuse predictions of more rows x classes, before reading them (default {DEFAULT_MAX_CELLS:,})",
    )
    rep.add_argument(
        "--max-classes",
        type=int,
        default=DEFAULT_MAX_CLASSES,
        help=f"refuse predictions of more classes (default {DEFAULT_MAX_CLASSES:,})",
    )
    rep.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from lensdash.report import all_reduce, check_label_count, check_output_folder, report

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    distributed = world > 1
    if distributed:
        import torch
        import torch.distributed as dist

        if args.device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend="nccl" if args.device == "cuda" else "gloo")
    device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if args.device == "cuda" and distributed else args.device
    prefix = f"rank {rank}/{world} " if distributed else ""
    error: LensdashError | None = None
    result = None
    try:
        check_output_folder(args.out)
        progress = None if args.quiet or rank != 0 else ProgressBar(prefix=prefix)
        result = report(
            args.predictions,
            args.lens,
            labels=args.labels,
            kind=args.kind,
            family=args.family,
            label_column=args.label_column,
            device=device,
            chunk_rows=args.chunk_rows,
            shard=(rank, world),
            progress=progress,
            max_cells=args.max_cells,
            max_classes=args.max_classes,
        )
    except LensdashError as exc:
        error = exc
    others_failed = False
    if distributed:
        failed = torch.tensor([0.0 if error is None else 1.0], device=device)
        dist.all_reduce(failed)  # every process must learn that one failed, or the others would wait forever
        others_failed = error is None and failed.item() > 0
        if failed.item() == 0:
            result = all_reduce(result)
    if error is None and not others_failed:
        try:
            check_label_count(result)
            if rank == 0:
                paths = result.write(args.out)
                s = result.summary()
                print(
                    f"{s['num_samples']:,} samples x {s['num_classes']} classes ({result.kind}): unlensed loss {s['unlensed_loss']:.4f}, "
                    f"lensed {s['lensed_loss']:.4f} ({args.family}), accuracy {s['accuracy']:.1%}, lens-aware {s['lens_aware_accuracy']:.1%}"
                )
                print(f"wrote {len(paths)} files to {args.out}")
        except LensdashError as exc:
            error = exc
    if distributed:
        dist.destroy_process_group()
    if error is not None:
        print(f"{prefix}error: {error}", file=sys.stderr)
        return 2
    if others_failed:
        print(f"{prefix}stopped: another process failed (see its message); no report was written", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
