"""The build orchestrator: load -> prune -> quantize/export -> verify -> manifest.

The build directory holds one artifact per requested format x precision,
`labels.txt`, `manifest.json` (the device contract) and `model.keras`, the float
model the artifacts were made from (after pruning, the pruned one), so parity
compares every artifact against exactly its reference. It is written with
`atomic_dir`: complete or absent. Each step is a function of its own
(`edgecnn.build.source`, `.data`, `.prune`, `.export`, `.record`), so a search can
drive them one at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecnn.build.config import BuildConfig
from edgecnn.build.data import prepare_data
from edgecnn.build.export import accelerator_step, export_artifacts
from edgecnn.build.prune import keras_accuracy, prune_step
from edgecnn.build.record import embedded_metadata, model_stats, record_build, start_manifest
from edgecnn.build.source import load_source
from edgecnn.data import Dataset
from edgecnn.errors import BadInput
from edgecnn.export import ExportJob
from edgecnn.fsutil import atomic_dir
from edgecnn.manifest import REFERENCE_NAME, write_labels
from edgecnn.quiet import quiet_tensorflow
from edgecnn.zoo.io import save_keras

EDGETPU = "edgetpu"  # the exporter table's name for the derived Edge TPU build


def convert_model(
    model: str | os.PathLike | Any,
    data: str | Dataset,
    out_dir: str | os.PathLike,
    config: BuildConfig | None = None,
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Build `out_dir` from `model` (a path or a Keras model) and `data` (a name or a Dataset).

    `config` (or the same fields as keywords) says what to build; see BuildConfig.
    Returns a report dict (before/after stats, one row per artifact, Edge TPU check).
    """
    say = progress or (lambda msg: None)
    cfg = (config or BuildConfig(**options)).validated()
    say("loading model")
    quiet_tensorflow()
    src = load_source(model)
    if cfg.prunes and src.path is not None and src.path.is_dir():
        raise BadInput("pruning needs a Keras model (.keras), not a SavedModel")
    say("loading data")
    bd = prepare_data(
        data,
        src.input_shape,
        src.classes,
        src.fragment,
        cfg.calib_samples,
        cfg.eval_samples,
        cfg.seed,
    )
    before = model_stats(src.model, src.path if src.path and src.path.is_file() else None)
    before["accuracy"] = keras_accuracy(src.model, bd.x_eval, bd.y_eval)
    reference, pruning = prune_step(src.model, bd.ds, cfg, bd.x_eval, bd.y_eval, say)
    with atomic_dir(out_dir) as tmp:
        save_keras(reference, tmp / REFERENCE_NAME)  # same model, same bytes
        after = model_stats(reference, tmp / REFERENCE_NAME)
        after["accuracy"] = (
            keras_accuracy(reference, bd.x_eval, bd.y_eval) if pruning else before["accuracy"]
        )
        manifest = start_manifest(src, bd)
        steps = (pruning.get("filters") or {}).get("steps")
        accuracy = (before["accuracy"], after["accuracy"])
        record_build(manifest, src, tmp / REFERENCE_NAME, cfg, bd, accuracy, after, steps)
        job = ExportJob(reference, bd.calib, tmp, cfg.io_dtype, cfg.onnx_int8, static_batch=cfg.edgetpu,
                        metadata=embedded_metadata(manifest))  # fmt: skip
        rows, skipped = export_artifacts(
            job, manifest, cfg.formats, cfg.precisions, bd.x_eval, bd.y_eval, say
        )
        tpu = _accelerators(cfg, job, manifest, rows, say)
        manifest.save(tmp)
        write_labels(tmp, manifest.labels)
    return {
        "out": str(Path(out_dir).resolve()), "model": manifest.name, "data": bd.ds.name,
        "input_shape": list(src.input_shape), "before": before, "after": after, "pruning": pruning,
        "artifacts": rows, "skipped": skipped, "edgetpu": tpu,
    }  # fmt: skip


def _accelerators(
    cfg: BuildConfig,
    job: ExportJob,
    manifest: Any,
    rows: list[dict[str, Any]],
    say: Callable[[str], None],
) -> dict[str, Any] | None:
    """The derived Edge TPU build, when asked for: its check report (and row, if compiled)."""
    if not cfg.edgetpu:
        return None
    tpu, row = accelerator_step(job, manifest, EDGETPU, say)
    rows += [row] if row else []
    manifest.model_extra[EDGETPU] = {k: v for k, v in tpu.items() if k != "ops"}
    return tpu


def convert_from_recipe(
    recipe: Any, model_dir: str | os.PathLike, out_dir: str | os.PathLike, progress: Any = None
) -> dict[str, Any]:
    """The `run` stage: the recipe's [convert] section applied to the trained model in `model_dir`."""
    return convert_model(
        model_dir, recipe["data"]["name"], out_dir, BuildConfig.from_recipe(recipe), progress
    )
