"""A real PostgreSQL server on 127.0.0.1 for tests (Debian `postgresql`).

    with PostgresServer() as pg:
        url = pg.url("optuna")

Runs `initdb` into a temp dir (as the `postgres` user when the tests run as root, since
PostgreSQL refuses to run as root), starts the server on a free port with its socket in
that dir, waits until it accepts connections, and stops it by its PID.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "edgecnn"


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="edgecnn-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.as_postgres = os.geteuid() == 0

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if self.as_postgres else list(args)

    def url(self, db: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{db}"

    def __enter__(self) -> PostgresServer:
        if self.as_postgres:
            shutil.chown(self.dir, "postgres")
        subprocess.run(self._cmd(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "-A", "trust"),
                       check=True, capture_output=True)  # fmt: skip
        self.proc = subprocess.Popen(
            self._cmd(str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                      "-h", "127.0.0.1", "-k", str(self.dir)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._wait()
        return self

    def _wait(self) -> None:
        deadline = time.time() + 30
        while time.time() < deadline:
            ok = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                capture_output=True)  # fmt: skip
            if ok.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL did not start on port {self.port}")

    def create_db(self, name: str) -> str:
        subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name],
                       check=True, capture_output=True)  # fmt: skip
        return self.url(name)

    def _server_pid(self) -> int | None:
        pid_file = self.data / "postmaster.pid"
        try:
            return int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def __exit__(self, *exc: object) -> None:
        pid = self._server_pid()
        if pid:
            os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
