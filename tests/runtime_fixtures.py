"""Build small real artifacts (trained on real data) for the runtime and bench tests.

Uses `edgecnn.convert.convert_model` when the conversion helper's code is present;
otherwise converts with `tf.lite.TFLiteConverter.from_keras_model` and writes the
manifest with `edgecnn.manifest` directly. Host side: imports TensorFlow lazily.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.fsutil import sha256_file
from edgecnn.manifest import InputSpec, new_manifest, save_manifest, write_labels


def train_small(
    dataset: str = "digits", arch: str = "cnn_small", epochs: int = 3
) -> tuple[Any, Any]:
    """A tiny CNN trained for a few epochs on a real dataset; returns (model, dataset)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from edgecnn.data import load_dataset
    from edgecnn.zoo import build_model

    ds = load_dataset(dataset, seed=0)
    keras.utils.set_random_seed(0)
    model = build_model(arch, ds.input_shape, ds.num_classes)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(ds.x_train.astype("float32"), ds.y_train, epochs=epochs, batch_size=64, verbose=0)
    return model, ds


def _io_details(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))

    def conv(d: dict[str, Any]) -> dict[str, Any]:
        scale, zp = d["quantization"]
        q = {"scale": float(scale), "zero_point": int(zp)} if scale else None
        return {
            "name": d["name"],
            "shape": [int(v) for v in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
            "quantization": q,
        }

    return [conv(d) for d in it.get_input_details()], [conv(d) for d in it.get_output_details()]


def _onnx_io(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def conv(a: Any) -> dict[str, Any]:
        dt = a.type.replace("tensor(", "").rstrip(")").replace("float", "float32")
        return {
            "name": a.name,
            "shape": [v if isinstance(v, int) else -1 for v in a.shape],
            "dtype": dt,
            "quantization": None,
        }

    return [conv(a) for a in s.get_inputs()], [conv(a) for a in s.get_outputs()]


def artifact_entry(out: Path, name: str, fmt: str, precision: str) -> dict[str, Any]:
    import gzip

    path = out / name
    ins, outs = _io_details(path) if fmt == "tflite" else _onnx_io(path)
    data = path.read_bytes()
    return {
        "path": name,
        "format": fmt,
        "precision": precision,
        "size": len(data),
        "gzip_size": len(gzip.compress(data)),
        "sha256": sha256_file(path),
        "inputs": ins,
        "outputs": outs,
    }


def fallback_convert(model: Any, ds: Any, out: Path, onnx: bool = False) -> dict[str, Any]:
    """float32 + int8 TFLite (and float32 ONNX if asked) plus a manifest, without convert.py."""
    return convert_keras(model, ds.x_train[:200], list(ds.class_names), out, onnx=onnx)


def convert_keras(
    model: Any, x_rep: np.ndarray, labels: list[str], out: Path, onnx: bool = False
) -> dict[str, Any]:
    """Convert a Keras model taking 0-255 pixels; `x_rep` (uint8 NHWC) calibrates int8."""
    import tensorflow as tf

    out.mkdir(parents=True, exist_ok=True)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    (out / "model_float32.tflite").write_bytes(conv.convert())

    rep = np.asarray(x_rep).astype("float32")
    shape = tuple(int(v) for v in model.input_shape[1:])

    def representative():
        for i in range(len(rep)):
            yield [rep[i : i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    (out / "model_int8.tflite").write_bytes(conv.convert())

    manifest = new_manifest(
        name=model.name,
        arch=model.name,
        labels=list(labels),
        input_spec=InputSpec.for_shape(shape),
    )
    manifest["artifacts"] = [
        artifact_entry(out, "model_int8.tflite", "tflite", "int8"),
        artifact_entry(out, "model_float32.tflite", "tflite", "float32"),
    ]
    if onnx:
        import tf2onnx

        h, w, c = shape
        spec = (tf.TensorSpec((None, h, w, c), tf.float32, name="image"),)
        fn = tf.function(lambda x: model(x))
        tf2onnx.convert.from_function(
            fn, input_signature=spec, opset=13, output_path=str(out / "model_float32.onnx")
        )
        manifest["artifacts"].append(artifact_entry(out, "model_float32.onnx", "onnx", "float32"))
    manifest["tools"] = {"tensorflow": tf.__version__}
    save_manifest(out, manifest)
    write_labels(out, manifest["model"]["labels"])
    return manifest


def make_build(
    out: Path, dataset: str = "digits", arch: str = "cnn_small", epochs: int = 3
) -> Path:
    """Train and convert into `out` (a build directory with manifest.json)."""
    model, ds = train_small(dataset, arch, epochs)
    if os.environ.get("EDGECNN_TEST_FALLBACK_CONVERT") != "1":
        try:
            from edgecnn.convert import convert_model
        except ImportError:
            convert_model = None
        if convert_model is not None:
            try:
                convert_model(model, ds, out)
                return out
            except Exception as e:  # the converter is another module's test subject
                warnings.warn(
                    f"convert_model failed ({e}); using the fallback converter", stacklevel=2
                )
    fallback_convert(model, ds, out, onnx=True)
    return out
