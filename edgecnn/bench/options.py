"""Bench options, and the worker options they make for one artifact on one device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgecnn.bench.devices import Device, get_device
from edgecnn.errors import BadInput
from edgecnn.manifest import Artifact
from edgecnn.runtime.bench_worker import worker_options


@dataclass
class BenchOptions:
    device: str = "host"
    runs: int = 100
    warmup: int = 10
    data: str | None = None
    host: str | None = None
    threads: int | None = None
    artifacts: list[str] | None = None
    estimate: bool = False
    limit: int | None = 2000
    known_hosts: str | None = None
    identity: str | None = None
    remote_python: str = "python3"
    backend: str | None = None
    timeout: float = 600.0

    def check(self) -> BenchOptions:
        if self.runs < 1 or self.warmup < 0:
            raise BadInput("--runs must be >= 1 and --warmup >= 0")
        get_device(self.device)
        return self


def worker_opts(
    build: str, art: Artifact, device: Device, o: BenchOptions, data: str | None
) -> dict[str, Any]:
    needs_accelerator = art.format == device.accelerator_format
    backend = o.backend or (device.backend if needs_accelerator else "auto")
    threads = o.threads if o.threads is not None else device.threads
    return worker_options(build, art.name, backend, threads, o.runs, o.warmup, data)
