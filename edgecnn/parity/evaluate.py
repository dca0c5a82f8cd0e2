"""Accuracy parity: is every converted artifact still the model that was trained?

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

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.data import Dataset, load_dataset
from edgecnn.errors import BadInput
from edgecnn.fsutil import atomic_write_text, sha256_file
from edgecnn.manifest import InputSpec, load_manifest

REFERENCE_NAME = "model.keras"
REPORT_NAME = "parity.md"
EPS = 1e-7


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


# -- inputs ---------------------------------------------------------------------------------


def check_build(build_dir: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """(build dir, manifest) after checking every file the manifest lists against its sha256."""
    build = Path(build_dir)
    if not build.is_dir():
        raise BadInput(f"build directory {build} does not exist")
    manifest = load_manifest(build)
    if not manifest["artifacts"]:
        raise BadInput(f"{build / 'manifest.json'} lists no artifacts")
    src = manifest["model"].get("source") or {}
    ref = build / str(src.get("path") or REFERENCE_NAME)
    if not ref.is_file():
        raise BadInput(f"the float reference {ref.name} is missing from {build}")
    if src.get("sha256") and sha256_file(ref) != src["sha256"]:
        raise BadInput(f"{ref.name} does not match its manifest sha256")
    for art in manifest["artifacts"]:
        p = build / art["path"]
        if not p.is_file():
            raise BadInput(f"artifact {art['path']} listed in the manifest is missing")
        if art.get("sha256") and sha256_file(p) != art["sha256"]:
            raise BadInput(f"{art['path']} does not match its manifest sha256 (file changed?)")
    return build, manifest


def _split_args(manifest: dict[str, Any], data_name: str) -> dict[str, Any]:
    """The training run's split settings, so the test split is the one training held out."""
    training = manifest["model"].get("training") or {}
    if training.get("data") != data_name:
        return {}
    return {
        k: training[k]
        for k in ("seed", "val_split", "test_split", "limit_train")
        if training.get(k) is not None
    }


def load_eval_data(
    manifest: dict[str, Any], data: str | Dataset, split: str = "test"
) -> tuple[np.ndarray, np.ndarray, Dataset]:
    """uint8 images at the model's input shape and their labels; BadInput if classes differ."""
    ds = load_dataset(data, **_split_args(manifest, data)) if isinstance(data, str) else data
    labels = [str(v) for v in manifest["model"]["labels"]]
    names = [str(v) for v in ds.class_names]
    if names != labels:
        if len(names) != len(labels):
            raise BadInput(
                f"dataset {ds.name!r} has {len(names)} classes but the model's labels have {len(labels)}"
            )
        diff = [f"{a!r}!={b!r}" for a, b in zip(names, labels, strict=True) if a != b][:3]
        raise BadInput(
            f"dataset {ds.name!r} classes differ from the model's labels ({', '.join(diff)})"
        )
    spec = InputSpec.from_dict(manifest["model"]["input"])
    ds = ds.adapted(tuple(spec.shape))
    x, y = ds.split(split)
    if len(y) == 0:
        raise BadInput(f"the {split} split of {ds.name!r} is empty")
    return x, y.astype(np.int64), ds


def stratified_limit(y: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Indices of about `n` samples keeping class proportions (all when n is None)."""
    if not n or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    # A stable sort by class of a random permutation, then every k-th: proportional.
    idx = idx[np.argsort(y[idx], kind="stable")]
    take = np.linspace(0, len(idx) - 1, n).round().astype(int)
    return np.sort(idx[take])


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


def reference_predict(build: Path, manifest: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Float Keras probabilities on dataset pixels (0-255 float32), batched through a tf.function."""
    from edgecnn.commands.common import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    from edgecnn.zoo.io import load_keras_model

    src = manifest["model"].get("source") or {}
    model = load_keras_model(build / str(src.get("path") or REFERENCE_NAME))
    fn = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
    out = []
    step = 500
    for i in range(0, len(x), step):
        out.append(np.asarray(fn(tf.constant(x[i : i + step], tf.float32))))
    return as_probabilities(np.concatenate(out))


def artifact_predict(
    build: Path, art: dict[str, Any], x: np.ndarray, threads: int | None = None
) -> tuple[np.ndarray, str]:
    """(probabilities, backend name) through the device runtime."""
    from edgecnn.runtime import Runner

    runner = Runner(build, artifact=art["path"], threads=threads)
    try:
        return as_probabilities(runner.predict_batch(x)), runner.backend_name
    finally:
        runner.close()


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


def compare(ref: np.ndarray, probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Accuracy of `probs` and its closeness to the reference probabilities `ref`."""
    pred = probs.argmax(axis=1)
    p = np.clip(ref.astype(np.float64), EPS, 1)
    q = np.clip(probs.astype(np.float64), EPS, 1)
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    kl = (p * np.log(p / q)).sum(axis=1)
    return {
        "top1": float((pred == y).mean()),
        "top5": topk_accuracy(probs, y, 5),
        "agreement": float((pred == ref.argmax(axis=1)).mean()),
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


def evaluate(
    build_dir: str | os.PathLike,
    data: str | Dataset,
    split: str = "test",
    thresholds: Thresholds | None = None,
    limit: int | None = None,
    artifacts: list[str] | None = None,
    threads: int | None = None,
    plots_dir: str | os.PathLike | None = None,
    diagnose: bool = True,
    progress: Any = None,
) -> dict[str, Any]:
    """Evaluate the reference and every artifact; returns the report dict (see module doc)."""
    say = progress or (lambda msg: None)
    th = (thresholds or Thresholds()).check()
    build, manifest = check_build(build_dir)
    labels = [str(v) for v in manifest["model"]["labels"]]
    say("loading data")
    x, y, ds = load_eval_data(manifest, data, split)
    if limit:
        idx = stratified_limit(y, limit)
        x, y = x[idx], y[idx]
    arts = manifest["artifacts"]
    if artifacts:
        arts = [a for a in arts if a["path"] in artifacts or Path(a["path"]).name in artifacts]
    # Edge TPU models run only on the accelerator; their int8 TFLite source is checked instead.
    skipped = [a["path"] for a in arts if a.get("format") == "edgetpu"]
    arts = [a for a in arts if a.get("format") != "edgetpu"]

    say(f"float reference on {len(y)} images")
    t0 = time.perf_counter()
    ref = reference_predict(build, manifest, x)
    ref_seconds = time.perf_counter() - t0
    ref_pred = ref.argmax(axis=1)
    reference = {
        "artifact": (manifest["model"].get("source") or {}).get("path") or REFERENCE_NAME,
        "format": "keras",
        "precision": "float32",
        "size": (build / REFERENCE_NAME).stat().st_size
        if (build / REFERENCE_NAME).exists()
        else None,
        "top1": float((ref_pred == y).mean()),
        "top5": topk_accuracy(ref, y, 5),
        "per_class": per_class_accuracy(ref_pred, y, len(labels)),
        "seconds": round(ref_seconds, 3),
    }
    plots = Path(plots_dir) if plots_dir else None
    if plots:
        plots.mkdir(parents=True, exist_ok=True)
        _confusion(plots, "reference", y, ref_pred, labels, reference["top1"])

    from edgecnn.diagnose import calibration_classes

    # A calibration set that missed classes is worth a warning even when the numbers pass.
    found = calibration_classes(manifest)
    calibration_warning = found["message"] if found else None
    rows: list[dict[str, Any]] = []
    predictions: dict[str, np.ndarray] = {}
    for art in arts:
        say(f"{art['path']}")
        t0 = time.perf_counter()
        probs, backend = artifact_predict(build, art, x, threads)
        seconds = time.perf_counter() - t0
        row = {
            "artifact": art["path"],
            "format": art.get("format"),
            "precision": art.get("precision"),
            "size": art.get("size"),
            "backend": backend,
            **compare(ref, probs, y),
            "seconds": round(seconds, 3),
        }
        row["drop"] = (reference["top1"] - row["top1"]) * 100
        row["reasons"] = verdict(row, reference["top1"], th)
        row["passed"] = not row["reasons"]
        if art.get("precision") == "int8" and calibration_warning:
            row["warnings"] = [calibration_warning]
        if plots:
            row["confusion_png"] = str(
                _confusion(
                    plots, Path(art["path"]).name, y, probs.argmax(axis=1), labels, row["top1"]
                )
            )
        predictions[art["path"]] = probs
        rows.append(row)

    report: dict[str, Any] = {
        "build": str(build.resolve()),
        "model": manifest["model"].get("name"),
        "data": ds.name,
        "split": split,
        "samples": int(len(y)),
        "labels": labels,
        "thresholds": {"max_drop": th.max_drop, "min_agreement": th.min_agreement},
        "reference": reference,
        "artifacts": rows,
        "passed": all(r["passed"] for r in rows),
        "failed": [r["artifact"] for r in rows if not r["passed"]],
        "skipped": skipped,
        "seconds": round(ref_seconds + sum(r["seconds"] for r in rows), 3),
    }
    if diagnose and report["failed"]:
        from edgecnn.diagnose import diagnose_failures

        say("diagnosing failures")
        diagnose_failures(report, build, manifest, x, y, predictions)
    return report


def _confusion(
    plots: Path, stem: str, y: np.ndarray, pred: np.ndarray, labels: list[str], top1: float
) -> Path:
    from edgecnn.plots import plot_confusion

    path = plots / f"confusion_{stem.replace('.', '_')}.png"
    plot_confusion(y, pred, labels, path, title=f"{stem}: top-1 {top1:.2%}")
    return path


# -- output ----------------------------------------------------------------------------------

TABLE_COLUMNS = [
    "artifact",
    "top1",
    "top5",
    "drop",
    "agreement",
    "mean_kl",
    "max_abs_diff",
    "verdict",
]


def table_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    ref = report["reference"]
    rows = [
        {
            "artifact": f"{ref['artifact']} (reference)",
            "top1": f"{ref['top1']:.2%}",
            "top5": f"{ref['top5']:.2%}",
            "drop": "",
            "agreement": "",
            "mean_kl": "",
            "max_abs_diff": "",
            "verdict": "",
        }
    ]
    for r in report["artifacts"]:
        rows.append(
            {
                "artifact": r["artifact"],
                "top1": f"{r['top1']:.2%}",
                "top5": f"{r['top5']:.2%}",
                "drop": f"{r['drop']:+.2f}",
                "agreement": f"{r['agreement']:.2%}",
                "mean_kl": f"{r['mean_kl']:.2e}",
                "max_abs_diff": f"{r['max_abs_diff']:.3f}",
                "verdict": ("pass (fixed)" if r.get("fixed") else "pass")
                if r["passed"]
                else "FAIL",
            }
        )
    return rows


def findings_lines(report: dict[str, Any]) -> list[str]:
    """Plain-words lines for failing artifacts (reasons, recognised causes, worst layers)."""
    out = []
    for r in report["artifacts"]:
        if r["passed"]:
            out += [f"{r['artifact']} passes, but warning: {w}" for w in r.get("warnings", [])]
            continue
        out.append(f"{r['artifact']} FAILED: {'; '.join(r['reasons'])}")
        for f in r.get("diagnosis", {}).get("findings", []):
            out.append(f"  cause: {f['message']}")
        layers = r.get("diagnosis", {}).get("layers") or []
        if layers:
            worst = ", ".join(
                f"{lay['layer']} ({lay['op']}, error +{lay['added_error']:.3f})"
                for lay in layers[:3]
            )
            out.append(f"  largest quantization error: {worst}")
        if r.get("diagnosis", {}).get("note"):
            out.append(f"  note: {r['diagnosis']['note']}")
    fix = report.get("fix")
    if fix:
        out.append(f"fix: {fix['summary']}")
    return out


def markdown(report: dict[str, Any]) -> str:
    """The Markdown report: summary table, per-class accuracy, findings."""
    th = report["thresholds"]
    lines = [
        f"# Parity: {report.get('model') or Path(report['build']).name}",
        "",
        f"Data: `{report['data']}` {report['split']} split, {report['samples']} images. "
        f"Thresholds: top-1 drop <= {th['max_drop']:g} points, agreement >= {th['min_agreement']:.0%}. "
        f"Result: **{'PASS' if report['passed'] else 'FAIL'}**.",
        "",
        "| artifact | top-1 | top-5 | drop (pts) | agreement | mean KL | max abs dp | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in table_rows(report):
        lines.append("| " + " | ".join(str(t[c]) for c in TABLE_COLUMNS) + " |")
    lines += ["", "## Per-class top-1", ""]
    names = ["reference", *[r["artifact"] for r in report["artifacts"]]]
    per = [report["reference"]["per_class"], *[r["per_class"] for r in report["artifacts"]]]
    lines.append("| class | " + " | ".join(names) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    for i, lab in enumerate(report["labels"]):
        if all(p[i] is None for p in per):
            continue  # a label space like ImageNet-1k: list only the classes the data has
        cells = ["-" if p[i] is None else f"{p[i]:.1%}" for p in per]
        lines.append(f"| {lab} | " + " | ".join(cells) + " |")
    if report.get("skipped"):
        lines += ["", f"Not evaluated (needs an Edge TPU): {', '.join(report['skipped'])}."]
    pngs = [(r["artifact"], r.get("confusion_png")) for r in report["artifacts"]]
    if any(p for _, p in pngs):
        lines += ["", "## Confusion matrices", ""]
        lines += [f"- {a}: `{Path(p).name}`" for a, p in pngs if p]
    found = findings_lines(report)
    if found:
        lines += ["", "## Failures", ""] + [f"- {line.strip()}" for line in found]
        for r in report["artifacts"]:
            layers = r.get("diagnosis", {}).get("layers") or []
            if layers:
                lines += [
                    "",
                    f"### Per-layer quantization error: {r['artifact']}",
                    "",
                    "| layer | op | relative error | added error | clipped |",
                    "|---|---|---|---|---|",
                ]
                for lay in layers[:10]:
                    lines.append(
                        f"| {lay['layer']} | {lay['op']} | {lay['rel_error']:.3f} | "
                        f"{lay['added_error']:+.3f} | {lay['clipped']:.1%} |"
                    )
    return "\n".join(lines) + "\n"


def write_reports(report: dict[str, Any], md_path: Path) -> tuple[Path, Path]:
    md_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(md_path, markdown(report))
    js = md_path.with_suffix(".json")
    atomic_write_text(js, json.dumps(report, indent=2, default=str) + "\n")
    return md_path, js


def run_parity(
    build_dir: str | os.PathLike,
    data_name: str,
    split: str = "test",
    max_drop: float = 1.0,
    min_agreement: float = 0.98,
    report: str | os.PathLike | None = None,
    limit: int | None = None,
    fix: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """The `edgecnn run` parity stage and the CLI's engine.

    Writes `report` (Markdown; default BUILD_DIR/parity.md), the JSON beside it and
    confusion PNGs in a `parity/` folder next to it. Returns the report dict
    (`passed`, `failed`, per-artifact rows); raises BadInput on bad input.
    The caller decides what a failure means (the CLI exits 1).
    """
    md = Path(report) if report else Path(build_dir) / REPORT_NAME
    result = evaluate(
        build_dir,
        data_name,
        split,
        Thresholds(max_drop, min_agreement),
        limit=limit,
        plots_dir=md.parent / "parity",
        progress=progress,
    )
    if fix and not result["passed"]:
        from edgecnn.parity_fix import fix_build

        fix_build(result, build_dir, data_name, split, limit=limit, progress=progress)
        y = load_eval_data(load_manifest(build_dir), data_name, split)[1]
        if limit:
            y = y[stratified_limit(y, limit)]
        for row in result["artifacts"]:
            pred = row.pop("_fixed_pred", None)
            if pred is not None and row.get("confusion_png"):
                stem = Path(row["artifact"]).name + ".fixed"
                png = _confusion(Path(row["confusion_png"]).parent, stem, y, pred,
                                 result["labels"], row["top1"])  # fmt: skip
                row["confusion_png"] = str(png)
    md_path, js_path = write_reports(result, md)
    result["report"] = str(md_path)
    result["json"] = str(js_path)
    return result
