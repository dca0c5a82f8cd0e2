"""A trial's hardware figures: latency, file size and peak RAM of one artifact.

Latency is measured where the target can be reached (this machine when it is the device,
the device over SSH with --host) and estimated from the device's latency profile
otherwise; every figure says which. Peak RAM is the peak resident memory of a bench
worker process that loaded and ran the artifact (on the device when reachable, else here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.bench.api import BenchOptions, bench_build
from edgecnn.bench.devices import get_device, runs_here
from edgecnn.errors import EdgeCNNError
from edgecnn.tune.options import TuneOptions


def _bench(build: Path, artifact: str, o: TuneOptions, **kw: Any) -> dict[str, Any]:
    opts = BenchOptions(
        artifacts=[artifact], runs=o.bench_runs, warmup=5, warmup_min_s=o.bench_min_s / 2,
        min_s=o.bench_min_s, known_hosts=o.known_hosts, identity=o.identity,
        remote_python=o.remote_python, data=None, **kw,
    )  # fmt: skip
    row = bench_build(build, opts)[0]
    if row["status"] == "failed":
        raise EdgeCNNError(f"bench of {artifact} failed: {row.get('error')}")
    return row


def _measured(row: dict[str, Any], where: str) -> dict[str, Any]:
    return {
        "latency_ms": row["p50_ms"],
        "latency_basis": f"measured on {where} (median of {row.get('runs', '?')} runs, "
        f"{row.get('threads', '?')} threads)",
        "ram_mb": row.get("peak_rss_mb"),
        "ram_basis": f"peak RSS of a bench worker on {where}",
    }


def _estimated(row: dict[str, Any], device: str) -> dict[str, Any]:
    err = row.get("estimate_error")
    spread = f", typical error {err}" if err else ""
    return {
        "latency_ms": row["estimate_ms"],
        "latency_basis": f"estimated for {device} from {row.get('basis', 'its latency profile')}{spread}",
    }


def measure_artifact(build: Path, artifact: str, size_bytes: int, o: TuneOptions) -> dict[str, Any]:
    """{latency_ms, latency_basis, ram_mb, ram_basis, size_kb, measured}."""
    dev = get_device(o.device)
    out: dict[str, Any] = {"size_kb": size_bytes / 1000.0}
    if o.host:
        out.update(_measured(_bench(build, artifact, o, device=o.device, host=o.host), o.host))
        out["measured"] = True
    elif runs_here(dev):
        out.update(_measured(_bench(build, artifact, o, device=o.device), dev.name))
        out["measured"] = True
    else:
        out.update(_estimated(_bench(build, artifact, o, device=o.device, estimate=True), dev.name))
        here = _measured(_bench(build, artifact, o, device="host"), "this machine")
        out.update(ram_mb=here["ram_mb"], ram_basis=here["ram_basis"], measured=False)
    return out
