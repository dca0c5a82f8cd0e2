"""One trial of `edgecnn tune`: draw, probe, train, build, measure.

The probe comes first: an untrained model of the drawn shape, pruned and converted the
same way, already has the trained one's latency, size and memory, so a draw that cannot
fit the budget is rejected in seconds instead of after training. Trials that train are
reported to Optuna epoch by epoch (validation accuracy), so its pruner can stop the
hopeless ones. Accuracy is the built artifact's top-1 on the validation split, run by
the device runtime; the test split is never touched by a trial.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgecnn.data import Dataset
from edgecnn.errors import EdgeCNNError
from edgecnn.fsutil import atomic_write_text
from edgecnn.manifest import load_manifest
from edgecnn.tune.cache import BASE_PRECISION, EarlyStop, TrialCache
from edgecnn.tune.measure import measure_artifact
from edgecnn.tune.options import TuneOptions
from edgecnn.tune.params import TrialParams, sample
from edgecnn.zoo.registry import default_input_shape, is_transfer

PROBE_EVAL = 16  # images the probe's (meaningless) accuracy column is measured on
PROBE_CALIB = 16


def selection_view(ds: Dataset) -> Dataset:
    """The dataset as trials see it: the validation split stands in as the test split."""
    return replace(ds, x_test=ds.x_val, y_test=ds.y_val,
                   provenance={**ds.provenance, "test_split_is": "validation (edgecnn tune)"})  # fmt: skip


@dataclass
class TuneContext:
    options: TuneOptions
    data: Dataset  # the selection view
    cache: TrialCache
    say: Callable[[str], None] = lambda msg: None
    stop: threading.Event = field(default_factory=threading.Event)  # Ctrl-C: end this trial soon
    _adapted: OrderedDict = field(default_factory=OrderedDict)

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise TrialInterrupted("interrupted (Ctrl-C)")

    def data_for(self, shape: tuple[int, int, int]) -> Dataset:
        """The data at a model's input shape, resized once for the few shapes in use."""
        if shape not in self._adapted:
            self._adapted[shape] = self.data.adapted(shape)
            while len(self._adapted) > 3:
                self._adapted.popitem(last=False)
        self._adapted.move_to_end(shape)
        return self._adapted[shape]


def train_config(p: TrialParams, o: TuneOptions) -> Any:
    from edgecnn.train import TrainConfig

    transfer = is_transfer(p.arch)
    return TrainConfig(
        arch=p.arch, data=o.data, epochs=p.epochs, early_stopping=0, seed=o.seed,
        val_split=o.val_split, test_split=o.test_split, limit_train=o.limit_train,
        input_size=p.size, weights=o.space.weights if transfer else "none",
        alpha=p.alpha if p.alpha is not None else 1.0, fine_tune_layers=p.fine_tune_layers,
        fine_tune_epochs=o.space.fine_tune_epochs if p.fine_tune_layers else 0, verbose=0,
        name=f"tune_{p.arch}",
    )  # fmt: skip


def input_shape(p: TrialParams, ctx: TuneContext) -> tuple[int, int, int]:
    return default_input_shape(p.arch, ctx.data.input_shape, p.size)


# -- the probe: an untrained model of the same shape --------------------------------------------


def probe(p: TrialParams, ctx: TuneContext) -> dict[str, Any]:
    """Latency, size and RAM of the drawn shape, before any training (cached on disk)."""
    from edgecnn.build import BuildConfig, convert_model
    from edgecnn.train import model_options
    from edgecnn.zoo import build_model

    key = ctx.cache.root / f"probe-{p.shape_key()}-{ctx.options.device}.json"
    if key.is_file():
        return json.loads(key.read_text())
    cfg = train_config(p, ctx.options)
    cfg.weights = "none"  # the shape is what matters; no download for a probe
    shape = input_shape(p, ctx)
    model = build_model(p.arch, shape, ctx.data.num_classes, **model_options(cfg))
    work = ctx.cache.root / f".probe-{key.stem}"
    build = BuildConfig(prune_filters=p.prune or None, fine_tune_epochs=0, formats=["tflite"],
                        precisions=[BASE_PRECISION[p.precision]], calib_samples=PROBE_CALIB,
                        eval_samples=PROBE_EVAL, seed=ctx.options.seed)  # fmt: skip
    try:
        convert_model(model, ctx.data_for(shape), work, build)
        art = load_manifest(work).artifacts[0]
        measured = measure_artifact(work, art.path, art.size, ctx.options)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    atomic_write_text(key, json.dumps(measured))
    return measured


# -- training with Optuna's pruner --------------------------------------------------------------


class TrialInterrupted(EdgeCNNError):
    """The search was asked to stop while this trial ran."""


def epoch_reporter(trial: Any, stop: threading.Event) -> Any:
    """A Keras callback reporting validation accuracy to Optuna after every epoch, and
    stopping training when the pruner says the trial is hopeless (or on Ctrl-C)."""
    import keras

    class ReportEpochs(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.step = 0
            self.stopped = False

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            if self.stopped or stop.is_set():  # a later phase (fine-tuning) of a stopped run
                self.model.stop_training = True

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if stop.is_set():
                self.model.stop_training = True

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            value = (logs or {}).get("val_accuracy")
            if value is None:
                return
            self.step += 1
            trial.report(float(value), self.step)
            if trial.should_prune():
                self.stopped = True
                self.model.stop_training = True

    return ReportEpochs()


def trained_model(p: TrialParams, ctx: TuneContext, trial: Any) -> tuple[Path, bool]:
    from edgecnn.train import train

    reporter = epoch_reporter(trial, ctx.stop)
    data = ctx.data_for(input_shape(p, ctx))

    def run(work: Path) -> bool:
        ctx.say(f"trial {trial.number}: training {p.label()}")
        train(train_config(p, ctx.options), work, dataset=data, callbacks=[reporter])
        ctx.check_stop()  # a run cut short by Ctrl-C is not kept (the work dir goes)
        return not reporter.stopped

    return ctx.cache.trained(p, run)


# -- one trial ---------------------------------------------------------------------------------


def evaluate_build(build: Path, ctx: TuneContext) -> dict[str, Any]:
    """The artifact's accuracy on the validation split (through the runtime), its float
    model's, and its hardware figures."""
    from edgecnn.build.export import artifact_accuracy

    manifest = load_manifest(build)
    art = manifest.artifacts[0]
    data = ctx.data_for(tuple(manifest.input.shape))
    accuracy = artifact_accuracy(build, manifest, art, data.x_val, data.y_val)
    opt = manifest.model_extra.get("optimization") or {}
    reference = float(opt.get("accuracy_after", accuracy))  # Keras top-1 on the same images
    m = measure_artifact(build, art.path, art.size, ctx.options)
    return {"accuracy": accuracy, "float_accuracy": reference, "drop_pts": (reference - accuracy) * 100.0,
            "artifact": art.path, **m}  # fmt: skip


def _record(trial: Any, ctx: TuneContext, stage: str, m: dict[str, Any]) -> bool:
    """Keep the figures on the trial; True when they break a limit."""
    feasible = all(c <= 0 for c in ctx.options.budget.constraints(m))
    trial.set_user_attr("metrics", {**m, "stage": stage})
    trial.set_user_attr("feasible", feasible)
    return not feasible


def _constrain(trial: Any, ctx: TuneContext) -> None:
    """Optuna's constraints, set once from the last figures (none yet: nothing broken)."""
    m = trial.user_attrs.get("metrics") or {}
    for key, over in zip(
        ctx.options.budget.limits(), ctx.options.budget.constraints(m), strict=True
    ):
        trial.set_constraint(key, over)


def _limits_broken(ctx: TuneContext, m: dict[str, Any]) -> str:
    over = ctx.options.budget.violations(m)
    limits = ctx.options.budget.limits()
    return ", ".join(f"{k} {m[k]:.4g} > {limits[k]:g}" for k, v in over.items() if v > 0)


def run_trial(trial: Any, ctx: TuneContext) -> float:
    """Optuna's objective: the artifact's validation accuracy (maximized under the budget)."""
    import optuna

    t0 = time.perf_counter()
    p = sample(trial, ctx.options.space)
    trial.set_user_attr("params", p.to_dict())
    trial.set_user_attr("label", p.label())
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    try:
        if ctx.options.budget.hardware_limits:
            ctx.say(f"trial {trial.number}: probing {p.label()}")
            pm = probe(p, ctx)
            if _record(trial, ctx, "probe", pm):
                trial.set_user_attr("note", f"rejected before training: {_limits_broken(ctx, pm)}")
                raise optuna.TrialPruned()
        ctx.check_stop()
        try:
            model_dir, reused = trained_model(p, ctx, trial)
        except EarlyStop:
            trial.set_user_attr("note", "stopped by the pruner during training")
            raise optuna.TrialPruned() from None
        trial.set_user_attr("train_reused", reused)
        ctx.say(f"trial {trial.number}: building {p.label()}")
        build, built_reused = ctx.cache.built(p, model_dir, ctx.data_for(input_shape(p, ctx)),
                                              ctx.options.space, ctx.options.seed, _convert)  # fmt: skip
        trial.set_user_attr("build", str(build))
        trial.set_user_attr("build_reused", built_reused)
        ctx.check_stop()
        m = evaluate_build(build, ctx)
        if _record(trial, ctx, "build", m):
            trial.set_user_attr("note", f"over budget: {_limits_broken(ctx, m)}")
        return float(m["accuracy"])
    except optuna.TrialPruned:
        raise
    except Exception as e:
        trial.set_user_attr("error", _one_line(e))
        raise
    finally:
        _constrain(trial, ctx)
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))


def _convert(model: Any, data: Dataset, out: Path, cfg: Any) -> Any:
    from edgecnn.build import convert_model

    return convert_model(model, data, out, cfg)


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else ""
    return text if isinstance(e, EdgeCNNError) else f"{type(e).__name__}: {text}"
