"""The issue-12 measurements of tools/bench_daemon.py: what limits hold, under load, on 127.0.0.1.

Each function takes the bench's `Daemon` class (so `--repo` can run another checkout's
daemon) and returns a dict of figures. Only options both the old and the new daemon
know are passed, so a run against the commit before a fix gives the "before" column.
The relays and the broker come from tests/daemon_fixtures.py.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

CLOSE_WAIT = "08"


def _wait(d: Any, n: int = 10) -> None:
    deadline = time.monotonic() + 60
    while d.health()["inferences"] < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"daemon is not classifying:\n{d.output()[-2000:]}")
        time.sleep(0.1)


def _get(port: int, path: str, timeout: float = 30.0) -> tuple[int, float]:
    """(status or -1, milliseconds) for one request on a fresh connection."""
    t = time.perf_counter()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        c.close()
        return r.status, (time.perf_counter() - t) * 1e3
    except (OSError, http.client.HTTPException):
        return -1, (time.perf_counter() - t) * 1e3


def flat_photo_png(side: int) -> bytes:
    """A real photo in the middle of a flat canvas of side x side: small file, full pixel count
    (the kind of upload the reliability test used: 116 KB for 6300x6300)."""
    from PIL import Image
    from skimage import data

    im = Image.new("RGBA", (side, side), (90, 90, 90, 255))
    photo = Image.fromarray(data.astronaut()).convert("RGBA")
    im.paste(photo, ((side - photo.width) // 2, (side - photo.height) // 2))
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def uploads(Daemon: Any, model: str, video: Path, side: int, clients: int = 8) -> dict:
    body = flat_photo_png(side)
    d = Daemon("--model", model, "--source", str(video), "--loop")
    try:
        _wait(d)
        before = d.rss_mb("VmHWM")
        codes: list[int] = []

        def post() -> None:
            c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=300)
            try:
                c.request("POST", "/api/predict", body, {"Content-Type": "image/png"})
                r = c.getresponse()
                r.read()
                codes.append(r.status)
            except (OSError, http.client.HTTPException):
                codes.append(-1)

        t0 = time.monotonic()
        threads = [threading.Thread(target=post) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {
            "upload": f"{side}x{side} RGBA PNG, {len(body)} bytes",
            "clients": clients,
            "codes": sorted(codes),
            "seconds": round(time.monotonic() - t0, 2),
            "peak_rss_before_mb": round(before, 1),
            "peak_rss_mb": round(d.rss_mb("VmHWM"), 1),
            "alive": d.proc.poll() is None,
        }
    finally:
        d.stop()


def _close_wait(port: int) -> int:
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == CLOSE_WAIT:
                n += 1
    return n


def _probes(port: int, n: int, gap: float = 0.2) -> list[float | None]:
    out: list[float | None] = []
    for _ in range(n):
        code, ms = _get(port, "/healthz", timeout=30)
        out.append(round(ms, 1) if code in (200, 503) else None)
        time.sleep(gap)
    return out


def flood(Daemon: Any, model: str, video: Path, n: int) -> dict:
    """n half-sent requests held open, a probe meanwhile, then all closed at once."""
    d = Daemon("--model", model, "--source", str(video), "--loop")
    socks: list[socket.socket] = []
    try:
        _wait(d)
        idle = _probes(d.port, 5)
        refused = 0
        t0 = time.monotonic()
        for _ in range(n):
            try:
                c = socket.create_connection(("127.0.0.1", d.port), timeout=5)
                c.sendall(b"GET /api/predictions HTTP/1.1\r\nHost: x\r\n")
                socks.append(c)
            except OSError:
                refused += 1
        opened_s = time.monotonic() - t0
        during = _probes(d.port, 10)
        threads, rss = d.threads(), d.rss_mb()
        for c in socks:
            c.close()
        t_close = time.monotonic()
        cleared: list[float] = []

        def watch_close_wait() -> None:  # alongside the probes, not after them
            while time.monotonic() - t_close < 60:
                if _close_wait(d.port) == 0:
                    cleared.append(round(time.monotonic() - t_close, 2))
                    return
                time.sleep(0.05)

        watcher = threading.Thread(target=watch_close_wait)
        watcher.start()
        after = _probes(d.port, 25)
        watcher.join()
        clear_s = cleared[0] if cleared else None
        ok = [v for v in during + after if v is not None]
        return {
            "connections": n,
            "connect_failures": refused,
            "open_seconds": round(opened_s, 2),
            "probe_idle_ms": idle,
            "probe_during_ms": during,
            "probe_after_close_ms": after,
            "probe_failures": sum(v is None for v in during + after),
            "probe_max_ms": max(ok) if ok else None,
            "threads_during": threads,
            "rss_during_mb": round(rss, 1),
            "close_wait_cleared_s": clear_s,
            "alive": d.proc.poll() is None,
        }
    finally:
        for c in socks:
            c.close()
        d.stop()


def keepalive(Daemon: Any, model: str, video: Path, n: int = 300) -> dict:
    d = Daemon("--model", model, "--source", str(video), "--loop")
    try:
        _wait(d)
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        ka = []
        for _ in range(n):
            t = time.perf_counter()
            c.request("GET", "/healthz")
            c.getresponse().read()
            ka.append((time.perf_counter() - t) * 1e3)
        c.close()
        fresh = [_get(d.port, "/healthz")[1] for _ in range(n // 3)]
        return {
            "requests": n,
            "keepalive_p50_ms": round(float(np.percentile(ka, 50)), 3),
            "keepalive_p99_ms": round(float(np.percentile(ka, 99)), 3),
            "keepalive_rps": round(n / (sum(ka) / 1e3), 1),
            "new_connection_p50_ms": round(float(np.percentile(fresh, 50)), 3),
        }
    finally:
        d.stop()


def source_outage(Daemon: Any, model: str, video: Path, seconds: float) -> dict:
    """B reads A's MJPEG through a relay; the relay is cut for `seconds`."""
    from daemon_fixtures import TcpProxy

    a = Daemon("--model", model, "--source", str(video), "--loop")
    proxy = TcpProxy(a.port).up()
    b = None
    try:
        b = Daemon("--model", model, "--source", f"http://127.0.0.1:{proxy.port}/stream.mjpg")
        _wait(b, 20)
        proxy.down()
        t_down = time.monotonic()
        time.sleep(seconds)
        proxy.up()
        t_up = time.monotonic()
        start = b.health()["inferences"]
        while b.health()["inferences"] < start + 2:
            if time.monotonic() - t_up > 120:
                break
            time.sleep(0.02)
        t_rec = time.monotonic()
        waits = [float(w) for w in re.findall(r"retrying in ([0-9.]+) ?s", b.output())]
        return {
            "outage_s": seconds,
            "recovery_after_upstream_back_s": round(t_rec - t_up, 2),
            "since_outage_began_s": round(t_rec - t_down, 2),
            "longest_backoff_s": max(waits) if waits else None,
            "reconnect_attempts": len(waits),
        }
    finally:
        if b is not None:
            b.stop()
        proxy.down()
        a.stop()


def _decisions(log: Path) -> list[tuple[int, float]]:
    """(seq, wall time) of every result that changed the top label (what MQTT must send)."""
    out, last = [], object()
    for line in log.read_text().splitlines():
        r = json.loads(line)
        if "event" not in r and r["label"] != last:
            out.append((r["seq"], r["time"]))
        if "event" not in r:
            last = r["label"]
    return out


def _mqtt_round(Daemon: Any, model: str, video: Path, seconds: float, tmp: Path, qos: int) -> dict:
    from daemon_fixtures import Broker, Subscriber, TcpProxy

    broker = Broker(tmp).start()
    proxy = TcpProxy(broker.port).up()
    sub = Subscriber(broker.port, "edgecnn/predictions")
    arrivals: list[tuple[float, Any]] = []

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        try:
            arrivals.append((time.time(), json.loads(msg.payload)))
        except ValueError:  # the retained online/offline status
            arrivals.append((time.time(), msg.payload.decode(errors="replace")))

    sub.c.on_message = on_message
    log = tmp / f"mqtt-qos{qos}.jsonl"
    log.unlink(missing_ok=True)
    d = Daemon("--model", model, "--source", str(video), "--loop", "--log-file", str(log),
               "--mqtt-host", "127.0.0.1", "--mqtt-port", str(proxy.port), "--mqtt-qos", str(qos))  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while sum(isinstance(m, dict) for _, m in arrivals) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        t_down = time.time()
        proxy.down()
        time.sleep(seconds)
        t_up = time.time()
        proxy.up()
        time.sleep(max(8.0, seconds))
    finally:
        d.stop()
        sub.close()
        proxy.down()
        broker.stop()
    decided = _decisions(log)
    got = {m["seq"] for _, m in arrivals if isinstance(m, dict) and m.get("reason") == "change"}
    last_seen = max(got) if got else 0
    window = [(q, t) for q, t in decided if q <= last_seen]
    lost = [(q, t) for q, t in window if q not in got]
    first_back = min((t for t, m in arrivals if t > t_up and isinstance(m, dict)), default=None)
    return {
        "qos": qos,
        "changes_decided": len(window),
        "lost_total": len(lost),
        "lost_during_outage": sum(t_down <= t < t_up for _, t in lost),
        "lost_after_link_back": sum(t >= t_up for _, t in lost),
        "decided_during_outage": sum(t_down <= t < t_up for _, t in window),
        "first_message_after_link_back_s": round(first_back - t_up, 2) if first_back else None,
        "false_changes": len(
            [
                m
                for _, m in arrivals
                if isinstance(m, dict)
                and m.get("reason") == "change"
                and m["seq"] not in dict(decided)
            ]
        ),  # fmt: skip
    }


def mqtt_outage(Daemon: Any, model: str, video: Path, seconds: float, tmp: Path) -> dict:
    return {f"qos{q}": _mqtt_round(Daemon, model, video, seconds, tmp, q) for q in (0, 1)}


def unit_exposure(repo: Path) -> dict:
    analyze = shutil.which("systemd-analyze")
    unit = repo / "device" / "edgecnn.service"
    if analyze is None:
        return {"error": "systemd-analyze not installed"}
    r = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", r.stdout)
    return {"unit": str(unit), "exposure": float(m.group(1)) if m else None,
            "rating": m.group(2) if m else r.stderr[-300:]}  # fmt: skip
