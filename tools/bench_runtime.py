#!/usr/bin/env python
"""Runtime benchmarks: Runner overhead and cold start.

1. Overhead: time of `Runner.classify(image)` over a bare `interpreter.invoke()`
   on the same int8 model, for the MNIST seed CNN (cnn_mnist, trained briefly on
   real MNIST-5k) and MobileNetV2-0.35-96 (weights untrained: timing does not
   depend on their values). Goal: < 1.2x for MobileNetV2. A breakdown says where
   the remaining time goes (preprocess, set_tensor, get_tensor+dequantize, top-k).
2. Cold start: a fresh `python` from start to first prediction with the device
   side, against a bare `python -c pass`.

Each model is timed in its own process. Usage:
    python tools/bench_runtime.py [--work DIR] [--repeats N] [--json]
Models are built (TensorFlow needed, once) into --work; timing needs only the device side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MEASURE = r"""
import json, statistics, sys, time
import numpy as np
from edgecnn.runtime import Runner
from edgecnn.runtime.preprocess import dequantize, fit_image, to_uint8_image, top_k

build, iters = sys.argv[1], int(sys.argv[2])
r = Runner(build, threads=1)
h, w, c = r.input_spec.shape
rng = np.random.default_rng(0)
img = rng.integers(0, 256, (h, w, c), dtype=np.uint8)          # a frame at the model's size
frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)    # a VGA camera frame
interp = r.backend.interp
d_in, d_out = interp.get_input_details()[0], interp.get_output_details()[0]
x = r.preprocess(img)[None]
interp.set_tensor(d_in["index"], x)
for _ in range(20):
    r.classify(img)
    interp.invoke()
clock = time.perf_counter

def timeit(fn, n=iters):
    ts = []
    for _ in range(n):
        t = clock(); fn(); ts.append(clock() - t)
    return float(np.median(ts)) * 1e6  # microseconds

bare, cls, cls_vga = [], [], []
for _ in range(5):  # interleave to share any drift
    interp.set_tensor(d_in["index"], x)
    bare.append(timeit(interp.invoke))
    cls.append(timeit(lambda: r.classify(img)))
    cls_vga.append(timeit(lambda: r.classify(frame), max(iters // 5, 20)))
raw = interp.get_tensor(d_out["index"])
probs = dequantize(raw.reshape(1, -1), *r._out_q)[0]
parts = {
    "to_uint8+fit_us": timeit(lambda: fit_image(to_uint8_image(img), (h, w, c), r.input_spec.color_order)),
    "quantize_us": timeit(lambda: r._to_model(img[None])),
    "set_tensor_us": timeit(lambda: interp.set_tensor(d_in["index"], x)),
    "get_tensor+dequantize_us": timeit(lambda: dequantize(interp.get_tensor(d_out["index"]).reshape(1, -1), *r._out_q)),
    "top_k_us": timeit(lambda: top_k(probs, r.labels, 5)),
    "vga_resize_us": timeit(lambda: fit_image(to_uint8_image(frame), (h, w, c), r.input_spec.color_order), max(iters // 5, 20)),
}
b, k = statistics.median(bare), statistics.median(cls)
print(json.dumps({"model": r.name, "input": [h, w, c], "bare_invoke_us": b, "classify_us": k,
                  "ratio": k / b, "classify_vga_us": statistics.median(cls_vga),
                  "ratio_vga": statistics.median(cls_vga) / b, "breakdown": parts}))
"""

COLD = r"""
import sys, time
t0 = time.perf_counter()
import numpy as np
from edgecnn.runtime import Runner
t1 = time.perf_counter()
r = Runner(sys.argv[1])
t2 = time.perf_counter()
h, w, c = r.input_spec.shape
p = r.classify(np.zeros((h, w, c), np.uint8))
t3 = time.perf_counter()
print(f"{(t1 - t0) * 1e3:.2f} {(t2 - t1) * 1e3:.2f} {(t3 - t2) * 1e3:.2f}")
"""


def build_models(work: Path) -> dict[str, Path]:
    """cnn_mnist on MNIST-5k (1 epoch) and MobileNetV2-0.35-96, int8 + float32 TFLite each."""
    sys.path.insert(0, str(REPO / "tests"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from runtime_fixtures import make_build

    out = {"cnn_mnist": work / "cnn_mnist", "mobilenet_v2_0.35_96": work / "mobilenet_v2_035_96"}
    if not (out["cnn_mnist"] / "manifest.json").exists():
        make_build(out["cnn_mnist"], "mnist5k", "cnn_mnist", epochs=1)
    if not (out["mobilenet_v2_0.35_96"] / "manifest.json").exists():
        import keras

        from edgecnn.build import convert_model
        from edgecnn.data import load_dataset

        inp = keras.Input((96, 96, 3), name="image")
        x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
        base = keras.applications.MobileNetV2(
            input_shape=(96, 96, 3), alpha=0.35, include_top=True, weights=None, classes=10
        )
        model = keras.Model(inp, base(x), name="mobilenet_v2_0.35_96")
        # Untrained weights are enough for timing; real digits calibrate the int8 ranges.
        ds = load_dataset("digits", seed=0).adapted((96, 96, 3))
        convert_model(
            model,
            ds,
            out["mobilenet_v2_0.35_96"],
            precisions=["float32", "int8"],
            formats=["tflite"],
        )
    return out


def wall(cmd: list[str], repeats: int) -> list[float]:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        ts.append((time.perf_counter() - t) * 1e3)
    return ts


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--work", default="/tmp/edgecnn-bench-runtime")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=7, help="cold-start repetitions")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    models = build_models(work)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    report: dict = {"overhead": [], "cold_start": []}
    for _name, build in models.items():
        p = subprocess.run(
            [sys.executable, "-c", MEASURE, str(build), str(args.iters)],
            capture_output=True,
            text=True,
            env=env,
        )
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            return 1
        report["overhead"].append(json.loads(p.stdout.strip().splitlines()[-1]))
    baseline = wall([sys.executable, "-c", "pass"], args.repeats)
    for name, build in models.items():
        runs = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            p = subprocess.run(
                [sys.executable, "-c", COLD, str(build)], capture_output=True, text=True, env=env
            )
            total = (time.perf_counter() - t) * 1e3
            imp, init, first = (float(v) for v in p.stdout.split())
            runs.append((total, imp, init, first))
        med = [statistics.median(r[i] for r in runs) for i in range(4)]
        report["cold_start"].append(
            {
                "model": name,
                "python_pass_ms": statistics.median(baseline),
                "total_ms": med[0],
                "over_python_ms": med[0] - statistics.median(baseline),
                "import_ms": med[1],
                "runner_init_ms": med[2],
                "first_classify_ms": med[3],
            }
        )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("Runner overhead (1 thread, medians):")
    for o in report["overhead"]:
        print(
            f"  {o['model']:24s} {o['input']}: bare invoke {o['bare_invoke_us']:.1f} us, classify "
            f"{o['classify_us']:.1f} us -> {o['ratio']:.2f}x; from a 640x480 frame {o['classify_vga_us']:.1f} us "
            f"({o['ratio_vga']:.2f}x)"
        )
        print("    " + ", ".join(f"{k} {v:.1f}" for k, v in o["breakdown"].items()))
    print("Cold start (median wall time of a fresh process):")
    for c in report["cold_start"]:
        print(
            f"  {c['model']:24s} total {c['total_ms']:.0f} ms vs python -c pass {c['python_pass_ms']:.0f} ms "
            f"(+{c['over_python_ms']:.0f} ms: imports {c['import_ms']:.0f}, Runner init {c['runner_init_ms']:.0f}, "
            f"first classify {c['first_classify_ms']:.1f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
