"""Bench orchestration: per-artifact subprocess runs, SSH runs on a device, or estimates.

`bench_build(build_dir, device=...)` is what `edgecnn bench` and the `edgecnn run`
bench stage call. Three modes, picked from the device profile:
  * local    - the device is this machine: each artifact is timed by
               `edgecnn.bench.worker` in a fresh process;
  * ssh      - `host=` given: artifact, manifest, data and the runtime's source
               are copied to the device and the same worker runs in its Python;
  * estimate - otherwise: per-layer MACs x the device's calibrated throughput.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgecnn.bench.devices import Device, get_device, runs_here
from edgecnn.bench.estimate import estimate_artifact
from edgecnn.bench.worker import MARKER
from edgecnn.errors import BadInput
from edgecnn.manifest import load_manifest
from edgecnn.runtime.runner import artifact_matches, resolve, select_artifact

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding edgecnn/
# What the device needs to run the worker: the device side only, no TensorFlow.
RUNTIME_CORE = [
    "edgecnn/__init__.py",
    "edgecnn/errors.py",
    "edgecnn/fsutil.py",
    "edgecnn/manifest.py",
    "edgecnn/bench/__init__.py",
    "edgecnn/bench/worker.py",
]


def runtime_files() -> list[str]:
    """Source files copied to a device for `bench --host`: the core plus all of edgecnn/runtime."""
    runtime = sorted(
        str(p.relative_to(PACKAGE_ROOT))
        for p in (PACKAGE_ROOT / "edgecnn" / "runtime").glob("*.py")
    )
    return RUNTIME_CORE + runtime


DEVICE_INSTALL = "pip install 'edgecnn[device]' (or: pip install numpy pillow ai-edge-litert)"


def select_artifacts(
    build_dir: Path, manifest: dict[str, Any], specs: list[str] | None, device: Device
) -> list[dict[str, Any]]:
    """The artifacts to bench: those named, else all (Edge TPU devices: int8 and compiled ones)."""
    arts = manifest.get("artifacts") or []
    if not arts:
        raise BadInput(f"{build_dir} lists no artifacts")
    if not specs:
        return list(arts)
    chosen: list[dict[str, Any]] = []
    for spec in specs:
        hits = [a for a in arts if artifact_matches(a, spec)] or [select_artifact(manifest, spec)]
        chosen += [a for a in hits if a not in chosen]
    return sorted(chosen, key=arts.index)


def prepare_data(name: str, manifest: dict[str, Any], limit: int | None, out: Path) -> Path:
    """The dataset's test split at the model's input shape, as an npz the worker can read."""
    import numpy as np

    from edgecnn.data import adapt_images, load_dataset

    ds = load_dataset(name, seed=0)
    labels = manifest["model"]["labels"]
    if ds.num_classes != len(labels):
        raise BadInput(
            f"dataset {name!r} has {ds.num_classes} classes but the model has {len(labels)}"
        )
    x, y = ds.x_test, ds.y_test
    if limit is not None and limit < len(y):
        x, y = x[:limit], y[:limit]
    shape = manifest["model"]["input"]["shape"]
    x = adapt_images(x, shape)
    np.savez(out, x=x, y=y.astype(np.int64))
    return out


def _parse_worker(stdout: str, stderr: str, returncode: int) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    tail = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    detail = tail[-1] if tail else f"exit code {returncode}"
    if returncode < 0:
        detail = f"crashed with signal {-returncode}"
    return {"error": f"bench worker failed: {detail}", "kind": "crash"}


def _worker_opts(build: str, art: dict[str, Any], device: Device, threads: int | None, runs: int,
                 warmup: int, data: str | None, backend: str | None) -> dict[str, Any]:  # fmt: skip
    return {
        "build": build,
        "artifact": Path(art["path"]).name,
        "backend": backend or (device.backend if art.get("format") == "edgetpu" else "auto"),
        "threads": threads if threads is not None else device.threads,
        "runs": runs,
        "warmup": warmup,
        "data": data,
    }


def run_local(opts: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One artifact, one fresh Python process (cold start, own memory, own thread pools)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "edgecnn.bench.worker", json.dumps(opts)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s", "kind": "timeout"}
    return _parse_worker(proc.stdout, proc.stderr, proc.returncode)


def _row(
    art: dict[str, Any], device: Device, mode: str, result: dict[str, Any], name: str
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": name,
        "artifact": art["path"],
        "format": art.get("format"),
        "precision": art.get("precision"),
        "device": device.name,
        "mode": mode,
        "size_mb": (art.get("size") or 0) / 1e6,
    }
    if "error" in result:
        row.update(status="failed", error=result["error"], error_kind=result.get("kind"))
    else:
        row.update(status="estimate" if mode == "estimate" else "ok", **result)
        row["ms"] = result.get("mean_ms", result.get("estimate_ms"))
        row["fps"] = result.get("fps", result.get("estimate_fps"))
    return row


def bench_build(
    build_dir: str | os.PathLike,
    device: str = "host",
    runs: int = 100,
    warmup: int = 10,
    data: str | None = None,
    host: str | None = None,
    threads: int | None = None,
    artifacts: list[str] | None = None,
    estimate: bool = False,
    limit: int | None = 2000,
    known_hosts: str | None = None,
    identity: str | None = None,
    remote_python: str = "python3",
    backend: str | None = None,
    timeout: float = 600.0,
) -> list[dict[str, Any]]:
    """Bench every (or each named) artifact of a build on `device`; one dict per artifact.

    `build_dir` may also be one artifact file. Measured rows carry init/first/
    warm-up times, latency stats (mean/std/min/p50/p90/p99/max ms), fps,
    peak_rss_mb, size and accuracy (with `data`); estimated rows carry
    estimate_ms and the MAC basis. Local host rows also carry the host estimate
    and its error against the measurement.
    """
    if runs < 1 or warmup < 0:
        raise BadInput("--runs must be >= 1 and --warmup >= 0")
    dev = get_device(device)
    p = Path(build_dir)
    build, manifest, one = resolve(p) if p.is_file() else (p, load_manifest(p), None)
    name = str(manifest["model"].get("name", build.name))
    arts = [one] if one is not None else select_artifacts(build, manifest, artifacts, dev)
    if host:
        mode = "ssh"
    elif estimate or not runs_here(dev):
        mode = "estimate"
    else:
        mode = "local"

    if mode == "estimate":
        return [_row(a, dev, mode, _safe_estimate(build, a, manifest, dev), name) for a in arts]

    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-") as tmp:
        data_path = prepare_data(data, manifest, limit, Path(tmp) / "data.npz") if data else None
        if mode == "ssh":
            from edgecnn.bench.ssh import run_remote

            results = run_remote(
                host, build, manifest, arts, dev, threads, runs, warmup, data_path,
                known_hosts=known_hosts, identity=identity, python=remote_python,
                backend=backend, timeout=timeout,
            )  # fmt: skip
        else:
            results = [
                run_local(
                    _worker_opts(
                        str(build),
                        a,
                        dev,
                        threads,
                        runs,
                        warmup,
                        str(data_path) if data_path else None,
                        backend,
                    ),
                    timeout,
                )  # fmt: skip
                for a in arts
            ]
    rows = [_row(a, dev, mode, r, name) for a, r in zip(arts, results, strict=True)]
    for a, row in zip(arts, rows, strict=True):
        if row["status"] == "ok":
            est = _safe_estimate(build, a, manifest, dev)
            if "estimate_ms" in est:
                row["estimate_ms"] = est["estimate_ms"]
                row["estimate_error_pct"] = 100.0 * (est["estimate_ms"] - row["ms"]) / row["ms"]
                row["macs"] = est["macs"]
    return rows


def _safe_estimate(
    build: Path, art: dict[str, Any], manifest: dict[str, Any], dev: Device
) -> dict[str, Any]:
    try:
        return estimate_artifact(build, art, manifest, dev)
    except BadInput as e:
        return {"error": str(e), "kind": "bad_input"}
