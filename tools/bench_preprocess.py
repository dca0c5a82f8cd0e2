"""Preprocessing a camera frame against the network it feeds.

Times, on one thread, ways of fitting a 640x480 RGB frame to a 96x96 model input
(Pillow's antialiased bilinear, OpenCV INTER_AREA, OpenCV bilinear, and the runtime's
`resize_frame`), the runtime's whole `fit_image` + quantization, and the int8 invoke of
MobileNetV2-0.35-96 (random weights: latency does not depend on them). The goal of
issue 14: preprocessing at most 0.5x that invoke. Also reports how far each resize is
from Pillow's (the resize training images get), in mean absolute pixel difference.

    python tools/bench_preprocess.py [--frame 640x480] [--size 96]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def photo_frame(w: int, h: int) -> np.ndarray:
    """A real photo (scikit-image's astronaut) at the camera's size."""
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((w, h), Image.BILINEAR))


def mobilenet_invoke_ms(size: int) -> float:
    from edgecnn.export.tflite import to_tflite
    from edgecnn.quiet import captured_output, quiet_tensorflow
    from edgecnn.runtime.backends import TFLiteBackend
    from edgecnn.runtime.timing import TimingPlan, time_calls
    from edgecnn.zoo import build_model

    quiet_tensorflow()
    model = build_model("mobilenet_v2", (size, size, 3), 10, weights="none", alpha=0.35)
    calib = np.random.default_rng(0).uniform(0, 255, (8, size, size, 3)).astype(np.float32)
    with captured_output():
        data = to_tflite(model, "int8", calib=calib)
    b = TFLiteBackend(data, threads=1)
    x = np.zeros((1, size, size, 3), np.int8)
    return time_calls(
        lambda: b.run(x), TimingPlan(warmup=20, warmup_min_s=0.5, runs=200, min_s=2.0)
    ).p50_ms


def main() -> None:
    import cv2
    from PIL import Image

    from edgecnn.runtime.preprocess import InputQuantizer, fit_image
    from edgecnn.runtime.resize import resize_frame
    from edgecnn.runtime.timing import TimingPlan, time_calls

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--frame", default="640x480")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    w, h = (int(v) for v in a.frame.split("x"))
    s = a.size
    cv2.setNumThreads(1)
    frame = photo_frame(w, h)
    pillow = np.asarray(Image.fromarray(frame).resize((s, s), Image.BILINEAR))
    quant = InputQuantizer(np.dtype(np.int8), 1.0, -128, [0.0, 255.0])
    plan = TimingPlan(warmup=20, warmup_min_s=0.3, runs=300, min_s=1.0)
    ways = {
        "Pillow bilinear (antialiased)": lambda: np.asarray(
            Image.fromarray(frame).resize((s, s), Image.BILINEAR)
        ),
        "OpenCV INTER_AREA": lambda: cv2.resize(frame, (s, s), interpolation=cv2.INTER_AREA),
        "OpenCV INTER_LINEAR (aliases)": lambda: cv2.resize(
            frame, (s, s), interpolation=cv2.INTER_LINEAR
        ),
        "edgecnn resize_frame": lambda: resize_frame(frame, (s, s)),
        "edgecnn fit_image + quantize": lambda: quant(
            fit_image(frame, (s, s, 3), "RGB", "stretch")[None]
        ),
    }
    rows = []
    for name, fn in ways.items():
        out = np.asarray(fn())
        diff = (
            float(np.abs(out.reshape(s, s, -1).astype(np.int16) - pillow.astype(np.int16)).mean())
            if out.dtype == np.uint8
            else None
        )
        rows.append(
            {"step": name, "p50_ms": time_calls(fn, plan).p50_ms, "mean_abs_diff_vs_pillow": diff}
        )
    invoke = mobilenet_invoke_ms(s)
    for r in rows:
        r["x_invoke"] = r["p50_ms"] / invoke
        print(f"{r['step']:32s} {r['p50_ms']:7.3f} ms  {r['x_invoke']:5.2f}x invoke  "
              f"diff vs Pillow {r['mean_abs_diff_vs_pillow'] if r['mean_abs_diff_vs_pillow'] is not None else '-'}")  # fmt: skip
    print(f"MobileNetV2-0.35-{s} int8 invoke (1 thread): {invoke:.3f} ms")
    if a.json:
        a.json.write_text(
            json.dumps({"frame": [w, h], "size": s, "invoke_ms": invoke, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
