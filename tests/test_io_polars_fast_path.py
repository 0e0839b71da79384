"""The polars fast path of ``read_predictions`` gives exactly what the pyarrow path gives, or declines.

The reference is the same call with the fast path switched off (``_read_whole`` returning None), so the pyarrow
reader in parts reads the file: values (bit for bit), labels, class names, kind, notes, metadata, or the same
``InputError`` message.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lensdash import InputError
from lensdash.io import _predictions, _reader, read_predictions

pytest.importorskip("polars")


@contextmanager
def _spied() -> Iterator[list[bool]]:
    """Records, per read, whether the fast path's result was used (the pyarrow path did not gather parts)."""
    used: list[bool] = []
    real = _predictions._gather

    def spy(*args: object) -> object:
        used[-1] = False
        return real(*args)  # type: ignore[arg-type]

    real_read = _predictions._read_whole

    def read(*args: object) -> object:
        used.append(True)
        return real_read(*args)  # type: ignore[arg-type]

    with mock.patch.object(_predictions, "_gather", spy), mock.patch.object(_predictions, "_read_whole", read):
        yield used


@contextmanager
def _pyarrow_only() -> Iterator[None]:
    with mock.patch.object(_reader, "_read_whole", lambda *args: None):
        yield


def _outcome(data: bytes | str, **options: object) -> tuple:
    """What a read gives, in comparable form: the error message, or every field of the predictions."""
    try:
        p = read_predictions(data, **options)  # type: ignore[arg-type]
    except InputError as exc:
        return ("error", str(exc))
    meta = None
    if p.metadata is not None:
        columns = p.metadata.to_dict("list")  # values by repr: NaN equals NaN
        meta = (
            list(columns),
            [str(t) for t in p.metadata.dtypes],
            {c: [repr(v) for v in vs] for c, vs in columns.items()},
        )
    targets = p.targets.numpy().tobytes() if p.targets is not None else None
    return (
        "ok",
        p.logits.shape,
        p.logits.numpy().tobytes(),
        p.labels.tolist(),
        p.class_names,
        p.kind,
        p.notes,
        meta,
        targets,
    )


def _both(data: bytes | str, **options: object) -> tuple[tuple, bool]:
    """The fast path's outcome (asserted equal to the pyarrow path's) and whether polars read the file."""
    with _spied() as accepted:
        fast = _outcome(data, **options)
    with _pyarrow_only():
        reference = _outcome(data, **options)
    assert fast == reference
    return fast, any(accepted)


# ------------------------------------------------------------------ generated files

_NUMBERS = [
    "0.25",
    "-1.5",
    "+1.5",
    ".5",
    "5.",
    "-.5",
    "1e3",
    "1E-3",
    "+1e+3",
    "-2.5e-2",
    "3",
    "-0",
    "00.5",
    "0.30000000000000004",
    "1.00000005960464477539062500001",  # just over a float32 midpoint: one ulp apart if rounded twice
    "3.4028235e38",
    "1e39",
    "1e-50",
]
_ODD_NUMBERS = [
    "inf",
    "-inf",
    "+inf",
    "Infinity",
    "INF",
    "nan",
    "NaN",
    "NAN",
    "-nan",
    "",
    "NA",
    "null",
    "None",
    " 1.5",
    "1.5 ",
    " 2 ",
    "\t1",
    '"1.5"',
    '" 2"',
    "0x10",
    "1,5",
    "1_000",
    "abc",
]
_LABELS_INT = ["0", "1", "01", "-0", " 1", "1 ", "+1", "1.0", "", "NA", '"1"', "99999999999999999999"]
_LABELS_TEXT = ["a", "b", "cat", " a", "a ", "A", "true", "2020-01-01", "12:00:00", "T", "", "NA", '"a"', "a b"]
_META = ["x", "y", "", "7", "-3", "2.5", '"p,q"', "NA", " z", "2020-01-01"]


@st.composite
def _csv_files(draw: st.DrawFn) -> tuple[bytes, dict]:
    k = draw(st.integers(2, 4))
    n = draw(st.integers(1, 6))
    delim = draw(st.sampled_from([",", ";", "\t"]))
    header = draw(st.booleans())
    label = draw(st.sampled_from(["none", "int", "int", "text", "text"]))
    meta = draw(st.sampled_from(["none", "id", "text"])) if header else "none"
    odd = draw(st.sampled_from([0.0, 0.0, 0.03, 0.1, 0.3]))  # how often a cell is spelled oddly
    names = [chr(ord("a") + j) for j in range(k)]
    columns: list[tuple[str, list[str]]] = []
    at = 0  # the label column's index
    for j in range(k):
        cells = [
            draw(st.sampled_from(_ODD_NUMBERS))
            if draw(st.floats(0, 1)) < odd
            else draw(st.sampled_from(_NUMBERS) | st.floats(-50, 50, allow_nan=False).map(repr))
            for _ in range(n)
        ]
        columns.append((names[j], cells))
    if label != "none":
        pool = _LABELS_INT if label == "int" else _LABELS_TEXT
        plain = [str(j) for j in range(k)] if label == "int" else names
        cells = [draw(st.sampled_from(pool)) if draw(st.floats(0, 1)) < odd else draw(st.sampled_from(plain))]
        cells += [draw(st.sampled_from(plain)) for _ in range(n - 1)]
        at = draw(st.integers(0, len(columns)))
        columns.insert(at, ("label", cells))
    if meta != "none":
        plain = [str(i) for i in range(n)] if meta == "id" else ["p", "q", "r"]
        cells = [draw(st.sampled_from(_META)) if draw(st.floats(0, 1)) < odd else draw(st.sampled_from(plain))]
        cells += [draw(st.sampled_from(plain)) for _ in range(n - 1)]
        where = draw(st.integers(0, len(columns)))
        columns.insert(where, ("id" if meta == "id" else "name", cells))
        at += int(label != "none" and where <= at)
    lines = [delim.join(name for name, _ in columns)] if header else []
    lines += [delim.join(cells[i] for _, cells in columns) for i in range(n)]
    if draw(st.floats(0, 1)) < odd:  # a blank line, or a row of the wrong width
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(st.sampled_from(["", " ", delim.join(["1"] * (len(columns) + 1)), "1"])))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = eol.join(lines) + (eol if draw(st.booleans()) else "")
    data = text.encode()
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    options: dict = {}
    if label != "none" and (not header or draw(st.booleans())):
        options["label_column"] = at
    elif draw(st.floats(0, 1)) < 0.1:
        options["label_column"] = draw(st.integers(0, len(columns) - 1))
    options["kind"] = draw(st.sampled_from(["auto", "auto", "logits"]))
    return data, options


@settings(
    max_examples=int(os.environ.get("FAST_PATH_EXAMPLES", 400)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_csv_files())
@example((b"a,b,label\n1.5,2.5,0\n-1,+2,1\n", {}))
@example((b"a,b,label\nnan,2.5,0\n-1,2,1\n", {}))
@example((b"a,b,label\n1.5 ,2.5,0\n-1,2,1\n", {}))
@example((b"a,b,label\n,2.5,0\n-1,2,1\n", {}))
@example((b"a,b,label\n1,2,+1\n-1,2,0\n", {}))
@example((b"a;b;label\r\n1,5;2;a\r\n3;4;b", {}))
@example((b"a,b,name,label\n1,2,,0\n3,4,q,1\n", {}))
@example((b"id,label,a,b\n,0,0.25,0.25\n0,0,0.25,0.25\n0,0,0.25,-1.5", {}))
def test_fast_path_reads_as_the_pyarrow_path(case: tuple[bytes, dict]) -> None:
    data, options = case
    _both(data, **options)


# ------------------------------------------------------------------ what polars reads, and what it declines


def test_plain_numeric_files_are_read_by_polars(tmp_path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.standard_normal((300, 5)).astype("float32"), columns=list("abcde"))
    frame.insert(2, "label", rng.integers(0, 5, 300))
    frame.insert(0, "id", np.arange(300))
    path = tmp_path / "p.csv"
    frame.to_csv(path, index=False)
    outcome, accepted = _both(str(path))
    assert accepted and outcome[0] == "ok"
    np.testing.assert_array_equal(np.frombuffer(outcome[2], np.float32).reshape(300, 5), frame[list("abcde")])
    outcome, accepted = _both(path.read_bytes())  # bytes are read in place
    assert accepted and outcome[0] == "ok"
    text = b"cat,dog,label,note\n0.9,0.1,cat,first\n0.2,0.8,dog,\n"  # text labels; an empty text cell stays ''
    outcome, accepted = _both(text)
    assert accepted and outcome[3] == [0, 1] and outcome[7][2] == {"note": ["'first'", "''"]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a,b,label\nnan,2.5,0\n-1,2,1\n", "row 2, column 1"),  # NaN in polars, an empty cell in pyarrow
        (b"a,b,label\n1.5 ,2.5,0\n-1,2,1\n", None),  # polars refuses the space, pyarrow does not
        (b"a,b,label\n1,2,0\n\n3,4,1\n", None),  # polars: a row of nulls; pyarrow skips the blank line
        (b"a,b,label\n1,2,0\n3,4\n", "row 3"),  # a short row: nulls in polars, refused by pyarrow
        (b"a,b,label\n1,2,NA\n-1,2,0\n", None),
    ],
)
def test_polars_declines_what_it_reads_differently(data: bytes, message: str | None) -> None:
    outcome, accepted = _both(data)
    assert not accepted
    if message is not None:
        assert outcome[0] == "error" and message in outcome[1]


def test_integer_labels_are_read_as_pyarrow_settles_them() -> None:
    # The first rows make the column int64 for polars; '+1' further down is pyarrow's float 1.0 and polars' 1.
    data = b"a,b,label\n" + b"1,2,0\n-1,2,1\n" * 4 + b"1,2,+1\n"
    outcome, accepted = _both(data)
    assert accepted and outcome[3] == [0, 1] * 4 + [1]


def test_pyarrow_path_reads_when_polars_is_missing() -> None:
    data = b"a,b,label\n1.5,2.5,0\n-1,2,1\n"
    with _pyarrow_only():
        reference = _outcome(data)
    with mock.patch.dict(sys.modules, {"polars": None}), _spied() as accepted:  # import polars raises ImportError
        assert _outcome(data) == reference
    assert accepted == [False]


def test_polars_is_not_asked_beyond_max_cells() -> None:
    # Long first rows make the layout's estimate of the rows low; the short rows after them exceed the limit.
    data = b"a,b,label\n" + b"1.000000000000000,2.000000000000000,0\n" * 2000 + b"1,2,0\n" * 20000
    calls: list[dict] = []
    import polars as pl

    real = pl.read_csv

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    with mock.patch.object(pl, "read_csv", counted):
        outcome, accepted = _both(data, max_cells=20_000)
    assert not accepted and outcome[0] == "error" and "20,000" in outcome[1]
    assert calls and calls[0]["n_rows"] == 20_000 // 2 + 1  # polars stops one row past the limit


def test_streams_keep_the_parts(tmp_path) -> None:
    from lensdash.io import open_stream

    path = tmp_path / "p.csv"
    path.write_text("a,b,label\n1.5,2.5,0\n-1,2,1\n")
    with mock.patch.object(_reader, "_read_whole", side_effect=AssertionError("not for streams")):
        chunks = list(open_stream(path).chunks)
    assert sum(len(c.labels) for c in chunks) == 2


def test_a_label_column_past_a_headerless_first_row_is_refused() -> None:
    with pytest.raises(InputError, match=r"label_column in 0\.\.2, found 6"):
        read_predictions(b"0,1.5,2.5\n1,2,3\n", label_column=6)


def test_polars_keeps_its_thread_limit() -> None:
    """The reader leaves polars' pool alone: POLARS_MAX_THREADS when set, else at most one thread per core."""
    import subprocess

    code = (
        "import os, lensdash, polars;"
        "lensdash.read_predictions(b'a,b,label\\n1,2,0\\n3,4,1\\n');"
        "print(polars.thread_pool_size(), os.cpu_count())"
    )
    for limit in ("1", None):
        env = {k: v for k, v in os.environ.items() if k != "POLARS_MAX_THREADS"}
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if limit is not None:
            env["POLARS_MAX_THREADS"] = limit
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        threads, cores = map(int, done.stdout.split())
        assert threads == 1 if limit is not None else 1 <= threads <= cores
