"""Draw the top-k bars, FPS and model name over a frame and encode it as JPEG (OpenCV)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

MIN_WIDTH = 320  # small model inputs (8x8 digits) are upscaled so text stays legible


def annotate(
    frame: np.ndarray,
    top_k: list[dict[str, Any]],
    fps: float,
    model: dict[str, Any],
    threshold: float = 0.0,
) -> np.ndarray:
    """A BGR copy of an RGB frame with the overlay drawn on it."""
    import cv2

    img = frame
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    h, w = img.shape[:2]
    if w < MIN_WIDTH:
        scale = MIN_WIDTH / w
        img = cv2.resize(
            img, (MIN_WIDTH, max(1, round(h * scale))), interpolation=cv2.INTER_NEAREST
        )
    bgr = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR)
    h, w = bgr.shape[:2]
    rows = len(top_k) + 1
    line = 20
    panel_h = min(h, rows * line + 8)
    panel_w = min(w, 300)
    shade = bgr[:panel_h, :panel_w].astype(np.float32) * 0.4
    bgr[:panel_h, :panel_w] = shade.astype(np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    title = f"{model.get('name', '?')} {model.get('version', '')}  {fps:.1f} fps"
    cv2.putText(bgr, title[:40], (6, 15), font, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    bar_max = panel_w - 120
    for i, p in enumerate(top_k):
        y = 8 + line * (i + 1)
        score = float(p["score"])
        color = (80, 200, 80) if i == 0 and score >= threshold else (200, 160, 60)
        cv2.rectangle(
            bgr, (110, y), (110 + int(bar_max * max(0.0, min(1.0, score))), y + 12), color, -1
        )
        text = f"{str(p['label'])[:10]} {score:.2f}"
        cv2.putText(bgr, text, (6, y + 11), font, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return bgr


class JpegCache:
    """Encodes each annotated result once, however many stream clients watch it."""

    def __init__(self, quality: int = 80) -> None:
        self.quality = quality
        self._lock = threading.Lock()
        self._seq = -1
        self._jpeg = b""

    def get(self, seq: int, render: Any) -> bytes:
        with self._lock:
            if seq != self._seq:
                import cv2

                ok, buf = cv2.imencode(".jpg", render(), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                if ok:
                    self._seq = seq
                    self._jpeg = buf.tobytes()
            return self._jpeg


def placeholder_jpeg(text: str, size: tuple[int, int] = (320, 240)) -> bytes:
    """A grey frame with a message, shown while the source is (re)connecting."""
    import cv2

    w, h = size
    img = np.full((h, w, 3), 60, dtype=np.uint8)
    cv2.putText(
        img, text[:40], (8, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
    )
    ok, buf = cv2.imencode(".jpg", img)
    return buf.tobytes() if ok else b""
