"""Time one artifact in this process and print one JSON line (runs on the device too).

Spawned once per artifact, locally or through SSH with the device's Python, so
each measurement starts cold and owns its process (peak RSS is then the
artifact's own). Imports only the device side: numpy and the runtime, never
TensorFlow. Usage: python -m edgecnn.runtime.bench_worker '<json options>'

The host side reads the result with `parse_result`; `worker_options` builds the
options, so both ends agree on one format.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

MARKER = "EDGECNN_BENCH_JSON "
INSTALL_HINT = "pip install 'edgecnn[device]' (numpy, pillow, ai-edge-litert)"
MODULE = "edgecnn.runtime.bench_worker"


def worker_options(
    build: str, artifact: str, backend: str, threads: int | None, runs: int, warmup: int,
    data: str | None, warmup_min_s: float = 0.0, min_s: float = 0.0,
    frame: tuple[int, int] | None = None, op_profile: bool = False,
) -> dict[str, Any]:  # fmt: skip
    return {
        "build": build, "artifact": artifact, "backend": backend, "threads": threads,
        "runs": runs, "warmup": warmup, "warmup_min_s": warmup_min_s, "min_s": min_s, "data": data,
        "frame": list(frame) if frame else None, "op_profile": op_profile,
    }  # fmt: skip


def parse_result(stdout: str, stderr: str, returncode: int) -> dict[str, Any]:
    """The worker's JSON line, or an error saying how it died."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    tail = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    detail = tail[-1] if tail else f"exit code {returncode}"
    if returncode < 0:
        detail = f"crashed with signal {-returncode}"
    return {"error": f"bench worker failed: {detail}", "kind": "crash"}


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


def _load_data(path: str | None) -> tuple[Any, Any]:
    if not path:
        return None, None
    import numpy as np

    with np.load(path) as d:
        return d["x"], d["y"]


def measure(opts: dict[str, Any]) -> dict[str, Any]:
    """Init, first inference, warm-up, timed runs, memory, size, accuracy."""
    t_import = time.perf_counter()
    import numpy as np

    from edgecnn.runtime import Runner
    from edgecnn.runtime.sysinfo import system_state
    from edgecnn.runtime.timing import TimingPlan, time_calls

    import_s = time.perf_counter() - t_import
    t0 = time.perf_counter()
    runner = Runner(
        opts["build"], backend=opts.get("backend", "auto"), threads=opts.get("threads"),
        artifact=opts.get("artifact"),
    )  # fmt: skip
    init_s = time.perf_counter() - t0
    x_data, y_data = _load_data(opts.get("data"))
    h, w, c = runner.input_spec.shape
    sample = x_data[0] if x_data is not None and len(x_data) else np.full((h, w, c), 128, np.uint8)
    x = runner.preprocess(sample)[None]

    t0 = time.perf_counter()
    runner.run(x)
    first_s = time.perf_counter() - t0
    plan = TimingPlan(
        warmup=int(opts.get("warmup", 10)), warmup_min_s=float(opts.get("warmup_min_s", 0.0)),
        runs=int(opts.get("runs", 100)), min_s=float(opts.get("min_s", 0.0)),
    )  # fmt: skip
    stats = time_calls(lambda: runner.run(x), plan)
    # End to end for one camera frame: preprocess + run + top-k.
    frame = time_calls(
        lambda: runner.classify(sample, top_k=5), TimingPlan(0, 0, max(1, min(plan.runs, 50)))
    )

    result: dict[str, Any] = {
        "artifact": runner.artifact.path,
        "format": runner.artifact.format,
        "precision": runner.artifact.precision,
        "backend": runner.backend_name,
        "threads": opts.get("threads"),
        "size_bytes": runner.path.stat().st_size,
        "import_ms": import_s * 1000.0,
        "init_ms": init_s * 1000.0,
        "first_ms": first_s * 1000.0,
        "first_invoke_ms": runner.timings.get("first_invoke_s", first_s) * 1000.0,
        "warmup_ms": stats.warmup_mean_ms * stats.warmup_runs,
        **{k: v for k, v in stats.summary().items()},
        "classify_ms": frame.mean_ms,
        "latencies_ms": [round(v, 5) for v in stats.latencies_ms],
    }
    if x_data is not None:
        probs = runner.predict_batch(x_data)
        result["accuracy"] = float((probs.argmax(1) == y_data).mean()) if len(y_data) else None
        result["accuracy_n"] = int(len(y_data))
    if opts.get("frame"):
        result["frame_ms"] = frame_stages(runner, tuple(opts["frame"]), sample)
    if opts.get("op_profile"):
        result["op_profile"] = op_profile(runner, x)
    result["peak_rss_mb"] = _peak_rss_mb()
    result["system"] = system_state()
    runner.close()
    return result


def _stage_ms(fn: Any) -> float:
    from edgecnn.runtime.timing import TimingPlan, time_calls

    return time_calls(fn, TimingPlan(warmup=5, runs=50, min_s=0.2)).p50_ms


def frame_stages(runner: Any, frame: tuple[int, int], sample: Any) -> dict[str, float]:
    """The frame-to-answer path, stage by stage (median ms): a W x H JPEG frame of the
    sample decoded (as from an MJPEG camera or an upload), fitted to the model (resize /
    crop and colour), quantized, invoked, dequantized and ranked."""
    import io

    import numpy as np
    from PIL import Image

    from edgecnn.runtime.images import decode_image
    from edgecnn.runtime.preprocess import dequantize, fit_image, top_k

    rgb = np.repeat(sample, 3, axis=2) if sample.shape[2] == 1 else sample
    buf = io.BytesIO()
    Image.fromarray(rgb).resize(frame, Image.BILINEAR).save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    spec = runner.input_spec
    img = decode_image(jpeg, mode="RGB")
    fitted = fit_image(img, tuple(spec.shape), spec.color_order, spec.resize)
    x = runner.to_model(fitted[None])
    raw = runner.backend.run(x)
    probs = dequantize(raw.reshape(1, -1), *runner._out_q)[0]
    stages = {
        "decode": _stage_ms(lambda: decode_image(jpeg, mode="RGB")),
        "resize": _stage_ms(
            lambda: fit_image(img, tuple(spec.shape), spec.color_order, spec.resize)
        ),
        "quantize": _stage_ms(lambda: runner.to_model(fitted[None])),
        "invoke": _stage_ms(lambda: runner.backend.run(x)),
        "dequantize": _stage_ms(lambda: dequantize(raw.reshape(1, -1), *runner._out_q)),
        "top_k": _stage_ms(lambda: top_k(probs, runner.labels, 5)),
    }
    stages["total"] = sum(stages.values())
    return stages


def op_profile(runner: Any, x: Any) -> list[dict[str, Any]] | None:
    """Per-node times where the backend can give them (ONNX Runtime's session profiling);
    None for LiteRT, whose Python wheel exposes no op profiler (the host derives a per-op
    breakdown from the device profile instead)."""
    profile = getattr(runner.backend, "profile_nodes", None)
    return profile(x) if profile else None


def _error(e: Exception) -> dict[str, Any]:
    from edgecnn.errors import EdgeCNNError
    from edgecnn.runtime.backends import MissingRuntime

    kind = "bad_input" if isinstance(e, EdgeCNNError) else type(e).__name__
    if isinstance(e, MissingRuntime):
        kind = "missing_runtime"
    first = str(e).strip().splitlines()
    return {"error": first[0] if first else type(e).__name__, "kind": kind}


def main(argv: list[str]) -> int:
    try:
        opts = json.loads(argv[1])
    except (IndexError, json.JSONDecodeError):
        print(MARKER + json.dumps({"error": f"usage: python -m {MODULE} '<json>'"}))
        return 2
    try:
        out = measure(opts)
    except ImportError as e:
        msg = f"the device has no runtime ({e}); install it with: {INSTALL_HINT}"
        out = {"error": msg, "kind": "missing_runtime"}
    except Exception as e:  # report, never a traceback: the parent prints one line
        out = _error(e)
    sys.stdout.write(MARKER + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0 if "error" not in out else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
