"""What a hostile or broken client can make the daemon hold: memory, connections, threads, time.

Each test is a finding of the reliability test in issue 12 replayed against a real
`edgecnn serve` on 127.0.0.1; the speed of each is measured in tools/bench_daemon.py,
not here.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from daemon_fixtures import Served, daemon_build, daemon_video, get_json, http
from PIL import Image

DEFAULT_MAX_PIXELS = 16_000_000
RSS_GOAL_MB = 300


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return daemon_build(tmp_path_factory)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return daemon_video(tmp_path_factory)[0]


def proc_status(pid: int, key: str) -> int:
    """A /proc/PID/status field in kB (VmHWM: peak resident memory)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def threads_of(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def tcp_states(port: int) -> list[str]:
    """TCP states (hex codes of /proc/net/tcp) of the sockets whose local port is `port`."""
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                states.append(fields[3])
    return states


ESTABLISHED, CLOSE_WAIT = "01", "08"


def photo_png(width: int, height: int, mode: str = "RGBA") -> bytes:
    """A real photo (scikit-image's astronaut) tiled to width x height: an upload at the cap."""
    from skimage import data

    tile = Image.fromarray(data.astronaut()).convert(mode)
    im = Image.new(mode, (width, height))
    for y in range(0, height, tile.height):
        for x in range(0, width, tile.width):
            im.paste(tile, (x, y))
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def test_concurrent_uploads_at_the_pixel_cap_stay_under_300mb(build, video):
    """Issue 12.2: eight 16-Mpx uploads at once (RGBA photos, ~4 MB each) peak under 300 MB RSS.

    Before: a 40 Mpx cap, every upload decoded at once at up to 1024 px, one thread each:
    one 6300x6300 PNG took RSS from 100 to 645 MB and eight peaked at 3.5 GB.
    """
    body = photo_png(4000, 4000)
    assert len(body) < 5_000_000  # under the default --max-upload
    with Served("--model", str(build), "--source", str(video), "--loop") as s:
        s.wait_for(lambda: get_json(s.url("/healthz"))[1]["inferences"] > 5, what="inference")
        codes: list[int] = []

        def upload() -> None:
            codes.append(http("POST", s.url("/api/predict"), body, timeout=120)[0])

        threads = [threading.Thread(target=upload) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        peak_mb = proc_status(s.proc.pid, "VmHWM") / 1024
        # One pixel row more than the cap is refused from the header alone.
        over = photo_png(4000, 4001, mode="L")
        code, _, out = http("POST", s.url("/api/predict"), over)
        assert code == 413 and "pixels" in json.loads(out)["error"]
        assert get_json(s.url("/healthz"))[0] == 200
    assert sorted(codes) == [200] * 8, codes
    print(f"peak RSS with 8 concurrent 16-Mpx uploads: {peak_mb:.0f} MB")
    assert peak_mb < RSS_GOAL_MB, f"peak RSS {peak_mb:.0f} MB"


def test_half_open_flood_is_bounded_and_leaves_no_close_wait(build, video):
    """Issue 12.3: 300 half-sent requests, then all closed at once.

    The cap (here 32) keeps the daemon to a few threads, the oldest idle connection
    makes room so a real client is still answered during the flood, and closing the
    flood leaves no socket in CLOSE-WAIT. Before: one thread per connection, no cap.
    """
    with Served(
        "--model", str(build), "--source", str(video), "--loop", "--max-connections", "32"
    ) as s:
        base_threads = threads_of(s.proc.pid)
        flood = []
        for _ in range(300):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            c.sendall(b"GET /api/predictions HTTP/1.1\r\nHost: x\r\n")  # never finished
            flood.append(c)
        code, h = get_json(s.url("/healthz"), timeout=10)
        assert code == 200 and h["status"] == "ok"
        assert threads_of(s.proc.pid) <= base_threads + 4, "a thread per connection?"
        for c in flood:  # all at once, with a FIN each (what left 3,595 threads in CLOSE-WAIT)
            c.close()
        s.wait_for(
            lambda: (
                CLOSE_WAIT not in tcp_states(s.port) and tcp_states(s.port).count(ESTABLISHED) <= 1
            ),
            what="no connection left in CLOSE-WAIT",
        )
        _, _, body = http("GET", s.url("/metrics"))
        shed = [
            line
            for line in body.decode().splitlines()
            if line.startswith("edgecnn_http_connections_shed_total")
        ]
        assert sum(float(line.split()[-1]) for line in shed) >= 300 - 32, shed
        assert "Traceback" not in s.output()


def test_a_request_head_has_a_deadline(build, video):
    """Issue 12.3: a client sending one header line every 0.5 s is closed at --header-timeout.

    Before: each line reset a 30 s read timeout, so such a client held its thread past 60 s.
    """
    with Served(
        "--model", str(build), "--source", str(video), "--loop", "--header-timeout", "2"
    ) as s:
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sent = 0
        closed = False
        for i in range(40):  # at most 20 s of trickling
            try:
                c.sendall(f"X-Slow-{i}: 1\r\n".encode())
                sent += 1
                c.settimeout(0.5)
                closed = c.recv(4096) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
            if closed:
                break
        c.close()
        assert closed, f"still open after {sent} header lines"
        assert sent < 12, f"closed only after {sent} lines at 0.5 s each"
        assert http("GET", s.url("/healthz"))[0] == 200


def test_keep_alive_responses_are_one_write(build, video):
    """Issue 12.4: head and body of a small response leave together (no Nagle floor).

    Before: headers and body were two sendto() calls without TCP_NODELAY, so the body
    waited ~40 ms for the delayed ACK and a first recv() returned the headers alone.
    """
    with Served("--model", str(build), "--source", str(video), "--loop") as s:
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        complete = 0
        for _ in range(20):
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = c.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    ln.split(b":", 1)[1]
                    for ln in head.split(b"\r\n")
                    if ln.lower().startswith(b"content-length:")
                )
            )
            while len(body) < length:
                body += c.recv(65536)
            complete += data.endswith(body) and len(data) == len(head) + 4 + length
        c.close()
    assert complete == 20, f"only {complete} of 20 responses arrived in one piece"


def test_stream_clients_that_never_read_are_dropped(build, video):
    """Issue 12.5: two viewers that never read free their slots; a third viewer gets in.

    Before: they held both slots for 58 s and everyone else got 503.
    """
    with Served(
        "--model", str(build), "--source", str(video), "--loop",
        "--stream-clients", "2", "--stream-write-timeout", "2",
    ) as s:  # fmt: skip
        s.wait_for(lambda: get_json(s.url("/healthz"))[1]["inferences"] > 5, what="inference")
        stalled = []
        for _ in range(2):
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow phone on bad Wi-Fi
            c.connect(("127.0.0.1", s.port))
            c.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            stalled.append(c)
        time.sleep(0.5)
        assert http("GET", s.url("/stream.mjpg"), timeout=5)[0] == 503

        def third_viewer_gets_in() -> bool:
            with socket.create_connection(("127.0.0.1", s.port), timeout=5) as v:
                v.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
                return b" 200 " in v.recv(4096).split(b"\r\n")[0]

        s.wait_for(third_viewer_gets_in, timeout=20, what="a free stream slot")

        def dropped() -> float:  # each stalled viewer is dropped at its own write timeout
            _, _, body = http("GET", s.url("/metrics"))
            name = "edgecnn_stream_clients_dropped"
            line = next(ln for ln in body.decode().splitlines() if ln.startswith(name))
            return float(line.split()[-1])

        s.wait_for(lambda: dropped() >= 2, timeout=20, what="both stalled viewers dropped")
        for c in stalled:
            c.close()
        assert "dropping stream client" in s.output()


def test_protocol_details(build, video):
    """Issue 12.6: 405 with Allow, OPTIONS, every method counted, half requests, resets."""
    from prometheus_client.parser import text_string_to_metric_families

    with Served("--model", str(build), "--source", str(video), "--loop") as s:
        code, headers, body = http("POST", s.url("/healthz"), b"x")
        assert code == 405 and headers["Allow"] == "GET, HEAD, OPTIONS"
        assert json.loads(body)["error"] == "POST is not allowed on /healthz"
        code, headers, _ = http("GET", s.url("/api/predict"))
        assert code == 405 and "POST" in headers["Allow"]
        for method in ("PUT", "DELETE", "PATCH"):
            code, headers, body = http(method, s.url("/api/predictions"), b"")
            assert code == 405 and headers["Content-Type"].startswith("application/json")
        code, headers, _ = http("OPTIONS", s.url("/api/predict"))
        assert code == 204 and headers["Allow"] == "POST, OPTIONS"
        assert http("DELETE", s.url("/nope"))[0] == 404
        # A request cut off before the end of its head, then EOF: no answer as if complete.
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
            c.sendall(b"GET /api/predictions HTTP/1.1\r\nHost: x\r\n")
            c.shutdown(socket.SHUT_WR)
            reply = c.recv(4096)
        assert b" 200 " not in reply.split(b"\r\n")[0], reply[:80]
        # Clients that reset before (or during) the request line.
        for partial in (b"", b"GET /api/pre"):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            if partial:
                c.sendall(partial)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        time.sleep(0.3)
        _, _, body = http("GET", s.url("/metrics"))
        fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
        seen = {
            (x.labels["route"], x.labels["method"], x.labels["code"])
            for x in fams["edgecnn_http_requests"].samples
            if x.name.endswith("_total")
        }
        for want in (
            ("/healthz", "POST", "405"),
            ("/api/predictions", "PUT", "405"),
            ("/api/predictions", "DELETE", "405"),
            ("/api/predict", "OPTIONS", "204"),
            ("other", "DELETE", "404"),
        ):
            assert want in seen, (want, seen)
        assert http("GET", s.url("/healthz"))[0] == 200
    out = s.output()
    assert "Traceback" not in out and "Error handling request" not in out, out[-2000:]


def test_decoded_upload_is_the_models_size(build):
    """The decoder stops at the model's size: a 4000x4000 upload never exists at full size
    after decoding (checked in-process on the module the daemon uses)."""
    from edgecnn.daemon.uploads import decode_for_model

    png = photo_png(1024, 1024, mode="RGB")
    arr = decode_for_model(png, (8, 8, 1), DEFAULT_MAX_PIXELS)
    assert arr.shape[2] == 1 and max(arr.shape[:2]) <= 16, arr.shape
    assert arr.dtype == np.uint8


def test_keep_alive_connections_are_limited(build, video):
    """Issue 12.3: a keep-alive connection serves --keepalive-requests requests, then closes,
    and an idle one is closed after --header-timeout."""
    with Served("--model", str(build), "--source", str(video), "--loop",
                "--keepalive-requests", "3", "--header-timeout", "1") as s:  # fmt: skip
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        heads = []
        for _ in range(3):
            c.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            heads.append(c.recv(65536).split(b"\r\n\r\n")[0].lower())
        assert b"connection: close" not in heads[0] and b"connection: close" in heads[2]
        assert c.recv(10) == b""  # closed after the third
        c.close()
        idle = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        idle.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        idle.recv(65536)
        idle.settimeout(10)
        assert idle.recv(10) == b""  # the idle keep-alive connection was closed by the daemon
        idle.close()
