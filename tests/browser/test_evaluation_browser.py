"""The Evaluation tab in Chromium at 1440×900: headline labels whole, a click on a confusion cell lists its samples."""

import pytest

from tests.browser.test_browser import ARTIFACTS, no_exception, wait_idle

pytestmark = pytest.mark.browser

#: Where marker (row, col) of the clickable confusion matrix is on the page (plotly's own axis conversion).
CELL_JS = """([row, col]) => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')]
    .find(g => g.data && g.data.length === 2 && g.data[0].type === 'heatmap');
  const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
  return [box.left + gd._fullLayout.xaxis.d2p(col), box.top + gd._fullLayout.yaxis.d2p(row)];
}"""
#: Labels and values of the headline metrics that the browser had to cut (shown with an ellipsis).
CUT_JS = """() => [...document.querySelectorAll('[data-testid=stMetricLabel] p, [data-testid=stMetricValue] div')]
  .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)"""


@pytest.fixture
def wide(page):
    page.set_viewport_size({"width": 1440, "height": 900})
    wait_idle(page)
    return page


def test_headline_metric_labels_are_whole_at_1440px(wide):
    no_exception(wide)
    assert wide.evaluate(CUT_JS) == []
    wide.get_by_role("button", name="Merge the suggested groups").click()
    wait_idle(wide)
    assert wide.evaluate(CUT_JS) == []


def test_clicking_a_confusion_cell_lists_its_samples(wide):
    wide.get_by_role("tab", name="Evaluation").click()
    wait_idle(wide)
    no_exception(wide)
    heading = wide.get_by_role("heading", name="From a number to the samples")
    heading.evaluate("e => e.scrollIntoView({block: 'start'})")
    wait_idle(wide)
    x, y = wide.evaluate(CELL_JS, [3, 5])  # demo data: true cat, predicted dog
    wide.mouse.click(x, y)
    wait_idle(wide)
    # It opened on the most confused pair (truck → automobile); the click chose the cell and listed its samples.
    summary = wide.get_by_text("samples of cat predicted as dog")
    assert summary.count() == 1 and summary.inner_text().startswith("70 samples")
    heading.evaluate("e => e.scrollIntoView({block: 'start'})")
    ARTIFACTS.mkdir(exist_ok=True)
    wide.screenshot(path=str(ARTIFACTS / "evaluation-click.png"))
