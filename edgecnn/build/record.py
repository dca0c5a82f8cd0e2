"""The build's manifest: the training fragment continued, plus what this build did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgecnn.build.config import BuildConfig
from edgecnn.build.data import BuildData
from edgecnn.build.source import Source
from edgecnn.fsutil import sha256_file
from edgecnn.manifest import REFERENCE_NAME, InputSpec, Manifest, new_manifest, now_iso
from edgecnn.versions import tool_versions


def start_manifest(src: Source, data: BuildData) -> Manifest:
    """Continue the training fragment (labels, input spec, provenance) or start afresh
    (labels from the data)."""
    if src.fragment:
        m = src.fragment.copy()
        if list(m.input.shape) != list(src.input_shape):
            resize = m.input.resize
            m.input = InputSpec.for_shape(src.input_shape)
            m.input.resize = resize
        m.artifacts = []
        m.created = now_iso()
        return m
    arch = getattr(src.model, "name", "model")
    labels = list(data.ds.class_names)
    return new_manifest(
        arch, arch, labels, InputSpec.for_shape(src.input_shape), data=data.ds.describe()
    )


def record_build(
    m: Manifest, src: Source, ref_path: Path, cfg: BuildConfig, data: BuildData,
    accuracy: tuple[float, float], built: dict[str, Any], pruning_plan: Any = None,
) -> None:  # fmt: skip
    """The source model, the optimization settings and the built model's cost."""
    original = src.path
    m.model_extra["source"] = {
        "path": REFERENCE_NAME,
        "sha256": sha256_file(ref_path),
        "original": str(original) if original else None,
        "original_sha256": sha256_file(original) if original and original.is_file() else None,
    }
    m.model_extra["optimization"] = {
        "prune": cfg.prune or None,
        "prune_filters": cfg.prune_filters or None,
        "filter_multiple": cfg.filter_multiple if cfg.prune_filters else None,
        "pruning": pruning_plan,
        "fine_tune_epochs": cfg.fine_tune_epochs if cfg.prunes else 0,
        "distill": cfg.prune_distill if cfg.prunes else 0.0,
        "calibration": {
            "samples": int(len(data.calib)),
            "split": "train",
            "stratified": True,
            "class_counts": data.calib_counts,
        },
        "io_dtype": cfg.io_dtype,
        "onnx_int8": cfg.onnx_int8,
        "accuracy_before": accuracy[0],
        "accuracy_after": accuracy[1],
        "eval_samples": int(len(data.y_eval)),
    }
    m.tools = tool_versions()
    if built.get("macs") is not None:
        # The cost of what was built (the training fragment's is stale after pruning).
        m.model_extra["cost"] = {"macs": built["macs"], "params": built["params"]}


def embedded_metadata(m: Manifest) -> dict[str, str]:
    """Key manifest fields for formats that carry metadata inside the file (ONNX)."""
    return {
        "edgecnn.schema": "edgecnn.manifest/1",
        "labels": json.dumps(m.labels),
        "name": m.name,
        "arch": m.arch,
        "input_shape": json.dumps(m.input.shape),
        "pixel_range": json.dumps(m.input.pixel_range),
        "color_order": m.input.color_order,
        "layout": m.input.layout,
        "source_sha256": str(m.source.get("sha256", "")),
    }


def model_stats(model: Any, path: Path | None = None) -> dict[str, Any]:
    from edgecnn.fsutil import gzip_size
    from edgecnn.zoo.cost import model_cost

    stats: dict[str, Any] = {"params": int(model.count_params())}
    try:
        stats["macs"] = int(model_cost(model)["total_macs"])
    except Exception:
        stats["macs"] = None
    if path is not None and path.exists():
        stats["size"] = path.stat().st_size
        stats["gzip_size"] = gzip_size(path)
    return stats
