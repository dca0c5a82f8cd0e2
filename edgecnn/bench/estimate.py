"""Latency estimates from per-layer MACs and a device's calibrated throughput.

For a device we cannot reach: sum over layers of (MACs / effective MAC/s + per-op
overhead), plus a fixed per-invoke cost. The figures and their public sources
are in `edgecnn.bench.devices`. Always labelled an estimate in the output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.bench.devices import DEVICES, FLOAT_FACTOR, Device
from edgecnn.errors import BadInput
from edgecnn.manifest import Artifact, Manifest
from edgecnn.runtime.formats import get_format
from edgecnn.runtime.macs import MissingReader


def artifact_layers(build_dir: Path, art: Artifact, manifest: Manifest) -> list[dict[str, Any]]:
    """Per-layer MACs from the artifact; when its optional reader is not installed (ONNX
    without `onnx`), from a sibling artifact, else from the manifest's model.cost."""
    try:
        return get_format(art.format).layers(manifest.verify(build_dir, art))
    except MissingReader:
        pass
    for other in manifest.artifacts:
        if other.format != art.format and other.file(build_dir).is_file():
            try:
                return get_format(other.format).layers(manifest.verify(build_dir, other))
            except MissingReader:
                continue
    macs = manifest.model_field("cost").get("macs")
    if not macs:
        raise BadInput(
            f"cannot count the MACs of {art.name}: install onnx, or convert with model.cost"
        )
    return [{"op": "model", "macs": int(macs), "output": []}]


def estimate_latency(
    layers: list[dict[str, Any]], precision: str, fmt: str, device: Device
) -> dict[str, Any]:
    """Estimated ms per inference of a model with these layers on `device`."""
    basis = device
    note = f"calibrated on: {device.anchor_source}"
    int8 = precision == "int8"
    if device.edgetpu and not (int8 and get_format(fmt).tpu_ready_int8):
        # The Edge TPU runs only full-int8 TFLite; anything else runs on the CPU beside it.
        basis = DEVICES[device.cpu_fallback or "pi4"]
        note = f"not Edge TPU-compatible ({fmt} {precision}): CPU of {basis.description}; {basis.anchor_source}"
    rate = basis.int8_macs_per_s()
    if not int8:
        rate /= FLOAT_FACTOR
    ms = basis.fixed_ms
    rows = []
    for layer in layers:
        t = layer["macs"] / rate * 1000.0 + basis.op_us / 1000.0
        ms += t
        rows.append({**layer, "est_ms": t})
    total_macs = sum(layer["macs"] for layer in layers)
    heavy = sorted(rows, key=lambda r: -r["est_ms"])[:5]
    return {
        "estimate_ms": ms,
        "estimate_fps": 1000.0 / ms if ms > 0 else None,
        "macs": int(total_macs),
        "ops": len(layers),
        "gmacs_per_s": rate / 1e9,
        "basis": note,
        "heaviest_layers": [
            {
                "op": r["op"],
                "macs": r["macs"],
                "est_ms": round(r["est_ms"], 4),
                "output": r["output"],
            }
            for r in heavy
        ],
    }


def estimate_artifact(
    build_dir: Path, art: Artifact, manifest: Manifest, device: Device
) -> dict[str, Any]:
    layers = artifact_layers(build_dir, art, manifest)
    return estimate_latency(layers, art.precision, art.format, device)
