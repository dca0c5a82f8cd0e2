"""The served model: one runner at a time, swapped atomically on reload after a self-check.

A reload builds the new `Runner` off to the side and runs a check image
through it; only then does the reference flip. Requests that already hold
the old runner finish on it, so no request fails during a reload. The old
runner is released by garbage collection once the last request lets go.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInput, EdgeCNNError
from edgecnn.manifest import MANIFEST_NAME
from edgecnn.runtime.formats import is_artifact_file

log = logging.getLogger("edgecnn.daemon.model")


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
    """Load and self-check a model; raises BadInput with a one-line reason."""
    from edgecnn.runtime import Runner

    p = Path(path)
    if not p.exists():
        raise BadInput(f"model {path} does not exist")
    signature = model_signature(p)
    runner = Runner(str(p), backend=backend, threads=threads, artifact=artifact, resize=resize)
    try:
        spec = runner.input_spec
        shape = tuple(int(v) for v in spec.shape)
        labels = list(runner.labels)
        loaded = Loaded(
            runner=runner,
            name=str(getattr(runner, "name", None) or p.name),
            version=_version(runner),
            labels=labels,
            shape=shape,  # type: ignore[arg-type]
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
    runner = loaded.runner
    x = runner.preprocess(image)[
        None
    ]  # the runtime's resize/colour/quantization: one implementation
    with loaded.lock:
        probs = runner.run(x)
    return np.asarray(probs, dtype=np.float32)[0]


def self_check(loaded: Loaded) -> None:
    """A new model must produce finite scores of the right length before it may serve."""
    h, w, c = loaded.shape
    probe = np.full((h, w, 3), 127, dtype=np.uint8)
    try:
        probs = predict_probs(loaded, probe)
    except EdgeCNNError:
        raise
    except Exception as e:
        raise BadInput(f"model failed its check run: {type(e).__name__}: {e}") from None
    if probs.shape != (len(loaded.labels),) or not np.all(np.isfinite(probs)):
        raise BadInput(
            f"model failed its check run: {probs.shape[0] if probs.ndim else 0} scores for "
            f"{len(loaded.labels)} labels, finite={bool(np.all(np.isfinite(probs)))}"
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
        self.last_reload_error: str | None = None

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
            except EdgeCNNError as e:
                self.reloads_failed += 1
                self.last_reload_error = str(e)
                # Don't retry the same broken files on every poll.
                try:
                    old.signature = model_signature(self.path)
                except OSError:
                    pass
                log.error("reload failed, still serving %s %s: %s", old.name, old.version, e)
                return False
            except Exception as e:  # a model must never take the daemon down
                self.reloads_failed += 1
                self.last_reload_error = f"{type(e).__name__}: {e}"
                log.error(
                    "reload failed, still serving %s %s: %s",
                    old.name,
                    old.version,
                    self.last_reload_error,
                )
                return False
            self.current = new
            self.reloads_ok += 1
            self.last_reload_error = None
            log.info("now serving %s %s (%s)", new.name, new.version, new.artifact)
            return True
