"""`edgecnn bench --host`: copy artifacts, manifest, data and the device package; run the worker.

The device needs Python 3.10+, numpy, Pillow and a TFLite interpreter (or ONNX
Runtime); edgecnn itself need not be installed there: its device side travels with
the artifacts into a temporary directory that is removed after. What "the device
side" is comes from the code, not a list: every edgecnn module the runtime package
imports, followed transitively (`device_files`).
"""

from __future__ import annotations

import ast
import json
import shlex
from pathlib import Path
from typing import Any

from edgecnn.bench.devices import Device
from edgecnn.bench.options import BenchOptions, worker_opts
from edgecnn.errors import BadInput
from edgecnn.manifest import MANIFEST_NAME, Artifact, Manifest
from edgecnn.remote import Remote
from edgecnn.runtime.bench_worker import MODULE, parse_result

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
DEVICE_ROOTS = ("edgecnn.runtime",)
DEVICE_INSTALL = "pip install 'edgecnn[device]' (or: pip install numpy pillow ai-edge-litert)"


def _module_file(module: str) -> Path | None:
    base = PACKAGE_ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """edgecnn modules a file imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgecnn"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("edgecnn"))
    return found


def device_files() -> list[str]:
    """Source files (relative to the package root) that the device side needs."""
    todo = [*DEVICE_ROOTS, "edgecnn"]
    runtime_dir = PACKAGE_ROOT / "edgecnn" / "runtime"
    todo += [f"edgecnn.runtime.{p.stem}" for p in runtime_dir.glob("*.py") if p.stem != "__init__"]
    seen: dict[str, Path] = {}
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        path = _module_file(module)
        if path is None:
            continue  # `from edgecnn.x import name`: the name is not a module
        seen[module] = path
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages
        todo += sorted(_imports(path))
    return sorted(str(p.relative_to(PACKAGE_ROOT)) for p in seen.values())


def _copy_list(
    build: Path, manifest: Manifest, arts: list[Artifact], data: Path | None
) -> dict[str, Path]:
    files: dict[str, Path] = {f"pkg/{rel}": PACKAGE_ROOT / rel for rel in device_files()}
    files[f"build/{MANIFEST_NAME}"] = build / MANIFEST_NAME
    for a in arts:
        src = a.file(build)
        if not src.is_file():
            raise BadInput(f"artifact {src} is missing")
        files[f"build/{a.path}"] = src
    if data is not None:
        files["data.npz"] = data
    return files


def _run_worker(
    remote: Remote, tmp: str, opts: dict[str, Any], python: str, timeout: float
) -> dict[str, Any]:
    q = shlex.quote
    cmd = (
        f"cd {q(tmp)} && PYTHONPATH={q(tmp + '/pkg')} {q(python)} -m {MODULE} {q(json.dumps(opts))}"
    )
    proc = remote.run(cmd, check=False, timeout=timeout)
    res = parse_result(
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
        proc.returncode,
    )
    if res.get("kind") == "missing_runtime":
        raise BadInput(f"on {remote.target}: {res['error']}")
    if "error" in res and "No module named" in res["error"]:
        raise BadInput(f"on {remote.target}: {res['error']}; install with {DEVICE_INSTALL}")
    res["remote"] = str(remote.target)
    return res


def run_remote(
    o: BenchOptions,
    build: Path,
    manifest: Manifest,
    arts: list[Artifact],
    device: Device,
    data: Path | None,
) -> list[dict[str, Any]]:
    remote = Remote(o.host or "", known_hosts=o.known_hosts, identity=o.identity)
    remote.check()
    files = _copy_list(build, manifest, arts, data)
    tmp = remote.make_temp_dir("edgecnn-bench")
    try:
        remote.put_files(files, tmp)
        probe = remote.run(f"command -v {shlex.quote(o.remote_python)}", check=False, timeout=60)
        if probe.returncode != 0:
            raise BadInput(
                f"no {o.remote_python} on {remote.target}; install Python 3 (sudo apt-get install "
                f"python3) then {DEVICE_INSTALL}"
            )
        remote_data = f"{tmp}/data.npz" if data is not None else None
        return [
            _run_worker(remote, tmp, worker_opts(f"{tmp}/build", a, device, o, remote_data),
                        o.remote_python, o.timeout)
            for a in arts
        ]  # fmt: skip
    finally:
        remote.remove_dir(tmp)
