"""Headless Chromium (Debian's, driven by Playwright) loads the live page of a running daemon."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from daemon_fixtures import REPO, Served, daemon_build, daemon_video

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "browser-token"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    build = daemon_build(tmp_path_factory)
    video, _ = daemon_video(tmp_path_factory)
    with Served("--model", str(build), "--source", str(video), "--loop", "--token", TOKEN) as s:
        yield s


def test_live_page_renders_stream_and_predictions(served):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-extensions", "--no-first-run"],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 800, "height": 600})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(served.url(f"/?token={TOKEN}"), wait_until="domcontentloaded")
            # The MJPEG <img> has decoded at least one frame.
            page.wait_for_function(
                "() => { const v = document.getElementById('video'); return v.complete && v.naturalWidth > 0; }",
                timeout=15000,
            )
            width = page.evaluate("document.getElementById('video').naturalWidth")
            assert width >= 320
            # Predictions polled from the API are shown: model name, top label, k bars.
            page.wait_for_function(
                "() => document.querySelectorAll('#bars .row').length === 5", timeout=15000
            )
            assert page.text_content("#model") == "cnn_small"
            assert page.text_content("#version") not in ("", "?")
            top = page.text_content("#top")
            assert top in [str(i) for i in range(10)], top
            labels = page.eval_on_selector_all("#bars .lab", "els => els.map(e => e.textContent)")
            assert top == labels[0] and len(set(labels)) == 5
            page.screenshot(path=str(out / "daemon_live_page.png"))
            assert not errors, errors
            # Without the token the page's API calls are refused and the error is shown.
            page.goto(served.url("/api/predictions"))
            assert "token required" in page.content()
        finally:
            browser.close()
    assert (out / "daemon_live_page.png").stat().st_size > 1000
