"""Share a view at any K: the lens and the view's settings saved in a SQL store, reopened by ``?view=ID``.

What is saved: the lens (class names and matrix) and the settings that draw it (family, preset and its parameters,
the open tab), never the predictions. Where: :class:`lensdash.share_store.ShareStore` on the engine of
``st.connection("lensdash_share", type="sql")``: the connection in ``.streamlit/secrets.toml`` under
``[connections.lensdash_share]`` when the host configured one (any SQLAlchemy URL, e.g. PostgreSQL), else SQLite in
a local file (:data:`DEFAULT_URL`, nothing to set up). Small lenses can still go into the link itself (the lens
editor's "Put this lens in the page link", K ≤ 12).

A link is opened once per session: a view whose classes are not the current data's waits (with a message) until
data of those classes is uploaded; an unknown or malformed id, or an unreachable store, is a message and the page
goes on with its defaults.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from lensdash.errors import LensdashError
from lensdash.lens import Lens
from lensdash.presets import PRESETS
from lensdash.sanitize import markdown_text
from lensdash.share_store import DEFAULT_URL as STORE_DEFAULT_URL
from lensdash.share_store import SharedView, ShareStore
from lensdash.ui import state
from lensdash.ui.cache import lens_digest
from lensdash.ui.data import Dataset
from lensdash.ui.lens_editor import _set_base
from lensdash.ui.results import FAMILY_LABELS

#: The connection's name: its section in ``.streamlit/secrets.toml`` is ``[connections.lensdash_share]``.
CONNECTION = "lensdash_share"
#: The store when no connection is configured: SQLite in a file in the app's working directory.
DEFAULT_URL = STORE_DEFAULT_URL
#: SQLite writers wait this long (seconds) for another writer's lock instead of failing at once.
SQLITE_TIMEOUT_S = 30
#: The link's query parameter.
QUERY = "view"
#: Longest groups text a view keeps (the lens itself is always saved; the text only refills the preset's box).
MAX_GROUPS_CHARS = 8_000


def _number(low: float, high: float) -> Callable[[object], float | None]:
    def check(value: object) -> float | None:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high
        return float(value) if ok else None  # type: ignore[arg-type]

    return check


#: Settings of the preset widgets: key → the value to use from a stored view, or None where it is not valid here.
PRESET_SETTINGS: dict[str, Callable[[object], object | None]] = {
    state.GROUPS: lambda v: v if isinstance(v, str) and len(v) <= MAX_GROUPS_CHARS else None,
    state.EPSILON: _number(0.0, 1.0),
    state.BETA: _number(0.0, 10.0),
    state.ALPHA: _number(0.0, 1.0),
    state.CONFUSION_KIND: lambda v: v if v in ("soft", "counts") else None,
}


def _configured() -> bool:
    """Whether ``.streamlit/secrets.toml`` has a ``[connections.lensdash_share]`` section."""
    if not st.secrets.load_if_toml_exists():
        return False
    return CONNECTION in st.secrets.get("connections", {})


def open_store() -> ShareStore:
    """The share store on ``st.connection``'s engine (Streamlit keeps one connection per configuration).

    Without a configured connection the URL is :data:`DEFAULT_URL` (SQLite); passed only then, since keyword
    arguments of ``st.connection`` take precedence over the secrets file.
    """
    if _configured():
        connection = st.connection(CONNECTION, type="sql")
    else:
        connection = st.connection(CONNECTION, type="sql", url=DEFAULT_URL, connect_args={"timeout": SQLITE_TIMEOUT_S})
    return ShareStore(connection.engine)


def view_settings(views: Sequence[str]) -> dict[str, Any]:
    """The settings a shared view reopens: family, preset and its parameters, the open tab."""
    settings: dict[str, Any] = {"family": state.get(state.FAMILY), "preset": state.get(state.PRESET)}
    view = state.get(state.VIEW)
    if view in views:
        settings["view"] = view
    for key, valid in PRESET_SETTINGS.items():
        value = state.get(key)
        if value is not None and valid(value) is not None:  # a groups text too long for a link is left out
            settings[key] = value
    return settings


def _apply(view: SharedView, dataset: Dataset, views: Sequence[str]) -> None:
    """Make ``view`` the page's lens and settings (only those that are valid here; the rest keep their value)."""
    settings = view.settings
    state.put(state.LENS_CLASSES, dataset.predictions.class_names)  # the lens editor then keeps this base
    if settings.get("family") in FAMILY_LABELS:
        st.session_state[state.FAMILY] = settings["family"]
    state.put(state.PRESET, settings["preset"] if settings.get("preset") in PRESETS else "merge groups")
    for key, valid in PRESET_SETTINGS.items():
        value = valid(settings.get(key))
        if value is not None:
            st.session_state[key] = value
    state.init_widgets(state.EPSILON, state.BETA, state.ALPHA, state.CONFUSION_KIND)
    if settings.get("view") in views:
        st.session_state[state.VIEW] = settings["view"]
    _set_base(view.lens.matrix.double().numpy())
    state.drop(state.LENS_ERROR)
    state.put(
        state.SHARE_INFO,
        f"Opened the shared view: the {view.lens.num_classes}×{view.lens.num_classes} lens and its settings "
        f"({state.get(state.FAMILY)}-side, preset '{state.get(state.PRESET)}').",
    )


def _describe(classes: Sequence[str]) -> str:
    shown = ", ".join(markdown_text(c) for c in list(classes)[:5])
    return f"{len(classes)} classes ({shown}{', …' if len(classes) > 5 else ''})"


def shared_view_section(dataset: Dataset, views: Sequence[str]) -> None:
    """Open the view named in the link (``?view=ID``), once per session; call it before the widgets it sets.

    Draws a message where the view cannot be used (unknown or malformed id, classes of other data, store down); the
    rest of the page is unaffected.
    """
    share_id = st.query_params.get(QUERY)
    if share_id and share_id != state.get(state.SHARE_OPENED):
        state.put(state.SHARE_OPENED, share_id)
        state.drop(state.SHARE_PENDING, state.SHARE_MESSAGE)
        try:
            state.put(state.SHARE_PENDING, open_store().load(share_id))
        except LensdashError as exc:
            state.put(state.SHARE_MESSAGE, f"The shared view could not be opened: {exc}")
            del st.query_params[QUERY]  # so that the link in the address bar no longer names it
    pending: SharedView | None = state.get(state.SHARE_PENDING)
    if pending is not None:
        names = dataset.predictions.class_names
        if pending.lens.classes == names:
            state.drop(state.SHARE_PENDING)
            _apply(pending, dataset, views)
        else:
            st.warning(
                f"The shared view is a lens for {_describe(pending.lens.classes)}; the data shown has "
                f"{_describe(names)}. Upload the predictions it was made for and the view opens."
            )
    if state.get(state.SHARE_MESSAGE):  # said once: the page goes on with its defaults
        st.error(markdown_text(state.get(state.SHARE_MESSAGE)))
        state.drop(state.SHARE_MESSAGE)
    if state.get(state.SHARE_INFO):
        st.info(markdown_text(state.get(state.SHARE_INFO)))
        state.drop(state.SHARE_INFO)


def share_section(lens: Lens, views: Sequence[str]) -> None:
    """Sidebar: "Share this view" saves the lens and settings and puts the view's id into the page link."""
    st.sidebar.header("3 · Share")
    if st.sidebar.button(
        "Share this view",
        key="share_view",
        help="Saves this lens and the page's settings (never your predictions) under a random id; the link opens "
        "them for anyone who has it, at any number of classes.",
    ):
        settings = view_settings(views)
        saved = (lens_digest(lens), json.dumps(settings, sort_keys=True, default=str))
        try:
            # the same view again keeps its id: repeated clicks do not use up the store's daily limit
            share_id = state.get(state.SHARE_LINK) if state.get(state.SHARE_SAVED) == saved else None
            share_id = share_id or open_store().save(lens, settings)
        except LensdashError as exc:
            st.sidebar.error(markdown_text(str(exc)))
        else:
            state.put(state.SHARE_LINK, share_id)
            state.put(state.SHARE_SAVED, saved)
            state.put(state.SHARE_OPENED, share_id)  # this session has it already
            for name in ("lens", "preset"):  # a lens in the link would disagree with the view once edited
                st.query_params.pop(name, None)
            st.query_params[QUERY] = share_id
    share_id = state.get(state.SHARE_LINK)
    if share_id:
        base = st.context.url or ""
        st.sidebar.code(f"{base}?{QUERY}={share_id}", language=None)
        st.sidebar.caption(
            "The link opens this lens and these settings (as they were when shared) with the data of the same "
            "classes; the predictions stay with you. Share again after changes."
        )
