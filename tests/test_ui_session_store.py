"""The session store survives a dropped connection for ``disconnectedSessionTTL`` and is freed after it.

Streamlit drops a session-scoped cache on every disconnect; a tab that reconnects (a network blip, a server too busy
to answer a ping) used to find the demo data instead of its upload. The store is now parked under its session's
random token and claimed back on reconnect, or freed when the time is up.
"""

from __future__ import annotations

import threading

import pytest

from lensdash.ui import state


@pytest.fixture
def park_seconds(monkeypatch):
    seconds = {"value": 30.0}
    monkeypatch.setattr(state, "_park_seconds", lambda: seconds["value"])
    yield seconds
    for token in list(state._parked):
        state._reap(token)


def test_a_reconnecting_session_claims_its_store_back(park_seconds):
    store = state._claim("token-a")
    store[state.DATA] = "the upload"
    state._park(store)  # the connection dropped
    assert "token-a" in state._parked
    timer = state._parked["token-a"][1]
    again = state._claim("token-a")  # the tab reconnected: the same store, with its data
    assert again is store and again[state.DATA] == "the upload"
    assert "token-a" not in state._parked
    assert timer.finished.is_set()  # cancelled (its 30 s are not up): it will not free the reclaimed store
    assert again[state.DATA] == "the upload"


def test_another_token_never_gets_a_parked_store(park_seconds):
    store = state._claim("token-a")
    store[state.DATA] = "a's upload"
    state._park(store)
    other = state._claim("token-b")
    assert other is not store and state.DATA not in other
    assert state._parked["token-a"][0] is store


def test_a_parked_store_is_freed_when_its_time_is_up(park_seconds):
    park_seconds["value"] = 0.05
    store = state._claim("token-a")
    store[state.DATA] = "the upload"
    freed = threading.Event()
    original = state._free

    def spy(s):
        original(s)
        freed.set()

    state._free = spy
    try:
        state._park(store)
        assert freed.wait(5)
    finally:
        state._free = original
    assert store == {} and "token-a" not in state._parked
    assert state.DATA not in state._claim("token-a")  # a late reconnect starts over


def test_without_a_reconnect_window_a_store_is_freed_at_once(park_seconds):
    park_seconds["value"] = 0
    store = state._claim("token-a")
    store[state.DATA] = "the upload"
    state._park(store)
    assert store == {} and "token-a" not in state._parked


def test_a_store_parked_twice_keeps_one_timer(park_seconds):
    store = state._claim("token-a")
    state._park(store)
    first = state._parked["token-a"][1]
    state._park(store)  # released again (e.g. the cache's own TTL) while parked
    assert state._parked["token-a"][0] is store and state._parked["token-a"][1] is not first
    assert first.finished.is_set()  # cancelled (its 30 s are not up), so it cannot free the store early


def test_a_session_whose_store_is_gone_says_so_instead_of_showing_the_demo_as_its_data(park_seconds):
    """Past the reconnect window the session's state can outlive its store: the page says the upload is gone."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from lensdash.examples import example_bytes

    at = AppTest.from_file("../app.py", default_timeout=90)
    at.run()
    at.file_uploader(key=f"upload_predictions_{at.session_state['upload_version']}").set_value(
        ("seed_4class.csv", example_bytes("seed_4class.csv"), "text/csv")
    )
    at.run()
    assert next(m.value for m in at.metric if m.label == "Samples × classes") == "5 × 4"
    assert not at.warning
    st.cache_resource.clear()  # as a disconnect does: the store is parked...
    state._reap(at.session_state[state.SESSION_TOKEN])  # ...and its time ran out before the session came back
    at.run()
    assert not at.exception
    assert any("no longer held" in w.value and "Upload it again" in w.value for w in at.warning)
    assert next(m.value for m in at.metric if m.label == "Samples × classes") == "2,000 × 10"
    at.run()  # said once: the next run is the plain demo page
    assert not any("no longer held" in w.value for w in at.warning)
