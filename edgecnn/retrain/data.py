"""The retrain's data: the old training data with its splits, the new labels split into a
part to learn from and a held-out part the gate judges on, and the mix of the two.

The new labels are few beside the old training set, so their training part is repeated
(`repeat`) until it weighs about a third of the mix; the held-out part is never seen by
training, validation or int8 calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecnn.data import Dataset, load_dataset
from edgecnn.data.base import stratified_split
from edgecnn.errors import BadInput

MAX_REPEAT = 20


@dataclass
class NewLabels:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_holdout: np.ndarray
    y_holdout: np.ndarray

    @property
    def total(self) -> int:
        return len(self.y_train) + len(self.y_val) + len(self.y_holdout)


def _split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """stratified_split, or everything kept when no class has two images to split."""
    if len(y) < 2 or np.bincount(y).max() < 2:
        return x, y, x[:0], y[:0]
    return stratified_split(x, y, fraction, seed)


def split_new(x: np.ndarray, y: np.ndarray, holdout: float, seed: int) -> NewLabels:
    """Held-out part (for the gate), then a tenth of the rest for validation."""
    x_rest, y_rest, x_hold, y_hold = _split(x, y, holdout, seed)
    if len(y_hold) == 0:
        raise BadInput(
            f"too few labels ({len(y)}) to hold any out for the gate; label at least two "
            "images of a class"
        )
    x_tr, y_tr, x_val, y_val = _split(x_rest, y_rest, 0.1, seed + 1)
    return NewLabels(x_tr, y_tr, x_val, y_val, x_hold, y_hold)


def old_dataset(name: str, splits: dict, shape: tuple[int, int, int]) -> Dataset:
    """The old training data with the run's own splits, at the model's input shape."""
    return load_dataset(name, **splits).adapted(shape)


def auto_repeat(old_train: int, new_train: int) -> int:
    """Repeats of the new training part so it is about a third of the mix."""
    if new_train == 0:
        return 1
    return int(np.clip(round(old_train / (2 * new_train)), 1, MAX_REPEAT))


def mixed(old: Dataset, new: NewLabels, labels: list[str], repeat: int, name: str) -> Dataset:
    """Old train + repeated new train; old val + new val; test = the old test split."""
    return Dataset(
        name=name,
        class_names=list(labels),
        x_train=np.concatenate([old.x_train, *[new.x_train] * repeat]),
        y_train=np.concatenate([old.y_train, *[new.y_train] * repeat]).astype(np.int64),
        x_val=np.concatenate([old.x_val, new.x_val]),
        y_val=np.concatenate([old.y_val, new.y_val]).astype(np.int64),
        x_test=old.x_test,
        y_test=old.y_test.astype(np.int64),
        source=f"{old.source} + labelled captures",
        provenance={
            "old": old.describe(),
            "new_train": int(len(new.y_train)),
            "new_val": int(len(new.y_val)),
            "new_holdout": int(len(new.y_holdout)),
            "repeat": repeat,
        },  # fmt: skip
    )
