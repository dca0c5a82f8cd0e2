"""The manifest: the contract between host and device (no TensorFlow here).

`manifest.json` sits beside the artifacts. Layout (schema "edgecnn.manifest/1"):

    {
      "schema": "edgecnn.manifest/1",
      "model": {
        "name": str, "arch": str,
        "labels": [str, ...],
        "input": {"shape": [H, W, C], "layout": "NHWC", "dtype": "float32",
                  "color_order": "RGB" | "GRAY", "pixel_range": [0, 255],
                  "resize": "stretch" | "crop"},
        "source": {"path": "model.keras", "sha256": str},
        "data": {...provenance...}, "training": {...provenance...},
        "cost": {"macs": int, "params": int}   (per image; edgecnn.cost.manifest_cost)
      },
      "artifacts": [
        {"path": "model_int8.tflite", "format": "tflite" | "onnx" | "edgetpu",
         "precision": "float32" | "float16" | "dynamic" | "int8",
         "size": int, "gzip_size": int, "sha256": str,
         "inputs":  [{"name": str, "shape": [...], "dtype": str,
                      "quantization": {"scale": float, "zero_point": int} | null}],
         "outputs": [ same ]}
      ],
      "tools": {"tensorflow": str, ...},
      "created": ISO-8601 str
    }

The device trusts nothing else: it takes its preprocessing from `model.input`
and the artifact's input quantization, and checks `sha256` before loading.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecnn.errors import BadInput
from edgecnn.fsutil import atomic_write_text

SCHEMA = "edgecnn.manifest/1"
MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.txt"
RESIZE_MODES = ("stretch", "crop")


@dataclass
class InputSpec:
    """What the model takes: raw camera pixels, normalization baked in."""

    shape: list[int]  # [H, W, C]
    color_order: str = "RGB"  # "RGB" or "GRAY"
    pixel_range: list[float] = field(default_factory=lambda: [0.0, 255.0])
    layout: str = "NHWC"
    dtype: str = "float32"
    # How a frame of another shape is fitted: "stretch" (resize as it is) or "crop"
    # (centre crop to the model's aspect, then resize: what ImageNet classifiers expect).
    resize: str = "stretch"

    @classmethod
    def for_shape(cls, shape: tuple[int, int, int] | list[int]) -> InputSpec:
        h, w, c = (int(v) for v in shape)
        if c not in (1, 3):
            raise BadInput(f"input must have 1 or 3 channels, got {c}")
        return cls(shape=[h, w, c], color_order="GRAY" if c == 1 else "RGB")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        try:
            spec = cls(
                shape=[int(v) for v in d["shape"]],
                color_order=str(d.get("color_order", "RGB")),
                pixel_range=[float(v) for v in d.get("pixel_range", [0, 255])],
                layout=str(d.get("layout", "NHWC")),
                dtype=str(d.get("dtype", "float32")),
                resize=str(d.get("resize", "stretch")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BadInput(f"manifest input spec is malformed: {e}") from None
        if spec.resize not in RESIZE_MODES:
            raise BadInput(f"manifest input resize {spec.resize!r} is not one of {RESIZE_MODES}")
        return spec


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def new_manifest(
    name: str,
    arch: str,
    labels: list[str],
    input_spec: InputSpec,
    **extra: Any,
) -> dict[str, Any]:
    model: dict[str, Any] = {
        "name": name,
        "arch": arch,
        "labels": list(labels),
        "input": asdict(input_spec),
    }
    model.update(extra)
    return {"schema": SCHEMA, "model": model, "artifacts": [], "tools": {}, "created": now_iso()}


def manifest_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p / MANIFEST_NAME if p.is_dir() else p


def load_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read and minimally validate a manifest (a file, or a directory holding one)."""
    p = manifest_path(path)
    if not p.exists():
        raise BadInput(f"no {MANIFEST_NAME} in {p.parent}")
    try:
        m = json.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"{p} is not a readable manifest: {e}") from None
    if not isinstance(m, dict) or m.get("schema") != SCHEMA:
        raise BadInput(f"{p} is not an edgecnn manifest (schema {SCHEMA!r} expected)")
    model = m.get("model")
    if not isinstance(model, dict) or "labels" not in model or "input" not in model:
        raise BadInput(f"{p} has no model labels/input section")
    InputSpec.from_dict(model["input"])
    m.setdefault("artifacts", [])
    return m


def save_manifest(directory: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    p = Path(directory) / MANIFEST_NAME
    atomic_write_text(p, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return p


def write_labels(directory: str | os.PathLike, labels: list[str]) -> Path:
    p = Path(directory) / LABELS_NAME
    atomic_write_text(p, "".join(f"{lab}\n" for lab in labels))
    return p


def find_artifact(manifest: dict[str, Any], path: str | os.PathLike) -> dict[str, Any] | None:
    name = Path(path).name
    for art in manifest.get("artifacts", []):
        if Path(art["path"]).name == name:
            return art
    return None
