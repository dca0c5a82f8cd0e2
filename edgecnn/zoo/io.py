"""Loading saved Keras models with edgecnn's custom layers registered."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from edgecnn.errors import BadInput

MODEL_FILE = "model.keras"


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A `.keras`/`.h5` file, or a training output directory holding `model.keras`."""
    p = Path(path)
    if p.is_dir():
        if (p / MODEL_FILE).is_file():
            return p / MODEL_FILE
        raise BadInput(f"{p} is a directory without a {MODEL_FILE}")
    if not p.exists():
        raise BadInput(f"model file not found: {p}")
    if not p.is_file():
        raise BadInput(f"model path is not a file: {p}")
    return p


def load_keras_model(path: str | os.PathLike, compile: bool = False) -> Any:
    """Load a `.keras` (or legacy `.h5`) model; BadInput on a missing or corrupt file.

    Compiling is off by default: inspect, convert and parity only run inference,
    and skipping it avoids failures on custom losses/metrics.
    """
    p = resolve_model_path(path)
    if p.suffix == ".keras" and not zipfile.is_zipfile(p):
        raise BadInput(f"{p} is not a readable Keras model (not a .keras zip archive)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
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
