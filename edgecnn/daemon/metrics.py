"""Prometheus metrics: the pipeline's counters read at scrape time, plus a latency histogram.

A private registry keeps the daemon's metrics apart from anything else in the
process; counters are read from the live objects when scraped, so there is one
source of truth for /metrics, /healthz and the live page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from edgecnn.daemon.model import RELOAD_CAUSES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SOURCE_STATES = ("starting", "streaming", "reconnecting", "ended", "failed")


def _pipeline(s: dict[str, Any]) -> Iterator[Any]:
    c = s["counters"]
    yield CounterMetricFamily("edgecnn_frames", "Frames captured from the source", value=c.frames)
    yield CounterMetricFamily("edgecnn_inferences", "Frames classified", value=c.inferences)
    yield CounterMetricFamily(
        "edgecnn_dropped_frames", "Frames replaced before inference took them", value=s["dropped"]
    )
    errs = CounterMetricFamily("edgecnn_errors", "Errors by kind", labels=["kind"])
    errs.add_metric(["inference"], c.errors)
    errs.add_metric(["source"], c.source_errors)
    errs.add_metric(["reload"], s["reloads_failed"])
    yield errs
    yield GaugeMetricFamily("edgecnn_fps", "Inference frames per second (last 3 s)", value=c.fps())


def _source(s: dict[str, Any]) -> Iterator[Any]:
    c = s["counters"]
    yield CounterMetricFamily(
        "edgecnn_source_reconnects", "Source (re)connection attempts", value=c.reconnects
    )
    yield GaugeMetricFamily(
        "edgecnn_source_up",
        "1 while the source delivers frames",
        value=1.0 if c.source_state == "streaming" else 0.0,
    )
    state = GaugeMetricFamily("edgecnn_source_state", "1 for the source's state", labels=["state"])
    for name in SOURCE_STATES:
        state.add_metric([name], 1.0 if c.source_state == name else 0.0)
    yield state


def _model(s: dict[str, Any]) -> Iterator[Any]:
    yield CounterMetricFamily(
        "edgecnn_model_reloads", "Successful model reloads", value=s["reloads_ok"]
    )
    fails = CounterMetricFamily(
        "edgecnn_model_reload_failures", "Failed model reloads by cause", labels=["cause"]
    )
    for cause in RELOAD_CAUSES:
        fails.add_metric([cause], s["reload_failures"].get(cause, 0))
    yield fails
    model = s["model"]
    yield InfoMetricFamily(
        "edgecnn_model",
        "The model being served",
        value={k: str(model.get(k, "")) for k in ("name", "version", "artifact", "backend")},
    )


def _mqtt(m: dict[str, Any]) -> Iterator[Any]:
    yield GaugeMetricFamily(
        "edgecnn_mqtt_connected", "1 while connected to the broker", value=float(m["connected"])
    )
    yield CounterMetricFamily(
        "edgecnn_mqtt_published", "Messages handed to the broker", value=m["published"]
    )
    yield CounterMetricFamily(
        "edgecnn_mqtt_publish_failures",
        "Messages not published (broker away at QoS 0, or queue full)",
        value=m["failed"],
    )
    yield GaugeMetricFamily(
        "edgecnn_mqtt_queue_depth", "Messages waiting for the broker", value=m["queue_depth"]
    )
    yield CounterMetricFamily(
        "edgecnn_mqtt_reconnects", "Broker connection attempts", value=m["attempts"]
    )


def _http(h: dict[str, Any]) -> Iterator[Any]:
    yield GaugeMetricFamily("edgecnn_http_connections", "Open HTTP connections", value=h["open"])
    closed = CounterMetricFamily(
        "edgecnn_http_connections_shed", "Connections closed by the cap", labels=["how"]
    )
    closed.add_metric(["evicted_idle"], h["evicted"])
    closed.add_metric(["refused_busy"], h["rejected"])
    yield closed
    yield GaugeMetricFamily("edgecnn_stream_clients", "Open /stream.mjpg clients", h["streams"])
    yield CounterMetricFamily(
        "edgecnn_stream_clients_dropped",
        "Stream clients dropped for not reading",
        value=h["streams_dropped"],
    )
    yield CounterMetricFamily(
        "edgecnn_uploads_refused", "Uploads refused: all upload slots busy", h["uploads_refused"]
    )


class _Collector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        s = self.snapshot()
        yield from _pipeline(s)
        yield from _source(s)
        yield from _model(s)
        if s.get("mqtt") is not None:
            yield from _mqtt(s["mqtt"])
        if s.get("http") is not None:
            yield from _http(s["http"])


class Metrics:
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Collector(snapshot))
        self.latency = Histogram(
            "edgecnn_inference_latency_seconds",
            "Model inference time per frame",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=self.registry,
        )
        # The frame-to-answer path by stage, as `bench --frame` times it on the host:
        # preprocess = resize, colour and quantize; inference = invoke and dequantize;
        # postprocess = smoothing and top-k; frame_age = capture to answer.
        self.stages = Histogram(
            "edgecnn_frame_stage_seconds",
            "Time per frame in each stage of the frame-to-answer path",
            ["stage"],
            buckets=(0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0),
            registry=self.registry,
        )
        self.requests = Counter(
            "edgecnn_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "code"],
            registry=self.registry,
        )

    def observe_stages(self, seconds: dict[str, float]) -> None:
        for stage, v in seconds.items():
            self.stages.labels(stage=stage).observe(v)

    def render(self) -> bytes:
        return generate_latest(self.registry)
