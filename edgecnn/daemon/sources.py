"""Frame sources behind one small interface: Pi camera, V4L2/USB, video file, image folder, URL.

Every source hands out RGB uint8 HxWx3 frames. Sources are deliberately thin:
the reconnect/backoff policy and the latest-frame-only slot live in
`pipeline.CaptureWorker`, so each adapter only knows how to open, read and close.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgecnn.daemon.redact import redact
from edgecnn.errors import BadInput

log = logging.getLogger("edgecnn.daemon.sources")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
URL_RE = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp)://", re.IGNORECASE)


class SourceError(Exception):
    """The source could not be opened or stopped delivering; the worker reconnects."""


@dataclass
class Frame:
    image: np.ndarray  # RGB uint8 HxWx3
    seq: int  # monotonic capture counter (across reconnects)
    pos: int | None  # position inside a file/folder source (None for live sources)
    t: float  # time.monotonic() of capture


class Source(Protocol):
    name: str
    live: bool  # live sources are never paced; files are paced at their frame rate

    def open(self) -> None: ...

    def read(self) -> tuple[np.ndarray, int | None] | None:
        """Next RGB frame and its position, or None when the source has ended."""

    def close(self) -> None: ...

    @property
    def fps(self) -> float | None: ...


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:  # OpenCV is the video extra; a Picamera2-only device has none
        raise BadInput("this source needs OpenCV: pip install 'edgecnn[video]'") from None
    quiet_opencv(cv2)
    return cv2


def quiet_opencv(cv2: Any) -> None:
    """OpenCV's own warnings (`[ WARN:0@5.589] global cap.cpp ...`) off: the daemon logs the
    failures it sees itself; FFmpeg's lines are routed into logging by `nativelog`."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # pragma: no cover - very old OpenCV
        pass


class OpenCVSource:
    """A V4L2/USB camera (index or /dev/videoN), an RTSP/HTTP URL or a video file, via OpenCV.

    Live captures get a one-frame driver buffer; the capture thread reads
    continuously, so what inference sees is always the newest frame.
    """

    def __init__(
        self, spec: str | int, kind: str, loop: bool = False, size: tuple[int, int] | None = None
    ):
        _cv2()  # no OpenCV (a Picamera2-only install): bad input at start, not endless retries
        self.spec = spec
        self.kind = kind  # "camera" | "url" | "file"
        self.loop = loop
        self.size = size  # (width, height) hint for cameras
        self.live = kind != "file"
        self.name = f"{kind}:{redact(str(spec))}"  # never shows URL credentials
        self._cap: Any = None
        self._pos = 0
        self._fps: float | None = None

    @property
    def fps(self) -> float | None:
        return self._fps

    def open(self) -> None:
        cv2 = _cv2()
        if self.kind == "camera":
            cap = cv2.VideoCapture(self.spec, cv2.CAP_V4L2)
        elif self.kind == "url":
            if str(self.spec).lower().startswith("rtsp"):
                # Interleaved TCP: no UDP ports to open, no lost packets on a busy link.
                os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
            # Bounded open/read waits, so a dead stream becomes a retry, not a hang.
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]
            cap = cv2.VideoCapture(str(self.spec), cv2.CAP_FFMPEG, params)
        else:
            cap = cv2.VideoCapture(str(self.spec))
        if not cap.isOpened():
            cap.release()
            if self.kind == "file":
                raise SourceError(f"{self.spec} is not a readable video (it cannot be decoded)")
            raise SourceError(f"cannot open {self.name}")
        if self.live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if self.kind == "camera" and self.size:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = float(fps) if fps and 0 < fps < 1000 else None
        self._cap = cap
        self._pos = 0

    def read(self) -> tuple[np.ndarray, int | None] | None:
        if self._cap is None:
            raise SourceError(f"{self.name} is not open")
        cv2 = _cv2()
        ok, bgr = self._cap.read()
        if not ok and self.kind == "file" and self.loop and self._pos > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._pos = 0
            ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        pos = self._pos if self.kind == "file" else None
        self._pos += 1
        if bgr.ndim == 2:
            return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB), pos
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), pos

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderSource:
    """The images of a folder in name order, at `fps` frames per second, optionally looped."""

    live = False

    def __init__(self, folder: Path, loop: bool = False, fps: float = 10.0):
        self.folder = folder
        self.loop = loop
        self.name = f"folder:{folder}"
        self._fps = fps
        self._files: list[Path] = []
        self._i = 0

    @property
    def fps(self) -> float | None:
        return self._fps

    def open(self) -> None:
        try:
            files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        except OSError as e:
            raise SourceError(f"cannot list {self.folder}: {e.strerror or e}") from None
        if not files:
            raise SourceError(f"no images in {self.folder}")
        self._files = files
        self._i = 0

    def read(self) -> tuple[np.ndarray, int | None] | None:
        from edgecnn.runtime.images import decode_image

        while True:
            if self._i >= len(self._files):
                if not self.loop:
                    return None
                self._i = 0
            path = self._files[self._i]
            pos = self._i
            self._i += 1
            try:
                return decode_image(path, mode="RGB"), pos
            except BadInput as e:
                log.warning("skipping unreadable image %s: %s", path, e)

    def close(self) -> None:
        self._files = []


class Picamera2Source:
    """The Raspberry Pi camera through picamera2 (imported only when this source is used).

    The stream is configured at the model's size and without a frame queue
    (`queue=False`), so `capture_array` always waits for the newest frame
    rather than handing back a stale buffered one. `factory` is for tests:
    picamera2 cannot exist off a Pi.
    """

    live = True

    def __init__(self, camera: int = 0, size: tuple[int, int] = (224, 224), factory: Any = None):
        self.camera = camera
        self.size = size
        self.name = f"picamera2:{camera}"
        self._factory = factory
        self._cam: Any = None

    @property
    def fps(self) -> float | None:
        return None

    def open(self) -> None:
        factory = self._factory
        if factory is None:
            try:
                from picamera2 import Picamera2  # type: ignore[import-not-found]
            except ImportError as e:
                raise SourceError(
                    f"picamera2 is not importable ({e}); install python3-picamera2"
                ) from None
            factory = Picamera2
        try:
            cam = factory(self.camera)
            # "RGB888" is [B, G, R] in memory (libcamera naming); read() flips it.
            config = cam.create_video_configuration(
                main={"size": tuple(self.size), "format": "RGB888"}, buffer_count=2, queue=False
            )
            cam.configure(config)
            cam.start()
        except Exception as e:  # the camera stack raises many types
            raise SourceError(f"cannot start {self.name}: {e}") from None
        self._cam = cam

    def read(self) -> tuple[np.ndarray, int | None] | None:
        if self._cam is None:
            raise SourceError(f"{self.name} is not open")
        try:
            arr = self._cam.capture_array("main")
        except Exception as e:
            raise SourceError(f"{self.name} capture failed: {e}") from None
        if arr is None:
            return None
        arr = np.asarray(arr)
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[..., :3]
        return np.ascontiguousarray(arr[..., ::-1]), None

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            except Exception as e:  # closing a dead camera must not crash the daemon
                log.warning("closing %s: %s", self.name, e)
            self._cam = None


def probe_file(src: OpenCVSource) -> None:
    """A video file must open and yield a frame now: one that cannot is bad input, not retried."""
    try:
        src.open()
        got = src.read()
    except SourceError as e:
        raise BadInput(str(e)) from None
    finally:
        src.close()
    if got is None:
        raise BadInput(f"{src.spec} holds no decodable video frame")


def make_source(
    spec: str,
    size: tuple[int, int],
    loop: bool = False,
    folder_fps: float = 10.0,
    picamera2_factory: Any = None,
) -> Source:
    """Resolve a --source string into an adapter; reject specs that can never work.

    `size` is the model input (width, height), used to configure cameras.
    A missing regular path, or a file that is not a decodable video, is bad
    input (a typo, a corrupt file); a missing /dev node or an unreachable URL
    is a device that may come back, so it is retried.
    """
    spec = str(spec).strip()
    if not spec:
        raise BadInput("--source is empty")
    low = spec.lower()
    if low == "picamera2" or low.startswith("picamera2:"):
        idx = spec.split(":", 1)[1] if ":" in spec else "0"
        if not idx.isdigit():
            raise BadInput(f"bad picamera2 camera number in {spec!r}")
        return Picamera2Source(int(idx), size, factory=picamera2_factory)
    if spec.isdigit():
        return OpenCVSource(int(spec), "camera", size=size)
    if URL_RE.match(spec):
        return OpenCVSource(spec, "url")
    if spec.startswith("/dev/"):
        return OpenCVSource(spec, "camera", size=size)
    p = Path(spec).expanduser()
    if p.is_dir():
        return ImageFolderSource(p, loop=loop, fps=folder_fps)
    if p.is_file():
        if not os.access(p, os.R_OK):
            raise BadInput(f"source {spec} is not readable")
        src = OpenCVSource(str(p), "file", loop=loop)
        probe_file(src)
        return src
    raise BadInput(
        f"source {spec!r} is not a camera index, /dev/videoN, picamera2, URL, video file or image folder"
    )
