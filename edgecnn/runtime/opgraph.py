"""An artifact's operators as the latency model sees them (device side, no TensorFlow).

Each operator becomes an `Op`: a kind (a family of kernels that cost alike: 1x1
convolutions, spatial convolutions, depthwise convolutions, fully connected,
element-wise, pooling, ...), its multiply-accumulates and the bytes it reads and writes.
The kinds follow how XNNPACK and ONNX Runtime run the graph (nn-Meter's lesson: a kernel's
cost is not its MACs alone), and the element size follows the op's own tensors, so an
int8 model and its float twin give the same ops with different bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.errors import BadInput

KINDS = (
    "conv1x1",  # pointwise convolution: a GEMM
    "conv",  # spatial convolution (k > 1), including the stem
    "dwconv",  # depthwise convolution
    "fc",  # fully connected / MatMul / Gemm
    "eltwise",  # add, mul, sub, activations that are not fused, hard-swish
    "pool",  # max / average pooling windows
    "mean",  # global pooling (reductions)
    "softmax",
    "convert",  # quantize / dequantize between int8 and float
    "other",  # concatenation, pad, resize, ...
)
FREE = "free"  # reshapes and the like: no kernel runs
# The kinds whose `macs` are multiply-accumulates; the others' count one op per output value
# (the latency model's work), which is not what a MAC total means.
MAC_KINDS = ("conv1x1", "conv", "dwconv", "fc")
TFLITE_KINDS = {
    "ADD": "eltwise", "MUL": "eltwise", "SUB": "eltwise", "DIV": "eltwise", "MAXIMUM": "eltwise",
    "MINIMUM": "eltwise", "HARD_SWISH": "eltwise", "LOGISTIC": "eltwise", "RELU": "eltwise",
    "RELU6": "eltwise", "TANH": "eltwise", "PRELU": "eltwise", "LEAKY_RELU": "eltwise",
    "AVERAGE_POOL_2D": "pool", "MAX_POOL_2D": "pool", "MEAN": "mean", "SUM": "mean",
    "REDUCE_MAX": "mean", "SOFTMAX": "softmax", "QUANTIZE": "convert", "DEQUANTIZE": "convert",
    "RESHAPE": FREE, "SQUEEZE": FREE, "EXPAND_DIMS": FREE, "SHAPE": FREE, "PACK": FREE,
    "STRIDED_SLICE": FREE,
}  # fmt: skip
ONNX_KINDS = {
    "Add": "eltwise", "Mul": "eltwise", "Sub": "eltwise", "Div": "eltwise", "Relu": "eltwise",
    "Clip": "eltwise", "HardSwish": "eltwise", "HardSigmoid": "eltwise", "Sigmoid": "eltwise",
    "Tanh": "eltwise", "PRelu": "eltwise", "LeakyRelu": "eltwise", "MaxPool": "pool",
    "AveragePool": "pool", "GlobalAveragePool": "mean", "GlobalMaxPool": "mean",
    "ReduceMean": "mean", "Softmax": "softmax", "QuantizeLinear": "convert",
    "DequantizeLinear": "convert", "Reshape": FREE, "Flatten": FREE, "Squeeze": FREE,
    "Unsqueeze": FREE, "Transpose": FREE, "Identity": FREE, "Shape": FREE, "Gather": FREE,
    "Constant": FREE, "Concat": "other", "Pad": "other",
}  # fmt: skip


@dataclass(frozen=True)
class Op:
    kind: str  # one of KINDS, or FREE
    name: str  # the format's own operator name (CONV_2D, Conv, ...)
    macs: int
    in_elems: int  # activation elements read (weights excluded)
    out_elems: int
    weight_elems: int
    elem_bytes: int  # 1 for int8 activations, 4 for float32
    channels_out: int = 0  # output channels of a convolution / units of a dense layer
    # What makes kernels of one kind differ in speed: "k3s2" (kernel, stride) for a
    # convolution, the operator itself for element-wise ops and pooling ("add", "hardswish").
    variant: str = ""

    @property
    def bytes_moved(self) -> int:
        return (
            self.in_elems + self.out_elems
        ) * self.elem_bytes + self.weight_elems * self.elem_bytes


def _prod(shape: Any) -> int:
    return int(np.prod([max(int(v), 1) for v in shape])) if len(shape) else 1


def _spatial(shape: list[int], nchw: bool) -> int:
    return int(shape[2] if nchw else shape[1]) if len(shape) == 4 else 0


def _stride_variant(kernel: int, in_shape: list[int], out_shape: list[int], nchw: bool) -> str:
    h_in, h_out = _spatial(in_shape, nchw), _spatial(out_shape, nchw)
    stride = max(1, round(h_in / h_out)) if h_out else 1
    return f"k{kernel}s{stride}"


def _tflite_conv(name: str, w: list[int], out_elems: int) -> tuple[str, int, int]:
    """(kind, MACs, output channels) of a TFLite convolution from its filter shape."""
    if name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, C]
        return "dwconv", out_elems * w[1] * w[2], w[3]
    kind = "conv1x1" if w[1] == 1 and w[2] == 1 else "conv"  # filter [Cout, kh, kw, Cin]
    return kind, out_elems * w[1] * w[2] * w[3], w[0]


def _tflite_op(op: dict[str, Any], tensors: dict[int, dict[str, Any]]) -> Op:
    name = op["op_name"]
    ins = [tensors[i] for i in op["inputs"] if i >= 0]
    outs = [tensors[i] for i in op["outputs"] if i >= 0]
    out_elems = _prod(outs[0]["shape"]) if outs else 0
    acts = [t for t in ins if t["buffer_empty"]] or ins[:1]
    weights = [t for t in ins if not t["buffer_empty"]]
    in_elems = sum(_prod(t["shape"]) for t in acts)
    w_elems = sum(_prod(t["shape"]) for t in weights)
    elem = int(np.dtype((acts[0] if acts else outs[0])["dtype"]).itemsize) if (acts or outs) else 4
    w = [int(v) for v in ins[1]["shape"]] if len(ins) > 1 else []
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(w) == 4:
        kind, macs, cout = _tflite_conv(name, w, out_elems)
        variant = _stride_variant(w[1], ins[0]["shape"], outs[0]["shape"], nchw=False)
        return Op(kind, name, macs, in_elems, out_elems, w_elems, elem, cout, variant)
    if name == "FULLY_CONNECTED" and len(w) == 2:
        return Op("fc", name, out_elems * w[1], in_elems, out_elems, w_elems, elem, w[0])
    kind = TFLITE_KINDS.get(name, "other")
    return Op(kind, name, out_elems if kind != FREE else 0, in_elems, out_elems, w_elems, elem,
              variant=name.lower())  # fmt: skip


def tflite_ops(model: bytes) -> list[Op]:
    """The operators of a validated .tflite, in execution order (batch 1)."""
    from edgecnn.runtime.backends import tflite_interpreter

    it, _ = tflite_interpreter(model, allocate=False)
    tensors = {}
    for t in it.get_tensor_details():
        tensors[t["index"]] = {"shape": [int(v) for v in t["shape"]], "dtype": t["dtype"]}
    constants = _constant_tensors(it)
    for i, t in tensors.items():
        t["buffer_empty"] = i not in constants
    return [_tflite_op(op, tensors) for op in it._get_ops_details()]


def _constant_tensors(it: Any) -> set[int]:
    """Indices of tensors with data in the file (weights, biases): no op writes them."""
    written = {int(i) for op in it._get_ops_details() for i in op["outputs"]}
    inputs = {int(d["index"]) for d in it.get_input_details()}
    return {int(t["index"]) for t in it.get_tensor_details()} - written - inputs


# -- ONNX ---------------------------------------------------------------------------------------


def _onnx_shapes(g: Any) -> tuple[dict[str, list[int]], dict[str, int], set[str]]:
    from onnx import helper, numpy_helper

    shapes: dict[str, list[int]] = {}
    sizes: dict[str, int] = {}
    for vi in list(g.value_info) + list(g.output) + list(g.input):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.dim_value > 0 else 1 for d in dims]
        elem = vi.type.tensor_type.elem_type
        sizes[vi.name] = (
            int(np.dtype(helper.tensor_dtype_to_np_dtype(elem)).itemsize) if elem else 4
        )
    consts = set()
    for init in g.initializer:
        shapes[init.name] = list(numpy_helper.to_array(init).shape)
        consts.add(init.name)
    return shapes, sizes, consts


def _onnx_op(
    node: Any, shapes: dict[str, list[int]], sizes: dict[str, int], consts: set[str]
) -> Op:
    outs = [o for o in node.output if o]
    out_elems = _prod(shapes.get(outs[0], [])) if outs else 0
    acts = [i for i in node.input if i and i not in consts]
    w_elems = sum(_prod(shapes.get(i, [])) for i in node.input if i in consts)
    in_elems = sum(_prod(shapes.get(i, [])) for i in acts)
    elem = sizes.get(acts[0] if acts else (outs[0] if outs else ""), 4)
    t = node.op_type
    if t in ("Conv", "ConvInteger", "QLinearConv"):
        w = shapes.get(node.input[3] if t == "QLinearConv" else node.input[1], [])
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if len(w) == 4:
            depthwise = group > 1 and w[1] == 1
            kind = "dwconv" if depthwise else ("conv1x1" if w[2] == w[3] == 1 else "conv")
            x = shapes.get(node.input[0], [])
            variant = _stride_variant(w[2], x, shapes.get(outs[0], []) if outs else [], nchw=True)
            return Op(kind, t, out_elems * w[1] * w[2] * w[3], in_elems, out_elems, w_elems, elem,
                      w[0], variant)  # fmt: skip
    if t in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
        w = _matmul_weight(node, shapes, consts)
        if w:
            k, units = w
            rows = max(1, out_elems // units) if outs and shapes.get(outs[0]) else 1
            return Op("fc", t, rows * k * units, in_elems, rows * units, w_elems, elem, units)
    kind = ONNX_KINDS.get(t, "other")
    return Op(kind, t, out_elems if kind != FREE else 0, in_elems, out_elems, w_elems, elem,
              variant=t.lower())  # fmt: skip


def _matmul_weight(
    node: Any, shapes: dict[str, list[int]], consts: set[str]
) -> tuple[int, int] | None:
    """(K, N) of a MatMul/Gemm's 2-D weight: an initializer, or (int8 QDQ) the output of the
    DequantizeLinear that reads one. tf2onnx leaves some MatMul outputs without a shape, so
    the units come from the weight, not the output."""
    idx = 3 if node.op_type == "QLinearMatMul" else 1
    name = node.input[idx] if len(node.input) > idx else ""
    w = shapes.get(name, [])
    if len(w) != 2:
        w = next((shapes[i] for i in node.input if i in consts and len(shapes.get(i, [])) == 2), [])
    if len(w) != 2:
        return None
    trans_b = any(a.name == "transB" and a.i for a in node.attribute)
    return (w[1], w[0]) if trans_b else (w[0], w[1])


def multiply_accumulates(ops: list[Op]) -> int:
    """The MACs of convolutions and matrix products, the figure `inspect` and bench report:
    the same for an ONNX artifact and its TFLite twin (tests/test_newuser.py)."""
    return int(sum(op.macs for op in ops if op.kind in MAC_KINDS))


def onnx_ops(model: bytes) -> list[Op]:
    """The nodes of an ONNX model (needs the `onnx` package for shape inference)."""
    from edgecnn.runtime.macs import MissingReader

    try:
        import onnx
        from onnx import shape_inference
    except ImportError:
        raise MissingReader(
            "reading an ONNX graph needs the onnx package (pip install onnx)"
        ) from None
    try:
        g = shape_inference.infer_shapes(onnx.load_from_string(model)).graph
    except Exception as e:
        raise BadInput(f"cannot read the ONNX model: {str(e).splitlines()[0][:120]}") from None
    shapes, sizes, consts = _onnx_shapes(g)
    return [_onnx_op(n, shapes, sizes, consts) for n in g.node]
