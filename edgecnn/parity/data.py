"""What parity evaluates: a build whose files match their manifest, and the held-out split
of the data the model was trained on, at the model's input shape."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.data import Dataset, load_dataset
from edgecnn.errors import BadInput
from edgecnn.manifest import Manifest


def check_build(build_dir: str | os.PathLike) -> tuple[Path, Manifest]:
    """(build dir, manifest) after checking the reference and every artifact against its sha256."""
    from edgecnn.runtime.runner import load_build

    build, manifest = load_build(build_dir)
    if not Path(build_dir).is_dir():
        raise BadInput(f"parity checks a whole build: give its directory ({build}), not a file")
    manifest.verify_reference(build)
    for art in manifest.artifacts:
        manifest.verify(build, art)
    return build, manifest


def check_labels(ds: Dataset, labels: list[str]) -> None:
    names = [str(v) for v in ds.class_names]
    if names == labels:
        return
    if len(names) != len(labels):
        raise BadInput(
            f"dataset {ds.name!r} has {len(names)} classes but the model's labels have {len(labels)}"
        )
    diff = [f"{a!r}!={b!r}" for a, b in zip(names, labels, strict=True) if a != b][:3]
    raise BadInput(
        f"dataset {ds.name!r} classes differ from the model's labels ({', '.join(diff)})"
    )


def _native_shape(described: dict) -> list[int] | None:
    """The shape a data source stores its images in (before fitting them to a model)."""
    if described.get("native_shape"):
        return [int(v) for v in described["native_shape"]]
    shape = described.get("image_shape")
    return None if shape is None or described.get("adapted_to") else [int(v) for v in shape]


def _shape_text(shape: list[int] | None) -> str:
    return "x".join(map(str, shape)) if shape else "?"


def check_source(manifest: Manifest, ds: Dataset, other_data: bool) -> dict | None:
    """None when `ds` is the source the model was trained on; else what differs, as the report
    records it. Data whose images are stored unlike the training data's (8x8 digits for an
    MNIST model) is refused unless the caller says another source is meant (`other_data`)."""
    trained = manifest.model_field("data")
    name = trained.get("name") or manifest.training.get("data")
    if not name or name == ds.name:
        return None
    want, got = _native_shape(trained), list(ds.input_shape)
    if want and want != got and not other_data:
        raise BadInput(
            f"the model was trained on {name!r} ({_shape_text(want)} images) but --data "
            f"{ds.name!r} holds {_shape_text(got)} images: another source. Give --data {name}, "
            f"or add --other-data to evaluate on {ds.name!r} on purpose"
        )
    return {"trained_on": name, "evaluated_on": ds.name, "trained_shape": want, "shape": got}


@dataclass
class EvalData:
    x: np.ndarray  # uint8 images at the model's input shape
    y: np.ndarray  # int64 labels
    ds: Dataset
    other_data: dict | None = None  # set when this is not the source the model was trained on


def load_eval_data(
    manifest: Manifest, data: str | Dataset, split: str = "test", limit: int | None = None,
    other_data: bool = False,
) -> EvalData:  # fmt: skip
    """The split the training run held out (same seed and fractions), optionally a stratified
    subset of `limit` images; BadInput if the classes differ from the model's labels, or the
    images are stored unlike the training data's and `other_data` is not given."""
    ds = load_dataset(data, **manifest.split_args(data)) if isinstance(data, str) else data
    check_labels(ds, manifest.labels)
    other = check_source(manifest, ds, other_data)
    ds = ds.adapted(tuple(manifest.input.shape), manifest.input.resize)
    x, y = ds.split(split)
    if len(y) == 0:
        raise BadInput(f"the {split} split of {ds.name!r} is empty")
    y = y.astype(np.int64)
    if limit:
        idx = stratified_limit(y, limit)
        x, y = x[idx], y[idx]
    return EvalData(x, y, ds, other)


def stratified_limit(y: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Indices of about `n` samples keeping class proportions (all when n is None)."""
    if not n or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    # A stable sort by class of a random permutation, then every k-th: proportional.
    idx = idx[np.argsort(y[idx], kind="stable")]
    take = np.linspace(0, len(idx) - 1, n).round().astype(int)
    return np.sort(idx[take])
