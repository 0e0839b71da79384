"""End-to-end: the page in a real browser, as a new user meets it."""

import re
from pathlib import Path

import pytest
import torch

import lensdash as ld
from lensdash.examples import example_bytes

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.browser


def wait_idle(page, settle: float = 0.6):
    """Wait until the script has finished running (and stays finished for a moment)."""
    app = page.locator('[data-testid="stApp"]')
    app.wait_for()
    for _ in range(3):
        page.wait_for_timeout(settle * 1000)
        page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')


def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=re.compile("^" + re.escape(label) + "$"))
    )
    return box.first.locator('[data-testid="stMetricValue"]').inner_text().strip()


def shot(page, name: str):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def no_exception(page):
    assert page.locator('[data-testid="stException"]').count() == 0


def test_loads_on_demo_data(page):
    wait_idle(page)
    no_exception(page)
    assert float(metric(page, "Unlensed loss")) > 0
    assert float(metric(page, "Lensed loss")) > 0
    assert metric(page, "Samples × classes") == "2,000 × 10"
    shot(page, "1-demo")


def test_upload_changes_metrics_to_core_values(page, tmp_path):
    wait_idle(page)
    path = tmp_path / "seed_4class.csv"
    path.write_bytes(example_bytes("seed_4class.csv"))
    page.locator('[data-testid="stSidebar"] input[type="file"]').first.set_input_files(str(path))
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stMetricValue]')].some(e => e.innerText.includes('5 × 4'))"
    )
    wait_idle(page)
    no_exception(page)
    preds = ld.read_predictions(example_bytes("seed_4class.csv"))
    expected = float(ld.lensed_cross_entropy(preds.logits, preds.labels, torch.eye(4)))
    assert float(metric(page, "Unlensed loss")) == pytest.approx(expected, abs=1e-4)
    shot(page, "2-upload")


def _select_preset(page, name: str):
    page.get_by_role("combobox", name="Preset").click()
    page.get_by_role("option", name=name, exact=True).click()
    wait_idle(page)


def test_cell_edit_changes_lensed_and_identity_restores(page):
    wait_idle(page)
    _select_preset(page, "merge groups")  # the page opens with the identity; start from another lens
    before = metric(page, "Lensed loss")
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    # The grid is a canvas, so cells are found by position: at this viewport the pinned
    # "true label" column is ~100 px wide, "airplane" ~95 px, and "automobile" follows.
    # Row 1 (airplane) sits under the 35 px header. Type 1 into (airplane, automobile).
    error = page.locator('[data-testid="stAlertContentError"]')
    for _ in range(3):  # a click that lands while the canvas grid is still settling is lost; try again
        page.mouse.click(box["x"] + 250, box["y"] + 35 + 17)
        page.wait_for_timeout(300)
        page.mouse.dblclick(box["x"] + 250, box["y"] + 35 + 17)
        page.wait_for_timeout(500)
        for _ in range(8):
            page.keyboard.press("Backspace")
        page.keyboard.type("1", delay=50)
        page.wait_for_timeout(300)
        page.keyboard.press("Enter")
        wait_idle(page)
        if error.count():
            break
        page.keyboard.press("Escape")
    shot(page, "3a-cell-edit-row-sum")
    assert "lens row 1" in error.first.inner_text()
    page.get_by_role("button", name="Normalise rows").click()
    wait_idle(page)
    shot(page, "3-cell-edit")
    assert metric(page, "Lensed loss") != before
    _select_preset(page, "identity")
    assert metric(page, "Lensed loss") == metric(page, "Unlensed loss")
    no_exception(page)


def test_bad_csv_shows_error_then_page_still_works(page, tmp_path):
    wait_idle(page)
    bad = tmp_path / "broken.csv"
    bad.write_bytes(b"a,b,label\n0.5,oops,0\n")
    page.locator('[data-testid="stSidebar"] input[type="file"]').first.set_input_files(str(bad))
    page.wait_for_selector('[data-testid="stAlertContentError"]')
    wait_idle(page)
    main = page.locator('[data-testid="stMain"] [data-testid="stAlertContentError"]').first.inner_text()
    assert "broken.csv, row 2, column 2" in main and "oops" in main
    side = page.locator('[data-testid="stSidebar"] [data-testid="stAlertContentError"]').first.inner_text()
    assert "broken.csv was not read" in side
    no_exception(page)
    shot(page, "4-bad-csv")
    _select_preset(page, "label smoothing")
    no_exception(page)
    assert float(metric(page, "Lensed loss")) > 0


def test_heatmap_renders_with_axis_labels(page):
    wait_idle(page)
    page.get_by_role("tab", name="Gradients").click()
    wait_idle(page)
    page.wait_for_selector(".js-plotly-plot .heatmaplayer image", state="attached")
    page.get_by_text("Samples the lens changes most").scroll_into_view_if_needed()
    xtitles = page.locator(".js-plotly-plot .xtitle").all_text_contents()
    ytitles = page.locator(".js-plotly-plot .ytitle").all_text_contents()
    assert "gradient w.r.t. logit of class" in xtitles and "true class" in ytitles
    ticks = page.locator(".js-plotly-plot .xtick text").all_text_contents()
    assert "cat" in ticks and "dog" in ticks
    shot(page, "5-heatmap")


def test_training_lab_trains_both_models_and_draws_them(page):
    wait_idle(page)
    page.get_by_role("tab", name="Training lab").click()
    wait_idle(page)
    page.get_by_role("button", name="Train both models").click()
    page.get_by_text("Decision regions and predicted probabilities").wait_for(timeout=60_000)
    wait_idle(page)
    no_exception(page)
    assert metric(page, "Test accuracy").endswith("%")
    page.get_by_text("Decision regions and predicted probabilities").scroll_into_view_if_needed()
    assert page.locator(".js-plotly-plot").count() >= 7  # curves, regions, confusions
    shot(page, "6-training-lab")
