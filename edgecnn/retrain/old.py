"""What a retrain starts from: the deployed build (or a training run), its Keras source, the
data it was trained on with the same splits, and the settings it was built with.

Everything here reads JSON only (no TensorFlow), so a bad argument fails at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.build.config import DEFAULT_FORMATS, BuildConfig
from edgecnn.data.registry import check_dataset_name
from edgecnn.errors import BadInput
from edgecnn.export import DIRECT_FORMATS
from edgecnn.manifest import REFERENCE_NAME, SPLIT_KEYS, Manifest, load_manifest


@dataclass
class OldModel:
    path: Path
    manifest: Manifest
    keras_path: Path
    is_build: bool  # a build (artifacts to compare) or a training run (a Keras model only)
    data: str  # the dataset it was trained on
    splits: dict[str, Any] = field(default_factory=dict)  # seed, val_split, test_split, ...
    build: BuildConfig = field(default_factory=BuildConfig)

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.labels)


def training_data(manifest: Manifest, override: str | None) -> str:
    """The dataset name the model was trained on (or --data), checked without loading it."""
    name = override or manifest.training.get("data") or manifest.model_field("data").get("name")
    if not name:
        raise BadInput("the manifest does not say what the model was trained on; give --data NAME")
    return check_dataset_name(str(name))


def training_splits(manifest: Manifest, data: str) -> dict[str, Any]:
    """The run's split settings, so the old test split is the one the model never saw."""
    args = manifest.split_args(data)
    if args:
        return args
    prov = manifest.model_field("data")
    if prov.get("name") == data:
        return {k: prov[k] for k in SPLIT_KEYS if prov.get(k) is not None}
    return {}


def build_settings(manifest: Manifest) -> BuildConfig:
    """The old build's settings: its formats and precisions, quantization and sparsity.

    Filter pruning is not repeated (the Keras source is the already thinned model);
    unstructured sparsity is, since fine-tuning fills the zeros in again.
    """
    opt = manifest.optimization
    arts = manifest.artifacts
    formats = [a.format for a in arts if a.format in DIRECT_FORMATS]
    precisions = [a.precision for a in arts]
    return BuildConfig(
        prune=opt.get("prune") or None,
        fine_tune_epochs=int(opt.get("fine_tune_epochs") or 0),
        precisions=list(dict.fromkeys(precisions)) or ["float32", "int8"],
        formats=list(dict.fromkeys(formats)) or list(DEFAULT_FORMATS),
        calib_samples=int((opt.get("calibration") or {}).get("samples") or 200),
        io_dtype=str(opt.get("io_dtype") or "int8"),
        edgetpu=any(a.format not in DIRECT_FORMATS for a in arts),
        onnx_int8=str(opt.get("onnx_int8") or "qdq"),
        eval_samples=int(opt.get("eval_samples") or 1000),
    ).validated()


def resolve_old(path: str | Path, data: str | None = None) -> OldModel:
    """A build directory (artifacts + model.keras) or a training directory (model.keras)."""
    p = Path(path)
    if not p.is_dir():
        raise BadInput(f"{p} is not a build or training directory")
    manifest = load_manifest(p)
    name = training_data(manifest, data)
    if manifest.artifacts:
        keras_path = manifest.verify_reference(p)
        build = build_settings(manifest)
    else:
        keras_path = p / REFERENCE_NAME
        if not keras_path.is_file():
            raise BadInput(f"{p} holds no {REFERENCE_NAME} to fine-tune")
        build = BuildConfig().validated()
    return OldModel(p, manifest, keras_path, bool(manifest.artifacts), name,
                    training_splits(manifest, name), build)  # fmt: skip
