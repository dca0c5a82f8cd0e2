"""Transfer learning from the offline ImageNet EfficientNet-Lite0 beats training it from scratch.

Both models go through edgecnn's real training path (`edgecnn.train.train`)
with the same architecture, data, seed and epoch budget; only `weights`
differs. The data is real MNIST (mnist5k, 20 images per class for training,
1,000 test images) resized to 64x64 RGB: small enough that pretrained
features matter, with enough steps per epoch (25) that the scratch net is
past its BatchNorm warm-up and really learning. Measured by
tools/transfer_vs_scratch.py at 5 epochs, seeds 0-2: pretrained
0.725-0.782 test accuracy, scratch 0.474-0.494 (gap +0.233..+0.308).

The fine-tune phase and the lfw_subset data (scikit-image's LFW faces) are
checked on its 200 LFW crops, the cheapest real set to train on.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = "mnist5k"
LIMIT_TRAIN = 200
SIZE = 64
EPOCHS = 5
SEED = 0
BATCH = 8
# Measured at 5 epochs over seeds 0-2: gap 0.233-0.308, pretrained 0.725-0.782,
# scratch 0.474-0.494. Bounds at about half of those still prove the point.
MIN_GAP = 0.12
MIN_TRANSFER_ACC = 0.6
MIN_SCRATCH_ACC = 0.25  # chance is 0.1: the scratch run learned, it is not a broken baseline


def _config(weights: str, **overrides):
    from edgecnn.train import TrainConfig

    cfg = TrainConfig(
        arch="efficientnet_lite0",
        data=DATA,
        limit_train=LIMIT_TRAIN,
        input_size=SIZE,
        epochs=EPOCHS,
        weights=weights,
        seed=SEED,
        batch_size=BATCH,
        learning_rate=1e-3,
        dropout=0.2,
        early_stopping=0,  # both get the whole epoch budget
        verbose=0,
    )
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def _history(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def _backbone_weights(run: Path) -> dict[str, list[np.ndarray]]:
    from edgecnn.zoo import load_keras_model

    backbone = load_keras_model(run / "model.keras").get_layer("backbone")
    return {la.name: la.get_weights() for la in backbone.layers if la.weights}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """One pretrained and one from-scratch training run: weights -> (directory, summary)."""
    from edgecnn.train import train

    root = tmp_path_factory.mktemp("effnet_transfer")
    out = {}
    for weights in ("imagenet", "none"):
        run = root / weights
        out[weights] = (run, train(_config(weights), run))
    return out


@pytest.fixture(scope="module")
def pretrained_weights() -> dict[str, list[np.ndarray]]:
    """The backbone as freshly loaded from the .pth, at the test's input size."""
    from edgecnn.zoo.efficientnet_lite import pretrained_backbone

    backbone = pretrained_backbone((SIZE, SIZE, 3))
    return {la.name: la.get_weights() for la in backbone.layers if la.weights}


def test_lfw_subset_is_real_faces_and_non_faces():
    from edgecnn.data import load_dataset

    d = load_dataset("lfw_subset")
    assert d.class_names == ["face", "non-face"]
    assert d.x_train.dtype == np.uint8 and d.input_shape == (25, 25, 1)
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 200
    assert np.bincount(d.y_test).tolist() == [20, 20]
    assert d.x_train.max() == 255 and d.x_train.min() == 0  # 0..1 floats brought to camera pixels


def test_lfw_subset_without_scikit_image_is_one_line(monkeypatch):
    from edgecnn.data import load_dataset
    from edgecnn.errors import BadInput

    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(BadInput, match=r"lfw_subset needs scikit-image: pip install scikit-image"):
        load_dataset("lfw_subset")


def test_pretrained_base_beats_scratch_for_the_same_epochs(runs):
    (_, pre), (_, scratch) = runs["imagenet"], runs["none"]
    for s in (pre, scratch):
        assert s["epochs_run"] == EPOCHS and s["input_shape"] == [SIZE, SIZE, 3]
    assert pre["params"] == scratch["params"]  # same network, only the starting weights differ
    assert pre["test_accuracy"] >= MIN_TRANSFER_ACC, pre
    assert scratch["test_accuracy"] >= MIN_SCRATCH_ACC, scratch
    gap = pre["test_accuracy"] - scratch["test_accuracy"]
    assert gap >= MIN_GAP, (pre["test_accuracy"], scratch["test_accuracy"])


def test_scratch_run_really_trained_the_whole_network(runs, pretrained_weights):
    """The comparison is fair only if the scratch net trained its whole base, not just a head."""
    run, _ = runs["none"]
    trained = _backbone_weights(run)
    assert trained.keys() == pretrained_weights.keys()
    # Its base is its own, not ImageNet's.
    assert not np.allclose(trained["head_conv"][0], pretrained_weights["head_conv"][0])


def test_pretrained_base_stays_frozen(runs, pretrained_weights):
    """Every backbone weight, BatchNorm statistics included, is still the .pth's after training."""
    run, _ = runs["imagenet"]
    trained = _backbone_weights(run)
    assert trained.keys() == pretrained_weights.keys()
    for name, values in pretrained_weights.items():
        for got, want in zip(trained[name], values, strict=True):
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_fine_tune_phase_unfreezes_top_layers_only(tmp_path, pretrained_weights):
    """`--fine-tune-layers/--fine-tune-epochs`: the top conv layers move, the rest and BN don't."""
    from edgecnn.train import train

    cfg = _config(
        "imagenet", data="lfw_subset", limit_train=None, batch_size=32, epochs=1,
        fine_tune_layers=20, fine_tune_epochs=1,
    )  # fmt: skip
    summary = train(cfg, tmp_path / "ft")
    phases = [r["phase"] for r in _history(tmp_path / "ft")]
    assert phases[0] == "train" and phases[1].startswith("fine_tune(")
    assert int(phases[1].split("(")[1].split()[0]) > 0  # some layers were unfrozen
    assert summary["epochs_run"] == 2
    trained = _backbone_weights(tmp_path / "ft")
    changed = {
        name
        for name, values in pretrained_weights.items()
        if not all(np.array_equal(g, w) for g, w in zip(trained[name], values, strict=True))
    }
    assert "head_conv" in changed  # the top 1x1 conv was fine-tuned
    assert "stem_conv" not in changed and "block0_dwconv" not in changed
    assert not any(name.endswith("_bn") for name in changed), sorted(changed)
