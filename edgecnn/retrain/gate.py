"""The gate: a retrained build goes out only if it is better.

It passes only if
  * on the old test split it is no worse than the old build by more than the parity
    threshold (`max_drop` points of top-1, as `edgecnn parity`), and
  * on the held-out part of the new labels it is better than the old build, and not by
    luck: an exact one-sided McNemar test on the images where the two disagree must give
    p <= `alpha`. (A model retrained on shuffled labels is right about as often as the
    old one on those images, so it cannot pass by a lucky point or two.)

Both builds are scored the same way: the same artifact kind through the device runtime
(a training run, which has no artifact, is scored by its float Keras model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Scorer = Callable[[np.ndarray], list[str]]  # images -> predicted label names


@dataclass
class GateOptions:
    max_drop: float = 1.0  # points of top-1 on the old test split
    alpha: float = 0.05  # significance of "better" on the held-out labels


def mcnemar_p(new_right: np.ndarray, old_right: np.ndarray) -> float:
    """P(at least this many new-only wins | wins and losses equally likely): the exact
    McNemar test, a one-sided binomial test on the disagreements (SciPy, which scikit-learn
    brings to the host install)."""
    from scipy.stats import binomtest

    wins = int(np.sum(new_right & ~old_right))
    losses = int(np.sum(old_right & ~new_right))
    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)


def per_class(truth: list[str], pred: list[str], classes: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    t, p = np.array(truth, dtype=object), np.array(pred, dtype=object)
    for c in classes:
        m = t == c
        out[c] = {"n": int(m.sum()), "acc": float((p[m] == c).mean()) if m.any() else None}
    return out


def compare(x: np.ndarray, truth: list[str], old: Scorer, new: Scorer,
            classes: list[str]) -> dict[str, Any]:  # fmt: skip
    """Both models on the same images: accuracy, per class, and the paired test."""
    old_pred, new_pred = old(x), new(x)
    t = np.array(truth, dtype=object)
    old_right, new_right = (
        np.array(old_pred, dtype=object) == t,
        np.array(new_pred, dtype=object) == t,
    )
    return {
        "n": len(truth),
        "old": float(old_right.mean()) if len(t) else None,
        "new": float(new_right.mean()) if len(t) else None,
        "new_only_right": int(np.sum(new_right & ~old_right)),
        "old_only_right": int(np.sum(old_right & ~new_right)),
        "p_value": mcnemar_p(new_right, old_right),
        "per_class": {
            c: {"n": o["n"], "old": o["acc"], "new": n["acc"]}
            for (c, o), n in zip(
                per_class(truth, old_pred, classes).items(),
                per_class(truth, new_pred, classes).values(),
                strict=True,
            )
        },
    }


def verdict(old_test: dict[str, Any], holdout: dict[str, Any], opts: GateOptions) -> list[str]:
    """Why the new build may not go out (empty: it passes)."""
    reasons = []
    drop = (old_test["old"] - old_test["new"]) * 100
    if drop > opts.max_drop + 1e-9:
        reasons.append(
            f"old test split: {old_test['new']:.2%} vs {old_test['old']:.2%}, "
            f"{drop:.2f} points worse (at most {opts.max_drop:g} allowed)"
        )
    if holdout["new"] <= holdout["old"]:
        reasons.append(
            f"held-out labels: {holdout['new']:.2%} is not better than {holdout['old']:.2%}"
        )
    elif holdout["p_value"] > opts.alpha:
        reasons.append(
            f"held-out labels: {holdout['new']:.2%} vs {holdout['old']:.2%} could be luck "
            f"(McNemar p = {holdout['p_value']:.3g} > {opts.alpha:g}; label more images)"
        )
    return reasons


def run_gate(old_x: np.ndarray, old_truth: list[str], new_x: np.ndarray, new_truth: list[str],
             old: Scorer, new: Scorer, classes: list[str], opts: GateOptions) -> dict[str, Any]:  # fmt: skip
    a = compare(old_x, old_truth, old, new, classes)
    b = compare(new_x, new_truth, old, new, classes)
    reasons = verdict(a, b, opts)
    return {"passed": not reasons, "reasons": reasons, "max_drop": opts.max_drop,
            "alpha": opts.alpha, "old_test": a, "holdout": b}  # fmt: skip
