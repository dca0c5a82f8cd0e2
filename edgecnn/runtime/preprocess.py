"""Camera pixels -> model input, and raw outputs -> probabilities and top-k.

Everything comes from the manifest (input shape, color order, pixel range) and
the artifact's input quantization, so host and device cannot disagree about
normalization. Frames are fitted by the manifest's resize mode, resized by
`edgecnn.runtime.resize` (antialiased) and converted to gray with ITU-R 601-2 luma;
`edgecnn.data.adapt_images` fits training images with `fit_image` itself, so images seen
in training and on the device are alike.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import numpy as np

from edgecnn.errors import BadInput
from edgecnn.manifest import RESIZE_MODES
from edgecnn.runtime.resize import resize_frame

LETTERBOX_FILL = 0  # black bars: the background of MNIST-like data, and what Edge Impulse pads
Prediction = namedtuple("Prediction", ["index", "label", "score"])


def to_uint8_image(image: Any) -> np.ndarray:
    """A PIL image or an HxW / HxWxC uint8 array -> HxWxC uint8 (C in 1, 3)."""
    if not isinstance(image, np.ndarray):
        if hasattr(image, "mode") and hasattr(image, "convert"):  # PIL.Image, imported lazily
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGBA" if "A" in image.mode else "RGB")
            image = np.asarray(image)
        else:
            raise BadInput(f"not an image: {type(image).__name__}")
    arr = image
    if arr.dtype != np.uint8:
        if arr.dtype.kind in "iu" and arr.size and arr.min() >= 0 and arr.max() <= 255:
            arr = arr.astype(np.uint8)
        else:
            raise BadInput(f"expected uint8 pixels 0-255, got an array of {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise BadInput(f"expected an HxW or HxWxC image, got shape {tuple(arr.shape)}")
    h, w, c = arr.shape
    if h == 0 or w == 0:
        raise BadInput(f"empty image of shape {tuple(arr.shape)}")
    if c == 4:
        arr = arr[..., :3]
    elif c not in (1, 3):
        raise BadInput(f"images must have 1, 3 or 4 channels, got {c}")
    return arr


def centre_crop(arr: np.ndarray, aspect: float) -> np.ndarray:
    """The largest centred window of `arr` with width/height `aspect`."""
    ih, iw = arr.shape[:2]
    if iw > ih * aspect:
        cw = max(1, round(ih * aspect))
        return arr[:, (iw - cw) // 2 : (iw - cw) // 2 + cw]
    ch = max(1, round(iw / aspect))
    return arr[(ih - ch) // 2 : (ih - ch) // 2 + ch]


def letterbox(arr: np.ndarray, h: int, w: int, fill: int = LETTERBOX_FILL) -> np.ndarray:
    """The whole frame scaled to fit inside h x w (aspect kept), centred on `fill` padding."""
    ih, iw = arr.shape[:2]
    scale = min(h / ih, w / iw)
    nh, nw = max(1, min(h, round(ih * scale))), max(1, min(w, round(iw * scale)))
    inner = resize_frame(arr, (nw, nh))
    out = np.full((h, w, arr.shape[2]), fill, dtype=np.uint8)
    top, left = (h - nh) // 2, (w - nw) // 2
    out[top : top + nh, left : left + nw] = inner
    return out


def aspect_mismatch(frame_hw: tuple[int, int], spec_hw: tuple[int, int], tol: float = 0.02) -> bool:
    """True when a frame's width/height differs from the model's by more than `tol` (2%)."""
    fa, ma = frame_hw[1] / frame_hw[0], spec_hw[1] / spec_hw[0]
    return abs(fa / ma - 1.0) > tol


def fit_image(
    arr: np.ndarray, shape: tuple[int, int, int], color_order: str = "RGB", resize: str = "stretch"
) -> np.ndarray:
    """Resize (`edgecnn.runtime.resize`) and convert channels to the model's HxWxC.

    The three modes of `edgecnn.manifest.RESIZE_MODES` (Edge Impulse's squash / fit shortest /
    fit longest): "stretch" resizes the whole frame, squashing a 4:3 frame into a square
    model; "crop" first takes the centred window of the model's aspect (ImageNet classifiers
    are trained on centre crops); "letterbox" keeps the whole frame and its aspect, padding
    the rest with black. Training images go through the same function (`adapt_images`).
    """
    h, w, c = shape
    if resize not in RESIZE_MODES:
        raise BadInput(f"unknown resize mode {resize!r}; choose one of: {', '.join(RESIZE_MODES)}")
    if arr.shape[:2] != (h, w):
        if resize == "crop":
            arr = centre_crop(arr, w / h)
        arr = letterbox(arr, h, w) if resize == "letterbox" else resize_frame(arr, (w, h))
    ic = arr.shape[2]
    if ic == 1 and c == 3:
        arr = np.repeat(arr, 3, axis=-1)
    elif ic == 3 and c == 1:
        g = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
        arr = np.clip(np.rint(g), 0, 255).astype(np.uint8)[..., None]
    if c == 3 and color_order.upper() == "BGR":
        arr = arr[..., ::-1]
    return arr


class InputQuantizer:
    """uint8 camera pixels (N,H,W,C) -> the model's input tensor dtype and range."""

    def __init__(self, dtype: np.dtype, scale: float, zero_point: int, pixel_range: list[float]):
        self.dtype = np.dtype(dtype)
        self.scale = float(scale)
        self.zero_point = int(zero_point)
        lo, hi = (float(v) for v in pixel_range)
        self.lo, self.span = lo, (hi - lo) / 255.0
        identity = lo == 0.0 and hi == 255.0
        # int8 input with scale 1 over 0-255 pixels is a plain shift: no float math.
        self.shift = (
            identity
            and self.dtype.kind in "iu"
            and self.scale == 1.0
            and self.dtype in (np.dtype(np.int8), np.dtype(np.uint8))
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.dtype.kind == "f":
            if self.lo == 0.0 and self.span == 1.0:
                return x.astype(self.dtype)
            return (x.astype(np.float32) * self.span + self.lo).astype(self.dtype)
        if self.shift:
            if self.zero_point == 0 and self.dtype == np.uint8:
                return x
            if self.zero_point == -128 and self.dtype == np.int8:
                return (x ^ np.uint8(0x80)).view(np.int8)  # x - 128 without a wider temporary
            return (
                (x.astype(np.int16) + self.zero_point)
                .clip(np.iinfo(self.dtype).min, np.iinfo(self.dtype).max)
                .astype(self.dtype)
            )
        if not self.scale:
            raise BadInput(f"model input is {self.dtype} but has no quantization parameters")
        real = x.astype(np.float32) * self.span + self.lo
        q = np.rint(real / self.scale) + self.zero_point
        info = np.iinfo(self.dtype)
        return np.clip(q, info.min, info.max).astype(self.dtype)


def dequantize(raw: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Scores as float32; through int64 so `q - zero_point` cannot overflow (as pycoral does)."""
    if raw.dtype.kind == "f":
        return raw.astype(np.float32, copy=False)
    if not scale:
        return raw.astype(np.float32)
    return (scale * (raw.astype(np.int64) - zero_point)).astype(np.float32)


def top_k(scores: np.ndarray, labels: list[str], k: int = 5) -> list[Prediction]:
    """The k best classes, best first (argpartition, then sort only those k)."""
    scores = np.asarray(scores).reshape(-1)
    k = max(1, min(int(k), scores.size))
    neg = -scores
    if scores.size > 64:  # partition first only when there are many classes
        idx = np.argpartition(neg, k - 1)[:k]
        idx = idx[np.argsort(neg[idx], kind="stable")]
    else:
        idx = np.argsort(neg, kind="stable")[:k]
    n = len(labels)
    return [
        Prediction(i, labels[i] if i < n else str(i), s)
        for i, s in zip(idx.tolist(), scores[idx].tolist(), strict=True)
    ]
