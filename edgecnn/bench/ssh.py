"""`edgecnn bench --host`: copy artifacts, manifest, data and runtime; run the worker there.

The device needs Python 3.10+, numpy, Pillow and a TFLite interpreter (or ONNX
Runtime); edgecnn itself need not be installed there: its device-side source
travels with the artifacts into a temporary directory that is removed after.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from edgecnn.bench.devices import Device
from edgecnn.errors import BadInput
from edgecnn.manifest import MANIFEST_NAME
from edgecnn.remote import Remote


def run_remote(
    host: str,
    build: Path,
    manifest: dict[str, Any],
    arts: list[dict[str, Any]],
    device: Device,
    threads: int | None,
    runs: int,
    warmup: int,
    data_path: Path | None,
    known_hosts: str | None = None,
    identity: str | None = None,
    python: str = "python3",
    backend: str | None = None,
    timeout: float = 600.0,
) -> list[dict[str, Any]]:
    from edgecnn.bench.api import (
        DEVICE_INSTALL,
        PACKAGE_ROOT,
        _parse_worker,
        _worker_opts,
        runtime_files,
    )

    remote = Remote(host, known_hosts=known_hosts, identity=identity)
    remote.check()
    files: dict[str, Any] = {f"pkg/{rel}": PACKAGE_ROOT / rel for rel in runtime_files()}
    files[f"build/{MANIFEST_NAME}"] = build / MANIFEST_NAME
    for a in arts:
        src = build / a["path"]
        if not src.is_file():
            raise BadInput(f"artifact {src} is missing")
        files[f"build/{a['path']}"] = src
    if data_path is not None:
        files["data.npz"] = data_path
    tmp = remote.make_temp_dir("edgecnn-bench")
    try:
        remote.put_files(files, tmp)
        q = shlex.quote
        probe = remote.run(f"command -v {q(python)}", check=False, timeout=60)
        if probe.returncode != 0:
            raise BadInput(
                f"no {python} on {remote.target}; install Python 3 (sudo apt-get install python3) "
                f"then {DEVICE_INSTALL}"
            )
        results = []
        for a in arts:
            opts = _worker_opts(
                f"{tmp}/build", a, device, threads, runs, warmup,
                f"{tmp}/data.npz" if data_path is not None else None, backend,
            )  # fmt: skip
            cmd = f"cd {q(tmp)} && PYTHONPATH={q(tmp + '/pkg')} {q(python)} -m edgecnn.bench.worker {q(json.dumps(opts))}"
            proc = remote.run(cmd, check=False, timeout=timeout)
            res = _parse_worker(
                proc.stdout.decode("utf-8", "replace"),
                proc.stderr.decode("utf-8", "replace"),
                proc.returncode,
            )
            if res.get("kind") == "missing_runtime":
                raise BadInput(f"on {remote.target}: {res['error']}")
            if "error" in res and "No module named" in res["error"]:
                raise BadInput(f"on {remote.target}: {res['error']}; install with {DEVICE_INSTALL}")
            res["remote"] = str(remote.target)
            results.append(res)
        return results
    finally:
        remote.remove_dir(tmp)
