"""Training on real data, its outputs, and the CLI's bad-input handling."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from cli_helpers import run_cli


def test_digits_cnn_reaches_95_percent(digits_cnn):
    m = json.loads((digits_cnn / "manifest.json").read_text())
    acc = m["model"]["training"]["test_accuracy"]
    assert acc >= 0.95, f"digits test accuracy {acc:.3f}"
    assert m["model"]["input"]["shape"] == [28, 28, 1]
    assert m["model"]["input"]["pixel_range"] == [0.0, 255.0]
    assert m["model"]["labels"] == [str(i) for i in range(10)]
    assert m["artifacts"] == []
    # cnn_mnist at 28x28x1: rescale 28*28 + conv1 26*26*32*9 + conv2 11*11*64*288 + fc 1600*128 + 128*10
    assert m["model"]["cost"] == {"macs": 784 + 194688 + 2230272 + 204800 + 1280, "params": 225034}


def test_training_outputs(digits_cnn):
    for name in (
        "model.keras",
        "labels.txt",
        "manifest.json",
        "history.csv",
        "curves.png",
        "confusion.png",
    ):
        assert (digits_cnn / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(digits_cnn / "history.csv")))
    assert rows and {"loss", "val_accuracy", "seconds"} <= set(rows[0])
    assert not list(digits_cnn.parent.glob(".train.tmp-*")), "temporary directory left behind"


def test_saved_model_takes_raw_pixels_without_augmentation(digits_cnn, digits_data):
    """The saved graph is the inference model: no random layers, normalization inside."""
    import keras

    model = keras.saving.load_model(digits_cnn / "model.keras")
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "Rescaling" in kinds
    assert not any(k.startswith("Random") for k in kinds), kinds
    x = digits_data.adapted((28, 28, 1)).x_test.astype(np.float32)
    p1 = model.predict(x, verbose=0)
    p2 = model.predict(x, verbose=0)
    assert np.array_equal(p1, p2)  # deterministic in inference
    assert (p1.argmax(1) == digits_data.y_test).mean() >= 0.95


def test_mnist5k_cnn_reaches_94_percent(mnist5k_cnn):
    acc = json.loads((mnist5k_cnn / "manifest.json").read_text())["model"]["training"][
        "test_accuracy"
    ]
    assert acc >= 0.94, f"mnist5k test accuracy {acc:.3f}"


def test_cli_train_json(tmp_path):
    out = tmp_path / "small"
    r = run_cli("train", "--arch", "cnn_small", "--data", "digits", "--input-size", "8", "--epochs", "2", "--out", str(out), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["arch"] == "cnn_small" and summary["input_shape"] == [8, 8, 1]
    assert (out / "model.keras").exists()
    assert "oneDNN" not in r.stderr and "cuda" not in r.stderr.lower()  # TensorFlow noise silenced


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "resnet9000", "--data", "digits"], "unknown architecture"),
        (["--arch", "cnn_mnist", "--data", "nosuchdata"], "unknown dataset"),
        (["--arch", "cnn_mnist", "--data", "folder:/nonexistent/dir"], "does not exist"),
        (["--arch", "cnn_mnist", "--data", "digits", "--epochs", "0"], "epochs must be"),
    ],
)
def test_cli_bad_input(tmp_path, args, message):
    out = tmp_path / "out"
    r = run_cli("train", *args, "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_cli_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli("train", "--arch", "cnn_mnist", "--data", "digits", "--out", str(blocker / "sub"))
    assert r.returncode == 2 and "cannot write output directory" in r.stderr


def test_recipe_with_wrong_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[train]\nepoch = 3\n')
    r = run_cli("run", str(bad), "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "unknown field 'train.epoch'" in r.stderr
    bad.write_text('[train]\nepochs = "three"\n')
    r = run_cli("run", str(bad), "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "must be int" in r.stderr
    assert not (tmp_path / "run").exists()


def test_every_recipe_parses():
    from pathlib import Path

    from edgecnn.recipe import load_recipe

    recipes = sorted(Path("models").glob("*.toml"))
    assert len(recipes) >= 5
    for p in recipes:
        r = load_recipe(p)
        assert r.stages[0] == "train"


def test_mirrored_strategy_trains(tmp_path, digits_data):
    """tf.distribute.MirroredStrategy (one CPU replica here) builds, fits and saves the same model."""
    from edgecnn.train import TrainConfig, train

    cfg = TrainConfig(arch="cnn_small", data="digits", input_size=8, epochs=2, strategy="mirrored")
    cfg.verbose = 0
    summary = train(cfg, tmp_path / "mirrored", dataset=digits_data)
    assert summary["epochs_run"] == 2 and summary["test_accuracy"] > 0.3
    assert (tmp_path / "mirrored" / "model.keras").exists()


def test_unknown_strategy_is_bad_input():
    from edgecnn.errors import BadInput
    from edgecnn.train import TrainConfig

    with pytest.raises(BadInput, match="unknown strategy"):
        TrainConfig(strategy="tpu-pod").validate()
