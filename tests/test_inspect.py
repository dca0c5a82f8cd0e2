"""`edgecnn inspect`: per-layer table/JSON, filter and feature-map PNGs, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import run_cli
from click.testing import CliRunner
from PIL import Image


def _inspect(*args: str):
    from edgecnn.cli import main

    return CliRunner().invoke(main, ["inspect", *args])


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory, digits_data):
    """A real test-split digit saved as an 8x8 grayscale PNG (inspect resizes it)."""
    path = tmp_path_factory.mktemp("img") / "digit.png"
    Image.fromarray(digits_data.x_test[0, ..., 0]).save(path)
    return path


@pytest.fixture(scope="module")
def transfer_model(tmp_path_factory):
    from edgecnn.zoo import build_model

    path = tmp_path_factory.mktemp("mnv2") / "model.keras"
    build_model("mobilenet_v2", (32, 32, 3), 10, alpha=0.35, freeze=True).save(path)
    return path


def _png_size(path) -> tuple[int, int]:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


def test_table_lists_layers_with_params_and_macs(digits_cnn):
    import keras

    r = _inspect(str(digits_cnn))  # a training directory is accepted
    assert r.exit_code == 0, r.output
    model = keras.saving.load_model(digits_cnn / "model.keras")
    for layer in model.layers[1:]:
        assert layer.name in r.stdout
    conv1 = next(line for line in r.stdout.splitlines() if line.startswith("conv1 "))
    assert f"{26 * 26 * 32 * 9:,}" in conv1 and "320" in conv1  # 28x28x1 input, 32 3x3 filters
    assert f"{model.count_params():,} parameters" in r.stdout


def test_json_filters_and_feature_maps(digits_cnn, digit_png, tmp_path):
    import keras

    filters, maps = tmp_path / "filters.png", tmp_path / "maps.png"
    r = _inspect(
        str(digits_cnn / "model.keras"), "--json", "--filters", str(filters),
        "--feature-maps", str(maps), "--image", str(digit_png),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    model = keras.saving.load_model(digits_cnn / "model.keras")
    assert report["total_params"] == model.count_params()
    assert report["total_macs"] == sum(row["macs"] for row in report["layers"])
    rows = {row["name"]: row for row in report["layers"]}
    assert rows["conv2"]["output_shape"] == [11, 11, 64]
    assert rows["conv2"]["macs"] == 11 * 11 * 64 * 3 * 3 * 32

    assert report["filters"]["layer"] == "conv1"
    assert report["filters"]["kernel_shape"] == [3, 3, 1, 32]
    assert report["filters"]["drawn"] == 32
    w, h = _png_size(filters)
    assert w >= 300 and h >= 200
    fm = report["feature_maps"]["layers"]
    assert [x["layer"] for x in fm] == ["conv1", "conv2"]
    assert fm[0]["shape"] == [26, 26, 32] and fm[1]["shape"] == [11, 11, 64]
    _png_size(maps)


def test_feature_maps_are_the_real_activations(digits_cnn, digit_png):
    """The maps drawn are what the conv layers compute for that image, not a stand-in."""
    import keras

    from edgecnn.visualize import feature_maps, load_image

    model = keras.saving.load_model(digits_cnn / "model.keras")
    image = load_image(digit_png, (28, 28, 1))
    assert image.shape == (1, 28, 28, 1) and image.max() > 100  # 0-255 pixels, as trained
    (_, got1), (_, got2) = feature_maps(model, image, 2)
    probe = keras.Model(model.inputs[0], model.get_layer("conv1").output)
    np.testing.assert_allclose(got1, probe(image).numpy()[0], rtol=1e-5, atol=1e-6)
    assert got1.max() > 0 and got2.shape == (11, 11, 64)


def test_transfer_model_reaches_into_backbone(transfer_model, digit_png, tmp_path):
    filters, maps = tmp_path / "f.png", tmp_path / "m.png"
    r = _inspect(
        str(transfer_model), "--json", "--filters", str(filters),
        "--feature-maps", str(maps), "--image", str(digit_png), "--layers", "3",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["filters"]["layer"] == "backbone/Conv1"
    assert report["filters"]["kernel_shape"][:3] == [3, 3, 3]
    names = [x["layer"] for x in report["feature_maps"]["layers"]]
    assert len(names) == 3 and all(n.startswith("backbone/") for n in names)
    assert any(row["type"] == "DepthwiseConv2D" and row["macs"] > 0 for row in report["layers"])
    assert report["trainable_params"] < report["total_params"]  # frozen base
    _png_size(filters), _png_size(maps)


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", "model file not found"),
        ("corrupt", "not a readable Keras model"),
        ("bad_image", "cannot read image"),
        ("no_image", "--feature-maps needs --image"),
    ],
)
def test_bad_input_exits_2_with_one_line(case, message, tmp_path, transfer_model):
    corrupt = tmp_path / "model.keras"
    corrupt.write_bytes(b"this is not a keras archive")
    not_image = tmp_path / "photo.png"
    not_image.write_text("not an image")
    out = tmp_path / "maps.png"
    args = {
        "missing": [str(tmp_path / "nope.keras")],
        "corrupt": [str(corrupt)],
        "bad_image": [str(transfer_model), "--feature-maps", str(out), "--image", str(not_image)],
        "no_image": [str(corrupt), "--feature-maps", str(out)],
    }[case]
    r = run_cli("inspect", *args, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
