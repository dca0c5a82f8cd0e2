"""The export step (one artifact per format x precision, through the exporter table) and the
verify step (each artifact's accuracy, measured by the device runtime)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgeCNNError
from edgecnn.export import EXPORTERS, ExportJob, artifact_name
from edgecnn.fsutil import gzip_size, sha256_file
from edgecnn.manifest import Artifact, Manifest
from edgecnn.runtime.backends import read_model_bytes
from edgecnn.runtime.formats import FORMATS, tensor_specs

Say = Callable[[str], None]


def describe_artifact(directory: Path, name: str, fmt: str, precision: str) -> Artifact:
    """The manifest entry of a written file: size, gzip size, sha256 and tensor specs."""
    path = directory / name
    inputs, outputs = tensor_specs(FORMATS[fmt], read_model_bytes(path))
    return Artifact(
        path=name, format=fmt, precision=precision, size=path.stat().st_size,
        gzip_size=gzip_size(path), sha256=sha256_file(path), inputs=inputs, outputs=outputs,
    )  # fmt: skip


def artifact_accuracy(
    build: Path, manifest: Manifest, art: Artifact, x: np.ndarray, y: np.ndarray
) -> float:
    """Top-1 of a written artifact, run exactly as the device runs it (the runtime's Runner)."""
    from edgecnn.runtime import Runner

    try:
        with Runner(build, artifact=art.path, manifest=manifest) as runner:
            scores = runner.predict_batch(x)
    except EdgeCNNError:
        raise
    except Exception as e:
        raise EdgeCNNError(
            f"{art.name} was written but does not run: {str(e).splitlines()[0]}"
        ) from None
    return float((scores.argmax(axis=1) == y).mean())


def _row(art: Artifact, accuracy: float | None, seconds: float | None) -> dict[str, Any]:
    return {
        "artifact": art.path, "format": art.format, "precision": art.precision, "size": art.size,
        "gzip_size": art.gzip_size, "accuracy": accuracy,
        "seconds": None if seconds is None else round(seconds, 2),
    }  # fmt: skip


def export_artifacts(
    job: ExportJob, manifest: Manifest, formats: list[str], precisions: list[str],
    x_eval: np.ndarray, y_eval: np.ndarray, say: Say,
) -> tuple[list[dict[str, Any]], list[str]]:  # fmt: skip
    """Write, describe and measure every requested artifact; appends them to `manifest`.

    Returns (one report row per artifact, skipped combinations)."""
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for fmt in formats:
        allowed = FORMATS[fmt].precisions
        for prec in precisions:
            if prec not in allowed:
                skipped.append(f"{fmt} {prec} ({fmt} artifacts are {' and '.join(allowed)})")
                continue
            name = artifact_name(fmt, prec)
            say(f"writing {name}")
            t0 = time.perf_counter()
            EXPORTERS[fmt].export(job, prec, job.out_dir / name)
            seconds = time.perf_counter() - t0
            art = describe_artifact(job.out_dir, name, fmt, prec)
            manifest.artifacts.append(art)
            acc = artifact_accuracy(job.out_dir, manifest, art, x_eval, y_eval)
            rows.append(_row(art, acc, seconds))
    return rows, skipped


def accelerator_step(
    job: ExportJob, manifest: Manifest, fmt: str, say: Say
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A derived format (the Edge TPU build of the int8 TFLite): its check report, and its
    row when the compiler was there to make the file."""
    say(f"{fmt} check")
    name = artifact_name(fmt, "int8")
    report = EXPORTERS[fmt].export(job, "int8", job.out_dir / name) or {}
    if not (job.out_dir / name).is_file():
        return report, None
    art = describe_artifact(job.out_dir, name, fmt, "int8")
    manifest.artifacts.append(art)
    return report, _row(art, None, None)
