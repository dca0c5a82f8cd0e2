"""The dataset record, split helpers, resizing and calibration sampling (numpy + Pillow only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.errors import BadInput


@dataclass
class Dataset:
    """Train/validation/test splits as uint8 NHWC arrays in camera pixels (0-255)."""

    name: str
    class_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    # True when class_names is a model's whole label space (ImageNet-1k) and only
    # some classes have images: calibration then cannot (and need not) cover them all.
    label_space: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def classes_to_cover(self) -> int | None:
        """How many classes int8 calibration must include (None: those present)."""
        return None if self.label_space else self.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.x_train.shape[1:])  # type: ignore[return-value]

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in ("train", "val", "test"):
            raise BadInput(f"unknown split {name!r} (choose train, val or test)")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def adapted(self, shape: tuple[int, int, int] | list[int], resize: str = "stretch") -> Dataset:
        """The same data fitted (by the manifest's `resize` mode) and channel-converted to a
        model's input shape."""
        shape = tuple(int(v) for v in shape)
        if shape == self.input_shape:
            return self
        return Dataset(
            name=self.name,
            class_names=self.class_names,
            x_train=adapt_images(self.x_train, shape, resize),
            y_train=self.y_train,
            x_val=adapt_images(self.x_val, shape, resize),
            y_val=self.y_val,
            x_test=adapt_images(self.x_test, shape, resize),
            y_test=self.y_test,
            source=self.source,
            provenance={
                **self.provenance,
                "native_shape": self.provenance.get("native_shape", list(self.input_shape)),
                "adapted_to": list(shape),
                "resize": resize,
            },
            label_space=self.label_space,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "classes": self.num_classes,
            "image_shape": list(self.input_shape),
            "train": int(len(self.y_train)),
            "val": int(len(self.y_val)),
            "test": int(len(self.y_test)),
            **({"label_space": True} if self.label_space else {}),
            **self.provenance,
        }


def to_uint8_nhwc(x: np.ndarray, max_value: float = 255.0) -> np.ndarray:
    """Bring any stored range (digits are 0-16) to 0-255 uint8 with a channel axis."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if max_value != 255.0:
        x = x * (255.0 / max_value)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def adapt_images(
    x: np.ndarray, shape: tuple[int, int, int] | list[int], resize: str = "stretch"
) -> np.ndarray:
    """Fit each image to (H, W) with the runtime's own `fit_image` (so training images and
    camera frames are resized alike) and convert channels (gray<->RGB) to C."""
    from edgecnn.runtime.preprocess import fit_image

    h, w, c = (int(v) for v in shape)
    if x.ndim != 4:
        raise BadInput(f"expected a batch of images (N,H,W,C), got shape {x.shape}")
    if c not in (1, 3):
        raise BadInput(f"models take 1 or 3 channels, not {c}")
    n, ih, iw, ic = x.shape
    if ic not in (1, 3, 4):
        raise BadInput(f"images have {ic} channels; expected 1, 3 or 4")
    if ic == 4:
        x = x[..., :3]
        ic = 3
    if (ih, iw) != (h, w):
        out = np.empty((n, h, w, ic), dtype=np.uint8)
        for i in range(n):
            out[i] = fit_image(x[i], (h, w, ic), resize=resize)
        x = out
    if ic == 1 and c == 3:
        x = np.repeat(x, 3, axis=-1)
    elif ic == 3 and c == 1:
        # ITU-R 601-2 luma, as Pillow's convert("L") does.
        g = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
        x = np.clip(np.rint(g), 0, 255).astype(np.uint8)[..., None]
    return np.ascontiguousarray(x, dtype=np.uint8)


def stratified_split(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split off `fraction` of every class (so sorted sources like mnist5k stay balanced)."""
    if not 0.0 < fraction < 1.0:
        raise BadInput(f"split fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    take: list[np.ndarray] = []
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        k = max(1, int(round(len(idx) * fraction))) if len(idx) > 1 else 0
        take.append(idx[:k])
    held = np.concatenate(take) if take else np.array([], dtype=int)
    mask = np.zeros(len(y), dtype=bool)
    mask[held] = True
    rest = np.flatnonzero(~mask)
    rng.shuffle(rest)
    rng.shuffle(held)
    return x[rest], y[rest], x[held], y[held]


def calibration_sample(
    x: np.ndarray, y: np.ndarray, n: int, seed: int = 0, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified sample of about `n` images with every class represented.

    int8 calibration that misses a class mis-ranges the last layers, the
    classic "int8 model predicts one class" failure, so classes are drawn
    round-robin rather than at random.
    """
    if n <= 0:
        raise BadInput(f"calibration sample size must be positive, got {n}")
    classes = np.unique(y)
    if num_classes is not None and len(classes) < num_classes:
        missing = sorted(set(range(num_classes)) - set(int(c) for c in classes))
        raise BadInput(f"calibration data lacks classes {missing}")
    rng = np.random.default_rng(seed)
    pools = {int(c): rng.permutation(np.flatnonzero(y == c)).tolist() for c in classes}
    chosen: list[int] = []
    while len(chosen) < n and any(pools.values()):
        for c in list(pools):
            if pools[c] and len(chosen) < n:
                chosen.append(pools[c].pop())
    idx = np.array(chosen, dtype=int)
    rng.shuffle(idx)
    return x[idx], y[idx]
