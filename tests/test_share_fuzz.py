"""The share-link side raises only lensdash's errors (issue 12, point 4): mutated payloads and arbitrary ids.

A stored payload may be altered in the database, and an id comes from the address bar; both are parsed with the same
care as an uploaded file. Examples per test: ``LENSDASH_FUZZ_EXAMPLES`` (default 900, as the readers' fuzz).
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
import zlib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lensdash import Lens, LensdashError
from lensdash.share_store import MAGIC, ShareStore, decode_view, default_engine, encode_view

EXAMPLES = int(os.environ.get("LENSDASH_FUZZ_EXAMPLES", "900"))
SLOWEST = 10.0

_LENS = Lens(torch.tensor([[0.8, 0.2, 0.0], [0.1, 0.9, 0.0], [0.0, 0.0, 1.0]]), ["cat", "dog", "<b>x</b>"])
SEED = encode_view(_LENS, {"view": "Results", "epsilon": 0.1})


def _raw(header: bytes, body: bytes = b"") -> bytes:
    return zlib.compress(MAGIC + struct.pack(">I", len(header)) + header + body)


def _decode_only_lensdash_errors(payload: bytes) -> None:
    started = time.perf_counter()
    with contextlib.suppress(LensdashError):
        decode_view(payload, max_decoded_bytes=1 << 20)
    assert time.perf_counter() - started < SLOWEST


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, len(SEED)),
)
def test_mutated_payloads_raise_only_lensdash_errors(edits, cut):
    data = bytearray(SEED)
    for position, value in edits:
        data[position] = value
    _decode_only_lensdash_errors(bytes(data[: max(cut, 1)]))


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200), st.binary(max_size=64))
def test_mutated_inflated_payloads_raise_only_lensdash_errors(header, body):
    """Past the compression: any header and body bytes behind the magic."""
    _decode_only_lensdash_errors(_raw(header, body))


@pytest.mark.parametrize(
    "header",
    [
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than Python's recursion limit
        b'{"classes": ' + b"[" * 50_000 + b"]" * 50_000 + b', "dtype": "f4", "settings": {}}',
        b'{"classes": ["a"], "dtype": "f4", "settings": {"x": NaN}}',
        b'{"classes": ["a"], "dtype": "f4", "settings": {"x": Infinity}}',
        b'{"classes": ["a"], "dtype": ["f4"], "settings": {}}',
        b'{"classes": ["a"], "dtype": {}, "settings": {}}',
        b"\xff\xfe",
    ],
    ids=["deep-array", "deep-classes", "nan", "infinity", "dtype-list", "dtype-object", "not-utf8"],
)
def test_crafted_headers_are_lens_errors(header):
    with pytest.raises(LensdashError):
        decode_view(_raw(header, b"\x00" * 4))


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.text(max_size=40), st.binary(max_size=40), st.integers(), st.none()))
def test_any_share_id_is_an_input_error_or_a_view(tmp_path_factory, share_id):
    store = _store(tmp_path_factory)
    with pytest.raises(LensdashError):
        store.load(share_id)


_STORES: dict[str, ShareStore] = {}


def _store(tmp_path_factory) -> ShareStore:
    if "store" not in _STORES:
        path = tmp_path_factory.mktemp("share") / "views.sqlite"
        _STORES["store"] = ShareStore(default_engine(f"sqlite:///{path}"))
    return _STORES["store"]
