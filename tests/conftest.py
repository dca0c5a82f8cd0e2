"""Shared session fixtures: real datasets, and models trained and converted once per session.

Every model is trained here by edgecnn's own code on real data (tests/builds.py holds the
recipes as plain functions, so tools/numerics_margins.py can rebuild them under other
seeds); nothing opaque is committed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from builds import INT8_ONLY, REPO, convert, fashion_model, mobilenet_model, train_recipe
from helpers import FASHION_SKIP, fashion_available

from edgecnn.quiet import quiet_tensorflow

quiet_tensorflow(import_now=False)

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def digits_data():
    from edgecnn.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_cnn(tmp_path_factory) -> Path:
    """cnn_mnist trained on digits (28x28) by the default recipe's settings: a training directory."""
    return train_recipe("digits_cnn", tmp_path_factory.mktemp("digits_cnn") / "train")


@pytest.fixture(scope="session")
def mnist5k_cnn(tmp_path_factory) -> Path:
    """cnn_mnist trained on MNIST-5k by its recipe: a training directory."""
    return train_recipe("mnist5k_cnn", tmp_path_factory.mktemp("mnist5k_cnn") / "train")


@pytest.fixture(scope="session")
def digits_build(tmp_path_factory, digits_cnn: Path) -> Path:
    """digits_cnn converted by the default recipe's settings (float32 + int8, TFLite + ONNX)."""
    return convert(digits_cnn, "digits", tmp_path_factory.mktemp("parity") / "digits_build")


@pytest.fixture(scope="session")
def mnist5k_build(tmp_path_factory, mnist5k_cnn: Path) -> Path:
    return convert(
        mnist5k_cnn, "mnist5k", tmp_path_factory.mktemp("parity") / "mnist5k_build", **INT8_ONLY
    )


@pytest.fixture(scope="session")
def mnist5k_pruned_build(tmp_path_factory, mnist5k_cnn: Path) -> Path:
    """The MNIST seed CNN with half its conv filters removed (L1) and 2 fine-tuning epochs."""
    out = tmp_path_factory.mktemp("parity") / "mnist5k_pruned_build"
    return convert(mnist5k_cnn, "mnist5k", out, prune_filters=0.5, fine_tune_epochs=2, **INT8_ONLY)


@pytest.fixture(scope="session")
def fashion_build(tmp_path_factory) -> Path:
    """cnn_mnist on a stratified 6,000-image subset of Fashion-MNIST (3 epochs); parity then
    runs on the full 10,000-image test split."""
    if not fashion_available():
        pytest.skip(FASHION_SKIP)
    root = tmp_path_factory.mktemp("parity")
    return convert(fashion_model(root / "train"), "fashion_mnist", root / "build", **INT8_ONLY)


@pytest.fixture(scope="session")
def mobilenet_build(tmp_path_factory) -> Path:
    """MobileNetV2 (alpha 0.35, 32x32 RGB, weights=None) trained from scratch (tests/builds.py)."""
    model, ds = mobilenet_model()
    acc = float(
        (model.predict(ds.x_test.astype("float32"), verbose=0).argmax(1) == ds.y_test).mean()
    )
    assert acc > 0.6, f"MobileNetV2 fixture under-trained: {acc:.1%} (chance 10%)"
    return convert(model, ds, tmp_path_factory.mktemp("parity") / "mobilenet_build", **INT8_ONLY)


@pytest.fixture(scope="session")
def loop_model(tmp_path_factory) -> tuple[Path, Path]:
    """(training dir, build dir): the closed loop's first model, cnn_small on digits."""
    from loop_fixtures import first_model

    return first_model(tmp_path_factory)


@pytest.fixture(scope="session")
def loop_videos(tmp_path_factory) -> dict:
    """The loop's camera and evaluation videos of real MNIST-5k digits, with their labels."""
    from loop_fixtures import mnist_videos

    return mnist_videos(tmp_path_factory)
