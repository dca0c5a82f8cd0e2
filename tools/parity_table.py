#!/usr/bin/env python
"""Float vs int8 accuracy of the reference recipes, as a Markdown table for the README.

Trains each recipe (or reuses WORKDIR/<recipe>/train), converts it by its [convert]
section, runs `edgecnn parity` on the full test split and prints one row per recipe.

    python tools/parity_table.py                      # fashion_mnist_cnn + mnist5k_cnn
    python tools/parity_table.py --workdir runs/parity-table --recipes models/mnist5k_cnn.toml
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RECIPES = ["models/fashion_mnist_cnn.toml", "models/mnist5k_cnn.toml"]


def ensure_build(recipe_path: str | Path, workdir: Path, retrain: bool = False) -> tuple[Any, Path]:
    """(recipe, build dir): train and convert unless a complete build is already there."""
    from edgecnn.build import convert_from_recipe
    from edgecnn.recipe import load_recipe
    from edgecnn.train import TrainConfig, train

    recipe = load_recipe(REPO / recipe_path if not Path(recipe_path).is_absolute() else recipe_path)
    root = workdir / recipe.name
    train_dir, build_dir = root / "train", root / "build"
    if retrain or not (train_dir / "model.keras").exists():
        cfg = TrainConfig.from_recipe(recipe)
        cfg.verbose = 0
        t0 = time.perf_counter()
        s = train(cfg, train_dir)
        print(f"# {recipe.name}: trained in {time.perf_counter() - t0:.0f} s, "
              f"test {s['test_accuracy']:.2%}", file=sys.stderr)  # fmt: skip
    if retrain or not (build_dir / "manifest.json").exists():
        convert_from_recipe(recipe, train_dir, build_dir)
    return recipe, build_dir


def row_for(recipe: Any, build: Path) -> dict[str, Any]:
    from edgecnn.parity import run_parity

    p = recipe["parity"]
    rep = run_parity(build, recipe["data"]["name"], split=p["split"], max_drop=p["max_drop"],
                     min_agreement=p["min_agreement"])  # fmt: skip
    by = {r["artifact"]: r for r in rep["artifacts"]}
    return {"recipe": recipe.name, "data": rep["data"], "samples": rep["samples"],
            "float": rep["reference"]["top1"], "tflite": by.get("model_int8.tflite"),
            "onnx": by.get("model_int8.onnx"), "passed": rep["passed"]}  # fmt: skip


def markdown(rows: list[dict[str, Any]]) -> str:
    def cell(r: dict[str, Any] | None) -> str:
        if not r:
            return "-"
        # The CLI's sign convention (edgecnn.parity.DROP_NOTE): + is points lost.
        return f"{r['top1']:.2%} (drop {r['drop'] + 0.0:+.2f} pts, {r['agreement']:.2%} agree)"

    out = [
        "| recipe | data (test images) | float Keras top-1 | int8 TFLite top-1 (drop: pts lost) "
        "| int8 ONNX top-1 (drop: pts lost) | parity |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['recipe']} | {r['data']} ({r['samples']:,}) | {r['float']:.2%} | "
            f"{cell(r['tflite'])} | {cell(r['onnx'])} | {'pass' if r['passed'] else 'FAIL'} |"
        )
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--recipes", nargs="+", default=DEFAULT_RECIPES)
    ap.add_argument("--workdir", type=Path, default=REPO / "runs" / "parity-table")
    ap.add_argument(
        "--retrain", action="store_true", help="Train and convert even if a build exists."
    )
    ap.add_argument("--json", action="store_true", help="Print the rows as JSON instead.")
    args = ap.parse_args()

    from edgecnn.quiet import quiet_tensorflow

    quiet_tensorflow()
    rows = [row_for(*ensure_build(r, args.workdir, args.retrain)) for r in args.recipes]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(markdown(rows))
        print(f"\nReproduce: python tools/parity_table.py --recipes {' '.join(args.recipes)}")
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
