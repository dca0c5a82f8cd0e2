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
from typing import Any

from edgecnn.daemon import systemd
from edgecnn.daemon.capture import CaptureCollector, attach_capture
from edgecnn.daemon.config import ServeOptions
from edgecnn.daemon.http import DaemonHTTPServer, start_http
from edgecnn.daemon.jsonlog import JsonLinesLog
from edgecnn.daemon.metrics import Metrics
from edgecnn.daemon.model import ModelHolder
from edgecnn.daemon.overlay import JpegCache
from edgecnn.daemon.pipeline import CaptureWorker, Counters, InferenceWorker, LatestSlot
from edgecnn.daemon.sources import make_source
from edgecnn.errors import BadInput

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


class Daemon:
    def __init__(self, opts: ServeOptions, picamera2_factory: Any = None) -> None:
        self.opts = opts
        self.token = opts.resolved_token()
        check_exposure(opts.host, self.token, opts.insecure)
        if opts.top_k < 1:
            raise BadInput("--top-k must be at least 1")
        if not 0.0 <= opts.threshold <= 1.0:
            raise BadInput("--threshold must be between 0 and 1")
        if opts.smooth < 1:
            raise BadInput("--smooth must be at least 1 frame")
        if opts.max_upload < 1024:
            raise BadInput("--max-upload must be at least 1024 bytes")
        self.top_k = opts.top_k
        self.threshold = opts.threshold
        self.max_upload = opts.max_upload
        self.stream_fps = opts.stream_fps
        self.stream_slots = threading.BoundedSemaphore(max(1, opts.stream_clients))
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self.capture_store = attach_capture(self, opts)  # before the model: a bad dir fails first
        self.holder = ModelHolder(opts.model, opts.backend, opts.artifact, opts.threads)
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
        self.mqtt = None
        if opts.mqtt_host:
            from edgecnn.daemon.mqtt import MqttPublisher

            self.mqtt = MqttPublisher(
                opts.mqtt_host,
                opts.mqtt_port,
                opts.mqtt_topic,
                opts.mqtt_interval,
                opts.mqtt_qos,
                username=opts.mqtt_username,
                password=opts.mqtt_password(),
            )
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
        )
        self.capture = CaptureWorker(
            self.source,
            self.slot,
            self.counters,
            self.stop_event,
            pace=opts.pace,
            sync=opts.sync,
            on_end=self._source_ended,
        )
        self.server: DaemonHTTPServer | None = None
        self.exit_code = 0

    # -- status ------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "counters": self.counters,
            "dropped": self.slot.dropped,
            "reloads_ok": self.holder.reloads_ok,
            "reloads_failed": self.holder.reloads_failed,
            "model": self.holder.get().info(),
        }

    def source_status(self) -> dict[str, Any]:
        c = self.counters
        age = time.monotonic() - c.last_frame_t if c.last_frame_t else None
        return {
            "name": self.source.name,
            "state": c.source_state,
            "message": c.source_message,
            "last_frame_age_s": round(age, 3) if age is not None else None,
            "reconnects": c.reconnects,
        }

    def health(self) -> dict[str, Any]:
        c = self.counters
        src = self.source_status()
        problems = []
        if not self.worker.is_alive():
            problems.append("inference thread stopped")
        if c.source_state == "reconnecting":
            problems.append(f"source: {c.source_message}")
        elif c.source_state == "streaming" and (src["last_frame_age_s"] or 0) > STALE_SOURCE_S:
            problems.append("source: no frame for {:.0f}s".format(src["last_frame_age_s"]))
        return {
            "status": "ok" if not problems else "degraded",
            "problems": problems,
            "model": self.holder.get().info(),
            "source": src,
            "frames": c.frames,
            "inferences": c.inferences,
            "dropped": self.slot.dropped,
            "errors": c.errors,
            "fps": round(c.fps(), 2),
            "uptime_s": round(time.monotonic() - c.started, 1),
            "last_reload_error": self.holder.last_reload_error,
            # A full capture disk is reported, not a degradation: classification goes on.
            "capture": self.capture_store.status() if self.capture_store else None,
            "warnings": self.capture_store.warnings() if self.capture_store else [],
        }

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
        self.server, _ = start_http(self, self.opts.host, self.opts.port)
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
            self.server.server_address[1],
        )

    @property
    def port(self) -> int:
        return int(self.server.server_address[1]) if self.server else self.opts.port

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
                if self.worker.is_alive():
                    systemd.notify("WATCHDOG=1")
                next_wd = now + wd
        self.shutdown()
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
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
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
