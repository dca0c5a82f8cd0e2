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
    warmup_min_s: float = 0.5  # the LiteRT CLI's minimum warm-up time
    min_s: float = 1.0  # and its minimum timed-run time
    frame: tuple[int, int] | None = None  # time the whole frame-to-answer path at this size
    op_profile: bool = False
    profile: str | None = None  # latency profile for estimates (default: the device's)

    def check(self) -> BenchOptions:
        if self.runs < 1 or self.warmup < 0:
            raise BadInput("--runs must be >= 1 and --warmup >= 0")
        if self.warmup_min_s < 0 or self.min_s < 0:
            raise BadInput("--warmup-min-s and --min-s must be >= 0 seconds")
        if self.frame and (len(self.frame) != 2 or min(self.frame) < 1):
            raise BadInput(f"--frame needs WIDTHxHEIGHT, got {self.frame}")
        dev = get_device(self.device)
        if self.profile:
            import platform

            from edgecnn.bench.devices import runs_here
            from edgecnn.bench.profiles import load_profile

            prof = load_profile(self.profile)  # a corrupt or foreign profile is bad input, up front
            if runs_here(dev) and not self.host and prof.arch != platform.machine():
                raise BadInput(
                    f"profile {self.profile} is for {prof.arch}; this machine is {platform.machine()}"
                )
        return self


def worker_opts(
    build: str, art: Artifact, device: Device, o: BenchOptions, data: str | None
) -> dict[str, Any]:
    needs_accelerator = art.format == device.accelerator_format
    backend = o.backend or (device.backend if needs_accelerator else "auto")
    threads = o.threads if o.threads is not None else device.threads
    return worker_options(build, art.name, backend, threads, o.runs, o.warmup, data,
                          o.warmup_min_s, o.min_s, o.frame, o.op_profile)  # fmt: skip


def parse_frame(text: str | None) -> tuple[int, int] | None:
    """ "640x480" -> (640, 480); BadInput on anything else."""
    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise BadInput(f"--frame needs WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    if w < 1 or h < 1:
        raise BadInput(f"--frame needs a positive size, got {text!r}")
    return w, h
