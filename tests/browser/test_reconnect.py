"""A tab whose connection drops for a moment keeps its upload (issue 12: no user loses their data to a blip).

Streamlit drops session-scoped caches on every disconnect; the session's store is parked and claimed back when the
same tab reconnects (lensdash.ui.state).
"""

import contextlib

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from benchmarks.load_test import TRACK_SOCKETS
from lensdash.examples import example_bytes

from .test_browser import metric, no_exception, shot, wait_idle

pytestmark = pytest.mark.browser


def test_a_dropped_connection_keeps_the_upload_and_the_lens(browser, app_url, tmp_path):
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    context.add_init_script(TRACK_SOCKETS)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(app_url)
        wait_idle(page)
        path = tmp_path / "seed_4class.csv"
        path.write_bytes(example_bytes("seed_4class.csv"))
        page.locator('[data-testid="stSidebar"] input[type="file"]').first.set_input_files(str(path))
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=stMetricValue]')]"
            ".some(e => e.innerText.includes('5 × 4'))"
        )
        wait_idle(page)
        page.get_by_role("combobox", name="Preset").click()
        page.get_by_role("option", name="label smoothing", exact=True).click()
        wait_idle(page)
        before = {m: metric(page, m) for m in ("Unlensed loss", "Lensed loss", "Prediction-side")}
        assert before["Lensed loss"] != before["Unlensed loss"]
        opened = page.evaluate("window.__sockets.length")
        page.evaluate("window.__sockets.forEach(s => s.close())")  # the blip: the server sees a disconnect
        page.wait_for_function(f"() => window.__sockets.length > {opened} && window.__sockets.at(-1).readyState === 1")
        wait_idle(page)
        page.locator("body").press("r")  # Streamlit's rerun key: the page is computed again from the session
        with contextlib.suppress(PlaywrightTimeout):  # a quick run may be over before it is seen running
            page.wait_for_selector('[data-testid="stApp"][data-test-script-state="running"]', timeout=5_000)
        wait_idle(page)
        no_exception(page)
        assert metric(page, "Samples × classes") == "5 × 4"  # still the upload, not the demo
        after = {m: metric(page, m) for m in before}
        assert after == before
        shot(page, "reconnect")
    finally:
        context.close()
