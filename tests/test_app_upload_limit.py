"""The upload limit is said beside the uploader, with the command for larger files.

Streamlit's uploader refuses a file over ``server.maxUploadSize`` in the browser (a red icon; the app never receives
the file), so the page must say the limit and the way past it before the upload, not after.
"""

import streamlit as st
from streamlit.testing.v1 import AppTest

from lensdash.ui.config import max_upload_bytes
from lensdash.ui.data import CLI_HINT


def test_the_limit_and_the_command_line_are_shown_beside_the_uploader():
    st.cache_data.clear()
    at = AppTest.from_file("../app.py", default_timeout=90)
    at.run()
    assert not at.exception
    captions = [c.value for c in at.sidebar.caption]
    limit_mb = max_upload_bytes() // 1_000_000
    assert any(f"Up to {limit_mb} MB here" in c and CLI_HINT in c for c in captions), captions
