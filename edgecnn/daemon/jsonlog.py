"""A JSON-lines prediction log with size-based rotation (stdlib RotatingFileHandler)."""

from __future__ import annotations

import json
import logging
import logging.handlers
from pathlib import Path

from edgecnn.daemon.pipeline import Result
from edgecnn.errors import BadInput


class JsonLinesLog:
    """One JSON object per classified frame; `max_bytes` per file, `backups` old files kept."""

    def __init__(self, path: str | Path, max_bytes: int = 10_000_000, backups: int = 3) -> None:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
        except OSError as e:
            raise BadInput(f"cannot open log file {path}: {e.strerror or e}") from None
        handler.setFormatter(logging.Formatter("%(message)s"))
        # A private logger: predictions never mix with diagnostics on stderr.
        self.logger = logging.Logger(f"edgecnn.predictions.{id(self)}")
        self.logger.propagate = False
        self.logger.addHandler(handler)
        self.handler = handler

    def __call__(self, res: Result) -> None:
        self.logger.info(json.dumps(res.to_json(), separators=(",", ":")))

    def event(self, kind: str, **fields: object) -> None:
        """Lifecycle events (start, reload, stop) in the same file, marked with "event"."""
        import time

        self.logger.info(
            json.dumps({"event": kind, "time": round(time.time(), 3), **fields}, default=str)
        )

    def close(self) -> None:
        self.handler.close()
