"""`edgecnn run`: the stages a recipe names, in order, each feeding the next.

Layout of a run directory:  OUT/train (training output), OUT/build (convert
output, parity and bench reports); with a tune stage instead, OUT/tune (the study, its
trials) and OUT/tune/best (the chosen build, which parity and bench then use).  Each stage returns a summary dict and a
short table line for the final summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecnn.errors import BadInput, CheckFailed
from edgecnn.recipe.schema import Recipe

StageFn = Callable[[Recipe, Path, dict[str, Any]], dict[str, Any]]


def stage_train(recipe: Recipe, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    from edgecnn.train import TrainConfig, train

    cfg = TrainConfig.from_recipe(recipe)
    cfg.verbose = state.get("verbose", 2)
    summary = train(cfg, out / "train")
    state["model_dir"] = out / "train"
    if summary["epochs_run"]:
        how = f"after {summary['epochs_run']} epochs ({summary['seconds_per_epoch']:.2f} s/epoch)"
    else:
        how = "(pretrained, not trained)"
    return {"result": f"test accuracy {summary['test_accuracy']:.2%} {how}", "details": summary}


def stage_convert(recipe: Recipe, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    from edgecnn.build import convert_from_recipe

    report = convert_from_recipe(recipe, state["model_dir"], out / "build")
    state["build_dir"] = out / "build"
    sizes = ", ".join(f"{r['artifact']} {r['size'] / 1e6:.3f} MB" for r in report["artifacts"])
    return {
        "result": f"{len(report['artifacts'])} artifacts in {out / 'build'}: {sizes}",
        "details": report,
    }


def stage_tune(recipe: Recipe, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Search (resuming the recipe's study when it exists); the best build feeds what follows."""
    from edgecnn.tables import format_table
    from edgecnn.tune import TuneOptions, tune
    from edgecnn.tune.report import TABLE_COLUMNS

    summary = tune(TuneOptions.from_recipe(recipe, out / "tune"))
    state["build_dir"] = out / "tune" / "best"
    problem = summary["problem"]
    return {
        "status": "failed" if problem else "ok",
        "result": problem[0] if problem else summary["verdict"],
        "details": summary,
        "table": format_table(summary["trials"], TABLE_COLUMNS),
    }


def parity_line(report: dict[str, Any]) -> str:
    rows = report.get("artifacts", [])
    worst = max((r.get("drop", 0.0) for r in rows), default=0.0)
    agree = min((r.get("agreement", 1.0) for r in rows), default=1.0)
    verdict = "pass" if report.get("passed") else "FAIL"
    return (
        f"{verdict}: {len(rows)} artifacts vs float top-1 {report['reference']['top1']:.2%}, "
        f"worst drop {worst:+.2f} pts (+ = worse), min agreement {agree:.2%}"
    )


def stage_parity(recipe: Recipe, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    from edgecnn.parity import run_parity, table_text

    p = recipe["parity"]
    build = state["build_dir"]
    report = run_parity(
        build, recipe["data"]["name"], split=p["split"], max_drop=p["max_drop"],
        min_agreement=p["min_agreement"], report=build / "parity.md",
    )  # fmt: skip
    state["parity"] = report
    return {
        "status": "ok" if report["passed"] else "failed",
        "result": parity_line(report),
        "details": report,
        "table": table_text(report),
    }


def stage_bench(recipe: Recipe, out: Path, state: dict[str, Any]) -> dict[str, Any]:
    """The same measurement, gate and histogram as `edgecnn bench`."""
    from edgecnn.bench.api import BenchOptions, bench_build
    from edgecnn.bench.report import check_gates, summarize

    b = recipe["bench"]
    data = recipe["data"]["name"] if b["min_accuracy"] is not None else None
    opts = BenchOptions(
        device=b["device"], runs=b["runs"], warmup=b["warmup"], threads=b["threads"], data=data
    )
    rows = bench_build(state["build_dir"], opts)
    shown = summarize(rows, state["build_dir"])
    fastest = min((r for r in rows if r.get("ms")), key=lambda r: r["ms"], default=None)
    line = f"{len(rows)} artifacts on {b['device']}"
    if fastest:
        line += f"; fastest {fastest['format']} {fastest['precision']} {fastest['ms']:.3f} ms"
    result = {
        "result": line,
        "details": rows,
        "table": shown["text"],
        "histogram": shown["histogram"],
    }
    try:
        check_gates(rows, b["min_accuracy"])
    except CheckFailed as e:
        result.update(status="failed", result=f"{line}: {e}")
    return result


STAGE_FUNCS: dict[str, StageFn] = {
    "train": stage_train,
    "tune": stage_tune,
    "convert": stage_convert,
    "parity": stage_parity,
    "bench": stage_bench,
}


def run_recipe(
    recipe: Recipe, out: str | Path, stages: list[str] | None = None, verbose: int = 2
) -> list[dict[str, Any]]:
    """Run the recipe's stages; stop at the first one that fails and report it."""
    out = Path(out)
    wanted = stages or recipe.stages
    for s in wanted:
        if s not in recipe.stages:
            raise BadInput(
                f"stage {s!r} is not in recipe {recipe.name!r} (it has: {', '.join(recipe.stages)})"
            )
        if s not in STAGE_FUNCS:
            raise BadInput(f"stage {s!r} is not available in this version of edgecnn")
    state: dict[str, Any] = {
        "verbose": verbose,
        "model_dir": out / "train",
        "build_dir": out / "build",
    }
    results: list[dict[str, Any]] = []
    for s in wanted:
        t0 = time.perf_counter()
        try:
            res = STAGE_FUNCS[s](recipe, out, state)
            status = res.pop("status", "ok")
        except CheckFailed as e:
            res, status = {"result": str(e)}, "failed"
        results.append(
            {"stage": s, "status": status, "seconds": round(time.perf_counter() - t0, 1), **res}
        )
        if status != "ok":
            break
    return results
