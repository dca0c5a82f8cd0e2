"""Session fixtures for the parity suite: build directories made by the real convert.

Every model is trained here from its recipe or from the code below (nothing
opaque is committed). The lead's `digits_cnn` and `mnist5k_cnn` training
fixtures are reused; only conversion happens here for them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_SKIP = (
    "Fashion-MNIST missing: install the Debian package dataset-fashion-mnist "
    "(apt-get install -y dataset-fashion-mnist; .ci/run does)"
)


def fashion_available() -> bool:
    try:
        from edgecnn.data import sources

        sources.load_fashion_mnist()
        return True
    except Exception:
        return False


def convert(model: Any, data: Any, out: Path, **kw: Any) -> Path:
    from edgecnn.convert import convert_model

    convert_model(model, data, out, **kw)
    return out


# The model suite checks the int8 artifacts against model.keras: skip the float exports and
# keep convert's own accuracy pass short (parity evaluates the full test split itself).
INT8_ONLY = {"precisions": ("int8",), "eval_samples": 200}


def copy_build(src: Path, dst: Path) -> Path:
    """A private copy of a build (tests that break or fix one must not touch the shared one)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("parity*"))
    return dst


def replace_artifact(build: Path, name: str, data: bytes, **model_fields: Any) -> None:
    """Swap an artifact's bytes and record it honestly in the manifest (sha256, size, I/O)."""
    from edgecnn.export.tflite import tflite_io
    from edgecnn.fsutil import sha256_file
    from edgecnn.manifest import load_manifest, save_manifest

    (build / name).write_bytes(data)
    m = load_manifest(build)
    for a in m["artifacts"]:
        if a["path"] == name:
            a["size"] = len(data)
            a["sha256"] = sha256_file(build / name)
            if a["format"] == "tflite":
                a["inputs"], a["outputs"] = tflite_io(build / name)
    for key, value in model_fields.items():
        m["model"][key] = value
    save_manifest(build, m)


def edit_manifest(build: Path, fn: Any) -> None:
    p = build / "manifest.json"
    m = json.loads(p.read_text())
    fn(m)
    p.write_text(json.dumps(m, indent=2))


@pytest.fixture(scope="session")
def digits_build(tmp_path_factory: pytest.TempPathFactory, digits_cnn: Path) -> Path:
    """digits_cnn converted by the default recipe's settings (float32 + int8, TFLite + ONNX)."""
    return convert(digits_cnn, "digits", tmp_path_factory.mktemp("parity") / "digits_build")


@pytest.fixture(scope="session")
def mnist5k_build(tmp_path_factory: pytest.TempPathFactory, mnist5k_cnn: Path) -> Path:
    return convert(
        mnist5k_cnn, "mnist5k", tmp_path_factory.mktemp("parity") / "mnist5k_build", **INT8_ONLY
    )


@pytest.fixture(scope="session")
def mnist5k_pruned_build(tmp_path_factory: pytest.TempPathFactory, mnist5k_cnn: Path) -> Path:
    """The MNIST seed CNN with half its conv filters removed (L1) and 2 fine-tuning epochs."""
    return convert(
        mnist5k_cnn,
        "mnist5k",
        tmp_path_factory.mktemp("parity") / "mnist5k_pruned_build",
        prune_filters=0.5,
        fine_tune_epochs=2,
        **INT8_ONLY,
    )


@pytest.fixture(scope="session")
def fashion_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnn_mnist on a stratified 6,000-image subset of Fashion-MNIST (3 epochs); parity then
    runs on the full 10,000-image test split."""
    if not fashion_available():
        pytest.skip(FASHION_SKIP)
    from edgecnn.train import TrainConfig, train

    root = tmp_path_factory.mktemp("parity")
    cfg = TrainConfig(
        arch="cnn_mnist",
        data="fashion_mnist",
        epochs=3,
        batch_size=64,
        dropout=0.25,
        early_stopping=0,
        limit_train=6000,
        verbose=0,
        name="fashion_mnist_cnn_ci",
    )
    train(cfg, root / "train")
    return convert(root / "train", "fashion_mnist", root / "build", **INT8_ONLY)


@pytest.fixture(scope="session")
def mobilenet_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MobileNetV2 (alpha 0.35, 32x32 RGB, weights=None) trained from scratch on digits.

    Keras' MobileNetV2 BatchNorm momentum (0.999) needs thousands of steps before its moving
    statistics are usable; a CI-sized run has ~500, so the momentum is lowered to 0.9.
    """
    import keras

    from edgecnn.data import load_dataset
    from edgecnn.zoo import build_model

    keras.utils.set_random_seed(0)
    ds = load_dataset("digits").adapted((32, 32, 3))
    model = build_model(
        "mobilenet_v2",
        (32, 32, 3),
        10,
        weights="none",
        alpha=0.35,
        head="avg",
        dense_units=64,
        dropout=0.1,
    )
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(ds.x_train.astype(np.float32), ds.y_train, epochs=12, batch_size=32, verbose=0)
    acc = float(
        (model.predict(ds.x_test.astype(np.float32), verbose=0).argmax(1) == ds.y_test).mean()
    )
    assert acc > 0.6, f"MobileNetV2 fixture under-trained: {acc:.1%} on digits (chance 10%)"
    return convert(model, ds, tmp_path_factory.mktemp("parity") / "mobilenet_build", **INT8_ONLY)
