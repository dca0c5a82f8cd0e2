"""A latency model per (format, precision, threads), fitted to measurements on the target.

    t = t0 + sum over operators of (a_k + b_k * MACs + c_k * bytes moved)

with one (a, b, c) per operator kind k (edgecnn.runtime.opgraph.KINDS): a per-op fixed
cost, a cost per multiply-accumulate and a cost per byte read or written. MACs are counted
on output channels rounded up to the kernel's SIMD tile (XNNPACK's GEMMs work on blocks of
channels, so a 20-channel convolution costs what a 24-channel one does); the tile is
chosen by cross-validation. The fit is non-negative least squares on *relative* error,
because the corpus spans 20 us to 20 ms and a model that is 20% off at either end is
equally wrong. This is nn-Meter's idea (per-kernel models fitted on the device) with a
linear model per kernel kind instead of its random forests: it needs fewer measurements,
extrapolates sanely, and its coefficients say where the time goes.

Fitting needs scipy (host side); predicting is a dot product (works anywhere).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.runtime.opgraph import FREE, KINDS, Op

TILES = (1, 4, 8, 16)
PARTS = ("n", "macs", "bytes")
FOLDS = 5
WITHIN = 0.15  # the bar: estimates within +-15% of the measurement


def feature_names() -> list[str]:
    return ["t0"] + [f"{k}:{p}" for k in KINDS for p in PARTS]


def _tiled(op: Op, tile: int) -> float:
    if tile <= 1 or not op.channels_out:
        return float(op.macs)
    padded = math.ceil(op.channels_out / tile) * tile
    return op.macs * padded / op.channels_out


def op_features(op: Op, tile: int) -> dict[str, float]:
    if op.kind == FREE:
        return {}
    return {
        f"{op.kind}:n": 1.0,
        f"{op.kind}:macs": _tiled(op, tile),
        f"{op.kind}:bytes": float(op.bytes_moved),
    }


def features(ops: Iterable[Op], tile: int) -> np.ndarray:
    """The model's feature vector of one network."""
    names = feature_names()
    index = {n: i for i, n in enumerate(names)}
    v = np.zeros(len(names))
    v[0] = 1.0
    for op in ops:
        for name, value in op_features(op, tile).items():
            v[index[name]] += value
    return v


# Features are scaled to unit size before fitting (MACs are ~1e8, counts ~10) so that the
# solver's tolerance means the same for every coefficient.
def _scale(x: np.ndarray) -> np.ndarray:
    s = np.abs(x).max(axis=0)
    s[s == 0] = 1.0
    return s


def _nnls_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    s = _scale(x)
    coef, _ = nnls((x / s) / y[:, None], np.ones(len(y)), maxiter=50 * x.shape[1])
    return coef / s


@dataclass
class KernelModel:
    """One fitted (format, precision, threads) model and how well it held out."""

    coef: dict[str, float]
    tile: int
    samples: int
    cv: dict[str, float] = field(default_factory=dict)  # cross-validated relative errors

    def predict_ops(self, ops: Iterable[Op]) -> float:
        """Milliseconds for a network with these operators."""
        return self.coef.get("t0", 0.0) + sum(self.op_ms(op) for op in ops)

    def op_ms(self, op: Op) -> float:
        return sum(
            self.coef.get(name, 0.0) * value for name, value in op_features(op, self.tile).items()
        )

    def to_dict(self) -> dict[str, Any]:
        return {"tile": self.tile, "samples": self.samples, "cv": self.cv,
                "coef": {k: v for k, v in self.coef.items() if v}}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KernelModel:
        return cls({str(k): float(v) for k, v in d["coef"].items()}, int(d["tile"]), int(d.get("samples", 0)),
                   {str(k): float(v) for k, v in (d.get("cv") or {}).items()})  # fmt: skip


def error_summary(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    rel = (pred - y) / y
    a = np.abs(rel)
    return {
        "median_abs": float(np.median(a)),
        "p90_abs": float(np.percentile(a, 90)),
        "within_15": float((a <= WITHIN).mean()),
        "max_abs": float(a.max()),
    }


def _cv_predictions(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Out-of-fold predictions, folds by network (a net's artifacts never straddle folds)."""
    nets = np.unique(groups)
    fold_of = {n: i % FOLDS for i, n in enumerate(np.random.default_rng(0).permutation(nets))}
    folds = np.array([fold_of[g] for g in groups])
    pred = np.zeros_like(y)
    for f in range(FOLDS):
        test = folds == f
        if test.any() and (~test).sum() >= x.shape[1] // 2:
            pred[test] = x[test] @ _nnls_relative(x[~test], y[~test])
    return pred


def fit(samples: list[tuple[list[Op], float, str]], tiles: tuple[int, ...] = TILES) -> KernelModel:
    """Fit one kernel model to (operators, measured ms, network name) samples, choosing
    the SIMD tile whose cross-validated error is lowest."""
    y = np.array([s[1] for s in samples])
    groups = np.array([s[2] for s in samples])
    best: tuple[float, int, dict[str, float]] | None = None
    for tile in tiles:
        x = np.stack([features(s[0], tile) for s in samples])
        cv = error_summary(_cv_predictions(x, y, groups), y)
        if best is None or cv["median_abs"] < best[0]:
            best = (cv["median_abs"], tile, cv)
    _, tile, cv = best  # type: ignore[misc]
    x = np.stack([features(s[0], tile) for s in samples])
    coef = _nnls_relative(x, y)
    return KernelModel(
        dict(zip(feature_names(), coef.tolist(), strict=True)), tile, len(samples), cv
    )


def breakdown(model: KernelModel, ops: list[Op], top: int = 5) -> list[dict[str, Any]]:
    """The operators the model says cost most (per-op estimates, for "where the time goes")."""
    rows = [
        {"op": op.name, "kind": op.kind, "macs": op.macs, "est_ms": model.op_ms(op)}
        for op in ops
        if op.kind != FREE
    ]
    return sorted(rows, key=lambda r: -r["est_ms"])[:top]
