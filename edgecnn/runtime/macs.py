"""Per-layer multiply-accumulate counts read from a converted model (no TensorFlow).

The estimate mode of `edgecnn bench` needs MACs per layer. The conversion step
may record the total in the manifest (`model.cost.macs`); here we count them
from the artifact itself so the estimate also works for any `.tflite`, on the
device side, with only LiteRT installed (ONNX uses the `onnx` package if present).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.errors import BadInput


class MissingReader(BadInput):
    """The optional package that reads this format's graph is not installed."""


def _prod(shape: Any) -> int:
    return int(np.prod([max(int(v), 1) for v in shape])) if len(shape) else 1


# Arithmetic that is not a multiply-accumulate (one op per output value), counted apart so
# that MACs mean the same in every reader: convolutions and matrix products only, biases and
# activations not counted (as edgecnn.zoo.cost counts them for Keras).
TFLITE_OTHER_OPS = ("AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "ADD", "MUL", "SUB")
ONNX_OTHER_OPS = ("AveragePool", "MaxPool", "GlobalAveragePool", "ReduceMean", "Add", "Mul", "Sub")


def tflite_layers(model: bytes) -> list[dict[str, Any]]:
    """[{op, macs, ops, output}] for every operator of a validated .tflite (batch 1)."""
    from edgecnn.runtime.backends import tflite_interpreter

    it, _ = tflite_interpreter(model, allocate=False)
    shapes = {t["index"]: [int(v) for v in t["shape"]] for t in it.get_tensor_details()}
    layers = []
    for op in it._get_ops_details():
        name = op["op_name"]
        ins = [int(i) for i in op["inputs"]]
        outs = [int(i) for i in op["outputs"]]
        out_shape = shapes.get(outs[0], []) if outs else []
        out_elems = _prod(out_shape)
        w = shapes.get(ins[1], []) if len(ins) > 1 and ins[1] >= 0 else []
        macs = 0
        if name == "CONV_2D" and len(w) == 4:  # filter [Cout, kh, kw, Cin]
            macs = out_elems * w[1] * w[2] * w[3]
        elif name == "DEPTHWISE_CONV_2D" and len(w) == 4:  # [1, kh, kw, Cout]
            macs = out_elems * w[1] * w[2]
        elif name == "FULLY_CONNECTED" and len(w) == 2:  # [units, in]
            macs = out_elems * w[1]
        elif name == "TRANSPOSE_CONV":
            w = shapes.get(ins[1], [])
            macs = _prod(shapes.get(ins[2], [])) * (w[1] * w[2] * w[0] if len(w) == 4 else 1)
        elif name == "BATCH_MATMUL" and len(w) >= 2:
            macs = out_elems * w[-2]
        other = out_elems if name in TFLITE_OTHER_OPS else 0
        layers.append({"op": name, "macs": int(macs), "ops": int(other), "output": out_shape})
    return layers


def _matmul_macs(node: Any, w: list[int], out_shape: list[int]) -> int:
    """MatMul/Gemm against a 2-D weight: rows x K x N. The rows come from the output shape
    when shape inference found it (tf2onnx leaves some unnamed), else one row (batch 1)."""
    trans_b = any(a.name == "transB" and a.i for a in node.attribute)
    k, n = (w[1], w[0]) if trans_b else (w[0], w[1])
    rows = _prod(out_shape) // n if out_shape and _prod(out_shape) >= n else 1
    return rows * k * n


def onnx_layers(model: bytes) -> list[dict[str, Any]]:
    """Same for ONNX (Conv, Gemm, MatMul), using the `onnx` package's shape inference.

    Counts the same MACs as `tflite_layers` for the same model (tests/test_numbers.py), so
    an estimate does not depend on which reader a venv has."""
    try:
        import onnx
        from onnx import numpy_helper, shape_inference
    except ImportError:
        raise MissingReader(
            "counting MACs of an ONNX model needs the onnx package (pip install onnx)"
        ) from None
    try:
        model = shape_inference.infer_shapes(onnx.load_from_string(model))
    except Exception as e:
        raise BadInput(f"cannot read the ONNX model: {str(e).splitlines()[0][:120]}") from None
    g = model.graph
    shapes: dict[str, list[int]] = {}
    for vi in list(g.value_info) + list(g.output) + list(g.input):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.dim_value > 0 else 1 for d in dims]
    for init in g.initializer:
        shapes[init.name] = list(numpy_helper.to_array(init).shape)
    layers = []
    for node in g.node:
        out_shape = shapes.get(node.output[0], []) if node.output else []
        out_elems = _prod(out_shape)
        w = shapes.get(node.input[1], []) if len(node.input) > 1 else []
        macs = 0
        if node.op_type in ("Conv", "ConvInteger", "QLinearConv") and len(w) == 4:
            wi = node.input[3] if node.op_type == "QLinearConv" else node.input[1]
            w = shapes.get(wi, w)
            macs = out_elems * w[1] * w[2] * w[3]
        elif node.op_type in ("Gemm", "MatMul", "MatMulInteger") and len(w) == 2:
            macs = _matmul_macs(node, w, out_shape)
        other = out_elems if node.op_type in ONNX_OTHER_OPS else 0
        layers.append(
            {"op": node.op_type, "macs": int(macs), "ops": int(other), "output": out_shape}
        )
    return layers
