"""The label page's HTTP side, on 127.0.0.1 only.

Written on the standard library's ThreadingHTTPServer: one person on their own machine
uses it, it serves five small routes, and the host install then needs nothing more.
Requests never name a file (images are looked up by capture id in the store's index);
a Host header other than the loopback address is refused (DNS rebinding), and a POST
needs the page's own `X-Edgecnn-Label` header (a cross-site form cannot send one).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edgecnn.errors import BadInput
from edgecnn.label.page import PAGE
from edgecnn.label.store import LabelStore

log = logging.getLogger("edgecnn.label")
MAX_BODY = 64 * 1024
CSP = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self'"


class LabelHandler(BaseHTTPRequestHandler):
    server: LabelServer
    protocol_version = "HTTP/1.1"
    timeout = 30
    server_version = "edgecnn-label"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes; without this, Nagle's algorithm and delayed
        # ACKs hold every keep-alive answer ~40 ms (measured, DESIGN.md).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    @property
    def store(self) -> LabelStore:
        return self.server.store

    def _send(self, status: int, body: bytes, ctype: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, (json.dumps(data) + "\n").encode(), "application/json")

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host in ("127.0.0.1", "localhost")

    def _body(self) -> dict[str, Any]:
        if self.headers.get("X-Edgecnn-Label") != "1":
            raise PermissionError("missing X-Edgecnn-Label header")
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise BadInput("bad Content-Length") from None
        if not 0 <= n <= MAX_BODY:
            raise BadInput("request body too large")
        try:
            data = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            raise BadInput("request body is not JSON") from None
        if not isinstance(data, dict):
            raise BadInput("request body must be a JSON object")
        return data

    def _handle(self, fn: Any) -> None:
        try:
            if not self._host_ok():
                self._json(403, {"error": "the label page answers on 127.0.0.1 only"})
                return
            fn()
        except PermissionError as e:
            self.close_connection = True
            self._json(403, {"error": str(e)})
        except BadInput as e:
            self.close_connection = True
            self._json(400, {"error": str(e)})
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # never a traceback to the page; the server stays up
            log.exception("label request failed")
            try:
                self._json(500, {"error": f"internal error: {type(e).__name__}: {e}"})
            except OSError:
                pass

    def do_GET(self) -> None:
        self._handle(self._get)

    def do_POST(self) -> None:
        self._handle(self._post)

    def _get(self) -> None:
        u = urlsplit(self.path)
        q = parse_qs(u.query)
        if u.path in ("/", "/index.html"):
            self._send(200, PAGE.encode(), "text/html; charset=utf-8")
        elif u.path == "/api/state":
            self._json(200, self.store.state())
        elif u.path == "/image":
            kind = ".model.jpg" if q.get("kind", [""])[0] == "model" else ".jpg"
            # A capture's image never changes: the grid may redraw without fetching it again.
            image = self.store.image(q.get("id", [""])[0], kind)
            self._send(200, image, "image/jpeg", "private, max-age=3600, immutable")
        else:
            self._json(404, {"error": f"no route {u.path}"})

    def _post(self) -> None:
        path = urlsplit(self.path).path
        if path == "/api/label":
            body = self._body()
            label = body.get("label")
            if label is not None and not isinstance(label, str):
                raise BadInput("label must be a class name or null")
            self.store.answer(str(body.get("id", "")), label)
        elif path == "/api/undo":
            self._body()
            self.store.undo()
        else:
            self._json(404, {"error": f"no route {path}"})
            return
        self._json(200, self.store.state(rescan=False))  # an answer changes only what it moved


class LabelServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, store: LabelStore, port: int = 0) -> None:
        self.store = store
        try:
            super().__init__(("127.0.0.1", port), LabelHandler)
        except OSError as e:
            raise BadInput(f"cannot listen on 127.0.0.1:{port}: {e.strerror or e}") from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                             name="edgecnn-label-http", daemon=True)  # fmt: skip
        t.start()
        return t
