"""The one image decoder: files, uploads and folders all come through here (Pillow only).

Decoding is bounded before any pixel is unpacked: the header gives the size, and an
image over `max_pixels` is refused (a 116 KB PNG can hold 6300x6300 pixels, ~545 MB
decoded). When the caller says how big the result needs to be, JPEGs are decoded at
1/2, 1/4 or 1/8 scale by the codec itself (`Image.draft`) and other formats are
shrunk with `Image.reduce` right after decoding, so memory follows the model's
size, not the file's.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from edgecnn.errors import BadInput

DEFAULT_MAX_PIXELS = 40_000_000
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F", "P;L")


class ImageTooLarge(BadInput):
    """The image's header promises more pixels than the caller allows."""


def decode_image(
    source: bytes | str | os.PathLike,
    *,
    mode: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    fit: tuple[int, int] | None = None,
) -> np.ndarray:
    """An image file or its bytes as HxWxC uint8: C is 1 (gray) or 3 (RGB).

    mode: "RGB" or "L" to force one; None keeps gray images gray and makes the rest RGB.
    fit: (width, height) the caller will resize to; decoding may stop at the smallest
    size still at least that large (JPEG draft, `reduce`), never below it.
    """
    from PIL import Image, UnidentifiedImageError

    name = "image" if isinstance(source, bytes) else str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source)) as im:
            _check_size(im.size, max_pixels, name)
            target = mode or ("L" if im.mode in GRAY_MODES else "RGB")
            if fit is not None:
                im.draft(target, _at_least(im.size, fit))
            im.load()
            if im.mode != target:
                im = im.convert(target)
            if fit is not None:
                im = _reduced(im, fit)
            arr = np.asarray(im, dtype=np.uint8)
    except ImageTooLarge:
        raise
    except FileNotFoundError:
        raise BadInput(f"{name} does not exist") from None
    except IsADirectoryError:
        raise BadInput(f"{name} is a directory, not an image") from None
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise BadInput(f"{name} is not a readable image ({type(e).__name__})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise BadInput(f"{name} is not a readable image ({type(e).__name__})") from None
    return arr[..., None] if arr.ndim == 2 else arr


def _check_size(size: tuple[int, int], max_pixels: int, name: str) -> None:
    w, h = size
    if w * h > max_pixels:
        raise ImageTooLarge(f"{name} is {w}x{h}; at most {max_pixels:,} pixels accepted")


def _at_least(size: tuple[int, int], fit: tuple[int, int]) -> tuple[int, int]:
    """The draft request: JPEG picks the smallest scale whose result covers it."""
    w, h = size
    fw, fh = max(1, fit[0]), max(1, fit[1])
    # Keep the aspect: the side that needs more pixels decides the scale.
    scale = max(fw / w, fh / h)
    return max(1, int(w * scale + 0.999)), max(1, int(h * scale + 0.999))


def _reduced(im: object, fit: tuple[int, int]) -> object:
    """Integer downscale (box filter) as far as it stays at least `fit` on both axes."""
    w, h = im.size  # type: ignore[attr-defined]
    factor = max(1, min(w // max(1, fit[0]), h // max(1, fit[1])))
    return im.reduce(factor) if factor > 1 else im  # type: ignore[attr-defined]
