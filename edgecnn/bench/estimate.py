"""Latency estimates for a device from its profile, each saying what it stands on.

The artifact's operators (edgecnn.runtime.opgraph) go through the device profile's kernel
model for the artifact's format, precision and thread count (edgecnn.bench.profiles).
An Edge TPU device runs only int8 TFLite-family models on its TPU; anything else is
estimated on its host CPU's profile. Every estimate carries its basis (measured or
published, when, how) and the model's error on data it did not see.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from edgecnn.bench.devices import DEVICES, Device, runs_here
from edgecnn.bench.latency_model import breakdown
from edgecnn.bench.profiles import Profile, load_profile, measured_profile
from edgecnn.bench.published import published_profile
from edgecnn.errors import BadInput
from edgecnn.manifest import Artifact, Manifest
from edgecnn.runtime.formats import get_format
from edgecnn.runtime.macs import MissingReader
from edgecnn.runtime.opgraph import FREE, Op, multiply_accumulates


def profile_for(device: str, runs_here: bool, path: str | os.PathLike | None = None) -> Profile:
    """The profile an estimate for `device` stands on: --profile, else the user's measured
    one, else the published figures."""
    if path:
        prof = load_profile(path)
        if runs_here and prof.arch != platform.machine():
            raise BadInput(
                f"profile {path} is for {prof.arch}; this machine is {platform.machine()}"
            )
        return prof
    found = measured_profile(device, platform.machine() if runs_here else None)
    return found or published_profile(device)


def artifact_ops(build_dir: Path, art: Artifact, manifest: Manifest) -> list[Op]:
    """The artifact's operators; when its optional reader is not installed (ONNX without
    `onnx`), a sibling artifact's (the same network in another format)."""
    try:
        return get_format(art.format).ops(manifest.verify(build_dir, art))
    except MissingReader:
        pass
    for other in manifest.artifacts:
        if (
            other.format != art.format
            and other.precision == art.precision
            and other.file(build_dir).is_file()
        ):
            try:
                return get_format(other.format).ops(manifest.verify(build_dir, other))
            except MissingReader:
                continue
    raise BadInput(f"cannot read the operators of {art.name}: install onnx (pip install onnx)")


def _target(device: Device, art: Artifact) -> tuple[Device, str]:
    """The device that runs the artifact, and a note when it is not the one asked for."""
    if device.edgetpu and not (art.precision == "int8" and get_format(art.format).tpu_ready_int8):
        cpu = DEVICES[device.cpu_fallback or "pi4"]
        return (
            cpu,
            f"not Edge TPU-compatible ({art.format} {art.precision}): on the CPU of {cpu.description}",
        )
    return device, ""


def estimate_ops(
    ops: list[Op], art: Artifact, device: Device, threads: int | None, profile: Profile
) -> dict[str, Any]:
    model, key, note = profile.model_for(art.format, art.precision, threads or device.threads)
    ms = model.predict_ops(ops)
    return {
        "estimate_ms": ms,
        "estimate_fps": 1000.0 / ms if ms > 0 else None,
        "macs": multiply_accumulates(ops),
        "ops": sum(1 for op in ops if op.kind != FREE),
        "basis": profile.basis + f" [{key}]" + (f"; {note}" if note else ""),
        "estimate_error": profile.error_text(key),
        "estimate_source": profile.source,
        "heaviest_layers": breakdown(model, ops) if hasattr(model, "coef") else [],
    }


def estimate_artifact(
    build_dir: Path, art: Artifact, manifest: Manifest, device: Device, threads: int | None = None,
    profile_path: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    target, note = _target(device, art)
    profile = profile_for(
        target.name, runs_here(target), profile_path if target is device else None
    )
    est = estimate_ops(artifact_ops(build_dir, art, manifest), art, target, threads, profile)
    if note:
        est["basis"] = f"{note}; {est['basis']}"
    return est
