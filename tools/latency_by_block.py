"""Where does a network's LiteRT time go, block by block? Measured, not estimated.

The LiteRT wheel has no per-op profiler, so the time of each block is measured by
truncation: the model is cut after every block (a residual add, or a block's projection
when it has no add), each prefix is converted to int8 (or float32) TFLite, timed on one
thread, and a block's time is its prefix's time minus the previous prefix's. Given two
models (e.g. unpruned and pruned), the blocks are put side by side with their MACs, so
one sees which blocks follow MACs and which do not.

    python tools/latency_by_block.py build/r0/model.keras build/r0.75/model.keras --precision int8
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np


def flat(model: Any) -> Any:
    """The functional graph the blocks live in (a keras.applications base nested in the model)."""
    import keras

    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return nested[0] if nested else model


def cut_points(model: Any) -> list[str]:
    """The layer after which each block ends: its add if it has one, else its projection."""
    names = [layer.name for layer in model.layers]
    out = []
    for i, name in enumerate(names):
        nxt = names[i + 1] if i + 1 < len(names) else ""
        if name.endswith("_add") or (name.endswith("project_BN") and not nxt.endswith("_add")):
            out.append(name)
    stem = next((n for n in names if n.endswith("Conv1_relu")), names[min(3, len(names) - 1)])
    head = "out_relu" if "out_relu" in names else names[-1]  # the same cut with or without a head
    return [stem, *out, head]


def prefix_ms(model: Any, layer: str, precision: str) -> tuple[float, int]:
    """(p50 ms on one thread, MACs) of the model up to and including `layer`."""
    import keras

    from edgecnn.export.tflite import to_tflite
    from edgecnn.runtime.backends import tflite_interpreter
    from edgecnn.runtime.opgraph import multiply_accumulates, tflite_ops
    from edgecnn.runtime.timing import TimingPlan, time_calls

    sub = keras.Model(model.inputs, model.get_layer(layer).output)
    shape = tuple(int(v) for v in sub.inputs[0].shape[1:])
    calib = np.random.default_rng(0).uniform(0, 255, size=(8, *shape)).astype(np.float32)
    blob = to_tflite(sub, precision, calib=calib)
    it, _ = tflite_interpreter(blob, threads=1)
    d = it.get_input_details()[0]
    x = np.zeros(d["shape"], d["dtype"])

    def call() -> None:
        it.set_tensor(d["index"], x)
        it.invoke()

    s = time_calls(call, TimingPlan(warmup=20, warmup_min_s=0.2, runs=200, min_s=1.0))
    return s.p50_ms, multiply_accumulates(tflite_ops(blob))


def blocks(path: Path, precision: str) -> dict[str, tuple[float, int]]:
    """block end -> (ms, MACs) of that block alone."""
    import keras

    model = flat(keras.models.load_model(path, compile=False))
    out, prev = {}, (0.0, 0)
    for layer in cut_points(model):
        ms, macs = prefix_ms(model, layer, precision)
        out[layer] = (ms - prev[0], macs - prev[1])
        prev = (ms, macs)
    out["total"] = prev
    return out


def main() -> None:
    from edgecnn.quiet import captured_output, quiet_tensorflow
    from edgecnn.tables import format_table

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--precision", default="int8", choices=["int8", "float32"])
    a = ap.parse_args()
    quiet_tensorflow()
    with captured_output():
        per = [blocks(p, a.precision) for p in a.models]
    rows = []
    for name in per[0]:
        row: dict[str, Any] = {"block": name}
        for i, b in enumerate(per):
            ms, macs = b.get(name, (None, None))
            row[f"ms_{i}"] = None if ms is None else round(ms * 1000, 1) / 1000
            row[f"MMACs_{i}"] = None if macs is None else round(macs / 1e6, 3)
        rows.append(row)
    print(
        f"{a.precision}, 1 thread; model i = {', '.join(f'{i}: {p}' for i, p in enumerate(a.models))}"
    )
    print(format_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
