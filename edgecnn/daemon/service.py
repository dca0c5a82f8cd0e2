"""The daemon: wires source, pipeline, model, HTTP, MQTT and log together, and owns the lifecycle.

Signals only set flags; the main thread does the work (stop, reload, watch
the model files, ping the systemd watchdog), so a reload never runs inside a
signal handler and SIGTERM returns within a fraction of a second.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from edgecnn.daemon import systemd
from edgecnn.daemon.backoff import Backoff
from edgecnn.daemon.capture import CaptureCollector, attach_capture
from edgecnn.daemon.config import ServeOptions
from edgecnn.daemon.http import HttpServer
from edgecnn.daemon.httpcore import Limits
from edgecnn.daemon.jsonlog import JsonLinesLog
from edgecnn.daemon.metrics import Metrics
from edgecnn.daemon.model import ModelHolder
from edgecnn.daemon.overlay import JpegCache, annotate
from edgecnn.daemon.pipeline import CaptureWorker, Counters, InferenceWorker, LatestSlot, Result
from edgecnn.daemon.sources import make_source
from edgecnn.errors import BadInput
from edgecnn.optional import require

log = logging.getLogger("edgecnn.daemon")

STALE_SOURCE_S = 5.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, insecure: bool) -> None:
    """Binding beyond loopback needs a token, or an explicit --insecure."""
    if not is_loopback(host) and not token and not insecure:
        raise BadInput(
            f"binding {host} exposes the camera and API to the network; "
            "give --token/--token-file, or --insecure to allow it without one"
        )


def check_options(opts: ServeOptions) -> None:
    """Values the command line's types cannot express (a config file may still give them)."""
    if opts.top_k < 1:
        raise BadInput("--top-k must be at least 1")
    if not 0.0 <= opts.threshold <= 1.0:
        raise BadInput("--threshold must be between 0 and 1")
    if opts.smooth < 1:
        raise BadInput("--smooth must be at least 1 frame")
    if opts.max_upload < 1024:
        raise BadInput("--max-upload must be at least 1024 bytes")


def limits_of(opts: ServeOptions) -> Limits:
    return Limits(
        max_connections=opts.max_connections,
        header_timeout=opts.header_timeout,
        body_timeout=opts.body_timeout,
        keepalive_requests=opts.keepalive_requests,
        stream_write_timeout=opts.stream_write_timeout,
        upload_slots=opts.upload_slots,
        decode_workers=opts.decode_workers,
        max_pixels=opts.max_pixels,
    )


def mqtt_of(opts: ServeOptions) -> Any:
    """The MQTT publisher, or None without --mqtt-host (paho is imported only then)."""
    if not opts.mqtt_host:
        return None
    from edgecnn.daemon.mqtt import MqttPublisher

    return MqttPublisher(
        opts.mqtt_host,
        opts.mqtt_port,
        opts.mqtt_topic,
        opts.mqtt_interval,
        opts.mqtt_qos,
        username=opts.mqtt_username,
        password=opts.mqtt_password(),
        backoff=Backoff(0.5, opts.mqtt_backoff_max, opts.backoff_jitter),
        queue=opts.mqtt_queue,
    )


class Daemon:
    def __init__(self, opts: ServeOptions, picamera2_factory: Any = None) -> None:
        self.opts = opts
        self.token = opts.resolved_token()
        check_exposure(opts.host, self.token, opts.insecure)
        check_options(opts)
        if opts.mqtt_host:  # a missing package is reported before the source is opened
            require("paho.mqtt.client")
        self.top_k = opts.top_k
        self.threshold = opts.threshold
        self.max_upload = opts.max_upload
        self.stream_fps = opts.stream_fps
        self.stream_clients = max(1, opts.stream_clients)
        self.limits = limits_of(opts)
        # More health checks (e.g. a capture disk) append here: each returns [(code, message)].
        self.health_checks: list[Callable[[], list[tuple[str, str]]]] = []
        self.fatal_error: str | None = None
        self.http: HttpServer | None = None
        self.mqtt: Any = None  # the metrics' snapshot reads both from the start
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self.capture_store = attach_capture(self, opts)  # before the model: a bad dir fails first
        self.holder = ModelHolder(
            opts.model, opts.backend, opts.artifact, opts.threads, opts.resize
        )
        h, w, _ = self.holder.get().shape
        self.source = make_source(
            opts.source,
            (w, h),
            loop=opts.loop,
            folder_fps=opts.folder_fps,
            picamera2_factory=picamera2_factory,
        )
        self.counters = Counters()
        self.slot = LatestSlot(depth=4 if opts.sync else 1)
        self.metrics = Metrics(self.snapshot)
        if self.capture_store:
            self.metrics.registry.register(CaptureCollector(self.capture_store))
        self.jpeg_cache = JpegCache()
        self.jsonlog = (
            JsonLinesLog(opts.log_file, opts.log_max_bytes, opts.log_backups)
            if opts.log_file
            else None
        )
        self.mqtt = mqtt_of(opts)
        listeners = [x for x in (self.jsonlog, self.mqtt, self.capture_store) if x is not None]
        self.worker = InferenceWorker(
            self.holder,
            self.slot,
            self.counters,
            self.stop_event,
            opts.top_k,
            opts.threshold,
            opts.smooth,
            listeners=listeners,  # type: ignore[arg-type]
            latency_observer=self.metrics.latency.observe,
            stage_observer=self.metrics.observe_stages,
        )
        self.capture = CaptureWorker(
            self.source,
            self.slot,
            self.counters,
            self.stop_event,
            pace=opts.pace,
            sync=opts.sync,
            backoff=Backoff(0.25, opts.source_backoff_max, opts.backoff_jitter),
            on_end=self._source_ended,
            on_fatal=self._source_failed,
        )
        self.exit_code = 0

    # -- status ------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        http = None
        if self.http is not None and self.http.server is not None:
            st = self.http.server.stats
            http = {
                "open": st.open,
                "evicted": st.evicted,
                "rejected": st.rejected,
                "streams": self.http.streams,
                "streams_dropped": self.http.streams_dropped,
                "uploads_refused": self.http.uploads.refused,
            }
        return {
            "counters": self.counters,
            "dropped": self.slot.dropped,
            "reloads_ok": self.holder.reloads_ok,
            "reloads_failed": self.holder.reloads_failed,
            "reload_failures": dict(self.holder.failures),
            "model": self.holder.get().info(),
            "mqtt": self.mqtt.stats() if self.mqtt else None,
            "http": http,
        }

    def source_status(self) -> dict[str, Any]:
        c = self.counters
        age = time.monotonic() - c.last_frame_t if c.last_frame_t else None
        return {
            "name": self.source.name,
            "state": c.source_state,
            "since": round(c.state_since, 3),
            "message": c.source_message,
            "last_frame_age_s": round(age, 3) if age is not None else None,
            "reconnects": c.reconnects,
        }

    def reasons(self) -> list[tuple[str, str]]:
        """Why the daemon is degraded, as (code, message); empty when all is well."""
        c = self.counters
        out: list[tuple[str, str]] = []
        if not self.worker.is_alive():
            out.append(("inference_stopped", "inference thread stopped"))
        age = time.monotonic() - c.last_frame_t if c.last_frame_t else 0.0
        if c.source_state == "reconnecting":
            out.append(("source_reconnecting", f"source reconnecting: {c.source_message}"))
        elif c.source_state == "failed":
            out.append(("source_failed", f"source failed: {c.source_message}"))
        elif c.source_state == "streaming" and age > STALE_SOURCE_S:
            out.append(("source_stale", f"source: no frame for {age:.0f}s"))
        if self.mqtt is not None and not self.mqtt.connected.is_set():
            out.append(
                ("mqtt_disconnected", f"MQTT broker {self.mqtt.host}:{self.mqtt.port} unreachable")
            )
        last = self.holder.last_reload
        if last is not None and not last["ok"]:
            m = self.holder.get()
            out.append(
                (
                    "reload_failed",
                    f"last reload failed ({last['cause']}): {last['error']}; "
                    f"still serving {m.name} {m.version}",
                )
            )
        for check in self.health_checks:
            out.extend(check())
        return out

    def health(self) -> dict[str, Any]:
        c = self.counters
        reasons = self.reasons()
        return {
            "status": "ok" if not reasons else "degraded",
            "reasons": [code for code, _ in reasons],
            "problems": [message for _, message in reasons],
            "live": self.liveness()["alive"],
            "ready": self.readiness()["ready"],
            "model": self.holder.get().info(),
            "source": self.source_status(),
            "mqtt": self.mqtt.stats() if self.mqtt else None,
            "frames": c.frames,
            "inferences": c.inferences,
            "dropped": self.slot.dropped,
            "errors": c.errors,
            "fps": round(c.fps(), 2),
            "uptime_s": round(time.monotonic() - c.started, 1),
            "last_reload": self.holder.last_reload,
            "last_reload_error": self.holder.last_reload_error,
            # A full capture disk is reported, not a degradation: classification goes on.
            "capture": self.capture_store.status() if self.capture_store else None,
            "warnings": self.capture_store.warnings() if self.capture_store else [],
        }

    def liveness(self) -> dict[str, Any]:
        """Alive: the daemon's own threads run (a restart would help if not); ignores the world."""
        threads = {
            "inference": self.worker.is_alive(),
            "http": self.http is not None and self.http.alive(),
            "capture": self.capture.is_alive() or self.counters.source_state in ("ended", "failed"),
        }
        return {"alive": all(threads.values()), "threads": threads}

    def readiness(self) -> dict[str, Any]:
        """Ready: alive, a model loaded and the source delivering fresh frames."""
        c = self.counters
        age = time.monotonic() - c.last_frame_t if c.last_frame_t else None
        reasons = []
        if not self.liveness()["alive"]:
            reasons.append("not alive")
        if c.source_state != "streaming":
            reasons.append(f"source {c.source_state}")
        elif age is None or age > STALE_SOURCE_S:
            reasons.append("no fresh frame")
        return {"ready": not reasons, "reasons": reasons}

    def live_status(self) -> dict[str, Any]:
        """What /api/predictions and the live page show."""
        res = self.worker.latest
        m = self.holder.get()
        health = self.health()
        return {
            "model": {
                **m.info(),
                "loaded_at": round(m.loaded_at, 3),
                "reloads_ok": self.holder.reloads_ok,
                "reloads_failed": self.holder.reloads_failed,
                "last_reload": self.holder.last_reload,
            },
            "fps": round(self.counters.fps(), 2),
            "source": self.source_status(),
            "prediction": res.to_json() if res else None,
            "stages": self.worker.stages.means_ms(),
            "history": self.worker.history.items(),
            "health": {"status": health["status"], "problems": health["problems"],
                       "warnings": health.get("warnings", [])},
            "threshold": self.threshold,
            "captures": self.capture_store.stats.saved if self.capture_store else None,
        }  # fmt: skip

    def frame_jpeg(self, res: Result) -> bytes:
        """The annotated JPEG of a result, encoded once however many clients watch."""
        fps = self.counters.fps()
        return self.jpeg_cache.get(
            res.seq,
            lambda: annotate(
                res.frame, res.top_k, fps, res.model, self.threshold, self.opts.overlay
            ),
        )

    # -- lifecycle -----------------------------------------------------------
    def _source_ended(self) -> None:
        if self.opts.exit_on_end:
            # Let inference finish the frames already captured before stopping.
            deadline = time.monotonic() + 10.0
            while (
                time.monotonic() < deadline
                and self.counters.inferences + self.counters.errors
                < self.counters.frames - self.slot.dropped
            ):
                time.sleep(0.01)
            log.info("source ended; stopping (--exit-on-end)")
            self.stop_event.set()

    def _source_failed(self, why: str) -> None:
        """A file source that can never deliver: stop, and exit 2 with its reason."""
        self.fatal_error = why
        self.stop_event.set()

    def request_stop(self, *_: Any) -> None:
        self.stop_event.set()

    def request_reload(self, *_: Any) -> None:
        self.reload_requested.set()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)

    def start(self) -> None:
        """Bind first (a port in use is a one-line error before any thread starts)."""
        self.http = HttpServer(self, self.opts.host, self.opts.port, self.limits)
        self.http.start()
        if self.mqtt:
            self.mqtt.start()
        if self.capture_store:
            self.capture_store.start()
        self.worker.start()
        self.capture.start()
        m = self.holder.get()
        if self.jsonlog:
            self.jsonlog.event("start", model=m.info(), source=self.source.name)
        log.info(
            "serving %s %s from %s on http://%s:%d/",
            m.name,
            m.version,
            self.source.name,
            self.opts.host,
            self.http.port,
        )

    @property
    def port(self) -> int:
        return self.http.port if self.http else self.opts.port

    def run_forever(self) -> int:
        """Main loop: reloads, model watching and the watchdog; returns the exit code."""
        systemd.notify(
            "READY=1",
            f"STATUS=serving {self.holder.get().name}",
            f"MAINPID={os.getpid()}",
        )
        wd = systemd.watchdog_interval()
        next_wd = time.monotonic()
        next_watch = time.monotonic() + self.opts.watch if self.opts.watch > 0 else None
        pending_change: float | None = None
        while not self.stop_event.is_set():
            self.stop_event.wait(0.1)
            now = time.monotonic()
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self._reload("SIGHUP")
            if next_watch is not None and now >= next_watch:
                next_watch = now + self.opts.watch
                if self.holder.changed_on_disk():
                    # Wait for the files to settle: a deploy writes several of them.
                    if pending_change is None:
                        pending_change = now
                    elif now - pending_change >= 0.5:
                        pending_change = None
                        self._reload("model files changed")
                else:
                    pending_change = None
            if wd and now >= next_wd:
                if self.liveness()["alive"]:
                    systemd.notify("WATCHDOG=1")
                next_wd = now + wd
        self.shutdown()
        if self.fatal_error:
            raise BadInput(self.fatal_error)
        return self.exit_code

    def _reload(self, reason: str) -> None:
        systemd.reloading()
        ok = self.holder.reload(reason)
        m = self.holder.get()
        if self.jsonlog:
            self.jsonlog.event(
                "reload", ok=ok, reason=reason, model=m.info(), error=self.holder.last_reload_error
            )
        systemd.notify("READY=1", f"STATUS=serving {m.name} {m.version}")

    def shutdown(self) -> None:
        systemd.notify("STOPPING=1")
        self.stop_event.set()
        if self.http is not None:
            self.http.stop()
        if self.mqtt:
            try:
                self.mqtt.stop()
            except Exception as e:
                log.warning("MQTT stop: %s", e)
        self.worker.join(timeout=1.0)
        self.capture.join(timeout=0.5)
        if self.capture_store:
            self.capture_store.drain(timeout=3.0)
            self.capture_store.stop()
        if self.jsonlog:
            self.jsonlog.event(
                "stop", frames=self.counters.frames, inferences=self.counters.inferences
            )
            self.jsonlog.close()
        log.info("stopped after %d frames", self.counters.inferences)
