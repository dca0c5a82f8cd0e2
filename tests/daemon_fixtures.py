"""Helpers for the daemon tests: a real trained model, a real video, a served daemon process.

The model is trained and converted once per test session (cached under the
session's base temp dir, so every daemon test module shares it); the video is
written by OpenCV (mp4v) from real scikit-learn digits test images with known
labels. `Served` runs `edgecnn serve` as a subprocess and stops it by its PID.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
FRAMES_PER_IMAGE = 3
ANALYZE = shutil.which("systemd-analyze")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
VIDEO_SIZE = 96
_lock = threading.Lock()


def daemon_build(tmp_path_factory: Any) -> Path:
    """A cnn_small trained on digits (8x8x1), converted: build dir with manifest + artifacts."""
    with _lock:
        out = tmp_path_factory.getbasetemp() / "daemon_build"
        if not (out / "manifest.json").exists():
            sys.path.insert(0, str(Path(__file__).parent))
            from builds import make_build

            tmp = out.with_name("daemon_build.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            make_build(tmp, "digits", "cnn_small", epochs=5)
            os.replace(tmp, out)
        return out


def digits_test() -> tuple[np.ndarray, np.ndarray]:
    from edgecnn.data import load_dataset

    ds = load_dataset("digits", seed=0)
    return ds.x_test, ds.y_test


def write_video(
    path: Path,
    images: np.ndarray,
    k: int = FRAMES_PER_IMAGE,
    size: int = VIDEO_SIZE,
    fps: float = 30.0,
) -> Path:
    """Each image k times, upscaled (nearest) to size x size, as an mp4v MP4."""
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    assert w.isOpened(), "OpenCV cannot write mp4v here"
    for img in images:
        big = cv2.resize(
            img[..., 0] if img.shape[-1] == 1 else img,
            (size, size),
            interpolation=cv2.INTER_NEAREST,
        )
        bgr = (
            cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
            if big.ndim == 2
            else cv2.cvtColor(big, cv2.COLOR_RGB2BGR)
        )
        for _ in range(k):
            w.write(bgr)
    w.release()
    return path


def daemon_video(tmp_path_factory: Any) -> tuple[Path, np.ndarray]:
    """(video path, label per image) for the digits test split; cached per session."""
    with _lock:
        path = tmp_path_factory.getbasetemp() / "daemon_digits.mp4"
        x, y = digits_test()
        if not path.exists():
            write_video(path.with_suffix(".tmp.mp4"), x)
            os.replace(path.with_suffix(".tmp.mp4"), path)
        return path, y


def decoded_frames(path) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(frames)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(
    method: str,
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body); HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(url: str, **kw: Any) -> tuple[int, Any]:
    code, _, body = http("GET", url, **kw)
    return code, json.loads(body)


class Served:
    """`edgecnn serve ...` in a subprocess on a free loopback port; stop() sends SIGTERM by PID."""

    def __init__(
        self,
        *args: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        wait: bool = True,
    ):
        self.port = port or free_port()
        self.args = [*args]
        if "--port" not in self.args and not any(a.startswith("--config") for a in self.args):
            self.args += ["--port", str(self.port)]
        self.log = (
            Path(os.environ.get("TMPDIR", "/tmp")) / f"edgecnn-serve-{os.getpid()}-{self.port}.log"
        )
        self._logf = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgecnn.cli", "serve", *self.args],
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            cwd=cwd or REPO,
            env={**os.environ, **(env or {})},
        )
        if wait:
            self.wait_ready()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def output(self) -> str:
        if not self._logf.closed:
            self._logf.flush()
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}:\n{self.output()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"serve did not listen on {self.port}:\n{self.output()[-2000:]}")

    def wait_for(self, predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
                if last:
                    return last
            except (OSError, ValueError, KeyError, TypeError):
                pass
            time.sleep(0.1)
        raise AssertionError(
            f"timed out waiting for {what}; last={last!r}\n{self.output()[-2000:]}"
        )

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 5.0) -> float:
        """SIGTERM, wait; returns seconds until exit (kills and fails past `timeout`)."""
        if self.proc.poll() is not None:
            self._logf.close()
            return 0.0
        t0 = time.monotonic()
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self._logf.close()
            raise AssertionError(
                f"serve did not stop within {timeout}s:\n{self.output()[-2000:]}"
            ) from None
        self._logf.close()
        return time.monotonic() - t0

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def verify_unit(unit: Path, root: Path) -> None:
    """`systemd-analyze verify --man=no` inside a scratch root holding the unit's executables.

    The root gets the host's stock units (for the targets the unit names),
    `kill` (ExecReload) and a stand-in for every absolute ExecStart binary, so
    the check is about the unit file itself. Any output at all fails.
    """
    if ANALYZE is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    text = unit.read_text()
    (root / "usr/lib/systemd").mkdir(parents=True, exist_ok=True)
    if not (root / "bin").exists():
        (root / "bin").symlink_to("usr/bin")
    shutil.copytree(
        "/usr/lib/systemd/system",
        root / "usr/lib/systemd/system",
        symlinks=True,
        dirs_exist_ok=True,
    )
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(shutil.which("kill") or "/usr/bin/kill", root / "usr/bin/kill")
    for exe in re.findall(r"^Exec\w+=[-@:+!]*(/\S+)", text, flags=re.M):
        target = root / exe.lstrip("/")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("#!/bin/sh\n")
            target.chmod(0o755)
    dest = root / "etc/systemd/system" / unit.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    r = subprocess.run(
        [ANALYZE, "verify", "--man=no", f"--root={root}", str(dest)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), r.stderr + r.stdout


class TcpProxy:
    """A loopback TCP relay to `target_port` that can be cut and restored: an outage of the
    upstream (a broker, a camera) as the daemon sees it, while the upstream itself keeps
    running. `down()` closes the listener and every relayed connection."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target = target_port
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> TcpProxy:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()
        return self

    def down(self) -> None:
        ls, self._listener = self._listener, None
        if ls is not None:
            try:  # wakes the accept() in the relay thread; close() alone would not
                ls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            ls.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Broker:
    """mosquitto on a free loopback port with a temp config; stopped by its PID."""

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.conf = tmp / f"mosquitto-{self.port}.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        import socket

        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.3):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


class Subscriber:
    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict | str]] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        self.c.on_connect = lambda c, u, f, rc, p=None: (
            c.subscribe([(topic, 1), (f"{topic}/status", 1)]),
            self.ready.set(),
        )
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.ready.wait(10)
        time.sleep(0.2)  # SUBACK

    def _on_message(self, c, u, msg) -> None:
        text = msg.payload.decode()
        try:
            self.messages.append((msg.topic, json.loads(text)))
        except json.JSONDecodeError:
            self.messages.append((msg.topic, text))

    def predictions(self) -> list[dict]:
        return [m for t, m in self.messages if isinstance(m, dict)]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
