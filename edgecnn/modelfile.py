"""Finding a saved Keras model on disk, without importing TensorFlow (fail fast on typos)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

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
    if p.suffix == ".keras" and not zipfile.is_zipfile(p):
        raise BadInput(f"{p} is not a readable Keras model (not a .keras zip archive)")
    return p
