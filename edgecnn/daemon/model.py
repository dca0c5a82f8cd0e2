"""The served model: one runner at a time, swapped atomically on reload after a self-check.

A reload builds the new `Runner` off to the side and runs a check image
through it; only then does the reference flip. Requests that already hold
the old runner finish on it, so no request fails during a reload. The old
runner is released by garbage collection once the last request lets go.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInput, EdgeCNNError
from edgecnn.manifest import MANIFEST_NAME
from edgecnn.runtime.formats import is_artifact_file

log = logging.getLogger("edgecnn.daemon.model")

# Why a reload failed, as /metrics counts it (edgecnn_model_reload_failures_total{cause}).
RELOAD_CAUSES = ("missing", "manifest", "checksum", "artifact", "self_check", "internal")


class ModelLoadError(BadInput):
    """A model that cannot serve, with the step that refused it (one of RELOAD_CAUSES)."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass
class Loaded:
    """A runner plus what the daemon shows about it; `lock` serializes its interpreter."""

    runner: Any
    name: str
    version: str
    labels: list[str]
    shape: tuple[int, int, int]  # H, W, C
    artifact: str
    backend: str
    signature: tuple
    lock: threading.Lock = field(default_factory=threading.Lock)
    loaded_at: float = field(default_factory=time.time)

    def info(self) -> dict[str, Any]:
        """What the API shows about the model (built once: it is read on every frame)."""
        cached = self.__dict__.get("_info")
        if cached is None:
            cached = {
                "name": self.name,
                "version": self.version,
                "artifact": self.artifact,
                "backend": self.backend,
                "input_shape": list(self.shape),
                "classes": len(self.labels),
            }
            self.__dict__["_info"] = cached
        return cached


def model_signature(path: str | os.PathLike) -> tuple:
    """What identifies the model on disk: the resolved path plus manifest/artifact stats.

    Deploy flips a `current` symlink, so the resolved path changes; an
    in-place rewrite changes the manifest's or artifact's mtime and size.
    """
    p = Path(path)
    real = p.resolve()
    directory = real if real.is_dir() else real.parent
    parts: list[Any] = [str(real)]
    for f in sorted(directory.glob("*")) if directory.is_dir() else []:
        if f.name == MANIFEST_NAME or is_artifact_file(f.name):
            try:
                st = f.stat()
                parts.append((f.name, st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                parts.append((f.name, None))
    if real.is_file():
        try:
            st = real.stat()
            parts.append((real.name, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            pass
    return tuple(parts)


def _version(runner: Any) -> str:
    """Model version for display: manifest's model.version, else the artifact's short sha256."""
    m = runner.manifest
    if m.version:
        return m.version
    if runner.artifact.sha256:
        return runner.artifact.sha256[:12]
    return m.created or "unknown"


def load_model(
    path: str | os.PathLike,
    backend: str = "auto",
    artifact: str | None = None,
    threads: int | None = None,
    resize: str | None = None,
) -> Loaded:
    """Load and self-check a model; raises ModelLoadError (a BadInput) naming the failed step."""
    from edgecnn.runtime import Runner
    from edgecnn.runtime.runner import resolve

    p = Path(path)
    if not p.exists():
        raise ModelLoadError("missing", f"model {path} does not exist")
    signature = model_signature(p)
    try:
        resolve(p, artifact)  # the manifest and the artifact choice, before any bytes are read
    except EdgeCNNError as e:
        raise ModelLoadError("manifest", str(e)) from None
    try:
        runner = Runner(str(p), backend=backend, threads=threads, artifact=artifact, resize=resize)
    except EdgeCNNError as e:
        cause = "checksum" if "does not match its manifest" in str(e) else "artifact"
        raise ModelLoadError(cause, str(e)) from None
    try:
        loaded = Loaded(
            runner=runner,
            name=str(getattr(runner, "name", None) or p.name),
            version=_version(runner),
            labels=list(runner.labels),
            shape=tuple(int(v) for v in runner.input_spec.shape),  # type: ignore[arg-type]
            artifact=runner.artifact.path,
            backend=str(getattr(runner, "backend_name", backend)),
            signature=signature,
        )
        self_check(loaded)
    except BaseException:
        try:
            runner.close()
        except Exception:
            pass
        raise
    return loaded


def predict_probs(loaded: Loaded, image: np.ndarray) -> np.ndarray:
    """Class probabilities (float32, one per label) for one RGB frame."""
    return predict_timed(loaded, image)[0]


def predict_timed(loaded: Loaded, image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(probabilities, preprocess seconds, inference seconds) for one frame."""
    runner = loaded.runner
    t0 = time.perf_counter()
    x = runner.preprocess(image)[None]  # the runtime's resize/colour/quantization
    t1 = time.perf_counter()
    with loaded.lock:
        probs = runner.run(x)
    t2 = time.perf_counter()
    return np.asarray(probs, dtype=np.float32)[0], t1 - t0, t2 - t1


def self_check(loaded: Loaded) -> None:
    """A new model must produce finite scores of the right length before it may serve."""
    h, w, c = loaded.shape
    probe = np.full((h, w, 3), 127, dtype=np.uint8)
    try:
        probs = predict_probs(loaded, probe)
    except EdgeCNNError as e:
        raise ModelLoadError("self_check", f"model failed its check run: {e}") from None
    except Exception as e:
        raise ModelLoadError(
            "self_check", f"model failed its check run: {type(e).__name__}: {e}"
        ) from None
    if probs.shape != (len(loaded.labels),) or not np.all(np.isfinite(probs)):
        raise ModelLoadError(
            "self_check",
            f"model failed its check run: {probs.shape[0] if probs.ndim else 0} scores for "
            f"{len(loaded.labels)} labels, finite={bool(np.all(np.isfinite(probs)))}",
        )


class ModelHolder:
    """Holds the serving model; `reload()` swaps in a new one only if it loads and checks out."""

    def __init__(
        self,
        path: str | os.PathLike,
        backend: str = "auto",
        artifact: str | None = None,
        threads: int | None = None,
        resize: str | None = None,
    ):
        self.path = str(path)
        self.resize = resize
        self.backend = backend
        self.artifact = artifact
        self.threads = threads
        self._reload_lock = threading.Lock()
        self.current: Loaded = load_model(self.path, backend, artifact, threads, resize)
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.failures: collections.Counter[str] = collections.Counter()
        self.last_reload_error: str | None = None
        self.last_reload: dict[str, Any] | None = None  # time, ok, reason, error, cause

    def get(self) -> Loaded:
        return self.current

    def changed_on_disk(self) -> bool:
        try:
            return model_signature(self.path) != self.current.signature
        except OSError:
            return False

    def reload(self, reason: str = "request") -> bool:
        """Try to load the model again; keep serving the old one on any failure."""
        with self._reload_lock:
            old = self.current
            log.info("reloading model from %s (%s)", self.path, reason)
            try:
                new = load_model(self.path, self.backend, self.artifact, self.threads, self.resize)
            except Exception as e:  # a model must never take the daemon down
                cause = e.cause if isinstance(e, ModelLoadError) else "internal"
                error = str(e) if isinstance(e, EdgeCNNError) else f"{type(e).__name__}: {e}"
                self._failed(old, reason, cause, error)
                return False
            self.current = new
            self.reloads_ok += 1
            self.last_reload_error = None
            self.last_reload = _event(reason, ok=True)
            log.info("now serving %s %s (%s)", new.name, new.version, new.artifact)
            return True

    def _failed(self, old: Loaded, reason: str, cause: str, error: str) -> None:
        self.reloads_failed += 1
        self.failures[cause] += 1
        self.last_reload_error = error
        self.last_reload = _event(reason, ok=False, cause=cause, error=error)
        # Don't retry the same broken files on every poll.
        try:
            old.signature = model_signature(self.path)
        except OSError:
            pass
        log.error(
            "reload failed (%s), still serving %s %s: %s", cause, old.name, old.version, error
        )


def _event(reason: str, ok: bool, cause: str | None = None, error: str | None = None) -> dict:
    return {
        "time": round(time.time(), 3),
        "ok": ok,
        "reason": reason,
        "cause": cause,
        "error": error,
    }
