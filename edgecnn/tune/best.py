"""The chosen build: a normal build directory with its tune provenance, re-checked by parity
on the test split that no trial saw."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgecnn.data import Dataset
from edgecnn.fsutil import atomic_dir
from edgecnn.manifest import load_manifest
from edgecnn.tune.options import TuneOptions
from edgecnn.tune.study import redacted


def provenance(row: dict[str, Any], o: TuneOptions, n_trials: int) -> dict[str, Any]:
    return {
        "study": o.study_name, "storage": redacted(o.storage_url), "trial": row["trial"],
        "trials": n_trials, "sampler": o.sampler, "device": o.device, "data": o.data_key(),
        "params": row["params"], "budget": o.budget.to_dict(),
        "measured": {k: row.get(k) for k in ("accuracy", "float_accuracy", "drop_pts", "latency_ms",
                                              "latency_basis", "size_kb", "ram_mb", "ram_basis")},
        "accuracy_split": "validation (the manifest's accuracy fields were measured there too; "
                          "parity.md has the test split)",
    }  # fmt: skip


def export_best(
    row: dict[str, Any], o: TuneOptions, data: Dataset, n_trials: int
) -> dict[str, Any]:
    """Copy the trial's build to OUT/best, record where it came from, run parity on it."""
    from edgecnn.parity import run_parity

    dest = o.out / "best"
    with atomic_dir(dest) as tmp:
        shutil.copytree(Path(row["build"]), tmp, dirs_exist_ok=True)
        manifest = load_manifest(tmp)
        manifest.model_extra["tune"] = provenance(row, o, n_trials)
        manifest.save(tmp)
    max_drop = o.budget.max_drop if o.budget.max_drop is not None else 1.0
    report = run_parity(dest, data, split="test", max_drop=max_drop, report=dest / "parity.md")
    art = report["artifacts"][0] if report.get("artifacts") else {}
    return {
        "dir": str(dest.resolve()), "parity_passed": bool(report.get("passed")),
        "test_accuracy": art.get("top1"), "float_test_accuracy": report["reference"]["top1"],
        "test_agreement": art.get("agreement"), "parity_report": report.get("report"),
    }  # fmt: skip
