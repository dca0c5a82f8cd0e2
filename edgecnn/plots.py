"""Training curves and confusion-matrix PNGs (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def can_plot() -> bool:
    """matplotlib is optional wherever plots are (a device-only install has none)."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 90) -> Path:
    """Render to memory, then write atomically (a plot is complete or absent) and close."""
    import io

    from edgecnn.errors import BadInput
    from edgecnn.fsutil import atomic_write_bytes

    out = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    if not out.parent.is_dir():
        raise BadInput(f"cannot write {out}: directory {out.parent} does not exist")
    try:
        atomic_write_bytes(out, buf.getvalue())
    except OSError as e:
        raise BadInput(f"cannot write {out}: {e.strerror or e}") from None
    return out


def plot_curves(rows: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    x = np.arange(1, len(rows) + 1)
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            ys = [r.get(prefix + key) for r in rows]
            if any(v is not None for v in ys):
                ax.plot(x, [np.nan if v is None else v for v in ys], style, label=prefix + key)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


MAX_PLOTTED_CLASSES = 40


def plot_confusion(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str], path: Path, title: str = ""
) -> np.ndarray:
    plt = pyplot()
    cm = confusion_matrix(y_true, y_pred, len(labels))
    full = cm
    if len(labels) > MAX_PLOTTED_CLASSES:  # e.g. ImageNet-1k: plot the classes that occur
        seen = np.union1d(np.unique(y_true), np.unique(y_pred)).astype(int)
        cm, labels = cm[np.ix_(seen, seen)], [labels[i] for i in seen]
    n = len(labels)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=90 if n > 6 else 0)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        top = cm.max() or 1
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                        color="white" if cm[i, j] > top / 2 else "black", fontsize=8)  # fmt: skip
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
    return full
