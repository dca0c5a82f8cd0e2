"""Loading saved Keras models with edgecnn's custom layers registered."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from edgecnn.errors import BadInput
from edgecnn.modelfile import MODEL_FILE, resolve_model_path

__all__ = ["MODEL_FILE", "canonical_keras", "load_keras_model", "resolve_model_path", "save_keras"]

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold


def canonical_keras(path: str | os.PathLike) -> None:
    """Rewrite a `.keras` zip so the same model gives the same bytes: Keras stamps the save
    time into metadata.json and the weights entry's zip header. The time is dropped (or set
    from SOURCE_DATE_EPOCH, the reproducible-builds convention) and every entry dated 1980."""
    import json
    import time
    import zipfile

    from edgecnn.fsutil import atomic_write_bytes

    p = Path(path)
    with zipfile.ZipFile(p) as src:
        entries = [(info, src.read(info)) for info in src.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for info, data in entries:
            if info.filename == "config.json":
                data = _canonical_config(data)
            if info.filename == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
                    stamp = time.gmtime(int(os.environ["SOURCE_DATE_EPOCH"]))
                    meta["date_saved"] = time.strftime("%Y-%m-%d@%H:%M:%S", stamp)
                data = json.dumps(meta).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
            fixed.compress_type, fixed.external_attr = info.compress_type, info.external_attr
            out.writestr(fixed, data)
    atomic_write_bytes(p, buf.getvalue())


def _canonical_config(data: bytes) -> bytes:
    """Keras writes Python object ids as `shared_object_id`; number them in order instead
    (they only link the places that share one object)."""
    import json

    ids: dict[int, int] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "shared_object_id" in node:
                node["shared_object_id"] = ids.setdefault(node["shared_object_id"], len(ids) + 1)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        return node

    return json.dumps(walk(json.loads(data))).encode()


def save_keras(model: Any, path: str | os.PathLike) -> Path:
    """`model.save`, then `canonical_keras`: byte-identical files for identical models."""
    model.save(str(path))
    canonical_keras(path)
    return Path(path)


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
