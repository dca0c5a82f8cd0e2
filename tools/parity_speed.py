#!/usr/bin/env python
"""Time parity's batched evaluation: the 10,000-image Fashion-MNIST test split through the
seed CNN's float Keras model and its int8 TFLite and int8 ONNX artifacts.

The issue's target is < 60 s on 2 cores. The build comes from tools/parity_table.py
(trained by models/fashion_mnist_cnn.toml) unless --build names one.

    python tools/parity_speed.py
    python tools/parity_speed.py --build runs/parity-table/fashion_mnist_cnn/build --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--build", type=Path, default=None)
    ap.add_argument("--data", default="fashion_mnist")
    ap.add_argument("--workdir", type=Path, default=None, help="parity_table.py's work directory")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    t_start = time.perf_counter()
    from edgecnn.quiet import quiet_tensorflow

    quiet_tensorflow()
    import_s = time.perf_counter() - t_start
    build = args.build
    if build is None:
        from parity_table import REPO, ensure_build

        _, build = ensure_build(
            "models/fashion_mnist_cnn.toml", args.workdir or REPO / "runs" / "parity-table"
        )

    from edgecnn.parity import check_build, compare, load_eval_data
    from edgecnn.parity.evaluate import artifact_predict, reference_predict

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    build, manifest = check_build(build)
    ev = load_eval_data(manifest, args.data)
    x, y = ev.x, ev.y
    times["load data + verify sha256"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = reference_predict(build, manifest, x)
    times["float Keras"] = time.perf_counter() - t0
    rows = {}
    for name in ("model_int8.tflite", "model_int8.onnx"):
        art = manifest.by_path(name)
        t0 = time.perf_counter()
        probs, backend = artifact_predict(build, art, x)
        times[f"{name} ({backend})"] = time.perf_counter() - t0
        c = compare(ref, probs, y)
        rows[name] = {"top1": c["top1"], "agreement": c["agreement"]}
    total = sum(times.values())
    result = {
        "images": int(len(y)),
        "cpus": os.cpu_count(),
        "seconds": {k: round(v, 2) for k, v in times.items()},
        "total_s": round(total, 2),
        "python_and_tf_import_s": round(import_s, 2),
        "reference_top1": float((ref.argmax(1) == y).mean()),
        "artifacts": rows,
        "target_s": 60,
        "met": total < 60,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in times.items():
            print(f"{k:40s} {v:7.2f} s  ({len(y) / v:,.0f} img/s)")
        print(f"{'total (10k images, 3 models)':40s} {total:7.2f} s  target < 60 s: "
              f"{'met' if total < 60 else 'MISSED'}  [+{import_s:.1f} s Python/TF import]")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
