"""Pruning sensitivity: each channel group pruned alone at a few ratios, and what it costs.

The scan answers "which groups can go, and how far?" before anything is fine-tuned: a
group whose removal barely moves validation accuracy is a candidate for a high per-layer
ratio in a pruning plan (`convert --prune-plan`), one that collapses it should be kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.optimize.depgraph import analyze
from edgecnn.optimize.structured import DEFAULT_MULTIPLE, apply_plan, check_ratio, plan_pruning

RATIOS = (0.25, 0.5, 0.75)


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float(
        (model.predict(x.astype(np.float32), batch_size=256, verbose=0).argmax(1) == y).mean()
    )


def sensitivity_scan(
    model: Any, x: np.ndarray, y: np.ndarray, ratios: tuple[float, ...] = RATIOS,
    multiple: int = DEFAULT_MULTIPLE, say: Any = None,
) -> dict[str, Any]:  # fmt: skip
    """{"base": accuracy, "rows": one per group (its producers, channels, the accuracy drop
    in points at each ratio)}."""
    ratios = tuple(check_ratio(r) for r in ratios)
    g = analyze(model)
    base = _accuracy(model, x, y)
    rows = []
    for group in sorted(g.prunable(), key=lambda grp: grp.gid):
        lead = group.producers[0]
        row: dict[str, Any] = {
            "group": lead,
            "producers": len(group.producers),
            "channels": group.size,
        }
        for r in ratios:
            _, plan = plan_pruning(model, 0.0, multiple=multiple, per_layer={lead: r}, graph=g)
            if not plan.keep:
                row[f"drop@{r:g}"] = 0.0  # rounding to the multiple keeps every channel
                continue
            thin = apply_plan(model, g, plan)
            row[f"drop@{r:g}"] = round((base - _accuracy(thin, x, y)) * 100, 2)
        if say:
            say(
                f"{lead}: "
                + ", ".join(f"{k} {v:+.2f}" for k, v in row.items() if k.startswith("drop"))
            )
        rows.append(row)
    return {"base": base, "ratios": list(ratios), "rows": rows, "left_alone": g.blocked()}


def plot_scan(scan: dict[str, Any], path: Path) -> Path | None:
    """Accuracy drop per group and ratio as a grouped bar chart; None without matplotlib."""
    from edgecnn.plots import can_plot, pyplot, save_figure

    if not can_plot() or not scan["rows"]:
        return None
    plt = pyplot()
    rows = scan["rows"]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(rows)), 4))
    width = 0.8 / len(scan["ratios"])
    xs = np.arange(len(rows))
    for i, r in enumerate(scan["ratios"]):
        ax.bar(xs + i * width, [row[f"drop@{r:g}"] for row in rows], width, label=f"{r:.0%} pruned")
    ax.set_xticks(xs + 0.4 - width / 2, [row["group"] for row in rows], rotation=75, fontsize=7)
    ax.set_ylabel("validation top-1 drop (points)")
    ax.set_title(f"pruning sensitivity (base {scan['base']:.2%}), each group alone, no fine-tuning")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
