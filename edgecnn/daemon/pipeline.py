"""Capture apart from inference, with a one-frame slot between them.

The capture thread overwrites the slot with each new frame; the inference
thread takes whatever is newest. Memory is bounded (one frame), the lag is at
most one frame, and a frame overwritten before inference took it is counted
as dropped. Results carry top-k, a confidence threshold and optional
smoothing over the last N frames.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.daemon.backoff import Backoff
from edgecnn.daemon.model import ModelHolder, predict_timed
from edgecnn.daemon.redact import redact
from edgecnn.daemon.sources import Frame, Source, SourceError
from edgecnn.runtime import top_k

log = logging.getLogger("edgecnn.daemon.pipeline")


class LatestSlot:
    """The mailbox between capture and inference.

    Live sources use depth 1: put() replaces an untaken frame (counted as
    dropped), so inference always gets the newest frame and lags at most one.
    Sync mode (lossless file evaluation) uses a few slots and a capture that
    waits for space instead of dropping, so inference never waits on a
    thread wake-up between frames.
    """

    def __init__(self, depth: int = 1) -> None:
        self._cond = threading.Condition()
        self._q: collections.deque[Frame] = collections.deque()
        self.depth = max(1, int(depth))
        self._low = self.depth // 2  # capture resumes at this fill level (fewer wake-ups)
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if len(self._q) >= self.depth:
                self._q.popleft()
                self.dropped += 1
            self._q.append(frame)
            self._cond.notify_all()

    def take(self, timeout: float) -> Frame | None:
        with self._cond:
            if not self._q:
                self._cond.wait(timeout)
            if not self._q:
                return None
            frame = self._q.popleft()
            if len(self._q) <= self._low:
                self._cond.notify_all()  # wakes a sync-mode capture waiting in wait_space()
            return frame

    def wait_space(self, timeout: float) -> bool:
        """Sync mode: block while the slots are full; True once a put() would not drop."""
        with self._cond:
            if len(self._q) >= self.depth:
                self._cond.wait_for(lambda: len(self._q) <= self._low, timeout)
            return len(self._q) < self.depth

    def empty(self) -> bool:
        with self._cond:
            return not self._q


@dataclass
class Counters:
    """What /metrics and /healthz report; written by the worker threads, read by HTTP."""

    frames: int = 0  # frames captured
    inferences: int = 0
    errors: int = 0  # inference errors
    source_errors: int = 0  # failed opens and reads
    reconnects: int = 0
    source_state: str = "starting"  # starting | streaming | reconnecting | ended
    source_message: str = ""
    last_frame_t: float = 0.0
    latency_sum: float = 0.0
    state_since: float = field(default_factory=time.time)  # wall time of the last state change
    started: float = field(default_factory=time.monotonic)
    _ticks: collections.deque = field(default_factory=lambda: collections.deque(maxlen=240))

    def set_state(self, state: str, message: str = "") -> None:
        if state != self.source_state:
            self.state_since = time.time()
        self.source_state = state
        self.source_message = redact(message)  # an OpenCV error may quote the camera URL

    def tick(self, t: float) -> None:
        self._ticks.append(t)

    def fps(self, window: float = 3.0) -> float:
        """Inference frames per second over the last few seconds."""
        now = time.monotonic()
        ticks = [t for t in list(self._ticks) if now - t <= window]
        if len(ticks) < 2:
            return 0.0
        span = ticks[-1] - ticks[0]
        return (len(ticks) - 1) / span if span > 0 else 0.0


class StageTimes:
    """Rolling means of the per-frame stages (ms), for the live page and the API."""

    STAGES = ("preprocess", "inference", "postprocess", "frame_age")

    def __init__(self, n: int = 60) -> None:
        self._buf = {k: collections.deque(maxlen=n) for k in self.STAGES}

    def add(self, **seconds: float) -> None:
        for k, v in seconds.items():
            self._buf[k].append(v)

    def means_ms(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for k, buf in self._buf.items():
            vals = list(buf)
            out[f"{k}_ms"] = round(1e3 * sum(vals) / len(vals), 3) if vals else None
        return out


class History:
    """The top class and its score every `every` seconds: the last minute as a short strip."""

    def __init__(self, every: float = 0.5, n: int = 120) -> None:
        self.every = every
        self._items: collections.deque[dict[str, Any]] = collections.deque(maxlen=n)
        self._last = 0.0

    def add(self, t: float, label: str | None, score: float) -> None:
        if t - self._last < self.every:
            return
        self._last = t
        self._items.append({"time": round(t, 3), "label": label, "score": round(score, 4)})

    def items(self) -> list[dict[str, Any]]:
        return list(self._items)


class SourceUnusable(Exception):
    """A file source that can never deliver (cannot be opened or decoded): bad input, no retry."""


class CaptureWorker(threading.Thread):
    """Reads the source into the slot; reconnects live sources with a capped, jittered backoff.

    File and folder sources are paced at their frame rate unless `pace` is
    False (benchmarks); with `sync` a file source waits for inference to take
    each frame, so no frame is dropped (used for deterministic evaluation).
    A file that cannot be opened or yields no frame is not retried: `fatal`
    says why and `on_fatal` stops the daemon (exit 2). Only cameras and
    network streams are retried.
    """

    def __init__(
        self,
        source: Source,
        slot: LatestSlot,
        counters: Counters,
        stop: threading.Event,
        pace: bool = True,
        sync: bool = False,
        backoff: Backoff | None = None,
        on_end: Callable[[], None] | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(name="edgecnn-capture", daemon=True)
        self.source = source
        self.slot = slot
        self.c = counters
        self.stop = stop
        self.pace = pace
        self.sync = sync
        self.backoff = backoff or Backoff()
        self.on_end = on_end
        self.on_fatal = on_fatal
        self.fatal: str | None = None
        self._seq = 0

    def run(self) -> None:
        try:
            self._run()
        except SourceUnusable as e:
            self.fatal = redact(str(e))
            self.c.set_state("failed", self.fatal)
            if self.on_fatal:
                self.on_fatal(self.fatal)

    def _run(self) -> None:
        while not self.stop.is_set():
            if not self._open():
                continue
            if self.backoff.attempts:
                log.info(
                    "source %s reconnected after %d attempt(s)",
                    self.source.name,
                    self.backoff.attempts,
                )
            self.backoff.reset()
            self.c.set_state("streaming")
            before = self.c.frames
            ended = self._stream()
            try:
                self.source.close()
            except Exception as e:
                log.warning("closing source %s: %s", self.source.name, e)
            if self.stop.is_set():
                break
            if not self.source.live and self.c.frames == before:
                raise SourceUnusable(self.c.source_message or f"{self.source.name} holds no frame")
            if ended and not self.source.live:
                self.c.set_state("ended", "end of input")
                log.info("source %s ended", self.source.name)
                if self.on_end:
                    self.on_end()
                return
            self._retry(self.c.source_message or "stream stopped")

    def _open(self) -> bool:
        """One open attempt; a file that cannot open is fatal, anything live is retried."""
        try:
            self.source.open()
            return True
        except SourceError as e:
            why = str(e)
        except Exception as e:  # any adapter bug is a failed attempt, not a dead thread
            why = f"{type(e).__name__}: {e}"
        if not self.source.live:
            raise SourceUnusable(why)
        self._retry(why)
        return False

    def _retry(self, why: str) -> None:
        self.c.source_errors += 1
        self.c.reconnects += 1
        self.c.set_state("reconnecting", why)
        delay = self.backoff.next()
        log.warning(
            "source %s: %s; attempt %d, retrying in %.2fs",
            self.source.name,
            why,
            self.backoff.attempts,
            delay,
        )
        self.stop.wait(delay)

    def _stream(self) -> bool:
        """Read until the source ends (True) or fails (False) or we are stopped."""
        fps = self.source.fps if self.pace and not self.source.live else None
        period = 1.0 / fps if fps else 0.0
        next_t = time.monotonic()
        while not self.stop.is_set():
            try:
                got = self.source.read()
            except SourceError as e:
                self.c.source_message = str(e)
                return False
            except Exception as e:
                self.c.source_message = f"{type(e).__name__}: {e}"
                return False
            if got is None:
                if self.source.live:
                    self.c.source_message = "camera delivered no frame"
                    return False
                return True
            image, pos = got
            now = time.monotonic()
            self._seq += 1
            self.c.frames += 1
            self.c.last_frame_t = now
            if self.sync:
                while not self.slot.wait_space(0.2):
                    if self.stop.is_set():
                        return False
            self.slot.put(Frame(image=image, seq=self._seq, pos=pos, t=now))
            if period:
                next_t = max(next_t + period, now - period)
                delay = next_t - time.monotonic()
                if delay > 0:
                    self.stop.wait(delay)
        return False


@dataclass
class Result:
    """One classified frame, as the API, MQTT and the log see it."""

    seq: int
    pos: int | None
    time: float  # wall clock
    top_k: list[dict[str, Any]]
    label: str | None  # top-1 label if its score passes the threshold, else None
    score: float
    latency_ms: float
    model: dict[str, Any]
    frame: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "pos": self.pos,
            "time": round(self.time, 3),
            "label": self.label,
            "score": round(self.score, 5),
            "top_k": self.top_k,
            "latency_ms": round(self.latency_ms, 3),
            "model": {"name": self.model.get("name"), "version": self.model.get("version")},
        }


def top_k_of(probs: np.ndarray, labels: list[str], k: int) -> list[dict[str, Any]]:
    """The runtime's top-k (one implementation), as the JSON dicts the daemon serves."""
    return [
        {"index": p.index, "label": p.label, "score": round(p.score, 5)}
        for p in top_k(probs, labels, k)
    ]


class Smoother:
    """Mean of the last N probability vectors (N=1: no smoothing); resets on a class-count change."""

    def __init__(self, n: int) -> None:
        self.n = max(1, int(n))
        self._buf: collections.deque[np.ndarray] = collections.deque(maxlen=self.n)

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        if self._buf and self._buf[-1].shape != probs.shape:
            self._buf.clear()
        self._buf.append(probs)
        if self.n == 1:
            return probs
        return np.mean(np.stack(self._buf), axis=0)


def make_result(
    probs: np.ndarray,
    labels: list[str],
    model_info: dict[str, Any],
    top_k: int,
    threshold: float,
    seq: int = 0,
    pos: int | None = None,
    latency_ms: float = 0.0,
) -> Result:
    tk = top_k_of(probs, labels, top_k)
    best = tk[0]
    return Result(
        seq=seq,
        pos=pos,
        time=time.time(),
        top_k=tk,
        label=best["label"] if best["score"] >= threshold else None,
        score=best["score"],
        latency_ms=latency_ms,
        model=model_info,
    )


class InferenceWorker(threading.Thread):
    """Classifies the newest frame, publishes the result to listeners (HTTP, MQTT, log)."""

    def __init__(
        self,
        holder: ModelHolder,
        slot: LatestSlot,
        counters: Counters,
        stop: threading.Event,
        top_k: int = 5,
        threshold: float = 0.0,
        smooth: int = 1,
        listeners: list[Callable[[Result], None]] | None = None,
        latency_observer: Callable[[float], None] | None = None,
        stage_observer: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        super().__init__(name="edgecnn-inference", daemon=True)
        self.holder = holder
        self.slot = slot
        self.c = counters
        self.stop = stop
        self.top_k = top_k
        self.threshold = threshold
        self.smoother = Smoother(smooth)
        self.listeners = listeners or []
        self.latency_observer = latency_observer
        self.stage_observer = stage_observer
        self.latest: Result | None = None
        self.cond = threading.Condition()
        self.alive_t = time.monotonic()
        self.stages = StageTimes()
        self.history = History()

    def run(self) -> None:
        while not self.stop.is_set():
            self.alive_t = time.monotonic()
            frame = self.slot.take(0.2)
            if frame is None:
                continue
            loaded = self.holder.get()
            t0 = time.perf_counter()
            try:
                probs, pre_s, run_s = predict_timed(loaded, frame.image)
            except Exception as e:  # a bad frame or model must not stop the loop
                self.c.errors += 1
                log.error("inference failed on frame %d: %s: %s", frame.seq, type(e).__name__, e)
                continue
            dt = time.perf_counter() - t0
            t_post = time.perf_counter()
            probs = self.smoother(probs)
            res = make_result(
                probs,
                loaded.labels,
                loaded.info(),
                self.top_k,
                self.threshold,
                frame.seq,
                frame.pos,
                dt * 1e3,
            )
            res.frame = frame.image
            stages = {"preprocess": pre_s, "inference": run_s,
                      "postprocess": time.perf_counter() - t_post, "frame_age": time.monotonic() - frame.t}  # fmt: skip
            self.stages.add(**stages)
            if self.stage_observer:
                self.stage_observer(stages)
            self.history.add(res.time, res.label, res.score)
            self.c.inferences += 1
            self.c.latency_sum += dt
            self.c.tick(time.monotonic())
            if self.latency_observer:
                self.latency_observer(dt)
            with self.cond:
                self.latest = res
                self.cond.notify_all()
            for fn in self.listeners:
                try:
                    fn(res)
                except Exception as e:  # an output (MQTT, log) failing must not stop inference
                    log.error(
                        "output %s failed: %s: %s", getattr(fn, "__name__", fn), type(e).__name__, e
                    )

    def wait_newer(self, seq: int, timeout: float) -> Result | None:
        """Block until a result newer than `seq` exists (for the MJPEG stream)."""
        with self.cond:
            if self.latest is None or self.latest.seq <= seq:
                self.cond.wait(timeout)
            return self.latest
