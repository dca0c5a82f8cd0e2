"""What an artifact holds, op by op: type, output shape and dtype, quantization, MACs.

`edgecnn inspect model_int8.tflite` (or `.onnx`) reads it here, on the device side: LiteRT
for TFLite, the `onnx` package for ONNX (no TensorFlow). MACs come from `edgecnn.runtime.macs`,
so they are the figures bench estimates use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.runtime.macs import onnx_layers, tflite_layers


def _quant_text(scales: Any, zero_points: Any) -> str | None:
    """ "scale 0.0039 zp -128", "per-channel x32", or None (not quantized)."""
    scales = np.ravel(np.asarray(scales if scales is not None else [], dtype=np.float64))
    zps = np.ravel(np.asarray(zero_points if zero_points is not None else [], dtype=np.int64))
    if scales.size == 0 or not scales.any():
        return None
    if scales.size > 1:
        return f"per-channel x{scales.size}"
    return f"scale {scales[0]:.6g} zp {int(zps[0]) if zps.size else 0}"


def tflite_ops(model: bytes) -> list[dict[str, Any]]:
    """One row per TFLite operator: op, output shape/dtype/quantization, weight quantization."""
    from edgecnn.runtime.backends import tflite_interpreter

    it, _ = tflite_interpreter(model, allocate=False)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    rows = []
    for op, cost in zip(it._get_ops_details(), tflite_layers(model), strict=True):
        out = tensors.get(int(op["outputs"][0])) if len(op["outputs"]) else None
        ins = [tensors[int(i)] for i in op["inputs"] if int(i) >= 0 and int(i) in tensors]
        weight = ins[1] if len(ins) > 1 else None

        def q(t: dict[str, Any] | None) -> str | None:
            p = (t or {}).get("quantization_parameters") or {}
            return _quant_text(p.get("scales"), p.get("zero_points"))

        rows.append(
            {
                "op": op["op_name"],
                "output": (out or {}).get("name", ""),
                "output_shape": cost["output"],
                "dtype": np.dtype((out or {}).get("dtype", np.float32)).name,
                "quantization": q(out),
                "weights": None
                if weight is None
                else f"{np.dtype(weight['dtype']).name} {[int(v) for v in weight['shape']]}"
                + (f" ({q(weight)})" if q(weight) else ""),
                "macs": cost["macs"],
            }
        )
    return rows


def onnx_ops(model: bytes) -> list[dict[str, Any]]:
    """One row per ONNX node; QuantizeLinear/DequantizeLinear rows carry their scale."""
    from edgecnn.runtime import onnx_graph

    graph = onnx_graph.load_graph(model)
    consts = onnx_graph.constants(graph)
    rows = []
    for node, cost in zip(graph.node, onnx_layers(model), strict=True):
        quant = None
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) >= 2:
            zp = consts.get(node.input[2]) if len(node.input) > 2 else None
            quant = _quant_text(consts.get(node.input[1]), zp)
        weight = consts.get(node.input[1]) if len(node.input) > 1 else None
        rows.append(
            {
                "op": node.op_type,
                "output": node.output[0] if node.output else "",
                "output_shape": cost["output"],
                "dtype": None,
                "quantization": quant,
                "weights": None
                if weight is None or node.op_type.endswith("Linear")
                else f"{weight.dtype.name} {[int(v) for v in weight.shape]}",
                "macs": cost["macs"],
            }
        )
    return rows
