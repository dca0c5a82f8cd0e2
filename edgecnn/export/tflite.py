"""Keras -> TFLite (LiteRT) at four precisions, and a reader of the result's I/O.

`TFLiteConverter.from_keras_model` is the path that works with Keras 3
(`from_concrete_functions` fails at int8 calibration on resource variables).
Models are converted with a dynamic batch so host-side parity can batch; for
the Edge TPU a batch-1 wrapper gives the static shapes its compiler requires
and drops the SHAPE/PACK ops that a dynamic Flatten adds.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from edgecnn.errors import EdgeCNNError
from edgecnn.export.quiet import captured_output
from edgecnn.optimize.quantize import PRECISIONS, check_io_dtype, representative_dataset


def to_tflite(
    model: Any,
    precision: str,
    *,
    calib: np.ndarray | None = None,
    io_dtype: str = "int8",
    static_batch: bool = False,
) -> bytes:
    """Convert `model` (raw 0-255 input) to a TFLite flatbuffer.

    int8 is full-integer: per-channel weights, int8 activations, calibrated on
    `calib` (float32 0-255 images), with int8/uint8/float32 I/O per `io_dtype`.
    """
    import tensorflow as tf

    if precision not in PRECISIONS:
        raise EdgeCNNError(f"unknown precision {precision!r}")
    if static_batch:
        import keras

        inp = keras.Input(
            shape=tuple(model.inputs[0].shape[1:]), batch_size=1, name=_input_name(model)
        )
        model = keras.Model(inp, model(inp), name=model.name)
    with captured_output() as cap:
        try:
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            if precision == "float16":
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.target_spec.supported_types = [tf.float16]
            elif precision == "dynamic":
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
            elif precision == "int8":
                if calib is None or len(calib) == 0:
                    raise EdgeCNNError("int8 conversion needs calibration images")
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.representative_dataset = representative_dataset(calib)
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                io = check_io_dtype(io_dtype)
                if io != "float32":
                    conv.inference_input_type = getattr(tf, io)
                    conv.inference_output_type = getattr(tf, io)
            return bytes(conv.convert())
        except EdgeCNNError:
            raise
        except Exception as e:
            detail = str(e).strip().splitlines()
            raise EdgeCNNError(
                f"TFLite {precision} conversion failed: {detail[0] if detail else type(e).__name__}"
                + (f" ({cap.tail(1)})" if cap.tail(1) else "")
            ) from None


def _input_name(model: Any) -> str:
    name = getattr(model.inputs[0], "name", None) or "image"
    return str(name).split(":")[0]


def _interpreter(path: str | os.PathLike) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    with captured_output():  # LiteRT prints "Created TensorFlow Lite XNNPACK delegate" to stderr
        return Interpreter(model_path=str(path), num_threads=1)


def _io_entry(d: dict[str, Any]) -> dict[str, Any]:
    scale, zp = d["quantization"]
    sig = d.get("shape_signature")
    shape = [int(v) for v in (sig if sig is not None and len(sig) else d["shape"])]
    return {
        "name": d["name"],
        "shape": shape,
        "dtype": np.dtype(d["dtype"]).name,
        "quantization": {"scale": float(scale), "zero_point": int(zp)} if scale else None,
    }


def tflite_io(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Manifest entries for inputs/outputs: name, shape (-1 = dynamic), dtype, quantization."""
    it = _interpreter(path)
    return [_io_entry(d) for d in it.get_input_details()], [
        _io_entry(d) for d in it.get_output_details()
    ]


def tflite_ops(path: str | os.PathLike) -> list[str]:
    """Operator names in execution order (for the Edge TPU check and reports)."""
    it = _interpreter(path)
    return [str(op["op_name"]) for op in it._get_ops_details()]


def predict_tflite(path: str | os.PathLike, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """Scores (float) for camera-pixel images `x`: quantize in, dequantize out as the device does."""
    it = _interpreter(path)
    inp = it.get_input_details()[0]
    out = it.get_output_details()[0]
    dynamic = inp.get("shape_signature") is not None and int(inp["shape_signature"][0]) == -1
    step = batch if dynamic else int(inp["shape"][0])
    results = []
    current = None
    for i in range(0, len(x), step):
        chunk = np.asarray(x[i : i + step], dtype=np.float32)
        n = len(chunk)
        if dynamic and current != n:
            it.resize_tensor_input(inp["index"], [n, *inp["shape"][1:]])
            it.allocate_tensors()
            current = n
        elif current is None:
            it.allocate_tensors()
            current = n
        if not dynamic and n < step:
            chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), np.float32)])
        scale, zp = inp["quantization"]
        if np.issubdtype(inp["dtype"], np.integer) and scale:
            info = np.iinfo(inp["dtype"])
            chunk = np.clip(np.rint(chunk / scale + zp), info.min, info.max)
        it.set_tensor(inp["index"], chunk.astype(inp["dtype"]))
        it.invoke()
        y = it.get_tensor(out["index"])
        oscale, ozp = out["quantization"]
        if np.issubdtype(out["dtype"], np.integer) and oscale:
            y = (y.astype(np.int64) - ozp).astype(np.float32) * oscale
        results.append(np.asarray(y, dtype=np.float32)[:n])
    return np.concatenate(results) if results else np.zeros((0,), np.float32)
