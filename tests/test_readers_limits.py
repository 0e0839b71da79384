"""Decoded size bounded before allocation, and only lensdash's errors for bad input (issue #12, readers)."""

import io
import json
import os
import re
import subprocess
import sys
import textwrap

import hostile
import numpy as np
import pytest
import torch

from lensdash import InputError, LensError
from lensdash.io import DEFAULT_MAX_CELLS, DEFAULT_MAX_CLASSES, open_stream, read_lens, read_predictions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Reads run in one child whose address space is capped at what it uses after importing, plus 1.5 GB.
_CHILD = textwrap.dedent(
    """
    import io, json, resource, sys
    import lensdash, lensdash.io, pyarrow.parquet, torch
    size = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + (3 << 29), size + (3 << 29)))
    results = []
    for call, path, kwargs in json.loads(sys.stdin.read()):
        try:
            if call == "lens":
                lensdash.read_lens(path, **kwargs)
            elif call == "stream":
                for _ in lensdash.io.open_stream(path, **kwargs).chunks:
                    pass
            else:
                lensdash.read_predictions(path, **kwargs)
            results.append(["ok", ""])
        except Exception as exc:
            results.append([type(exc).__name__, str(exc)])
    print(json.dumps(results))
    """
)


def run_capped(cases):
    """``[(exception type name or 'ok', message)]`` of reads ``(call, path, kwargs)`` in a memory-capped child."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps([[c, str(p), k] for c, p, k in cases]),
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard, not a timing test
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bombs")
    files = {
        "wide.csv": hostile.wide_csv(),
        "one_row.csv": hostile.one_row_csv(),
        "bomb.npz": hostile.npz_bomb(),
        "lying.npz": hostile.npz_bomb(declared_rows=10),
        "rows.parquet": hostile.parquet_rows(),
        "huge.npy": hostile.npy_header(),
        "lens.pt": hostile.pt_lens(),
        "labels.csv": b"0\n",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    yield folder
    for name in files:
        (folder / name).unlink()


HOSTILE = [
    ("one_row.csv", "read", {"labels": "LABELS"}, r"at most 100,000 columns \(the limit max_classes\), found"),
    ("one_row.csv", "stream", {"labels": "LABELS"}, r"found 1,000,000.*--max-classes N"),
    ("bomb.npz", "read", {}, r"2,000,000 rows × 256 classes = 512,000,000.*max_cells=N"),
    ("rows.parquet", "read", {}, r"50,000,000 rows × 5 classes = 250,000,000.*--max-cells N"),
    ("rows.parquet", "stream", {}, r"50,000,000 rows × 5 classes"),
    ("huge.npy", "read", {}, r"1,000,000,000,000 rows × 2,000 classes"),
    ("huge.npy", "stream", {"labels": "LABELS"}, r"1,000,000,000,000 rows × 2,000 classes"),
    ("lens.pt", "lens", {}, r"16,384 rows × 16,384 classes = 268,435,456.*max_cells"),
    ("wide.csv", "read", {"max_classes": 1000}, r"at most 1,000 columns.*found 10,001"),
    ("wide.csv", "read", {"max_cells": 10_000}, r"at most 10,000 values.*about"),
    # The header declares 10 rows, the stream inflates to 2 GB: only 10 rows' bytes are inflated (then the CRC fails).
    ("lying.npz", "read", {}, r"lying.npz: expected a numeric .npz archive.*CRC"),
    ("wide.csv", "read", {"kind": "logits"}, None),  # within the defaults: read
]


def test_hostile_files_are_refused_before_decoding(bombs):
    cases = [
        (call, bombs / name, {k: (str(bombs / "labels.csv") if v == "LABELS" else v) for k, v in kwargs.items()})
        for name, call, kwargs, _ in HOSTILE
    ]
    for (name, call, _, match), (kind, message) in zip(HOSTILE, run_capped(cases), strict=True):
        if match is None:
            assert kind == "ok", (name, call, message)
        else:
            assert kind == "InputError" and re.search(match, message), (name, call, kind, message)


def test_limits_are_arguments_and_none_lifts_them():
    data = b"a,b,c,label\n1,2,3,0\n4,5,6,1\n"
    with pytest.raises(InputError, match=r"at most 2 classes \(the limit max_classes\), found 3"):
        read_predictions(data, max_classes=2, max_cells=None)
    with pytest.raises(InputError, match=r"at most 5 values.*found about 2 rows × 3 classes"):
        read_predictions(data, max_cells=5, kind="logits")
    assert read_predictions(data, max_cells=None, max_classes=None).num_classes == 3
    with pytest.raises(InputError, match="max_cells a positive integer"):
        read_predictions(data, max_cells=0)
    assert DEFAULT_MAX_CELLS * 4 < 1e9 and DEFAULT_MAX_CLASSES >= 1000


def test_the_app_budget_accepts_what_users_bring():
    # 1,000 classes, and a 1,000 × 1,000 lens, under the app-sized limits of 50,000 × 1,000.
    x = np.random.default_rng(0).standard_normal((50, 1000)).astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, logits=x, labels=np.arange(50))
    p = read_predictions(buffer.getvalue(), max_cells=50_000 * 1_000, max_classes=1_000)
    assert p.logits.shape == (50, 1000)
    lens, _ = read_lens(json.dumps({"lens": torch.eye(1000).tolist()}).encode(), max_classes=1000)
    assert lens.num_classes == 1000


def test_stream_counts_rows_as_it_reads(tmp_path):
    # The first line is long, later lines short: the estimate from the first lines is low; the parts catch it.
    path = tmp_path / "p.csv"
    path.write_bytes(b"a,b,label\n" + b"0.50000000000000,0.500000000000000,0\n" * 2000 + b"1,2,0\n" * 20_000)
    with pytest.raises(InputError, match=r"at most 20,000 values.*found 22,000 rows × 2 classes = 44,000"):
        for _ in open_stream(path, max_cells=20_000).chunks:
            pass
    with pytest.raises(InputError, match=r"at most 20,000 values.*found 22,000 rows"):
        read_predictions(path, max_cells=20_000)


# ------------------------------------------------------------ exception hygiene


def _pt(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (_pt(torch.eye(3, dtype=torch.bfloat16)), None, None),
        (_pt(torch.tensor(1.0)), LensError, "a square K×K matrix"),
        (_pt(torch.eye(3).to_sparse()), None, None),
        (_pt(torch.eye(3, dtype=torch.complex64)), InputError, "real numbers, found dtype complex64"),
        (_pt(torch.eye(3, dtype=torch.bool)), InputError, "real numbers"),
        (_pt({"lens": torch.eye(2), "classes": {"a": 1}}), InputError, "classes as a list of names"),
        (b"{" + b'"lens": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", InputError, "nested too deeply"),
        (json.dumps({"lens": [[1, 0], "x"]}).encode(), LensError, "a square K×K matrix"),
        (json.dumps({"lens": [[1, 0], [0, "x"]]}).encode(), LensError, "not numeric"),
        (json.dumps({"lens": [[1] * 20] * 20}).encode(), InputError, "max_classes"),
    ],
)
def test_lens_files_raise_only_lensdash_errors(data, error, match):
    if error is None:
        lens, _ = read_lens(data)
        torch.testing.assert_close(lens.matrix, torch.eye(3, dtype=torch.float64))
    else:
        with pytest.raises(error, match=match):
            read_lens(data, max_classes=10)


def test_a_label_of_2_to_the_63_is_reported_as_it_is():
    with pytest.raises(InputError, match=r"found 9223372036854775808"):
        read_predictions(b"a,b,label\n1,2,9223372036854775808\n")
    buffer = io.BytesIO()
    np.savez(buffer, logits=np.zeros((1, 2)), labels=np.array([2**64 - 1], dtype=np.uint64))
    with pytest.raises(InputError, match=r"found 18446744073709551615"):
        read_predictions(buffer.getvalue())


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4',", "a numeric .npy array"),  # tokenize.TokenError
        (hostile.npy_header((3, 2), "|O"), r"dtype object"),
        (hostile.npy_header((30, 2)), r"240 bytes of data for shape \(30, 2\)"),
        (hostile.npz_bomb(rows=10, k=2)[:-30], "a numeric .npz archive"),
    ],
)
def test_binary_decoders_raise_only_input_errors(data, match):
    with pytest.raises(InputError, match=match):
        read_predictions(data)


def test_a_corrupt_deflate_stream_is_an_input_error():
    data = bytearray(hostile.npz_bomb(rows=10, k=2))
    data[60:70] = b"\xff" * 10  # inside the deflated data: zlib.error
    with pytest.raises(InputError, match="while decompressing data"):
        read_predictions(bytes(data))


# ------------------------------------------------------------ memory rule

_MEMORY_CHILD = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import lensdash, pyarrow.csv, pyarrow.compute
    path = sys.argv[1]
    def mb(key):
        return int([l for l in open("/proc/self/status") if l.startswith(key)][0].split()[1]) / 1024
    base = mb("VmRSS")
    p = lensdash.read_predictions(path)
    print(base, mb("VmHWM"), p.logits.numel() * 4 / 2**20, os.path.getsize(path) / 2**20)
    """
)
#: The reader's fixed overhead: arrow's parts in flight on its threads, the header's Python objects.
OVERHEAD_MB = 200


@pytest.mark.parametrize(("rows", "k"), [(30, 50_000), (200_000, 10)])
def test_memory_rule_on_a_wide_and_a_narrow_file(tmp_path, rows, k):
    """Peak RSS over the imported baseline < 3 × the decoded float32 + the file's bytes + OVERHEAD_MB."""
    x = np.random.default_rng(0).standard_normal((rows, k)).astype(np.float32)
    path = tmp_path / "p.csv"
    header = ",".join(f"c{i}" for i in range(k)) + ",label\n"
    body = "\n".join(",".join(r) + f",{i % k}" for i, r in enumerate(np.char.mod("%.4f", x)))
    path.write_text(header + body + "\n")
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    base, peak, decoded, file_mb = map(float, done.stdout.split())
    assert peak - base < 3 * decoded + file_mb + OVERHEAD_MB, (base, peak, decoded, file_mb)
    path.unlink()


def test_wide_path_reads_what_the_csv_reader_reads(monkeypatch):
    from lensdash.io import _csv_parse as files

    cases = [
        (b'index,"a","b",label\r\n0,"0.5",0.5,1\r\n\r\n1, 0.25 ,0.75,0\r\n', {}),
        (b"a;b;label\n0.1;0.9;b\n0.8;0.2;a\n", {}),
        (b"1,2\n3,4\n", {"labels": b"0\n1\n"}),
        (b"a,b,y\n1,2,0\n3,4,1.0\n", {}),
    ]
    expected = [read_predictions(data, **kw) for data, kw in cases]
    monkeypatch.setattr(files, "WIDE_COLUMNS", 1)
    for (data, kw), want in zip(cases, expected, strict=True):
        got = read_predictions(data, **kw)
        torch.testing.assert_close(got.logits, want.logits)
        assert got.labels.tolist() == want.labels.tolist() and got.class_names == want.class_names
    with pytest.raises(InputError, match=r"row 3, column 2: expected a number, found an empty or NaN cell"):
        read_predictions(b"a,b,label\n1,2,0\n3,,1\n")
    with pytest.raises(InputError, match=r"row 3, column 2: expected a number, found 'x'"):
        read_predictions(b"a,b,label\n1,2,0\n3,x,1\n")
    with pytest.raises(InputError, match=r"row 3: expected 3 cells per row, like row 1, found 2"):
        read_predictions(b"a,b,label\n1,2,0\n3,1\n")


def test_error_diagnosis_is_bounded(monkeypatch):
    from lensdash.io import _csv_parse as files

    monkeypatch.setattr(files, "_DIAGNOSE_CELLS", 30)
    data = b"a,b,label\n" + b"1,2,0\n" * 20 + b"1,x,0\n"
    with pytest.raises(InputError, match=r"after row 11 \(not located further"):
        read_predictions(data)


def test_cli_flags_pass_the_limits_to_the_stream(tmp_path, capsys):
    from lensdash.cli import main

    preds, lens = tmp_path / "p.csv", tmp_path / "lens.csv"
    preds.write_bytes(b"a,b,label\n0.9,0.1,a\n0.2,0.8,b\n")
    lens.write_bytes(b"1,0\n0,1\n")
    out = tmp_path / "report"
    assert main(["report", str(preds), "--lens", str(lens), "--out", str(out), "--quiet", "--max-cells", "3"]) == 2
    assert "the limit max_cells" in capsys.readouterr().err and not out.exists()
    assert main(["report", str(preds), "--lens", str(lens), "--out", str(out), "--quiet", "--max-classes", "1"]) == 2
    assert "--max-classes N" in capsys.readouterr().err
    assert main(["report", str(preds), "--lens", str(lens), "--out", str(out), "--quiet", "--max-cells", "4"]) == 0
