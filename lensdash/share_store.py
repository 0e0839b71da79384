"""Short share links at any K: a lens and the view's settings saved under a random id in a SQL database.

What is stored: the lens (class names, dtype and the K×K matrix) and a small dict of settings (family, preset,
view). Never predictions: settings are limited to :data:`MAX_SETTINGS_BYTES` of JSON.

Where: any SQLAlchemy database. :class:`ShareStore` takes an ``sqlalchemy.Engine``; the app passes
``st.connection("lensdash_share", type="sql").engine``, which reads a connection string from
``.streamlit/secrets.toml`` when hosted (``[connections.lensdash_share] url = "postgresql+psycopg://..."``) and
otherwise uses SQLite in a local file (:data:`DEFAULT_URL`, nothing to set up). The tables are created on first
use.

Ids are ``secrets.token_urlsafe(16)``: 128 random bits, 22 URL-safe characters, so they cannot be guessed or
enumerated. An id that is not of that form, or that is not in the store, raises :class:`~lensdash.InputError`; the
stored payload is validated again on load, so a tampered row raises :class:`~lensdash.LensError` (never a bad
lens, never a raw database error).

Limits: each entry at most ``max_entry_bytes`` (compressed), and per UTC day at most ``max_entries_per_day``
entries and ``max_bytes_per_day`` bytes. The day's totals live in a counter row updated with one conditional
``UPDATE ... WHERE entries + 1 <= limit AND bytes + size <= limit`` in the same transaction as the insert, so
concurrent writers (threads, processes, app replicas) can never exceed them: SQLite serialises writers on its
database lock, PostgreSQL on the counter row's lock (a waiting ``UPDATE`` re-checks its ``WHERE`` on the new row).

Payload format (zlib-compressed): ``b"LDS1"``, a 4-byte big-endian header length, a JSON header
``{"classes": [...], "dtype": "float32" | "float64", "settings": {...}}``, then the matrix as little-endian raw
bytes, row-major. A dense float64 lens of K = 1000 is about 8 MB.
"""

from __future__ import annotations

import json
import re
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
import torch
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.schema import CreateTable

from lensdash.errors import InputError, LensError
from lensdash.lens import Lens

DEFAULT_URL = "sqlite:///lensdash_share.sqlite"
"""SQLite in a file next to where the app runs: the default when no connection string is configured."""

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{22}")
MAGIC = b"LDS1"
MAX_SETTINGS_BYTES = 16 * 1024
_DTYPES = {"float32": (torch.float32, "<f4", np.float32), "float64": (torch.float64, "<f8", np.float64)}


class ShareStoreError(InputError):
    """The share store cannot take or give this entry now: a limit is reached or the database is unreachable."""


@dataclass(frozen=True)
class SharedView:
    """What a share link reopens: the lens and the view's settings."""

    lens: Lens
    settings: dict[str, Any]
    created_at: datetime | None = None


def _tables(prefix: str) -> tuple[sa.MetaData, sa.Table, sa.Table]:
    metadata = sa.MetaData()
    shares = sa.Table(
        f"{prefix}_entries",
        metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    days = sa.Table(
        f"{prefix}_days",
        metadata,
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
    )
    return metadata, shares, days


def default_engine(url: str = DEFAULT_URL) -> sa.Engine:
    """An engine for ``url``; for SQLite, writers wait up to 30 s for the database lock instead of failing."""
    connect_args = {"timeout": 30} if url.startswith("sqlite") else {}
    return sa.create_engine(url, connect_args=connect_args)


def encode_view(lens: Lens, settings: Mapping[str, Any] | None = None) -> bytes:
    """The compressed payload of a lens and its settings (see the module's docstring for the format).

    Raises:
        InputError: settings that are not a small JSON object with text keys.
    """
    settings = dict(settings or {})
    try:
        text = json.dumps(settings, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise InputError.build(
            "settings as a JSON object of text, numbers, booleans and lists",
            f"{type(error).__name__}: {str(error)[:80]}",
            where="share settings",
            fix="Share only the view's settings (family, preset, view), never predictions.",
        ) from None
    if len(text) > MAX_SETTINGS_BYTES:
        raise InputError.build(
            f"settings of at most {MAX_SETTINGS_BYTES} bytes of JSON",
            f"{len(text)} bytes",
            where="share settings",
            fix="Share only the view's settings (family, preset, view), never predictions.",
        )
    dtype = "float64" if lens.matrix.dtype == torch.float64 else "float32"
    header = json.dumps(
        {"classes": list(lens.classes), "dtype": dtype, "settings": settings}, allow_nan=False, sort_keys=True
    ).encode()
    matrix = lens.matrix.detach().cpu().to(_DTYPES[dtype][0]).numpy().astype(_DTYPES[dtype][1]).tobytes()
    return zlib.compress(MAGIC + struct.pack(">I", len(header)) + header + matrix, 6)


def _tampered(found: str) -> LensError:
    return LensError.build(
        "a lensdash share entry",
        found,
        where="share store",
        fix="The stored entry is damaged or was altered; ask for a new link.",
    )


def decode_view(payload: bytes, *, max_decoded_bytes: int = 64 * 1024 * 1024) -> SharedView:
    """Read a payload back, checking everything: the result is a valid :class:`~lensdash.Lens` or an error.

    Lens convention of the result: rows are target distributions for each true label; rows sum to 1.

    Raises:
        LensError: a payload that does not decompress within ``max_decoded_bytes``, has another format, or holds
            an invalid lens (bad shape, names, entries or row sums).

    Example:
        >>> view = decode_view(encode_view(Lens([[0.5, 0.5], [0.0, 1.0]], ["a", "b"]), {"view": "compare"}))
        >>> view.lens.classes, view.settings
        (('a', 'b'), {'view': 'compare'})
    """
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(bytes(payload), max_decoded_bytes)
        if inflater.unconsumed_tail or not inflater.eof:
            raise _tampered(f"a payload over {max_decoded_bytes} bytes or truncated")
    except zlib.error:
        raise _tampered("data that does not decompress") from None
    if raw[:4] != MAGIC or len(raw) < 8:
        raise _tampered("another format")
    (size,) = struct.unpack(">I", raw[4:8])
    try:
        header = json.loads(raw[8 : 8 + size], parse_constant=lambda name: _reject(name))
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        raise _tampered("a header that is not JSON") from None
    if not isinstance(header, dict) or set(header) != {"classes", "dtype", "settings"}:
        raise _tampered("a header without exactly classes, dtype and settings")
    classes, dtype, settings = header["classes"], header["dtype"], header["settings"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise _tampered("class names that are not a list of text")
    if not isinstance(dtype, str) or dtype not in _DTYPES or not isinstance(settings, dict):
        raise _tampered(f"dtype {str(dtype)[:20]!r} or settings that are not an object")
    k = len(classes)
    body = raw[8 + size :]
    if len(body) != k * k * np.dtype(_DTYPES[dtype][1]).itemsize:
        raise _tampered(f"{len(body)} matrix bytes for {k} classes")
    matrix = torch.from_numpy(np.frombuffer(body, dtype=_DTYPES[dtype][1]).astype(_DTYPES[dtype][2]))
    lens = Lens(matrix.reshape(k, k), classes)  # validates: LensError on anything wrong
    return SharedView(lens, settings)


def _reject(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


class ShareStore:
    """Lenses and view settings saved under random ids in a SQL database.

    Args:
        engine: any ``sqlalchemy.Engine`` (``st.connection(..., type="sql").engine`` in the app;
            :func:`default_engine` for SQLite in a file).
        max_entry_bytes: most bytes one entry may take (compressed payload).
        max_entries_per_day: most entries saved per UTC day.
        max_bytes_per_day: most payload bytes saved per UTC day.
        table_prefix: the tables are ``{prefix}_entries`` and ``{prefix}_days``.
        max_decoded_bytes: most bytes an entry may inflate to on load (64 MiB: a dense float64 lens of K = 2896),
            so an altered row cannot make a decompression bomb.
        clock: returns the current time (UTC); for tests.

    Example:
        >>> store = ShareStore(sa.create_engine("sqlite://"))
        >>> share_id = store.save(Lens([[0.5, 0.5], [0.5, 0.5]], ["cat", "dog"]), {"family": "target"})
        >>> len(share_id), store.load(share_id).settings
        (22, {'family': 'target'})
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        max_entry_bytes: int = 16 * 1024 * 1024,
        max_entries_per_day: int = 1000,
        max_bytes_per_day: int = 1024 * 1024 * 1024,
        table_prefix: str = "lensdash_share",
        max_decoded_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], datetime] | None = None,
    ):
        self.engine = engine
        self.max_entry_bytes = max_entry_bytes
        self.max_entries_per_day = max_entries_per_day
        self.max_bytes_per_day = max_bytes_per_day
        self.max_decoded_bytes = max_decoded_bytes
        self._clock = clock or (lambda: datetime.now(UTC))
        self._metadata, self._entries, self._days = _tables(table_prefix)
        self._ready = False
        self._lock = threading.Lock()

    # -------------------------------------------------------------- schema

    def _ensure_schema(self) -> None:
        """Create the tables if missing, tolerating other sessions or processes doing the same at the same time."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            for attempt in range(5):
                try:
                    with self.engine.begin() as conn:
                        for table in self._metadata.sorted_tables:
                            conn.execute(CreateTable(table, if_not_exists=True))
                    break
                except SQLAlchemyError as error:
                    # PostgreSQL can refuse one of two concurrent CREATE TABLE IF NOT EXISTS (pg_type race);
                    # SQLite can report the other writer's lock: try again shortly
                    if attempt == 4:
                        raise self._unavailable(error) from None
                    time.sleep(0.05 * (attempt + 1))
            self._ready = True

    @staticmethod
    def _unavailable(error: SQLAlchemyError) -> ShareStoreError:
        return ShareStoreError.build(
            "a reachable share store",
            f"a database error ({type(error).__name__})",
            where="share store",
            fix="Try again later; whoever hosts the app can check the connection in .streamlit/secrets.toml.",
        )

    # ---------------------------------------------------------------- save

    def _add_day_row(self, conn: sa.Connection, day: str) -> None:
        """Insert the day's counter row if missing, without failing when another writer just did."""
        values = {"day": day, "entries": 0, "bytes": 0}
        dialect = conn.dialect.name
        if dialect in ("sqlite", "postgresql"):
            module = sqlite if dialect == "sqlite" else postgresql
            conn.execute(module.insert(self._days).values(values).on_conflict_do_nothing(index_elements=["day"]))
        elif dialect in ("mysql", "mariadb"):
            conn.execute(sa.insert(self._days).prefix_with("IGNORE").values(values))
        else:
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(self._days).values(values))
            except IntegrityError:
                pass

    def save(self, lens: Lens, settings: Mapping[str, Any] | None = None) -> str:
        """Save a lens and view settings; returns the new id (22 URL-safe characters).

        Args:
            lens: the :class:`~lensdash.Lens` (rows are target distributions per true label, rows sum to 1).
            settings: a small JSON object (family, preset, view); never predictions.

        Raises:
            InputError: settings that are not small JSON.
            ShareStoreError: the entry is over ``max_entry_bytes``, today's entry or byte limit is reached, or the
                database is unreachable.
        """
        if not isinstance(lens, Lens):
            raise InputError.build("a lensdash.Lens", type(lens).__name__, fix="Wrap the matrix: Lens(matrix, names).")
        payload = encode_view(lens, settings)
        if len(payload) > self.max_entry_bytes:
            raise ShareStoreError.build(
                f"an entry of at most {self.max_entry_bytes:,} bytes",
                f"{len(payload):,} bytes for K = {lens.num_classes}",
                where="share store",
                fix="Download the lens as a file and share that instead.",
            )
        self._ensure_schema()
        now = self._clock().astimezone(UTC)
        day = now.date().isoformat()
        share_id = secrets.token_urlsafe(16)
        days = self._days
        try:
            with self.engine.begin() as conn:
                self._add_day_row(conn, day)  # a write first: SQLite takes its write lock here, before any read
                taken = conn.execute(
                    sa.update(days)
                    .where(
                        days.c.day == day,
                        days.c.entries + 1 <= self.max_entries_per_day,
                        days.c.bytes + len(payload) <= self.max_bytes_per_day,
                    )
                    .values(entries=days.c.entries + 1, bytes=days.c.bytes + len(payload))
                )
                if taken.rowcount != 1:
                    raise ShareStoreError.build(
                        f"at most {self.max_entries_per_day:,} shared views or {self.max_bytes_per_day:,} bytes a day",
                        "today's limit reached",
                        where="share store",
                        fix="Try again after midnight UTC, or download the lens as a file and share that.",
                    )
                conn.execute(
                    sa.insert(self._entries).values(
                        id=share_id, created_at=now, day=day, size=len(payload), payload=payload
                    )
                )
        except SQLAlchemyError as error:
            raise self._unavailable(error) from None
        return share_id

    # ---------------------------------------------------------------- load

    def load(self, share_id: object) -> SharedView:
        """The lens and settings saved under ``share_id``, validated again.

        Raises:
            InputError: an id that is not 22 URL-safe characters, or that is not in the store.
            LensError: a stored entry that was altered or damaged.
            ShareStoreError: the database is unreachable.
        """
        if not isinstance(share_id, str) or not ID_PATTERN.fullmatch(share_id):
            shown = repr(share_id)[:30] + ("…" if len(repr(share_id)) > 30 else "")
            raise InputError.build(
                "a share id of 22 letters, digits, '-' or '_'",
                shown,
                where="share link",
                fix="Copy the whole link again, or open the app without it.",
            )
        self._ensure_schema()
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    sa.select(self._entries.c.payload, self._entries.c.created_at).where(self._entries.c.id == share_id)
                ).first()
        except SQLAlchemyError as error:
            raise self._unavailable(error) from None
        if row is None:
            raise InputError.build(
                "the id of a saved view",
                f"no view saved as {share_id!r}",
                where="share link",
                fix="The link may be mistyped or from another server; open the app without it.",
            )
        view = decode_view(row.payload, max_decoded_bytes=self.max_decoded_bytes)
        return SharedView(view.lens, view.settings, row.created_at)

    def usage(self, day: str | None = None) -> tuple[int, int]:
        """Entries and bytes saved on ``day`` (ISO date, UTC; today by default)."""
        self._ensure_schema()
        day = day or self._clock().astimezone(UTC).date().isoformat()
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(self._days.c.entries, self._days.c.bytes).where(self._days.c.day == day)
            ).first()
        return (int(row.entries), int(row.bytes)) if row else (0, 0)


__all__ = [
    "DEFAULT_URL",
    "ShareStore",
    "ShareStoreError",
    "SharedView",
    "decode_view",
    "default_engine",
    "encode_view",
]
