"""How the page keeps what it computed: keyed by content, per session, bounded.

A user's data and what is computed from it never go into a cache shared across sessions: results live in the
session's own store (:func:`session_memo`, see :mod:`lensdash.ui.state`), keyed by a content digest of everything
that determines them, and go with the session. ``st.cache_data`` is used only for values that hold no user data,
with ``max_entries`` and a TTL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import torch

from lensdash.lens import Lens
from lensdash.ui import state

T = TypeVar("T")

#: Results kept per kind of result and session (the last few lenses a user switched between).
MEMO_ENTRIES = 3


def tensor_digest(*tensors: torch.Tensor, names: Sequence[str] = (), extra: str = "") -> str:
    """A digest of the tensors' dtypes, shapes and bytes, the names and ``extra``: equal digests, equal content.

    >>> a = tensor_digest(torch.zeros(2, 3), names=("x",))
    >>> a == tensor_digest(torch.zeros(2, 3), names=("x",)), a == tensor_digest(torch.zeros(3, 2), names=("x",))
    (True, False)
    """
    h = hashlib.blake2b(digest_size=20)
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():  # the tensor's own buffer: a tobytes() copy would be as large as the data, once per digest
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    for name in names:
        h.update(b"\x00" + str(name).encode("utf-8", "surrogatepass"))
    h.update(b"\x01" + extra.encode())
    return h.hexdigest()


def lens_digest(lens: Lens) -> str:
    """The key of a lens: its matrix (as float64) and class names."""
    return tensor_digest(lens.matrix.double(), names=lens.classes)


def session_memo(name: str, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, kept in this session's state under ``(name, key)``; the last :data:`MEMO_ENTRIES` per name.

    ``key`` must hold everything the value depends on (content digests, not counters or names).
    """
    memo: dict[str, dict[Hashable, Any]] = state.setdefault(state.MEMO, {})
    entries = memo.setdefault(name, {})
    if key in entries:
        entries[key] = entries.pop(key)  # most recently used last
        return entries[key]
    value = compute()
    entries[key] = value
    while len(entries) > MEMO_ENTRIES:
        del entries[next(iter(entries))]
    return value


def clear_session_memo() -> None:
    """Forget the session's results (new data makes them useless, and they can be large)."""
    state.drop(state.MEMO)
