"""Helpers for the closed-loop tests (capture, collect, label, retrain, deploy back).

The first model is cnn_small trained on scikit-learn digits (28x28, int8 TFLite only, to keep
the builds quick); the camera is a video of real MNIST-5k digits, which that model gets
mostly wrong: another source of the same classes, as a camera in the field would be.
Captures are made by the real daemon (`edgecnn serve --capture-dir`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
from daemon_fixtures import REPO, http, write_video

CAMERA_IMAGES = 600  # MNIST-5k images the camera shows (what gets captured and labelled)
EVAL_IMAGES = 500  # other MNIST-5k images: the before/after accuracy is measured on these
FIRST_EPOCHS = 10
_lock = threading.Lock()


def first_model(tmp_path_factory: Any) -> tuple[Path, Path]:
    """(training dir, build dir): cnn_small on digits, 28x28, int8 TFLite; once per session."""
    from edgecnn.build import convert_model
    from edgecnn.train import TrainConfig, train

    with _lock:
        base = tmp_path_factory.getbasetemp() / "loop_first"
        run, build = base / "run", base / "build"
        if not (build / "manifest.json").exists():
            cfg = TrainConfig(arch="cnn_small", data="digits", epochs=FIRST_EPOCHS, early_stopping=0,
                              verbose=0, name="digits_small")  # fmt: skip
            train(cfg, run)
            convert_model(run, "digits", build, precisions=["int8"], formats=["tflite"])
        return run, build


def mnist_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(camera images, labels, evaluation images, labels): disjoint MNIST-5k draws."""
    from edgecnn.data import load_dataset

    m = load_dataset("mnist5k", seed=0)
    x = np.concatenate([m.x_train, m.x_val, m.x_test])
    y = np.concatenate([m.y_train, m.y_val, m.y_test])
    idx = np.random.default_rng(17).permutation(len(y))
    cam, ev = idx[:CAMERA_IMAGES], idx[CAMERA_IMAGES : CAMERA_IMAGES + EVAL_IMAGES]
    return x[cam], y[cam], x[ev], y[ev]


def mnist_videos(tmp_path_factory: Any) -> dict[str, Any]:
    """The camera video and the evaluation video (one frame per image), with their labels."""
    with _lock:
        base = tmp_path_factory.getbasetemp() / "loop_videos"
        xc, yc, xe, ye = mnist_split()
        if not (base / "eval.mp4").exists():
            base.mkdir(exist_ok=True)
            write_video(base / "camera.tmp.mp4", xc, k=1)
            write_video(base / "eval.tmp.mp4", xe, k=1)
            os.replace(base / "camera.tmp.mp4", base / "camera.mp4")
            os.replace(base / "eval.tmp.mp4", base / "eval.mp4")
        return {"camera": base / "camera.mp4", "camera_y": yc, "eval": base / "eval.mp4",
                "eval_y": ye}  # fmt: skip


def serve_once(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`edgecnn serve ... --sync --no-pace --exit-on-end` to the end of a file source."""
    from daemon_fixtures import free_port

    return subprocess.run(
        [sys.executable, "-m", "edgecnn.cli", "serve", *args, "--sync", "--no-pace",
         "--exit-on-end", "--port", str(free_port())],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
    )  # fmt: skip


def log_accuracy(log: Path, labels: np.ndarray) -> float:
    """The daemon's accuracy from its --log-file: one prediction per frame, one frame per image."""
    preds = [r for r in map(json.loads, log.read_text().splitlines()) if "event" not in r]
    assert sorted(r["pos"] for r in preds) == list(range(len(labels))), "--sync lost frames"
    return float(np.mean([r["label"] == str(labels[r["pos"]]) for r in preds]))


def sidecars(folder: Path) -> dict[str, dict[str, Any]]:
    """{capture stem: sidecar} under a folder (recursively)."""
    return {p.name[: -len(".json")]: json.loads(p.read_text()) for p in folder.rglob("*.json")
            if not p.name.startswith(".")}  # fmt: skip


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


class LabelProc:
    """`edgecnn label FOLDER --port 0` in a subprocess; the URL from its first stderr line."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgecnn.cli", "label", str(folder), "--port", "0", *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = self.proc.stderr.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert m, line + self.proc.stderr.read()
        self.url = m.group(1)

    def post(self, path: str, body: dict, **headers: str) -> tuple[int, dict]:
        code, _, data = http("POST", self.url + path, json.dumps(body).encode(),
                             {"Content-Type": "application/json", "X-Edgecnn-Label": "1", **headers})  # fmt: skip
        return code, json.loads(data)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        return out

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
