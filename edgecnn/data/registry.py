"""Dataset names -> loaders, and the common split policy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgecnn.data import faces, photos, sources
from edgecnn.data.base import Dataset, stratified_split
from edgecnn.errors import BadInput

_FIXED: dict[str, Callable[[], sources.Raw]] = {
    "digits": sources.load_digits,
    "mnist5k": sources.load_mnist5k,
    "fashion_mnist": sources.load_fashion_mnist,
    "mnist": sources.load_mnist,
    "cifar10": sources.load_cifar10,
    "lfw_subset": faces.load_lfw_subset,
    "imagenet_photos": photos.load_imagenet_photos,
}
_PREFIXED: dict[str, Callable[[str], sources.Raw]] = {
    "folder": sources.load_folder,
    "npz": sources.load_npz,
}
DATASET_NAMES = [*_FIXED, "folder:PATH", "npz:PATH"]


def check_dataset_name(name: str) -> str:
    """BadInput for a name no loader knows (cheap: nothing is loaded)."""
    kind = name.split(":", 1)[0] if ":" in name else None
    if name in _FIXED or (kind in _PREFIXED and name.split(":", 1)[1]):
        return name
    if kind in _PREFIXED:
        raise BadInput(f"dataset {name!r} needs a path after '{kind}:'")
    raise BadInput(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}")


def load_dataset(
    name: str,
    val_split: float = 0.1,
    test_split: float = 0.2,
    seed: int = 0,
    limit_train: int | None = None,
) -> Dataset:
    """Load `name` into stratified train/val/test splits.

    Sources with an official test split keep it; the others hold out
    `test_split` of every class. `limit_train` takes a stratified subset of the
    training split, for quick runs on large sources.
    """
    check_dataset_name(name)
    if name in _FIXED:
        raw = _FIXED[name]()
    else:
        kind, arg = name.split(":", 1)
        raw = _PREFIXED[kind](arg)
    x, y, xt, yt, names, info = raw
    if len(np.unique(y)) < 2:
        raise BadInput(f"dataset {name!r} has fewer than two classes")
    if y.min() < 0 or y.max() >= len(names):
        raise BadInput(f"dataset {name!r} has labels outside 0..{len(names) - 1}")
    if xt is None or yt is None:
        x, y, xt, yt = stratified_split(x, y, test_split, seed)
    x_tr, y_tr, x_val, y_val = stratified_split(x, y, val_split, seed + 1)
    if limit_train is not None and limit_train < len(y_tr):
        _, _, x_tr, y_tr = stratified_split(x_tr, y_tr, limit_train / len(y_tr), seed + 2)
    return Dataset(
        name=name,
        class_names=list(names),
        x_train=x_tr,
        y_train=y_tr,
        x_val=x_val,
        y_val=y_val,
        x_test=xt,
        y_test=yt,
        source=str(info.get("origin", "")),
        provenance={"seed": seed, "val_split": val_split},
        label_space=bool(info.get("label_space", False)),
    )
