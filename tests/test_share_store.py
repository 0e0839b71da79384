"""The share store against a real SQLite file and, where one can be started, a throwaway PostgreSQL cluster.

PostgreSQL runs when Debian's ``postgresql`` package (or any ``initdb``/``pg_ctl``) is installed: the ``postgres_url``
fixture starts a cluster in a temporary folder on a free port (as the ``postgres`` user when the tests run as root,
since PostgreSQL refuses to run as root) and skips, saying why, otherwise. With ``LENSDASH_REQUIRE_POSTGRES`` set
(``.ci/run`` sets it) a missing or failing PostgreSQL fails the tests instead of skipping them.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import zlib
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import pytest
import sqlalchemy as sa
import torch

from lensdash import InputError, LensError, distance_lens, merge_lens
from lensdash.lens import Lens
from lensdash.share_store import (
    ID_PATTERN,
    ShareStore,
    ShareStoreError,
    decode_view,
    default_engine,
    encode_view,
)

NAMES = [f"class {i}" for i in range(10)]


# ------------------------------------------------------------------ fixtures


def _pg_bin() -> str | None:
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return os.path.dirname(os.path.realpath(found))
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(candidates[-1]) if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _skip(reason: str) -> NoReturn:
    if os.environ.get("LENSDASH_REQUIRE_POSTGRES"):
        pytest.fail(f"PostgreSQL is required (LENSDASH_REQUIRE_POSTGRES) but {reason}; apt-get install postgresql")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster for this test session: its SQLAlchemy URL."""
    bindir = _pg_bin()
    if bindir is None:
        _skip("PostgreSQL not installed (no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin)")
    runner: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        runner = ["runuser", "-u", "postgres", "--"]
    folder = tempfile.mkdtemp(prefix="lensdash-pg-")
    if runner:
        shutil.chown(folder, user="postgres")
    data, port = os.path.join(folder, "data"), _free_port()
    pg_ctl = [*runner, os.path.join(bindir, "pg_ctl"), "-D", data]
    try:
        subprocess.run(
            [*runner, os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        started = subprocess.run(
            [*pg_ctl, "-o", options, "-l", os.path.join(folder, "log"), "-w", "-t", "60", "start"],
            capture_output=True,
            timeout=120,
        )
        if started.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            _skip(f"PostgreSQL did not start: {started.stderr.decode(errors='replace')[-300:]}")
    except (subprocess.SubprocessError, OSError) as error:
        shutil.rmtree(folder, ignore_errors=True)
        _skip(f"PostgreSQL could not be set up here: {error}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


_pg_counter = iter(range(10**6))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """A fresh, empty database: a SQLite file, or a new schema-less database in the PostgreSQL cluster."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'share.sqlite'}"
        return
    base = request.getfixturevalue("postgres_url")
    name = f"share_{os.getpid()}_{next(_pg_counter)}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    yield base.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def engine(url):
    engine = default_engine(url)
    yield engine
    engine.dispose()


def _lens(k: int = 10, dtype: torch.dtype = torch.float32) -> Lens:
    names = NAMES if k == 10 else [f"c{i}" for i in range(k)]
    base = merge_lens(names, [names[:3], names[5:7]]) if k == 10 else distance_lens(torch.rand(k, k) * 4, 1.0, names)
    return Lens(base.matrix.to(dtype), names)


# --------------------------------------------------------------- round trip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_saved_view_reopens_exactly(engine, dtype):
    store = ShareStore(engine)
    lens = _lens(dtype=dtype)
    settings = {"family": "prediction", "preset": "merge", "view": "compare", "groups": [["class 0", "class 1"]]}
    share_id = store.save(lens, settings)
    assert ID_PATTERN.fullmatch(share_id)
    view = ShareStore(engine).load(share_id)  # another session, same database
    assert view.lens == lens and view.lens.matrix.dtype == dtype
    assert view.settings == settings and view.created_at is not None


def test_any_k_fits(engine):
    lens = _lens(k=600, dtype=torch.float64)  # dense: no structure to compress
    store = ShareStore(engine)
    share_id = store.save(lens, {"view": "lens"})
    assert torch.equal(store.load(share_id).lens.matrix, lens.matrix)
    assert store.usage()[1] == len(encode_view(lens, {"view": "lens"})) > 2_000_000


def test_ids_are_random_and_unique(tmp_path):
    store = ShareStore(default_engine(f"sqlite:///{tmp_path / 's.sqlite'}"))
    ids = {store.save(_lens()) for _ in range(20)}
    assert len(ids) == 20
    assert len({i[:4] for i in ids}) == 20  # no common prefix or counter


# ----------------------------------------------------------- bad ids, rows


@pytest.mark.parametrize("bad", ["", "abc", "a" * 21 + "/", "a" * 23, "' OR 1=1 --aaaaaaaaaaaa", None, 12345, "ä" * 22])
def test_malformed_ids_are_refused_before_the_database(engine, bad):
    with pytest.raises(InputError, match="share link: expected a share id of 22 letters, digits"):
        ShareStore(engine).load(bad)


def test_an_unknown_id_is_an_input_error(engine):
    store = ShareStore(engine)
    store.save(_lens())
    with pytest.raises(InputError, match="no view saved as 'AAAAAAAAAAAAAAAAAAAAAA'"):
        store.load("A" * 22)


def _tamper(engine, share_id: str, payload: bytes) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE lensdash_share_entries SET payload = :p WHERE id = :i"), {"p": payload, "i": share_id}
        )


def _bomb(size: int) -> bytes:
    deflate = zlib.compressobj()
    chunk = b"\0" * (1 << 20)
    return b"".join(deflate.compress(chunk) for _ in range(size >> 20)) + deflate.flush()


def _raw(lens_matrix: bytes, header: bytes) -> bytes:
    return zlib.compress(b"LDS1" + len(header).to_bytes(4, "big") + header + lens_matrix)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"not zlib at all", "does not decompress"),
        (_bomb(80 * 1024 * 1024), "payload over"),
        (zlib.compress(b"LDS1" + b"\0" * 20)[:-4], "over .* bytes or truncated"),
        (zlib.compress(b"PK\x03\x04 other"), "another format"),
        (_raw(b"", b"{not json"), "header that is not JSON"),
        (_raw(b"", b'{"classes": ["a"], "dtype": "float32", "settings": {}, "x": 1}'), "exactly classes"),
        (_raw(b"", b'{"classes": [1, 2], "dtype": "float32", "settings": {}}'), "not a list of text"),
        (_raw(b"", b'{"classes": ["a", "b"], "dtype": "int8", "settings": {}}'), "dtype 'int8'"),
        (_raw(b"\0" * 15, b'{"classes": ["a", "b"], "dtype": "float32", "settings": {}}'), "15 matrix bytes for 2"),
        (
            _raw(
                torch.tensor([[0.9, 0.9], [0.0, 1.0]]).numpy().tobytes(),
                b'{"classes": ["a", "b"], "dtype": "float32", "settings": {}}',
            ),
            "sum",
        ),
        (
            _raw(
                torch.tensor([[float("nan"), 1.0], [0.0, 1.0]]).numpy().tobytes(),
                b'{"classes": ["a", "b"], "dtype": "float32", "settings": {}}',
            ),
            "finite",
        ),
        (
            _raw(torch.eye(2).numpy().tobytes(), b'{"classes": ["a", "a"], "dtype": "float32", "settings": {}}'),
            "unique",
        ),
        (
            _raw(
                torch.eye(2).numpy().tobytes(), b'{"classes": ["a", "b"], "dtype": "float32", "settings": {"x": NaN}}'
            ),
            "not JSON",
        ),
    ],
    ids=[
        "not-zlib",
        "bomb",
        "truncated",
        "other-format",
        "header-not-json",
        "extra-key",
        "numeric-names",
        "int8",
        "short-matrix",
        "row-sums",
        "nan",
        "duplicate-names",
        "nan-setting",
    ],
)
def test_a_tampered_row_cannot_inject_a_bad_lens(tmp_path, payload, match):
    engine = default_engine(f"sqlite:///{tmp_path / 'share.sqlite'}")
    store = ShareStore(engine)
    share_id = store.save(_lens())
    _tamper(engine, share_id, payload)
    with pytest.raises(LensError, match=match):
        store.load(share_id)


# -------------------------------------------------------------------- limits


def test_entry_size_limit(engine):
    store = ShareStore(engine, max_entry_bytes=100)
    with pytest.raises(ShareStoreError, match=r"expected an entry of at most 100 bytes, found \d+ bytes for K = 10"):
        store.save(_lens())
    assert store.usage() == (0, 0)


def test_daily_entry_limit_resets_at_midnight_utc(engine):
    now = [datetime(2026, 3, 1, 23, 59, tzinfo=UTC)]
    store = ShareStore(engine, max_entries_per_day=3, clock=lambda: now[0])
    ids = [store.save(_lens()) for _ in range(3)]
    with pytest.raises(ShareStoreError, match=r"at most 3 shared views .* a day, found today's limit reached"):
        store.save(_lens())
    assert store.usage()[0] == 3
    now[0] += timedelta(minutes=2)  # the next UTC day
    store.save(_lens())
    assert store.usage() == (1, store.usage("2026-03-02")[1]) and store.usage("2026-03-01")[0] == 3
    assert all(store.load(i).lens == _lens() for i in ids)


def test_daily_byte_limit(engine):
    size = len(encode_view(_lens(), {}))
    store = ShareStore(engine, max_bytes_per_day=2 * size + size // 2)
    store.save(_lens(), {})
    store.save(_lens(), {})
    with pytest.raises(ShareStoreError, match="limit reached"):
        store.save(_lens(), {})
    assert store.usage() == (2, 2 * size)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"predictions": torch.zeros(3)}, "TypeError"),
        ({"x": float("nan")}, "ValueError"),
        ({"rows": list(range(10_000))}, r"at most 16384 bytes of JSON"),
    ],
)
def test_settings_are_small_json_never_predictions(tmp_path, settings, match):
    store = ShareStore(default_engine(f"sqlite:///{tmp_path / 's.sqlite'}"))
    with pytest.raises(InputError, match=match):
        store.save(_lens(), settings)


def test_a_plain_matrix_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"expected a lensdash\.Lens, found Tensor"):
        ShareStore(default_engine(f"sqlite:///{tmp_path / 's.sqlite'}")).save(torch.eye(3))


def test_an_unreachable_database_is_a_store_error_not_a_raw_one(tmp_path):
    store = ShareStore(default_engine(f"sqlite:///{tmp_path / 'missing' / 'folder' / 's.sqlite'}"))
    with pytest.raises(ShareStoreError, match="expected a reachable share store, found a database error"):
        store.load("A" * 22)


# ---------------------------------------------------------------- concurrency


def _save_many(url: str, count: int, limit: int, barrier=None) -> tuple[int, int]:
    """One writer (a thread or a process): its own engine and store, ``count`` saves; (saved, refused)."""
    engine = default_engine(url)
    store = ShareStore(engine, max_entries_per_day=limit)
    lens = _lens()
    if barrier is not None:
        barrier.wait()
    saved = refused = 0
    for _ in range(count):
        try:
            store.save(lens, {"writer": os.getpid()})
            saved += 1
        except ShareStoreError as error:
            assert "limit reached" in str(error), str(error)
            refused += 1
    engine.dispose()
    return saved, refused


def _rows(url: str) -> int:
    engine = default_engine(url)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT COUNT(*) FROM lensdash_share_entries")).scalar_one()
    engine.dispose()
    return count


def test_concurrent_writers_in_threads_never_exceed_the_daily_limit(url):
    writers, attempts, limit = 4, 10, 13
    results: list[tuple[int, int]] = []
    barrier = threading.Barrier(writers)
    threads = [
        threading.Thread(target=lambda: results.append(_save_many(url, attempts, limit, barrier)))
        for _ in range(writers)
    ]  # every store starts on an empty database: they also race to create the tables
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == writers
    assert sum(s for s, _ in results) == limit and sum(r for _, r in results) == writers * attempts - limit
    assert _rows(url) == limit
    assert ShareStore(default_engine(url)).usage()[0] == limit


def _process_writer(url: str, attempts: int, limit: int, barrier, queue) -> None:
    queue.put(_save_many(url, attempts, limit, barrier))


def test_concurrent_writers_in_processes_never_exceed_the_daily_limit(url):
    ShareStore(default_engine(url)).usage()  # tables exist; the processes race on the limit only
    # fork: the children start with lensdash imported (spawn would import torch again, seconds per child); each
    # child makes its own engine, so no connection crosses the fork
    context = multiprocessing.get_context("fork")
    writers, attempts, limit = 3, 10, 11
    barrier, queue = context.Barrier(writers), context.Queue()
    processes = [
        context.Process(target=_process_writer, args=(url, attempts, limit, barrier, queue)) for _ in range(writers)
    ]
    for p in processes:
        p.start()
    results = [queue.get(timeout=120) for _ in processes]
    for p in processes:
        p.join(60)
    assert sum(s for s, _ in results) == limit and sum(r for _, r in results) == writers * attempts - limit
    assert _rows(url) == limit


def test_decode_view_is_the_inverse_of_encode_view():
    lens = _lens(dtype=torch.float64)
    view = decode_view(encode_view(lens, {"a": [1, "b", None, True]}))
    assert view.lens == lens and view.settings == {"a": [1, "b", None, True]}
