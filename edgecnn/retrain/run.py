"""`retrain`: fine-tune on the old data plus the new labels, build with the old settings, gate.

    plan()     everything a user can get wrong, checked without TensorFlow
    retrain()  fit -> convert (edgecnn.build) -> gate -> NEW, written complete or not at all

NEW is written whether or not the gate passes (so its report can be read), and its manifest
records the verdict (`model.gate`); `edgecnn deploy` refuses a build whose gate failed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInput
from edgecnn.fsutil import atomic_dir, check_writable_dir, sha256_file
from edgecnn.manifest import REFERENCE_NAME, Manifest, load_manifest, now_iso
from edgecnn.retrain.data import NewLabels, auto_repeat, mixed, old_dataset, split_new
from edgecnn.retrain.gate import GateOptions, run_gate
from edgecnn.retrain.labels import LabelFolder, check_classes, read_labels, scan_labels
from edgecnn.retrain.old import OldModel, resolve_old


@dataclass
class RetrainOptions:
    add: list[str] = field(default_factory=list)
    data: str | None = None  # the old training data, when the manifest does not say
    epochs: int = 5
    learning_rate: float = 5e-4
    holdout: float = 0.25
    repeat: int | None = None  # None: auto (the new labels weigh about a third)
    new_classes: bool = False
    artifact: str | None = None  # the artifact the gate compares (default: what serve runs)
    max_drop: float = 1.0
    alpha: float = 0.05
    seed: int = 0

    def validated(self) -> RetrainOptions:
        if not self.add:
            raise BadInput("give the new labels: --add folder:DIR/labelled")
        if self.epochs < 1:
            raise BadInput(f"--epochs must be at least 1, got {self.epochs}")
        if not 0 < self.learning_rate < 1:
            raise BadInput(f"--lr must be in (0, 1), got {self.learning_rate}")
        if not 0 < self.holdout < 1:
            raise BadInput(f"--holdout must be a fraction in (0, 1), got {self.holdout}")
        if self.repeat is not None and self.repeat < 1:
            raise BadInput(f"--repeat must be at least 1, got {self.repeat}")
        if not 0 <= self.max_drop <= 100:
            raise BadInput(f"--max-drop must be in [0, 100] points, got {self.max_drop}")
        if not 0 < self.alpha < 1:
            raise BadInput(f"--alpha must be in (0, 1), got {self.alpha}")
        return self


@dataclass
class Plan:
    old: OldModel
    folders: list[LabelFolder]
    labels: list[str]  # the old labels, then any new classes
    out: Path
    opts: RetrainOptions

    @property
    def new_classes(self) -> list[str]:
        return self.labels[len(self.old.labels) :]


def plan(old_path: str | os.PathLike, out: str | os.PathLike, opts: RetrainOptions) -> Plan:
    """Check the old model, the label folders and the output before TensorFlow loads."""
    opts.validated()
    old = resolve_old(old_path, opts.data)
    folders = [scan_labels(spec) for spec in opts.add]
    labels = check_classes(folders, old.labels, opts.new_classes)
    if opts.artifact and old.is_build:
        from edgecnn.runtime import select_artifact

        select_artifact(old.manifest, opts.artifact)
    if Path(out).resolve() == old.path.resolve():
        raise BadInput("--out must be a new directory, not the build being retrained")
    check_writable_dir(out)
    return Plan(old, folders, labels, Path(out), opts)


def fragment(old: Manifest, labels: list[str], keras: Path, describe: dict[str, Any],
             info: dict[str, Any]) -> Manifest:  # fmt: skip
    """The training fragment the build continues: the old provenance plus this retrain."""
    m = old.copy()
    m.artifacts, m.labels, m.created = [], list(labels), now_iso()
    for key in ("optimization", "gate", "edgetpu"):
        m.model_extra.pop(key, None)
    m.model_extra["source"] = {"path": REFERENCE_NAME, "sha256": sha256_file(keras)}
    m.model_extra["data"] = describe
    m.model_extra["training"] = {**m.training, "retrain": info}
    return m


def scorers(p: Plan, new_build: Path) -> tuple[Callable, Callable, str, str]:
    """(old, new, what answers for the old, for the new): the same kind of artifact from both
    builds, through the runtime; a training run's float Keras model answers for the run."""
    from edgecnn.runtime import Runner, select_artifact

    def of(build: Path, spec: str | None, labels: list[str]) -> Callable:
        runner = Runner(build, artifact=spec)
        return lambda x: (
            [labels[i] for i in runner.predict_batch(x).argmax(axis=1)] if len(x) else []
        )

    new_labels = load_manifest(new_build).labels
    if p.old.is_build:
        art = select_artifact(p.old.manifest, p.opts.artifact)
        old_fn, new_fn = of(p.old.path, art.path, p.old.labels), of(new_build, art.path, new_labels)
        return old_fn, new_fn, art.path, art.path
    from edgecnn.retrain.fit import keras_scorer

    new = Runner(new_build, artifact=p.opts.artifact).artifact.path
    old_fn = keras_scorer(p.old.keras_path, p.old.labels)
    return old_fn, of(new_build, new, new_labels), f"{p.old.keras_path.name} (float)", new


def _gate_record(gate: dict[str, Any]) -> dict[str, Any]:
    def short(d: dict[str, Any]) -> dict[str, Any]:
        return {k: d[k] for k in ("n", "old", "new", "p_value")}

    return {"passed": gate["passed"], "reasons": gate["reasons"], "max_drop": gate["max_drop"],
            "alpha": gate["alpha"], "old_test": short(gate["old_test"]),
            "holdout": short(gate["holdout"])}  # fmt: skip


def _labels_info(p: Plan, new: NewLabels, repeat: int) -> dict[str, Any]:
    return {"add": p.opts.add, "total": new.total, "train": int(len(new.y_train)),
            "val": int(len(new.y_val)), "holdout": int(len(new.y_holdout)), "repeat": repeat,
            "per_class": {c: sum(len(f.files.get(c, [])) for f in p.folders) for c in p.labels}}  # fmt: skip


def retrain(p: Plan, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune, build, gate; returns the report (its `gate.passed` says if NEW may ship)."""
    from edgecnn.build import convert_model
    from edgecnn.parity.data import check_labels
    from edgecnn.retrain.fit import fine_tune, train_config
    from edgecnn.train import write_history

    say = progress or (lambda msg: None)
    o, spec = p.opts, p.old.manifest.input
    say("reading the labels")
    x, y, _ = read_labels(p.folders, p.labels, spec)
    new = split_new(x, y, o.holdout, o.seed)
    say(f"loading {p.old.data}")
    old_ds = old_dataset(p.old.data, p.old.splits, tuple(spec.shape))
    check_labels(old_ds, p.old.labels)
    repeat = o.repeat or auto_repeat(len(old_ds.y_train), len(new.y_train))
    ds = mixed(old_ds, new, p.labels, repeat, f"{p.old.data}+{'+'.join(o.add)}")
    say(f"fine-tuning on {len(ds.y_train)} images ({len(new.y_train)} new x{repeat})")
    model, history = fine_tune(
        p.old.keras_path, ds, train_config(p.old.manifest, o.epochs, o.learning_rate, o.seed)
    )
    info = {"from": str(p.old.path), "from_created": p.old.manifest.created, **_labels_info(p, new, repeat),
            "epochs": o.epochs, "learning_rate": o.learning_rate, "seed": o.seed,
            "new_classes": p.new_classes}  # fmt: skip
    with atomic_dir(p.out) as tmp:
        run, staging = tmp / ".run", tmp / ".build"
        run.mkdir()
        model.save(run / REFERENCE_NAME)
        fragment(p.old.manifest, p.labels, run / REFERENCE_NAME, ds.describe(), info).save(run)
        say("building with the old build's settings")
        convert_model(run, ds, staging, dataclasses.replace(p.old.build, seed=o.seed), say)
        say("gate: old build vs new on the old test split and the held-out labels")
        old_fn, new_fn, old_art, new_art = scorers(p, staging)
        gate = run_gate(old_ds.x_test, [p.labels[i] for i in old_ds.y_test], new.x_holdout,
                        [p.labels[i] for i in new.y_holdout], old_fn, new_fn, p.labels,
                        GateOptions(o.max_drop, o.alpha))  # fmt: skip
        report = {"old": str(p.old.path), "out": str(p.out), "old_artifact": old_art,
                  "new_artifact": new_art, "labels": info,
                  "new_classes": p.new_classes, "gate": gate, "history": history}  # fmt: skip
        m = load_manifest(staging)
        m.model_extra["gate"] = _gate_record(gate)
        m.save(staging)
        _finish(staging, tmp, run, report, history, write_history)
    return report


def _finish(staging: Path, tmp: Path, run: Path, report: dict[str, Any], history: list[dict],
            write_history: Callable) -> None:  # fmt: skip
    from edgecnn.retrain import report as rpt

    rpt.write(report, staging)
    if history:
        write_history(staging / "history.csv", history)
    for f in staging.iterdir():
        os.replace(f, tmp / f.name)
    staging.rmdir()
    shutil.rmtree(run)


def as_jsonable(report: dict[str, Any]) -> dict[str, Any]:
    """NumPy scalars out (for --json)."""
    import json

    return json.loads(
        json.dumps(report, default=lambda v: v.item() if isinstance(v, np.generic) else str(v))
    )
