"""The HTTP server's limits, on top of aiohttp's low-level server.

aiohttp gives one event-loop thread for every connection, TCP_NODELAY, a
keep-alive timer that starts at connect (so it is also the deadline for a
request head: a client that trickles one header line every few seconds is
closed when it expires), and bounded request lines and headers. What it lacks
is added here: a cap on open connections (at the cap the oldest connection
with no request in progress is closed to make room; if every connection is
busy the newcomer gets a 503), and a cap on requests per keep-alive
connection. Binding happens in the caller's thread so a port in use is a
one-line error before anything starts.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from edgecnn.errors import BadInput

log = logging.getLogger("edgecnn.daemon.http")

_BUSY_BODY = b'{"error": "too many connections"}\n'
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s"
    % (len(_BUSY_BODY), _BUSY_BODY)
)


class HTTPError(Exception):
    """An answer with a status and a JSON `{"error": message}` body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class Limits:
    """What one client may hold: connections, time for a request head and body, uploads."""

    max_connections: int = 128
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_requests: int = 1000
    stream_write_timeout: float = 5.0
    upload_slots: int = 8
    decode_workers: int = 1
    max_pixels: int = 16_000_000


@dataclass
class ConnStats:
    """Counters the connection cap keeps for /metrics."""

    open: int = 0
    accepted: int = 0
    rejected: int = 0
    evicted: int = 0


class CappedServer(web.Server):
    """aiohttp's low-level server with a connection cap and a per-connection request cap."""

    def __init__(self, handler: Any, limits: Limits, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits
        self.stats = ConnStats()
        self._opened: dict[Any, float] = {}  # protocol -> connect time (insertion = age)
        self.busy: set[Any] = set()  # protocols with a request in progress
        self.served: dict[Any, int] = {}  # protocol -> requests answered

    def connection_made(self, handler: Any, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._opened[handler] = time.monotonic()
        self.stats.accepted += 1
        if len(self._opened) > self.limits.max_connections and not self._evict_idle(handler):
            self.stats.rejected += 1
            transport.write(BUSY_RESPONSE)
            handler.force_close()
        self.stats.open = len(self._opened)

    def connection_lost(self, handler: Any, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self._opened.pop(handler, None)
        self.busy.discard(handler)
        self.served.pop(handler, None)
        self.stats.open = len(self._opened)

    def _evict_idle(self, newcomer: Any) -> bool:
        """Close the oldest connection that is not mid-request; False if all are busy."""
        for proto in self._opened:
            if proto is not newcomer and proto not in self.busy:
                self._opened.pop(proto)
                self.stats.evicted += 1
                proto.force_close()
                return True
        return False

    def count_request(self, proto: Any) -> bool:
        """Mark a request on `proto`; True when it is the last one its connection may make."""
        n = self.served.get(proto, 0) + 1
        self.served[proto] = n
        return n >= self.limits.keepalive_requests


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket, or BadInput with the reason in one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(256)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise BadInput(f"port {port} on {host} is already in use") from None
        if e.errno == errno.EACCES:
            raise BadInput(
                f"no permission to bind port {port} (ports below 1024 need root)"
            ) from None
        raise BadInput(f"cannot bind {host}:{port}: {e.strerror or e}") from None
    return sock


def server_kwargs(limits: Limits) -> dict[str, Any]:
    """RequestHandler settings: the keep-alive timer doubles as the request-head deadline."""
    return {
        "keepalive_timeout": limits.header_timeout,
        "lingering_time": 1.0,  # an unread body is drained for at most this long
        "max_line_size": 8190,
        "max_field_size": 8190,
        "access_log": None,  # the daemon writes its own, redacted access line
    }
