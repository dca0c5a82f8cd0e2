"""Benchmark `edgecnn serve`: throughput, API latency under load, memory, and the limits of
issue 12 (uploads, half-open floods, keep-alive, source and broker outages, the unit).

    python tools/bench_daemon.py --model BUILD_DIR [--video FILE] [--load-seconds 60]
                                 [--clients 50] [--rss-frames 10000] [--json out.json]
                                 [--parts uploads,flood,keepalive,source_outage,mqtt_outage,unit]
                                 [--repo /path/to/other/checkout]   # "before" figures

1. Throughput: the daemon classifies a looped video file with `--no-pace`,
   once with `--sync` (every frame) and once in its normal latest-frame mode;
   its FPS (from /healthz counters over a fixed window) is compared with an
   offline loop over the same frames with the same model and no server
   (decode + preprocess + run, one process). Rounds alternate so background
   load hits both alike; medians are reported. Goal: daemon >= 0.9x offline.
2. Load: N concurrent keep-alive clients POST a real image to /api/predict
   for T seconds against a daemon that is also classifying the video;
   p50/p99 latency, requests/s and failures. Loopback only.
3. Paced: the video at its own 30 fps, as from a camera: FPS, drops, CPU.
4. Memory: RSS of the daemon process after a warm-up and after 10,000 more
   classified frames (`--no-pace`, looped video).

5. uploads: peak RSS (VmHWM) of the daemon while 8 clients POST a maximal
   upload at once (default 4000x4000 RGBA photo PNG: the 16 Mpx cap).
6. flood: N connections that send half a request head and wait; a probe's
   /healthz latency during the flood and after all N close at once, threads,
   RSS, and how long sockets stay in CLOSE-WAIT.
7. keepalive: p50 of GET /healthz on one keep-alive connection, and without.
8. source_outage: daemon B classifies daemon A's MJPEG stream through a relay
   that is cut for 10 s; time from the link's return to B classifying again.
9. mqtt_outage: mosquitto behind a relay cut for 10 s, at QoS 0 and QoS 1;
   changes decided (from the prediction log) against changes received by a
   subscriber on the broker itself: lost during the outage and after it.
10. unit: `systemd-analyze security --offline=true` exposure of the unit.

Each measurement runs the daemon in its own process; the offline loop runs
in this process while no daemon is running. Device side only (no TensorFlow).
`--repo` runs another checkout's daemon (e.g. the commit before a fix) for
before/after figures; parts that need options it lacks are skipped there.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DAEMON_REPO = REPO  # --repo: whose `edgecnn serve` runs
sys.path.insert(0, str(REPO / "tests"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_video(path: Path, repeat: int = 2) -> Path:
    """The digits test split (real images), 96x96, each image 3 frames, `repeat` times over."""
    import cv2

    from edgecnn.data import load_dataset

    x = load_dataset("digits", seed=0).x_test
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (96, 96))
    for _ in range(repeat):
        for img in x:
            big = cv2.resize(img[..., 0], (96, 96), interpolation=cv2.INTER_NEAREST)
            for _ in range(3):
                w.write(cv2.cvtColor(big, cv2.COLOR_GRAY2BGR))
    w.release()
    return path


class Daemon:
    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="bench-serve-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgecnn.cli", "serve", *args, "--port", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=DAEMON_REPO,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("serve did not start")

    def health(self) -> dict:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("GET", "/healthz")
        data = json.loads(c.getresponse().read())
        c.close()
        return data

    def cpu_seconds(self) -> float:
        """User + system CPU time of the daemon process (robust to other load on the machine)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self, key: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def threads(self) -> int:
        return len(list(Path(f"/proc/{self.proc.pid}/task").iterdir()))

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


def offline_fps(model: str, video: Path) -> dict:
    """Decode + preprocess + run every frame in one loop, no server."""
    import cv2

    from edgecnn.runtime import Runner

    runner = Runner(model)
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    cap.release()
    runner.run(runner.preprocess(cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB))[None])  # warm-up

    cap = cv2.VideoCapture(str(video))
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        runner.run(runner.preprocess(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))[None])
        n += 1
    with_decode = n / (time.perf_counter() - t0)
    per_cpu_s = n / (time.process_time() - c0)
    cap.release()

    rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]
    t0 = time.perf_counter()
    for f in rgb:
        runner.run(runner.preprocess(f)[None])
    infer_only = len(rgb) / (time.perf_counter() - t0)
    return {
        "frames": n,
        "fps_with_decode": with_decode,
        "fps_inference_only": infer_only,
        "frames_per_cpu_s": per_cpu_s,
    }


def daemon_fps(model: str, video: Path, seconds: float, sync: bool) -> dict:
    """Classified frames per second over a fixed window (--sync: every frame; else latest only)."""
    args = ["--model", model, "--source", str(video), "--loop", "--no-pace"]
    d = Daemon(*args, *(["--sync"] if sync else []))
    try:
        while d.health()["inferences"] < 50:
            time.sleep(0.1)
        h0, t0, c0 = d.health(), time.monotonic(), d.cpu_seconds()
        time.sleep(seconds)
        h1, t1, c1 = d.health(), time.monotonic(), d.cpu_seconds()
        n = h1["inferences"] - h0["inferences"]
        return {
            "fps": n / (t1 - t0),
            "frames_per_cpu_s": n / max(1e-9, c1 - c0),
            "captured_fps": (h1["frames"] - h0["frames"]) / (t1 - t0),
            "errors": h1["errors"],
        }
    finally:
        d.stop()


def throughput(model: str, video: Path, seconds: float, rounds: int) -> dict:
    """Alternate offline and daemon runs so background load hits both alike; report medians."""
    runs: dict[str, list[dict]] = {"offline": [], "sync": [], "latest": []}
    for i in range(rounds):
        runs["offline"].append(offline_fps(model, video))
        runs["sync"].append(daemon_fps(model, video, seconds, sync=True))
        runs["latest"].append(daemon_fps(model, video, seconds, sync=False))
        print(
            f"round {i + 1}:",
            {
                k: round(v[-1].get("fps", v[-1].get("fps_with_decode", 0)), 1)
                for k, v in runs.items()
            },
            flush=True,
        )

    def med(key: str, field: str) -> float:
        return float(np.median([r[field] for r in runs[key]]))

    off = med("offline", "fps_with_decode")
    return {
        "rounds": rounds,
        "offline_fps_with_decode": off,
        "offline_fps_inference_only": med("offline", "fps_inference_only"),
        "daemon_sync_fps": med("sync", "fps"),
        "daemon_latest_fps": med("latest", "fps"),
        "daemon_latest_captured_fps": med("latest", "captured_fps"),
        "ratio_sync_vs_offline": med("sync", "fps") / off,
        "ratio_latest_vs_offline": med("latest", "fps") / off,
        # Frames per CPU-second: what the daemon's machinery costs, independent of other load.
        "offline_frames_per_cpu_s": med("offline", "frames_per_cpu_s"),
        "daemon_sync_frames_per_cpu_s": med("sync", "frames_per_cpu_s"),
        "cpu_efficiency_sync_vs_offline": med("sync", "frames_per_cpu_s")
        / med("offline", "frames_per_cpu_s"),
    }


def paced(model: str, video: Path, seconds: float) -> dict:
    """The realistic case: frames arrive at the file's own rate (30 fps), as from a camera."""
    d = Daemon("--model", model, "--source", str(video), "--loop")
    try:
        while d.health()["inferences"] < 10:
            time.sleep(0.1)
        h0, t0, c0 = d.health(), time.monotonic(), d.cpu_seconds()
        time.sleep(seconds)
        h1, t1, c1 = d.health(), time.monotonic(), d.cpu_seconds()
        return {
            "fps": (h1["inferences"] - h0["inferences"]) / (t1 - t0),
            "dropped": h1["dropped"] - h0["dropped"],
            "cpu_percent_of_one_core": 100 * (c1 - c0) / (t1 - t0),
        }
    finally:
        d.stop()


def load_test(model: str, video: Path, clients: int, seconds: float) -> dict:
    from PIL import Image

    from edgecnn.data import load_dataset

    x = load_dataset("digits", seed=0).x_test
    buf = io.BytesIO()
    Image.fromarray(x[0][..., 0]).resize((64, 64)).save(buf, format="PNG")
    body = buf.getvalue()
    d = Daemon("--model", model, "--source", str(video), "--loop")
    lat: list[list[float]] = [[] for _ in range(clients)]
    fails = [0] * clients
    stop_at = time.monotonic() + seconds
    start = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
        start.wait()
        while time.monotonic() < stop_at:
            t = time.perf_counter()
            try:
                conn.request("POST", "/api/predict", body, {"Content-Type": "image/png"})
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
            if ok:
                lat[i].append(time.perf_counter() - t)
            else:
                fails[i] += 1
        conn.close()

    try:
        while d.health()["inferences"] < 10:
            time.sleep(0.1)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        start.wait()
        t0 = time.monotonic()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        h = d.health()
    finally:
        d.stop()
    all_lat = np.array([v for per in lat for v in per]) * 1e3
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": int(all_lat.size),
        "failed": int(sum(fails)),
        "rps": all_lat.size / elapsed,
        "p50_ms": float(np.percentile(all_lat, 50)) if all_lat.size else None,
        "p99_ms": float(np.percentile(all_lat, 99)) if all_lat.size else None,
        "video_fps_during_load": h["fps"],
    }


def rss_growth(model: str, video: Path, frames: int) -> dict:
    d = Daemon("--model", model, "--source", str(video), "--loop", "--no-pace")
    try:
        while d.health()["inferences"] < 500:
            time.sleep(0.1)
        start = d.health()["inferences"]
        rss0 = d.rss_mb()
        t0 = time.monotonic()
        while d.health()["inferences"] < start + frames:
            time.sleep(0.2)
        rss1 = d.rss_mb()
        return {
            "frames": frames,
            "rss_start_mb": round(rss0, 1),
            "rss_end_mb": round(rss1, 1),
            "growth_mb": round(rss1 - rss0, 2),
            "seconds": round(time.monotonic() - t0, 1),
        }
    finally:
        d.stop()


from bench_daemon_limits import (  # noqa: E402 - the issue-12 measurements live beside
    flood,
    keepalive,
    mqtt_outage,
    source_outage,
    unit_exposure,
    uploads,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="build directory")
    ap.add_argument("--video", help="video file (default: digits test split written to a temp MP4)")
    ap.add_argument("--fps-seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--load-seconds", type=float, default=60.0)
    ap.add_argument("--rss-frames", type=int, default=10_000)
    ap.add_argument(
        "--parts",
        default="throughput,paced,load,rss,uploads,flood,keepalive,source_outage,mqtt_outage,unit",
        help="comma-separated subset to run",
    )
    ap.add_argument("--flood", type=int, default=2500, help="half-open connections")
    ap.add_argument("--upload-size", type=int, default=4000, help="side of the square upload")
    ap.add_argument("--outage-seconds", type=float, default=10.0)
    ap.add_argument("--repo", help="run this checkout's daemon instead (before/after figures)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    global DAEMON_REPO
    if a.repo:
        DAEMON_REPO = Path(a.repo).resolve()

    tmp = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    video = Path(a.video) if a.video else make_video(tmp / "digits.mp4")
    out: dict = {
        "model": a.model,
        "video": str(video),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),  # other work on the machine skews every figure
    }
    parts = {p.strip() for p in a.parts.split(",")}
    if "throughput" in parts:
        out["throughput"] = throughput(a.model, video, a.fps_seconds, a.rounds)
        print("throughput", out["throughput"], flush=True)
    if "paced" in parts:
        out["paced"] = paced(a.model, video, a.fps_seconds)
        print("paced", out["paced"], flush=True)
    if "load" in parts:
        out["load"] = load_test(a.model, video, a.clients, a.load_seconds)
        print("load", out["load"], flush=True)
    if "rss" in parts:
        out["rss"] = rss_growth(a.model, video, a.rss_frames)
        print("rss", out["rss"], flush=True)
    limits = {
        "uploads": lambda: uploads(Daemon, a.model, video, a.upload_size),
        "flood": lambda: flood(Daemon, a.model, video, a.flood),
        "keepalive": lambda: keepalive(Daemon, a.model, video),
        "source_outage": lambda: source_outage(Daemon, a.model, video, a.outage_seconds),
        "mqtt_outage": lambda: mqtt_outage(Daemon, a.model, video, a.outage_seconds, tmp),
        "unit": lambda: unit_exposure(DAEMON_REPO),
    }
    for name, run in limits.items():
        if name in parts:
            out[name] = run()
            print(name, out[name], flush=True)
    out["loadavg_at_end"] = os.getloadavg()
    shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
