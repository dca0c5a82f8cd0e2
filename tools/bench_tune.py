"""`edgecnn tune` against random search, on Fashion-MNIST with this machine as the device.

The latency budget is a third of the unpruned MobileNetV2-0.35-96 int8 latency measured
here (an untrained model: latency does not depend on the weights). Each sampler runs
the same number of trials on the same space with the same seed; an unconstrained run
(TPE, no latency limit) gives the accuracy of the best model the space holds at that
trial count. Reported for each: the best feasible validation accuracy, its test-split
accuracy (parity, on OUT/best), trials until the first feasible build, and wall time.

    python tools/bench_tune.py --trials 24 --out runs/bench_tune
    python tools/bench_tune.py --samplers tpe,random --trials 12 --limit-train 6000
    python tools/bench_tune.py --samplers tpe,random --trials 10 --limit-train 4000 --sizes 28,32,48 --epochs 2,4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

SPACE = {
    "archs": ["cnn_small", "cnn_mnist", "mobilenet_v2", "mobilenet"],
    "alphas": [0.35, 0.5, 0.75, 1.0],
    "sizes": [28, 32, 48, 64, 96],
    "prune": [0.0, 0.25, 0.5, 0.75],
    "precisions": ["int8", "float16", "int8-mixed"],
    "epochs": [2, 4, 8],
}


def reference_latency_ms(work: Path) -> float:
    """MobileNetV2-0.35-96 int8, unpruned, untrained, on this machine (the bench worker)."""
    from edgecnn.bench.api import BenchOptions, bench_build
    from edgecnn.build import BuildConfig, convert_model
    from edgecnn.data import load_dataset
    from edgecnn.zoo import build_model

    data = load_dataset("fashion_mnist", limit_train=1000)
    model = build_model("mobilenet_v2", (96, 96, 3), 10, weights="none", alpha=0.35)
    out = work / "reference"
    convert_model(model, data.adapted((96, 96, 3)), out,
                  BuildConfig(precisions=["int8"], formats=["tflite"], eval_samples=32, calib_samples=50))  # fmt: skip
    row = bench_build(out, BenchOptions(device="host", runs=200, min_s=2.0))[0]
    return float(row["p50_ms"])


def space_of(args: argparse.Namespace) -> dict[str, Any]:
    """SPACE, with --sizes / --epochs narrowing it for a quicker run."""
    space = dict(SPACE)
    if args.sizes:
        space["sizes"] = [int(v) for v in args.sizes.split(",")]
    if args.epochs:
        space["epochs"] = [int(v) for v in args.epochs.split(",")]
    return space


def run_search(
    name: str, sampler: str, budget_ms: float | None, args: argparse.Namespace
) -> dict[str, Any]:
    from edgecnn.tune import Budget, SearchSpace, TuneOptions, tune

    o = TuneOptions(
        data="fashion_mnist", out=Path(args.out) / name, device="host", budget=Budget(max_latency_ms=budget_ms),
        space=SearchSpace.from_dict(space_of(args)), trials=args.trials, sampler=sampler, seed=args.seed,
        limit_train=args.limit_train, resume=True,
    )  # fmt: skip
    t0 = time.perf_counter()
    summary = tune(o, lambda m: print(f"[{name}] {m}", flush=True))
    wall = time.perf_counter() - t0
    return _result(name, sampler, summary, wall)


def _result(name: str, sampler: str, summary: dict[str, Any], wall: float) -> dict[str, Any]:
    rows = summary["trials"]
    feasible = [r for r in rows if r["feasible"] and r["accuracy"] is not None]
    first = min((r["trial"] for r in feasible), default=None)
    best = summary["best"]
    built = summary.get("best_build") or {}
    return {
        "search": name, "sampler": sampler, "trials": len(rows), "wall_s": round(wall, 1),
        "trials_to_first_feasible": None if first is None else first + 1,
        "feasible_trials": len(feasible), "rejected_before_training": sum("rejected" in (r["note"] or "") for r in rows),
        "stopped_by_pruner": sum("pruner" in (r["note"] or "") for r in rows),
        "best": None if best is None else {k: best[k] for k in ("trial", "model", "accuracy", "latency_ms", "size_kb")},
        "best_test_accuracy": built.get("test_accuracy"), "parity_passed": built.get("parity_passed"),
        "max_accuracy_any": max((r["accuracy"] for r in rows if r["accuracy"] is not None), default=None),
    }  # fmt: skip


def markdown(results: list[dict[str, Any]], budget: float, ref: float) -> str:
    lines = [f"Budget: {budget:.4f} ms (a third of MobileNetV2-0.35-96 int8: {ref:.4f} ms on this host)", "",
             "| search | trials | best feasible (val) | test | model | latency ms | first feasible | rejected early | wall |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        b = r["best"] or {}
        acc = f"{b['accuracy']:.2%}" if b else "-"
        test = f"{r['best_test_accuracy']:.2%}" if r["best_test_accuracy"] is not None else "-"
        lat = f"{b['latency_ms']:.4f}" if b else "-"
        lines.append(f"| {r['search']} | {r['trials']} | {acc} | {test} | {b.get('model', '-')} | {lat} | "
                     f"{r['trials_to_first_feasible']} | {r['rejected_before_training']} | {r['wall_s'] / 60:.0f} min |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit-train", type=int, default=12000)
    ap.add_argument("--samplers", default="tpe,nsga2,random")
    ap.add_argument("--no-unconstrained", action="store_true")
    ap.add_argument("--out", default="runs/bench_tune")
    ap.add_argument("--sizes", help="input sizes to search (default: all of SPACE's)")
    ap.add_argument("--epochs", help="training lengths to search (default: SPACE's)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ref = reference_latency_ms(out)
    budget = ref / 3
    print(f"reference {ref:.4f} ms, budget {budget:.4f} ms", flush=True)
    results = [run_search(s, s, budget, args) for s in args.samplers.split(",")]
    if not args.no_unconstrained:
        results.append(run_search("unconstrained", "tpe", None, args))
    report = {"reference_ms": ref, "budget_ms": budget, "trials": args.trials, "seed": args.seed,
              "limit_train": args.limit_train, "space": space_of(args), "results": results}  # fmt: skip
    (out / "bench_tune.json").write_text(json.dumps(report, indent=2))
    text = markdown(results, budget, ref)
    (out / "bench_tune.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
