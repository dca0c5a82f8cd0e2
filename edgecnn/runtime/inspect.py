"""`edgecnn inspect` on a converted artifact (.tflite, .onnx): no TensorFlow, no build needed.

The format comes from the registry by file suffix; the per-op rows from its `inspect_ops` reader;
the input/output tensors (shape, dtype, quantization) as the manifest would record them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgecnn.errors import BadInput
from edgecnn.runtime.backends import read_model_bytes
from edgecnn.runtime.formats import format_for_file, tensor_specs


def is_artifact(path: str | os.PathLike) -> bool:
    return format_for_file(Path(path).name) is not None


def inspect_artifact(path: str | os.PathLike) -> dict[str, Any]:
    """{path, format, inputs, outputs, ops: [{op, output_shape, dtype, quantization, weights,
    macs}], total_macs} for one artifact file."""
    p = Path(path)
    fmt = format_for_file(p.name)
    if fmt is None:
        raise BadInput(f"{p.name} is not an artifact edgecnn reads (.tflite, .onnx)")
    if not p.is_file():
        raise BadInput(f"{p} does not exist")
    data = read_model_bytes(p)
    fmt.check(data, p.name)
    ops = fmt.inspect_ops(data)
    try:
        ins, outs = tensor_specs(fmt, data)
    except BadInput:  # no runtime for this format here (e.g. onnxruntime): ops still read
        ins, outs = [], []
    return {
        "path": str(p),
        "format": fmt.name,
        "inputs": [t.to_dict() for t in ins],
        "outputs": [t.to_dict() for t in outs],
        "ops": ops,
        "total_macs": int(sum(r["macs"] for r in ops)),
    }
