"""Loading saved Keras models with edgecnn's custom layers registered."""

from __future__ import annotations

import os
from typing import Any

from edgecnn.errors import BadInput
from edgecnn.modelfile import MODEL_FILE, resolve_model_path

__all__ = ["MODEL_FILE", "load_keras_model", "resolve_model_path"]


def load_keras_model(path: str | os.PathLike, compile: bool = False) -> Any:
    """Load a `.keras` (or legacy `.h5`) model; BadInput on a missing or corrupt file.

    Compiling is off by default: inspect, convert and parity only run inference,
    and skipping it avoids failures on custom losses/metrics.
    """
    p = resolve_model_path(path)
    from edgecnn.quiet import quiet_tensorflow

    quiet_tensorflow()
    import keras

    import edgecnn.zoo.layers  # noqa: F401  (registers custom layers)

    try:
        model = keras.saving.load_model(str(p), compile=compile)
    except Exception as e:  # keras raises ValueError, OSError, KeyError, zip errors...
        lines = str(e).strip().splitlines()
        detail = lines[0] if lines else type(e).__name__
        raise BadInput(f"{p} is not a readable Keras model: {detail}") from None
    if not isinstance(model, keras.Model):
        raise BadInput(f"{p} does not hold a Keras model")
    return model
