"""What parity evaluates: a build whose files match their manifest, and the held-out split
of the data the model was trained on, at the model's input shape."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.data import Dataset, load_dataset
from edgecnn.errors import BadInput
from edgecnn.manifest import MANIFEST_NAME, Manifest, load_manifest


def check_build(build_dir: str | os.PathLike) -> tuple[Path, Manifest]:
    """(build dir, manifest) after checking the reference and every artifact against its sha256."""
    build = Path(build_dir)
    if not build.is_dir():
        raise BadInput(f"build directory {build} does not exist")
    manifest = load_manifest(build)
    if not manifest.artifacts:
        raise BadInput(f"{build / MANIFEST_NAME} lists no artifacts")
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


@dataclass
class EvalData:
    x: np.ndarray  # uint8 images at the model's input shape
    y: np.ndarray  # int64 labels
    ds: Dataset


def load_eval_data(
    manifest: Manifest, data: str | Dataset, split: str = "test", limit: int | None = None
) -> EvalData:
    """The split the training run held out (same seed and fractions), optionally a stratified
    subset of `limit` images; BadInput if the classes differ from the model's labels."""
    ds = load_dataset(data, **manifest.split_args(data)) if isinstance(data, str) else data
    check_labels(ds, manifest.labels)
    ds = ds.adapted(tuple(manifest.input.shape))
    x, y = ds.split(split)
    if len(y) == 0:
        raise BadInput(f"the {split} split of {ds.name!r} is empty")
    y = y.astype(np.int64)
    if limit:
        idx = stratified_limit(y, limit)
        x, y = x[idx], y[idx]
    return EvalData(x, y, ds)


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
