"""A latency model per (format, precision, threads), fitted to measurements on the target.

    t = t0 + sum over operators of (a_k + b_k * MACs + c_k * bytes moved
                                    + d_k * weight bytes + e_k * int8 output pixels)

with one (a, b, c, d, e) per operator kind k (edgecnn.runtime.opgraph.KINDS): a per-op
fixed cost, a cost per multiply-accumulate, per byte read or written, an extra cost per
byte of weights (large kernels miss the caches) and, for int8 operators with channels, a
cost per output pixel (XNNPACK's int8 kernels spend ~30 ns per output pixel on x86 whatever
the channel count up to ~32: the reason small int8 nets are no faster than float32 there).
Kinds hide kernels of different speed (an int8 ADD and a HARD_SWISH are both "eltwise"; a
strided 3x3 conv is not a 1-stride one), so each op variant seen in enough corpus networks
gets its own costs on top of its kind's; cross-validation decides whether they help. A
variant the fit never saw costs what the kind costs in a fit without variants (kept as
"kind.*"). MACs are counted on output channels rounded up to the kernel's SIMD tile
(XNNPACK's GEMMs work on blocks of channels, so a 20-channel convolution costs what a
24-channel one does); the tile is
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

TILES = (1, 4, 8, 16, 32)  # cross-validation picks 32 for float32 on an AVX-512 host
PARTS = ("n", "macs", "bytes", "wbytes", "px")
FOLDS = 5
WITHIN = 0.15  # the bar: estimates within +-15% of the measurement
MIN_NETS = 3  # an op variant in fewer corpus networks than this gets no costs of its own

Sample = tuple[list[Op], float, str]  # (operators, measured ms, network name)


def feature_names(samples: list[Sample] | None = None) -> list[str]:
    """The kinds' features, and the variants' seen in at least MIN_NETS of `samples`."""
    base = ["t0"] + [f"{k}:{p}" for k in KINDS for p in PARTS]
    nets_of: dict[str, set[str]] = {}
    for ops, _, net in samples or []:
        for op in ops:
            for name in op_features(op, 1):
                if "." in name.split(":")[0]:
                    nets_of.setdefault(name, set()).add(net)
    return base + sorted(n for n, nets in nets_of.items() if len(nets) >= MIN_NETS)


def _tiled(op: Op, tile: int) -> float:
    if tile <= 1 or not op.channels_out:
        return float(op.macs)
    padded = math.ceil(op.channels_out / tile) * tile
    return op.macs * padded / op.channels_out


def op_features(op: Op, tile: int) -> dict[str, float]:
    if op.kind == FREE:
        return {}
    parts = {"n": 1.0, "macs": _tiled(op, tile), "bytes": float(op.bytes_moved),
             "wbytes": float(op.weight_elems * op.elem_bytes)}  # fmt: skip
    if op.elem_bytes == 1 and op.channels_out:
        parts["px"] = op.out_elems / op.channels_out
    out = {f"{op.kind}:{p}": v for p, v in parts.items()}
    if op.variant:
        out.update({f"{op.kind}.{op.variant}:{p}": v for p, v in parts.items()})
    return out


def network_features(ops: Iterable[Op], tile: int) -> dict[str, float]:
    """Every feature of one network, by name (t0 = 1)."""
    out = {"t0": 1.0}
    for op in ops:
        for name, value in op_features(op, tile).items():
            out[name] = out.get(name, 0.0) + value
    return out


def features(ops: Iterable[Op], tile: int, names: list[str] | None = None) -> np.ndarray:
    """The feature vector of one network over `names` (the kinds' features by default)."""
    feats = network_features(ops, tile)
    return np.array([feats.get(n, 0.0) for n in names or feature_names()])


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
    variants: tuple[str, ...] = ()  # "kind.variant" with costs of their own

    def predict_ops(self, ops: Iterable[Op]) -> float:
        """Milliseconds for a network with these operators."""
        return self.coef.get("t0", 0.0) + sum(self.op_ms(op) for op in ops)

    def op_ms(self, op: Op) -> float:
        return sum(self.coef.get(name, 0.0) * value for name, value in self._features(op).items())

    def _features(self, op: Op) -> dict[str, float]:
        feats = op_features(op, self.tile)
        if not self.variants or not op.variant or f"{op.kind}.{op.variant}" in self.variants:
            return feats
        prefix = f"{op.kind}:"  # a variant the fit never saw: the kind's fallback costs
        return {
            f"{op.kind}.*:{n[len(prefix) :]}": v for n, v in feats.items() if n.startswith(prefix)
        }

    def scaled(self, factor: float, cv: dict[str, float] | None = None) -> KernelModel:
        """The same model on a device `factor` times slower."""
        return KernelModel({k: v * factor for k, v in self.coef.items()}, self.tile, self.samples,
                           self.cv if cv is None else cv, self.variants)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"tile": self.tile, "samples": self.samples, "cv": self.cv, "variants": list(self.variants),
                "coef": {k: v for k, v in self.coef.items() if v}}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KernelModel:
        return cls({str(k): float(v) for k, v in d["coef"].items()}, int(d["tile"]), int(d.get("samples", 0)),
                   {str(k): float(v) for k, v in (d.get("cv") or {}).items()},
                   tuple(str(v) for v in d.get("variants") or ()))  # fmt: skip


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


def fit(samples: list[Sample], tiles: tuple[int, ...] = TILES) -> KernelModel:
    """Fit one kernel model to (operators, measured ms, network name) samples, choosing the
    SIMD tile, and whether op variants get costs of their own, by cross-validated error."""
    y = np.array([s[1] for s in samples])
    groups = np.array([s[2] for s in samples])
    best: tuple[float, int, list[str], dict[str, float]] | None = None
    for names in _candidate_names(samples):
        for tile in tiles:
            x = np.stack([features(s[0], tile, names) for s in samples])
            cv = error_summary(_cv_predictions(x, y, groups), y)
            if best is None or cv["median_abs"] < best[0]:
                best = (cv["median_abs"], tile, names, cv)
    _, tile, names, cv = best  # type: ignore[misc]
    coef = _fit_coef(samples, y, tile, names)
    variants = tuple(sorted({n.split(":")[0] for n in names if "." in n.split(":")[0]}))
    if variants:  # the fallback for variants it never saw: the kinds' costs without variants
        for name, value in _fit_coef(samples, y, tile, feature_names()).items():
            if ":" in name:
                kind, part = name.split(":")
                coef[f"{kind}.*:{part}"] = value
    return KernelModel(coef, tile, len(samples), cv, variants)


def _fit_coef(
    samples: list[Sample], y: np.ndarray, tile: int, names: list[str]
) -> dict[str, float]:
    x = np.stack([features(s[0], tile, names) for s in samples])
    return dict(zip(names, _nnls_relative(x, y).tolist(), strict=True))


def _candidate_names(samples: list[Sample]) -> list[list[str]]:
    kinds, variants = feature_names(), feature_names(samples)
    return [kinds, variants] if len(variants) > len(kinds) else [kinds]


def breakdown(model: KernelModel, ops: list[Op], top: int = 5) -> list[dict[str, Any]]:
    """The operators the model says cost most (per-op estimates, for "where the time goes")."""
    rows = [
        {"op": op.name, "kind": op.kind, "macs": op.macs, "est_ms": model.op_ms(op)}
        for op in ops
        if op.kind != FREE
    ]
    return sorted(rows, key=lambda r: -r["est_ms"])[:top]
