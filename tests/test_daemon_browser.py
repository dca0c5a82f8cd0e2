"""Headless Chromium (Debian's, driven by Playwright) on the live page of a running daemon.

Issue 13.12: the page a person keeps open: the frame scaled to fit, top-k with scores,
fps and per-stage latency, source and model state with the last reload, a short history
of the top class, health warnings; no request leaves the daemon (no CDN). Issue 12.8:
after the first load the page uses its session cookie, never `?token=`. Screenshots at
1280x800 and 390x844 land in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from daemon_fixtures import REPO, Served, daemon_build, daemon_video, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "browser-token"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-extensions", "--no-first-run"]  # fmt: skip


@pytest.fixture(scope="module")
def build_and_video(tmp_path_factory):
    return daemon_build(tmp_path_factory), daemon_video(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def open_page(browser, served: Served, width: int, height: int):
    """The live page as a person opens it (the token once, in the address)."""
    ctx = browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()
    seen: dict[str, list[str]] = {"requests": [], "errors": []}
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.goto(served.url(f"/?token={TOKEN}"), wait_until="domcontentloaded")
    page.wait_for_function(
        "() => { const v = document.getElementById('video'); return v.complete && v.naturalWidth > 0; }",
        timeout=15000,
    )
    page.wait_for_function(
        "() => document.querySelectorAll('#bars .row').length === 5"
        " && document.querySelectorAll('#strip span').length >= 3"
        " && document.getElementById('stages').textContent.includes('ms')",
        timeout=20000,
    )
    return ctx, page, seen


def box(page, selector: str) -> dict:
    return page.eval_on_selector(
        selector,
        "e => { const r = e.getBoundingClientRect();"
        " return {x: r.x, y: r.y, w: r.width, h: r.height, right: r.right, bottom: r.bottom}; }",
    )


def test_live_page_desktop_and_phone(browser, build_and_video, artifacts_dir):
    build, video = build_and_video
    with Served("--model", str(build), "--source", str(video), "--loop", "--token", TOKEN) as s:
        for width, height in ((1280, 800), (390, 844)):
            ctx, page, seen = open_page(browser, s, width, height)
            try:
                assert page.text_content("#model") == "cnn_small"
                assert page.text_content("#version") not in ("", "?")
                top = page.text_content("#top")
                labels = page.eval_on_selector_all(
                    "#bars .lab", "els => els.map(e => e.textContent)"
                )
                assert top in [str(i) for i in range(10)] and top == labels[0], (top, labels)
                scores = page.eval_on_selector_all(
                    "#bars .num", "els => els.map(e => parseFloat(e.textContent))"
                )
                assert len(set(labels)) == 5 and scores == sorted(scores, reverse=True)
                stages = page.text_content("#stages")
                for name in ("preprocess", "inference", "capture to result", "fps"):
                    assert name in stages, stages
                assert page.text_content("#source").startswith("file:")
                assert page.text_content("#sourcestate").startswith("streaming")
                assert page.text_content("#artifact") == "model_int8.tflite"
                assert page.text_content("#state") == "ok"
                assert not page.is_visible("#warnings")
                # The frame is scaled to fit: big on a desktop, the phone's width on a phone,
                # and nothing runs off the side.
                v = box(page, "#video")
                if width == 1280:
                    assert v["w"] >= 0.5 * width and v["bottom"] <= height, v
                    assert box(page, "aside")["x"] >= v["right"] - 1
                else:
                    assert 0.85 * width <= v["w"] <= width and v["h"] >= 250, v
                scroll_w = page.evaluate("document.documentElement.scrollWidth")
                assert scroll_w <= width, scroll_w
                page.screenshot(path=str(artifacts_dir / f"daemon_live_{width}x{height}.png"))
                # The token was used once; the address no longer shows it, no request
                # after the first carries it, and nothing is fetched from elsewhere.
                assert "token" not in page.url
                assert all(TOKEN not in u for u in seen["requests"][1:]), seen["requests"]
                assert all(u.startswith(s.base) for u in seen["requests"]), seen["requests"]
                assert not seen["errors"], seen["errors"]
            finally:
                ctx.close()
        # A browser without the session cookie is refused.
        ctx = browser.new_context()
        try:
            page = ctx.new_page()
            page.goto(s.url("/api/predictions"))
            assert "token required" in page.content()
        finally:
            ctx.close()
    assert TOKEN not in s.output()


def test_live_page_shows_health_warnings(browser, build_and_video, artifacts_dir):
    """A broker that is not there: the page says degraded and names the problem."""
    build, video = build_and_video
    with Served("--model", str(build), "--source", str(video), "--loop", "--token", TOKEN,
                "--mqtt-host", "127.0.0.1", "--mqtt-port", str(free_port())) as s:  # fmt: skip
        ctx, page, _ = open_page(browser, s, 1280, 800)
        try:
            page.wait_for_selector("#warnings.show", timeout=15000)
            assert "MQTT broker 127.0.0.1" in page.text_content("#warnlist")
            assert page.text_content("#state") == "degraded"
            page.screenshot(path=str(artifacts_dir / "daemon_live_degraded_1280x800.png"))
        finally:
            ctx.close()


def test_screenshots_exist():
    """Run after the two above (file order): the PNGs a person checks the layout on."""
    out = REPO / "test-artifacts"
    for name in ("daemon_live_1280x800.png", "daemon_live_390x844.png"):
        assert (out / name).stat().st_size > 5000, name
