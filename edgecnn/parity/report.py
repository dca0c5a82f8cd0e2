"""Parity's output: the table rows the CLI and `edgecnn run` print, plain-words findings,
the Markdown report and its JSON twin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgecnn.fsutil import atomic_write_text

REPORT_NAME = "parity.md"


# "drop" is points of top-1 lost against the float reference: +0.50 means 0.5 points worse,
# a negative drop means the artifact scored better. Every table that shows it (the CLI's, the
# run stage's, the Markdown report's, the README's) says so in its header.
DROP_NOTE = (
    "drop: top-1 points lost vs the float reference (+0.50 = half a point worse, - = better)"
)
TABLE_COLUMNS = [
    "artifact",
    "top1",
    "top5",
    "drop",
    "agreement",
    "mean_kl",
    "max_abs_diff",
    "verdict",
]


def table_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    ref = report["reference"]
    rows = [
        {
            "artifact": f"{ref['artifact']} (reference)",
            "top1": f"{ref['top1']:.2%}",
            "top5": f"{ref['top5']:.2%}",
            "drop": "",
            "agreement": "",
            "mean_kl": "",
            "max_abs_diff": "",
            "verdict": "",
        }
    ]
    for r in report["artifacts"]:
        rows.append(
            {
                "artifact": r["artifact"],
                "top1": f"{r['top1']:.2%}",
                "top5": f"{r['top5']:.2%}",
                "drop": f"{r['drop']:+.2f}",
                "agreement": f"{r['agreement']:.2%}",
                "mean_kl": f"{r['mean_kl']:.2e}",
                "max_abs_diff": f"{r['max_abs_diff']:.3f}",
                "verdict": ("pass (fixed)" if r.get("fixed") else "pass")
                if r["passed"]
                else "FAIL",
            }
        )
    return rows


def other_data_line(report: dict[str, Any]) -> str:
    """What a report on another source than the training data's says about it."""
    o = report["other_data"]
    return (
        f"Evaluated on {o['evaluated_on']}, not on {o['trained_on']} (the training data): "
        "the figures measure the model on another source, as asked (--other-data)"
    )


def table_text(report: dict[str, Any]) -> str:
    """The artifact table with the sign convention of its drop column above it."""
    from edgecnn.tables import format_table

    return DROP_NOTE + "\n" + format_table(table_rows(report), TABLE_COLUMNS)


def findings_lines(report: dict[str, Any]) -> list[str]:
    """Plain-words lines for failing artifacts (reasons, recognised causes, worst layers)."""
    out = []
    for r in report["artifacts"]:
        if r["passed"]:
            out += [f"{r['artifact']} passes, but warning: {w}" for w in r.get("warnings", [])]
            continue
        out.append(f"{r['artifact']} FAILED: {'; '.join(r['reasons'])}")
        for f in r.get("diagnosis", {}).get("findings", []):
            out.append(f"  cause: {f['message']}")
        layers = r.get("diagnosis", {}).get("layers") or []
        if layers:
            worst = ", ".join(
                f"{lay['layer']} ({lay['op']}, error +{lay['added_error']:.3f})"
                for lay in layers[:3]
            )
            out.append(f"  largest quantization error: {worst}")
        if r.get("diagnosis", {}).get("note"):
            out.append(f"  note: {r['diagnosis']['note']}")
    fix = report.get("fix")
    if fix:
        out.append(f"fix: {fix['summary']}")
    return out


def markdown(report: dict[str, Any]) -> str:
    """The Markdown report: summary table, per-class accuracy, findings."""
    th = report["thresholds"]
    lines = [
        f"# Parity: {report.get('model') or Path(report['build']).name}",
        "",
        f"Data: `{report['data']}` {report['split']} split, {report['samples']} images. "
        f"Thresholds: top-1 drop <= {th['max_drop']:g} points, agreement >= {th['min_agreement']:.0%}. "
        f"Result: **{'PASS' if report['passed'] else 'FAIL'}**.",
        *(["", f"**{other_data_line(report)}**"] if report.get("other_data") else []),
        "",
        "| artifact | top-1 | top-5 | drop (pts lost; + = worse) | agreement | mean KL | max abs dp | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in table_rows(report):
        lines.append("| " + " | ".join(str(t[c]) for c in TABLE_COLUMNS) + " |")
    lines += ["", "## Per-class top-1", ""]
    names = ["reference", *[r["artifact"] for r in report["artifacts"]]]
    per = [report["reference"]["per_class"], *[r["per_class"] for r in report["artifacts"]]]
    lines.append("| class | " + " | ".join(names) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    for i, lab in enumerate(report["labels"]):
        if all(p[i] is None for p in per):
            continue  # a label space like ImageNet-1k: list only the classes the data has
        cells = ["-" if p[i] is None else f"{p[i]:.1%}" for p in per]
        lines.append(f"| {lab} | " + " | ".join(cells) + " |")
    if report.get("skipped"):
        lines += ["", f"Not evaluated (needs an Edge TPU): {', '.join(report['skipped'])}."]
    pngs = [(r["artifact"], r.get("confusion_png")) for r in report["artifacts"]]
    if any(p for _, p in pngs):
        lines += ["", "## Confusion matrices", ""]
        lines += [f"- {a}: `{Path(p).name}`" for a, p in pngs if p]
    found = findings_lines(report)
    if found:
        lines += ["", "## Failures", ""] + [f"- {line.strip()}" for line in found]
        for r in report["artifacts"]:
            layers = r.get("diagnosis", {}).get("layers") or []
            if layers:
                lines += [
                    "",
                    f"### Per-layer quantization error: {r['artifact']}",
                    "",
                    "| layer | op | relative error | added error | clipped |",
                    "|---|---|---|---|---|",
                ]
                for lay in layers[:10]:
                    lines.append(
                        f"| {lay['layer']} | {lay['op']} | {lay['rel_error']:.3f} | "
                        f"{lay['added_error']:+.3f} | {lay['clipped']:.1%} |"
                    )
    return "\n".join(lines) + "\n"


def write_reports(report: dict[str, Any], md_path: Path) -> tuple[Path, Path]:
    md_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(md_path, markdown(report))
    js = md_path.with_suffix(".json")
    atomic_write_text(js, json.dumps(report, indent=2, default=str) + "\n")
    return md_path, js
