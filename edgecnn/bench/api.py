"""Bench orchestration: per-artifact subprocess runs, SSH runs on a device, or estimates.

`bench_build(build_dir, BenchOptions(...))` is what `edgecnn bench` and the
`edgecnn run` bench stage call. Three modes, picked from the device profile:
  * local    - the device is this machine: each artifact is timed by
               `edgecnn.runtime.bench_worker` in a fresh process;
  * ssh      - `host` given: artifacts, manifest, data and the device package
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
from edgecnn.bench.options import BenchOptions, worker_opts
from edgecnn.bench.ssh import run_remote
from edgecnn.errors import BadInput
from edgecnn.manifest import Artifact, Manifest
from edgecnn.runtime.bench_worker import MODULE, parse_result
from edgecnn.runtime.formats import is_artifact_file
from edgecnn.runtime.runner import load_build, resolve, select_artifact

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding edgecnn/


def select_artifacts(
    build_dir: Path, manifest: Manifest, specs: list[str] | None
) -> list[Artifact]:
    """The artifacts to bench: those named, else all."""
    arts = manifest.artifacts
    if not arts:
        raise BadInput(f"{build_dir} lists no artifacts")
    if not specs:
        return list(arts)
    chosen: list[Artifact] = []
    for spec in specs:
        hits = [a for a in arts if a.matches(spec)] or [select_artifact(manifest, spec)]
        chosen += [a for a in hits if a not in chosen]
    return sorted(chosen, key=arts.index)


def prepare_data(name: str, manifest: Manifest, limit: int | None, out: Path) -> Path:
    """The dataset's test split at the model's input shape, as an npz the worker can read."""
    import numpy as np

    from edgecnn.data import load_dataset

    ds = load_dataset(name, **manifest.split_args(name))
    if ds.num_classes != len(manifest.labels):
        raise BadInput(
            f"dataset {name!r} has {ds.num_classes} classes but the model has {len(manifest.labels)}"
        )
    x, y = ds.adapted(tuple(manifest.input.shape), manifest.input.resize).split("test")
    if limit is not None and limit < len(y):
        x, y = x[:limit], y[:limit]
    np.savez(out, x=x, y=y.astype(np.int64))
    return out


def run_local(opts: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One artifact, one fresh Python process (cold start, own memory, own thread pools)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-m", MODULE, json.dumps(opts)],
            capture_output=True, text=True, timeout=timeout, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s", "kind": "timeout"}
    return parse_result(proc.stdout, proc.stderr, proc.returncode)


def _row(
    art: Artifact, device: Device, mode: str, result: dict[str, Any], name: str
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": name,
        "artifact": art.path,
        "format": art.format,
        "precision": art.precision,
        "device": device.name,
        "mode": mode,
        "size_mb": (art.size or 0) / 1e6,
    }
    if "error" in result:
        row.update(status="failed", error=result["error"], error_kind=result.get("kind"))
    else:
        row.update(status="estimate" if mode == "estimate" else "ok", **result)
        row["ms"] = result.get("mean_ms", result.get("estimate_ms"))
        row["fps"] = result.get("fps", result.get("estimate_fps"))
    return row


def _safe_estimate(
    build: Path, art: Artifact, manifest: Manifest, dev: Device, o: BenchOptions
) -> dict[str, Any]:
    try:
        return estimate_artifact(build, art, manifest, dev, o.threads, o.profile)
    except BadInput as e:
        return {"error": str(e), "kind": "bad_input"}


def _measure(
    build: Path, manifest: Manifest, arts: list[Artifact], dev: Device, o: BenchOptions
) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-") as tmp:
        data = prepare_data(o.data, manifest, o.limit, Path(tmp) / "data.npz") if o.data else None
        if o.host:
            return run_remote(o, build, manifest, arts, dev, data)
        return [
            run_local(worker_opts(str(build), a, dev, o, str(data) if data else None), o.timeout)
            for a in arts
        ]


ESTIMATE_FIELDS = (
    "estimate_ms",
    "macs",
    "basis",
    "estimate_error",
    "estimate_source",
    "heaviest_layers",
)


def _with_estimates(
    rows: list[dict[str, Any]],
    build: Path,
    manifest: Manifest,
    arts: list[Artifact],
    dev: Device,
    o: BenchOptions,
) -> None:
    """Measured rows also carry the estimate for the same device, what it stands on, and how
    far it was from this measurement: that is how a user (and CI) sees whether the model holds."""
    from edgecnn.runtime.sysinfo import disturbances

    for a, row in zip(arts, rows, strict=True):
        if row["status"] != "ok":
            continue
        row["disturbances"] = disturbances(row.get("system") or {})
        est = _safe_estimate(build, a, manifest, dev, o)
        if "estimate_ms" in est:
            row.update({k: est[k] for k in ESTIMATE_FIELDS if k in est})
            row["estimate_error_pct"] = 100.0 * (est["estimate_ms"] - row["p50_ms"]) / row["p50_ms"]


def bench_build(
    build_dir: str | os.PathLike, options: BenchOptions | None = None, **kw: Any
) -> list[dict[str, Any]]:
    """Bench every (or each named) artifact of a build on the device; one dict per artifact.

    `build_dir` may also be one artifact file. Measured rows carry init/first/
    warm-up times, latency stats (mean/std/min/p50/p90/p99/max ms), fps,
    peak_rss_mb, size and accuracy (with `data`); estimated rows carry
    estimate_ms and the MAC basis. Measured rows also carry the estimate and its error.
    """
    o = (options or BenchOptions(**kw)).check()
    dev = get_device(o.device)
    p = Path(build_dir)
    build, manifest, one = resolve(p) if is_artifact_file(p.name) else (*load_build(p), None)
    name = manifest.name or build.name
    arts = [one] if one is not None else select_artifacts(build, manifest, o.artifacts)
    mode = "ssh" if o.host else ("estimate" if o.estimate or not runs_here(dev) else "local")
    if mode == "estimate":
        return [_row(a, dev, mode, _safe_estimate(build, a, manifest, dev, o), name) for a in arts]
    results = _measure(build, manifest, arts, dev, o)
    rows = [_row(a, dev, mode, r, name) for a, r in zip(arts, results, strict=True)]
    _with_estimates(rows, build, manifest, arts, dev, o)
    return rows
