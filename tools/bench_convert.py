#!/usr/bin/env python
"""Benchmark `convert`: file size per precision, conversion time, and single-image latency.

For three models trained briefly on real data (Fashion-MNIST from the Debian
package; CIFAR-10 itself is not reachable offline):
  - cnn_mnist   on Fashion-MNIST 28x28x1,
  - cnn_cifar10 on Fashion-MNIST resized to 32x32 and repeated to 3 channels,
  - MobileNetV2 alpha 0.35, 96x96x3, from random init (no ImageNet weights offline), built
    flat (Rescaling -> keras.applications layers -> Dense) so its BatchNorm trains, on
    Fashion-MNIST resized to 96x96x3,
each converted unpruned (float32/float16/dynamic/int8 TFLite, float32/int8 ONNX, plus the
int8 ONNX made from the int8 TFLite for comparison) and filter-pruned at --prune-filters
(float32/int8 TFLite + ONNX, fine-tuned; for MobileNetV2 also with widths rounded to 8).

Latency: every artifact is timed in its own fresh process (`--latency PATH`, which
imports only numpy and LiteRT or ONNX Runtime, never TensorFlow, whose thread
pools would steal the second core), batch 1, one thread, median of --runs.

    python tools/bench_convert.py --out /tmp/bench_convert [--json]
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
from typing import Any

MODELS = [
    # name, arch, input shape, build options, train images, epochs
    ("cnn_mnist", "cnn_mnist", (28, 28, 1), {}, 12000, 2),
    ("cnn_cifar10", "cnn_cifar10", (32, 32, 3), {}, 12000, 2),
    ("mobilenet_v2_0.35_96", "mobilenet_v2_flat", (96, 96, 3), {"alpha": 0.35}, 6000, 3),
]


def measure_latency(path: str, runs: int, warmup: int) -> dict[str, float]:
    """Runs in the child process: no TensorFlow import here."""
    import numpy as np

    rng = np.random.default_rng(0)
    if path.endswith(".tflite"):
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=path, num_threads=1)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        shape = [1, *d["shape"][1:]]
        if np.issubdtype(d["dtype"], np.integer):
            info = np.iinfo(d["dtype"])
            x = rng.integers(info.min, info.max, size=shape).astype(d["dtype"])
        else:
            x = rng.uniform(0, 255, size=shape).astype(np.float32)

        def once() -> None:
            it.set_tensor(d["index"], x)
            it.invoke()
            it.get_tensor(it.get_output_details()[0]["index"])

    else:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        inp = s.get_inputs()[0]
        int_type = {"tensor(int8)": np.int8, "tensor(uint8)": np.uint8}.get(inp.type)
        if int_type is not None:  # the from_tflite route keeps LiteRT's integer I/O
            info = np.iinfo(int_type)
            x = rng.integers(info.min, info.max, size=[1, *inp.shape[1:]]).astype(int_type)
        else:
            x = rng.uniform(0, 255, size=[1, *inp.shape[1:]]).astype(np.float32)

        def once() -> None:
            s.run(None, {inp.name: x})

    for _ in range(warmup):
        once()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        once()
        times.append((time.perf_counter() - t0) * 1000.0)
    return {"median_ms": statistics.median(times), "p90_ms": sorted(times)[int(0.9 * len(times))]}


def latency_in_subprocess(path: Path, runs: int, warmup: int) -> dict[str, float] | None:
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--latency",
            str(path),
            "--runs",
            str(runs),
            "--warmup",
            str(warmup),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        print(f"latency of {path.name} failed: {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def train(
    arch: str, shape: tuple[int, int, int], opts: dict, n_train: int, epochs: int, out: Path
) -> Path:
    import keras
    import numpy as np

    from edgecnn.data import load_dataset
    from edgecnn.zoo import build_model

    ds = load_dataset("fashion_mnist", seed=0, limit_train=n_train).adapted(shape)
    keras.utils.set_random_seed(0)
    if arch == "mobilenet_v2_flat":
        # The zoo's transfer model freezes a nested backbone in inference mode (right for
        # ImageNet weights); from random init BatchNorm must train, so build it flat here.
        inp = keras.Input(shape, name="image")
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inp)
        base = keras.applications.MobileNetV2(
            input_tensor=x, alpha=opts["alpha"], include_top=False, weights=None, pooling="avg"
        )
        probs = keras.layers.Dense(ds.num_classes, activation="softmax", name="predictions")(
            base.output
        )
        model = keras.Model(inp, probs, name="mobilenet_v2_035_96")
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                # keras' 0.999 leaves the moving statistics (used at inference) far behind
                # after a few epochs from scratch: validation sits at chance.
                layer.momentum = 0.9
    else:
        model = build_model(arch, shape, ds.num_classes, **opts)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(ds.x_train.astype(np.float32), ds.y_train, epochs=epochs, batch_size=64, verbose=0)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.keras"
    model.save(path)
    return path


def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from edgecnn.build import convert_model
    from edgecnn.data import load_dataset

    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    for name, arch, shape, opts, n_train, epochs in MODELS:
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        model_path = train(arch, shape, opts, n_train, epochs, out / name / "train")
        train_s = time.perf_counter() - t0
        ds = load_dataset("fashion_mnist", seed=0, limit_train=n_train).adapted(shape)
        variants = [
            ("unpruned", {"precisions": "float32,float16,dynamic,int8"}),
            (
                "unpruned-onnx-from-tflite",
                {"precisions": "int8", "formats": "onnx", "onnx_int8": "tflite"},
            ),
            (
                f"filters-{args.prune_filters:g}",
                {
                    "precisions": "float32,int8",
                    "prune_filters": args.prune_filters,
                    "fine_tune_epochs": args.fine_tune_epochs,
                },
            ),
        ]
        if arch == "mobilenet_v2_flat":
            variants.append(
                (
                    f"filters-{args.prune_filters:g}-x8",
                    {
                        "precisions": "float32,int8",
                        "prune_filters": args.prune_filters,
                        "filter_multiple": 8,
                        "fine_tune_epochs": args.fine_tune_epochs,
                    },
                )
            )
        for variant, kw in variants:
            kw = {"formats": "tflite,onnx", **kw}
            t0 = time.perf_counter()
            report = convert_model(
                model_path,
                ds,
                out / name / variant,
                eval_samples=args.eval_samples,
                **kw,
            )
            total_s = time.perf_counter() - t0
            for art in report["artifacts"]:
                lat = latency_in_subprocess(
                    out / name / variant / art["artifact"], args.runs, args.warmup
                )
                rows.append(
                    {
                        "model": name,
                        "variant": variant,
                        "artifact": art["artifact"],
                        "params": report["after"]["params"],
                        "macs": report["after"]["macs"],
                        "size_kb": round(art["size"] / 1024, 1),
                        "gzip_kb": round(art["gzip_size"] / 1024, 1),
                        "convert_s": art["seconds"],
                        "accuracy": round(art["accuracy"], 4)
                        if art["accuracy"] is not None
                        else None,
                        "latency_ms": round(lat["median_ms"], 3) if lat else None,
                        "keras_accuracy": round(report["after"]["accuracy"], 4),
                        "variant_total_s": round(total_s, 1),
                        "train_s": round(train_s, 1),
                    }
                )
            print(f"done {name} {variant} in {total_s:.1f}s", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="/tmp/bench_convert")
    p.add_argument("--prune-filters", type=float, default=0.5)
    p.add_argument("--fine-tune-epochs", type=int, default=2)
    p.add_argument("--eval-samples", type=int, default=1000)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--only", nargs="*", help="model names to run")
    p.add_argument("--json", action="store_true")
    p.add_argument("--latency", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.latency:
        print(json.dumps(measure_latency(args.latency, args.runs, args.warmup)))
        return
    rows = bench(args)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    from edgecnn.tables import format_table

    cols = [
        "model",
        "variant",
        "artifact",
        "params",
        "macs",
        "size_kb",
        "gzip_kb",
        "convert_s",
        "accuracy",
        "latency_ms",
    ]
    print(format_table(rows, cols))


if __name__ == "__main__":
    main()
