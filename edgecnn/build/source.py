"""The model a build starts from: a Keras model, a `.keras`/`.h5` file, a training
directory (whose manifest fragment carries labels and provenance) or a SavedModel."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import BadInput
from edgecnn.manifest import MANIFEST_NAME, Manifest, load_manifest


@dataclass
class Source:
    model: Any  # keras.Model
    path: Path | None  # the file it came from (None: an in-memory model)
    fragment: Manifest | None  # the training run's manifest, when there is one
    input_shape: tuple[int, int, int]
    classes: int


def _fragment(p: Path) -> Manifest | None:
    frag_dir = p if p.is_dir() else p.parent
    if not (frag_dir / MANIFEST_NAME).is_file():
        return None
    try:
        return load_manifest(frag_dir)
    except BadInput:
        return None  # a broken fragment is not fatal: labels then come from the data


def model_shapes(model: Any) -> tuple[tuple[int, int, int], int]:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise BadInput("convert handles single-input, single-output image classifiers")
    in_shape = tuple(model.inputs[0].shape[1:])
    out_shape = tuple(model.outputs[0].shape[1:])
    if len(in_shape) != 3 or any(v is None for v in in_shape):
        raise BadInput(f"model input must be a fixed (H, W, C) image, got {in_shape}")
    if len(out_shape) != 1 or out_shape[0] is None:
        raise BadInput(f"model output must be a vector of class scores, got {out_shape}")
    return tuple(int(v) for v in in_shape), int(out_shape[0])  # type: ignore[return-value]


def _load_saved_model(p: Path) -> Any:
    """Wrap a TF SavedModel's serving signature as a Keras model (conversion only, no pruning)."""
    import keras
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(p))
        fn = loaded.signatures["serving_default"]
        spec = list(fn.structured_input_signature[1].values())[0]
        shape = tuple(int(v) for v in spec.shape[1:])
        layer = keras.layers.TFSMLayer(str(p), call_endpoint="serving_default")
        inp = keras.Input(shape=shape, name="image")
        out = layer(inp)
        if isinstance(out, dict):
            out = list(out.values())[0]
        return keras.Model(inp, out, name=p.name)
    except Exception as e:
        lines = str(e).strip().splitlines()
        raise BadInput(f"{p} is not a usable SavedModel: {lines[0] if lines else e}") from None


def _load_file(p: Path) -> tuple[Any, Path]:
    if p.is_file() and p.suffix != ".h5" and not zipfile.is_zipfile(p):
        raise BadInput(
            f"{p} is not a Keras model (.keras zip archive, .h5 or SavedModel directory)"
        )
    if p.is_dir() and (p / "saved_model.pb").is_file():
        return _load_saved_model(p), p
    from edgecnn.zoo.io import load_keras_model, resolve_model_path

    src = resolve_model_path(p)
    return load_keras_model(src), src


def load_source(model: str | os.PathLike | Any) -> Source:
    """The Keras model and what is known about it."""
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        if not p.exists():
            raise BadInput(f"model not found: {p}")
        fragment = _fragment(p)
        keras_model, path = _load_file(p)
    else:
        keras_model, path, fragment = model, None, None
    in_shape, classes = model_shapes(keras_model)
    if fragment and len(fragment.labels) != classes:
        fragment = None  # stale fragment: it describes another model
    return Source(keras_model, path, fragment, in_shape, classes)
