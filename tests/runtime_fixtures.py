"""Build small real artifacts (trained on real data) for the runtime, bench and daemon tests.

Conversion goes through the project's own `edgecnn.convert.convert_model`, so a
broken converter fails these tests instead of being papered over. Host side:
imports TensorFlow lazily.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


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


def make_build(
    out: Path, dataset: str = "digits", arch: str = "cnn_small", epochs: int = 3
) -> Path:
    """Train and convert into `out` (a build directory with manifest.json)."""
    from edgecnn.convert import convert_model

    model, ds = train_small(dataset, arch, epochs)
    convert_model(model, ds, out)
    return out
