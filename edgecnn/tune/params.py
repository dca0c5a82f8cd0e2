"""One trial's choices, drawn from the search space, and the cache keys they make.

A choice that does not apply (a width for a net without one, an input smaller than an
architecture accepts) is mapped to the nearest one that does, and the trial records what
it really built: the sampler sees a fixed set of choices per parameter, as Optuna needs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from edgecnn.tune.space import SearchSpace, supports_alpha, valid_size
from edgecnn.zoo.registry import ARCHS, is_transfer


@dataclass(frozen=True)
class TrialParams:
    arch: str
    alpha: float | None  # None: the architecture has no width multiplier
    size: int
    prune: float
    precision: str
    epochs: int
    fine_tune_layers: int  # transfer backbones with pretrained weights only

    def train_key(self, data_key: str, seed: int) -> str:
        """Trials that differ only in pruning or precision share one trained model."""
        fields = {"arch": self.arch, "alpha": self.alpha, "size": self.size, "epochs": self.epochs,
                  "fine_tune_layers": self.fine_tune_layers, "data": data_key, "seed": seed}  # fmt: skip
        return "train-" + _digest(fields)

    def pruned_key(self, data_key: str, seed: int) -> str:
        """Trials that differ only in precision share one pruned, fine-tuned model."""
        return "pruned-" + _digest({"train": self.train_key(data_key, seed), "prune": self.prune})

    def shape_key(self) -> str:
        """What the built model's latency, size and memory depend on (not its training)."""
        return "shape-" + _digest({"arch": self.arch, "alpha": self.alpha, "size": self.size,
                                   "prune": self.prune, "precision": self.precision})  # fmt: skip

    def label(self) -> str:
        width = f"-{self.alpha:g}" if self.alpha is not None else ""
        pruned = f" pruned {self.prune:.0%}" if self.prune else ""
        return f"{self.arch}{width}-{self.size} {self.precision}{pruned} {self.epochs}ep"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def fitted_size(arch: str, size: int, sizes: list[int]) -> int:
    """`size`, or the smallest listed size the architecture accepts (else its minimum)."""
    if valid_size(arch, size):
        return size
    bigger = sorted(s for s in sizes if valid_size(arch, s))
    return bigger[0] if bigger else ARCHS[arch].min_side


def sample(trial: Any, space: SearchSpace) -> TrialParams:
    """Draw one trial's parameters with Optuna (`trial` is an optuna.Trial)."""
    arch = trial.suggest_categorical("arch", space.archs)
    alpha = (
        trial.suggest_categorical("alpha", space.alphas)
        if len(space.alphas) > 1
        else space.alphas[0]
    )
    size = trial.suggest_categorical("size", space.sizes)
    prune = trial.suggest_categorical("prune", space.prune)
    precision = trial.suggest_categorical("precision", space.precisions)
    epochs = trial.suggest_categorical("epochs", space.epochs)
    ft = space.fine_tune_layers
    layers = trial.suggest_categorical("fine_tune_layers", ft) if len(ft) > 1 else ft[0]
    pretrained = is_transfer(arch) and space.weights != "none"
    return TrialParams(
        arch=arch, alpha=float(alpha) if supports_alpha(arch) else None,
        size=fitted_size(arch, int(size), space.sizes), prune=float(prune), precision=precision,
        epochs=int(epochs), fine_tune_layers=int(layers) if pretrained else 0,
    )  # fmt: skip
