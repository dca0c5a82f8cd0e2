"""Time every artifact of a calibration corpus on this machine, one JSON line each (device side).

`edgecnn bench --calibrate` writes the corpus (generated models in every format and
precision) on the host, copies it here when the target is remote, and runs

    python -m edgecnn.runtime.corpus_worker '{"dir": DIR, "threads": [1, 4]}'

Each artifact is loaded once per thread count through the format registry and timed as
the bench worker times a build's artifacts: input set, invoke, output read and
dequantized. A line per result goes out as soon as it is known, and a line before each
one starts, so when the runtime itself crashes on a model (it happens: LiteRT aborts on
some int8 graphs) the caller knows which, records it and starts a new worker after it
(`"skip"`: the [file, threads] pairs already done).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

MARKER = "EDGECNN_CORPUS_JSON "
MODULE = "edgecnn.runtime.corpus_worker"
INDEX = "corpus.json"


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(MARKER + json.dumps(record) + "\n")
    sys.stdout.flush()


def _feed(backend: Any) -> Any:
    import numpy as np

    info = backend.inputs[0]
    shape = [1 if v < 0 else v for v in info.shape]
    rng = np.random.default_rng(0)
    if info.dtype.kind in "iu":
        lo, hi = np.iinfo(info.dtype).min, np.iinfo(info.dtype).max
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(info.dtype)
    return rng.uniform(0, 255, size=shape).astype(info.dtype)


def time_artifact(
    path: Path, fmt_name: str, threads: int | None, opts: dict[str, Any]
) -> dict[str, Any]:
    from edgecnn.runtime.formats import get_format
    from edgecnn.runtime.preprocess import dequantize
    from edgecnn.runtime.timing import TimingPlan, time_calls

    fmt = get_format(fmt_name)
    data = path.read_bytes()
    fmt.check(data, path.name)
    backend = fmt.open(data, path.name, "auto", threads)
    x = _feed(backend)
    out = backend.outputs[0]

    def run() -> None:
        raw = backend.run(x)
        dequantize(raw.reshape(raw.shape[0], -1), out.scale, out.zero_point)

    plan = TimingPlan(
        warmup=int(opts.get("warmup", 3)), warmup_min_s=float(opts.get("warmup_min_s", 0.1)),
        runs=int(opts.get("runs", 20)), min_s=float(opts.get("min_s", 0.3)),
        max_s=float(opts.get("max_s", 10.0)),
    )  # fmt: skip
    stats = time_calls(run, plan)
    backend.close()
    return {"p50_ms": stats.p50_ms, "mean_ms": stats.mean_ms, "min_ms": stats.min_ms,
            "std_ms": stats.std_ms, "runs": stats.runs}  # fmt: skip


def run_corpus(opts: dict[str, Any]) -> int:
    import os

    from edgecnn.runtime.sysinfo import system_state

    root = Path(opts["dir"])
    entries = json.loads((root / INDEX).read_text())["artifacts"]
    threads = opts.get("threads") or "auto"
    if threads == "auto":  # one thread, and every core of this machine
        threads = sorted({1, os.cpu_count() or 1})
    skip = {(f, int(t)) for f, t in opts.get("skip") or []}  # done by an earlier worker
    failed = 0
    _emit(
        {"event": "start", "system": system_state(), "artifacts": len(entries), "threads": threads}
    )
    for entry in entries:
        for t in threads:
            if (entry["file"], t) in skip:
                continue
            rec = {
                "file": entry["file"],
                "format": entry["format"],
                "precision": entry["precision"],
                "threads": t,
            }
            _emit({"event": "begin", **rec})  # if the runtime crashes on it, this says on what
            t0 = time.perf_counter()
            try:
                rec.update(time_artifact(root / entry["file"], entry["format"], t, opts))
            except Exception as e:  # one failure is recorded, the rest still runs
                failed += 1
                first = str(e).strip().splitlines()
                rec.update(
                    error=first[0][:200] if first else type(e).__name__, kind=type(e).__name__
                )
            rec["seconds"] = round(time.perf_counter() - t0, 3)
            _emit(rec)
    _emit({"event": "end", "system": system_state(), "failed": failed})
    return 0


def main(argv: list[str]) -> int:
    try:
        opts = json.loads(argv[1])
    except (IndexError, json.JSONDecodeError):
        _emit({"event": "error", "error": f"usage: python -m {MODULE} '<json>'"})
        return 2
    try:
        return run_corpus(opts)
    except Exception as e:  # the corpus itself is unreadable: one line, not a traceback
        _emit({"event": "error", "error": str(e).splitlines()[0] if str(e) else type(e).__name__})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
