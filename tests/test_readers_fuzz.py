"""Byte-mutated files of every format raise only lensdash's errors (issue #12, point 4).

CI runs ``LENSDASH_FUZZ_EXAMPLES`` (default 900) derandomized examples per format, six formats;
a longer run by hand: ``LENSDASH_FUZZ_EXAMPLES=20000 python -m pytest -q tests/test_readers_fuzz.py``.
"""

import contextlib
import io
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lensdash import LensdashError, read_lens, read_predictions
from lensdash.examples import example_bytes

EXAMPLES = int(os.environ.get("LENSDASH_FUZZ_EXAMPLES", "900"))
SLOWEST = 10.0  # seconds one read may take


def _npy(array):
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def _npz(compressed=False, **arrays):
    out = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(out, **arrays)
    return out.getvalue()


def _parquet(frame):
    out = io.BytesIO()
    frame.to_parquet(out)
    return out.getvalue()


def _pt(obj):
    out = io.BytesIO()
    torch.save(obj, out)
    return out.getvalue()


_rng = np.random.default_rng(0)
_logits = _rng.standard_normal((6, 3)).astype(np.float32)
_frame = pd.DataFrame(_logits, columns=["a", "b", "c"]).assign(label=[0, 1, 2, 0, 1, 2])

SEEDS = {
    "csv": [
        example_bytes("seed_4class.csv"),
        example_bytes("animals_10class.csv")[:600].rsplit(b"\n", 1)[0] + b"\n",
        b"a;b;label\n0.5;0.5;a\n0.1;0.9;b\n",
        _frame.to_csv().encode(),
    ],
    "npy": [_npy(_logits), _npy(_logits.astype(np.float64).T.copy().T), _npy(np.asfortranarray(_logits))],
    "npz": [
        _npz(logits=_logits, labels=np.arange(6) % 3),
        _npz(True, probs=np.full((4, 2), 0.5), labels=np.array([0, 1, 0, 1]), class_names=np.array(["x", "y"])),
    ],
    "parquet": [_parquet(_frame), _parquet(_frame.assign(label=["a", "b", "c", "a", "b", "c"]))],
    "json": [
        json.dumps({"classes": ["a", "b"], "lens": [[0.5, 0.5], [0, 1]]}).encode(),
        json.dumps({"lens": [[1, 0, 0], [0, 1, 0], [0.2, 0.3, 0.5]]}).encode(),
    ],
    "pt": [
        _pt({"classes": ["a", "b"], "lens": torch.tensor([[0.5, 0.5], [0.0, 1.0]])}),
        _pt(torch.eye(3)),
    ],
}
#: Header fields worth splicing: replacing one with another makes the decoders' less-trodden paths run.
FIELDS = [
    b"'shape': (6, 3)",
    b"'shape': (99999999999, 3)",
    b"'shape': (6,)",
    b"'shape': ()",
    b"'descr': '<f4'",
    b"'descr': '<c8'",
    b"'descr': '|O'",
    b"'descr': '<f2'",
    b"'descr': '|V4'",
    b"'fortran_order': True",
    b"[[",
    b"]]",
    b'"lens"',
    b'"classes"',
    b"label",
    b"\xff\xff\xff\x7f",
    b"\x00\x00\x00\x00",
    b"PAR1",
    b"PK\x03\x04",
    b"\x93NUMPY",
    b"1e308",
    b"nan",
    b",,,",
    b'"',
]

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 1 << 16), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("splice"), st.integers(0, 1 << 16), st.sampled_from(FIELDS)),
)


def mutate(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for op, pos, arg in edits:
        if not out:
            break
        pos %= len(out)
        if op == "flip":
            out[pos] ^= 1 << arg
        elif op == "cut":
            del out[pos:]
        elif op == "insert":
            out[pos:pos] = arg
        else:  # replace a field where one occurs (or at pos), keeping the rest
            hit = next((out.find(f) for f in FIELDS if len(f) > 2 and f[:4] == arg[:4] and out.find(f) >= 0), -1)
            start = hit if hit >= 0 else pos
            old = next((f for f in FIELDS if out.startswith(f, start)), b"")
            out[start : start + len(old)] = arg
    return bytes(out)


def _read(fmt: str, data: bytes) -> None:
    if fmt in ("json", "pt"):
        read_lens(data)
    elif fmt == "npy":
        read_predictions(data, b"0\n1\n2\n0\n1\n2\n", kind="logits")
    else:
        read_predictions(data)


@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_mutated_files_raise_only_lensdash_errors(fmt):
    @settings(
        max_examples=EXAMPLES,
        deadline=SLOWEST * 1000,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.sampled_from(SEEDS[fmt]), st.lists(mutation, min_size=1, max_size=4))
    def check(seed, edits):
        with contextlib.suppress(LensdashError):  # anything else fails; hypothesis's deadline fails a slow read
            _read(fmt, mutate(seed, edits))

    check()


@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_seeds_are_valid(fmt):
    for data in SEEDS[fmt]:
        _read(fmt, data)
