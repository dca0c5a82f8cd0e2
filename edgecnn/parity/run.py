"""`run_parity`: evaluate, diagnose, optionally fix, and write the reports (the CLI's engine
and the `edgecnn run` parity stage)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecnn.data import Dataset
from edgecnn.parity.evaluate import Thresholds, draw_confusions, evaluate_build, finish
from edgecnn.parity.report import REPORT_NAME, write_reports


def run_parity(
    build_dir: str | os.PathLike, data: str | Dataset, split: str = "test", max_drop: float = 1.0,
    min_agreement: float = 0.98, report: str | os.PathLike | None = None, limit: int | None = None,
    fix: bool = False, progress: Callable[[str], None] | None = None, other_data: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Writes `report` (Markdown; default BUILD_DIR/parity.md), the JSON beside it and
    confusion PNGs in a `parity/` folder next to it. Returns the report dict (`passed`,
    `failed`, per-artifact rows); raises BadInput on bad input. The caller decides what a
    failure means (the CLI exits 1)."""
    md = Path(report) if report else Path(build_dir) / REPORT_NAME
    plots = md.parent / "parity"
    e = evaluate_build(
        build_dir, data, split, Thresholds(max_drop, min_agreement), limit, progress=progress,
        other_data=other_data,
    )  # fmt: skip
    finish(e, plots, diagnose=True, progress=progress)
    if fix and not e.report["passed"]:
        from edgecnn.parity.fix import fix_build

        fix_build(e, data, progress=progress)
        draw_confusions(e, plots, fixed_only=True)
    md_path, js_path = write_reports(e.report, md)
    e.report["report"] = str(md_path)
    e.report["json"] = str(js_path)
    return e.report
