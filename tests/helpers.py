"""Small shared test helpers: private copies of builds and honest edits of their manifests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

FASHION_SKIP = (
    "Fashion-MNIST missing: install the Debian package dataset-fashion-mnist "
    "(apt-get install -y dataset-fashion-mnist; .ci/run does)"
)


def fashion_available() -> bool:
    try:
        from edgecnn.data import sources

        sources.load_fashion_mnist()
        return True
    except Exception:
        return False


def copy_build(src: Path, dst: Path) -> Path:
    """A private copy of a build (tests that break or fix one must not touch the shared one)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("parity*"))
    return dst


def replace_artifact(build: Path, name: str, data: bytes, **model_fields: Any) -> None:
    """Swap an artifact's bytes and record it honestly in the manifest (sha256, size, I/O), so
    only a check of the content itself can catch the change."""
    import hashlib

    from edgecnn.build.export import describe_artifact
    from edgecnn.errors import BadInput
    from edgecnn.manifest import load_manifest

    (build / name).write_bytes(data)
    m = load_manifest(build)
    art = m.by_path(name)
    try:  # bytes a runtime can open: re-read their tensors too
        new = describe_artifact(build, art.path, art.format, art.precision)
        new.extra = art.extra
        art = new
    except BadInput:  # corrupt on purpose: only the record of the bytes changes
        art.sha256, art.size = hashlib.sha256(data).hexdigest(), len(data)
    m.replace(art)
    m.model_extra.update(model_fields)
    m.save(build)


def edit_manifest(build: Path, fn: Callable[[dict[str, Any]], None]) -> None:
    """Edit manifest.json as raw JSON (to write what the typed Manifest would refuse)."""
    p = build / "manifest.json"
    m = json.loads(p.read_text())
    fn(m)
    p.write_text(json.dumps(m, indent=2))
