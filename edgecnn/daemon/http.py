"""The daemon's HTTP side: routes on aiohttp's low-level server, in one event-loop thread.

Why aiohttp and not the standard library's `http.server` (which this replaced):
measured on 127.0.0.1 (tools/bench_daemon.py, README figures), the thread-per-
connection stack had no connection cap or request-head deadline (2,500 half-open
connections stalled it; a client trickling header lines held a thread past 60 s)
and paid a 44 ms Nagle floor per keep-alive request. aiohttp holds all of these
limits in one thread (TCP_NODELAY, one write per small response, a keep-alive
timer from connect) for a few MB more RSS; uvicorn+starlette would bring three
packages (uvicorn, starlette, anyio) for the same job. `httpcore` adds the
connection cap and per-connection request cap aiohttp lacks.

Routes are matched exactly and nothing is ever served from disk. A wrong method
on a known route gets 405 with `Allow`, OPTIONS gets 204 with `Allow`; every
request is counted in /metrics. With a token, every route except the health
probes needs it: `Authorization: Bearer T`, `?token=T`, or the session cookie
the live page gets on its first load (so the page never polls with `?token=`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edgecnn.daemon.httpcore import CappedServer, HTTPError, Limits, bind_socket, server_kwargs
from edgecnn.daemon.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from edgecnn.daemon.model import predict_probs
from edgecnn.daemon.overlay import placeholder_jpeg
from edgecnn.daemon.pipeline import make_result
from edgecnn.daemon.redact import redact
from edgecnn.daemon.uploads import UploadSlots, content_length, decode_for_model, read_upload
from edgecnn.errors import BadInput

if TYPE_CHECKING:
    from edgecnn.daemon.service import Daemon

log = logging.getLogger("edgecnn.daemon.http")

BOUNDARY = "edgecnnframe"
COOKIE = "edgecnn_session"
STREAM_SNDBUF = 64 * 1024  # small kernel buffer: a client that stops reading is seen in seconds
PAGE_CSP = (
    "default-src 'self'; script-src 'unsafe-inline' 'self'; "
    "style-src 'unsafe-inline'; img-src 'self'"
)
PUBLIC = {"/healthz", "/livez", "/readyz"}  # probes answer without a token
ROUTES: dict[str, tuple[str, ...]] = {
    "/": ("GET", "HEAD"),
    "/index.html": ("GET", "HEAD"),
    "/stream.mjpg": ("GET", "HEAD"),
    "/api/predictions": ("GET", "HEAD"),
    "/healthz": ("GET", "HEAD"),
    "/livez": ("GET", "HEAD"),
    "/readyz": ("GET", "HEAD"),
    "/metrics": ("GET", "HEAD"),
    "/api/captures": ("GET", "HEAD"),
    "/api/predict": ("POST",),
}


def page_cookie(token: str) -> str:
    """The session cookie's value: derived from the token, so the token never sits in a browser."""
    return hmac.new(token.encode(), b"edgecnn live page", hashlib.sha256).hexdigest()


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=(json.dumps(data) + "\n").encode(),
        content_type="application/json",
        headers={
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            **(headers or {}),
        },
    )


class HttpServer:
    """Binds in the caller's thread, then serves from its own event-loop thread."""

    def __init__(self, app: Daemon, host: str, port: int, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self.sock = bind_socket(host, port)
        self.port = int(self.sock.getsockname()[1])
        self.uploads = UploadSlots(limits.upload_slots)
        self.decode_pool = ThreadPoolExecutor(max(1, limits.decode_workers), "edgecnn-decode")
        self.encode_pool = ThreadPoolExecutor(1, "edgecnn-jpeg")
        self.streams = 0
        self.streams_dropped = 0
        self.server: CappedServer | None = None
        self.loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgecnn-http", daemon=True)
        self._page = resources.files("edgecnn.daemon").joinpath("data", "live.html").read_bytes()

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise BadInput("the HTTP server did not start within 10 s")

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        if self._stopping is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(3.0)
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self.encode_pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        self.server = CappedServer(
            self._handle, self.limits, handler_cancellation=True, **server_kwargs(self.limits)
        )
        runner = web.ServerRunner(self.server, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, self.sock).start()
        self._ready.set()
        await self._stopping.wait()
        await runner.cleanup()

    # -- dispatch --------------------------------------------------------------
    async def _handle(self, req: web.BaseRequest) -> web.StreamResponse:
        t0 = time.perf_counter()
        assert self.server is not None
        proto = req.protocol
        self.server.busy.add(proto)
        last = self.server.count_request(proto)
        path = req.path
        route = path if path in ROUTES else "other"
        status = 500
        try:
            resp = await self._route(req, path)
            status = resp.status
        except HTTPError as e:
            status = e.status
            resp = json_response(e.status, {"error": e.message}, e.headers)
            if e.status in (401, 408, 411, 413, 503) or req.method == "POST":
                resp.force_close()  # the body (if any) may be unread
        except asyncio.CancelledError:
            status = 499  # the client went away
            raise
        except Exception as e:  # never leak a traceback to a client
            log.exception("error serving %s", path)
            resp = json_response(500, {"error": f"internal error: {type(e).__name__}"})
        finally:
            self.server.busy.discard(proto)
            self.app.metrics.requests.labels(route, req.method, str(status)).inc()
            log.debug(
                "%s %s %s %d %.1f ms",
                req.remote,
                req.method,
                redact(req.path_qs),
                status,
                (time.perf_counter() - t0) * 1e3,
            )
        if last:
            resp.force_close()
        if not resp.prepared:
            resp.headers["Server"] = "edgecnn"  # no library versions to the network
        return resp

    async def _route(self, req: web.BaseRequest, path: str) -> web.StreamResponse:
        methods = ROUTES.get(path)
        if methods is None:
            raise HTTPError(404, f"no route {path}")
        allow = ", ".join((*methods, "OPTIONS"))
        if req.method == "OPTIONS":
            return web.Response(status=204, headers={"Allow": allow})
        if req.method not in methods:
            raise HTTPError(405, f"{req.method} is not allowed on {path}", {"Allow": allow})
        if path not in PUBLIC and not self._authorized(req):
            raise HTTPError(401, "token required", {"WWW-Authenticate": 'Bearer realm="edgecnn"'})
        handler = {
            "/": self.page,
            "/index.html": self.page,
            "/stream.mjpg": self.stream,
            "/api/predictions": self.predictions,
            "/healthz": self.healthz,
            "/livez": self.livez,
            "/readyz": self.readyz,
            "/metrics": self.metrics,
            "/api/captures": self.captures,
            "/api/predict": self.predict,
        }[path]
        return await handler(req)

    def _authorized(self, req: web.BaseRequest) -> bool:
        token = self.app.token
        if not token:
            return True
        auth = req.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return hmac.compare_digest(auth[7:].strip().encode(), token.encode())
        cookie = req.cookies.get(COOKIE)
        if cookie and hmac.compare_digest(cookie.encode(), page_cookie(token).encode()):
            return True
        return hmac.compare_digest(req.query.get("token", "").encode(), token.encode())

    # -- routes ------------------------------------------------------------------
    async def page(self, req: web.BaseRequest) -> web.StreamResponse:
        resp = web.Response(
            body=self._page,
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store"},
        )
        if self.app.token:
            # The page drops ?token= from its address; the cookie carries the session after.
            resp.set_cookie(COOKIE, page_cookie(self.app.token), httponly=True, samesite="Strict")
        return resp

    async def healthz(self, req: web.BaseRequest) -> web.StreamResponse:
        h = self.app.health()
        return json_response(200 if h["status"] == "ok" else 503, h)

    async def livez(self, req: web.BaseRequest) -> web.StreamResponse:
        live = self.app.liveness()
        return json_response(200 if live["alive"] else 503, live)

    async def readyz(self, req: web.BaseRequest) -> web.StreamResponse:
        ready = self.app.readiness()
        return json_response(200 if ready["ready"] else 503, ready)

    async def metrics(self, req: web.BaseRequest) -> web.StreamResponse:
        return web.Response(
            body=self.app.metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE}
        )

    async def predictions(self, req: web.BaseRequest) -> web.StreamResponse:
        return json_response(200, self.app.live_status())

    async def captures(self, req: web.BaseRequest) -> web.StreamResponse:
        store = self.app.capture_store
        if store is None:
            raise HTTPError(404, "capture is off (serve --capture-dir DIR)")
        try:
            limit = min(1000, max(0, int(req.query.get("limit", "100"))))
        except ValueError:
            raise HTTPError(400, "limit must be an integer") from None
        return json_response(200, store.listing(limit))

    async def predict(self, req: web.BaseRequest) -> web.StreamResponse:
        n = content_length(req, self.app.max_upload)
        try:
            k = int(req.query.get("top_k", self.app.top_k))
        except ValueError:
            raise HTTPError(400, "top_k must be an integer") from None
        if k < 1:
            raise HTTPError(400, "top_k must be at least 1")
        if not self.uploads.try_take():
            raise HTTPError(503, "too many uploads in progress; retry", {"Retry-After": "1"})
        try:
            data = await read_upload(req, n, self.limits.body_timeout)
            out = await self.loop.run_in_executor(self.decode_pool, self._classify, data, k)
        finally:
            self.uploads.give_back()
        return json_response(200, out)

    def _classify(self, data: bytes, k: int) -> dict[str, Any]:
        """Decode pool: decode at the model's size, run, and shape the answer."""
        loaded = self.app.holder.get()
        image = decode_for_model(data, loaded.shape, self.limits.max_pixels)
        del data
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
        return out

    async def stream(self, req: web.BaseRequest) -> web.StreamResponse:
        if self.streams >= self.app.stream_clients:
            raise HTTPError(503, "too many stream clients", {"Retry-After": "2"})
        self.streams += 1
        try:
            resp = web.StreamResponse(
                headers={
                    "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                    "Cache-Control": "no-store",
                    "Server": "edgecnn",
                }
            )
            resp.force_close()
            await resp.prepare(req)
            if req.method != "HEAD":
                _small_send_buffer(req)
                await self._stream_frames(req, resp)
            return resp
        finally:
            self.streams -= 1

    async def _stream_frames(self, req: web.BaseRequest, resp: web.StreamResponse) -> None:
        """Newest frame at most `stream_fps` times a second; a client that stalls is dropped."""
        app = self.app
        period = 1.0 / max(0.1, app.stream_fps)
        seq, jpeg, last_sent = -1, b"", 0.0
        while not app.stop_event.is_set():
            res = app.worker.latest
            now = time.monotonic()
            if res is not None and res.frame is not None and res.seq != seq:
                seq = res.seq
                jpeg = await self.loop.run_in_executor(self.encode_pool, app.frame_jpeg, res)
            elif now - last_sent >= 1.0:  # nothing new for a second: say why
                if app.counters.source_state != "streaming" or not jpeg:
                    state = f"source {app.counters.source_state}"
                    jpeg = await self.loop.run_in_executor(
                        self.encode_pool, placeholder_jpeg, state
                    )
            else:
                await asyncio.sleep(min(period, 0.02))
                continue
            head = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            )
            try:
                await asyncio.wait_for(
                    resp.write(head.encode() + jpeg + b"\r\n"), self.limits.stream_write_timeout
                )
            except asyncio.TimeoutError:
                self.streams_dropped += 1
                log.info(
                    "dropping stream client %s: no frame taken for %.0f s",
                    req.remote,
                    self.limits.stream_write_timeout,
                )
                if req.transport is not None:
                    req.transport.abort()
                return
            except (ConnectionError, RuntimeError):
                return  # the client went away
            last_sent = time.monotonic()
            await asyncio.sleep(max(0.0, period - (last_sent - now)))


def _small_send_buffer(req: web.BaseRequest) -> None:
    """Bound what a non-reading stream client can make us buffer (kernel and asyncio)."""
    transport = req.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
        except OSError:
            pass
    transport.set_write_buffer_limits(high=STREAM_SNDBUF)
