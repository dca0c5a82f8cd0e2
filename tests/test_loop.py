"""The closed loop, end to end, on real data and real servers.

1. The first model (cnn_small trained on scikit-learn digits) is deployed over the test sshd.
2. Its camera is a video of real MNIST-5k digits, which it mostly gets wrong; the daemon
   (`serve --capture-dir`) saves the frames it is unsure of, plus a random sample.
3. `edgecnn collect` pulls the captures through sshd (and deletes the verified copies).
4. `edgecnn label` is opened in headless Chromium; the test clicks each capture's true class.
5. `edgecnn retrain` fine-tunes on digits plus the labels; the gate passes.
6. `edgecnn deploy` pushes the new build through sshd, checks /healthz, and the running daemon
   hot-reloads it.
7. The daemon's accuracy on other MNIST-5k images (`--sync --log-file` over the same evaluation
   video, before and after) rises.

The evaluation video holds images the camera never showed, so no labelled image is scored.
Figures are written to test-artifacts/loop_report.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import run_cli
from daemon_fixtures import REPO, Served, free_port, get_json
from loop_fixtures import LabelProc, log_accuracy, serve_once, sidecars
from sshd import SSHServer, sshd_available

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not sshd_available(), reason="openssh-server/client not installed")


def evaluate(model: Path, video: Path, labels, log: Path) -> float:
    r = serve_once("--model", str(model), "--source", str(video), "--log-file", str(log))
    assert r.returncode == 0, r.stderr[-2000:]
    return log_accuracy(log, labels)


def label_in_chromium(folder: Path, truth: dict[str, str]) -> int:
    """Open the label page and click every capture's true class; returns the answers given."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    lab = LabelProc(folder, "--classes", ",".join(str(i) for i in range(10)))
    answered = 0
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(lab.url)
            while True:
                page.wait_for_selector("body[data-ready='1']")
                card = page.locator(".card").first
                if card.count() == 0:
                    break
                stem = card.get_attribute("data-id").rsplit("/", 1)[1]
                # A real click on the button; force: the page is known ready (see wait above),
                # so Playwright's actionability waits (two animation frames each) are skipped.
                card.locator(f"button.cls[data-class='{truth[stem]}']").click(force=True)
                answered += 1
            assert page.text_content("#labelled") == str(answered)
            browser.close()
    finally:
        lab.stop()
    return answered


def test_the_closed_loop_raises_accuracy(loop_model, loop_videos, tmp_path):
    _, first = loop_model
    root, local = tmp_path / "device", tmp_path / "collected"
    captures = root / "captures"
    with SSHServer() as srv:
        ssh = ["--known-hosts", str(srv.known_hosts), "-i", str(srv.client_key)]
        r = run_cli("deploy", str(first), "--host", srv.target, "--root", str(root), "--json", *ssh)
        assert r.returncode == 0, r.stdout + r.stderr
        current = root / "models" / "current"
        before = evaluate(
            current, loop_videos["eval"], loop_videos["eval_y"], tmp_path / "before.jsonl"
        )

        port = free_port()
        with Served("--model", str(current), "--source", str(loop_videos["camera"]), "--sync",
                    "--no-pace", "--watch", "0.2", "--capture-dir", str(captures),
                    "--capture-below", "0.9", "--capture-every", "10", "--capture-rate", "1000",
                    "--capture-seed", "0", port=port) as cam:  # fmt: skip
            h = cam.wait_for(
                lambda: (
                    (h := get_json(cam.url("/healthz"))[1])["source"]["state"] == "ended"
                    and h["inferences"] == len(loop_videos["camera_y"])
                    and h["capture"]["queued"] == 0
                    and h
                ),
                timeout=120,
                what="the camera video's end",
            )
            saved, v1 = h["capture"]["saved"], h["model"]["version"]

            r = run_cli("collect", "--host", srv.target, "--remote-dir", str(captures), "--out",
                        str(local), "--delete", "--json", *ssh)  # fmt: skip
            assert r.returncode == 0, r.stdout + r.stderr
            assert json.loads(r.stdout)[0]["fetched"] == saved
            assert not list(captures.glob("*.json"))  # verified copies deleted on the device

            side = sidecars(local)
            truth = {stem: str(loop_videos["camera_y"][s["pos"]]) for stem, s in side.items()}
            labels = label_in_chromium(local, truth)
            assert labels == saved == len(truth)

            new = tmp_path / "new-build"
            r = run_cli("retrain", str(first), "--add", f"folder:{local / 'labelled'}", "--out",
                        str(new), "--json", timeout=900)  # fmt: skip
            assert r.returncode == 0, r.stderr[-3000:]
            gate = json.loads(r.stdout)["gate"]
            assert gate["passed"]

            r = run_cli("deploy", str(new), "--host", srv.target, "--root", str(root), "--json",
                        "--health-url", cam.url("/healthz"), *ssh)  # fmt: skip
            row = json.loads(r.stdout)[0]
            assert r.returncode == 0 and row["status"] == "ok" and row["health"] == "ok", r.stdout
            h = get_json(cam.url("/healthz"))[1]  # the running daemon hot-reloaded the new build
            assert h["model"]["version"] != v1 and h["last_reload_error"] is None

        after = evaluate(
            current, loop_videos["eval"], loop_videos["eval_y"], tmp_path / "after.jsonl"
        )
    report = {
        "accuracy_before": before, "accuracy_after": after, "labels": labels,
        "eval_images": len(loop_videos["eval_y"]), "camera_images": len(loop_videos["camera_y"]),
        "gate_old_test": gate["old_test"]["old"], "gate_new_test": gate["old_test"]["new"],
        "gate_holdout_old": gate["holdout"]["old"], "gate_holdout_new": gate["holdout"]["new"],
        "gate_holdout_n": gate["holdout"]["n"], "gate_p_value": gate["holdout"]["p_value"],
    }  # fmt: skip
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "loop_report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    assert before < 0.5  # the first model handles this source badly...
    assert after >= before + 0.25, report  # ...and the loop made it markedly better
