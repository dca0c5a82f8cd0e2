"""Atomic output: a build or training directory is complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgecnn.errors import BadInput


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of `out`; rename it onto `out` only on success.

    A failure anywhere inside the block removes the temporary directory, so a
    crashed `train` or `convert` leaves nothing behind.
    """
    out = Path(out).resolve()
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as e:
        raise BadInput(f"cannot write output directory {out}: {e.strerror or e}") from None
    try:
        yield tmp
        if out.exists():
            if not overwrite:
                raise BadInput(f"output directory {out} already exists")
            old = parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_writable_dir(out: str | os.PathLike) -> None:
    """Fail fast, before hours of training, if `out` cannot be created."""
    out = Path(out).resolve()
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise BadInput(f"cannot write output directory {out}: {probe} is not writable")


def gzip_size(path: str | os.PathLike) -> int:
    """Compressed size at level 9: what unstructured sparsity buys (a smaller download)."""
    import gzip

    with open(path, "rb") as f:
        return len(gzip.compress(f.read(), compresslevel=9))
