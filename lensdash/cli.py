"""Command line: ``python -m lensdash report PREDICTIONS --lens LENS [...]``.

Streams files of any size (memory is bounded by the chunk, not the file) and
writes the app's summary into a folder. Under ``torchrun`` each process reads
its own share and the per-class sums are added with ``all_reduce``::

    torchrun --nproc-per-node 4 -m lensdash report big.csv --lens lens.csv --out report/

--out must be a new path, an empty folder or a previous report (it holds a .lensdash-report.json marker and
nothing else); anything else is refused before any data is read. Ctrl-C / SIGTERM leave --out as it was.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import Any

from lensdash.errors import InputError, LensdashError
from lensdash.families import FAMILY_NAMES
from lensdash.io import CHUNK_ROWS, DEFAULT_MAX_CELLS, DEFAULT_MAX_CLASSES, KINDS
from lensdash.report import (
    BOOTSTRAP_RESAMPLES,
    OutputFolder,
    all_reduce,
    check_label_count,
    check_output_folder,
    report,
)
from lensdash.report_folder import signals_deferred


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
    rep.add_argument("predictions", help="CSV, Parquet, .npy or .npz file")
    rep.add_argument("--labels", help="a separate labels file (one label per prediction row)")
    rep.add_argument(
        "--lens",
        required=True,
        help="lens file: CSV (headerless or with class names), JSON or .pt; rows are target distributions summing to 1",
    )
    rep.add_argument("--kind", default="auto", choices=KINDS, help="what the numbers are (default: detect)")
    rep.add_argument(
        "--family", default="target", choices=FAMILY_NAMES, help="lens family (default: target, the seed's)"
    )
    rep.add_argument("--label-column", help="name of the label column, if not one of label/target/y/...")
    rep.add_argument(
        "--out",
        default="lensdash-report",
        help="output folder: new, empty, or a previous report, which is replaced (default: lensdash-report)",
    )
    rep.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    rep.add_argument(
        "--chunk-rows",
        type=int,
        default=CHUNK_ROWS,
        help=f"rows per chunk for Parquet and .npy (default {CHUNK_ROWS:,})",
    )
    rep.add_argument(
        "--hierarchy",
        metavar="FILE",
        help="class hierarchy (edge list, ancestor rows or nested JSON): hierarchical metrics, ordered and rolled-up"
        " views",
    )
    rep.add_argument(
        "--compare",
        metavar="B",
        help="a second model's predictions for the same samples (same labels and classes), paired by an id column"
        " when both files have one (id, sample_id, index, idx, filename, path; rows in any order), by row order"
        " otherwise: writes comparison.json and comparison_per_class.csv (and A's and B's slices with --slice-by)",
    )
    rep.add_argument(
        "--bootstrap-resamples",
        type=int,
        default=BOOTSTRAP_RESAMPLES,
        help=f"resamples of the paired bootstrap with --compare (default {BOOTSTRAP_RESAMPLES:,}; 0 skips it)",
    )
    rep.add_argument("--seed", type=int, default=0, help="seed of the paired bootstrap (default 0)")
    rep.add_argument(
        "--slice-by",
        metavar="COLUMN",
        help="a metadata column (text, id, or named with --meta-columns) to slice by: writes slices.csv",
    )
    rep.add_argument(
        "--max-cells",
        type=int,
        default=None,
        help="refuse predictions of more rows x classes, before reading them (default: no bound, since the report "
        f"holds one chunk at a time; an .npz, decompressed whole, is bounded by {DEFAULT_MAX_CELLS:,})",
    )
    rep.add_argument(
        "--max-classes",
        type=int,
        default=DEFAULT_MAX_CLASSES,
        help=f"refuse predictions of more classes (default {DEFAULT_MAX_CLASSES:,})",
    )
    rep.add_argument(
        "--meta-columns",
        type=lambda text: [c.strip() for c in text.split(",") if c.strip()],
        default=None,
        help="comma-separated columns kept aside as metadata even when numeric (text columns and "
        "id/sample_id/index/idx/filename/path are kept aside without it)",
    )
    rep.add_argument("--class-names", help="a file with one class name per line, naming .npy / .npz columns")
    rep.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


class Stopped(BaseException):
    """SIGINT or SIGTERM, raised in the main thread so that the run unwinds and removes what it had made."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, _frame: object) -> None:
    raise Stopped(signum)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).splitlines())


def _user_error(exc: BaseException) -> LensdashError:
    """What a user's machine or files can cause, as a one-line error instead of a traceback."""
    if isinstance(exc, LensdashError):
        return exc
    if isinstance(exc, MemoryError):
        return InputError.build(
            "data that fits in memory", "not enough memory", fix="Give a smaller --chunk-rows or use more memory."
        )
    filename, strerror = getattr(exc, "filename", None), getattr(exc, "strerror", None)  # an OSError
    where = str(filename) if filename else None
    return InputError.build(
        "files that can be read and a report folder that can be written",
        strerror or type(exc).__name__,
        where=where,
        fix="Check the path, its permissions and the free space.",
    )


#: Added to the summary line when the labels were soft (one distribution per sample).
SOFT_LABELS_LINE = " (soft labels: losses use each distribution, accuracy the majority label)"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0, 2 for a user's error, 130/143 for SIGINT/SIGTERM)."""
    args = _parser().parse_args(argv)
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, _stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    run = _Run(args)
    try:
        return run()
    except (Stopped, KeyboardInterrupt) as stop:
        with signals_deferred(deliver=False):  # a second Ctrl-C while this one is reported changes nothing
            signum = stop.signum if isinstance(stop, Stopped) else signal.SIGINT
            if run.folder is not None and run.folder.committed:
                outcome = f"the report was written to {args.out}"
            else:
                outcome = "no report was written; --out is as it was"
            print(f"{run.prefix}stopped by {signal.Signals(signum).name}: {outcome}", file=sys.stderr)
        return 128 + signum
    finally:
        with signals_deferred(deliver=False):
            if run.folder is not None:
                run.folder.discard()
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


class _Run:
    """One ``report`` command: its arguments, its process's place under ``torchrun``, and the folder it made."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rank, self.world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        self.prefix = f"rank {self.rank}/{self.world} " if self.world > 1 else ""
        self.folder: OutputFolder | None = None

    def __call__(self) -> int:
        args, rank, world = self.args, self.rank, self.world
        distributed = world > 1
        if distributed:
            import torch
            import torch.distributed as dist

            if args.device == "cuda":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            dist.init_process_group(backend="nccl" if args.device == "cuda" else "gloo")
        device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if args.device == "cuda" and distributed else args.device
        inputs = [
            path
            for path in (args.predictions, args.labels, args.lens, args.class_names, args.hierarchy, args.compare)
            if path
        ]
        error: LensdashError | None = None
        result = None
        try:
            # Before any data is read: a refused --out costs nothing, and a new one is made now (or refused).
            check_output_folder(args.out, inputs)
            if rank == 0:
                self.folder = OutputFolder.prepare(args.out, inputs)
            progress = None if args.quiet or rank != 0 else ProgressBar(prefix=self.prefix)
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
                hierarchy=args.hierarchy,
                compare=args.compare,
                bootstrap_resamples=args.bootstrap_resamples,
                seed=args.seed,
                slice_by=args.slice_by,
                max_cells=args.max_cells,
                max_classes=args.max_classes,
                meta_columns=args.meta_columns,
                class_names=args.class_names,
            )
        except (LensdashError, OSError, MemoryError) as exc:
            error = _user_error(exc)
        others_failed = False
        if distributed:
            failed = torch.tensor([0.0 if error is None else 1.0], device=device)
            dist.all_reduce(failed)  # every process must learn that one failed, or the others would wait forever
            others_failed = error is None and failed.item() > 0
            if failed.item() == 0 and result is not None:
                result = all_reduce(result)
        if error is None and not others_failed and result is not None:  # a result whenever nothing failed
            try:
                check_label_count(result)
                if self.folder is not None:
                    paths = self.folder.commit(result)
                    s = result.summary()
                    print(
                        f"{s['num_samples']:,} samples x {s['num_classes']} classes ({result.kind}): "
                        f"unlensed loss {s['unlensed_loss']:.4f}, lensed {s['lensed_loss']:.4f} ({args.family}), "
                        f"accuracy {s['accuracy']:.1%}, lens-aware {s['lens_aware_accuracy']:.1%}"
                        + SOFT_LABELS_LINE
                        * bool(s["soft_labels"])
                    )
                    if result.comparison is not None:
                        c = result.comparison.summary()
                        print(
                            f"compared with {result.comparison.source}: accuracy {c['accuracy_a']:.1%} -> "
                            f"{c['accuracy_b']:.1%}, {c['a_only_correct']:,} right only in A, "
                            f"{c['b_only_correct']:,} only in B, McNemar p = {c['mcnemar_p']:.3g}"
                        )
                    print(f"wrote {len(paths)} files to {args.out}")
            except (LensdashError, OSError, MemoryError) as exc:
                error = _user_error(exc)
        if distributed:
            dist.destroy_process_group()
        if error is not None:
            print(f"{self.prefix}error: {_one_line(error)}", file=sys.stderr)
            return 2
        if others_failed:
            print(
                f"{self.prefix}stopped: another process failed (see its message); no report was written",
                file=sys.stderr,
            )
            return 2
        return 0


if __name__ == "__main__":
    sys.exit(main())
