"""The manifest: the contract between host and device (both sides; no TensorFlow here).

`manifest.json` sits beside the artifacts. Layout (schema "edgecnn.manifest/1"):

    {
      "schema": "edgecnn.manifest/1",
      "model": {
        "name": str, "arch": str,
        "labels": [str, ...],
        "input": {"shape": [H, W, C], "layout": "NHWC", "dtype": "float32",
                  "color_order": "RGB" | "GRAY", "pixel_range": [0, 255],
                  "resize": "stretch" | "crop" | "letterbox"},
        "source": {"path": "model.keras", "sha256": str},
        "data": {...provenance...}, "training": {...provenance...},
        "cost": {"macs": int, "params": int}   (per image; edgecnn.zoo.cost.manifest_cost)
      },
      "artifacts": [
        {"path": "model_int8.tflite", "format": <a name in edgecnn.runtime.formats>,
         "precision": "float32" | "float16" | "dynamic" | "int8",
         "size": int, "gzip_size": int, "sha256": str,
         "inputs":  [{"name": str, "shape": [...], "dtype": str,
                      "quantization": {"scale": float, "zero_point": int} | null}],
         "outputs": [ same ]}
      ],
      "tools": {"tensorflow": str, ...},
      "created": ISO-8601 str
    }

`Manifest`, `Artifact`, `InputSpec` and `TensorSpec` read and write exactly that
JSON; fields this version does not know are kept, in order, and written back. The
device trusts nothing else: it takes its preprocessing from `input` and the
artifact's input quantization, and checks `sha256` before loading.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecnn.errors import BadInput
from edgecnn.fsutil import atomic_write_text, sha256_file

SCHEMA = "edgecnn.manifest/1"
MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.txt"
REFERENCE_NAME = "model.keras"
RESIZE_MODES = ("stretch", "crop", "letterbox")
SPLIT_KEYS = ("seed", "val_split", "test_split", "limit_train")


@dataclass
class InputSpec:
    """What the model takes: raw camera pixels, normalization baked in."""

    shape: list[int]  # [H, W, C]
    color_order: str = "RGB"  # "RGB" or "GRAY"
    pixel_range: list[float] = field(default_factory=lambda: [0.0, 255.0])
    layout: str = "NHWC"
    dtype: str = "float32"
    # How a frame of another shape is fitted (training images too): "stretch" (resize as it
    # is), "crop" (centre crop to the model's aspect, then resize: what ImageNet classifiers
    # expect) or "letterbox" (scale to fit, keep the aspect, pad with black).
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Quantization:
    scale: float
    zero_point: int

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Quantization | None:
        if not d or not d.get("scale"):
            return None
        return cls(float(d["scale"]), int(d.get("zero_point", 0)))


@dataclass
class TensorSpec:
    """An artifact's input or output tensor: shape with the batch axis (-1: dynamic)."""

    name: str
    shape: list[int]
    dtype: str
    quantization: Quantization | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(
            str(d.get("name", "")),
            [int(v) for v in d.get("shape", [])],
            str(d.get("dtype", "float32")),
            Quantization.from_dict(d.get("quantization")),
        )

    def to_dict(self) -> dict[str, Any]:
        q = self.quantization
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "quantization": None if q is None else {"scale": q.scale, "zero_point": q.zero_point},
        }


ARTIFACT_KEYS = ("path", "format", "precision", "size", "gzip_size", "sha256", "inputs", "outputs")


@dataclass
class Artifact:
    """One file of the build, as the manifest lists it."""

    path: str
    format: str
    precision: str
    size: int | None = None
    gzip_size: int | None = None
    sha256: str | None = None
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. selective_quantization

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Artifact:
        if not isinstance(d, dict) or "path" not in d:
            raise BadInput(f"manifest artifact entry is malformed: {str(d)[:80]}")
        return cls(
            path=str(d["path"]),
            format=str(d.get("format", "")),
            precision=str(d.get("precision", "")),
            size=d.get("size"),
            gzip_size=d.get("gzip_size"),
            sha256=d.get("sha256"),
            inputs=[TensorSpec.from_dict(t) for t in d.get("inputs") or []],
            outputs=[TensorSpec.from_dict(t) for t in d.get("outputs") or []],
            extra={k: v for k, v in d.items() if k not in ARTIFACT_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "format": self.format, "precision": self.precision}
        for key in ("size", "gzip_size", "sha256"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        d["inputs"] = [t.to_dict() for t in self.inputs]
        d["outputs"] = [t.to_dict() for t in self.outputs]
        d.update(copy.deepcopy(self.extra))
        return d

    @property
    def name(self) -> str:
        return Path(self.path).name

    def file(self, build: str | os.PathLike) -> Path:
        return Path(build) / self.path

    def input_quantization(self) -> Quantization | None:
        return self.inputs[0].quantization if self.inputs else None

    def output_quantization(self) -> Quantization | None:
        return self.outputs[0].quantization if self.outputs else None

    def matches(self, spec: str) -> bool:
        """By file name or stem, precision, format, "format:precision" or "precision.format"."""
        name, fmt, prec = self.name, self.format, self.precision
        names = (name, self.path, prec, fmt, f"{fmt}:{prec}", f"{prec}.{fmt}", f"{prec}:{fmt}")
        return spec in names or spec == Path(name).stem


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def verify_sha256(name: str, data: bytes, want: str | None) -> None:
    """BadInput unless `data` hashes to `want` (the manifest's record)."""
    if not want:
        raise BadInput(f"the manifest has no sha256 for {name}")
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise BadInput(
            f"{name} does not match its manifest sha256 ({got[:12]}... != {want[:12]}...); "
            "the file changed since the build: rebuild or re-deploy it"
        )


MODEL_KEYS = ("name", "arch", "labels", "input")


@dataclass
class Manifest:
    """A build's (or a training run's) manifest. `model_extra` holds the other model fields
    (source, data, training, cost, optimization, ...) in their order."""

    name: str
    arch: str
    labels: list[str]
    input: InputSpec
    artifacts: list[Artifact] = field(default_factory=list)
    tools: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=now_iso)
    model_extra: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    # -- reading and writing ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, m: Any, where: str = "manifest") -> Manifest:
        if not isinstance(m, dict) or m.get("schema") != SCHEMA:
            raise BadInput(f"{where} is not an edgecnn manifest (schema {SCHEMA!r} expected)")
        model = m.get("model")
        if not isinstance(model, dict) or "labels" not in model or "input" not in model:
            raise BadInput(f"{where} has no model labels/input section")
        arts = m.get("artifacts") or []
        if not isinstance(arts, list):
            raise BadInput(f"{where}: 'artifacts' must be a list")
        return cls(
            name=str(model.get("name", "")),
            arch=str(model.get("arch", "")),
            labels=[str(v) for v in model["labels"]],
            input=InputSpec.from_dict(model["input"]),
            artifacts=[Artifact.from_dict(a) for a in arts],
            tools=dict(m.get("tools") or {}),
            created=str(m.get("created", "")),
            model_extra={k: v for k, v in model.items() if k not in MODEL_KEYS},
            extra={
                k: v
                for k, v in m.items()
                if k not in ("schema", "model", "artifacts", "tools", "created")
            },
        )

    def to_dict(self) -> dict[str, Any]:
        model: dict[str, Any] = {
            "name": self.name,
            "arch": self.arch,
            "labels": list(self.labels),
            "input": self.input.to_dict(),
        }
        model.update(copy.deepcopy(self.model_extra))
        out: dict[str, Any] = {"schema": SCHEMA, "model": model}
        out["artifacts"] = [a.to_dict() for a in self.artifacts]
        out["tools"] = dict(self.tools)
        out["created"] = self.created
        out.update(copy.deepcopy(self.extra))
        return out

    def copy(self) -> Manifest:
        return Manifest.from_dict(self.to_dict())

    def save(self, directory: str | os.PathLike) -> Path:
        p = Path(directory) / MANIFEST_NAME
        atomic_write_text(p, json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return p

    # -- the model section -------------------------------------------------------------------
    def model_field(self, key: str) -> dict[str, Any]:
        """A dict-valued model field (source, training, optimization, data, cost), or {}."""
        value = self.model_extra.get(key)
        return value if isinstance(value, dict) else {}

    @property
    def source(self) -> dict[str, Any]:
        return self.model_field("source")

    @property
    def training(self) -> dict[str, Any]:
        return self.model_field("training")

    @property
    def optimization(self) -> dict[str, Any]:
        return self.model_field("optimization")

    @property
    def version(self) -> str | None:
        v = self.model_extra.get("version")
        return None if v is None else str(v)

    def split_args(self, data_name: str) -> dict[str, Any]:
        """The training run's split settings when `data_name` is what it trained on, else {}:
        calibration, fine-tuning and parity then never see its test images."""
        if self.training.get("data") != data_name:
            return {}
        return {k: self.training[k] for k in SPLIT_KEYS if self.training.get(k) is not None}

    def reference_path(self, build: str | os.PathLike) -> Path:
        """The float Keras model the artifacts were made from."""
        return Path(build) / str(self.source.get("path") or REFERENCE_NAME)

    # -- artifacts ---------------------------------------------------------------------------
    def find(self, format: str | None = None, precision: str | None = None) -> Artifact | None:
        for a in self.artifacts:
            if (format is None or a.format == format) and (
                precision is None or a.precision == precision
            ):
                return a
        return None

    def by_path(self, path: str | os.PathLike) -> Artifact | None:
        name = Path(path).name
        return next((a for a in self.artifacts if a.name == name or a.path == str(path)), None)

    def replace(self, artifact: Artifact) -> None:
        self.artifacts = [artifact if a.path == artifact.path else a for a in self.artifacts]

    # -- checking the files ------------------------------------------------------------------
    def verify(self, build: str | os.PathLike, artifact: Artifact) -> bytes:
        """The artifact's bytes, after checking they are the ones the manifest lists."""
        p = artifact.file(build)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise BadInput(f"artifact {artifact.path} listed in the manifest is missing") from None
        except OSError as e:
            raise BadInput(f"cannot read {p}: {e.strerror or e}") from None
        verify_sha256(artifact.name, data, artifact.sha256)
        return data

    def verify_reference(self, build: str | os.PathLike) -> Path:
        ref = self.reference_path(build)
        if not ref.is_file():
            raise BadInput(f"the float reference {ref.name} is missing from {build}")
        want = self.source.get("sha256")
        if want and sha256_file(ref) != want:
            raise BadInput(f"{ref.name} does not match its manifest sha256 (file changed?)")
        return ref


def new_manifest(
    name: str, arch: str, labels: list[str], input_spec: InputSpec, **extra: Any
) -> Manifest:
    return Manifest(name=name, arch=arch, labels=list(labels), input=input_spec, model_extra=extra)


def manifest_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p / MANIFEST_NAME if p.is_dir() else p


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate a manifest (a file, or a directory holding one)."""
    p = manifest_path(path)
    if not p.exists():
        raise BadInput(f"no {MANIFEST_NAME} in {p.parent}")
    try:
        raw = json.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"{p} is not a readable manifest: {e}") from None
    return Manifest.from_dict(raw, where=str(p))


def save_manifest(directory: str | os.PathLike, manifest: Manifest) -> Path:
    return manifest.save(directory)


def write_labels(directory: str | os.PathLike, labels: list[str]) -> Path:
    p = Path(directory) / LABELS_NAME
    atomic_write_text(p, "".join(f"{lab}\n" for lab in labels))
    return p
