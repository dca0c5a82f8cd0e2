"""What a tune run shows: the trials table, the Pareto front, the verdict.

The best trial is the most accurate feasible one (ties: the faster). When nothing is
feasible, the verdict names the trial closest to the budget (the smallest sum of how far
it is over each limit, relative to the limit) and the limits it broke.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.tune.space import Budget

TABLE_COLUMNS = ["trial", "state", "model", "accuracy", "drop_pts", "latency_ms", "latency", "size_kb",
                 "ram_mb", "feasible", "seconds", "note"]  # fmt: skip


def trial_rows(trials: list[Any]) -> list[dict[str, Any]]:
    """One row per trial that ran to an end, in trial order."""
    rows = []
    for t in trials:
        if not t.state.is_finished():
            continue
        m = t.user_attrs.get("metrics") or {}
        basis = m.get("latency_basis", "")
        rows.append({
            "trial": t.number, "state": t.state.name.lower(), "model": t.user_attrs.get("label"),
            "accuracy": m.get("accuracy") if m.get("stage") == "build" else None,
            "float_accuracy": m.get("float_accuracy"), "drop_pts": m.get("drop_pts"),
            "latency_ms": m.get("latency_ms"), "latency": basis.split(" ", 1)[0] if basis else None,
            "latency_basis": basis or None, "size_kb": m.get("size_kb"), "ram_mb": m.get("ram_mb"),
            "ram_basis": m.get("ram_basis"), "feasible": _feasible(t), "seconds": t.user_attrs.get("seconds"),
            "note": t.user_attrs.get("note") or t.user_attrs.get("error"), "params": t.user_attrs.get("params"),
            "build": t.user_attrs.get("build"), "measured_at": m.get("stage"),
        })  # fmt: skip
    return rows


def _feasible(t: Any) -> bool | None:
    if t.state.name != "COMPLETE":
        return False if t.user_attrs.get("feasible") is False else None
    return bool(t.user_attrs.get("feasible", True))


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [
        r for r in rows if r["state"] == "complete" and r["feasible"] and r["accuracy"] is not None
    ]
    return max(ok, key=lambda r: (r["accuracy"], -(r["latency_ms"] or 0.0)), default=None)


def _overshoot(r: dict[str, Any], budget: Budget) -> float:
    over = budget.violations(r)
    limits = budget.limits()
    return sum(max(0.0, v) / limits[k] for k, v in over.items())


def closest_row(rows: list[dict[str, Any]], budget: Budget) -> dict[str, Any] | None:
    measured = [r for r in rows if r["latency_ms"] is not None or r["size_kb"] is not None]
    return min(measured, key=lambda r: _overshoot(r, budget), default=None)


def verdict(rows: list[dict[str, Any]], budget: Budget) -> str:
    """One line: the best feasible build, or why nothing fits."""
    best = best_row(rows)
    if best is not None:
        return (f"best feasible: trial {best['trial']} {best['model']}: accuracy {best['accuracy']:.2%} "
                f"(validation), latency {best['latency_ms']:.3g} ms ({best['latency']}), "
                f"size {best['size_kb']:.0f} kB")  # fmt: skip
    near = closest_row(rows, budget)
    if near is None:
        return f"nothing fits the budget: none of {len(rows)} trials got far enough to be measured"
    limits = budget.limits()
    broken = ", ".join(f"{k.replace('_', ' ')} {near[k]:.3g} > {limits[k]:g}"
                       for k, v in budget.violations(near).items() if v > 0)  # fmt: skip
    why = broken or "it did not finish"
    return f"nothing fits the budget: the closest is trial {near['trial']} {near['model']} ({why})"


def pareto_front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Completed trials no other beats on both accuracy and latency, fastest first."""
    done = sorted((r for r in rows if r["accuracy"] is not None and r["latency_ms"] is not None),
                  key=lambda r: (r["latency_ms"], -r["accuracy"]))  # fmt: skip
    front, best = [], -1.0
    for r in done:
        if r["accuracy"] > best:
            front.append(r)
            best = r["accuracy"]
    return front


def plot_pareto(rows: list[dict[str, Any]], budget: Budget, path: Path, title: str) -> Path | None:
    """Accuracy against latency, marker area by file size; the front joined, the limit drawn."""
    from edgecnn.plots import can_plot, pyplot, save_figure

    done = [r for r in rows if r["accuracy"] is not None and r["latency_ms"] is not None]
    if not can_plot() or not done:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for feasible, colour, name in (
        (True, "tab:green", "feasible"),
        (False, "tab:red", "over budget"),
    ):
        pts = [r for r in done if bool(r["feasible"]) == feasible]
        if pts:
            ax.scatter([r["latency_ms"] for r in pts], [r["accuracy"] for r in pts], alpha=0.6, c=colour,
                       s=[20 + (r["size_kb"] or 0) ** 0.5 * 6 for r in pts], label=name)  # fmt: skip
    front = pareto_front(done)
    ax.plot(
        [r["latency_ms"] for r in front],
        [r["accuracy"] for r in front],
        "k--",
        lw=1,
        label="Pareto front",
    )
    if budget.max_latency_ms:
        ax.axvline(budget.max_latency_ms, color="grey", lw=1, ls=":", label="latency limit")
    ax.set_xscale("log")
    ax.set_xlabel(f"latency, ms ({done[0]['latency'] or ''}; log scale)")
    ax.set_ylabel("accuracy (validation split)")
    ax.set_title(title + "  (marker area: file size)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
