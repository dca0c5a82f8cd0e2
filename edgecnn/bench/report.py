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
                est_err=None
                if r.get("estimate_error_pct") is None
                else f"{r['estimate_error_pct']:+.0f}%",
            )
        else:
            row.update(MMACs=(r.get("macs") or 0) / 1e6 if r.get("macs") else None)
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


def _bases(rows: list[dict[str, Any]]) -> list[str]:
    """What the estimates stand on and how wrong they can be, one line per distinct basis."""
    seen: dict[str, str] = {}
    for r in rows:
        if r.get("basis"):
            seen.setdefault(r["basis"], r.get("estimate_error") or "")
    return [f"  {basis}: {err}" if err else f"  {basis}" for basis, err in seen.items()]


def headline(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    r = rows[0]
    if r.get("mode") == "estimate":
        return "\n".join(
            [f"ESTIMATE for {r['device']} (not measured), from its latency profile:", *_bases(rows)]
        )
    where = r.get("remote") or "this machine"
    lines = [
        f"measured on {r['device']} ({where}), one process per artifact; ms is the mean, p50 the median"
    ]
    if any(x.get("estimate_ms") for x in rows):
        lines.append(
            "est_ms: the device profile's estimate; est_err: its error against the measured p50"
        )
        lines += _bases(rows)
    for d in sorted({d for x in rows for d in x.get("disturbances") or []}):
        lines.append(f"  warning: {d}")
    return "\n".join(lines)


def _latency(r: dict[str, Any]) -> float | None:
    return r.get("p50_ms") if r.get("mode") in ("local", "ssh") else r.get("ms")


def int8_notes(rows: list[dict[str, Any]]) -> list[str]:
    """Where int8 is no faster than float32 of the same model and format: quantizing costs
    accuracy for nothing there (e.g. small early convolutions on an x86 host's int8 kernels)."""
    by: dict[tuple[Any, Any], dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r.get("status") in ("ok", "estimate") and _latency(r):
            by.setdefault((r.get("model"), r.get("format")), {})[r.get("precision", "")] = r
    notes = []
    for (_, fmt), prec in by.items():
        q, f = prec.get("int8"), prec.get("float32")
        if q and f and _latency(q) >= _latency(f):  # type: ignore[operator]
            kind = "measured" if q.get("mode") in ("local", "ssh") else "estimated"
            notes.append(f"note: int8 {fmt} is not faster than float32 here ({kind} "
                         f"{_latency(q):.4g} ms vs {_latency(f):.4g} ms); int8 pays only for size")  # fmt: skip
    return notes


def frame_table(rows: list[dict[str, Any]]) -> str:
    """The frame-to-answer stages (median ms), one row per artifact that timed them."""
    timed = [r for r in rows if r.get("frame_ms")]
    if not timed:
        return ""
    stages = list(timed[0]["frame_ms"])
    table = [
        {"artifact": Path(r["artifact"]).name, **{k: r["frame_ms"][k] for k in stages}}
        for r in timed
    ]
    return "frame to answer (median ms per stage):\n" + format_table(table, ["artifact", *stages])


def render(rows: list[dict[str, Any]], several_models: bool = False) -> str:
    table, cols = table_rows(rows, several_models)
    parts = [headline(rows), format_table(table, cols), *int8_notes(rows), frame_table(rows)]
    return "\n".join(p for p in parts if p)


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
    import numpy as np

    from edgecnn.plots import pyplot, save_figure

    plt = pyplot()

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
    return save_figure(fig, path)


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
