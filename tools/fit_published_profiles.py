"""Make edgecnn/bench/data/published_inputs.json: what the shipped (published-figure) profiles
are fitted from.

1. The networks of edgecnn.bench.published.FIGURES are rebuilt (keras.applications with
   random weights: latency does not depend on them) and converted to float32 and int8
   TFLite; their operators are recorded (edgecnn.runtime.opgraph).
2. The reference kernel model (relative per-operator costs) is refitted, at the fixed SIMD
   tile the published profiles use, from a host calibration's raw measurements
   (`edgecnn bench --calibrate` writes them beside the profile).

Then it prints every device's fit and its leave-one-out error on its own figures.

    python tools/fit_published_profiles.py [--measurements ~/.config/edgecnn/profiles/host.measurements.json]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "edgecnn" / "bench" / "data" / "published_inputs.json"


def networks() -> dict[str, Any]:
    """name -> a builder of the published network (ImageNet shapes, 1000 classes)."""
    import keras
    from keras import applications as A

    def resnet50_299() -> Any:
        base = A.ResNet50(include_top=False, weights=None, input_shape=(299, 299, 3))
        x = keras.layers.GlobalAveragePooling2D()(base.output)
        return keras.Model(base.input, keras.layers.Dense(1000, activation="softmax")(x))

    return {
        "mobilenet_v1_224": lambda: A.MobileNet(weights=None, input_shape=(224, 224, 3)),
        "mobilenet_v2_224": lambda: A.MobileNetV2(weights=None, input_shape=(224, 224, 3)),
        "mobilenet_v3_large_224": lambda: A.MobileNetV3Large(
            weights=None, input_shape=(224, 224, 3)
        ),
        "mobilenet_v3_small_224": lambda: A.MobileNetV3Small(
            weights=None, input_shape=(224, 224, 3)
        ),
        "vgg16_224": lambda: A.VGG16(weights=None, input_shape=(224, 224, 3)),
        "densenet121_224": lambda: A.DenseNet121(weights=None, input_shape=(224, 224, 3)),
        "resnet50_299": resnet50_299,
    }


def network_ops(name: str, build: Any) -> dict[str, dict[str, Any]]:
    from dataclasses import astuple

    from edgecnn.export.tflite import to_tflite
    from edgecnn.runtime.opgraph import tflite_ops

    model = build()
    shape = tuple(int(v) for v in model.inputs[0].shape[1:])
    calib = np.random.default_rng(0).uniform(0, 255, size=(4, *shape)).astype(np.float32)
    out = {}
    for precision in ("float32", "int8"):
        ops = tflite_ops(to_tflite(model, precision, calib=calib))
        vec: dict[str, Any] = {"ops": [list(astuple(op)) for op in ops]}
        vec["total_macs"] = float(sum(op.macs for op in ops))
        vec["weight_bytes"] = float(sum(op.weight_elems for op in ops))  # int8: a byte each
        out[f"{name}/{precision}"] = vec
    return out


def reference(measurements: Path) -> dict[str, dict[str, float]]:
    from edgecnn.bench.calibrate import samples_of
    from edgecnn.bench.latency_model import fit
    from edgecnn.bench.published import TILE

    rows = json.loads(measurements.read_text())
    ref = {}
    for precision in ("float32", "int8"):
        mine = [
            r
            for r in rows
            if r["format"] == "tflite"
            and r["precision"] == precision
            and r["threads"] == 1
            and "error" not in r
        ]
        model = fit(samples_of(mine), tiles=(TILE,))
        ref[precision] = model.to_dict()
        print(
            f"reference tflite/{precision}/t1 at tile {TILE}: {len(mine)} corpus models, cv {model.cv}"
        )
    return ref


def readable_json(data: dict[str, Any]) -> str:
    """Indented JSON with each innermost list (an operator) on one line, so a refit's diff
    shows which operators changed."""
    text = json.dumps(data, indent=1, sort_keys=True)
    flat = re.sub(
        r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text
    )
    return flat + "\n"


def main() -> None:
    from edgecnn.bench.profiles import profile_dir
    from edgecnn.fsutil import atomic_write_text
    from edgecnn.quiet import captured_output, quiet_tensorflow

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--measurements", type=Path, default=profile_dir() / "host.measurements.json")
    a = ap.parse_args()
    quiet_tensorflow()
    nets: dict[str, Any] = {}
    with tempfile.TemporaryDirectory():
        for name, build in networks().items():
            with captured_output():
                feats = network_ops(name, build)
            nets.update(feats)
            for key, v in feats.items():
                print(
                    f"  {key}: {v['total_macs'] / 1e6:.1f} MMACs, {v['weight_bytes'] / 1e6:.1f} MB weights"
                )
    data = {
        "generated_by": "tools/fit_published_profiles.py",
        "reference": reference(a.measurements),
        "networks": nets,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(OUT, readable_json(data))
    report()


def report() -> None:
    from edgecnn.bench import published

    published._inputs.cache_clear()
    published.published_profile.cache_clear()
    for device in [*published.FIGURES, "pi5"]:
        prof = published.published_profile(device)
        for key in prof.models:
            print(f"{device:18s} {key:22s} {prof.error_text(key)}")


if __name__ == "__main__":
    main()
