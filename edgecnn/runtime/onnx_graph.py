"""Reading quantization parameters out of an ONNX graph (needs the `onnx` package).

ONNX tensors carry no scale of their own. Two kinds of artifact need one:
* integer I/O (the `--onnx-int8 tflite` route keeps LiteRT's int8 input and output):
  the scale sits on the DequantizeLinear that reads the input, and on the
  QuantizeLinear that writes the output, possibly behind layout-only ops;
* float I/O with QDQ inside: the first QuantizeLinear says how the input is quantized
  (parity's diagnosis compares it with the manifest's pixel range).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.errors import BadInput

LAYOUT_OPS = {"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten"}
Quant = dict[str, Any]


def load_graph(model: bytes) -> Any:
    try:
        import onnx
    except ImportError:
        raise BadInput("reading an ONNX graph needs the onnx package (pip install onnx)") from None
    try:
        return onnx.load_from_string(model).graph
    except Exception as e:  # protobuf's DecodeError and friends
        raise BadInput(f"not a readable ONNX model: {str(e).splitlines()[0][:120]}") from None


def constants(g: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for node in g.node:
        if node.op_type == "Constant" and node.attribute:
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return consts


def _qparams(node: Any, consts: dict[str, np.ndarray]) -> Quant | None:
    if len(node.input) < 3 or node.input[1] not in consts or node.input[2] not in consts:
        return None
    scale, zp = consts[node.input[1]], consts[node.input[2]]
    if np.size(scale) != 1:
        return None
    return {"scale": float(np.ravel(scale)[0]), "zero_point": int(np.ravel(zp)[0])}


def integer_io_quantization(model: bytes) -> tuple[dict[str, Quant], dict[str, Quant]]:
    """{input name: quant}, {output name: quant} for the graph's integer inputs and outputs."""
    g = load_graph(model)
    consts = constants(g)
    consumers: dict[str, list[Any]] = {}
    producer: dict[str, Any] = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producer[name] = node

    def forward(name: str) -> Quant | None:
        for node in consumers.get(name, []):
            if node.op_type == "DequantizeLinear":
                return _qparams(node, consts)
            if node.op_type in LAYOUT_OPS and (found := forward(node.output[0])):
                return found
        return None

    def backward(name: str) -> Quant | None:
        node = producer.get(name)
        if node is None:
            return None
        if node.op_type == "QuantizeLinear":
            return _qparams(node, consts)
        return backward(node.input[0]) if node.op_type in LAYOUT_OPS else None

    q_in = {i.name: q for i in g.input if (q := forward(i.name))}
    q_out = {o.name: q for o in g.output if (q := backward(o.name))}
    return q_in, q_out


def input_quantization(model: bytes) -> Quant | None:
    """{dtype, scale, zero_point} of the QuantizeLinear that first reads the float input."""
    g = load_graph(model)
    consts = constants(g)
    name = g.input[0].name
    for node in g.node:
        if node.op_type == "QuantizeLinear" and node.input[0] == name:
            q = _qparams(node, consts)
            if q is None:
                return None
            zp = consts.get(node.input[2])
            q["dtype"] = np.dtype(zp.dtype).name if zp is not None else "uint8"
            return q
    return None
