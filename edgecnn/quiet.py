"""Keep native libraries' noise off the user's terminal (both sides; imports nothing heavy).

Three sources of noise, one module:
* TensorFlow and absl log from C++ while TensorFlow is still importing, before
  `TF_CPP_MIN_LOG_LEVEL` is read: `quiet_tensorflow()` sets the variables and runs the
  import itself inside `captured_output()`.
* Converters (TFLite, tf2onnx, MLIR) print to file descriptors 1 and 2, which would
  corrupt `--json` output: `captured_output()` catches them and keeps the text, so a
  failing converter can still explain itself.
* LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" from C++ for every
  interpreter: `native_info_filtered()` drops those lines and keeps real messages.

EDGECNN_DEBUG=1 (or EDGECNN_VERBOSE=1 for LiteRT) lets everything through.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

TF_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "ABSL_MIN_LOG_LEVEL": "3"}


class Captured:
    """What a `captured_output()` block printed."""

    text: str = ""

    def tail(self, lines: int = 3) -> str:
        keep = [ln.strip() for ln in self.text.splitlines() if ln.strip()]
        return " | ".join(keep[-lines:])


@contextlib.contextmanager
def _fds_captured(fds: tuple[int, ...], into: Captured) -> Iterator[None]:
    """Point `fds` at a temp file for the block; its text lands in `into.text` afterwards."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            for fd in fds:
                os.dup2(tmp.fileno(), fd)
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip(fds, saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            into.text = tmp.read()[-20000:].decode("utf-8", "replace")


@contextlib.contextmanager
def captured_output() -> Iterator[Captured]:
    """Redirect fds 1 and 2 to a temp file for the duration of the block."""
    cap = Captured()
    if os.environ.get("EDGECNN_DEBUG"):
        yield cap
        return
    prev_level = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with _fds_captured((1, 2), cap):
            yield cap
    finally:
        logging.disable(prev_level)


@contextlib.contextmanager
def native_info_filtered() -> Iterator[None]:
    """Drop native "INFO: ..." lines from fd 2 for the block; pass everything else on."""
    if os.environ.get("EDGECNN_VERBOSE") or os.environ.get("EDGECNN_DEBUG"):
        yield
        return
    cap = Captured()
    try:
        ctx = _fds_captured((2,), cap)
        ctx.__enter__()
    except (OSError, ValueError):  # no usable fd 2 (a daemon without stderr)
        yield
        return
    try:
        yield
    finally:
        ctx.__exit__(None, None, None)
        for line in cap.text.splitlines(keepends=True):
            if not line.startswith("INFO: "):
                sys.stderr.write(line)


def quiet_tensorflow(import_now: bool = True) -> None:
    """Silence TensorFlow/absl start-up noise; with `import_now`, import TensorFlow quietly."""
    for key, value in TF_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    if import_now and "tensorflow" not in sys.modules:
        with captured_output(), contextlib.suppress(ImportError):
            import tensorflow  # noqa: F401  (the caller's own import reports a missing TF)
