"""The search space of `edgecnn tune`, and the budget a build must fit.

Defaults cover what a user would try by hand for a small classifier on a camera: the seed
CNNs and the MobileNets, their width, the input size, how much to prune, the precision
and how long to train. Every choice is checked before a trial runs: an unknown
architecture, an impossible size or a budget of zero is a one-line error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgecnn.errors import BadInput
from edgecnn.zoo.registry import ARCHS, get_arch

PRECISIONS = ("int8", "float16", "int8-mixed")  # int8-mixed: the worst layers stay in float
TRANSFER_WEIGHTS = ("none", "imagenet")


@dataclass
class SearchSpace:
    archs: list[str] = field(
        default_factory=lambda: ["cnn_small", "cnn_mnist", "mobilenet_v2", "mobilenet"]
    )
    alphas: list[float] = field(default_factory=lambda: [0.35, 0.5, 0.75, 1.0])
    sizes: list[int] = field(default_factory=lambda: [28, 32, 48, 64, 96])
    prune: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75])
    precisions: list[str] = field(default_factory=lambda: ["int8", "float16"])
    epochs: list[int] = field(default_factory=lambda: [3, 6, 10])
    weights: str = "none"  # transfer backbones: "imagenet" (needs a network) or "none"
    fine_tune_layers: list[int] = field(default_factory=lambda: [0])  # pretrained backbones
    fine_tune_epochs: int = 2  # after the head is trained, with fine_tune_layers unfrozen
    prune_fine_tune_epochs: int = 2  # after structured pruning
    mixed_float_layers: int = 2  # int8-mixed: this many of the worst layers stay in float

    def check(self) -> SearchSpace:
        for a in self.archs:
            get_arch(a)  # BadInput naming the choices
        if not self.archs:
            raise BadInput("the search space has no architecture")
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise BadInput(
                f"unknown precision {', '.join(bad) or '(none)'} in the search space; choose from {', '.join(PRECISIONS)}"
            )
        if any(not 0.0 <= r < 1.0 for r in self.prune):
            raise BadInput(f"pruning ratios must be in [0, 1), got {self.prune}")
        if any(e < 1 for e in self.epochs):
            raise BadInput(f"epochs must be at least 1, got {self.epochs}")
        if any(s < 8 for s in self.sizes) or any(not 0 < a <= 2 for a in self.alphas):
            raise BadInput(
                f"input sizes must be >= 8 and alphas in (0, 2], got {self.sizes} / {self.alphas}"
            )
        if min(self.fine_tune_layers, default=0) < 0 or self.fine_tune_epochs < 0:
            raise BadInput("fine-tune layers and epochs must be >= 0")
        if self.prune_fine_tune_epochs < 0 or self.mixed_float_layers < 1:
            raise BadInput("prune_fine_tune_epochs must be >= 0 and mixed_float_layers >= 1")
        for name in ("alphas", "sizes", "prune", "precisions", "epochs", "fine_tune_layers"):
            if not getattr(self, name):
                raise BadInput(f"the search space's {name} list is empty")
        if self.weights not in TRANSFER_WEIGHTS:
            raise BadInput(f"space weights must be one of {TRANSFER_WEIGHTS}, got {self.weights!r}")
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSpace:
        known = set(asdict(cls()))
        unknown = sorted(set(d) - known)
        if unknown:
            raise BadInput(
                f"unknown search-space field {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        return cls(**d).check()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Budget:
    max_latency_ms: float | None = None
    max_size_kb: float | None = None
    max_ram_mb: float | None = None
    max_drop: float | None = None  # points the artifact may lose against its float model

    def check(self) -> Budget:
        for name, v in asdict(self).items():
            if v is not None and not v > 0:
                raise BadInput(f"--{name.replace('_', '-')} must be positive, got {v:g}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def hardware_limits(self) -> bool:
        """Limits an untrained model of the same shape already shows (checked before training)."""
        return any(v is not None for v in (self.max_latency_ms, self.max_size_kb, self.max_ram_mb))

    def limits(self) -> dict[str, float]:
        named = {"latency_ms": self.max_latency_ms, "size_kb": self.max_size_kb,
                 "ram_mb": self.max_ram_mb, "drop_pts": self.max_drop}  # fmt: skip
        return {k: v for k, v in named.items() if v is not None}

    def violations(self, m: dict[str, Any]) -> dict[str, float]:
        """How far a trial's measurements are over each limit (<= 0: within it)."""
        return {k: float(m[k]) - lim for k, lim in self.limits().items() if m.get(k) is not None}

    def constraints(self, m: dict[str, Any]) -> list[float]:
        """Optuna's constraint vector, one entry per limit in a fixed order (<= 0: met;
        a figure not measured yet counts as met)."""
        over = self.violations(m)
        return [over.get(k, 0.0) for k in self.limits()]


def supports_alpha(arch: str) -> bool:
    return ARCHS[arch].has_alpha


def valid_size(arch: str, size: int) -> bool:
    return size >= ARCHS[arch].min_side
