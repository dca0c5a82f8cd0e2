"""Bench output: an Ultralytics-like table (one row per artifact) and a latency histogram PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def plot_histogram(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Overlaid per-artifact latency histograms; None when nothing was measured."""
    measured = [r for r in rows if r.get("latencies_ms")]
    if not measured:
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
