"""Silence converters that print to the process's stdout/stderr (TFLite, tf2onnx, MLIR).

`TFLiteConverter.from_keras_model` prints "Saved artifact at ..." with print()
and MLIR logs from C++, which would corrupt `--json` output. Both are caught at
the file-descriptor level and kept, so a failing converter can still explain
itself in the error message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator


class Captured:
    text: str = ""

    def tail(self, lines: int = 3) -> str:
        keep = [ln.strip() for ln in self.text.splitlines() if ln.strip()]
        return " | ".join(keep[-lines:])


@contextlib.contextmanager
def captured_output() -> Iterator[Captured]:
    """Redirect fds 1 and 2 to a temp file for the duration of the block."""
    cap = Captured()
    if os.environ.get("EDGECNN_DEBUG"):
        yield cap
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    prev_level = logging.root.manager.disable
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            logging.disable(logging.WARNING)
            yield cap
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            logging.disable(prev_level)
            tmp.seek(0)
            cap.text = tmp.read()[-20000:].decode("utf-8", "replace")
