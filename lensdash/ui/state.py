"""The page's session state: every key, its default and its type, in one place.

Widget keys are the ``key=`` of a widget (Streamlit keeps the widget's value under it); the other keys hold what the
page computed for this session. Nothing here is shared between sessions.

The session's large values (the data, the files it was read from, the results computed from it: :data:`HELD`) are
kept in a session-scoped resource cache rather than in ``st.session_state``. Streamlit drops a session-scoped cache as
soon as the browser disconnects, and keeps a disconnected session's state for ``server.disconnectedSessionTTL`` but
frees it only when another session connects or leaves. So the store is *parked* when its connection drops: a tab that
reconnects within ``disconnectedSessionTTL`` (a network blip, a server too busy to answer a ping) finds its data
again, and a closed tab's store is freed when that time is up, whatever other sessions do.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import secrets
import threading
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, TypedDict, cast

import numpy as np
import pyarrow as pa
import streamlit as st

log = logging.getLogger("lensdash.ui")

if TYPE_CHECKING:
    from lensdash.hierarchy import Hierarchy
    from lensdash.lens import Lens
    from lensdash.training import Problem, Run, TrainConfig
    from lensdash.ui.data import Dataset

# ---- widget keys
FAMILY = "family"
KIND = "kind"
VIEW = "view"
UPLOAD_PREDICTIONS = "upload_predictions"
UPLOAD_LABELS = "upload_labels"
UPLOAD_LENS = "upload_lens"
PRESET = "preset"
GROUPS = "groups"
EPSILON = "epsilon"
BETA = "beta"
ALPHA = "alpha"
CONFUSION_KIND = "confusion_kind"
LAB_PROBLEM = "lab_problem"
LAB_BLOBS = "lab_blobs"
LAB_SEPARATION = "lab_separation"
LAB_EPOCHS = "lab_epochs"
LAB_LR = "lab_lr"
LAB_HIDDEN = "lab_hidden"
LAB_SEED = "lab_seed"
LAB_LENS = "lab_lens"
LAB_EPSILON = "lab_epsilon"
LAB_SHOW = "lab_show"
UPLOAD_HIERARCHY = "upload_hierarchy"
HIERARCHY_LEVEL = "hierarchy_level"  #: the level whose groups the merge preset takes
BETA_MODE = "beta_mode"  #: how the soft hierarchy lens is set: by the mass kept on the true class, or by β
MASS_KEPT = "mass_kept"  #: share of each row on the true class (soft hierarchy lens)
SUBGRID_CLASSES = "subgrid_classes"  #: the classes whose sub-grid is edited (large K)
EVAL_TOP_K = "eval_top_k"  #: k of the evaluation's top-k accuracy
EVAL_TRUE = "eval_true"  #: the true class of the confusion cell whose samples are listed
EVAL_PREDICTED = "eval_predicted"  #: its predicted class
EVAL_CELLS = "eval_cells"  #: the clickable confusion matrix (its selection event)
UPLOAD_MODEL_B = "upload_model_b"
META_COLUMNS = "meta_columns"  #: numeric columns to keep aside as metadata (comma-separated), as --meta-columns
SLICE_COLUMN = "slice_column"
COMPARE_CORRECT = "compare_correct"

# ---- state the page keeps for the session
DATA = "data"  #: the Dataset read from an upload or sent from the lab (absent: the demo)
DEMO = "demo_dataset"  #: the demo Dataset, built once per session
SOURCE_KEY = "data_key"  #: which upload DATA was read from (file ids, sizes and kind), to read each upload once
SOURCES = "sources"  #: what is kept of the upload DATA was read from (lensdash.ui.data.Upload: the read, small files)
FAILED_KEY = "failed_key"  #: the upload that could not be read, and why
FAILED_MESSAGE = "failed_message"
UPLOAD_VERSION = "upload_version"  #: bumped to empty the uploaders once their files were read
LENS_BASE = "lens_base"  #: the K×K matrix the grid starts from (a preset, an import, a link)
LENS_VERSION = "lens_version"  #: bumped with each new base, so the grid drops its old edits
LENS_GRID_KEY = "lens_grid_key"  #: the grid's current widget key
LENS_CURRENT = "lens_current"  #: the grid's matrix after the user's edits
LENS_CLASSES = "lens_classes"  #: the class names the lens was built for
LENS_ERROR = "lens_message"  #: why the last preset/import/normalise/link did not apply
LENS_INFO = "lens_message_info"  #: a one-time note (lens imported, lens from the link)
LAB = "lab"  #: the training lab's last result (LabResult)
SESSION_TOKEN = "session_token"  #: a random id of this session, the key of its store of large values
MEMO = "memo"  #: per-session results of the analysis (lensdash.ui.cache.session_memo)
HIERARCHY = "hierarchy"  #: the uploaded class hierarchy: (Hierarchy, content digest, file name)
HIERARCHY_ERROR = "hierarchy_error"  #: why the last hierarchy upload could not be read
SOFT_BETA = "soft_beta"  #: the β the soft hierarchy lens was last built with (shown beside the mass control)
EVAL_CLICKED = "eval_clicked"  #: the confusion cell last clicked, so a kept click event is applied once
DATA_B = "data_b"  #: model B's Dataset, as read (compared with DATA in lensdash.ui.compare)
SOURCE_KEY_B = "data_b_key"  #: which upload DATA_B was read from
SOURCES_B = "sources_b"  #: the same for model B's upload (lensdash.ui.data.Upload)
FAILED_KEY_B = "failed_key_b"  #: model B's upload that could not be read, and why
FAILED_MESSAGE_B = "failed_message_b"
SHARE_OPENED = "share_opened"  #: the ?view= id already opened in this session (each link is applied once)
SHARE_PENDING = "share_pending"  #: a shared view waiting for data of its classes (lensdash.share_store.SharedView)
SHARE_MESSAGE = "share_message"  #: why the shared view could not be opened
SHARE_INFO = "share_info"  #: a one-time note (the view was loaded)
SHARE_LINK = "share_link"  #: the id of the view this session last saved
SHARE_SAVED = "share_saved"  #: what that view holds (lens digest, settings), to reuse its id for the same view

#: Keys whose values live in the session's store (:func:`_held`), freed when the browser has been gone a while.
HELD = frozenset({DATA, DEMO, SOURCES, MEMO, DATA_B, SOURCES_B, SHARE_PENDING})
#: How long a session's held values may live at most (a day: longer than any visit).
HELD_TTL_SECONDS = 24 * 3600

#: Defaults of the widgets whose value other code reads before (or without) drawing them.
DEFAULTS: dict[str, Any] = {
    FAMILY: "target",
    KIND: "auto",
    META_COLUMNS: "",
    EPSILON: 0.1,
    BETA: 5.0,
    ALPHA: 0.5,
    CONFUSION_KIND: "soft",
    LAB_PROBLEM: "blobs",
    LAB_BLOBS: 4,
    LAB_SEPARATION: 0.6,
    LAB_EPOCHS: 30,
    LAB_LR: 0.01,
    LAB_HIDDEN: 64,
    LAB_SEED: 0,
    LAB_EPSILON: 0.1,
    UPLOAD_VERSION: 0,
    LENS_VERSION: 0,
    BETA_MODE: "mass",
    HIERARCHY_LEVEL: 1,
}


class LabResult(TypedDict):
    """What the training lab keeps after training: both runs and what they were trained on."""

    runs: dict[str, Run]
    problem: Problem
    lens: Lens
    config: TrainConfig


#: The key under which a store keeps its own token (to be parked under it when its connection drops).
_OWNER = "__owner__"
#: Stores of disconnected sessions, by token, each with the timer that frees it (tokens are random and known only to
#: their own session's state, so a store can only be claimed back by the session that made it).
_parked: dict[str, tuple[dict[str, Any], threading.Timer]] = {}
_parked_lock = threading.Lock()


def _park_seconds() -> float:
    """How long a disconnected session's store waits for its tab to reconnect: as long as Streamlit keeps the
    session's own state (``server.disconnectedSessionTTL``), so the two come back, or go, together."""
    return float(st.get_option("server.disconnectedSessionTTL") or 0)


def _trim_heap() -> None:
    """Hand glibc's freed blocks back to the system (its arenas keep them otherwise, so RSS would not go down)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def release_freed_memory() -> None:
    """After a read, in the script's thread: hand back what the reader freed, in arrow's pool (the CSV reader parses
    into it, and it keeps freed blocks for reuse) and in glibc's heap. No garbage collection: the reader's buffers
    are freed as their last reference goes, and a full collection would cost a fifth of a second on a large page."""
    pa.default_memory_pool().release_unused()
    _trim_heap()


def _free(store: dict[str, Any]) -> None:
    """Free a store's values now (collecting cycles that hold them), and hand the freed memory back to the system."""
    store.clear()
    gc.collect()
    _trim_heap()


def _reap(token: str) -> None:
    with _parked_lock:
        parked = _parked.pop(token, None)
    if parked is not None:
        _free(parked[0])


def _park(store: dict[str, Any]) -> None:
    """When Streamlit drops a session's store (its connection closed): keep it :func:`_park_seconds`, then free it."""
    token = store.get(_OWNER)
    seconds = _park_seconds()
    if token is None or seconds <= 0:
        _free(store)
        return
    timer = threading.Timer(seconds, _reap, args=(token,))
    timer.daemon = True
    with _parked_lock:
        previous = _parked.pop(token, None)
        _parked[token] = (store, timer)
    if previous is not None:
        previous[1].cancel()
        if previous[0] is not store:
            _free(previous[0])
    timer.start()


def _claim(token: str) -> dict[str, Any]:
    """The store of the session holding ``token``: its parked store if its connection dropped a moment ago, else new."""
    with _parked_lock:
        parked = _parked.pop(token, None)
    if parked is None:
        return {_OWNER: token}
    parked[1].cancel()
    return parked[0]


@st.cache_resource(scope="session", max_entries=4, ttl=HELD_TTL_SECONDS, show_spinner=False, on_release=_park)
def _store(token: str) -> dict[str, Any]:
    """A store of large values for the session holding ``token`` (Streamlit drops it when the session disconnects)."""
    return _claim(token)


def _held() -> dict[str, Any]:
    """This session's store. Keyed by a random token kept in the session's state as well as by Streamlit's session
    scope, so that a store can only ever serve the session that made it (also where sessions share an id, as in
    Streamlit's AppTest)."""
    token = st.session_state.get(SESSION_TOKEN)
    if token is None:
        token = st.session_state[SESSION_TOKEN] = secrets.token_hex(16)
    return _store(token)


def _home(key: str) -> MutableMapping[str, Any]:
    return _held() if key in HELD else cast(MutableMapping[str, Any], st.session_state)


def get(key: str) -> Any:
    """The value under ``key``, or its default (None when it has none)."""
    return _home(key).get(key, DEFAULTS.get(key))


def put(key: str, value: Any) -> None:
    _home(key)[key] = value


def setdefault(key: str, value: Any) -> Any:
    return _home(key).setdefault(key, value)


def drop(*keys: str) -> None:
    for key in keys:
        _home(key).pop(key, None)


def has(key: str) -> bool:
    return key in _home(key)


def init_widgets(*keys: str) -> None:
    """Give widgets their default from :data:`DEFAULTS` (so no widget passes its own default too)."""
    for key in keys:
        st.session_state.setdefault(key, DEFAULTS[key])


def bump(key: str) -> int:
    """Add one to a counter (a version in a widget key) and return it."""
    value = int(get(key)) + 1
    st.session_state[key] = value
    return value


def versioned(key: str, version_key: str) -> str:
    """A widget key that changes with ``version_key``: a new version starts the widget empty."""
    return f"{key}_{get(version_key)}"


def lab_groups_key(problem: str) -> str:
    """The lab's group text has one widget per problem, so switching problems keeps each one's groups."""
    return f"lab_groups_{problem}"


def data_lost() -> list[str]:
    """Which of the session's uploads its state says were read but its store no longer holds: ``"predictions"``,
    ``"model B"``, or none. Each is said once: the record of the read is dropped with it.

    The store outlives every dropped connection up to ``server.disconnectedSessionTTL`` (:func:`_park`); past that a
    session's state can come back without its data (Streamlit keeps both for that time, so this is rare). The page
    must then say the upload is gone rather than quietly show the demo data in its place; the server's log says it
    too, as it would mean a store was released too early.
    """
    lost = []
    for what, read_key, data_key in (("predictions", SOURCE_KEY, DATA), ("model B", SOURCE_KEY_B, DATA_B)):
        if get(read_key) is not None and not has(data_key):
            log.warning("a session's %s were read, but its store no longer holds them", what)
            drop(read_key)
            lost.append(what)
    return lost


# ---- typed accessors


def dataset() -> Dataset | None:
    return get(DATA)


def lens_current() -> np.ndarray | None:
    return st.session_state.get(LENS_CURRENT)


def lab_result() -> LabResult | None:
    return st.session_state.get(LAB)


def hierarchy() -> tuple[Hierarchy, str, str] | None:
    """The uploaded hierarchy, its content digest and file name (small: kept in the session's own state)."""
    return st.session_state.get(HIERARCHY)
