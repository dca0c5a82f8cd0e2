"""The device runtime on aarch64 under qemu-user-static agrees with x86-64 (tools/aarch64_smoke.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_fixtures import daemon_build

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(os.environ.get("EDGECNN_SKIP_AARCH64") == "1", reason="EDGECNN_SKIP_AARCH64=1")
def test_runtime_on_emulated_aarch64_matches_x86(tmp_path_factory):
    """The sysroot is made by tools/install-dev.sh (tools/aarch64_sysroot.sh); the host side of
    the comparison runs in this test's own interpreter."""
    build = daemon_build(tmp_path_factory)
    work = Path(os.environ.get("EDGECNN_AARCH64_WORK", "/tmp/edgecnn-aarch64"))
    r = subprocess.run(
        ["bash", str(REPO / "tools" / "aarch64_smoke.sh"), str(build)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "EDGECNN_AARCH64_WORK": str(work), "PYTHON": sys.executable},
    )
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "aarch64: aarch64 litert" in r.stdout
    assert "top-1 agreement aarch64 vs x86-64: 1.0000" in r.stdout
    assert "TensorFlow imported on arm: no" in r.stdout
