"""Prometheus metrics: the pipeline's counters read at scrape time, plus a latency histogram.

A private registry keeps the daemon's metrics apart from anything else in the
process; counters are read from the live `Counters` object when scraped, so
there is one source of truth for /metrics, /healthz and the live page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _PipelineCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        s = self.snapshot()
        c = s["counters"]
        yield CounterMetricFamily(
            "edgecnn_frames", "Frames captured from the source", value=c.frames
        )
        yield CounterMetricFamily("edgecnn_inferences", "Frames classified", value=c.inferences)
        yield CounterMetricFamily(
            "edgecnn_dropped_frames",
            "Frames replaced before inference took them",
            value=s["dropped"],
        )
        errs = CounterMetricFamily("edgecnn_errors", "Errors by kind", labels=["kind"])
        errs.add_metric(["inference"], c.errors)
        errs.add_metric(["source"], c.source_errors)
        errs.add_metric(["reload"], s["reloads_failed"])
        yield errs
        yield CounterMetricFamily(
            "edgecnn_source_reconnects", "Source (re)connection attempts", value=c.reconnects
        )
        yield CounterMetricFamily(
            "edgecnn_model_reloads", "Successful model reloads", value=s["reloads_ok"]
        )
        yield GaugeMetricFamily(
            "edgecnn_fps", "Inference frames per second (last 3 s)", value=c.fps()
        )
        up = GaugeMetricFamily(
            "edgecnn_source_up",
            "1 while the source delivers frames",
            value=1.0 if c.source_state == "streaming" else 0.0,
        )
        yield up
        model = s["model"]
        yield InfoMetricFamily(
            "edgecnn_model",
            "The model being served",
            value={k: str(model.get(k, "")) for k in ("name", "version", "artifact", "backend")},
        )


class Metrics:
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_PipelineCollector(snapshot))
        self.latency = Histogram(
            "edgecnn_inference_latency_seconds",
            "Model inference time per frame",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=self.registry,
        )
        self.requests = Counter(
            "edgecnn_http_requests",
            "HTTP requests by route and status",
            ["route", "code"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
