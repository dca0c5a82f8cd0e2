"""Benchmarks, host side: local (a process per artifact), over SSH on a device, or estimated.

The worker that times an artifact is device side (`edgecnn.runtime.bench_worker`).
"""

from edgecnn.bench.api import bench_build
from edgecnn.bench.options import BenchOptions

__all__ = ["BenchOptions", "bench_build"]
