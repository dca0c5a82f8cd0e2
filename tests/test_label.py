"""`edgecnn label`: the page in headless Chromium (Debian's, driven by Playwright), its journal
across a crash, and what it refuses. The captures are the real daemon's (`serve --capture-dir`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import run_cli
from daemon_fixtures import REPO, daemon_build, daemon_video, http
from loop_fixtures import LabelProc, serve_once, sidecars

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOST = "pi@cam1"


@pytest.fixture(scope="module")
def captured(tmp_path_factory) -> Path:
    build = daemon_build(tmp_path_factory)
    video, _ = daemon_video(tmp_path_factory)
    out = tmp_path_factory.mktemp("label") / "captures"
    r = serve_once("--model", str(build), "--source", str(video), "--capture-dir", str(out),
                   "--capture-every", "40", "--capture-rate", "10000", "--capture-seed", "3")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return out


@pytest.fixture
def folder(captured, tmp_path) -> Path:
    """A collect-style folder: DIR/<host>/ holding the captures."""
    root = tmp_path / "collected"
    shutil.copytree(captured, root / HOST)
    return root


def where(folder: Path, stem: str) -> list[str]:
    """Where a capture's files are now, relative to the folder."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(f"*{stem}*"))


def launch(p):
    return p.chromium.launch(
        executable_path=CHROMIUM,
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    )


def test_page_labels_with_keys_and_clicks_and_undoes(folder):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    side = sidecars(folder)
    order = sorted(side, key=lambda s: (side[s]["time"], s))
    lab = LabelProc(folder)
    try:
        with sync_api.sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(lab.url)
            page.wait_for_selector("body[data-ready='1'] .card")
            first = page.locator(".card").first
            assert first.get_attribute("data-id") == f"{HOST}/{order[0]}"
            s0 = side[order[0]]
            assert f"model: {s0['label']} {s0['score']:.2f}" in first.text_content()
            assert page.eval_on_selector_all(
                ".card img", "els => els.every(i => i.naturalWidth > 0)"
            )
            assert page.text_content("#pending") == str(len(order))

            page.keyboard.press("3")  # the highlighted (first) capture is a 3
            page.wait_for_selector("body[data-ready='1']")
            assert where(folder, order[0]) == [f"labelled/.meta/{HOST}_{order[0]}.json",
                                               f"labelled/3/{HOST}_{order[0]}.jpg"]  # fmt: skip
            card = page.locator(f".card[data-id='{HOST}/{order[2]}']")
            card.locator("button.cls[data-class='7']").click()  # a click on another card
            page.wait_for_selector("body[data-ready='1']")
            assert f"labelled/7/{HOST}_{order[2]}.jpg" in where(folder, order[2])
            page.keyboard.press("x")  # the highlighted one is now order[1]: unknown
            page.wait_for_selector("body[data-ready='1']")
            assert where(folder, order[1])[0].startswith("discarded/")
            page.keyboard.press("z")  # undo the discard: the files are back
            page.wait_for_selector("body[data-ready='1']")
            assert where(folder, order[1]) == [f"{HOST}/{order[1]}.jpg", f"{HOST}/{order[1]}.json"]
            assert page.text_content("#labelled") == "2" and page.text_content("#discarded") == "0"
            assert page.text_content("#pending") == str(len(order) - 2)
            assert page.locator(".card").first.get_attribute("data-id") == f"{HOST}/{order[1]}"
            page.screenshot(path=str(REPO / "test-artifacts" / "label_page.png"))
            assert not errors, errors
            browser.close()
    finally:
        out = lab.stop()
    assert "2 labelled, 0 discarded" in out
    from edgecnn.data import load_dataset

    ds = load_dataset(f"folder:{folder / 'labelled'}", test_split=0.5)
    assert ds.class_names == ["3", "7"]  # the answers are a normal folder: dataset


def test_a_crash_loses_no_answer(folder):
    side = sorted(sidecars(folder), key=lambda s: (sidecars(folder)[s]["time"], s))
    lab = LabelProc(folder, "--classes", ",".join(str(i) for i in range(10)))
    code, state = lab.post("api/label", {"id": f"{HOST}/{side[0]}", "label": "5"})
    assert code == 200 and state["labelled"] == 1
    code, state = lab.post("api/label", {"id": f"{HOST}/{side[1]}", "label": None})
    assert code == 200 and state["discarded"] == 1
    lab.kill()  # SIGKILL: no shutdown code runs
    # A crash between the journal write and the moves: the answer is journalled only.
    journal = folder / ".label-journal.jsonl"
    rec = {"op": "label", "id": f"{HOST}/{side[2]}", "label": "8", "time": 0,
           "moves": [[f"{HOST}/{side[2]}.jpg", f"labelled/8/{HOST}_{side[2]}.jpg"],
                     [f"{HOST}/{side[2]}.json", f"labelled/.meta/{HOST}_{side[2]}.json"]]}  # fmt: skip
    with open(journal, "a") as f:
        f.write(json.dumps(rec) + "\n" + '{"op": "label", "id": "torn')  # and a torn last line
    lab = LabelProc(folder)
    try:
        code, state = lab.post("api/undo", {})  # the undo history survived too
        assert code == 200
        assert state["labelled"] == 1 and state["discarded"] == 1
        assert where(folder, side[2]) == [f"{HOST}/{side[2]}.jpg", f"{HOST}/{side[2]}.json"]
        assert f"labelled/5/{HOST}_{side[0]}.jpg" in where(folder, side[0])
    finally:
        lab.stop()


def test_what_the_page_refuses(folder):
    stem = sorted(sidecars(folder))[0]
    lab = LabelProc(folder)
    try:
        code, _, _ = http("GET", lab.url + "api/state", headers={"Host": "evil.example:80"})
        assert code == 403  # DNS rebinding: another name for this address
        code, _, body = http("POST", lab.url + "api/label",
                             json.dumps({"id": f"{HOST}/{stem}", "label": "1"}).encode(),
                             {"Content-Type": "application/json"})  # fmt: skip
        assert code == 403 and b"X-Edgecnn-Label" in body  # what a cross-site form sends
        assert lab.post("api/label", {"id": f"{HOST}/{stem}", "label": "cat"})[0] == 400
        assert lab.post("api/label", {"id": "../../etc/passwd", "label": "1"})[0] == 400
        assert lab.post("api/undo", {})[1]["error"] == "nothing to undo"
        code, _, _ = http("GET", lab.url + "image?id=" + "../" * 5 + "etc/passwd")
        assert code == 400
        code, _, body = http("GET", lab.url + f"image?id={HOST}/{stem}")
        assert code == 200 and body[:2] == b"\xff\xd8"  # a JPEG
        second = run_cli("label", str(folder), "--port", "0", timeout=30)
        assert second.returncode == 2 and "another `edgecnn label`" in second.stderr
    finally:
        lab.stop()
    assert where(folder, stem) == [f"{HOST}/{stem}.jpg", f"{HOST}/{stem}.json"]


def test_bad_input(tmp_path):
    r = run_cli("label", str(tmp_path / "missing"), timeout=30)
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run_cli("label", str(tmp_path), timeout=30)  # no captures: no classes to infer
    assert r.returncode == 2 and "give --model" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_cli("label", str(tmp_path), "--classes", "a,b", "--model", "m", timeout=30)
    assert r.returncode == 2


def test_class_folder_names_round_trip():
    from edgecnn.label import class_dir, label_of
    from edgecnn.label.store import class_keys

    for name in ["T-shirt/top", "..", ".hidden", "a b", "Ankle boot", "100%", "ü"]:
        d = class_dir(name)
        assert "/" not in d and not d.startswith(".") and label_of(d) == name
    keys = class_keys([str(i) for i in range(10)] + ["cat", "x"])
    assert [keys[str(i)] for i in range(10)] == [str(i) for i in range(10)]
    assert keys["cat"] not in "0123456789xz" and keys["x"] not in "0123456789xz"
    assert len(set(keys.values())) == 12
