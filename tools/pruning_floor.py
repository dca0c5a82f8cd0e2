"""How fast can channel pruning make a network at all? The floor, measured.

Builds each network (untrained: latency depends on the shapes, not on the weights),
prunes every channel group down to the rounding multiple (8 channels by default, the
thinnest net `--prune-filters` can make), converts unpruned, 50 %-pruned and floor models
to int8 TFLite and times each on one thread (warm-up, then at least 1 s of runs, p50).

The floor's speed-up is an upper bound on what any channel-pruning ratio can give on this
machine at this input size, whatever the fine-tuning: if it is below a goal, the goal is
out of reach by channel pruning and needs a smaller input (edgecnn tune) or another
network. The block table shows where the floor's time stays (by truncation, as
tools/latency_by_block.py does).

    python tools/pruning_floor.py                       # MobileNetV2-0.35-96, EfficientNet-Lite0-96, cnn_mnist
    python tools/pruning_floor.py --cases mobilenet_v2 --blocks
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

CASES: dict[str, dict[str, Any]] = {
    "mobilenet_v2": {"arch": "mobilenet_v2", "shape": (96, 96, 3), "options": {"alpha": 0.35, "weights": "none"}},
    "effl0": {"arch": "efficientnet_lite0", "shape": (96, 96, 3), "options": {"weights": "none"}},
    "cnn_mnist": {"arch": "cnn_mnist", "shape": (28, 28, 1), "options": {}},
}  # fmt: skip


def flat_model(case: dict[str, Any]) -> Any:
    """The case's network with any nested backbone inlined (what the pruner returns too)."""
    from edgecnn.optimize.structured import prune_structured
    from edgecnn.zoo import build_model

    model = build_model(case["arch"], case["shape"], 10, **case["options"])
    return prune_structured(model, 0.0)[0]


def measure(model: Any) -> tuple[float, int]:
    """(int8 p50 ms on one thread, MACs) of the whole model."""
    from latency_by_block import prefix_ms

    return prefix_ms(model, model.layers[-1].name, "int8")


def run_case(name: str, multiple: int, with_blocks: bool) -> tuple[list[dict[str, Any]], str]:
    """The case's rows, and the floor's block table when asked for."""
    from edgecnn.optimize.structured import prune_structured

    base = flat_model(CASES[name])
    rows, blocks = [], ""
    for label, ratio in (("unpruned", 0.0), ("50%", 0.5), (f"floor ({multiple} ch)", 0.999)):
        model = base if ratio == 0 else prune_structured(base, ratio, multiple=multiple)[0]
        ms, macs = measure(model)
        rows.append({"case": name, "model": label, "params": model.count_params(),
                     "MMACs": round(macs / 1e6, 3), "int8_ms": round(ms, 4)})  # fmt: skip
        if with_blocks and ratio > 0.9:
            blocks = block_table(base, model)
    for r in rows:
        r["speedup"] = round(rows[0]["int8_ms"] / r["int8_ms"], 2)
        r["macs_ratio"] = round(r["MMACs"] / rows[0]["MMACs"], 3)
    return rows, blocks


def block_table(base: Any, floor: Any) -> str:
    """Per-block int8 time of the unpruned and the floor model, side by side."""
    from latency_by_block import cut_points, prefix_ms

    from edgecnn.tables import format_table

    table, prev = [], [(0.0, 0), (0.0, 0)]
    for layer in cut_points(base):
        row: dict[str, Any] = {"block": layer}
        for i, m in enumerate((base, floor)):
            ms, macs = prefix_ms(m, layer, "int8")
            row[f"ms_{'base' if i == 0 else 'floor'}"] = round(ms - prev[i][0], 4)
            row[f"MMACs_{'base' if i == 0 else 'floor'}"] = round((macs - prev[i][1]) / 1e6, 3)
            prev[i] = (ms, macs)
        table.append(row)
    return format_table(table, list(table[0]))


def main() -> None:
    from edgecnn.quiet import captured_output, quiet_tensorflow
    from edgecnn.tables import format_table

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--multiple", type=int, default=8, help="channel rounding multiple")
    ap.add_argument("--blocks", action="store_true", help="per-block times of the floor")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    cases = a.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    quiet_tensorflow()
    rows: list[dict[str, Any]] = []
    for name in cases:
        with captured_output():
            mine, blocks = run_case(name, a.multiple, a.blocks)
        rows += mine
        print(format_table(mine, list(mine[0])), flush=True)
        if blocks:
            print(blocks, flush=True)
    print("int8 TFLite, 1 thread, p50 of >= 1 s of runs; speedup against the unpruned model")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
