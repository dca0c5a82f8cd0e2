"""Shared fixtures: real datasets and models trained once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
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
    from edgecnn.recipe import load_recipe
    from edgecnn.train import TrainConfig, train

    cfg = TrainConfig.from_recipe(load_recipe(REPO / "models" / "digits_cnn.toml"))
    cfg.verbose = 0
    out = tmp_path_factory.mktemp("digits_cnn") / "train"
    summary = train(cfg, out)
    (out / "summary.txt").write_text(repr(summary))
    return out


@pytest.fixture(scope="session")
def mnist5k_cnn(tmp_path_factory) -> Path:
    """cnn_mnist trained on MNIST-5k by its recipe: a training directory."""
    from edgecnn.recipe import load_recipe
    from edgecnn.train import TrainConfig, train

    cfg = TrainConfig.from_recipe(load_recipe(REPO / "models" / "mnist5k_cnn.toml"))
    cfg.verbose = 0
    out = tmp_path_factory.mktemp("mnist5k_cnn") / "train"
    train(cfg, out)
    return out
