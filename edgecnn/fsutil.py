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


def current_umask() -> int:
    """The process umask, read without changing it (os.umask() would, racing other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc (not Linux): the classic read-and-restore
    os.umask(mask)
    return mask


def file_mode() -> int:
    """What open() would give a new file: 0644 under umask 022 (mkstemp always gives 0600)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """What mkdir() would give a new directory: 0755 under umask 022 (mkdtemp gives 0700)."""
    return 0o777 & ~current_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), file_mode())  # readable like any other file the user writes
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
        tmp.chmod(dir_mode())  # a build directory is as readable as any other the user makes
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
