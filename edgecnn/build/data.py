"""The data a build needs: the training run's splits, a stratified calibration sample, and
the test images its accuracy column is measured on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecnn.data import Dataset, calibration_sample, load_dataset
from edgecnn.errors import BadInput
from edgecnn.manifest import Manifest
from edgecnn.optimize.quantize import calibration_images


@dataclass
class BuildData:
    ds: Dataset  # at the model's input shape
    calib: np.ndarray  # float32 0-255
    calib_counts: list[int]  # calibration images per class (parity's diagnosis reads it)
    x_eval: np.ndarray  # uint8 test images for the accuracy column
    y_eval: np.ndarray


def split_args(fragment: Manifest | None, data: str, seed: int) -> dict[str, object]:
    """The training run's splits, so calibration and fine-tuning never see its test set."""
    args = fragment.split_args(data) if fragment else {}
    return {"seed": seed, **args}


def load_build_dataset(
    data: str | Dataset,
    in_shape: tuple[int, int, int],
    classes: int,
    seed: int,
    fragment: Manifest | None,
) -> Dataset:
    ds = load_dataset(data, **split_args(fragment, data, seed)) if isinstance(data, str) else data
    if ds.num_classes != classes:
        raise BadInput(
            f"dataset {ds.name!r} has {ds.num_classes} classes but the model outputs {classes}"
        )
    resize = fragment.input.resize if fragment else "stretch"
    return ds.adapted(in_shape, resize)  # e.g. 8x8 digits into a 28x28 model, as trained


def eval_subset(ds: Dataset, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` random test images (all of them when n is 0 or the split is smaller)."""
    x, y = ds.x_test, ds.y_test
    if n and len(y) > n:
        idx = np.random.default_rng(seed).permutation(len(y))[:n]
        x, y = x[idx], y[idx]
    return x, y


def calibration_counts(ds: Dataset, n: int, seed: int, classes: int) -> list[int]:
    """Images per class in the calibration set (the same draw as `calibration_images`)."""
    _, ys = calibration_sample(
        ds.x_train, ds.y_train, n, seed=seed, num_classes=ds.classes_to_cover
    )
    return np.bincount(np.asarray(ys, dtype=np.int64), minlength=classes).tolist()


def prepare_data(
    data: str | Dataset, in_shape: tuple[int, int, int], classes: int, fragment: Manifest | None,
    calib_samples: int, eval_samples: int, seed: int,
) -> BuildData:  # fmt: skip
    ds = load_build_dataset(data, in_shape, classes, seed, fragment)
    calib = calibration_images(ds.x_train, ds.y_train, calib_samples, seed, ds.classes_to_cover)
    counts = calibration_counts(ds, calib_samples, seed, classes)
    x_eval, y_eval = eval_subset(ds, eval_samples, seed)
    return BuildData(ds, calib, counts, x_eval, y_eval)
