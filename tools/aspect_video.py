"""What a 4:3 camera costs a square model, per resize mode: served video accuracy.

    python tools/aspect_video.py BUILD --data mnist5k            # 300 test digits
    python tools/aspect_video.py runs/m5k/build --data mnist5k --count 500 --json

Writes two videos of the same real test images with tools/demo_inputs.py, centred on a
black 4:3 frame and on a square one, and serves each with `edgecnn serve --sync --no-pace
--exit-on-end --log-file` once per resize mode (`--resize stretch|crop|letterbox`). Every
frame is classified (--sync); the accuracy is the share of frames whose label is the
image's. For reference, the same images through the runtime at the model's own size.
Needs OpenCV (`edgecnn[video]`). Accuracies, not timings: safe on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from demo_inputs import make_demo  # noqa: E402

from edgecnn.manifest import RESIZE_MODES  # noqa: E402


def served_accuracy(build: Path, video: Path, rows: list[dict], resize: str, log: Path) -> float:
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn.cli", "serve", "--model", str(build), "--source",
         str(video), "--sync", "--no-pace", "--exit-on-end", "--port", "0", "--resize", resize,
         "--log-file", str(log)],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"serve failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    truth = {f: r["label"] for r in rows for f in range(r["first_frame"], r["last_frame"] + 1)}
    preds = [json.loads(line) for line in log.read_text().splitlines()]
    preds = [p for p in preds if "event" not in p]
    return float(np.mean([p["top_k"][0]["label"] == truth[p["pos"]] for p in preds]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", type=Path)
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--count", default=300, type=int)
    ap.add_argument("--size", default=240, type=int, help="frame height")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from edgecnn.data import load_dataset
    from edgecnn.runtime import Runner

    runner = Runner(args.build)
    ds = load_dataset(args.data, **runner.manifest.split_args(args.data))
    x = ds.adapted(tuple(runner.input_spec.shape)).x_test[: args.count]
    y = ds.y_test[: args.count]
    own = float((runner.predict_batch(x).argmax(1) == y).mean())
    results = {"images": int(len(y)), "model_size_images": own, "videos": {}}
    with tempfile.TemporaryDirectory(prefix="edgecnn-aspect-") as tmp:
        for aspect, name in ((4 / 3, "4:3"), (1.0, "1:1")):
            out = Path(tmp) / name.replace(":", "x")
            rows = make_demo(args.data, out, args.count, args.size, aspect, 3, 30.0)
            results["videos"][name] = {
                mode: served_accuracy(
                    args.build, out / "video.mp4", rows, mode, out / f"{mode}.jsonl"
                )
                for mode in RESIZE_MODES
            }
            print(json.dumps({name: results["videos"][name]}), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{results['images']} {args.data} test images; at the model's size: {own:.1%}")
    print("| video | " + " | ".join(f"`--resize {m}`" for m in RESIZE_MODES) + " |")
    print("|---" * (len(RESIZE_MODES) + 1) + "|")
    for name, accs in results["videos"].items():
        print(f"| {name} | " + " | ".join(f"{accs[m]:.1%}" for m in RESIZE_MODES) + " |")


if __name__ == "__main__":
    main()
