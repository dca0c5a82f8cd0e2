"""Keras -> TFLite (LiteRT) at four precisions.

`TFLiteConverter.from_keras_model` is the path that works with Keras 3
(`from_concrete_functions` fails at int8 calibration on resource variables).
Models are converted with a dynamic batch so host-side parity can batch; for
the Edge TPU a batch-1 wrapper gives the static shapes its compiler requires
and drops the SHAPE/PACK ops that a dynamic Flatten adds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.errors import EdgeCNNError
from edgecnn.optimize.quantize import check_io_dtype, representative_dataset
from edgecnn.quiet import captured_output
from edgecnn.runtime.formats import FORMATS


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

    if precision not in FORMATS["tflite"].precisions:
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
