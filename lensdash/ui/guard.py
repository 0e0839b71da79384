"""One section's failure stays in that section: a short message, no traceback, the last good state kept."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from lensdash.errors import LensdashError
from lensdash.sanitize import markdown_text

log = logging.getLogger("lensdash.ui")


@contextmanager
def guarded(section: str) -> Iterator[None]:
    """Run a section; an exception it raises becomes a short ``st.error`` in its place.

    Streamlit's own control flow (``st.rerun``, ``st.stop``) derives from ``BaseException`` and passes through.
    Nothing is written to the session when a section fails part-way (sections store their results only once they are
    complete), so the page keeps its last good data and lens; the message is drawn in this run only, so the next run
    that succeeds clears it.
    """
    try:
        yield
    except LensdashError as exc:
        st.error(markdown_text(str(exc)))
    except Exception as exc:
        log.exception("section %s failed", section)
        st.error(
            f"The {section} section could not be drawn ({type(exc).__name__}). The page keeps the last good data and "
            "lens: change a setting, upload another file or go back to the demo data to continue."
        )
