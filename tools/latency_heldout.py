"""How good are latency estimates on networks the profile never saw?

Builds held-out networks that are not in the calibration corpus (zoo models at several
widths and input sizes, filter-pruned models, EfficientNet-Lite0, a small ResNet and a wide
plain CNN), converts each to float32 and int8 TFLite, measures them on this machine at 1
and 2 threads (the corpus worker: warm-up, then at least 1 s of runs, median), and puts
beside each measurement:
  * the estimate of the host's measured profile (edgecnn bench --calibrate), and
  * the old single-anchor estimate (MACs x a throughput calibrated on one published
    MobileNetV2 figure), as edgecnn estimated before device profiles.

    python tools/latency_heldout.py                          # the host profile in the user dir
    python tools/latency_heldout.py --profile host.json --json heldout.json
    python tools/latency_heldout.py --work runs/heldout      # keep models and measurements
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def small_resnet(shape: tuple[int, int, int]) -> Any:
    import keras
    from keras import layers

    inp = keras.Input(shape=shape)
    x = layers.Rescaling(1 / 255.0)(inp)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    for width, stride in ((32, 1), (64, 2), (128, 2)):
        y = layers.Conv2D(width, 3, strides=stride, padding="same", activation="relu")(x)
        y = layers.Conv2D(width, 3, padding="same")(y)
        if stride != 1 or int(x.shape[-1]) != width:
            x = layers.Conv2D(width, 1, strides=stride)(x)
        x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(x), name="small_resnet")


def wide_plain(shape: tuple[int, int, int]) -> Any:
    import keras
    from keras import layers

    inp = keras.Input(shape=shape)
    x = layers.Rescaling(1 / 255.0)(inp)
    for width in (96, 192, 256):
        x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(x), name="wide_plain")


ZOO = [
    ("cnn_small", 28, 1, {}), ("cnn_mnist", 28, 1, {}), ("cnn_cifar10", 32, 3, {}),
    ("mobilenet", 96, 3, {"alpha": 0.25}), ("mobilenet", 128, 3, {"alpha": 0.5}),
    ("mobilenet", 160, 3, {"alpha": 1.0}), ("mobilenet_v2", 96, 3, {"alpha": 0.35}),
    ("mobilenet_v2", 128, 3, {"alpha": 0.5}), ("mobilenet_v2", 160, 3, {"alpha": 0.75}),
    ("mobilenet_v2", 224, 3, {"alpha": 1.0}), ("mobilenet_v3_small", 96, 3, {"alpha": 0.75}),
    ("mobilenet_v3_small", 224, 3, {"alpha": 1.0}), ("mobilenet_v3_large", 128, 3, {"alpha": 0.75}),
    ("mobilenet_v3_large", 224, 3, {"alpha": 1.0}), ("efficientnet_lite0", 96, 3, {}),
    ("efficientnet_lite0", 128, 3, {}), ("efficientnet_lite0", 224, 3, {}), ("vgg16", 32, 3, {}),
    ("vgg16", 64, 3, {}),
]  # fmt: skip
PRUNED = [
    ("cnn_mnist", 28, 1, {}),
    ("cnn_cifar10", 32, 3, {}),
    ("mobilenet_v2", 96, 3, {"alpha": 0.35}),
]


def configurations() -> set[tuple[str, int, float, float]]:
    """(arch, input side, alpha or 0, pruning ratio) of every held-out zoo network."""
    zoo = {(a, side, float(o.get("alpha", 0)), 0.0) for a, side, _, o in ZOO}
    return zoo | {(a, side, float(o.get("alpha", 0)), 0.5) for a, side, _, o in PRUNED}


def in_corpus() -> set[tuple[str, int, float, float]]:
    """Held-out configurations that the calibration corpus's zoo families also have (none)."""
    from edgecnn.bench.corpus import FAMILIES

    corpus = {(a, side, float(alpha), float(r)) for a, side, _, alpha, r in FAMILIES}
    return configurations() & corpus


def heldout_models() -> list[tuple[str, Any]]:
    from edgecnn.optimize.structured import prune_structured
    from edgecnn.zoo import build_model

    out = []
    for arch, side, c, opts in ZOO:
        extra = (
            {"weights": "none", **opts}
            if arch not in ("cnn_small", "cnn_mnist", "cnn_cifar10")
            else {}
        )
        name = f"{arch}-{side}" + (f"-a{opts['alpha']}" if "alpha" in opts else "")
        out.append((name, build_model(arch, (side, side, c), 10, **extra)))
    for arch, side, c, opts in PRUNED:
        extra = {"weights": "none", **opts} if "mobilenet" in arch else {}
        pruned, _ = prune_structured(build_model(arch, (side, side, c), 10, **extra), 0.5)
        out.append((f"{arch}-{side}-pruned50", pruned))
    out += [
        ("small_resnet-32", small_resnet((32, 32, 3))),
        ("wide_plain-32", wide_plain((32, 32, 3))),
    ]
    return out


def export(models: list[tuple[str, Any]], out: Path) -> None:
    from edgecnn.export.tflite import to_tflite
    from edgecnn.quiet import captured_output

    entries = []
    for name, model in models:
        shape = tuple(int(v) for v in model.inputs[0].shape[1:])
        calib = np.random.default_rng(0).uniform(0, 255, size=(8, *shape)).astype(np.float32)
        for prec in ("float32", "int8"):
            with captured_output():
                (out / f"{name}_{prec}.tflite").write_bytes(to_tflite(model, prec, calib=calib))
            entries.append(
                {
                    "file": f"{name}_{prec}.tflite",
                    "net": name,
                    "format": "tflite",
                    "precision": prec,
                }
            )
    (out / "corpus.json").write_text(json.dumps({"artifacts": entries}))


def measure(out: Path, threads: list[int], rounds: int) -> list[dict[str, Any]]:
    """The corpus worker over the held-out set (restarted past any model the runtime crashes
    on), in passes as `bench --calibrate` measures: each artifact keeps its fastest pass."""
    from edgecnn.bench.calibrate import measure_in_rounds
    from edgecnn.runtime.corpus_worker import MODULE

    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run_once(skip: list[list[Any]]) -> tuple[str, str, int]:
        opts = {
            "dir": str(out),
            "threads": threads,
            "min_s": 0.3,
            "warmup_min_s": 0.1,
            "skip": skip,
        }
        p = subprocess.run([sys.executable, "-m", MODULE, json.dumps(opts)], capture_output=True,
                           text=True, env=env)  # fmt: skip
        return p.stdout, p.stderr, p.returncode

    return [r for r in measure_in_rounds(run_once, rounds) if "file" in r]


def measured(work: Path, threads: list[int], again: bool, rounds: int) -> list[dict[str, Any]]:
    """Export and measure once into WORK; later runs (a refitted profile) reuse both."""
    raw = work / "measurements.json"
    if not (work / "corpus.json").is_file():
        work.mkdir(parents=True, exist_ok=True)
        export(heldout_models(), work)
    if again or not raw.is_file():
        raw.write_text(json.dumps(measure(work, threads, rounds)))
    return json.loads(raw.read_text())


def old_estimate(ops: list[Any], precision: str) -> float:
    """The estimator edgecnn had before device profiles: MACs x a throughput calibrated on
    coral.ai's desktop-CPU MobileNetV2 figure (51 ms), float 2x slower, 0.5 us per op."""
    mnv2_macs, mnv2_ops, anchor_ms, op_us, fixed_ms = 301_292_992, 67, 51.0, 0.5, 0.003
    rate = mnv2_macs / ((anchor_ms - fixed_ms - mnv2_ops * op_us / 1000.0) / 1000.0)
    if precision != "int8":
        rate /= 2.0
    return fixed_ms + sum(op.macs / rate * 1000.0 + op_us / 1000.0 for op in ops)


def evaluate(out: Path, results: list[dict[str, Any]], profile: Any) -> list[dict[str, Any]]:
    from edgecnn.runtime.opgraph import tflite_ops

    rows = []
    for r in results:
        if "error" in r:
            rows.append({**r, "status": "failed"})
            continue
        ops = tflite_ops((out / r["file"]).read_bytes())
        model, key, note = profile.model_for("tflite", r["precision"], r["threads"])
        new, old = model.predict_ops(ops), old_estimate(ops, r["precision"])
        m = r["p50_ms"]
        rows.append({"net": r["file"].rsplit("_", 1)[0], "precision": r["precision"], "threads": r["threads"],
                     "measured_ms": m, "estimate_ms": new, "error": (new - m) / m, "old_ms": old,
                     "old_error": (old - m) / m, "macs": sum(o.macs for o in ops), "key": key})  # fmt: skip
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if "error" in r and isinstance(r["error"], float):
            groups.setdefault(f"{r['precision']}/t{r['threads']}", []).append(r)
            groups.setdefault("all", []).append(r)
    for key, rs in groups.items():
        new = np.abs([r["error"] for r in rs])
        old = np.abs([r["old_error"] for r in rs])
        out.append({"group": key, "n": len(rs), "within15": float((new <= 0.15).mean()),
                    "median_abs": float(np.median(new)), "old_within15": float((old <= 0.15).mean()),
                    "old_median_abs": float(np.median(old))})  # fmt: skip
    return out


def main() -> None:
    from edgecnn.bench.profiles import load_profile, profile_dir
    from edgecnn.quiet import quiet_tensorflow
    from edgecnn.tables import format_table

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--profile", type=Path, default=profile_dir() / "host.json")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--rounds", type=int, default=3, help="passes; each artifact keeps its fastest")
    ap.add_argument("--work", type=Path, help="keep the held-out models and measurements here")
    ap.add_argument(
        "--remeasure", action="store_true", help="measure again even if --work has them"
    )
    a = ap.parse_args()
    if in_corpus():
        raise SystemExit(f"held-out networks that are in the corpus: {sorted(in_corpus())}")
    profile = load_profile(a.profile)
    quiet_tensorflow()
    threads = [int(t) for t in a.threads.split(",")]
    with tempfile.TemporaryDirectory(prefix="edgecnn-heldout-") as tmp:
        work = a.work or Path(tmp)
        rows = evaluate(work, measured(work, threads, a.remeasure, a.rounds), profile)
    table = [
        {k: (f"{v:+.0%}" if k in ("error", "old_error") else v) for k, v in r.items() if k != "key"}
        for r in rows
    ]
    print(
        format_table(
            table,
            [
                "net",
                "precision",
                "threads",
                "measured_ms",
                "estimate_ms",
                "error",
                "old_ms",
                "old_error",
            ],
        )
    )
    print()
    print(format_table(summary(rows)))
    if a.json:
        a.json.write_text(
            json.dumps(
                {"rows": rows, "summary": summary(rows), "profile": str(a.profile)}, indent=1
            )
        )


if __name__ == "__main__":
    main()
