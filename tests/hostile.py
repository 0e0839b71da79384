"""Small hostile files that decode to something huge (issue #12's findings), generated for the tests."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np


def wide_csv(columns: int = 10_000, rows: int = 4) -> bytes:
    """A ~100 KB CSV with 10,000 columns (header of class names, a label column, short rows)."""
    header = ",".join(f"c{i}" for i in range(columns)) + ",label\n"
    row = ",".join("0" for _ in range(columns)) + ",c0\n"
    return (header + row * rows).encode()


def one_row_csv(columns: int = 1_000_000) -> bytes:
    """A 2 MB headerless CSV: one row of a million columns."""
    return (",".join("0" for _ in range(columns)) + "\n").encode()


def npz_bomb(rows: int = 2_000_000, k: int = 256, declared_rows: int | None = None) -> bytes:
    """A ~2 MB ``.npz`` whose ``logits`` inflate to ``rows × k`` float32 zeros (2 GB).

    Deflate blocks ended by a full flush are byte-aligned and independent, so one compressed megabyte of
    zeros is repeated. ``declared_rows`` makes the array's header and the zip directory lie: they
    declare fewer rows than the stream inflates to.
    """
    header = io.BytesIO()
    shape = (declared_rows if declared_rows is not None else rows, k)
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    head = header.getvalue()
    block = bytes(1 << 20)
    blocks, rest = divmod(rows * k * 4, len(block))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    data = first + repeated * blocks + compressor.compress(bytes(rest)) + compressor.flush()
    crc = zlib.crc32(head)
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(bytes(rest), crc)
    declared = len(head) + (rows if declared_rows is None else declared_rows) * k * 4
    return _zip([("logits.npy", data, crc, declared)])


def _zip(members: list[tuple[str, bytes, int, int]]) -> bytes:
    """A zip of already deflated members: (name, deflated bytes, CRC-32, uncompressed size declared)."""
    out, central = bytearray(), bytearray()
    for name, data, crc, size in members:
        offset, raw = len(out), name.encode()
        out += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data), size, len(raw), 0) + raw + data
        central += struct.pack(
            "<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(data), size, len(raw), 0, 0, 0, 0, 0, offset
        )
        central += raw
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(out), 0)
    return bytes(out + central + end)


def parquet_rows(rows: int = 50_000_000, k: int = 5, group: int = 1_000_000) -> bytes:
    """A ~1 MB Parquet file of ``rows`` rows × ``k`` constant float32 columns and a label (run-length encoded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {f"c{j}": pa.array(np.full(group, 1.0 / k, dtype=np.float32)) for j in range(k)}
    columns["label"] = pa.array(np.zeros(group, dtype=np.int8))
    table = pa.table(columns)
    out = io.BytesIO()
    with pq.ParquetWriter(out, table.schema, compression="zstd") as writer:
        for _ in range(rows // group):
            writer.write_table(table)
    return out.getvalue()


def npy_header(shape: tuple[int, ...] = (1_000_000_000_000, 2_000), dtype: str = "<f4") -> bytes:
    """A ``.npy`` whose header declares ``shape`` (8 TB by default) followed by a few bytes."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue() + bytes(64)


def pt_lens(k: int = 16_384) -> bytes:
    """A small torch file holding a ``k × k`` lens: one stored row, expanded (16,384² is 1 GB as float32)."""
    import torch

    out = io.BytesIO()
    row = torch.zeros(k)
    row[0] = 1
    torch.save(row.expand(k, k), out)
    return out.getvalue()
