"""`serve --capture-dir`: which frames are saved, what a capture holds, the rate and disk limits,
a full disk (a real 256 KB tmpfs) that never stops classification, and what the daemon reports.

The daemon serves the digits video (real scikit-learn test images, 3 frames each); its
--log-file says what it answered for every frame, so each capture can be checked against it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from daemon_fixtures import Served, daemon_build, daemon_video, decoded_frames, get_json, http
from loop_fixtures import sidecars
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return daemon_build(tmp_path_factory)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return daemon_video(tmp_path_factory)[0]


def predictions(log: Path) -> dict[int, dict]:
    return {r["pos"]: r for r in map(json.loads, log.read_text().splitlines()) if "event" not in r}


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.M)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


@pytest.fixture
def tmpfs(tmp_path):
    """A real, tiny filesystem (root only): mounted for the test, unmounted after it."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_captures_follow_the_rules_and_are_reported(build, video, tmp_path):
    caps, log = tmp_path / "caps", tmp_path / "pred.jsonl"
    stale = "20200101T000000000-000001"
    caps.mkdir()
    (caps / f"{stale}.jpg").write_bytes(b"half a capture")  # the writer died before its sidecar
    (caps / f".{stale}.json.tmp").write_bytes(b"{")
    with Served("--model", str(build), "--source", str(video), "--sync", "--no-pace",
                "--log-file", str(log), "--top-k", "3", "--capture-dir", str(caps),
                "--capture-below", "0.7", "--capture-margin", "0.3", "--capture-every", "50",
                "--capture-rate", "100000", "--capture-seed", "0", "--capture-model-size") as s:  # fmt: skip
        health = s.wait_for(
            lambda: (
                (h := get_json(s.url("/healthz"))[1])["source"]["state"] == "ended"
                and h["inferences"] == 1077
                and h["capture"]["queued"] == 0
                and h
            ),
            what="the video's end",
        )
        listing = get_json(s.url("/api/captures?limit=5"))[1]
        metrics = http("GET", s.url("/metrics"))[2].decode()
        live = get_json(s.url("/api/predictions"))[1]
        page_counter = live_page_counter(s.url("/"))
    preds = predictions(log)
    side = sidecars(caps)
    assert stale not in side and not (caps / f"{stale}.jpg").exists() and not list(caps.glob(".*"))
    by_pos = {v["pos"]: v for v in side.values()}
    assert len(by_pos) == len(side)  # one capture per frame at most
    # Every hard frame was captured, for the right reasons; the random sample is about 1 in 50.
    for pos, p in preds.items():
        top = p["top_k"]
        want = {r for r, hit in (("below", top[0]["score"] < 0.7),
                                 ("margin", top[0]["score"] - top[1]["score"] < 0.3)) if hit}  # fmt: skip
        got = set(by_pos[pos]["reasons"]) if pos in by_pos else set()
        assert want == got - {"every"}, (pos, want, got)
        if pos in by_pos:
            assert (
                by_pos[pos]["top_k"] == top
                and by_pos[pos]["model"]["version"] == p["model"]["version"]
            )
            assert by_pos[pos]["labels"] == [str(i) for i in range(10)]  # for `edgecnn label`
    every = sum("every" in v["reasons"] for v in side.values())
    assert 5 <= every <= 50, every
    assert len(side) > every  # the hard cases are there too
    # The images: the frame at the source resolution, and at the model's input size.
    frames = decoded_frames(video)
    for v in list(side.values())[:20]:
        big = np.asarray(Image.open(caps / v["files"]["image"]).convert("RGB"), dtype=np.int16)
        small = Image.open(caps / v["files"]["model_image"])
        assert big.shape == frames[v["pos"]].shape == (96, 96, 3) and small.size == (8, 8)
        assert np.abs(big - frames[v["pos"]]).mean() < 4  # JPEG's loss only
    # What the daemon reports.
    c = health["capture"]
    assert health["status"] == "ok" and c["state"] == "ok" and not health["warnings"]
    assert c["saved"] == c["captures"] == len(side) and c["skipped"]["rate"] == 0
    assert c["by_reason"]["every"] == every
    assert listing["count"] == len(side) and len(listing["captures"]) == 5
    assert [x["id"] for x in listing["captures"]] == sorted(side, reverse=True)[:5]  # newest first
    assert metric(metrics, "edgecnn_captures_saved_total") == len(side)
    assert metric(metrics, 'edgecnn_captures_total{reason="every"}') == every
    assert metric(metrics, "edgecnn_capture_disk_full") == 0
    assert live["captures"] == len(side)
    assert page_counter == f"{len(side)} captured", page_counter


def live_page_counter(url: str) -> str:
    """The capture counter on the live page, as Chromium shows it (the dev install has both)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run tools/install-dev.sh"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("() => document.getElementById('caps').textContent.length > 0")
        text = page.text_content("#caps")
        browser.close()
    return text


def test_rate_limit_and_disk_budget(build, video, tmp_path):
    caps, log = tmp_path / "caps", tmp_path / "pred.jsonl"
    with Served("--model", str(build), "--source", str(video), "--sync", "--no-pace",
                "--log-file", str(log), "--capture-dir", str(caps), "--capture-every", "1",
                "--capture-rate", "40", "--capture-max-mb", "0.05") as s:  # fmt: skip
        h = s.wait_for(
            lambda: (
                (h := get_json(s.url("/healthz"))[1])["source"]["state"] == "ended"
                and h["inferences"] == 1077
                and h["capture"]["queued"] == 0
                and h
            ),
            what="the video's end",
        )
    c = h["capture"]
    times = [p["time"] for p in predictions(log).values()]
    elapsed = max(times) - min(times)
    # Every frame was worth capturing (1 in 1): each was saved or skipped for the rate.
    assert c["saved"] + c["skipped"]["rate"] == 1077 and c["skipped"]["busy"] == 0
    assert 40 <= c["saved"] <= 40 + 40 * (elapsed + 0.1) + 1, (c["saved"], elapsed)
    # The budget: the oldest captures rotated out, the newest stayed.
    side = sidecars(caps)
    assert sum(p.stat().st_blocks * 512 for p in caps.iterdir()) == c["bytes"] <= 50_000
    assert c["rotated"] > 0 and len(side) == c["captures"] == c["saved"] - c["rotated"]
    # The first 40 frames were all saved (the burst); they are the oldest, so they went first.
    seqs = sorted(v["seq"] for v in side.values())
    assert c["rotated"] >= 40 and min(seqs) > 40, (c, seqs[:5])


def test_a_full_disk_never_stops_classification(build, video, tmpfs, tmp_path):
    ballast = tmpfs / "ballast"
    ballast.write_bytes(b"\0" * 230_000)  # leaves a few captures' worth of room
    with Served("--model", str(build), "--source", str(video), "--loop", "--capture-dir",
                str(tmpfs / "caps"), "--capture-every", "1", "--capture-rate", "30",
                "--capture-max-mb", "0.1") as s:  # fmt: skip
        full = s.wait_for(
            lambda: (h := get_json(s.url("/healthz")))[1]["capture"]["state"] == "disk_full" and h,
            what="disk full",
        )
        code, h = full
        assert code == 200 and h["status"] == "ok"  # reported, not a failure of the daemon
        assert h["warnings"] and "disk full" in h["warnings"][0]
        assert h["capture"]["skipped"]["disk_full"] > 0 and h["capture"]["saved"] > 0
        n = h["inferences"]
        s.wait_for(lambda: get_json(s.url("/healthz"))[1]["inferences"] > n + 30, what="inference")
        metrics = http("GET", s.url("/metrics"))[2].decode()
        assert metric(metrics, "edgecnn_capture_disk_full") == 1
        assert metric(metrics, 'edgecnn_captures_skipped_total{why="disk_full"}') > 0
        ballast.unlink()  # room again: capturing resumes by itself
        saved = h["capture"]["saved"]
        s.wait_for(
            lambda: (
                (c := get_json(s.url("/healthz"))[1]["capture"])["state"] == "ok"
                and c["saved"] > saved + 10
            ),
            what="capturing again",
        )
        s.wait_for(
            lambda: get_json(s.url("/healthz"))[1]["capture"]["rotated"] > 0, what="rotation"
        )
        assert get_json(s.url("/healthz"))[1]["capture"]["bytes"] <= 100_000


def test_a_capture_dir_that_cannot_be_written_is_one_line(build, video, tmp_path):
    (tmp_path / "file").write_text("x")
    args = ["serve", "--model", str(build), "--source", str(video), "--port", "0"]
    r = run_cli(*args, "--capture-dir", str(tmp_path / "file" / "caps"), "--capture-every", "5",
                timeout=60)  # fmt: skip
    assert r.returncode == 2 and r.stderr.strip().startswith("error: cannot write capture dir")
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run_cli(*args, "--capture-dir", str(tmp_path / "caps"), timeout=60)
    assert r.returncode == 2 and "needs a reason to capture" in r.stderr
    r = run_cli(*args, "--capture-dir", str(tmp_path / "c"), "--capture-margin", "0.2", "--top-k", "1",
                timeout=60)  # fmt: skip
    assert r.returncode == 2 and "--top-k of at least 2" in r.stderr


def test_a_read_only_capture_dir_is_one_line(build, video, tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    r = run_cli("serve", "--model", str(build), "--source", str(video), "--port", "0",
                "--capture-dir", str(tmpfs / "caps"), "--capture-below", "0.5", timeout=60)  # fmt: skip
    assert r.returncode == 2 and "cannot write capture dir" in r.stderr and "Read-only" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
