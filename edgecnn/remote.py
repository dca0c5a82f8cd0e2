"""SSH to a device with the system OpenSSH client: run commands, copy files.

Used by `edgecnn bench --host` and `edgecnn deploy`. Host keys are checked
strictly (`StrictHostKeyChecking=yes`): an unknown or changed key is an error,
never accepted silently. Failures become one-line `BadInput` errors saying
what went wrong (connection, authentication, host key, timeout).
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import BadInput

_TARGET = re.compile(
    r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:@\s]+))(?::(?P<port>\d+))?$"
)


@dataclass(frozen=True)
class SSHTarget:
    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> SSHTarget:
        """USER@ADDR[:PORT], with [v6]:PORT for IPv6 addresses."""
        m = _TARGET.match(text.strip())
        if not m:
            raise BadInput(f"bad SSH target {text!r}; expected USER@ADDR[:PORT]")
        port = int(m["port"]) if m["port"] else None
        if port is not None and not 0 < port < 65536:
            raise BadInput(f"bad SSH port {port} in {text!r}")
        return cls(m["v6"] or m["host"], m["user"], port)

    def __str__(self) -> str:
        who = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{who}{host}" + (f":{self.port}" if self.port else "")


def _classify_ssh_error(target: SSHTarget, stderr: str) -> str:
    """One line saying why ssh exited 255."""
    text = stderr.strip()
    low = text.lower()
    if (
        "remote host identification has changed" in low
        or "host key for" in low
        and "has changed" in low
    ):
        return f"host key of {target} does not match known_hosts (possible man-in-the-middle); refusing to connect"
    if "host key verification failed" in low or "no " in low and "host key is known" in low:
        return (
            f"host key of {target} is not in known_hosts; add it after checking it "
            f"(ssh-keyscan -p {target.port or 22} {target.host} >> ~/.ssh/known_hosts)"
        )
    if "permission denied" in low or "too many authentication failures" in low:
        return f"authentication to {target} failed (check the user and that your key is in authorized_keys)"
    if "connection refused" in low:
        return f"cannot connect to {target}: connection refused (is sshd running on that port?)"
    if "timed out" in low:
        return f"cannot connect to {target}: connection timed out"
    if "could not resolve hostname" in low or "name or service not known" in low:
        return f"cannot resolve host {target.host}"
    if "no route to host" in low or "network is unreachable" in low:
        return f"cannot reach {target}: no route to host"
    last = [ln for ln in text.splitlines() if ln.strip()]
    return f"ssh to {target} failed: {last[-1] if last else 'unknown error'}"


class Remote:
    """A device reachable over SSH (OpenSSH client, batch mode, strict host keys)."""

    def __init__(
        self,
        target: str | SSHTarget,
        known_hosts: str | os.PathLike | None = None,
        identity: str | os.PathLike | None = None,
        connect_timeout: float = 10.0,
        extra_options: tuple[str, ...] = (),
    ) -> None:
        self.target = target if isinstance(target, SSHTarget) else SSHTarget.parse(target)
        if shutil.which("ssh") is None:
            raise BadInput("no ssh client found; install openssh-client")
        self.known_hosts = Path(known_hosts).expanduser() if known_hosts else None
        if self.known_hosts is not None and not self.known_hosts.is_file():
            raise BadInput(f"known_hosts file {self.known_hosts} does not exist")
        self.identity = Path(identity).expanduser() if identity else None
        if self.identity is not None and not self.identity.is_file():
            raise BadInput(f"SSH key {self.identity} does not exist")
        self.connect_timeout = connect_timeout
        self.extra_options = extra_options

    def ssh_argv(self) -> list[str]:
        argv = [
            "ssh",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={max(1, int(self.connect_timeout))}",
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip
        if self.known_hosts is not None:
            argv += [
                "-o",
                f"UserKnownHostsFile={self.known_hosts}",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
            ]
        if self.identity is not None:
            argv += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        if self.target.port:
            argv += ["-p", str(self.target.port)]
        for opt in self.extra_options:
            argv += ["-o", opt]
        if self.target.user:
            argv += ["-l", self.target.user]
        return [*argv, "--", self.target.host]

    def run(
        self,
        command: str | list[str],
        input: bytes | None = None,
        timeout: float = 120.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `command` on the device (a list is shell-quoted). Exit 255 = ssh's own failure."""
        cmd = command if isinstance(command, str) else shlex.join(command)
        try:
            proc = subprocess.run(
                [*self.ssh_argv(), cmd],
                input=input,
                capture_output=True,
                timeout=timeout,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise BadInput(f"command on {self.target} timed out after {timeout:g} s") from None
        if proc.returncode == 255:
            raise BadInput(_classify_ssh_error(self.target, proc.stderr.decode("utf-8", "replace")))
        if check and proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise BadInput(
                f"command on {self.target} failed (exit {proc.returncode}): {err[-1] if err else cmd}"
            )
        return proc

    def check(self, timeout: float = 30.0) -> None:
        """Connect and run `true`: raises the one-line error if the device is unreachable."""
        self.run("true", timeout=timeout)

    def make_temp_dir(self, prefix: str = "edgecnn") -> str:
        out = (
            self.run(f"mktemp -d -t {shlex.quote(prefix)}.XXXXXX", timeout=60)
            .stdout.decode()
            .strip()
        )
        if not out.startswith("/"):
            raise BadInput(f"cannot make a temporary directory on {self.target}")
        return out

    def put_files(
        self, files: dict[str, str | os.PathLike | bytes], remote_dir: str, timeout: float = 300.0
    ) -> None:
        """Copy {relative path on device: local file or bytes} into `remote_dir` (tar over ssh)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for rel, src in files.items():
                if isinstance(src, bytes):
                    info = tarfile.TarInfo(rel)
                    info.size = len(src)
                    info.mode = 0o644
                    tar.addfile(info, io.BytesIO(src))
                else:
                    tar.add(str(src), arcname=rel)
        q = shlex.quote(remote_dir)
        self.run(f"mkdir -p {q} && tar -xzf - -C {q}", input=buf.getvalue(), timeout=timeout)

    def get_file(self, remote_path: str, timeout: float = 300.0) -> bytes:
        return self.run(["cat", remote_path], timeout=timeout).stdout

    def remove_dir(self, remote_dir: str) -> None:
        if remote_dir.startswith("/") and remote_dir.count("/") >= 2:
            self.run(["rm", "-rf", "--", remote_dir], timeout=60, check=False)
