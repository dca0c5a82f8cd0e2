"""Draw the top-k bars, FPS and model name over a frame and encode it as JPEG (Pillow).

Pillow, not OpenCV: it is a base dependency, so a Picamera2-only device (`edgecnn[device]`,
no OpenCV) streams MJPEG too. `annotate(..., overlay=False)` gives the frame alone
(`serve --no-overlay`), still upscaled so a small model input stays visible.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np

MIN_WIDTH = 320  # small model inputs (8x8 digits) are upscaled so text stays legible
LINE = 20
PANEL_W = 300


def _rgb(frame: np.ndarray) -> Any:
    """An RGB PIL image of the frame, nearest-upscaled to at least MIN_WIDTH wide."""
    from PIL import Image

    img = frame[..., None] if frame.ndim == 2 else frame
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    im = Image.fromarray(np.ascontiguousarray(img[..., :3]))
    if im.width < MIN_WIDTH:
        h = max(1, round(im.height * MIN_WIDTH / im.width))
        im = im.resize((MIN_WIDTH, h), Image.NEAREST)
    return im


def annotate(
    frame: np.ndarray,
    top_k: list[dict[str, Any]],
    fps: float,
    model: dict[str, Any],
    threshold: float = 0.0,
    overlay: bool = True,
) -> Any:
    """An RGB PIL image of the frame with the overlay drawn on it (unless `overlay` is off)."""
    from PIL import Image, ImageDraw

    im = _rgb(frame)
    if not overlay:
        return im
    w, h = im.size
    panel_h, panel_w = min(h, (len(top_k) + 1) * LINE + 8), min(w, PANEL_W)
    shade = np.asarray(im.crop((0, 0, panel_w, panel_h)), dtype=np.float32) * 0.4
    im.paste(Image.fromarray(shade.astype(np.uint8)), (0, 0))
    draw = ImageDraw.Draw(im)
    title = f"{model.get('name', '?')} {model.get('version', '')}  {fps:.1f} fps"
    draw.text((6, 3), title[:40], fill=(255, 255, 255))
    bar_max = panel_w - 120
    for i, p in enumerate(top_k):
        y = 8 + LINE * (i + 1)
        score = float(p["score"])
        color = (80, 200, 80) if i == 0 and score >= threshold else (60, 160, 200)
        bar = int(bar_max * max(0.0, min(1.0, score)))
        if bar > 0:
            draw.rectangle((110, y, 110 + bar, y + 12), fill=color)
        draw.text((6, y), f"{str(p['label'])[:10]} {score:.2f}", fill=(255, 255, 255))
    return im


def encode_jpeg(im: Any, quality: int = 80) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


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
                self._jpeg = encode_jpeg(render(), self.quality)
                self._seq = seq
            return self._jpeg


def placeholder_jpeg(text: str, size: tuple[int, int] = (320, 240)) -> bytes:
    """A grey frame with a message, shown while the source is (re)connecting."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", size, (60, 60, 60))
    ImageDraw.Draw(im).text((8, size[1] // 2), text[:40], fill=(255, 255, 255))
    return encode_jpeg(im)
