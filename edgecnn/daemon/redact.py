"""Secrets out of everything the daemon shows: URL credentials and the API token.

A camera URL such as `rtsp://admin:pw@cam/live` is shown as `rtsp://***@cam/live`
in the API, health, metrics, MQTT, the prediction log and the diagnostics log;
a `token=` query parameter is shown as `token=***`. The log filter applies both
to every record, including native library lines routed into logging, so a
secret that slips into a message from OpenCV or FFmpeg is still hidden.
"""

from __future__ import annotations

import logging
import re

# scheme://user[:password]@ -- the user-info part of any URL inside a text.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"]+@")
_TOKEN_PARAM = re.compile(r"(?P<key>[?&;]token=)[^&#\s'\"]*", re.IGNORECASE)
_BEARER = re.compile(r"(?P<key>\bBearer\s+)\S+", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with URL user-info, `token=` values and bearer tokens replaced by ***."""
    if "://" in text:
        text = _USERINFO.sub(r"\g<scheme>***@", text)
    if "token=" in text.lower():
        text = _TOKEN_PARAM.sub(r"\g<key>***", text)
    if "bearer" in text.lower():
        text = _BEARER.sub(r"\g<key>***", text)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter that rewrites each record's final message through `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is logging's problem, not ours
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of `logger` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
