"""The retrain report: old and new build side by side, per class, on both test sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgecnn.fsutil import atomic_write_text
from edgecnn.tables import format_table

REPORT_NAME = "retrain.md"
# "test": the old test split; "labels": the held-out part of the new labels.
COLUMNS = ["class", "test n", "test old", "test new", "labels n", "labels old", "labels new"]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2%}"


def _row(name: str, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {"class": name, "test n": a["n"], "test old": _pct(a["old"]), "test new": _pct(a["new"]),
            "labels n": b["n"], "labels old": _pct(b["old"]), "labels new": _pct(b["new"])}  # fmt: skip


def class_rows(gate: dict[str, Any]) -> list[dict[str, Any]]:
    a, b = gate["old_test"], gate["holdout"]
    rows = []
    for c, pa in a["per_class"].items():
        pb = b["per_class"][c]
        if not pa["n"] and not pb["n"]:
            continue
        rows.append(_row(c, pa, pb))
    rows.append(_row("all", a, b))
    return rows


def summary_lines(report: dict[str, Any]) -> list[str]:
    g, s = report["gate"], report["labels"]
    lines = [
        f"labels: {s['total']} ({s['train']} to learn from x{s['repeat']}, {s['val']} validation, "
        f"{s['holdout']} held out for the gate)"
        + (f"; new classes: {', '.join(report['new_classes'])}" if report["new_classes"] else ""),
        f"compared: {report['old_artifact']} of {report['old']} with {report['new_artifact']} "
        f"of {report['out']}",
        f"held-out labels: {g['holdout']['new_only_right']} right only by the new build, "
        f"{g['holdout']['old_only_right']} only by the old (McNemar p = {g['holdout']['p_value']:.3g})",
    ]
    if g["passed"]:
        lines.append(
            "gate: PASSED; deploy it with: edgecnn deploy " + report["out"] + " --host ..."
        )
    else:
        lines += ["gate: FAILED"] + [f"  - {r}" for r in g["reasons"]]
    return lines


def text(report: dict[str, Any]) -> str:
    table = format_table(class_rows(report["gate"]), COLUMNS)
    head = "per class, old build vs new: the old test split (test) and the held-out new labels (labels)"
    return "\n".join([head, table, "", *summary_lines(report)])


def markdown(report: dict[str, Any]) -> str:
    rows = class_rows(report["gate"])
    lines = [f"# retrain of {report['old']}", "", "| " + " | ".join(COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]  # fmt: skip
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join([*lines, "", *[f"- {ln}" for ln in summary_lines(report)], ""])


def write(report: dict[str, Any], build: Path) -> None:
    atomic_write_text(build / REPORT_NAME, markdown(report))
    atomic_write_text(build / "retrain.json", json.dumps(report, indent=2, default=str) + "\n")
