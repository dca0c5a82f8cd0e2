"""Parity's measurement: the reference and every artifact on the same images, metrics, verdicts.

The float Keras reference (`model.keras` in the build directory) and every
artifact in the manifest are evaluated on the same samples. The reference sees
the dataset's pixels (0-255, what it was trained on); each artifact runs through
`edgecnn.runtime.Runner`, i.e. with the preprocessing the manifest tells the
device to use, so a manifest that disagrees with the model shows up here, not
on the device. Per artifact: top-1/top-5, per-class accuracy, agreement with the
reference's top-1, mean KL divergence and max |dp|, a confusion PNG, and a
verdict against `max_drop` (points of top-1) and `min_agreement` (fraction).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.data import Dataset
from edgecnn.errors import BadInput
from edgecnn.manifest import Artifact, Manifest
from edgecnn.parity.data import EvalData, check_build, load_eval_data
from edgecnn.quiet import quiet_tensorflow
from edgecnn.runtime.formats import get_format

EPS = 1e-7
# The float model is "sure" of an image when its top-1 beats its top-2 by this much:
# `confident_agreement` counts how often an artifact keeps those answers. Close calls
# (chelsea's 0.40 Egyptian cat vs 0.33 tiger cat) flip with the CPU's int8 kernels.
CONFIDENT_MARGIN = 0.2


@dataclass
class Thresholds:
    max_drop: float = 1.0  # points of top-1 accuracy an artifact may lose
    min_agreement: float = 0.98  # fraction of samples whose top-1 matches the reference

    def check(self) -> Thresholds:
        if not 0 <= self.max_drop <= 100:
            raise BadInput(f"--max-drop must be in [0, 100] points, got {self.max_drop}")
        if not 0 <= self.min_agreement <= 1:
            raise BadInput(
                f"--min-agreement must be a fraction in [0, 1], got {self.min_agreement}"
            )
        return self


# -- predictions ------------------------------------------------------------------------------


def as_probabilities(scores: np.ndarray) -> np.ndarray:
    """Softmax only if the model emits logits (rows that aren't already distributions).

    A quantized softmax output (TFLite fixes its step at 1/256) rounds every
    small score to zero: over ImageNet's 1000 classes a row may sum to 0.75.
    Scores within [0, 1] whose rows sum to between 0.5 and 1.05 are therefore
    taken as probabilities as they are; `compare` normalizes them for the KL.
    """
    s = np.asarray(scores, dtype=np.float64)
    sums = s.sum(axis=1) if s.size else np.ones(1)
    probabilities = s.size == 0 or (
        s.min() >= -1e-3 and s.max() <= 1 + 1e-3 and sums.min() >= 0.5 and sums.max() <= 1.05
    )
    if not probabilities:
        s = np.exp(s - s.max(axis=1, keepdims=True))
        s /= s.sum(axis=1, keepdims=True)
    return s.astype(np.float32)


def reference_predict(build: Path, manifest: Manifest, x: np.ndarray) -> np.ndarray:
    """Float Keras probabilities on dataset pixels (0-255 float32), batched through a tf.function."""
    quiet_tensorflow()
    import tensorflow as tf

    from edgecnn.zoo.io import load_keras_model

    model = load_keras_model(manifest.reference_path(build))
    fn = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
    out = []
    step = 500
    for i in range(0, len(x), step):
        out.append(np.asarray(fn(tf.constant(x[i : i + step], tf.float32))))
    return as_probabilities(np.concatenate(out))


def artifact_predict(
    build: Path,
    art: Artifact,
    x: np.ndarray,
    threads: int | None = None,
    manifest: Manifest | None = None,
) -> tuple[np.ndarray, str]:
    """(probabilities, backend name) through the device runtime."""
    from edgecnn.runtime import Runner

    with Runner(build, artifact=art.path, threads=threads, manifest=manifest) as runner:
        return as_probabilities(runner.predict_batch(x)), runner.backend_name


# -- metrics ---------------------------------------------------------------------------------


def topk_accuracy(probs: np.ndarray, y: np.ndarray, k: int) -> float:
    k = min(k, probs.shape[1])
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return float((top == y[:, None]).any(axis=1).mean())


def per_class_accuracy(pred: np.ndarray, y: np.ndarray, n: int) -> list[float | None]:
    out: list[float | None] = []
    for c in range(n):
        m = y == c
        out.append(float((pred[m] == c).mean()) if m.any() else None)
    return out


def float_margins(ref: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability of each reference row."""
    if ref.shape[1] < 2:
        return np.ones(len(ref))
    top2 = np.partition(ref, -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def compare(ref: np.ndarray, probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Accuracy of `probs` and its closeness to the reference probabilities `ref`."""
    pred = probs.argmax(axis=1)
    p = np.clip(ref.astype(np.float64), EPS, 1)
    q = np.clip(probs.astype(np.float64), EPS, 1)
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    kl = (p * np.log(p / q)).sum(axis=1)
    same = pred == ref.argmax(axis=1)
    confident = float_margins(ref) >= CONFIDENT_MARGIN
    return {
        "top1": float((pred == y).mean()),
        "top5": topk_accuracy(probs, y, 5),
        "agreement": float(same.mean()),
        "confident_agreement": float(same[confident].mean()) if confident.any() else None,
        "confident_samples": int(confident.sum()),
        "mean_kl": float(kl.mean()),
        "max_abs_diff": float(np.abs(ref - probs).max()) if len(y) else 0.0,
        "per_class": per_class_accuracy(pred, y, probs.shape[1]),
    }


def verdict(row: dict[str, Any], ref_top1: float, th: Thresholds) -> list[str]:
    """Why the artifact fails (empty: it passes)."""
    reasons = []
    drop = (ref_top1 - row["top1"]) * 100
    if drop > th.max_drop + 1e-9:
        reasons.append(f"top-1 dropped {drop:.2f} points (max {th.max_drop:g})")
    if row["agreement"] < th.min_agreement - 1e-12:
        reasons.append(f"agreement with float {row['agreement']:.2%} (min {th.min_agreement:.0%})")
    return reasons


# -- the evaluation ----------------------------------------------------------------------------


def reference_row(
    build: Path, manifest: Manifest, ref: np.ndarray, y: np.ndarray, seconds: float
) -> dict[str, Any]:
    pred = ref.argmax(axis=1)
    path = manifest.reference_path(build)
    return {
        "artifact": path.name,
        "format": "keras",
        "precision": "float32",
        "size": path.stat().st_size if path.exists() else None,
        "top1": float((pred == y).mean()),
        "top5": topk_accuracy(ref, y, 5),
        "per_class": per_class_accuracy(pred, y, len(manifest.labels)),
        "seconds": round(seconds, 3),
    }


def artifact_row(art: Artifact, backend: str, ref: np.ndarray, probs: np.ndarray, y: np.ndarray,
                 ref_top1: float, th: Thresholds, seconds: float) -> dict[str, Any]:  # fmt: skip
    row = {
        "artifact": art.path, "format": art.format, "precision": art.precision, "size": art.size,
        "backend": backend, **compare(ref, probs, y), "seconds": round(seconds, 3),
    }  # fmt: skip
    row["drop"] = (ref_top1 - row["top1"]) * 100
    row["reasons"] = verdict(row, ref_top1, th)
    row["passed"] = not row["reasons"]
    return row


def _chosen(manifest: Manifest, names: list[str] | None) -> tuple[list[Artifact], list[str]]:
    """(artifacts to evaluate, names skipped because they need an accelerator). An Edge TPU
    model runs only on its accelerator; its CPU twin (the int8 TFLite) is checked instead."""
    arts = manifest.artifacts
    if names:
        arts = [a for a in arts if a.path in names or a.name in names]
    runnable = [a for a in arts if get_format(a.format).on_cpu]
    return runnable, [a.path for a in arts if a not in runnable]


@dataclass
class Evaluation:
    """Everything `evaluate` measured, for the report and for `--fix`."""

    build: Path
    manifest: Manifest
    data: EvalData
    ref: np.ndarray
    report: dict[str, Any]
    predictions: dict[str, np.ndarray]


def evaluate_build(
    build_dir: str | os.PathLike, data: str | Dataset, split: str = "test",
    thresholds: Thresholds | None = None, limit: int | None = None, artifacts: list[str] | None = None,
    threads: int | None = None, progress: Callable[[str], None] | None = None,
    other_data: bool = False,
) -> Evaluation:  # fmt: skip
    """The reference and every (chosen) artifact on the same images, with verdicts.
    `other_data`: the data is meant to be another source than the training data's."""
    say = progress or (lambda msg: None)
    th = (thresholds or Thresholds()).check()
    build, manifest = check_build(build_dir)
    say("loading data")
    ev = load_eval_data(manifest, data, split, limit, other_data)
    arts, skipped = _chosen(manifest, artifacts)
    say(f"float reference on {len(ev.y)} images")
    t0 = time.perf_counter()
    ref = reference_predict(build, manifest, ev.x)
    reference = reference_row(build, manifest, ref, ev.y, time.perf_counter() - t0)
    rows, predictions = [], {}
    for art in arts:
        say(art.path)
        t0 = time.perf_counter()
        probs, backend = artifact_predict(build, art, ev.x, threads)
        rows.append(
            artifact_row(
                art, backend, ref, probs, ev.y, reference["top1"], th, time.perf_counter() - t0
            )
        )
        predictions[art.path] = probs
    report = {
        "build": str(build.resolve()), "model": manifest.name or None, "data": ev.ds.name, "split": split,
        "other_data": ev.other_data,
        "samples": int(len(ev.y)), "labels": list(manifest.labels),
        "thresholds": {"max_drop": th.max_drop, "min_agreement": th.min_agreement},
        "reference": reference, "artifacts": rows, "passed": all(r["passed"] for r in rows),
        "failed": [r["artifact"] for r in rows if not r["passed"]], "skipped": skipped,
        "seconds": round(reference["seconds"] + sum(r["seconds"] for r in rows), 3),
    }  # fmt: skip
    return Evaluation(build, manifest, ev, ref, report, predictions)


def evaluate(
    build_dir: str | os.PathLike, data: str | Dataset, split: str = "test",
    thresholds: Thresholds | None = None, limit: int | None = None, artifacts: list[str] | None = None,
    threads: int | None = None, plots_dir: str | os.PathLike | None = None, diagnose: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Evaluate, then diagnose failures and draw confusion matrices; returns the report dict."""
    e = evaluate_build(build_dir, data, split, thresholds, limit, artifacts, threads, progress)
    finish(e, plots_dir, diagnose, progress)
    return e.report


def finish(
    e: Evaluation,
    plots_dir: str | os.PathLike | None,
    diagnose: bool,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Warnings, confusion PNGs, and the diagnosis of failing artifacts."""
    from edgecnn.parity.diagnose import calibration_classes, diagnose_failures

    found = calibration_classes(e.manifest)  # worth a warning even when the numbers pass
    for row in e.report["artifacts"]:
        if found and row.get("precision") == "int8":
            row["warnings"] = [found["message"]]
    if plots_dir:
        draw_confusions(e, Path(plots_dir))
    if diagnose and e.report["failed"]:
        if progress:
            progress("diagnosing failures")
        diagnose_failures(e.report, e.build, e.manifest, e.data.x, e.data.y, e.predictions)


def draw_confusions(e: Evaluation, plots: Path, fixed_only: bool = False) -> None:
    """The reference's and each artifact's confusion PNG (after --fix: the fixed artifacts')."""
    plots.mkdir(parents=True, exist_ok=True)
    rep = e.report
    if not fixed_only:
        confusion(
            plots,
            "reference",
            e.data.y,
            e.ref.argmax(axis=1),
            rep["labels"],
            rep["reference"]["top1"],
        )
    for row in rep["artifacts"]:
        pred = row.pop("_fixed_pred", None)
        if fixed_only and pred is None:
            continue
        stem = Path(row["artifact"]).name + (".fixed" if pred is not None else "")
        if pred is None:
            pred = e.predictions[row["artifact"]].argmax(axis=1)
        png = confusion(plots, stem, e.data.y, pred, rep["labels"], row["top1"])
        if png:
            row["confusion_png"] = str(png)


def confusion(
    plots: Path, stem: str, y: np.ndarray, pred: np.ndarray, labels: list[str], top1: float
) -> Path | None:
    """A confusion-matrix PNG; None where matplotlib is not installed."""
    from edgecnn.plots import can_plot, plot_confusion

    if not can_plot():
        return None
    path = plots / f"confusion_{stem.replace('.', '_')}.png"
    plot_confusion(y, pred, labels, path, title=f"{stem}: top-1 {top1:.2%}")
    return path
