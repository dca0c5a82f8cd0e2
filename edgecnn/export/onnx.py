"""Keras -> ONNX: float32 through tf2onnx, int8 through ONNX Runtime's static quantizer.

Float: `tf2onnx.convert.from_keras` fails on Keras 3 models, so the model is
wrapped in a `tf.function` with an explicit `input_signature` and converted
with `from_function` (matches Keras to ~1e-7).

int8 has two routes; the default is "qdq":
- "qdq" (default): `onnxruntime.quantization.quantize_static` on the float
  ONNX model, QDQ format, per-channel int8 weights, int8 activations,
  calibrated on the same stratified training sample as the TFLite int8 model,
  after `quant_pre_process` (shape inference + graph fusion). It is ONNX
  Runtime's own path (ORT fuses QDQ pairs into integer kernels), its I/O
  stays float32 like every other ONNX artifact, and it was never slower than
  the alternative in tools/bench_convert.py (batch 1, one thread: 0.11 vs
  0.54 ms cnn_mnist, 0.08 vs 0.23 ms cnn_cifar10, 0.77 vs 0.77 ms
  MobileNetV2-0.35-96). It is calibrated independently, so it agrees with the
  TFLite int8 model to within int8 rounding, not bit for bit. (On ORT's CPU at
  batch 1 int8 is not reliably faster than float32 for models this small;
  its sure gain is a ~0.27x file.)
- "tflite": `tf2onnx.convert.from_tflite` on the full-int8 TFLite artifact.
  It reproduces LiteRT's integer arithmetic bit for bit (not on hard-swish
  models such as MobileNetV3) and keeps LiteRT's int8/uint8 I/O, for when
  exact host/device agreement matters more than speed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInput, EdgeCNNError
from edgecnn.export.quiet import captured_output

ONNX_INT8_METHODS = ("qdq", "tflite")
DEFAULT_OPSET = 13


def _fail(what: str, e: Exception, tail: str = "") -> EdgeCNNError:
    lines = str(e).strip().splitlines()
    msg = f"{what} failed: {lines[0] if lines else type(e).__name__}"
    return EdgeCNNError(msg + (f" ({tail})" if tail else ""))


def to_onnx_float(model: Any, out_path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Float32 ONNX with a dynamic batch axis and the Keras input name."""
    import tensorflow as tf
    import tf2onnx

    h, w, c = (int(v) for v in model.inputs[0].shape[1:])
    name = str(getattr(model.inputs[0], "name", None) or "image").split(":")[0]
    spec = (tf.TensorSpec((None, h, w, c), tf.float32, name=name),)

    @tf.function(input_signature=spec)
    def serve(x: Any) -> Any:
        return {"scores": model(x, training=False)}

    with captured_output() as cap:
        try:
            tf2onnx.convert.from_function(
                serve, input_signature=spec, opset=opset, output_path=str(out_path)
            )
        except Exception as e:
            raise _fail("ONNX float32 conversion", e, cap.tail(1)) from None
    return Path(out_path)


class _Calibration:
    """An onnxruntime `CalibrationDataReader` over float32 0-255 images, one per call."""

    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self.name = input_name
        self.images = images.astype(np.float32)
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.images):
            return None
        batch = self.images[self.i : self.i + 1]
        self.i += 1
        return {self.name: batch}

    def rewind(self) -> None:
        self.i = 0


def quantize_onnx_qdq(
    float_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calib: np.ndarray,
    nodes_to_exclude: list[str] | None = None,
) -> Path:
    """Static QDQ int8 (per-channel weights) of a float ONNX model.

    `nodes_to_exclude` keeps those nodes in float (parity --fix, selective quantization).
    """
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_Calibration, CalibrationDataReader):
        pass

    sess = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    del sess
    with tempfile.TemporaryDirectory(prefix="edgecnn-onnxq-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        with captured_output() as cap:
            try:
                try:
                    quant_pre_process(str(float_path), str(pre))
                except Exception:
                    # Symbolic shape inference trips on some graphs; the rest still helps.
                    quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
                quantize_static(
                    str(pre),
                    str(out_path),
                    Reader(input_name, calib),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    nodes_to_exclude=list(nodes_to_exclude or []),
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
                )
            except Exception as e:
                raise _fail("ONNX int8 quantization", e, cap.tail(1)) from None
    return Path(out_path)


def onnx_from_tflite(
    tflite_path: str | os.PathLike, out_path: str | os.PathLike, opset: int = DEFAULT_OPSET
) -> Path:
    """The bit-exact alternative: translate a full-int8 TFLite model."""
    import tf2onnx

    with captured_output() as cap:
        try:
            tf2onnx.convert.from_tflite(str(tflite_path), opset=opset, output_path=str(out_path))
        except Exception as e:
            raise _fail("ONNX conversion from TFLite", e, cap.tail(1)) from None
    return Path(out_path)


def check_int8_method(method: str) -> str:
    if method not in ONNX_INT8_METHODS:
        raise BadInput(
            f"unknown ONNX int8 method {method!r}; choose from {', '.join(ONNX_INT8_METHODS)}"
        )
    return method


def set_metadata(path: str | os.PathLike, props: dict[str, str]) -> None:
    """Write `metadata_props` (labels and key manifest fields) into the ONNX file in place."""
    import onnx

    model = onnx.load(str(path))
    existing = {p.key: p.value for p in model.metadata_props}
    existing.update({k: str(v) for k, v in props.items()})
    onnx.helper.set_model_props(model, existing)
    model.producer_name = "edgecnn"
    onnx.save(model, str(path))


def onnx_io(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def entry(a: Any) -> dict[str, Any]:
        dt = a.type.replace("tensor(", "").rstrip(")")
        dt = {"float": "float32", "double": "float64"}.get(dt, dt)
        return {
            "name": a.name,
            "shape": [v if isinstance(v, int) else -1 for v in a.shape],
            "dtype": dt,
            "quantization": None,
        }

    ins = [entry(a) for a in sess.get_inputs()]
    outs = [entry(a) for a in sess.get_outputs()]
    if any(e["dtype"] in ("int8", "uint8") for e in ins + outs):
        q_in, q_out = _integer_io_quantization(path)
        for e in ins:
            e["quantization"] = q_in.get(e["name"]) if e["dtype"] in ("int8", "uint8") else None
        for e in outs:
            e["quantization"] = q_out.get(e["name"]) if e["dtype"] in ("int8", "uint8") else None
    return ins, outs


def _integer_io_quantization(
    path: str | os.PathLike,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Scale/zero point of integer graph inputs (read by a DequantizeLinear) and outputs
    (written by a QuantizeLinear): what a from_tflite model keeps from LiteRT's int8 I/O."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for node in g.node:
        if node.op_type == "Constant" and node.attribute:
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def qparams(node: Any) -> dict[str, Any] | None:
        if len(node.input) < 3 or node.input[1] not in consts or node.input[2] not in consts:
            return None
        scale, zp = consts[node.input[1]], consts[node.input[2]]
        if np.size(scale) != 1:
            return None
        return {"scale": float(np.ravel(scale)[0]), "zero_point": int(np.ravel(zp)[0])}

    layout = {"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten"}
    consumers: dict[str, list[Any]] = {}
    producer: dict[str, Any] = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producer[name] = node

    def forward(name: str) -> dict[str, Any] | None:
        # Follow layout-only ops (tf2onnx adds NHWC<->NCHW reshapes) to the DequantizeLinear.
        for node in consumers.get(name, []):
            if node.op_type == "DequantizeLinear":
                return qparams(node)
            if node.op_type in layout:
                found = forward(node.output[0])
                if found:
                    return found
        return None

    def backward(name: str) -> dict[str, Any] | None:
        node = producer.get(name)
        if node is None:
            return None
        if node.op_type == "QuantizeLinear":
            return qparams(node)
        if node.op_type in layout:
            return backward(node.input[0])
        return None

    q_in = {i.name: q for i in g.input if (q := forward(i.name))}
    q_out = {o.name: q for o in g.output if (q := backward(o.name))}
    return q_in, q_out


def predict_onnx(
    path: str | os.PathLike,
    x: np.ndarray,
    batch: int = 64,
    in_quant: dict[str, Any] | None = None,
    out_quant: dict[str, Any] | None = None,
) -> np.ndarray:
    """Scores for camera-pixel images; integer I/O (the from_tflite route) uses the manifest's quantization."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    int_dtype = {"tensor(int8)": np.int8, "tensor(uint8)": np.uint8}.get(inp.type)
    if int_dtype is not None and not in_quant:
        raise EdgeCNNError(f"{path}: integer input needs its quantization parameters")
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    step = fixed or batch
    outs = []
    for i in range(0, len(x), step):
        chunk = np.asarray(x[i : i + step], dtype=np.float32)
        n = len(chunk)
        if fixed and n < fixed:
            chunk = np.concatenate([chunk, np.zeros((fixed - n, *chunk.shape[1:]), np.float32)])
        feed: np.ndarray = chunk
        if int_dtype is not None and in_quant:
            info = np.iinfo(int_dtype)
            q = np.rint(chunk / in_quant["scale"] + in_quant["zero_point"])
            feed = np.clip(q, info.min, info.max).astype(int_dtype)
        y = np.asarray(sess.run(None, {inp.name: feed})[0])
        if np.issubdtype(y.dtype, np.integer) and out_quant:
            y = (y.astype(np.int64) - out_quant["zero_point"]).astype(np.float32) * out_quant[
                "scale"
            ]
        outs.append(y.astype(np.float32)[:n])
    return np.concatenate(outs)
