"""Source adapters and the latest-frame slot, in-process (Picamera2 is faked: it cannot exist off a Pi)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from daemon_fixtures import digits_test
from PIL import Image

from edgecnn.daemon.pipeline import CaptureWorker, Counters, LatestSlot, Smoother, top_k_of
from edgecnn.daemon.sources import (
    Frame,
    ImageFolderSource,
    OpenCVSource,
    Picamera2Source,
    make_source,
)
from edgecnn.errors import BadInput


class FakePicamera2:
    """Stands in for picamera2.Picamera2: records the configuration, returns BGR-ordered frames."""

    instances: list[FakePicamera2] = []

    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num = camera_num
        self.config = None
        self.started = self.closed = False
        self.n = 0
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main, buffer_count, queue):
        return {"main": main, "buffer_count": buffer_count, "queue": queue}

    def configure(self, config) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def capture_array(self, stream: str) -> np.ndarray:
        w, h = self.config["main"]["size"]
        self.n += 1
        arr = np.zeros((h, w, 3), np.uint8)
        arr[..., 0] = 10  # B
        arr[..., 2] = 200  # R
        arr[0, 0, 1] = self.n % 256
        time.sleep(0.005)
        return arr

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


def test_picamera2_configured_at_model_size_newest_frame_rgb():
    src = make_source("picamera2:1", (28, 20), picamera2_factory=FakePicamera2)
    assert isinstance(src, Picamera2Source)
    slot, c, stop = LatestSlot(), Counters(), threading.Event()
    w = CaptureWorker(src, slot, c, stop)
    w.start()
    try:
        frame = None
        deadline = time.monotonic() + 5
        while frame is None and time.monotonic() < deadline:
            frame = slot.take(0.5)
        assert frame is not None
        cam = FakePicamera2.instances[-1]
        assert cam.camera_num == 1
        assert cam.config == {
            "main": {"size": (28, 20), "format": "RGB888"},
            "buffer_count": 2,
            "queue": False,
        }
        assert frame.image.shape == (20, 28, 3)
        assert frame.image[0, 1, 0] == 200 and frame.image[0, 1, 2] == 10  # BGR memory -> RGB
        time.sleep(0.2)  # capture keeps going; the slot holds only the newest frame
        newer = slot.take(1.0)
        assert newer is not None and newer.seq > frame.seq + 1
        assert slot.dropped > 0
    finally:
        stop.set()
        w.join(2)
    assert cam.closed


def test_latest_slot_keeps_only_the_newest():
    slot = LatestSlot()
    img = np.zeros((2, 2, 3), np.uint8)
    for i in range(1, 6):
        slot.put(Frame(img, i, None, 0.0))
    assert slot.take(0.1).seq == 5 and slot.dropped == 4
    assert slot.take(0.05) is None  # nothing newer


def test_image_folder_source_loops_in_name_order(tmp_path):
    x, _ = digits_test()
    for i in range(3):
        Image.fromarray(x[i][..., 0]).save(tmp_path / f"{i:02d}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    src = make_source(str(tmp_path), (8, 8), loop=True)
    assert isinstance(src, ImageFolderSource)
    src.open()
    got = [src.read() for _ in range(5)]
    assert [pos for _, pos in got] == [0, 1, 2, 0, 1]
    assert np.array_equal(got[0][0][..., 0], x[0][..., 0]) and got[0][0].shape == (8, 8, 3)


def test_make_source_rules(tmp_path):
    assert isinstance(make_source("0", (8, 8)), OpenCVSource)
    assert make_source("/dev/video3", (8, 8)).name == "camera:/dev/video3"
    assert make_source("rtsp://cam.local/stream", (8, 8)).name.startswith("url:")
    with pytest.raises(BadInput, match="is not a camera index"):
        make_source(str(tmp_path / "nope.mp4"), (8, 8))
    with pytest.raises(BadInput):
        make_source("picamera2:x", (8, 8))


def test_smoother_and_top_k():
    s = Smoother(3)
    a = np.array([1.0, 0.0, 0.0], np.float32)
    b = np.array([0.0, 1.0, 0.0], np.float32)
    s(a)
    s(a)
    out = s(b)
    assert np.allclose(out, [2 / 3, 1 / 3, 0])
    out = s(b)
    out = s(b)
    assert np.allclose(out, b)
    tk = top_k_of(np.array([0.1, 0.5, 0.4], np.float32), ["a", "b", "c"], 2)
    assert [t["label"] for t in tk] == ["b", "c"]


def test_daemon_side_imports_no_tensorflow():
    """serve, the daemon package and deploy load without TensorFlow or Keras, even transitively."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import edgecnn.commands.serve, edgecnn.commands.deploy, edgecnn.deploy\n"
        "import edgecnn.daemon.service, edgecnn.daemon.http, edgecnn.daemon.mqtt, edgecnn.daemon.sources\n"
        "import edgecnn.daemon.pipeline, edgecnn.daemon.model, edgecnn.daemon.overlay, edgecnn.daemon.metrics\n"
        "import edgecnn.daemon.jsonlog, edgecnn.daemon.systemd, edgecnn.daemon.config, edgecnn.runtime\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_jsonl_log_rotates(tmp_path):
    import json

    from edgecnn.daemon.jsonlog import JsonLinesLog
    from edgecnn.daemon.pipeline import make_result

    log = JsonLinesLog(tmp_path / "p.jsonl", max_bytes=4000, backups=2)
    probs = np.array([0.1, 0.7, 0.2], np.float32)
    for i in range(200):
        log(make_result(probs, ["a", "b", "c"], {"name": "m", "version": "1"}, 3, 0.5, seq=i))
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["p.jsonl", "p.jsonl.1", "p.jsonl.2"]
    for f in tmp_path.iterdir():
        assert f.stat().st_size <= 4000
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        assert rows and all(r["label"] == "b" for r in rows)
    newest = [json.loads(line)["seq"] for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert newest[-1] == 199


def test_backoff_is_capped_jittered_and_resets():
    """Issue 12.10: waits double from `initial`, never pass `cap`, and vary (no lock-step fleet)."""
    import random

    from edgecnn.daemon.backoff import Backoff

    b = Backoff(initial=0.25, cap=2.0, jitter=0.5, rng=random.Random(1))
    waits = [b.next() for _ in range(20)]
    assert max(waits) <= 2.0 and min(waits) >= 0.125
    assert all(1.0 <= w <= 2.0 for w in waits[4:])  # at the cap: between cap/2 and cap
    assert len({round(w, 6) for w in waits[4:]}) > 10  # jittered
    b.reset()
    assert b.next() <= 0.25
    steady = Backoff(initial=0.5, cap=4.0, jitter=0.0)
    assert [steady.next() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]


class _BrokenFile:
    """A file source that opened once and then cannot be read again (replaced, corrupt)."""

    live = False
    name = "file:/videos/gone.mp4"
    fps = None

    def __init__(self) -> None:
        self.opens = 0

    def open(self) -> None:
        from edgecnn.daemon.sources import SourceError

        self.opens += 1
        raise SourceError("/videos/gone.mp4 is not a readable video (it cannot be decoded)")

    def read(self):  # pragma: no cover - never opened
        return None

    def close(self) -> None:
        pass


def test_a_file_that_cannot_be_read_is_not_retried():
    """Issue 13.2: only cameras and streams are retried; a file fails once, with its reason."""
    src = _BrokenFile()
    slot, c, stop = LatestSlot(), Counters(), threading.Event()
    reasons: list[str] = []
    w = CaptureWorker(src, slot, c, stop, on_fatal=reasons.append)
    w.start()
    w.join(5)
    assert not w.is_alive() and src.opens == 1
    assert reasons == ["/videos/gone.mp4 is not a readable video (it cannot be decoded)"]
    assert c.source_state == "failed" and c.reconnects == 0


def test_url_credentials_are_redacted_in_names_and_messages():
    from edgecnn.daemon.redact import redact

    src = make_source("rtsp://admin:hunter2@cam.local:554/live", (8, 8))
    assert src.name == "url:rtsp://***@cam.local:554/live"
    assert redact("cannot open rtsp://u:p@h/x?token=abc&k=1, Bearer xyz") == (
        "cannot open rtsp://***@h/x?token=***&k=1, Bearer ***"
    )
    c = Counters()
    c.set_state("reconnecting", "OpenCV: rtsp://admin:hunter2@10.0.0.9/live timed out")
    assert "hunter2" not in c.source_message and "admin" not in c.source_message
