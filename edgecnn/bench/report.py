"""Bench output: an Ultralytics-like table (one row per artifact), the accuracy gate, and a
latency histogram PNG when matplotlib is installed (a device-only install has none: the
table and the JSON come first and never depend on it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.errors import CheckFailed
from edgecnn.plots import can_plot
from edgecnn.tables import format_table

STATUS = {"ok": "✅", "failed": "❌", "estimate": "≈ est."}


def table_rows(
    rows: list[dict[str, Any]], several_models: bool = False
) -> tuple[list[dict], list[str]]:
    """Rows and columns for `format_table`; estimates and measurements keep their own columns."""
    out = []
    measured = any(r.get("mode") in ("local", "ssh") for r in rows)
    for r in rows:
        acc = r.get("accuracy")
        row = {
            "model": r.get("model"),
            "format": r.get("format"),
            "precision": r.get("precision"),
            "status": STATUS.get(r.get("status", ""), r.get("status")),
            "size_MB": round(r.get("size_mb") or 0.0, 3),
            "accuracy": None if acc is None else round(acc, 4),
            "ms": r.get("ms"),
            "FPS": r.get("fps"),
        }
        if measured:
            row.update(
                p50=r.get("p50_ms"),
                p99=r.get("p99_ms"),
                std=r.get("std_ms"),
                init_ms=r.get("init_ms"),
                first_ms=r.get("first_ms"),
                RSS_MB=r.get("peak_rss_mb"),
                est_ms=r.get("estimate_ms"),
            )
        else:
            row.update(
                MMACs=(r.get("macs") or 0) / 1e6 if r.get("macs") else None, basis=r.get("basis")
            )
        if r.get("status") == "failed":
            row["error"] = r.get("error")
        out.append(row)
    cols = list(out[0].keys()) if out else []
    for extra in ("error",):
        if any(extra in o for o in out) and extra not in cols:
            cols.append(extra)
    if not several_models:
        cols.remove("model")
    return out, cols


def headline(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    r = rows[0]
    mode = r.get("mode")
    if mode == "estimate":
        return (
            f"ESTIMATE for {r['device']} (not measured): per-layer MACs x calibrated device throughput, "
            "see edgecnn/bench/devices.py for the sources"
        )
    where = r.get("remote") or "this machine"
    return f"measured on {r['device']} ({where}), one process per artifact"


EST_MS_NOTE = (
    "est_ms: what the {device} profile's estimate (per-layer MACs x calibrated throughput, "
    "as --estimate prints) predicts for ms, shown beside the measurement to check the estimate"
)


def render(rows: list[dict[str, Any]], several_models: bool = False) -> str:
    table, cols = table_rows(rows, several_models)
    text = headline(rows) + "\n" + format_table(table, cols)
    if "est_ms" in cols and any(r.get("estimate_ms") is not None for r in rows):
        text += "\n" + EST_MS_NOTE.format(device=rows[0].get("device"))
    return text


def check_gates(rows: list[dict[str, Any]], min_accuracy: float | None = None) -> None:
    """CheckFailed when an artifact failed to run or scored below `min_accuracy`."""
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        raise CheckFailed(
            f"{len(failed)} artifact(s) failed: {failed[0]['artifact']}: {failed[0].get('error')}"
        )
    low = [
        r
        for r in rows
        if min_accuracy is not None
        and r.get("accuracy") is not None
        and r["accuracy"] < min_accuracy
    ]
    if low:
        raise CheckFailed(
            f"{low[0]['artifact']} accuracy {low[0]['accuracy']:.4f} is below --min-accuracy {min_accuracy}"
        )


def plot_histogram(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Overlaid per-artifact latency histograms; None when nothing was measured or there is
    no matplotlib (pip install matplotlib, or edgecnn[train])."""
    measured = [r for r in rows if r.get("latencies_ms")]
    if not measured or not can_plot():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from edgecnn.fsutil import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(8, 4.5))
    all_ms = np.concatenate([np.asarray(r["latencies_ms"]) for r in measured])
    lo, hi = max(all_ms.min(), 1e-4), all_ms.max()
    bins = np.geomspace(lo, hi * 1.0001, 50) if hi / lo > 20 else np.linspace(lo, hi * 1.0001, 50)
    for r in measured:
        label = f"{Path(r['artifact']).name} (p50 {r['p50_ms']:.3g} ms, p99 {r['p99_ms']:.3g} ms)"
        ax.hist(r["latencies_ms"], bins=bins, alpha=0.55, label=label)
    if hi / lo > 20:
        ax.set_xscale("log")
    ax.set_xlabel("latency per inference (ms)")
    ax.set_ylabel("runs")
    ax.set_title(title or f"edgecnn bench on {measured[0]['device']}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def summarize(
    rows: list[dict[str, Any]],
    build_dir: Path,
    plot: Path | None = None,
    draw: bool = True,
    several_models: bool = False,
) -> dict[str, Any]:
    """The table text, the results saved as JSON (`bench_<device>.json` beside the histogram)
    and, when there are measurements, the histogram PNG (None without matplotlib, and the text
    says so). What `edgecnn bench` and the run stage both show. The results are written before
    anything optional is drawn, so a device-only install keeps them."""
    text = render(rows, several_models)
    saved = save_results(rows, build_dir / f"bench_{rows[0]['device']}.json") if rows else None
    if saved:
        text += f"\nresults: {saved}"
    path = None
    if draw and any(r.get("latencies_ms") for r in rows):
        path = plot_histogram(rows, plot or build_dir / f"bench_{rows[0]['device']}_latency.png")
        if path is None and not can_plot():
            text += "\nno latency histogram: matplotlib is not installed (pip install matplotlib)"
    if path:
        text += f"\nlatency histogram: {path}"
    return {
        "text": text,
        "histogram": str(path) if path else None,
        "results": str(saved) if saved else None,
    }


def save_results(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """The rows (with every latency) as JSON; None when the directory is not writable (a
    read-only deployed build still gets its table printed)."""
    import json

    from edgecnn.fsutil import atomic_write_text

    try:
        atomic_write_text(path, json.dumps({"results": rows}, indent=2, default=str) + "\n")
    except OSError:
        return None
    return path
