"""How much margin does each numerics-dependent test really have?

Rebuilds the suite's shared models (tests/builds.py, the same code the session fixtures
run) under several training seeds and under numerics that imitate other machines, and
prints, per test threshold, the value measured in every run and the smallest margin:

  default      this machine as it is
  onednn_off   TF_ENABLE_ONEDNN_OPTS=0: TensorFlow without oneDNN's fast paths
  avx2         ONEDNN_MAX_CPU_ISA=AVX2: oneDNN limited to AVX2 kernels (an older x86)
  one_core     taskset -c 0: one core, so every thread pool (TF, LiteRT, ORT) has one thread

Each run is its own process (the environment must be set before TensorFlow loads).

    python tools/numerics_margins.py                       # everything: about an hour
    python tools/numerics_margins.py --checks parity_mobilenet --seeds 0,1,2 --envs default
    python tools/numerics_margins.py --json margins.json   # also write every run's figures
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

ENVS: dict[str, tuple[dict[str, str], list[str]]] = {
    "default": ({}, []),
    "onednn_off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, []),
    "avx2": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, []),
    "one_core": ({}, ["taskset", "-c", "0"]),
}
MARKER = "MARGINS_JSON "

Metric = dict[str, Any]


def metric(test: str, what: str, value: float, floor: float, images: int | None = None) -> Metric:
    """One threshold: `value` must be >= `floor` (margins below 0 fail the test)."""
    row: Metric = {"test": test, "metric": what, "value": value, "floor": floor}
    row["margin"] = value - floor
    if images:
        row["margin_images"] = round((value - floor) * images, 1)
    return row


# -- the checks (each builds its model from tests/builds.py and reads the test's figures) -----


def _parity_rows(build: Path, data: Any, test: str, floor: float = 0.98) -> list[Metric]:
    from test_parity_models import MIN_CONFIDENT_AGREEMENT

    from edgecnn.parity import evaluate

    rep = evaluate(build, data, diagnose=False)
    out = [metric(test, "float top-1", rep["reference"]["top1"], 0.5)]
    for r in rep["artifacts"]:
        name = Path(r["artifact"]).name
        out.append(metric(test, f"{name} agreement", r["agreement"], floor, rep["samples"]))
        out.append(metric(test, f"{name} confident agreement", r["confident_agreement"],
                          MIN_CONFIDENT_AGREEMENT, r["confident_samples"]))  # fmt: skip
        out.append(metric(test, f"{name} -drop (pts)", -r["drop"], -1.0))
    return out


def check_parity_mobilenet(seed: int, tmp: Path) -> list[Metric]:
    import builds

    model, ds = builds.mobilenet_model(seed=seed)
    out = builds.convert(model, ds, tmp / "b", **builds.INT8_ONLY)
    from test_parity_models import MOBILENET_MIN_AGREEMENT

    return _parity_rows(
        out, ds, "test_int8_matches_float[mobilenet_build]", MOBILENET_MIN_AGREEMENT
    )


def check_parity_mnist5k(seed: int, tmp: Path) -> list[Metric]:
    import builds

    train = builds.train_recipe("mnist5k_cnn", tmp / "t", seed=seed)
    rows = []
    for name, kw in (
        ("mnist5k_build", {}),
        ("mnist5k_pruned_build", {"prune_filters": 0.5, "fine_tune_epochs": 2}),
    ):
        out = builds.convert(train, "mnist5k", tmp / name, **builds.INT8_ONLY, **kw)
        rows += _parity_rows(out, "mnist5k", f"test_int8_matches_float[{name}]")
    acc = json.loads((train / "manifest.json").read_text())["model"]["training"]["test_accuracy"]
    rows.append(metric("test_mnist5k_cnn_reaches_94_percent", "test top-1", acc, 0.94, 1000))
    return rows


def check_parity_fashion(seed: int, tmp: Path) -> list[Metric]:
    import builds

    train = builds.fashion_model(tmp / "t", seed=seed)
    out = builds.convert(train, "fashion_mnist", tmp / "b", **builds.INT8_ONLY)
    return _parity_rows(out, "fashion_mnist", "test_int8_matches_float[fashion_build]")


def check_digits(seed: int, tmp: Path) -> list[Metric]:
    """The default recipe's model and the filter-pruning recovery test built on it."""
    import builds

    train = builds.train_recipe("digits_cnn", tmp / "t", seed=seed)
    acc = json.loads((train / "manifest.json").read_text())["model"]["training"]["test_accuracy"]
    rows = [metric("test_digits_cnn_reaches_95_percent", "test top-1", acc, 0.95, 359)]
    from edgecnn.build import convert_model

    rep = convert_model(train, "digits", tmp / "pruned", prune_filters=0.5, fine_tune_epochs=3,
                        precisions="float32,int8", formats="tflite", eval_samples=0)  # fmt: skip
    rows.append(metric("test_structured_pruning_thins_and_recovers_accuracy",
                       "pruned top-1 - (float top-1 - 0.02)", rep["after"]["accuracy"],
                       rep["before"]["accuracy"] - 0.02, 359))  # fmt: skip
    for a in rep["artifacts"]:
        rows.append(metric("test_every_artifact_loads_runs", f"{a['artifact']} top-1",
                           a["accuracy"], 0.85, 359))  # fmt: skip
    return rows


def check_photos(seed: int, tmp: Path) -> list[Metric]:
    """EfficientNet-Lite0's int8 answers on the photos and on video frames of them."""
    from test_efficientnet_photos import FRAMES_PER_PHOTO, photo_checks, write_photo_video

    from edgecnn.data.photos import KNOWN_GOOD

    run = tmp / "run"
    r = subprocess.run([sys.executable, "-m", "edgecnn.cli", "run", "models/efficientnet_lite0_imagenet.toml",
                        "--out", str(run), "--json"], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    parity = (
        json.loads((run / "build" / "parity.json").read_text())
        if (run / "build" / "parity.json").exists()
        else None
    )
    rows = [
        metric(
            "efficientnet_lite0_imagenet recipe",
            "edgecnn run exit 0",
            float(r.returncode == 0),
            1.0,
        )
    ]
    if parity:
        for a in parity["artifacts"]:
            rows.append(metric("efficientnet_lite0_imagenet parity", f"{a['artifact']} agreement",
                               a["agreement"], parity["thresholds"]["min_agreement"], parity["samples"]))  # fmt: skip
    video = tmp / "photos.mp4"
    write_photo_video(video, list(KNOWN_GOOD))
    for check in photo_checks(run, video, FRAMES_PER_PHOTO):
        rows.append(metric(check["test"], check["metric"], check["value"], check["floor"]))
    return rows


def check_transfer(seed: int, tmp: Path) -> list[Metric]:
    import test_efficientnet_transfer as t

    from edgecnn.train import train

    acc = {}
    for weights in ("imagenet", "none"):
        cfg = t._config(weights, seed=seed)
        acc[weights] = train(cfg, tmp / weights)["test_accuracy"]
    name = "test_pretrained_base_beats_scratch_for_the_same_epochs"
    return [
        metric(name, "gap (pretrained - scratch)", acc["imagenet"] - acc["none"], t.MIN_GAP),
        metric(name, "pretrained top-1", acc["imagenet"], t.MIN_TRANSFER_ACC),
        metric(name, "scratch top-1", acc["none"], t.MIN_SCRATCH_ACC),
    ]


CHECKS: dict[str, Callable[[int, Path], list[Metric]]] = {
    "parity_mobilenet": check_parity_mobilenet,
    "parity_mnist5k": check_parity_mnist5k,
    "parity_fashion": check_parity_fashion,
    "digits": check_digits,
    "photos": check_photos,
    "transfer": check_transfer,
}
SEEDLESS = {"photos"}  # a pretrained model: nothing seeded to vary


# -- running ------------------------------------------------------------------------------------


def child(check: str, seed: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tempfile.TemporaryDirectory(prefix="edgecnn-margins-") as tmp:
        t0 = time.perf_counter()
        rows = CHECKS[check](seed, Path(tmp))
    for r in rows:
        r["seconds"] = round(time.perf_counter() - t0, 1)
    print(MARKER + json.dumps(rows), flush=True)


def run_one(check: str, seed: int, env_name: str) -> list[Metric]:
    extra, prefix = ENVS[env_name]
    if prefix and shutil.which(prefix[0]) is None:
        raise SystemExit(f"{prefix[0]} is not installed")
    proc = subprocess.run(
        [*prefix, sys.executable, __file__, "--child", check, str(seed)],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, **extra},
    )  # fmt: skip
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            rows = json.loads(line[len(MARKER) :])
            for r in rows:
                r.update(check=check, seed=seed, env=env_name)
            return rows
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return [{"check": check, "seed": seed, "env": env_name, "test": check, "metric": "run failed",
             "value": float("nan"), "floor": 0.0, "margin": float("nan"), "error": tail}]  # fmt: skip


def summarize(rows: list[Metric]) -> str:
    groups: dict[tuple[str, str], list[Metric]] = {}
    for r in rows:
        groups.setdefault((r["test"], r["metric"]), []).append(r)
    lines = [
        f"{'test':58s} {'metric':38s} {'floor':>7s} {'min':>7s} {'max':>7s} {'min margin':>10s}  worst run"
    ]
    for (test, what), rs in groups.items():
        vals = [r["value"] for r in rs]
        worst = min(rs, key=lambda r: r["margin"] if r["margin"] == r["margin"] else -1e9)
        img = f" ({worst['margin_images']:+g} img)" if "margin_images" in worst else ""
        lines.append(
            f"{test[:58]:58s} {what[:38]:38s} {rs[0]['floor']:7.4f} {min(vals):7.4f} {max(vals):7.4f} "
            f"{worst['margin']:+10.4f}  {worst['env']} seed {worst['seed']}{img}"
            + (f"  ERROR {worst['error']}" if "error" in worst else "")
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--checks", default=",".join(CHECKS), help=f"comma list of {', '.join(CHECKS)}")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--envs", default="default,onednn_off,avx2,one_core",
                    help="comma list; the non-default ones run seed 0 only unless --all-seeds")  # fmt: skip
    ap.add_argument("--all-seeds", action="store_true", help="every env under every seed")
    ap.add_argument("--json", type=Path, help="write every run's figures here")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], int(a.child[1]))
        return
    checks = [c for c in a.checks.split(",") if c]
    bad = [c for c in checks if c not in CHECKS] + [e for e in a.envs.split(",") if e not in ENVS]
    if bad:
        raise SystemExit(f"unknown check or env: {', '.join(bad)}")
    seeds = [int(s) for s in a.seeds.split(",")]
    rows: list[Metric] = []
    for check in checks:
        for env in a.envs.split(","):
            run_seeds = seeds if (env == "default" or a.all_seeds) else seeds[:1]
            for seed in run_seeds[:1] if check in SEEDLESS else run_seeds:
                t0 = time.perf_counter()
                got = run_one(check, seed, env)
                rows += got
                print(
                    f"[{check} {env} seed {seed}] {time.perf_counter() - t0:.0f} s", file=sys.stderr
                )
                if a.json:
                    a.json.write_text(json.dumps(rows, indent=1))
    print(summarize(rows))


if __name__ == "__main__":
    main()
