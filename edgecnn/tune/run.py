"""`tune`: the search loop and what it leaves in OUT.

OUT/tune.db      the study (unless --storage points elsewhere)
OUT/cache/       trained models and builds shared between trials
OUT/trials.csv   one row per finished trial; OUT/tune.json the whole summary
OUT/pareto.png   accuracy against latency
OUT/best/        the best feasible build, with parity.md on the test split
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from edgecnn.data import Dataset, load_dataset
from edgecnn.errors import CheckFailed, EdgeCNNError
from edgecnn.fsutil import atomic_write_text
from edgecnn.quiet import quiet_tensorflow
from edgecnn.tune.cache import TrialCache
from edgecnn.tune.options import TuneOptions
from edgecnn.tune.report import best_row, plot_pareto, trial_rows, verdict
from edgecnn.tune.study import counted, open_study, redacted
from edgecnn.tune.trial import TuneContext, run_trial, selection_view


class Interrupted(EdgeCNNError):
    """Ctrl-C: the finished trials are kept in the study."""

    exit_code = 130


def load_data(o: TuneOptions) -> Dataset:
    return load_dataset(o.data, val_split=o.val_split, test_split=o.test_split, seed=o.seed,
                        limit_train=o.limit_train)  # fmt: skip


@contextlib.contextmanager
def stop_on_signal(study: Any, ctx: TuneContext) -> Iterator[None]:
    """The first Ctrl-C (or SIGTERM) stops the search cleanly: the running trial ends at its
    next training batch or step and is recorded as failed, no new one starts. A second
    Ctrl-C interrupts at once. (A KeyboardInterrupt raised at a random point can be lost
    inside a library's callback; a flag cannot.)"""

    def handler(signum: int, frame: Any) -> None:
        if ctx.stop.is_set():
            raise KeyboardInterrupt
        ctx.stop.set()
        ctx.say("stopping after the current step (Ctrl-C again to stop at once)")
        study.stop()

    if threading.current_thread() is not threading.main_thread():
        yield  # signals only reach the main thread
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _optimize(study: Any, ctx: TuneContext, o: TuneOptions) -> None:
    import optuna

    left = o.trials - counted(study)
    if left <= 0:
        return
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def objective(trial: Any) -> float:
        import keras

        keras.backend.clear_session()  # each trial's graphs go with it
        return run_trial(trial, ctx)

    with stop_on_signal(study, ctx):
        _run_optimize(study, objective, left, states, o)


def _run_optimize(study: Any, objective: Any, left: int, states: tuple, o: TuneOptions) -> None:
    import optuna

    # n_trials bounds this process (crashed trials use it up too); the callback stops every
    # worker of a shared study once it holds o.trials finished trials.
    study.optimize(
        objective, n_trials=left, timeout=o.timeout_min * 60 if o.timeout_min else None,
        catch=(Exception,), callbacks=[optuna.study.MaxTrialsCallback(o.trials, states=states)],
        gc_after_trial=True,
    )  # fmt: skip


def _write_tables(o: TuneOptions, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    buf = io.StringIO()
    cols = [k for k in rows[0] if k != "params"] if rows else ["trial"]
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(o.out / "trials.csv", buf.getvalue())
    atomic_write_text(o.out / "tune.json", json.dumps(summary, indent=2, default=str))


def summarize(study: Any, o: TuneOptions, data: Dataset, interrupted: bool) -> dict[str, Any]:
    """The trials table, the Pareto plot, the verdict and (when one fits) OUT/best."""
    from edgecnn.tune.best import export_best

    rows = trial_rows(study.get_trials(deepcopy=False))
    best = best_row(rows)
    summary: dict[str, Any] = {
        "study": o.study_name, "storage": redacted(o.storage_url), "device": o.device,
        "data": o.data_key(), "budget": o.budget.to_dict(), "trials": rows,
        "verdict": verdict(rows, o.budget), "best": best, "interrupted": interrupted,
    }  # fmt: skip
    title = f"{o.study_name}: {len(rows)} trials on {o.device}"
    plot = plot_pareto(rows, o.budget, o.out / "pareto.png", title)
    summary["pareto_png"] = str(plot) if plot else None
    if best is not None and not interrupted:
        summary["best_build"] = export_best(best, o, data, len(rows))
    summary["problem"] = problem(summary, counted(study))
    _write_tables(o, rows, summary)
    return summary


def problem(summary: dict[str, Any], counted_trials: int) -> tuple[str, int] | None:
    """(what went wrong, exit code) or None: interrupted 130, nothing fits / parity fails 1."""
    if summary["interrupted"]:
        return (f"interrupted: {counted_trials} finished trials are kept in {summary['storage']}; "
                "run again with --resume to continue", Interrupted.exit_code)  # fmt: skip
    if summary["best"] is None:
        return summary["verdict"], CheckFailed.exit_code
    if not summary["best_build"]["parity_passed"]:
        return (f"{summary['verdict']}; but it fails parity on the test split "
                f"(see {summary['best_build']['parity_report']})", CheckFailed.exit_code)  # fmt: skip
    return None


def tune(o: TuneOptions, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or continue) the study to o.trials finished trials and summarize it.

    The summary's "problem" is None, or (message, exit code) when nothing fits the
    budget or the chosen build fails parity (1), or after Ctrl-C (130): the trials that
    finished are summarized and kept either way."""
    say = progress or (lambda msg: None)
    o.check()
    study = open_study(o)  # bad storage or a foreign study: before anything slow
    full = load_data(o)
    quiet_tensorflow()
    ctx = TuneContext(
        o, selection_view(full), TrialCache(o.out / "cache", o.data_key(), o.seed), say
    )
    ctx.cache.root.mkdir(parents=True, exist_ok=True)
    try:
        _optimize(study, ctx, o)
    except KeyboardInterrupt:
        ctx.stop.set()
    return summarize(study, o, full, ctx.stop.is_set())
