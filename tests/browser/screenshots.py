"""Screenshots of every tab at K = 100 (CIFAR-100 names and hierarchy) and K = 1,000 (an ImageNet-shaped set).

Not a test: it starts the app with ``streamlit run`` on a free port, uploads the files in headless Chromium
(Playwright), opens every tab and saves full-page PNGs under ``test-artifacts/screenshots/``, for a person to look at.

Run: ``python -m tests.browser.screenshots`` (about two minutes).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

import lensdash as ld
from lensdash.examples import example_bytes
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, ROOT, _free_port

OUT = ROOT / "test-artifacts" / "screenshots"
TABS = ("Results", "Evaluation", "Compare", "Slices", "Gradients", "Sanity checks", "Playground", "Training lab")


def predictions_npz(names: list[str], groups: list[str], n: int, seed: int = 0) -> bytes:
    """Logits of a classifier that is right most of the time and, when wrong, mostly within the true group."""
    rng = np.random.default_rng(seed)
    k = len(names)
    labels = rng.integers(0, k, n)
    logits = rng.normal(0.0, 1.0, (n, k)).astype(np.float32)
    logits[np.arange(n), labels] += 3.0
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    for row in range(0, n, 3):
        mates = members[groups[labels[row]]]
        logits[row, mates[rng.integers(len(mates))]] += 3.5
    out = io.BytesIO()
    np.savez(out, logits=logits, labels=labels, class_names=np.array(names))
    return out.getvalue()


def three_level_tree(k: int) -> tuple[list[str], bytes]:
    """A generated 3-level tree over k classes (10 top groups of 10 middle groups), written as ancestor rows."""
    names = [f"n{i:08d}" for i in range(k)]
    lines = ["top,middle,class"] + [f"top{i * 10 // k},mid{i * 100 // k},{n}" for i, n in enumerate(names)]
    return names, ("\n".join(lines) + "\n").encode()


def wait_idle(page, settle: float = 1.0) -> None:
    page.locator('[data-testid="stApp"]').wait_for()
    for _ in range(3):
        page.wait_for_timeout(settle * 1000)
        page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=300_000)


def upload(page, label: str, path: Path) -> None:
    box = page.locator('[data-testid="stFileUploader"]').filter(has_text=label).first
    box.locator('input[type="file"]').set_input_files(str(path))
    wait_idle(page)


def choose(page, label: str, option: str) -> None:
    page.get_by_role("combobox", name=label).first.click()
    page.get_by_role("option", name=option, exact=True).first.click()
    wait_idle(page)


def shoot(page, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
    print("saved", OUT / f"{name}.png")


def detail(page, tab: str, name: str) -> None:
    """The K×K view itself: the confusion matrix's expander, or the first gradient panel."""
    if tab == "Results":
        summary = page.locator("summary", has_text="Confusion matrix")
        element = page.locator('[data-testid="stExpander"]').filter(has=summary).last
    else:
        element = page.locator('[data-testid="stPlotlyChart"]').first
    element.scroll_into_view_if_needed()
    element.screenshot(path=str(OUT / f"{name}.png"))
    print("saved", OUT / f"{name}.png")


def run_case(page, url: str, tag: str, data: bytes, tree: bytes, folder: Path) -> None:
    page.goto(url)
    wait_idle(page)
    (folder / f"{tag}.npz").write_bytes(data)
    (folder / f"{tag}_hierarchy.csv").write_bytes(tree)
    upload(page, "Predictions (CSV", folder / f"{tag}.npz")
    upload(page, "Hierarchy", folder / f"{tag}_hierarchy.csv")
    choose(page, "Preset", "hierarchy soft labels")
    shoot(page, f"{tag}-lens")
    for tab in TABS:
        page.get_by_role("tab", name=tab).click()
        wait_idle(page)
        if tab == "Results":
            page.locator('[data-testid="stExpander"] summary').filter(has_text="Confusion matrix").first.click()
            wait_idle(page)
        shoot(page, f"{tag}-{tab.lower().replace(' ', '-')}")
        if tab in ("Results", "Gradients"):
            detail(page, tab, f"{tag}-{tab.lower()}-detail")
            prefix = "Roll up to"
            choose(page, prefix, "hierarchy level 1")
            detail(page, tab, f"{tag}-{tab.lower()}-rollup")
            choose(page, prefix, "classes (no roll-up)")


def main() -> None:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    OUT.mkdir(parents=True, exist_ok=True)
    log = open(OUT / "streamlit.log", "w")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit("streamlit did not start; see test-artifacts/screenshots/streamlit.log") from None
                time.sleep(0.3)
        cifar = ld.read_hierarchy(example_bytes("cifar100_hierarchy.csv"))
        cifar_names = list(cifar.leaves)
        imagenet_names, imagenet_tree = three_level_tree(1000)
        imagenet = ld.read_hierarchy(imagenet_tree)
        cases = [
            (
                "cifar100",
                predictions_npz(cifar_names, list(cifar.ancestor_at(1, cifar_names)), 5000),
                example_bytes("cifar100_hierarchy.csv"),
            ),
            (
                "k1000",
                predictions_npz(imagenet_names, list(imagenet.ancestor_at(2, imagenet_names)), 10_000, seed=1),
                imagenet_tree,
            ),
        ]
        with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 2400})
            page.set_default_timeout(120_000)
            for tag, data, tree in cases:
                run_case(page, url, tag, data, tree, Path(tmp))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


if __name__ == "__main__":
    main()
