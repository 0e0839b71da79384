"""The app's limits, in one place.

The upload size limit is Streamlit's own ``server.maxUploadSize`` (set in ``.streamlit/config.toml``); the decoded-size
budget is set here. Together they say what one user can make the server hold: the uploaded file (at most the upload
limit) plus its decoded float32 logits (at most ``4 · APP_MAX_CELLS`` bytes) and the per-sample results.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypedDict, cast

import streamlit as st

#: Most numbers (rows × classes) an upload may decode to: 50,000 × 1,000 fits with room to spare (240 MB of float32).
APP_MAX_CELLS = 60_000_000
#: Most classes an upload or an imported lens may have.
APP_MAX_CLASSES = 2_000
#: How long and how many entries the app's shared caches keep (they hold no user data; see lensdash.ui.cache).
CACHE_TTL_SECONDS = 600
CACHE_MAX_ENTRIES = 4


def max_upload_bytes() -> int:
    """Streamlit's upload limit (``server.maxUploadSize``, in MB) in bytes: the one source of the app's size limit."""
    return int(st.get_option("server.maxUploadSize")) * 1_000_000


class ReaderLimits(TypedDict, total=False):
    """The budget keywords a reader takes; a reader that lacks one is not given it."""

    max_cells: int
    max_classes: int


def reader_limits(reader: Callable[..., Any]) -> ReaderLimits:
    """The app's decoded-size budget as the keyword arguments ``reader`` accepts (``max_cells``, ``max_classes``).

    Readers that do not take a budget yet get none, so the app keeps working while the library gains them.
    """
    accepted = inspect.signature(reader).parameters
    budget = {"max_cells": APP_MAX_CELLS, "max_classes": APP_MAX_CLASSES}
    return cast(ReaderLimits, {name: value for name, value in budget.items() if name in accepted})
