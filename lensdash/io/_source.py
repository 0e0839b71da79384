"""Sources (paths, bytes, uploads) as zero-copy views, the limits on what a file may decode to, the error boundary."""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa

from lensdash.errors import InputError, LensdashError

#: Row sums of probabilities may differ from 1 by this much (files written with
#: 4-6 decimals); also the tolerance on ``logsumexp`` of log-probability rows.
PROB_SUM_ATOL = 1e-2


#: Default size limit of one upload, in MB; ``.streamlit/config.toml`` uses the same.
MAX_UPLOAD_MB = 400


#: Header names recognised as the label column, compared case-insensitively.
LABEL_NAMES = ("label", "labels", "target", "targets", "y", "true", "class", "y_true", "true_label")


KINDS = ("auto", "logits", "probs", "log_probs")


#: Columns with these names (any case) are metadata, not scores, even when numeric.
META_NAMES = ("id", "sample_id", "index", "idx", "filename", "path")


#: At most this many metadata columns per file (more is refused: a table of text, not predictions).
MAX_META_COLUMNS = 64


def check_meta_count(name: str, count: int) -> None:
    """Refuse more than :data:`MAX_META_COLUMNS` metadata columns."""
    if count > MAX_META_COLUMNS:
        raise InputError.build(
            f"at most {MAX_META_COLUMNS} metadata columns (text columns, ids, meta_columns=)",
            f"{count}",
            where=name,
            fix="Keep the prediction columns, the label and a few metadata columns; drop the rest.",
        )


def _meta_note(names: list[str]) -> str:
    """The note saying which columns were kept aside (at most five names shown)."""
    shown = ", ".join(repr(n[:40]) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"Kept aside as metadata (not scores): {shown}."


#: Default bound on rows × classes of predictions: 200 million cells decode to 800 MB of float32, under 1 GB.
DEFAULT_MAX_CELLS = 200_000_000


#: Default bound on the number of classes (prediction columns) of predictions and lenses.
DEFAULT_MAX_CLASSES = 100_000


#: Default bound on a lens's K × K cells: 25 million (K up to 5,000) are 200 MB as float64.
DEFAULT_MAX_LENS_CELLS = 25_000_000


Source = str | os.PathLike | bytes | BinaryIO


class _Input:
    """One source's bytes as a zero-copy view: a memory map of a file, or the buffer of ``bytes`` / an upload.

    Large files are read part by part; :meth:`release` drops a parsed part's
    pages from memory, so a file's bytes are not all resident at once.
    """

    def __init__(self, name: str, data: memoryview, mapped: mmap.mmap | None = None, path: str | None = None) -> None:
        self.name, self.data, self._mapped = name, data, mapped
        #: the file's path, for readers that read a file through its handle (Parquet), or None for bytes
        self.path = path

    def release(self, start: int, stop: int) -> None:
        if self._mapped is not None and stop > start:
            first = start - start % mmap.PAGESIZE
            self._mapped.madvise(mmap.MADV_DONTNEED, first, stop - first)

    def close(self) -> None:
        try:
            self.data.release()
            if self._mapped is not None:
                self._mapped.close()
        except BufferError:  # a pyarrow buffer still refers to it; the collector frees both
            pass

    def __enter__(self) -> _Input:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open(source: Source, what: str, max_bytes: int | None) -> _Input:
    """The source as an :class:`_Input`, refusing anything over ``max_bytes`` before reading it."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = memoryview(source).cast("B")
        name = f"the {what} bytes"
        _check_size(name, len(data), max_bytes)
        return _Input(name, data)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        name = os.path.basename(path) or path
        try:
            file_size = os.path.getsize(path)
            _check_size(name, file_size, max_bytes)
            if file_size == 0:
                return _Input(name, memoryview(b""))
            with open(path, "rb") as handle:
                mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise InputError.build(
                "a readable file", f"{exc.strerror or exc}", where=name, fix="Check the path."
            ) from None
        return _Input(name, memoryview(mapped), mapped, path)
    if hasattr(source, "read"):
        name = os.path.basename(str(getattr(source, "name", "") or f"the uploaded {what} file"))
        try:
            size = getattr(source, "size", None)
            if size is None and hasattr(source, "seek"):
                pos = source.tell()
                size = source.seek(0, io.SEEK_END) - pos
                source.seek(pos)
            if size is not None:
                _check_size(name, int(size), max_bytes)
            if isinstance(source, io.BytesIO):  # an upload: view its buffer rather than copy it
                pos = source.tell()
                data = memoryview(source.getbuffer())[pos:]
                source.seek(0, io.SEEK_END)
            else:
                raw = source.read()
                data = memoryview(raw.encode("utf-8") if isinstance(raw, str) else raw).cast("B")
        except (OSError, ValueError) as exc:
            raise InputError.build("a readable file", str(exc), where=name, fix="Upload the file again.") from None
        _check_size(name, len(data), max_bytes)
        return _Input(name, data)
    raise InputError.build(
        f"the {what} as a path, bytes or a binary file object",
        type(source).__name__,
        fix="Pass a file path or open(path, 'rb').",
    )


def file_format(data: bytes | memoryview) -> str:
    """``'parquet'``, ``'npy'``, ``'zip'`` (``.npz`` or a torch file) or ``'text'``, from the first bytes.

    The one place where magic bytes are checked.
    """
    head = bytes(data[:8])
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    return "text"


def _check_size(name: str, size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise InputError.build(
            f"a file of at most {max_bytes / 1e6:.0f} MB",
            f"{size / 1e6:.1f} MB",
            where=name,
            fix="Use the command line (python -m lensdash report FILE) for large files, or Parquet/.npy to save space.",
        )


@dataclass(frozen=True)
class Limits:
    """Bounds on what a file may decode to, checked before anything that size is allocated.

    ``max_cells`` bounds rows × classes, ``max_classes`` the classes; ``None`` lifts a bound.
    Refusals name the keyword argument and the command line's flag that raise the bound.
    """

    max_cells: int | None = DEFAULT_MAX_CELLS
    max_classes: int | None = DEFAULT_MAX_CLASSES

    def check_classes(self, name: str, k: int, what: str = "classes", slack: int = 0) -> None:
        if self.max_classes is not None and k > self.max_classes + slack:
            raise InputError.build(
                f"at most {self.max_classes:,} {what} (the limit max_classes)",
                f"{k:,}",
                where=name,
                fix="Raise the limit if the memory allows: max_classes=N (command line: --max-classes N).",
            )

    def check_cells(self, name: str, rows: int, k: int, *, estimated: bool = False) -> None:
        self.check_classes(name, k)
        if self.max_cells is not None and rows * k > self.max_cells:
            about = "about " if estimated else ""
            raise InputError.build(
                f"at most {self.max_cells:,} values, rows × classes (the limit max_cells)",
                f"{about}{rows:,} rows × {k:,} classes = {about}{rows * k:,}",
                where=name,
                fix="Raise the limit if the memory allows (4 bytes per value): max_cells=N "
                "(command line: --max-cells N), or split the file.",
            )


def _limits(max_cells: int | None, max_classes: int | None) -> Limits:
    for arg, value in (("max_cells", max_cells), ("max_classes", max_classes)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise InputError.build(f"{arg} a positive integer or None", repr(value), fix=f"Pass {arg}=N.")
    return Limits(max_cells, max_classes)


#: What decoders raise on malformed input besides ValueError: turned into :class:`InputError` at the boundary.
_DECODE_ERRORS = (
    EOFError,
    OverflowError,
    RecursionError,
    SyntaxError,
    UnicodeError,
    struct.error,
    tokenize.TokenError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    pa.ArrowException,
)


@contextlib.contextmanager
def _decoding(name_of: Callable[[], str], what: str) -> Iterator[None]:
    """Turn decoder errors and allocation failures into :class:`InputError` (the public readers' boundary)."""
    try:
        yield
    except LensdashError:
        raise
    except MemoryError:
        raise InputError.build(
            f"{what} that fits in memory",
            "one that does not",
            where=name_of(),
            fix="Lower max_cells / max_classes (CLI: --max-cells / --max-classes) so such files are refused, "
            "or use a machine with more memory.",
        ) from None
    except (ValueError, OSError, *_DECODE_ERRORS) as exc:  # pyarrow raises OSError for corrupt pages
        raise InputError.build(
            f"a readable {what} file",
            f"one that cannot be decoded ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})",
            where=name_of(),
            fix="Save the file again (CSV, Parquet, .npy or .npz; a lens as CSV, JSON or .pt).",
        ) from None


Locate = Callable[[int, int], str]
