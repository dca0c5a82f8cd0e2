"""Are two back-to-back `edgecnn bench` runs of the same artifact the same number?

Builds two artifacts (untrained: latency does not depend on the weights): MobileNetV2-0.35-96
int8 and the seed CNN int8 at 28x28, then runs the CLI `edgecnn bench BUILD --device host
--json` on each, twice in a row, each run a new process (the bench worker: warm-up runs and
time, then runs and a minimum time). Prints each run's p50 and the relative difference of
the two; the issue's bar is 5%.

    python tools/bench_stability.py [--runs 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CASES = {
    "mobilenet_v2-0.35-96": ("mobilenet_v2", (96, 96, 3), {"alpha": 0.35}),
    "cnn_mnist-28": ("cnn_mnist", (28, 28, 1), {}),
}


def make_build(name: str, out: Path) -> Path:
    from edgecnn.build import BuildConfig, convert_model
    from edgecnn.data import load_dataset
    from edgecnn.zoo import build_model

    arch, shape, kw = CASES[name]
    data = load_dataset("fashion_mnist", limit_train=500).adapted(shape)
    model = build_model(arch, shape, 10, weights="none", **kw)
    cfg = BuildConfig(precisions=["int8"], formats=["tflite"], eval_samples=32, calib_samples=50)
    convert_model(model, data, out / name, cfg)
    return out / name


def bench_once(build: Path, threads: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "edgecnn.cli", "bench", str(build), "--device", "host",
           "--artifact", "model_int8.tflite", "--threads", str(threads), "--no-plot", "--json"]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(p.stdout)["results"][0]


def main() -> None:
    from edgecnn.quiet import quiet_tensorflow

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    quiet_tensorflow()
    with tempfile.TemporaryDirectory(prefix="edgecnn-stability-") as tmp:
        for name in CASES:
            build = make_build(name, Path(tmp))
            p50 = [bench_once(build, a.threads)["p50_ms"] for _ in range(a.runs)]
            spread = (max(p50) - min(p50)) / min(p50)
            runs = ", ".join(f"{v:.4f}" for v in p50)
            print(f"{name} int8, {a.threads} thread(s): p50 {runs} ms; spread {spread:.1%}")


if __name__ == "__main__":
    main()
