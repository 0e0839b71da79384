"""Lens files: reading (CSV, JSON, ``.pt``) with K × K bounded before it is built, and writing."""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from lensdash.errors import InputError, LensError
from lensdash.io._csv_layout import (
    _check_width,
    _decode_head,
    _is_number,
    _sniff,
)
from lensdash.io._csv_parse import (
    _csv_table,
    _float_matrix,
)
from lensdash.io._source import (
    _DECODE_ERRORS,
    DEFAULT_MAX_CLASSES,
    DEFAULT_MAX_LENS_CELLS,
    Limits,
    Source,
    _decoding,
    _limits,
    _open,
    file_format,
)
from lensdash.lens import Lens, align_lens, lens_matrix, validate_lens
from lensdash.sanitize import FORMULA_PREFIXES, spreadsheet_cell


def read_lens(
    source: Source,
    class_names_: Sequence[str] | None = None,
    *,
    max_bytes: int | None = None,
    max_classes: int | None = DEFAULT_MAX_CLASSES,
    max_cells: int | None = DEFAULT_MAX_LENS_CELLS,
) -> tuple[Lens, list[str]]:
    """Read a lens: headerless CSV, CSV with class names, JSON or a torch ``.pt`` file.

    Lens convention: row ``i`` is the target distribution for true label ``i``;
    rows sum to 1. JSON is ``{"classes": [...], "lens": [[...]]}``; ``.pt`` is
    loaded with ``weights_only=True`` (a tensor, or that dict), so no code in an
    upload runs. With ``class_names_`` the lens is matched by name (reordered,
    or expanded with identity rows when it covers a subset).

    Class names in a CSV are read back exactly as :func:`lens_to_bytes` wrote them: the writer puts a
    ``'`` before a name that (after its own leading quotes) starts like a spreadsheet formula
    (``=``, ``+``, ``-``, ``@``, tab, CR), and the reader removes that one ``'``; so ``=SUM(A1)`` is
    written ``'=SUM(A1)`` and read ``=SUM(A1)``, and a name written by hand as ``'=x`` also reads ``=x``.

    Args:
        source: a path, ``bytes`` or a binary file object.
        class_names_: the classes of the predictions, to match the lens to.
        max_bytes: refuse larger files before reading them (none by default: the bound is on decoded cells,
            so a K = 1,000 CSV of 12 MB reads as its JSON and ``.pt`` forms do).
        max_classes: refuse a lens of more classes K (checked before its K × K cells are built).
        max_cells: refuse a lens of more than this many cells K × K (default :data:`DEFAULT_MAX_LENS_CELLS`).

    Returns:
        The lens and notes about what was done.

    Raises:
        InputError: unreadable file, or over the limits. LensError: not a valid lens, or unknown classes.

    Example:
        >>> lens, notes = read_lens(b'{"classes": ["a", "b"], "lens": [[0.5, 0.5], [0, 1]]}')
        >>> lens.classes
        ('a', 'b')
    """
    limits = _limits(max_cells, max_classes)
    with _open(source, "lens", max_bytes) as inp, _decoding(lambda: inp.name, "lens"):
        try:
            return _read_lens(inp.name, inp.data, class_names_, limits)
        except LensError as exc:
            raise LensError(f"{inp.name}: {exc}") from None


def _read_lens(
    name: str, data: memoryview, class_names_: Sequence[str] | None, limits: Limits
) -> tuple[Lens, list[str]]:
    notes: list[str] = []
    if file_format(data) == "zip" or name.endswith((".pt", ".pth")):
        lens = _lens_pt(name, data, limits)
    elif bytes(data[:64]).lstrip()[:1] == b"{":
        try:
            obj = json.loads(bytes(data).decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise InputError.build(
                "JSON text",
                f"invalid JSON ({'nested too deeply' if isinstance(exc, RecursionError) else exc})",
                where=name,
                fix='Write {"classes": [...], "lens": [[...]]}.',
            ) from None
        lens = _lens_from_obj(name, obj, limits)
    else:
        lens = _lens_csv(name, data, limits)
    if class_names_ is not None:
        lens, note = align_lens(lens, class_names_)
        if note:
            notes.append(note)
    return lens, notes


def _lens_from_obj(name: str, obj: object, limits: Limits) -> Lens:
    if isinstance(obj, dict) and "lens" in obj:
        classes = obj.get("classes")
        if classes is not None and not (
            isinstance(classes, (list, tuple)) and all(isinstance(c, (str, int)) for c in classes)
        ):
            raise InputError.build(
                "classes as a list of names", type(classes).__name__, where=name, fix="Export the lens from the app."
            )
        if classes is not None:
            limits.check_classes(name, len(classes))
        return Lens(_lens_matrix(name, obj["lens"], limits), classes)
    if isinstance(obj, (list, Tensor)):
        return Lens(_lens_matrix(name, obj, limits))
    raise InputError.build(
        'a lens: {"classes": [...], "lens": [[...]]} or a K×K matrix',
        type(obj).__name__,
        where=name,
        fix="Export the lens from the app.",
    )


def _lens_matrix(name: str, matrix: object, limits: Limits) -> Tensor:
    """A float64 K×K tensor from a loaded tensor or nested lists, its size checked before it is built."""
    if isinstance(matrix, Tensor):
        shape = tuple(matrix.shape)
    elif isinstance(matrix, list) and all(isinstance(row, list) for row in matrix):
        shape = (len(matrix), max((len(row) for row in matrix), default=0))
    elif isinstance(matrix, list):
        shape = (len(matrix),)
    else:
        raise InputError.build("a K×K matrix", type(matrix).__name__, where=name, fix="Export the lens from the app.")
    if len(shape) != 2:
        raise LensError.build(
            "a square K×K matrix", f"shape {shape}", fix="A lens has one row and one column per class."
        )
    limits.check_classes(name, max(shape))
    limits.check_cells(name, shape[0], shape[1])
    if not isinstance(matrix, Tensor):
        return validate_lens(matrix)  # converts nested lists, refusing what is not numbers
    if matrix.is_complex() or matrix.dtype == torch.bool or not (matrix.is_floating_point() or _is_int(matrix)):
        raise InputError.build(
            "a tensor of real numbers",
            f"dtype {str(matrix.dtype).removeprefix('torch.')}",
            where=name,
            fix="Save the lens as a float tensor.",
        )
    if matrix.layout != torch.strided:  # sparse: its dense size was checked above
        matrix = matrix.to_dense()
    return matrix.detach().to(torch.float64).contiguous()


def _is_int(tensor: Tensor) -> bool:
    return tensor.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _lens_pt(name: str, data: memoryview, limits: Limits) -> Lens:
    # torch's files are zips: the directory's sizes bound what loading allocates (8 bytes a cell, and 1 MB more).
    if limits.max_cells is not None:
        try:
            declared = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(data)).infolist())
        except (zipfile.BadZipFile, *_DECODE_ERRORS, ValueError, OSError):
            declared = 0  # torch.load refuses it below, with its own message
        if declared > 8 * limits.max_cells + (1 << 20):
            raise InputError.build(
                f"a torch file of at most {8 * limits.max_cells + (1 << 20):,} bytes unpacked (the limit max_cells)",
                f"{declared:,}",
                where=name,
                fix="Raise the limit if the memory allows: max_cells=N.",
            )
    try:
        obj = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many types for bad or unsafe pickles
        raise InputError.build(
            "a torch file holding only tensors, lists and strings",
            f"one that cannot be loaded safely ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})",
            where=name,
            fix="Save with torch.save({'classes': names, 'lens': tensor}, path).",
        ) from None
    return _lens_from_obj(name, obj, limits)


def _lens_csv(name: str, data: memoryview, limits: Limits) -> Lens:
    _check_width(name, data, limits)
    text = _decode_head(name, data)
    dialect = _sniff(name, text)
    delim, rows = dialect.delim, dialect.rows
    width = len(rows[0])
    named = not all(_is_number(t) for t in rows[0])
    limits.check_classes(f"{name}, row 1", width - named)
    row_bytes = len(text) / max(1, text.count("\n"))
    limits.check_cells(name, int(len(data) / max(row_bytes, 1.0)), width - named, estimated=True)
    float_cols = list(range(1 if named else 0, width))
    table = _csv_table(name, data, delim, named, width, float_cols, pa.float64())
    values = _float_matrix(name, table, float_cols, 2 if named else 1, np.float64)
    if named:
        cols = [_unquote(h.strip()) for h in rows[0]][1:]
        row_names = [_unquote(str(v).strip()) for v in table.column(0).to_pylist()]
        if row_names != cols:
            raise InputError.build(
                "the same class names in the first column as in the header",
                f"rows {[n[:40] for n in row_names[:4]]}… vs columns {[n[:40] for n in cols[:4]]}…",
                where=name,
                fix="Row i and column i name the same class.",
            )
        return Lens(torch.from_numpy(values), cols)
    return Lens(torch.from_numpy(values))


def _formula_like(name: str) -> bool:
    return name.lstrip("'").startswith(FORMULA_PREFIXES)


def _quote(name: str) -> str:
    """A class name as a spreadsheet-safe CSV cell (:func:`~lensdash.sanitize.spreadsheet_cell`), read back exactly.

    A name whose text after its leading quotes starts like a formula gets one more ``'`` (for a name
    without a leading ``'`` that is exactly ``spreadsheet_cell``); :func:`_unquote` removes it.
    """
    return "'" + name if _formula_like(name) else spreadsheet_cell(name)


def _unquote(cell: str) -> str:
    """The name :func:`_quote` wrote: one leading ``'`` removed before a formula character."""
    return cell[1:] if cell.startswith("'") and _formula_like(cell) else cell


def lens_to_bytes(lens: Lens, fmt: str = "csv") -> bytes:
    """Serialise a lens: ``'csv'`` (names as header and first column), ``'plain-csv'``, ``'json'`` or ``'pt'``.

    Lens convention: row ``i`` is the target distribution for true label ``i``. Names in ``'csv'`` are
    spreadsheet-safe: one ``'`` before a name starting like a formula, removed again by :func:`read_lens`.

    Example:
        >>> print(lens_to_bytes(Lens([[1, 0], [0, 1]], ["a", "b"])).decode())
        class,a,b
        a,1,0
        b,0,1
        <BLANKLINE>
        >>> lens_to_bytes(Lens([[1, 0], [0, 1]], ["=SUM(A1)", "b"])).decode().splitlines()[0]
        "class,'=SUM(A1),b"
    """
    matrix = lens_matrix(lens, dtype=torch.float64, device="cpu")
    rows = [[f"{v:.10g}" for v in row] for row in matrix.tolist()]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        names = [_quote(str(c)) for c in lens.classes]
        writer.writerow(["class", *names])
        writer.writerows([[c, *r] for c, r in zip(names, rows)])
        return out.getvalue().encode()
    if fmt == "plain-csv":
        return "".join(",".join(r) + "\n" for r in rows).encode()
    if fmt == "json":
        return json.dumps({"classes": list(lens.classes), "lens": matrix.tolist()}, indent=1).encode()
    if fmt == "pt":
        buffer = io.BytesIO()
        torch.save({"classes": list(lens.classes), "lens": matrix}, buffer)
        return buffer.getvalue()
    raise InputError.build("a format in ('csv', 'plain-csv', 'json', 'pt')", repr(fmt), fix="Choose one of those.")


def save_lens(lens: Lens, path: str | os.PathLike) -> None:
    """Write a lens; the format follows the file's ending (``.csv``, ``.json``, ``.pt``)."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    fmt = {".json": "json", ".pt": "pt", ".pth": "pt"}.get(ext, "csv")
    with open(path, "wb") as handle:
        handle.write(lens_to_bytes(lens, fmt))
