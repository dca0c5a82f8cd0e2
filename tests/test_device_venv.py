"""Proof that the device side installs and runs without TensorFlow.

A fresh virtual environment (no system site-packages) gets only
`pip install edgecnn[device]`; it then runs a real model with the runtime and
`edgecnn predict`. TensorFlow is not even installable into it by this path.
About 25 s with a warm pip cache (60 s cold). Set EDGECNN_SKIP_VENV_TEST=1 to skip offline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_fixtures import daemon_build, digits_test

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("EDGECNN_SKIP_VENV_TEST") == "1", reason="EDGECNN_SKIP_VENV_TEST=1"
)
def test_fresh_venv_with_device_extra_runs_a_model(tmp_path_factory, tmp_path):
    from PIL import Image

    build = daemon_build(tmp_path_factory)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    # Build the wheel with the host's setuptools (no isolated build env to download),
    # then install it with only the device extra, as on a Pi.
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(REPO),
            "-w",
            str(wheels),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(wheels.glob("edgecnn-*.whl"))
    pip = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[device]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    x, y = digits_test()
    img = tmp_path / "digit.png"
    Image.fromarray(x[0][..., 0]).save(img)
    code = f"""
import importlib.util, json, sys
import numpy as np
from edgecnn.runtime import Runner
r = Runner({str(build)!r})
probs = r.predict_batch(np.load({str(tmp_path / "x.npy")!r}))
print(json.dumps({{
    "pred": probs.argmax(1).tolist(),
    "tf_installed": importlib.util.find_spec("tensorflow") is not None,
    "heavy": [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")],
    "edgecnn_from": __import__("edgecnn").__file__,
}}))
"""
    import numpy as np

    np.save(tmp_path / "x.npy", x[:50])
    out = subprocess.run(
        [str(py), "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert not res["tf_installed"] and res["heavy"] == []
    assert str(venv) in res["edgecnn_from"]  # the installed copy, not the checkout
    assert (np.array(res["pred"]) == y[:50]).mean() > 0.8
    cli = subprocess.run(
        [str(venv / "bin" / "edgecnn"), "predict", str(build), str(img), "--json", "--top-k", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["results"][0]["predictions"][0]["index"] == res["pred"][0]
    lean_install_benches_and_serves(venv, build, tmp_path, img)


def lean_install_benches_and_serves(venv: Path, build: Path, tmp_path: Path, img: Path) -> None:
    """[device] is LiteRT + Pillow + prometheus-client + paho-mqtt: no OpenCV, no ONNX Runtime,
    no matplotlib. bench still prints and saves its results; serve streams MJPEG from an image
    folder; what needs a missing extra says which one, in one line."""
    import shutil
    import urllib.request

    from daemon_fixtures import free_port

    py, edgecnn = str(venv / "bin" / "python"), str(venv / "bin" / "edgecnn")
    probe = "import importlib.util as u; print([m for m in ('cv2', 'onnxruntime', 'matplotlib') if u.find_spec(m)])"
    assert subprocess.run([py, "-c", probe], capture_output=True, text=True).stdout.strip() == "[]"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [edgecnn, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path
        )

    mine = shutil.copytree(build, tmp_path / "build")
    bench = run("bench", str(mine), "--artifact", "int8.tflite", "--runs", "20", "--warmup", "2")
    assert bench.returncode == 0, bench.stderr  # item 1: results first, the plot is optional
    assert "measured on host" in bench.stdout and "matplotlib is not installed" in bench.stdout
    saved = json.loads((mine / "bench_host.json").read_text())["results"]
    assert saved[0]["status"] == "ok" and len(saved[0]["latencies_ms"]) >= 20  # and >= 1 s
    # No onnx package here: bench counts the ONNX artifact's MACs on its TFLite twin, and
    # gets what this (train) venv counts on the ONNX graph itself.
    from edgecnn.bench.estimate import artifact_ops
    from edgecnn.manifest import load_manifest
    from edgecnn.runtime.opgraph import multiply_accumulates

    m = load_manifest(build)
    here = multiply_accumulates(artifact_ops(build, m.by_path("model_int8.onnx"), m))
    count = (
        "from pathlib import Path; from edgecnn.bench.estimate import artifact_ops; "
        "from edgecnn.manifest import load_manifest; "
        "from edgecnn.runtime.opgraph import multiply_accumulates; "
        f"b = Path({str(build)!r}); m = load_manifest(b); "
        "print(multiply_accumulates(artifact_ops(b, m.by_path('model_int8.onnx'), m)))"
    )
    there = subprocess.run([py, "-c", count], capture_output=True, text=True, cwd=tmp_path)
    assert there.returncode == 0 and int(there.stdout) == here > 0, there.stderr
    for args, extra in (
        (["predict", str(build), str(img), "--artifact", "int8.onnx"], "onnx"),
        (["serve", "--model", str(build), "--source", str(tmp_path / "x.npy"), "--port", "0"], "video"),
    ):  # fmt: skip
        bad = run(*args)
        lines = [x for x in bad.stderr.splitlines() if not x.startswith("INFO: Created")]
        assert bad.returncode == 2 and len(lines) == 1, bad.stderr
        assert f"pip install 'edgecnn[{extra}]'" in lines[0], lines
    folder = tmp_path / "frames"
    folder.mkdir()
    shutil.copy(img, folder / "a.png")
    port = free_port()
    proc = subprocess.Popen(
        [edgecnn, "serve", "--model", str(build), "--source", str(folder), "--loop", "--port",
         str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    try:
        jpeg = b""
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/stream.mjpg", timeout=5) as r:
                    jpeg = r.read(20000)
                if b"\xff\xd8" in jpeg:
                    break
            except OSError:
                import time

                time.sleep(0.2)
        assert b"\xff\xd8" in jpeg, "no MJPEG frame from a device-only install"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("EDGECNN_SKIP_VENV_TEST") == "1", reason="EDGECNN_SKIP_VENV_TEST=1"
)
@pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="tflite-runtime has no wheels for Python 3.12+"
)
def test_tflite_runtime_fallback_needs_numpy_1(tmp_path_factory, tmp_path):
    """Without LiteRT the runtime falls back to tflite-runtime 2.14, which needs numpy<2."""
    from PIL import Image

    build = daemon_build(tmp_path_factory)
    x, _ = digits_test()
    img = tmp_path / "digit.png"
    Image.fromarray(x[0][..., 0]).save(img)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "tflite-runtime==2.14.0", "numpy<2", "click", "pillow"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [py, "-m", "edgecnn.cli", "predict", str(build), str(img), "--json", "--top-k", "1"]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["backend"] == "tflite_runtime"
    subprocess.run([*pip, "numpy>=2"], check=True, capture_output=True, timeout=600)
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "tflite-runtime 2.14.0 needs numpy<2" in lines[0], bad.stderr
