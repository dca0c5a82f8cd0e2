"""Post-training quantization settings and the calibration (representative) data.

The calibration set is a stratified sample of the *training* split (every
class represented, round-robin): int8 ranges fitted on data missing a class
mis-scale the last layers, the classic "int8 model predicts one class" bug.
Images stay in camera pixels (0-255, float32), because normalization is baked
into the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from edgecnn.data import calibration_sample
from edgecnn.errors import BadInput

IO_DTYPES = ("int8", "uint8", "float32")
MIN_CALIB_SAMPLES = 10


def check_io_dtype(io_dtype: str) -> str:
    if io_dtype not in IO_DTYPES:
        raise BadInput(f"unknown --io-dtype {io_dtype!r}; choose from {', '.join(IO_DTYPES)}")
    return io_dtype


def calibration_images(
    x: np.ndarray, y: np.ndarray, n: int, seed: int = 0, num_classes: int | None = None
) -> np.ndarray:
    """`n` stratified training images as float32 0-255, or a BadInput if there are too few."""
    if n < MIN_CALIB_SAMPLES:
        raise BadInput(
            f"calibration set too small: {n} samples (need at least {MIN_CALIB_SAMPLES})"
        )
    if len(x) < MIN_CALIB_SAMPLES:
        raise BadInput(
            f"calibration set too small: the training split has {len(x)} images "
            f"(need at least {MIN_CALIB_SAMPLES})"
        )
    xs, _ = calibration_sample(x, y, n, seed=seed, num_classes=num_classes)
    return xs.astype(np.float32)


def representative_dataset(images: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The generator TFLiteConverter wants: one single-image batch at a time."""

    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(images)):
            yield [images[i : i + 1].astype(np.float32)]

    return gen
