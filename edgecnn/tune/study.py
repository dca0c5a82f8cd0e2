"""The Optuna study behind `edgecnn tune`: where it lives, whose it is, how it samples.

Constraints (how far a trial is over each limit) are set on the trial itself
(`Trial.set_constraint`), which every Optuna sampler that handles constraints reads.
Storage is SQLite in the output directory unless a URL is given; with a PostgreSQL URL
several machines work on one study at once (Optuna's RDB storage, with heartbeats so a
worker that dies leaves no trial "running" forever). A study records the data it was
measured on; resuming it with other data would mix accuracies that cannot be compared,
so that is refused.
"""

from __future__ import annotations

import os
import random
import re
import socket
import time
import warnings
from typing import Any

from edgecnn.errors import BadInput
from edgecnn.tune.options import TuneOptions

HEARTBEAT_S = 60
STARTUP_TRIALS = 5  # random draws before TPE models the space (Optuna's default is 10)


def redacted(url: str) -> str:
    """The URL without its password, for messages and provenance."""
    return re.sub(r"(//[^:/@]+):[^@]*@", r"\1:***@", url)


def open_storage(url: str, attempts: int = 5) -> Any:
    """Optuna's RDB storage; BadInput when it cannot be reached. Workers that start together
    on an empty database race to create Optuna's tables: the loser retries."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_S, engine_kwargs=_engine_kwargs(url)
            )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())
        except Exception as e:  # sqlalchemy's OperationalError, ArgumentError, missing driver...
            lines = str(e).strip().splitlines()
            raise BadInput(
                f"cannot open study storage {redacted(url)}: {lines[0] if lines else type(e).__name__}"
            ) from None
    raise AssertionError("unreachable")


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {}


def _sampler(o: TuneOptions, shared: bool) -> Any:
    import optuna

    # Workers sharing a study must not draw the same random start.
    seed = o.seed + (hash((socket.gethostname(), os.getpid())) % 10_000 if shared else 0)
    if o.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if o.sampler == "nsga2":
        population = max(4, min(10, o.trials // 3))
        return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    return optuna.samplers.TPESampler(
        n_startup_trials=min(STARTUP_TRIALS, max(1, o.trials // 3)),
        seed=seed, multivariate=True,
    )  # fmt: skip


def _owner(o: TuneOptions) -> dict[str, Any]:
    return {"data": o.data_key(), "device": o.device, "budget": o.budget.to_dict(),
            "space": o.space.to_dict()}  # fmt: skip


def _check_owner(study: Any, o: TuneOptions) -> None:
    mine = _owner(o)
    theirs = study.user_attrs
    if not theirs:
        for k, v in mine.items():
            study.set_user_attr(k, v)
        return
    for key in ("data", "device"):
        if theirs.get(key) != mine[key]:
            raise BadInput(
                f"study {study.study_name!r} belongs to {key} {theirs.get(key)!r}, not {mine[key]!r}; "
                "use another --study name"
            )


def open_study(o: TuneOptions) -> Any:
    """Create or (with --resume) continue the study; BadInput on a foreign or busy one."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = o.storage_url
    if url.startswith("sqlite:///"):
        o.out.mkdir(parents=True, exist_ok=True)
    storage = open_storage(url)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    old = existing.get(o.study_name)
    if old is not None and old.n_trials and not o.resume:
        raise BadInput(
            f"study {o.study_name!r} in {redacted(url)} already has {old.n_trials} trials; "
            "--resume continues it, --study NAME starts another"
        )
    study = optuna.create_study(
        storage=storage, study_name=o.study_name, load_if_exists=True, direction="maximize",
        sampler=_sampler(o, shared=o.storage is not None),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )  # fmt: skip
    _check_owner(study, o)
    return study


def counted(study: Any) -> int:
    """Trials that count towards --trials: completed and pruned ones (a crashed or
    interrupted trial does not; each process still stops after its share of attempts)."""
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=done))
