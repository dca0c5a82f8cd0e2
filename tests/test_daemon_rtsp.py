"""`serve --source rtsp://user:pass@...` against a real RTSP server (GStreamer) on 127.0.0.1.

The server (tests/daemon_rtsp_server.py, run by Debian's /usr/bin/python3 with
python3-gi) serves the digits test video's frames behind basic authentication,
with a time stamp in each frame's bottom rows. The daemon must classify the
stream, show the newest frame (not a backlog), reconnect within its backoff
cap after the server restarts, and never show the password anywhere.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from daemon_fixtures import (
    MOSQUITTO,
    Broker,
    Served,
    Subscriber,
    daemon_build,
    daemon_video,
    decoded_frames,
    free_port,
    get_json,
    http,
)
from PIL import Image

SYSTEM_PY = "/usr/bin/python3"
SERVER = Path(__file__).with_name("daemon_rtsp_server.py")
USER, PASSWORD = "admin", "hunter2"
STAMP_BITS, STAMP_ROWS, SIZE = 16, 8, 96
BACKOFF_CAP = 1.0


def rtsp_server_available() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        return (
            subprocess.run([SYSTEM_PY, "-c", probe], capture_output=True, timeout=30).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(
    not rtsp_server_available(),
    reason="apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good",
)


class RtspServer:
    """tests/daemon_rtsp_server.py on a fixed loopback port; stopped by its PID."""

    def __init__(self, port: int, frames: Path) -> None:
        self.port, self.frames = port, frames
        self.proc: subprocess.Popen | None = None

    def start(self) -> RtspServer:
        self.proc = subprocess.Popen(
            [SYSTEM_PY, str(SERVER), "--port", str(self.port), "--frames", str(self.frames),
             "--size", str(SIZE), "--user", USER, "--password", PASSWORD],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        assert line.strip() == "ready", f"RTSP server did not start: {line!r}"
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def stamp_of(jpeg: bytes) -> int:
    """The server's time stamp read back from a frame of the daemon's MJPEG stream."""
    im = Image.open(io.BytesIO(jpeg)).convert("L")
    scale = im.width / SIZE
    y = int((SIZE - STAMP_ROWS / 2) * scale)
    cell = SIZE // STAMP_BITS
    value = 0
    for bit in range(STAMP_BITS):
        x = int((bit * cell + cell / 2) * scale)
        value = (value << 1) | (im.getpixel((x, y)) > 128)
    return value


def frame_age_ms(s: Served) -> float:
    """How old the frame the daemon shows now is, by the stamp the server drew into it."""
    import socket

    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"\xff\xd9") < 2:
            data += c.recv(65536)
        now = time.time()
    start = data.index(b"\xff\xd8")
    start = data.index(b"\xff\xd8", data.index(b"\xff\xd9", start))  # the second frame: fresh
    jpeg = data[start : data.index(b"\xff\xd9", start) + 2]
    sent = stamp_of(jpeg)
    return ((int(now * 1000) // 4 - sent) % (1 << STAMP_BITS)) * 4.0


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return daemon_build(tmp_path_factory)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    video, _ = daemon_video(tmp_path_factory)
    out = tmp_path_factory.getbasetemp() / "rtsp_frames.rgb"
    out.write_bytes(decoded_frames(video).tobytes())
    return out


def test_rtsp_with_credentials_reconnects_newest_frame_redacted(build, frames, tmp_path):
    port = free_port()
    url = f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{port}/live"
    server = RtspServer(port, frames).start()
    broker = Broker(tmp_path).start() if Path(MOSQUITTO).exists() else None
    sub = Subscriber(broker.port, "edgecnn/predictions") if broker else None
    log = tmp_path / "pred.jsonl"
    mqtt = ["--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port)] if broker else []
    try:
        with Served("--model", str(build), "--source", url, "--log-file", str(log), "-v",
                    "--source-backoff-max", str(BACKOFF_CAP), *mqtt) as s:  # fmt: skip
            s.wait_for(
                lambda: get_json(s.url("/healthz"))[1]["inferences"] > 30, what="RTSP frames"
            )
            ages = [frame_age_ms(s) for _ in range(3)]
            server.stop()
            h = s.wait_for(
                lambda: (lambda r: r[1] if r[0] == 503 else None)(get_json(s.url("/healthz"))),
                what="degraded while the server is down",
            )
            assert "source_reconnecting" in h["reasons"], h
            time.sleep(2.0)
            server.start()
            t_up = time.monotonic()
            before = get_json(s.url("/healthz"))[1]["inferences"]
            s.wait_for(
                lambda: get_json(s.url("/healthz"))[1]["inferences"] > before + 10,
                timeout=20,
                what="classifying again after the restart",
            )
            recovered_s = time.monotonic() - t_up
            ages_after = [frame_age_ms(s) for _ in range(3)]
            shown = [
                json.dumps(get_json(s.url(p))[1]) for p in ("/healthz", "/api/predictions")
            ] + [http("GET", s.url("/metrics"))[2].decode()]
        output = s.output()
    finally:
        server.stop()
        if sub:
            sub.close()
        if broker:
            broker.stop()
    print(f"frame age {ages} ms, after restart {ages_after} ms; recovered in {recovered_s:.2f} s")
    # The newest frame, not a backlog: a few hundred ms old at most, before and after.
    assert sorted(ages)[1] < 1500 and sorted(ages_after)[1] < 1500, (ages, ages_after)
    waits = [float(w) for w in re.findall(r"retrying in ([0-9.]+)s", output)]
    assert waits and max(waits) <= BACKOFF_CAP, waits
    assert "reconnected after" in output
    everything = "\n".join([*shown, output, log.read_text()])
    if sub:
        everything += json.dumps(sub.messages)
        assert sub.predictions(), "no MQTT message"
    assert PASSWORD not in everything
    assert "rtsp://***@127.0.0.1" in shown[0]
