"""POST /api/predict uploads: a bounded number in flight, decoded straight to the model's size.

Memory is what the limits allow and no more: at most `upload_slots` bodies
of at most `max_upload` bytes are held at once (more uploads get a 503 before
their body is read), and at most `decode_workers` of them are decoded at a
time, each refused from its header alone when it promises more than
`max_pixels` pixels. Decoding goes through the runtime's one decoder with the
model's size as the target, so a JPEG is decoded at 1/2-1/8 scale by the
codec and other formats are reduced right after decoding.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from edgecnn.daemon.httpcore import HTTPError
from edgecnn.errors import BadInput


class UploadSlots:
    """A non-blocking counter (used from the event loop thread only)."""

    def __init__(self, n: int) -> None:
        self.n = max(1, int(n))
        self.in_use = 0
        self.refused = 0

    def try_take(self) -> bool:
        if self.in_use >= self.n:
            self.refused += 1
            return False
        self.in_use += 1
        return True

    def give_back(self) -> None:
        self.in_use = max(0, self.in_use - 1)


def content_length(request: Any, limit: int) -> int:
    """The declared body size, checked against the limit before anything is read."""
    if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
        raise HTTPError(411, "Content-Length required (chunked uploads are not accepted)")
    length = request.headers.get("Content-Length")
    if length is None:
        raise HTTPError(411, "Content-Length required")
    try:
        n = int(length)
    except ValueError:
        raise HTTPError(400, "bad Content-Length") from None
    if n < 0:
        raise HTTPError(400, "bad Content-Length")
    if n > limit:
        raise HTTPError(413, f"upload of {n} bytes exceeds the {limit}-byte limit")
    return n


async def read_upload(request: Any, n: int, timeout: float) -> bytes:
    """The image bytes: the raw body, or the first file part of a multipart form."""
    try:
        return await asyncio.wait_for(_read(request, n), timeout)
    except asyncio.TimeoutError:
        raise HTTPError(408, f"upload body not received within {timeout:g} s") from None
    except asyncio.IncompleteReadError:
        raise HTTPError(400, "upload ended early") from None


async def _read(request: Any, n: int) -> bytes:
    if not request.content_type.startswith("multipart/form-data"):
        return await request.content.readexactly(n)
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            raise HTTPError(400, "multipart upload holds no file part")
        ctype = part.headers.get("Content-Type", "")
        if getattr(part, "filename", None) or ctype.startswith("image/"):
            return bytes(await part.read(decode=True))
        await part.release()


def decode_for_model(data: bytes, shape: tuple[int, int, int], max_pixels: int) -> np.ndarray:
    """Decode at (about) the model's H x W; gray models decode gray (a third of the memory)."""
    from edgecnn.runtime import images

    if not data:
        raise HTTPError(400, "empty upload; send the image bytes as the request body")
    h, w, c = shape
    try:
        return images.decode_image(
            data, mode="L" if c == 1 else "RGB", max_pixels=max_pixels, fit=(w, h)
        )
    except images.ImageTooLarge as e:
        raise HTTPError(413, str(e)) from None
    except BadInput as e:
        reason = str(e).rsplit("(", 1)[-1]
        raise HTTPError(400, f"upload is not a readable image ({reason}") from None
