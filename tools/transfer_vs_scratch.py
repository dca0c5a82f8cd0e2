#!/usr/bin/env python3
"""Transfer learning vs training from scratch: EfficientNet-Lite0 on a small real dataset.

Why: issue 7 claims the offline ImageNet weights are worth having. This
trains the same architecture on the same data, seed and epoch budget twice
through edgecnn's real training path (`edgecnn.train.train`), once from the
pretrained base (`weights="imagenet"`: frozen base, new head) and once from
`weights="none"` (whole net from scratch), and prints test accuracy and
seconds per epoch for both. Variant `finetune` spends the same epoch budget
as half head training, half fine-tuning the backbone's top layers. Every run is its own process, so TensorFlow's
thread pools and graph caches of one run don't colour the next one's timing.

    python tools/transfer_vs_scratch.py          # mnist5k, 200 train images, 64 px, batch 8, 5/10/20 epochs, 3 seeds
    python tools/transfer_vs_scratch.py --epochs 5 --seeds 0 --json
    python tools/transfer_vs_scratch.py --data lfw_subset --limit-train 0 --batch-size 32

The defaults are tests/test_efficientnet_transfer.py's setting. On tiny data
count steps, not only epochs: from scratch, BatchNorm's moving statistics
need ~65 steps (momentum 0.9) before the net predicts better than chance in
inference mode, so batch size decides how many epochs that takes.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ARCH = "efficientnet_lite0"
VARIANTS = ("imagenet", "none", "finetune")
LABELS = {
    "imagenet": "imagenet (frozen base)",
    "none": "none (scratch)",
    "finetune": "imagenet + fine-tune",
}


def run_one(args: argparse.Namespace, variant: str, epochs: int, seed: int) -> dict[str, Any]:
    """One training run in this process; returns the figures the table needs."""
    from edgecnn.train import TrainConfig, train

    weights = "none" if variant == "none" else "imagenet"
    ft_epochs = epochs - epochs // 2 if variant == "finetune" else 0
    cfg = TrainConfig(
        arch=ARCH,
        data=args.data,
        input_size=args.input_size,
        epochs=epochs - ft_epochs,
        fine_tune_layers=args.fine_tune_layers if ft_epochs else 0,
        fine_tune_epochs=ft_epochs,
        fine_tune_learning_rate=args.fine_tune_lr,
        limit_train=args.limit_train or None,
        weights=weights,
        seed=seed,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        dropout=args.dropout,
        early_stopping=0,  # same epoch budget for both: no early exit
        verbose=0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = train(cfg, Path(tmp) / "run")
        wall = time.perf_counter() - t0
        with open(Path(tmp) / "run" / "history.csv") as f:
            history = list(csv.DictReader(f))
    secs = [float(r["seconds"]) for r in history]
    vals = [float(r["val_accuracy"]) for r in history]
    steady = secs[1:] or secs  # the first epoch also traces the graph
    return {
        "variant": variant,
        "epochs": epochs,
        "seed": seed,
        "test_accuracy": summary["test_accuracy"],
        "best_val_accuracy": summary["best_val_accuracy"],
        "first_epoch_s": secs[0],
        "s_per_epoch": statistics.median(steady),
        "wall_s": wall,
        "val_curve": vals,
        "params": summary["params"],
    }


def run_child(args: argparse.Namespace, variant: str, epochs: int, seed: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", variant, str(epochs), str(seed)]
    cmd += ["--data", args.data, "--input-size", str(args.input_size)]
    cmd += ["--batch-size", str(args.batch_size), "--lr", str(args.lr)]
    cmd += ["--dropout", str(args.dropout), "--limit-train", str(args.limit_train)]
    cmd += [
        "--fine-tune-layers",
        str(args.fine_tune_layers),
        "--fine-tune-lr",
        str(args.fine_tune_lr),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"run {variant}/{epochs}/{seed} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(results: list[dict[str, Any]]) -> str:
    cols = [
        "epochs",
        "variant",
        "seeds",
        "test acc (mean ± sd)",
        "min..max",
        "s/epoch",
        "1st epoch s",
        "wall s",
    ]
    rows = []
    for epochs in sorted({r["epochs"] for r in results}):
        accs: dict[str, list[float]] = {}
        for w in VARIANTS:
            rs = [r for r in results if r["epochs"] == epochs and r["variant"] == w]
            if not rs:
                continue
            acc = [r["test_accuracy"] for r in rs]
            accs[w] = acc
            rows.append(
                [
                    str(epochs),
                    LABELS[w],
                    str(len(rs)),
                    _mean_sd(acc),
                    f"{min(acc):.3f}..{max(acc):.3f}",
                    f"{statistics.median(r['s_per_epoch'] for r in rs):.2f}",
                    f"{statistics.median(r['first_epoch_s'] for r in rs):.1f}",
                    f"{statistics.median(r['wall_s'] for r in rs):.1f}",
                ]
            )
        for w in ("imagenet", "finetune"):
            if w not in accs or "none" not in accs:
                continue
            gaps = [a - b for a, b in zip(accs[w], accs["none"], strict=True)]
            rows.append(
                [str(epochs), f"gap ({w} - scratch)", str(len(gaps)), _mean_sd(gaps)]
                + [f"{min(gaps):+.3f}..{max(gaps):+.3f}", "", "", ""]
            )
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="mnist5k")
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--epochs", default="5,10,20", help="comma-separated epoch budgets")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--limit-train", type=int, default=200, help="0: the whole training split")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument(
        "--variants", default="imagenet,none", help="comma-separated: imagenet, none, finetune"
    )
    p.add_argument("--fine-tune-layers", type=int, default=60, help="finetune: top backbone layers")
    p.add_argument("--fine-tune-lr", type=float, default=1e-4)
    p.add_argument("--json", action="store_true", help="print every run as JSON")
    p.add_argument(
        "--child", nargs=3, metavar=("VARIANT", "EPOCHS", "SEED"), help=argparse.SUPPRESS
    )
    args = p.parse_args()
    if args.child:
        w, e, s = args.child
        print(json.dumps(run_one(args, w, int(e), int(s))))
        return
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    budgets = [int(v) for v in args.epochs.split(",")]
    if "finetune" in variants and min(budgets) < 2:
        p.error("variant finetune needs at least 2 epochs (half head training, half fine-tuning)")
    results = []
    for epochs in budgets:
        for seed in (int(v) for v in args.seeds.split(",")):
            for w in variants:
                r = run_child(args, w, epochs, seed)
                results.append(r)
                print(
                    f"# {w:8s} epochs={epochs} seed={seed} test={r['test_accuracy']:.3f} "
                    f"s/epoch={r['s_per_epoch']:.2f} val={[round(v, 2) for v in r['val_curve']]}",
                    file=sys.stderr,
                    flush=True,
                )
    if args.json:
        print(json.dumps(results, indent=1))
        return
    size = f"{args.input_size}x{args.input_size}"
    limit = f", limit_train={args.limit_train}" if args.limit_train else ""
    print(f"{ARCH} on {args.data} at {size}{limit}, batch {args.batch_size}, lr {args.lr}")
    print(table(results))


if __name__ == "__main__":
    main()
