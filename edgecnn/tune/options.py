"""What `edgecnn tune` is asked to do, checked before anything slow (no TensorFlow here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.bench.devices import get_device
from edgecnn.data.registry import check_dataset_name
from edgecnn.errors import BadInput
from edgecnn.tune.space import Budget, SearchSpace

SAMPLERS = ("tpe", "nsga2", "random")
SPACE_FIELDS = (
    "archs",
    "alphas",
    "sizes",
    "prune",
    "precisions",
    "epochs",
    "weights",
    "fine_tune_layers",
)
DEFAULT_TRIALS = 20


@dataclass
class TuneOptions:
    data: str
    out: Path
    device: str = "host"
    host: str | None = None  # USER@ADDR: measure on the device over SSH
    known_hosts: str | None = None
    identity: str | None = None
    remote_python: str = "python3"
    budget: Budget = field(default_factory=Budget)
    space: SearchSpace = field(default_factory=SearchSpace)
    trials: int = DEFAULT_TRIALS  # finished trials the study should hold
    timeout_min: float | None = None
    storage: str | None = None  # default: sqlite:///OUT/tune.db
    study: str | None = None  # default: tune-<data>-<device>
    resume: bool = False
    sampler: str = "tpe"
    seed: int = 0
    limit_train: int | None = None
    val_split: float = 0.1
    test_split: float = 0.2
    bench_runs: int = 50
    bench_min_s: float = 0.5  # per measurement: enough for a stable median of a small model

    def check(self) -> TuneOptions:
        check_dataset_name(self.data)
        self.device = get_device(self.device).name
        self.budget.check()
        self.space.check()
        if self.trials < 1:
            raise BadInput(f"--trials must be at least 1, got {self.trials}")
        if self.timeout_min is not None and not self.timeout_min > 0:
            raise BadInput(f"--timeout-min must be positive, got {self.timeout_min:g}")
        if self.sampler not in SAMPLERS:
            raise BadInput(f"unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if self.limit_train is not None and self.limit_train < 10:
            raise BadInput(f"--limit-train must be at least 10, got {self.limit_train}")
        if self.bench_runs < 1 or self.bench_min_s < 0:
            raise BadInput("bench runs must be >= 1 and the minimum time >= 0 s")
        self.out = Path(self.out)
        return self

    @classmethod
    def from_recipe(cls, recipe: Any, out: Path) -> TuneOptions:
        """The recipe's [tune] section, on its [data]."""
        d, t = recipe["data"], recipe["tune"]
        space = {k: t[k] for k in SPACE_FIELDS if t.get(k) is not None}
        budget = Budget(
            **{k: t[k] for k in ("max_latency_ms", "max_size_kb", "max_ram_mb", "max_drop")}
        )
        return cls(
            data=d["name"], out=out, device=t["device"], host=t["host"], budget=budget,
            space=SearchSpace.from_dict(space), trials=t["trials"], timeout_min=t["timeout_min"],
            storage=t["storage"], study=t["study"], resume=True, sampler=t["sampler"],
            seed=d["seed"], limit_train=d["limit_train"], val_split=d["val_split"], test_split=d["test_split"],
        )  # fmt: skip

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out / 'tune.db').resolve()}"

    @property
    def study_name(self) -> str:
        return self.study or f"tune-{self.data.split(':')[0]}-{self.device}"

    def data_key(self) -> str:
        """Which data a study's accuracies are measured on: a study is never mixed across them."""
        limit = f" limit_train={self.limit_train}" if self.limit_train else ""
        return f"{self.data} val_split={self.val_split:g} test_split={self.test_split:g} seed={self.seed}{limit}"
