"""Benchmarks: local (a process per artifact), over SSH on a device, or estimated.

Kept import-free: `edgecnn.bench.worker` runs on the device with only the
device side installed, so importing this package must pull in nothing else.
Host code calls `bench_build` (see `edgecnn.bench.api`).
"""

from __future__ import annotations

from typing import Any


def bench_build(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """See `edgecnn.bench.api.bench_build`."""
    from edgecnn.bench.api import bench_build as impl

    return impl(*args, **kwargs)
