"""The shared test models as plain functions: the session fixtures call them, and so does
`tools/numerics_margins.py`, which rebuilds them under other seeds and numerics to measure
how much margin each test's threshold really has.

Every model is trained here on real data by edgecnn's own code (nothing opaque is committed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent

# The model suite checks the int8 artifacts against model.keras: skip the float exports and
# keep convert's own accuracy pass short (parity evaluates the full test split itself).
INT8_ONLY = {"precisions": ("int8",), "eval_samples": 200}

# MobileNetV2-0.35 at 32x32 RGB, from scratch on scikit-learn digits (359 test images).
MOBILENET_DATA = "digits"
MOBILENET_SHAPE = (32, 32, 3)
MOBILENET_EPOCHS = 12


def train_recipe(recipe: str, out: Path, seed: int | None = None) -> Path:
    """A model trained by a recipe in models/ (optionally under another seed): a training dir."""
    from edgecnn.recipe import load_recipe
    from edgecnn.train import TrainConfig, train

    cfg = TrainConfig.from_recipe(load_recipe(REPO / "models" / f"{recipe}.toml"))
    cfg.verbose = 0
    if seed is not None:
        cfg.seed = seed
    summary = train(cfg, out)
    (out / "summary.txt").write_text(repr(summary))
    return out


def convert(model: Any, data: Any, out: Path, **kw: Any) -> Path:
    from edgecnn.build import convert_model

    convert_model(model, data, out, **kw)
    return out


def fashion_model(out: Path, seed: int = 0) -> Path:
    """cnn_mnist on a stratified 6,000-image subset of Fashion-MNIST (3 epochs): a training dir."""
    from edgecnn.train import TrainConfig, train

    cfg = TrainConfig(
        arch="cnn_mnist",
        data="fashion_mnist",
        epochs=3,
        batch_size=64,
        dropout=0.25,
        early_stopping=0,
        limit_train=6000,
        verbose=0,
        seed=seed,
        name="fashion_mnist_cnn_ci",
    )
    train(cfg, out)
    return out


def mobilenet_model(
    seed: int = 0,
    data: str = MOBILENET_DATA,
    epochs: int = MOBILENET_EPOCHS,
    lr: float = 2e-3,
    limit_train: int | None = None,
):
    """(Keras model, dataset): MobileNetV2 (alpha 0.35, 32x32 RGB, weights=None) from scratch.

    Keras' MobileNetV2 BatchNorm momentum (0.999) needs thousands of steps before its moving
    statistics are usable; a CI-sized run has far fewer, so the momentum is lowered to 0.9.
    """
    import keras
    import tensorflow as tf

    from edgecnn.data import load_dataset
    from edgecnn.zoo import build_model

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()  # the same seed gives the same model here
    ds = load_dataset(data, seed=seed, limit_train=limit_train).adapted(MOBILENET_SHAPE)
    model = build_model(
        "mobilenet_v2", MOBILENET_SHAPE, ds.num_classes, weights="none", alpha=0.35,
        head="avg", dense_units=64, dropout=0.1,
    )  # fmt: skip
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(ds.x_train.astype(np.float32), ds.y_train, epochs=epochs, batch_size=32, verbose=0)
    return model, ds


def keras_top1(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float((model.predict(x.astype(np.float32), verbose=0).argmax(1) == y).mean())


def train_small(
    dataset: str = "digits", arch: str = "cnn_small", epochs: int = 3
) -> tuple[Any, Any]:
    """A tiny CNN trained for a few epochs on a real dataset; returns (model, dataset)."""
    from edgecnn.quiet import quiet_tensorflow

    quiet_tensorflow()
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
    model, ds = train_small(dataset, arch, epochs)
    return convert(model, ds, out)
