"""The daemon's HTTP side on the standard library's ThreadingHTTPServer.

Routes are matched exactly and nothing is ever served from disk, so no
request can make the daemon read a file path. Uploads need a Content-Length
under the limit and are decoded from memory only. When a token is set, every
route except /healthz needs it (`Authorization: Bearer T` or `?token=T`).
"""

from __future__ import annotations

import email.parser
import email.policy
import errno
import hmac
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from edgecnn.daemon.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from edgecnn.daemon.model import predict_probs
from edgecnn.daemon.overlay import annotate, placeholder_jpeg
from edgecnn.daemon.pipeline import make_result
from edgecnn.errors import BadInput

if TYPE_CHECKING:
    from edgecnn.daemon.service import Daemon

log = logging.getLogger("edgecnn.daemon.http")

MAX_PIXELS = 40_000_000  # decompression-bomb guard, independent of the byte limit
BOUNDARY = "edgecnnframe"


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def decode_image(data: bytes, content_type: str = "") -> np.ndarray:
    """An uploaded image (raw body or the first file of a multipart form) as RGB uint8."""
    if content_type.lower().startswith("multipart/form-data"):
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + data
        )
        parts = (
            [
                p
                for p in msg.iter_parts()
                if p.get_filename() or p.get_content_type().startswith("image/")
            ]
            if msg.is_multipart()
            else []
        )
        if not parts:
            raise HTTPError(400, "multipart upload holds no file part")
        data = parts[0].get_payload(decode=True) or b""
    if not data:
        raise HTTPError(400, "empty upload; send the image bytes as the request body")
    from edgecnn.runtime import images

    try:
        return images.decode_image(data, mode="RGB", max_pixels=MAX_PIXELS, fit=(1024, 1024))
    except images.ImageTooLarge as e:
        raise HTTPError(413, str(e)) from None
    except BadInput as e:
        raise HTTPError(
            400, f"upload is not a readable image ({str(e).rsplit('(', 1)[-1]}"
        ) from None


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgecnn live</title>
<style>
 body{font-family:system-ui,sans-serif;background:#111;color:#eee;margin:0;padding:1rem}
 #wrap{position:relative;display:inline-block}
 #video{display:block;min-width:320px;image-rendering:pixelated;background:#333}
 #bars{margin-top:.5rem;background:#222;padding:6px 8px;border-radius:4px;width:max-content;min-width:220px}
 .row{display:flex;align-items:center;gap:6px;font-size:13px;margin:2px 0}
 .lab{width:90px;overflow:hidden;white-space:nowrap;text-overflow:ellipsis}
 .bar{height:10px;background:#4caf50}
 .low .bar{background:#c9a03c}
 #meta{margin:.5rem 0;font-size:14px}
 #err{color:#f66}
</style></head>
<body>
<div id="meta">model <b id="model">?</b> version <b id="version">?</b> &middot; <span id="fps">0</span> fps &middot; top: <b id="top">-</b> <span id="caps"></span> <span id="err"></span></div>
<div id="wrap"><img id="video" alt="live stream (top-k drawn over the video)"></div>
<div id="bars"></div>
<script>
const q = new URLSearchParams(location.search);
const tok = q.get("token");
const suffix = tok ? "?token=" + encodeURIComponent(tok) : "";
document.getElementById("video").src = "stream.mjpg" + suffix;
function row(p, ok) {
  const r = document.createElement("div"); r.className = "row" + (ok ? "" : " low");
  const l = document.createElement("span"); l.className = "lab"; l.textContent = p.label;
  const b = document.createElement("span"); b.className = "bar"; b.style.width = Math.round(120 * p.score) + "px";
  const s = document.createElement("span"); s.textContent = p.score.toFixed(2);
  r.append(l, b, s); return r;
}
async function poll() {
  try {
    const r = await fetch("api/predictions" + suffix, {cache: "no-store"});
    const j = await r.json();
    document.getElementById("err").textContent = r.ok ? "" : (j.error || r.status);
    if (j.model) { document.getElementById("model").textContent = j.model.name;
                   document.getElementById("version").textContent = j.model.version; }
    document.getElementById("fps").textContent = (j.fps || 0).toFixed(1);
    if (j.captures !== null && j.captures !== undefined)
      document.getElementById("caps").textContent = "\u00b7 " + j.captures + " captured";
    const p = j.prediction;
    const bars = document.getElementById("bars");
    bars.replaceChildren();
    if (p) {
      document.getElementById("top").textContent = p.label === null ? "(below threshold)" : p.label;
      p.top_k.forEach((t, i) => bars.append(row(t, i > 0 || p.label !== null)));
    }
  } catch (e) { document.getElementById("err").textContent = String(e); }
  setTimeout(poll, 500);
}
poll();
</script></body></html>
"""


class Handler(BaseHTTPRequestHandler):
    server: DaemonHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a client may stall on a read or write (slow-client guard)
    server_version = "edgecnn"
    sys_version = ""

    # -- plumbing ---------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    @property
    def app(self) -> Daemon:
        return self.server.app

    def _send(
        self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, (json.dumps(data) + "\n").encode(), "application/json", headers)

    def _route(self) -> tuple[str, dict[str, list[str]]]:
        u = urlsplit(self.path)
        return u.path, parse_qs(u.query)

    def _authorized(self, query: dict[str, list[str]]) -> bool:
        token = self.app.token
        if not token:
            return True
        given = ""
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        elif "token" in query:
            given = query["token"][0]
        return hmac.compare_digest(given.encode(), token.encode())

    def _dispatch(self, routes: dict[str, Any]) -> None:
        path, query = self._route()
        fn = routes.get(path)
        route = path if fn else "other"
        status = 500
        try:
            if fn is None:
                raise HTTPError(404, f"no route {path}")
            if path != "/healthz" and not self._authorized(query):
                raise HTTPError(
                    401, "token required", {"WWW-Authenticate": 'Bearer realm="edgecnn"'}
                )
            status = fn(query) or 200
        except HTTPError as e:
            status = e.status
            if e.status in (401, 411, 413) or self.command == "POST":
                self.close_connection = True  # the body (if any) may be unread
                e.headers.setdefault("Connection", "close")
            self._json(e.status, {"error": e.message}, e.headers)
        except (BrokenPipeError, ConnectionResetError):
            status = 499
        except Exception as e:  # never leak a traceback to a client
            status = 500
            log.exception("error serving %s", path)
            try:
                self._json(500, {"error": f"internal error: {type(e).__name__}"})
            except OSError:
                pass
        finally:
            self.app.metrics.requests.labels(route, str(status)).inc()

    def do_GET(self) -> None:
        self._dispatch(
            {
                "/": self.page,
                "/index.html": self.page,
                "/stream.mjpg": self.stream,
                "/api/predictions": self.predictions,
                "/healthz": self.healthz,
                "/metrics": self.metrics,
                "/api/captures": self.captures,
            }
        )

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self._dispatch({"/api/predict": self.predict})

    # -- routes ------------------------------------------------------------
    def page(self, query: dict[str, list[str]]) -> int:
        self._send(
            200,
            PAGE.encode(),
            "text/html; charset=utf-8",
            {
                "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'; img-src 'self'"
            },
        )
        return 200

    def healthz(self, query: dict[str, list[str]]) -> int:
        h = self.app.health()
        code = 200 if h["status"] == "ok" else 503
        self._json(code, h)
        return code

    def metrics(self, query: dict[str, list[str]]) -> int:
        self._send(200, self.app.metrics.render(), METRICS_CONTENT_TYPE)
        return 200

    def predictions(self, query: dict[str, list[str]]) -> int:
        res = self.app.worker.latest
        loaded = self.app.holder.get()
        self._json(
            200,
            {
                "model": loaded.info(),
                "fps": round(self.app.counters.fps(), 2),
                "source": self.app.source_status(),
                "prediction": res.to_json() if res else None,
                "captures": self.app.capture_store.stats.saved if self.app.capture_store else None,
            },
        )
        return 200

    def captures(self, query: dict[str, list[str]]) -> int:
        store = self.app.capture_store
        if store is None:
            raise HTTPError(404, "capture is off (serve --capture-dir DIR)")
        try:
            limit = min(1000, max(0, int(query.get("limit", ["100"])[0])))
        except ValueError:
            raise HTTPError(400, "limit must be an integer") from None
        self._json(200, store.listing(limit))
        return 200

    def predict(self, query: dict[str, list[str]]) -> int:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length is None:
            raise HTTPError(411, "Content-Length required")
        try:
            n = int(length)
        except ValueError:
            raise HTTPError(400, "bad Content-Length") from None
        if n < 0:
            raise HTTPError(400, "bad Content-Length")
        limit = self.app.max_upload
        if n > limit:
            raise HTTPError(413, f"upload of {n} bytes exceeds the {limit}-byte limit")
        data = self.rfile.read(n)
        if len(data) != n:
            raise HTTPError(400, "upload ended early")
        image = decode_image(data, self.headers.get("Content-Type", ""))
        try:
            k = int(query.get("top_k", [self.app.top_k])[0])
        except ValueError:
            raise HTTPError(400, "top_k must be an integer") from None
        loaded = self.app.holder.get()
        t0 = time.perf_counter()
        try:
            probs = predict_probs(loaded, image)
        except BadInput as e:
            raise HTTPError(400, str(e)) from None
        res = make_result(
            probs,
            loaded.labels,
            loaded.info(),
            k,
            self.app.threshold,
            latency_ms=(time.perf_counter() - t0) * 1e3,
        )
        out = res.to_json()
        out.pop("seq")
        out.pop("pos")
        self._json(200, out)
        return 200

    def stream(self, query: dict[str, list[str]]) -> int:
        if not self.app.stream_slots.acquire(blocking=False):
            raise HTTPError(503, "too many stream clients")
        try:
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return 200
            period = 1.0 / max(0.1, self.app.stream_fps)
            seq = -1
            stop = self.app.stop_event
            last_sent = 0.0
            while not stop.is_set():
                res = self.app.worker.wait_newer(seq, 1.0)
                if stop.is_set():
                    break
                if res is None or res.frame is None or res.seq == seq:
                    if time.monotonic() - last_sent < 1.0:
                        continue
                    jpeg = placeholder_jpeg(f"source {self.app.counters.source_state}")
                else:
                    seq = res.seq
                    fps = self.app.counters.fps()
                    jpeg = self.app.jpeg_cache.get(
                        res.seq,
                        lambda r=res, f=fps: annotate(
                            r.frame, r.top_k, f, r.model, self.app.threshold
                        ),
                    )
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode() + jpeg + b"\r\n")
                self.wfile.flush()
                last_sent = time.monotonic()
                delay = period - (time.monotonic() - last_sent)
                if delay > 0:
                    stop.wait(delay)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self.app.stream_slots.release()
        return 200


class DaemonHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: Daemon) -> None:
        self.app = app
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        try:
            super().__init__(address, Handler)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise BadInput(f"port {address[1]} on {host} is already in use") from None
            if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(
                e, socket.gaierror
            ):
                raise BadInput(f"cannot bind {host}:{address[1]}: {e.strerror or e}") from None
            if e.errno == errno.EACCES:
                raise BadInput(
                    f"no permission to bind port {address[1]} (ports below 1024 need root)"
                ) from None
            raise


def start_http(app: Daemon, host: str, port: int) -> tuple[DaemonHTTPServer, threading.Thread]:
    server = DaemonHTTPServer((host, port), app)
    t = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="edgecnn-http", daemon=True
    )
    t.start()
    return server, t
