"""`edgecnn tune`: search architectures, widths, input sizes, pruning and precisions for the
most accurate build that fits a device's latency, size and memory budget (Optuna)."""

from edgecnn.tune.options import TuneOptions
from edgecnn.tune.run import tune
from edgecnn.tune.space import Budget, SearchSpace

__all__ = ["Budget", "SearchSpace", "TuneOptions", "tune"]
