"""Capture the frames worth a person's look: a pipeline listener, like the JSON log and MQTT.

A classified frame is captured when its top-1 score is under `below`, when top-1 minus
top-2 is under `margin`, or as a random 1-in-`every` sample (so the data are not only
hard cases). Each capture is one JPEG at the source resolution (optionally a second at
the model's input size) and a JSON sidecar written last: the sidecar is the commit
point, so a capture without one is incomplete and is removed at start.

The listener never blocks inference: it only decides and queues (bounded; a full queue
skips the frame), and a writer thread encodes and writes. `rate` bounds captures per
second (a token bucket), `max_bytes` bounds the directory's disk use (oldest captures rotate out
first). A full disk or any other write error is counted and reported in /healthz and
/metrics; classification goes on. Device side: Pillow and numpy only.
"""

from __future__ import annotations

import collections
import errno
import io
import json
import logging
import os
import queue
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInput

log = logging.getLogger("edgecnn.daemon.capture")

SCHEMA = "edgecnn.capture/1"
SIDECAR = ".json"
IMAGE = ".jpg"
MODEL_IMAGE = ".model.jpg"
# 20261201T101010123-000042: UTC time to the millisecond, then the frame counter.
STEM_RE = re.compile(r"^\d{8}T\d{9}-\d{6,}$")
FILE_RE = re.compile(r"^(?P<stem>\d{8}T\d{9}-\d{6,})(?P<kind>\.model\.jpg|\.jpg|\.json)$")
TEMP_RE = re.compile(r"^\.\d{8}T\d{9}-\d{6,}\..*\.tmp$")
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
SKIP_KINDS = ("rate", "busy", "disk_full", "error")
MAX_SIDECAR_LABELS = 100


@dataclass
class CaptureOptions:
    """What `serve --capture-*` asks for; `validated()` raises BadInput with one line."""

    dir: str
    below: float | None = None
    margin: float | None = None
    every: int | None = None
    max_mb: float = 500.0
    rate: float = 1.0  # captures per second at most
    model_size: bool = False
    quality: int = 92
    seed: int | None = None
    queue_size: int = 32

    def validated(self, top_k: int = 5) -> CaptureOptions:
        if self.below is None and self.margin is None and self.every is None:
            raise BadInput(
                "--capture-dir needs a reason to capture: --capture-below S, "
                "--capture-margin M and/or --capture-every N"
            )
        for name in ("below", "margin"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise BadInput(f"--capture-{name} must be in (0, 1], got {value}")
        if self.margin is not None and top_k < 2:
            raise BadInput("--capture-margin needs --top-k of at least 2 (top-1 minus top-2)")
        if self.every is not None and self.every < 1:
            raise BadInput(f"--capture-every must be at least 1, got {self.every}")
        if self.max_mb <= 0:
            raise BadInput(f"--capture-max-mb must be positive, got {self.max_mb}")
        if self.rate <= 0:
            raise BadInput(f"--capture-rate must be positive, got {self.rate}")
        if not 1 <= self.quality <= 100:
            raise BadInput(f"capture JPEG quality must be 1-100, got {self.quality}")
        return self

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1_000_000)


def capture_reasons(
    top_k: list[dict[str, Any]], opts: CaptureOptions, rng: random.Random
) -> list[str]:
    """Why this result is worth a look (empty: it is not)."""
    reasons = []
    top1 = float(top_k[0]["score"]) if top_k else 0.0
    if opts.below is not None and top1 < opts.below:
        reasons.append("below")
    if opts.margin is not None:
        top2 = float(top_k[1]["score"]) if len(top_k) > 1 else 0.0
        if top1 - top2 < opts.margin:
            reasons.append("margin")
    if opts.every is not None and rng.randrange(opts.every) == 0:
        reasons.append("every")
    return reasons


class RateLimit:
    """A token bucket: `rate` per second on average, bursts of up to `burst`. (Ten lines,
    so the device install gains no dependency for it.)"""

    def __init__(self, rate: float, burst: float | None = None, clock=time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self.clock = clock
        self.tokens = self.burst
        self.t = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def capture_stem(wall: float, seq: int) -> str:
    t = time.gmtime(wall)
    return time.strftime("%Y%m%dT%H%M%S", t) + f"{int(wall * 1000) % 1000:03d}-{seq % 10**9:06d}"


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    """RGB or gray uint8 pixels as a JPEG (Pillow)."""
    from PIL import Image

    arr = np.ascontiguousarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_file(path: Path, data: bytes) -> None:
    """Temp file + fsync + rename. Mode 0666 minus the umask (not mkstemp's 0600), so the
    user that `edgecnn collect` logs in as can read what the daemon's user wrote."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@dataclass
class Job:
    """One frame to write, decided on the inference thread."""

    frame: np.ndarray
    sidecar: dict[str, Any]


@dataclass
class Stats:
    saved: int = 0
    by_reason: collections.Counter = field(default_factory=collections.Counter)
    skipped: collections.Counter = field(default_factory=collections.Counter)
    rotated: int = 0  # removed to stay under max_bytes
    state: str = "ok"  # ok | disk_full | error
    last_error: str | None = None


class CaptureStore:
    """The capture directory: decide (listener), write (thread), rotate, report."""

    def __init__(
        self,
        opts: CaptureOptions,
        model_view: Callable[[np.ndarray], np.ndarray] | None = None,
        source_name: Callable[[], str] = lambda: "",
        block: bool = False,
        labels: Callable[[], list[str]] | None = None,
    ) -> None:
        self.opts = opts
        self.block = block  # serve --sync (lossless file evaluation): wait for the writer
        self.dir = Path(opts.dir)
        self.model_view = model_view
        self.source_name = source_name
        self.labels = labels
        self.device = socket.gethostname()
        self.rng = random.Random(opts.seed)
        self.limit = RateLimit(opts.rate)
        self.stats = Stats()
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize=max(1, opts.queue_size))
        self._lock = threading.Lock()
        self.index: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.total = 0
        prepare_dir(self.dir)
        self.rescan(clean=True)
        self.thread = threading.Thread(target=self._run, name="edgecnn-capture-writer", daemon=True)

    # -- the listener (inference thread): decide and queue; blocks only under --sync -----------
    def __call__(self, res: Any) -> None:
        if res.frame is None:
            return
        reasons = capture_reasons(res.top_k, self.opts, self.rng)
        if not reasons:
            return
        if not self.limit.take():
            self.stats.skipped["rate"] += 1
            return
        job = Job(res.frame, self._sidecar(res, reasons))
        try:
            self.queue.put(job, block=self.block, timeout=10.0 if self.block else None)
        except queue.Full:
            self.stats.skipped["busy"] += 1

    def _sidecar(self, res: Any, reasons: list[str]) -> dict[str, Any]:
        top = res.top_k
        margin = top[0]["score"] - top[1]["score"] if len(top) > 1 else None
        return {
            "schema": SCHEMA,
            "id": capture_stem(res.time, res.seq),
            "time": round(res.time, 3),
            "time_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(res.time)),
            "reasons": reasons,
            "label": top[0]["label"] if top else None,
            "score": res.score,
            "margin": None if margin is None else round(margin, 5),
            "top_k": top,
            "model": {k: res.model.get(k) for k in ("name", "version", "artifact")},
            "seq": res.seq,
            "pos": res.pos,
            "source": self.source_name(),
            "device": self.device,
            # The model's classes, so `edgecnn label` can offer them all (not for ImageNet's 1000).
            **(
                {"labels": labs}
                if (labs := self._labels()) and len(labs) <= MAX_SIDECAR_LABELS
                else {}
            ),
        }

    def _labels(self) -> list[str] | None:
        return list(self.labels()) if self.labels else None

    # -- the writer thread ---------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        if self.thread.is_alive():
            try:
                self.queue.put(None, timeout=timeout)
            except queue.Full:
                pass
            self.thread.join(timeout)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued capture is written (tests, and a clean shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            try:
                if job is None:
                    return
                self.write(job)
            except Exception as e:  # the writer must outlive any one capture
                self._failed(e)
            finally:
                self.queue.task_done()

    def write(self, job: Job) -> None:
        stem = job.sidecar["id"]
        h, w = job.frame.shape[:2]
        files = {IMAGE: jpeg_bytes(job.frame, self.opts.quality)}
        if self.opts.model_size and self.model_view is not None:  # resized here, not in inference
            files[MODEL_IMAGE] = jpeg_bytes(self.model_view(job.frame), self.opts.quality)
        side = dict(job.sidecar, image={"width": int(w), "height": int(h)})
        side["files"] = {"image": stem + IMAGE}
        if MODEL_IMAGE in files:
            side["files"]["model_image"] = stem + MODEL_IMAGE
        files[SIDECAR] = (json.dumps(side, separators=(",", ":")) + "\n").encode()
        written = []
        try:
            for kind, data in files.items():  # the sidecar last: it commits the capture
                write_file(self.dir / (stem + kind), data)
                written.append(stem + kind)
        except OSError as e:
            for name in written:
                _unlink(self.dir / name)
            self._failed(e)
            return
        size = sum(disk_bytes(os.stat(self.dir / (stem + kind))) for kind in files)
        with self._lock:
            self.index[stem] = size
            self.total += size
        self.stats.saved += 1
        self.stats.by_reason.update(job.sidecar["reasons"])
        self.stats.state, self.stats.last_error = "ok", None
        self.rotate()

    def _failed(self, e: BaseException) -> None:
        full = isinstance(e, OSError) and e.errno in FULL_ERRNOS
        kind = "disk_full" if full else "error"
        self.stats.skipped[kind] += 1
        self.stats.state = kind
        detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        self.stats.last_error = f"{type(e).__name__}: {detail}"
        if self.stats.skipped[kind] in (1, 10, 100) or self.stats.skipped[kind] % 1000 == 0:
            log.error(
                "capture not written (%s, %d so far): %s", kind, self.stats.skipped[kind], detail
            )

    # -- the directory -------------------------------------------------------------------------
    def rescan(self, clean: bool = False) -> None:
        """Index complete captures by name (= time order); at start also remove temp files and
        captures whose sidecar never arrived (the writer died between their files)."""
        sizes: dict[str, int] = collections.defaultdict(int)
        committed = set()
        for entry in os.scandir(self.dir):
            if clean and TEMP_RE.match(entry.name):
                _unlink(Path(entry.path))
                continue
            m = FILE_RE.match(entry.name)
            if not m or not entry.is_file(follow_symlinks=False):
                continue
            try:
                sizes[m["stem"]] += disk_bytes(entry.stat(follow_symlinks=False))
            except FileNotFoundError:
                continue
            if m["kind"] == SIDECAR:
                committed.add(m["stem"])
        if clean:
            for stem in set(sizes) - committed:
                self._remove(stem)
        with self._lock:
            self.index = collections.OrderedDict((s, sizes[s]) for s in sorted(committed))
            self.total = sum(self.index.values())

    def rotate(self) -> None:
        """Oldest captures out until the directory fits `max_bytes` (the newest always stays)."""
        if self.total <= self.opts.max_bytes:
            return
        self.rescan()  # files deleted by `collect --delete` no longer count
        while self.total > self.opts.max_bytes and len(self.index) > 1:
            with self._lock:
                stem, size = self.index.popitem(last=False)
                self.total -= size
            self._remove(stem)
            self.stats.rotated += 1

    def _remove(self, stem: str) -> None:
        for kind in (SIDECAR, IMAGE, MODEL_IMAGE):  # the sidecar first: uncommit, then delete
            _unlink(self.dir / (stem + kind))

    # -- reporting -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "dir": str(self.dir),
            "state": s.state,
            "last_error": s.last_error,
            "saved": s.saved,
            "by_reason": dict(s.by_reason),
            "skipped": {k: s.skipped.get(k, 0) for k in SKIP_KINDS},
            "rotated": s.rotated,
            "captures": len(self.index),
            "bytes": self.total,
            "max_bytes": self.opts.max_bytes,
            "queued": self.queue.unfinished_tasks,  # waiting or being written
        }

    def warnings(self) -> list[str]:
        s = self.stats
        if s.state == "disk_full":
            return [f"capture: disk full, frames are not being saved ({s.last_error})"]
        if s.state == "error":
            return [f"capture: cannot write {self.dir} ({s.last_error})"]
        return []

    def listing(self, limit: int = 100) -> dict[str, Any]:
        """The newest `limit` captures (for /api/captures), read from their sidecars."""
        with self._lock:
            stems = list(self.index)[-limit:][::-1] if limit > 0 else []
        items = []
        for stem in stems:
            try:
                side = json.loads((self.dir / (stem + SIDECAR)).read_text("utf-8"))
            except (OSError, ValueError):
                continue  # rotated out or collected meanwhile
            keys = ("id", "time", "reasons", "label", "score", "margin", "model", "pos", "files")
            items.append({k: side.get(k) for k in keys} | {"bytes": self.index.get(stem)})
        return {**self.status(), "captures": items, "count": len(self.index)}


def disk_bytes(st: os.stat_result) -> int:
    """What a file takes on the disk (whole blocks), which is what fills it up."""
    blocks = getattr(st, "st_blocks", None)
    return int(blocks) * 512 if blocks is not None else int(st.st_size)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("cannot remove %s: %s", path, e.strerror or e)


def prepare_dir(path: Path) -> None:
    """Create the directory and prove it takes a file: a one-line BadInput at start."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}.tmp"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        os.write(fd, b"edgecnn")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise BadInput(f"cannot write capture dir {path}: {e.strerror or e}") from None


def fitted_frame(loaded: Any, frame: np.ndarray) -> np.ndarray:
    """The frame at the model's input size, resized as the runtime does (stretch or crop)."""
    from edgecnn.runtime.preprocess import fit_image, to_uint8_image

    spec = loaded.runner.input_spec
    return fit_image(to_uint8_image(frame), tuple(spec.shape), spec.color_order, spec.resize)


class CaptureCollector:
    """Prometheus families for the capture store (registered on the daemon's registry)."""

    def __init__(self, store: CaptureStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.store.status()
        saved = CounterMetricFamily(
            "edgecnn_captures", "Frames captured, by reason", labels=["reason"]
        )
        for reason in ("below", "margin", "every"):
            saved.add_metric([reason], s["by_reason"].get(reason, 0))
        yield saved
        yield CounterMetricFamily("edgecnn_captures_saved", "Captures written", value=s["saved"])
        skipped = CounterMetricFamily(
            "edgecnn_captures_skipped", "Frames worth capturing that were not saved", labels=["why"]
        )
        for why, n in s["skipped"].items():
            skipped.add_metric([why], n)
        yield skipped
        yield CounterMetricFamily(
            "edgecnn_captures_rotated", "Captures removed to stay under --capture-max-mb",
            value=s["rotated"],
        )  # fmt: skip
        yield GaugeMetricFamily(
            "edgecnn_capture_bytes", "Bytes in the capture dir", value=s["bytes"]
        )
        yield GaugeMetricFamily("edgecnn_capture_files", "Captures in the dir", value=s["captures"])
        yield GaugeMetricFamily(
            "edgecnn_capture_disk_full", "1 while the capture disk is full",
            value=1.0 if s["state"] == "disk_full" else 0.0,
        )  # fmt: skip


def attach_capture(daemon: Any, opts: Any) -> CaptureStore | None:
    """The daemon's hook: a capture store for `serve --capture-dir` (None without one). Called
    before the model loads, so a directory that cannot be written is the first thing said;
    the model and source are looked up when a frame is captured."""
    if not opts.capture_dir:
        return None
    copts = CaptureOptions(
        dir=opts.capture_dir, below=opts.capture_below, margin=opts.capture_margin,
        every=opts.capture_every, max_mb=opts.capture_max_mb, rate=opts.capture_rate,
        model_size=opts.capture_model_size, seed=opts.capture_seed,
    ).validated(opts.top_k)  # fmt: skip
    store = CaptureStore(
        copts,
        model_view=lambda frame: fitted_frame(daemon.holder.get(), frame),
        source_name=lambda: daemon.source.name,
        block=opts.sync,
        labels=lambda: daemon.holder.get().labels,
    )
    return store
