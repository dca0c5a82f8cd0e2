"""`edgecnn run`: the stages a recipe names, in order, each feeding the next.

Layout of a run directory:  OUT/train (training output), OUT/build (convert
output, parity and bench reports).  Each stage returns a summary dict and a
short table line for the final summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecnn.errors import BadInput, CheckFailed
from edgecnn.recipe import Recipe

StageFn = Callable[[Recipe, Path, dict[str, Any]], dict[str, Any]]


def stage_train(recipe: Recipe, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    from edgecnn.train import TrainConfig, train

    cfg = TrainConfig.from_recipe(recipe)
    cfg.verbose = state.get("verbose", 2)
    summary = train(cfg, out / "train")
    state["model_dir"] = out / "train"
    return {
        "result": f"test accuracy {summary['test_accuracy']:.2%} after {summary['epochs_run']} epochs "
        f"({summary['seconds_per_epoch']:.2f} s/epoch)",
        "details": summary,
    }


STAGE_FUNCS: dict[str, StageFn] = {"train": stage_train}


def run_recipe(recipe: Recipe, out: str | Path, stages: list[str] | None = None, verbose: int = 2) -> list[dict[str, Any]]:
    """Run the recipe's stages; stop at the first one that fails and report it."""
    out = Path(out)
    wanted = stages or recipe.stages
    for s in wanted:
        if s not in recipe.stages:
            raise BadInput(f"stage {s!r} is not in recipe {recipe.name!r} (it has: {', '.join(recipe.stages)})")
        if s not in STAGE_FUNCS:
            raise BadInput(f"stage {s!r} is not available in this version of edgecnn")
    state: dict[str, Any] = {"verbose": verbose, "model_dir": out / "train", "build_dir": out / "build"}
    results: list[dict[str, Any]] = []
    for s in wanted:
        t0 = time.perf_counter()
        try:
            res = STAGE_FUNCS[s](recipe, out, state)
            status = "ok"
        except CheckFailed as e:
            res, status = {"result": str(e)}, "failed"
        results.append({"stage": s, "status": status, "seconds": round(time.perf_counter() - t0, 1), **res})
        if status != "ok":
            break
    return results
