"""Keras -> ONNX: float32 through tf2onnx, int8 through ONNX Runtime's static quantizer.

Float: `tf2onnx.convert.from_keras` fails on Keras 3 models, so the model is
wrapped in a `tf.function` with an explicit `input_signature` and converted
with `from_function` (matches Keras to ~1e-7).

int8 has two routes; the default is "qdq":
- "qdq" (default): `onnxruntime.quantization.quantize_static` on the float
  ONNX model, QDQ format, per-channel int8 weights in 7 bits (`reduce_range`:
  ORT's int8 GEMM saturates on x86 without VNNI), int8 activations,
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
  It reproduces LiteRT's integer arithmetic (not on hard-swish models such
  as MobileNetV3): bit for bit on two earlier hosts (one with AVX-512 VNNI),
  to one quantization step on an AVX2 one (1 of 500 scores of the digits CNN), and
  keeps LiteRT's int8/uint8 I/O, for when host/device agreement matters more
  than speed.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInput, EdgeCNNError
from edgecnn.quiet import captured_output

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
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_Calibration, CalibrationDataReader):
        pass

    input_name = onnx.load(str(float_path), load_external_data=False).graph.input[0].name
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
                    # 7-bit weights: ORT's int8 GEMM on x86 without VNNI (AVX2) multiplies
                    # u8 x s8 pairs into saturating 16-bit sums (VPMADDUBSW); full-range
                    # weights cost MobileNetV2 3.6 points there. ORT's documented remedy.
                    reduce_range=True,
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
    """The LiteRT-exact alternative (to one step): translate a full-int8 TFLite model."""
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
    """Write `metadata_props` (labels and key manifest fields) into the ONNX file in place, in
    canonical form (`canonical_graph`): the same model always gives the same bytes."""
    import onnx

    model = onnx.load(str(path))
    existing = {p.key: p.value for p in model.metadata_props}
    existing.update({k: str(v) for k, v in props.items()})
    onnx.helper.set_model_props(model, dict(sorted(existing.items())))
    model.producer_name = "edgecnn"
    canonical_graph(model.graph)
    onnx.save(model, str(path))


GENERATED = re.compile(r"(.*?)__\d+(:\d+)?")  # tf2onnx's counter-numbered names: Transpose__36:0


def canonical_graph(graph: Any) -> None:
    """The graph in a canonical form, so the same model always gives the same bytes.

    tf2onnx numbers the names it makes from a global counter (`Transpose__36`, or `__34` on
    another run), folds equal constants into one under an arbitrary one of their names
    (`const_starts__23` or `const_axes__25`) and lists initializers in another order each
    time. Generated constants are renamed after their content (equal ones merged), generated
    nodes and values after their position in the graph, and initializers sorted by name:
    none of these names carries meaning in ONNX."""
    renamed = _content_names(graph)
    nodes = 0
    for i, node in enumerate(graph.node):
        if m := GENERATED.fullmatch(node.name):
            node.name = f"{m.group(1)}__n{i}"
        for out in node.output:
            if (m := GENERATED.fullmatch(out)) and out not in renamed:
                renamed[out] = f"{m.group(1)}__v{nodes}{m.group(2) or ''}"
                nodes += 1
    for node in graph.node:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                field[i] = renamed.get(name, name)
    for value in (*graph.value_info, *graph.input, *graph.output):
        value.name = renamed.get(value.name, value.name)
    unique: dict[str, Any] = {}
    for t in graph.initializer:
        name = renamed.get(t.name, t.name)
        if name not in unique:
            unique[name] = type(t)()
            unique[name].CopyFrom(t)
            unique[name].name = name
    del graph.initializer[:]
    graph.initializer.extend(unique[name] for name in sorted(unique))


def _content_names(graph: Any) -> dict[str, str]:
    """Generated initializer name -> a name from its content (equal constants, one name)."""
    import hashlib

    renamed: dict[str, str] = {}
    for t in graph.initializer:
        if GENERATED.fullmatch(t.name):
            anonymous = type(t)()
            anonymous.CopyFrom(t)
            anonymous.name = ""
            digest = hashlib.sha256(anonymous.SerializeToString(deterministic=True)).hexdigest()
            renamed[t.name] = f"const_{digest[:16]}"
    return renamed


def nodes_for_layers(float_onnx: str | os.PathLike, layers: list[str]) -> list[str]:
    """ONNX node names belonging to Keras `layers`, before and after ORT's pre-processing
    (which fuses e.g. MatMul+Add into ".../MatMulAddFusion" Gemm nodes)."""
    import re

    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    graphs = [onnx.load(str(float_onnx)).graph]
    with tempfile.TemporaryDirectory(prefix="edgecnn-onnxq-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        with captured_output():
            try:
                quant_pre_process(str(float_onnx), str(pre))
                graphs.append(onnx.load(str(pre)).graph)
            except Exception:
                pass  # without pre-processing, the unfused names still match
    wanted = set(layers)
    names: list[str] = []
    for g in graphs:
        for n in g.node:
            segments = {re.sub(r"_\d+$", "", p) for p in n.name.split("/")}
            if segments & wanted and n.name not in names:
                names.append(n.name)
    return names
