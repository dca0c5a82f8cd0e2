"""Pull a camera's captures over SSH: incremental, verified, safe to interrupt.

For each device (strict host keys, like deploy and bench; `edgecnn.remote.Remote`):

1. list the capture directory; a capture is complete once its JSON sidecar exists
   (the daemon writes it last), so half-written captures are never fetched;
2. fetch the captures not in the local ledger in batches, one SSH round trip each: the
   device prints the sha256 of every file, then a tar of them; every file is checked
   against its sha256 in a staging folder, renamed into `OUT/<host>/` and only then
   written to the ledger (`OUT/.collect/<host>.fetched`, fsync'd);
3. with `delete`, remove on the device what the ledger holds (verified copies only).

An interrupted run leaves at most a staging folder (cleared on the next run) and files
renamed but not yet in the ledger (added back from the folder, never fetched again).
Host side, but no TensorFlow: standard library only.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import re
import shlex
import shutil
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecnn.daemon.capture import FILE_RE, SIDECAR
from edgecnn.errors import BadInput, EdgeCNNError

DEFAULT_REMOTE_DIR = "/var/lib/edgecnn/captures"
STATE_DIR = ".collect"
TAR_MARK = b"\n--edgecnn-tar--\n"


@dataclass
class CollectOptions:
    remote_dir: str = DEFAULT_REMOTE_DIR
    delete: bool = False
    batch_mb: float = 32.0
    known_hosts: str | None = None
    identity: str | None = None
    connect_timeout: float = 10.0
    timeout: float = 300.0

    def validated(self) -> CollectOptions:
        if not self.remote_dir.startswith("/"):
            raise BadInput("--remote-dir must be an absolute path on the device")
        if self.batch_mb <= 0:
            raise BadInput(f"--batch-mb must be positive, got {self.batch_mb}")
        return self


@dataclass
class HostRow:
    host: str
    status: str = "failed"
    on_device: int = 0  # complete captures listed on the device
    fetched: int = 0  # captures fetched by this run
    files: int = 0
    bytes: int = 0
    vanished: int = 0  # files rotated out on the device between listing and fetching
    damaged: int = 0  # files whose copy did not match the device's sha256
    deleted: int = 0
    folder: str = ""
    seconds: float = 0.0
    error: str = ""

    def row(self) -> dict[str, Any]:
        return asdict(self)


def host_folder(target: str) -> str:
    """A folder name for a device: `pi@cam1`, `root@127.0.0.1_2222`."""
    return re.sub(r"[^A-Za-z0-9@._-]", "_", target.replace(":", "_"))


class Ledger:
    """Names already fetched from one device (one `name sha256` per line, append-only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.names: dict[str, str] = {}
        if path.exists():
            for line in path.read_text("utf-8").splitlines():
                name, _, digest = line.partition(" ")
                if FILE_RE.match(name):
                    self.names[name] = digest

    def add(self, entries: list[tuple[str, str]]) -> None:
        fresh = [(n, d) for n, d in entries if n not in self.names]
        if not fresh:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(f"{n} {d}\n" for n, d in fresh))
            f.flush()
            os.fsync(f.fileno())
        self.names.update(fresh)


@contextmanager
def locked(state: Path):
    """One collect at a time per output directory."""
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInput(f"another collect is writing to {state.parent}") from None
        yield


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_local(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# -- the device side (one shell command per step) ----------------------------------------------


def list_script(remote_dir: str) -> str:
    q = shlex.quote(remote_dir)
    return (
        f"cd {q} 2>/dev/null || {{ echo 'no capture dir' >&2; exit 3; }}\n"
        'for f in *; do [ -f "$f" ] && printf "%s\\n" "$f"; done | xargs -r stat -c "%n %s" --\n'
    )


def fetch_script(remote_dir: str) -> str:
    """Names on stdin -> their sha256 lines, a marker, then a tar of the same files."""
    q = shlex.quote(remote_dir)
    return (
        f"cd {q} || exit 3\n"
        "names=$(cat)\n"
        'printf "%s\\n" $names | xargs -r sha256sum -- 2>/dev/null\n'
        "printf '\\n--edgecnn-tar--\\n'\n"
        'printf "%s\\n" $names | tar -cf - -T - 2>/dev/null\n'
        "exit 0\n"
    )


def parse_listing(text: str) -> dict[str, int]:
    """{file name: size} of capture files (anything else in the directory is ignored)."""
    out = {}
    for line in text.splitlines():
        name, _, size = line.rpartition(" ")
        if FILE_RE.match(name) and size.isdigit():
            out[name] = int(size)
    return out


def complete_captures(files: dict[str, int]) -> dict[str, list[str]]:
    """{stem: its files} for captures whose sidecar exists, sidecar last."""
    groups: dict[str, list[str]] = {}
    for name in files:
        groups.setdefault(FILE_RE.match(name)["stem"], []).append(name)  # type: ignore[index]
    return {
        stem: sorted(names, key=lambda n: n.endswith(SIDECAR))
        for stem, names in sorted(groups.items())
        if stem + SIDECAR in names
    }


def parse_fetch(out: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """(sha256 by name, bytes by name) from the fetch script's output."""
    head, mark, tar = out.partition(TAR_MARK)
    if not mark:
        raise BadInput("the device's answer holds no file archive")
    sums = {}
    for line in head.decode("utf-8", "replace").splitlines():
        digest, _, name = line.partition("  ")
        if FILE_RE.match(name) and re.fullmatch(r"[0-9a-f]{64}", digest):
            sums[name] = digest
    data: dict[str, bytes] = {}
    if tar:
        try:
            with tarfile.open(fileobj=io.BytesIO(tar), mode="r|") as t:
                for member in t:
                    name = member.name.removeprefix("./")
                    if member.isfile() and FILE_RE.match(name):
                        f = t.extractfile(member)
                        data[name] = f.read() if f else b""
        except tarfile.ReadError:
            pass  # a truncated archive: whatever came through whole is kept, the rest re-fetched
    return sums, data


# -- one device --------------------------------------------------------------------------------


def _batches(captures: list[list[str]], sizes: dict[str, int], limit: int) -> list[list[str]]:
    out: list[list[str]] = []
    cur: list[str] = []
    used = 0
    for names in captures:
        size = sum(sizes[n] for n in names)
        if cur and used + size > limit:
            out.append(cur)
            cur, used = [], 0
        cur += names
        used += size
    return out + ([cur] if cur else [])


def reconcile(folder: Path, ledger: Ledger) -> None:
    """Files renamed into place by a run that stopped before its ledger write."""
    missing = [p for p in folder.iterdir() if FILE_RE.match(p.name) and p.name not in ledger.names]
    ledger.add([(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in sorted(missing)])


def store_batch(
    names: list[str], sums: dict[str, str], data: dict[str, bytes], staging: Path, folder: Path
) -> tuple[list[tuple[str, str]], int, int]:
    """Verified files into `folder` (whole captures only); (ledger entries, bytes stored,
    files whose bytes did not match the sha256 the device computed)."""
    by_stem: dict[str, list[str]] = {}
    for n in names:
        by_stem.setdefault(FILE_RE.match(n)["stem"], []).append(n)  # type: ignore[index]
    entries: list[tuple[str, str]] = []
    stored = damaged = 0
    for group in by_stem.values():
        if not all(n in data and n in sums for n in group):
            continue  # rotated out on the device meanwhile: not in the ledger
        bad = [n for n in group if sha256_bytes(data[n]) != sums[n]]
        if bad:
            damaged += len(bad)
            continue  # damaged in transit: not in the ledger, fetched again next time
        for n in group:  # the sidecar last, as on the device
            write_local(staging / n, data[n])
            os.replace(staging / n, folder / n)
            entries.append((n, sums[n]))
            stored += len(data[n])
    return entries, stored, damaged


def collect_host(target: str, out: Path, opts: CollectOptions) -> HostRow:
    """Fetch one device's new captures; every failure ends up in the row."""
    from edgecnn.remote import Remote

    row = HostRow(host=target)
    t0 = time.monotonic()
    try:
        remote = Remote(target, known_hosts=opts.known_hosts, identity=opts.identity,
                        connect_timeout=opts.connect_timeout)  # fmt: skip
        row.host = str(remote.target)
        sizes = _listing(remote, opts)  # connects first: a refused host key writes nothing here
        name = host_folder(row.host)
        folder, state = out / name, out / STATE_DIR
        row.folder = str(folder)
        folder.mkdir(parents=True, exist_ok=True)
        staging = state / f"staging-{name}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        ledger = Ledger(state / f"{name}.fetched")
        reconcile(folder, ledger)
        _fetch_new(remote, opts, row, ledger, staging, folder, sizes)
        shutil.rmtree(staging, ignore_errors=True)
        if opts.delete:
            row.deleted = _delete_fetched(remote, opts, ledger)
        if row.damaged:
            raise BadInput(f"{row.damaged} file(s) did not match their sha256; run collect again")
        row.status = "ok"
    except EdgeCNNError as e:
        row.error = str(e)
    except Exception as e:  # one device's surprise must not stop the others
        row.error = f"{type(e).__name__}: {e}"
    row.seconds = round(time.monotonic() - t0, 2)
    return row


def _listing(remote: Any, opts: CollectOptions) -> dict[str, int]:
    proc = remote.run(["sh", "-c", list_script(opts.remote_dir)], timeout=opts.timeout, check=False)
    if proc.returncode == 3:
        raise BadInput(f"no capture directory {opts.remote_dir} on {remote.target}")
    return parse_listing(proc.stdout.decode("utf-8", "replace"))


def _fetch_new(remote: Any, opts: CollectOptions, row: HostRow, ledger: Ledger, staging: Path,
               folder: Path, sizes: dict[str, int]) -> None:  # fmt: skip
    captures = complete_captures(sizes)
    row.on_device = len(captures)
    # Only files not in the ledger: a capture cut in half by an interruption gets its rest.
    todo = [[n for n in names if n not in ledger.names] for names in captures.values()]
    todo = [names for names in todo if names]
    limit = int(opts.batch_mb * 1_000_000)
    for batch in _batches(todo, sizes, limit):
        proc = remote.run(["sh", "-c", fetch_script(opts.remote_dir)],
                          input=("\n".join(batch) + "\n").encode(), timeout=opts.timeout)  # fmt: skip
        sums, data = parse_fetch(proc.stdout)
        entries, stored, damaged = store_batch(batch, sums, data, staging, folder)
        ledger.add(entries)
        row.files += len(entries)
        row.bytes += stored
        row.fetched += sum(1 for n, _ in entries if n.endswith(SIDECAR))
        row.damaged += damaged
        row.vanished += len(batch) - len(entries) - damaged


def _delete_fetched(remote: Any, opts: CollectOptions, ledger: Ledger) -> int:
    """Remove on the device the files whose verified copy is here (sidecars first)."""
    on_device = _listing(remote, opts)
    names = sorted(
        (n for n in on_device if n in ledger.names), key=lambda n: not n.endswith(SIDECAR)
    )
    if names:
        q = shlex.quote(opts.remote_dir)
        remote.run(["sh", "-c", f"cd {q} && xargs -r rm -f --"],
                   input=("\n".join(names) + "\n").encode(), timeout=opts.timeout)  # fmt: skip
    return len(names)


def collect(hosts: list[str], out: str | os.PathLike, opts: CollectOptions,
            jobs: int = 4) -> list[HostRow]:  # fmt: skip
    """Fetch from every host in parallel; rows in the order the hosts were given."""
    if not hosts:
        raise BadInput("no hosts: give --host USER@ADDR[:PORT] (repeatable) or --inventory FILE")
    opts.validated()
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise BadInput(f"--out {root} is not a directory")
    seen: set[str] = set()
    unique = [h for h in hosts if not (h in seen or seen.add(h))]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"cannot write {root}: {e.strerror or e}") from None
    with (
        locked(root / STATE_DIR),
        ThreadPoolExecutor(max_workers=max(1, min(jobs, len(unique)))) as pool,
    ):
        return list(pool.map(lambda h: collect_host(h, root, opts), unique))
