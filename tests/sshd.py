"""A real OpenSSH server on 127.0.0.1 for tests (Debian openssh-server).

    with SSHServer() as srv:
        remote = Remote(srv.target, known_hosts=srv.known_hosts, identity=srv.client_key)

Generates a host key and a client key in a temp dir, writes a minimal
sshd_config (UsePAM no, StrictModes no, key auth only), starts `sshd -D` on a
free port, waits until it accepts connections, and stops it by its PID.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def sshd_available() -> bool:
    return (
        Path(SSHD).is_file()
        and shutil.which("ssh") is not None
        and shutil.which("ssh-keygen") is not None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


class SSHServer:
    """sshd on 127.0.0.1:<free port>, key auth for the current user."""

    def __init__(self, user: str | None = None) -> None:
        self.user = user or getpass.getuser()
        self.dir = Path(tempfile.mkdtemp(prefix="edgecnn-sshd-"))
        self.port = _free_port()
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.client_key = self.dir / "client_key"
        self.known_hosts = self.dir / "known_hosts"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> SSHServer:
        _keygen(self.host_key)
        _keygen(self.client_key)
        (self.dir / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        host_pub = Path(f"{self.host_key}.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        config = self.dir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    "LogLevel ERROR",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        try:
            os.makedirs("/run/sshd", exist_ok=True)  # privilege separation dir (needed as root)
        except OSError:
            pass  # not root: sshd runs unprivileged and serves only this user
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "sshd.log", "wb"),  # noqa: SIM115 - closed with the process
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # this PID only
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def wrong_known_hosts(self) -> Path:
        """A known_hosts file naming this address with a different key (a changed host key)."""
        other = self.dir / "other_host_key"
        if not other.exists():
            _keygen(other)
        pub = Path(f"{other}.pub").read_text().split()
        path = self.dir / "known_hosts_wrong"
        path.write_text(f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n")
        return path

    def __enter__(self) -> SSHServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
