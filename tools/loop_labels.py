"""How many labels does the closed loop need? Accuracy after one loop, against labels given.

The same setting as tests/test_loop.py (the same code: tests/loop_fixtures.py): cnn_small
trained on scikit-learn digits, a camera video of 600 MNIST-5k digits served with
`--capture-below 0.9 --capture-every 10`, the captures labelled with their true classes in
the order a person meets them (oldest first), `edgecnn retrain` on the first N, and the
daemon's accuracy (`--sync --log-file`) on 500 other MNIST-5k digits, for several N.

    python tools/loop_labels.py                       # N = 25, 50, 100, 200, all
    python tools/loop_labels.py --labels 40,80 --seeds 0,1 --json loop_labels.json

Timings on a shared machine are noisy; the accuracies are not (seeded).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout's edgecnn, and the tests' helpers


class _Factory:
    """The slice of pytest's tmp_path_factory that tests/loop_fixtures.py uses."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def getbasetemp(self) -> Path:
        return self.base


def captures(work: Path, build: Path, videos: dict[str, Any]) -> list[tuple[Path, str]]:
    """(capture image, true class), oldest first, made by the real daemon."""
    from loop_fixtures import serve_once, sidecars

    caps = work / "captures"
    r = serve_once("--model", str(build), "--source", str(videos["camera"]), "--capture-dir",
                   str(caps), "--capture-below", "0.9", "--capture-every", "10",
                   "--capture-rate", "1000", "--capture-seed", "0")  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(r.stderr[-2000:])
    side = sidecars(caps)
    order = sorted(side, key=lambda s: (side[s]["time"], s))
    return [(caps / f"{s}.jpg", str(videos["camera_y"][side[s]["pos"]])) for s in order]


def one_point(work: Path, build: Path, videos: dict[str, Any], caps: list[tuple[Path, str]],
              n: int, seed: int) -> dict[str, Any]:  # fmt: skip
    from loop_fixtures import log_accuracy, serve_once

    from edgecnn.errors import EdgeCNNError
    from edgecnn.retrain import RetrainOptions, plan, retrain

    folder = work / f"labelled-{n}-{seed}"
    for path, cls in caps[:n]:
        (folder / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / cls / path.name)
    out = work / f"build-{n}-{seed}"
    try:
        report = retrain(plan(build, out, RetrainOptions(add=[f"folder:{folder}"], seed=seed)))
    except EdgeCNNError as e:
        return {"labels": n, "seed": seed, "error": str(e)}
    log = work / f"eval-{n}-{seed}.jsonl"
    r = serve_once("--model", str(out), "--source", str(videos["eval"]), "--log-file", str(log))
    if r.returncode != 0:
        raise SystemExit(r.stderr[-2000:])
    g = report["gate"]
    return {"labels": n, "seed": seed, "accuracy": log_accuracy(log, videos["eval_y"]),
            "gate": g["passed"], "holdout": g["holdout"]["n"], "holdout_old": g["holdout"]["old"],
            "holdout_new": g["holdout"]["new"], "p_value": g["holdout"]["p_value"],
            "old_test_new": g["old_test"]["new"]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--labels", default="25,50,100,200,0", help="N to try (0: every capture)")
    ap.add_argument("--seeds", default="0", help="retrain seeds (the split and the fit)")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    from loop_fixtures import first_model, log_accuracy, mnist_videos, serve_once

    from edgecnn.quiet import quiet_tensorflow

    quiet_tensorflow()
    work = Path(tempfile.mkdtemp(prefix="edgecnn-loop-labels-"))
    try:
        factory = _Factory(work)
        _, build = first_model(factory)
        videos = mnist_videos(factory)
        log = work / "before.jsonl"
        serve_once("--model", str(build), "--source", str(videos["eval"]), "--log-file", str(log))
        before = log_accuracy(log, videos["eval_y"])
        caps = captures(work, build, videos)
        rows = [{"labels": 0, "seed": None, "accuracy": before, "gate": None}]
        for n in (int(v) for v in args.labels.split(",")):
            for seed in (int(v) for v in args.seeds.split(",")):
                rows.append(one_point(work, build, videos, caps, n or len(caps), seed))
                print(json.dumps(rows[-1]), flush=True)
        print(
            f"\n{len(caps)} captures; accuracy on 500 other MNIST-5k digits, before: {before:.1%}"
        )
        print("labels  seed  accuracy  gate  held-out old -> new (n, p)")
        for r in rows[1:]:
            if "error" in r:
                print(f"{r['labels']:>6}  {r['seed']:>4}  {r['error']}")
                continue
            print(
                f"{r['labels']:>6}  {r['seed']:>4}  {r['accuracy']:>8.1%}  {'pass' if r['gate'] else 'FAIL':>4}"
                f"  {r['holdout_old']:.1%} -> {r['holdout_new']:.1%} ({r['holdout']}, {r['p_value']:.2g})"
            )
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
