"""Time one artifact in this process and print one JSON line (runs on the device too).

Spawned once per artifact, locally or through SSH with the device's Python, so
each measurement starts cold and owns its process (peak RSS is then the
artifact's own). Imports only the device side: numpy and the runtime, never
TensorFlow. Usage: python -m edgecnn.bench.worker '<json options>'
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

MARKER = "EDGECNN_BENCH_JSON "
INSTALL_HINT = "pip install 'edgecnn[device]' (numpy, pillow, ai-edge-litert)"


def _stats(ms: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(ms, dtype=np.float64)
    return {
        "mean_ms": float(a.mean()),
        "std_ms": float(a.std()),
        "min_ms": float(a.min()),
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        "fps": float(1000.0 / a.mean()) if a.mean() > 0 else None,
    }


def _peak_rss_mb() -> float | None:
    """Peak resident memory of this process (VmHWM: ru_maxrss would include the parent's
    pre-exec peak on Linux, which survives execve)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / (1024.0 * 1024.0) if sys.platform == "darwin" else kb / 1024.0
    except (ImportError, OSError):
        return None


def measure(opts: dict[str, Any]) -> dict[str, Any]:
    """Init, first inference, warm-up, timed runs, memory, size, accuracy."""
    t_import = time.perf_counter()
    import numpy as np

    from edgecnn.runtime import Runner

    import_s = time.perf_counter() - t_import
    t0 = time.perf_counter()
    runner = Runner(
        opts["build"], backend=opts.get("backend", "auto"), threads=opts.get("threads"),
        artifact=opts.get("artifact"),
    )  # fmt: skip
    init_s = time.perf_counter() - t0
    x_data = y_data = None
    if opts.get("data"):
        with np.load(opts["data"]) as d:
            x_data, y_data = d["x"], d["y"]
    h, w, c = runner.input_spec.shape
    sample = x_data[0] if x_data is not None and len(x_data) else np.full((h, w, c), 128, np.uint8)
    x = runner.preprocess(sample)[None]

    t0 = time.perf_counter()
    runner.run(x)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(int(opts.get("warmup", 10))):
        runner.run(x)
    warmup_s = time.perf_counter() - t0

    lat = []
    clock = time.perf_counter
    for _ in range(int(opts.get("runs", 100))):
        t = clock()
        runner.run(x)
        lat.append((clock() - t) * 1000.0)

    # End to end for one camera frame: preprocess + run + top-k.
    t0 = time.perf_counter()
    n_cls = max(1, min(int(opts.get("runs", 100)), 50))
    for _ in range(n_cls):
        runner.classify(sample, top_k=5)
    classify_ms = (time.perf_counter() - t0) * 1000.0 / n_cls

    result: dict[str, Any] = {
        "artifact": runner.artifact["path"],
        "format": runner.artifact.get("format"),
        "precision": runner.artifact.get("precision"),
        "backend": runner.backend_name,
        "threads": opts.get("threads"),
        "size_bytes": runner.path.stat().st_size,
        "import_ms": import_s * 1000.0,
        "init_ms": init_s * 1000.0,
        "first_ms": first_s * 1000.0,
        "first_invoke_ms": runner.timings.get("first_invoke_s", first_s) * 1000.0,
        "warmup_ms": warmup_s * 1000.0,
        "warmup_runs": int(opts.get("warmup", 10)),
        "runs": len(lat),
        **_stats(lat),
        "classify_ms": classify_ms,
        "latencies_ms": [round(v, 5) for v in lat],
    }
    if x_data is not None:
        probs = runner.predict_batch(x_data)
        result["accuracy"] = float((probs.argmax(1) == y_data).mean()) if len(y_data) else None
        result["accuracy_n"] = int(len(y_data))
    result["peak_rss_mb"] = _peak_rss_mb()
    runner.close()
    return result


def main(argv: list[str]) -> int:
    try:
        opts = json.loads(argv[1])
    except (IndexError, json.JSONDecodeError):
        print(MARKER + json.dumps({"error": "usage: python -m edgecnn.bench.worker '<json>'"}))
        return 2
    try:
        out = measure(opts)
    except ImportError as e:
        msg = f"the device has no runtime ({e}); install it with: {INSTALL_HINT}"
        out = {"error": msg, "kind": "missing_runtime"}
    except Exception as e:  # report, never a traceback: the parent prints one line
        from edgecnn.errors import EdgeCNNError
        from edgecnn.runtime.backends import MissingRuntime

        kind = "bad_input" if isinstance(e, EdgeCNNError) else type(e).__name__
        if isinstance(e, MissingRuntime):
            kind = "missing_runtime"
        first = str(e).strip().splitlines()
        out = {"error": first[0] if first else type(e).__name__, "kind": kind}
    sys.stdout.write(MARKER + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0 if "error" not in out else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
