"""Resizing a camera frame to the model's input, as cheaply as it can be done well.

At camera resolution the resize can cost more than the network: Pillow's antialiased
bilinear takes ~1.3 ms for 640x480 -> 96x96 on an x86 core, OpenCV's INTER_AREA ~1.1 ms
(its fast path needs an integer factor), against a ~0.4 ms int8 MobileNetV2-0.35-96
invoke. With OpenCV installed, a large downscale is done in two steps: bilinear to twice
the target (each output pixel interpolates a 2x2 neighbourhood), then a 2x box average
(INTER_AREA's integer path): ~0.16 ms for the same frame, and every output pixel still
averages 16 source samples spread over its footprint, so it does not alias like a
one-step bilinear (0.035 ms, but 4 samples per output pixel). Without OpenCV (a lean
device install), Pillow's `reduce` (integer box) then bilinear.
tools/bench_preprocess.py measures the options.
"""

from __future__ import annotations

import importlib.util

import numpy as np

TWO_STEP_FROM = 3.0  # downscale factor from which the two-step path pays


def _cv2():  # type: ignore[no-untyped-def]
    if importlib.util.find_spec("cv2") is None:
        return None
    import cv2

    return cv2


def _with_cv2(cv2, arr: np.ndarray, w: int, h: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    src = arr[..., 0] if arr.shape[2] == 1 else arr
    factor = min(src.shape[1] / w, src.shape[0] / h)
    if factor >= TWO_STEP_FROM:
        mid = cv2.resize(src, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
        out = cv2.resize(mid, (w, h), interpolation=cv2.INTER_AREA)
    elif factor > 1.0:
        out = cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)
    else:
        out = cv2.resize(src, (w, h), interpolation=cv2.INTER_LINEAR)
    return out[..., None] if out.ndim == 2 else out


def _with_pillow(arr: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    k = int(min(img.width / w, img.height / h) // 2)
    if k >= 2:
        img = img.reduce(k)
    out = np.asarray(img.resize((w, h), Image.BILINEAR))
    return out[..., None] if out.ndim == 2 else out


def resize_frame(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWxC uint8 -> size (width, height), same channels."""
    w, h = size
    if arr.shape[1] == w and arr.shape[0] == h:
        return arr
    cv2 = _cv2()
    return _with_cv2(cv2, arr, w, h) if cv2 is not None else _with_pillow(arr, w, h)
