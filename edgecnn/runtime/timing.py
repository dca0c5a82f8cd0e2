"""The one latency timer, with LiteRT `benchmark_model`'s semantics (device side, numpy only).

Warm-up runs at least `warmup` times *and* for at least `warmup_min_s` seconds; the
timed phase runs at least `runs` times and for at least `min_s` seconds, but stops
after `max_s` seconds (once at least one run is in). That is what makes two runs
of the same artifact comparable: a model whose invoke takes 30 us still gets a
second of samples, and a slow one is not cut to a handful.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

DEFAULT_WARMUP = 1
DEFAULT_RUNS = 50
DEFAULT_MAX_S = 150.0


@dataclass
class TimingPlan:
    warmup: int = DEFAULT_WARMUP
    warmup_min_s: float = 0.0
    runs: int = DEFAULT_RUNS
    min_s: float = 0.0
    max_s: float = DEFAULT_MAX_S


@dataclass
class LatencyStats:
    """Timed runs in milliseconds, plus the warm-up phase's count and mean."""

    runs: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    fps: float | None
    warmup_runs: int = 0
    warmup_mean_ms: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, float | int | None]:
        """Everything but the raw samples."""
        d = asdict(self)
        d.pop("latencies_ms")
        return d


def stats_of(samples_ms: list[float]) -> LatencyStats:
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no timed runs")
    mean = float(a.mean())
    return LatencyStats(
        runs=int(a.size),
        mean_ms=mean,
        std_ms=float(a.std()),
        min_ms=float(a.min()),
        p50_ms=float(np.percentile(a, 50)),
        p90_ms=float(np.percentile(a, 90)),
        p99_ms=float(np.percentile(a, 99)),
        max_ms=float(a.max()),
        fps=1000.0 / mean if mean > 0 else None,
        latencies_ms=[float(v) for v in a],
    )


def _repeat(fn: Callable[[], object], count: int, min_s: float, max_s: float) -> list[float]:
    clock = time.perf_counter
    samples: list[float] = []
    start = clock()
    while True:
        elapsed = clock() - start
        if samples and (elapsed >= max_s or (len(samples) >= count and elapsed >= min_s)):
            return samples
        t = clock()
        fn()
        samples.append((clock() - t) * 1000.0)


def time_calls(fn: Callable[[], object], plan: TimingPlan | None = None) -> LatencyStats:
    """Warm `fn` up, then time it call by call."""
    plan = plan or TimingPlan()
    warm: list[float] = []
    if plan.warmup > 0 or plan.warmup_min_s > 0:
        warm = _repeat(fn, plan.warmup, plan.warmup_min_s, plan.max_s)
    stats = stats_of(_repeat(fn, max(1, plan.runs), plan.min_s, plan.max_s))
    stats.warmup_runs = len(warm)
    stats.warmup_mean_ms = float(np.mean(warm)) if warm else 0.0
    return stats
