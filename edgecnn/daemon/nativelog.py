"""Native libraries' stderr (FFmpeg inside OpenCV, GStreamer, LiteRT) routed into logging.

FFmpeg writes lines such as `[http @ 0x55d0...] Stream ends prematurely` straight
to file descriptor 2, past Python. The daemon points fd 2 at a pipe and a
thread turns each line into a record of the `edgecnn.native` logger: formatted
like every other line, redacted (a camera URL with credentials may be in it),
and rate-limited (a corrupt file or a dead stream repeats the same line).
Python's own output (logging, errors) keeps going to the real stderr.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
import time

from edgecnn.daemon.redact import redact

log = logging.getLogger("edgecnn.native")
_POINTER = re.compile(r" @ 0x[0-9a-f]+\]")
REPEAT_WINDOW_S = 10.0


class _Repeats:
    """Lets a line through once per window; says how often it was held back."""

    def __init__(self, window: float = REPEAT_WINDOW_S) -> None:
        self.window = window
        self._seen: dict[str, tuple[float, int]] = {}

    def admit(self, line: str, now: float) -> tuple[bool, int]:
        first, held = self._seen.get(line, (0.0, 0))
        if now - first >= self.window:
            self._seen[line] = (now, 0)
            if len(self._seen) > 256:
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window}
            return True, held
        self._seen[line] = (first, held + 1)
        return False, held + 1


def _level(line: str) -> int:
    low = line.lower()
    if low.startswith("info:") or "created tensorflow lite" in low:
        return logging.DEBUG
    return logging.WARNING


def _pump(fd: int) -> None:
    repeats = _Repeats()
    with open(fd, "rb", buffering=0, closefd=True) as pipe:
        buf = b""
        while chunk := pipe.read(65536):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = _POINTER.sub("]", raw.decode("utf-8", "replace").strip())
                if not line:
                    continue
                ok, held = repeats.admit(line, time.monotonic())
                if ok:
                    suffix = f" (and {held} more like it)" if held else ""
                    log.log(_level(line), "%s%s", redact(line), suffix)


def route_native_stderr() -> bool:
    """Point fd 2 at a pipe read into logging; sys.stderr keeps the real stream. Once only."""
    if getattr(route_native_stderr, "done", False):
        return False
    try:
        real = os.dup(2)
        r, w = os.pipe()
        os.dup2(w, 2)
        os.close(w)
    except OSError:
        return False
    sys.stderr.flush()
    sys.stderr = io.TextIOWrapper(
        io.FileIO(real, "w", closefd=True), encoding="utf-8", errors="replace", line_buffering=True
    )
    threading.Thread(target=_pump, args=(r,), name="edgecnn-native-log", daemon=True).start()
    route_native_stderr.done = True  # type: ignore[attr-defined]
    return True
