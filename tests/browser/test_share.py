"""A shared view opened in a second browser context (another user, no shared cookies or state) shows the same lens."""

import re

import pytest

from .test_browser import metric, no_exception, shot, wait_idle

pytestmark = pytest.mark.browser


def test_a_shared_link_opens_the_same_lens_in_another_browser(browser, page, app_url):
    wait_idle(page)
    page.get_by_role("combobox", name="Preset").click()
    page.get_by_role("option", name="label smoothing", exact=True).click()
    wait_idle(page)
    page.get_by_role("radio", name=re.compile("^prediction-side")).check(force=True)
    wait_idle(page)
    lensed = metric(page, "Lensed loss")
    page.get_by_role("button", name="Share this view").click()
    wait_idle(page)
    no_exception(page)
    link = page.locator('[data-testid="stSidebar"] [data-testid="stCode"]').inner_text().strip()
    assert re.fullmatch(re.escape(app_url) + r"/?\?view=[A-Za-z0-9_-]{22}", link), link
    assert "view=" in page.url  # the address bar holds the link too
    shot(page, "share-1-saved")

    other = browser.new_context(viewport={"width": 1500, "height": 1000})
    try:
        second = other.new_page()
        second.set_default_timeout(60_000)
        second.goto(link)
        wait_idle(second)
        no_exception(second)
        second.get_by_text("Opened the shared view").wait_for()
        assert metric(second, "Lensed loss") == lensed
        assert second.get_by_role("combobox", name="Preset").input_value() == "label smoothing"
        assert second.get_by_role("radio", name=re.compile("^prediction-side")).is_checked()
        shot(second, "share-2-opened")
    finally:
        other.close()
