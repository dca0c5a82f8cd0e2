"""Transfer builders, fine-tuning, weights files, saving, and MAC counts (real digits images)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from edgecnn.errors import BadInput

SHAPE = (32, 32, 3)
TRANSFER = [
    ("vgg16", 1.0),
    ("mobilenet", 0.25),
    ("mobilenet_v2", 0.35),
    ("mobilenet_v3_small", 0.75),
    ("mobilenet_v3_large", 0.75),
]


@pytest.fixture(scope="module")
def digits32():
    """64 real digits images, resized to 32x32 RGB."""
    from edgecnn.data import load_dataset

    ds = load_dataset("digits").adapted(SHAPE)
    return ds.x_train[:64].astype(np.float32), ds.y_train[:64]


def _compile(model, lr: float = 1e-3) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


@pytest.mark.parametrize("arch,alpha", TRANSFER)
def test_transfer_builds_and_trains_one_step(arch, alpha, digits32):
    """Every builder with weights=none, trained one step with the base frozen (as a pretrained
    build is: tracing gradients through a whole backbone costs 4x the CPU, see the next test)."""
    from edgecnn.zoo import build_model

    x, y = digits32
    model = build_model(arch, SHAPE, 10, weights="none", alpha=alpha, freeze=True, dropout=0)
    backbone = model.get_layer("backbone")
    frozen = [w.copy() for w in backbone.get_weights()]
    head = [w.numpy().copy() for w in model.trainable_weights]
    _compile(model)
    hist = model.fit(x, y, batch_size=32, epochs=1, steps_per_epoch=1, verbose=0)

    assert np.isfinite(hist.history["loss"][0])
    trained = [w.numpy() for w in model.trainable_weights]
    assert len(trained) == len(head) > 0
    assert any(not np.array_equal(a, b) for a, b in zip(head, trained, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(frozen, backbone.get_weights(), strict=True))
    probs = model.predict(x[:4], verbose=0)
    assert probs.shape == (4, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # BatchNorm stays in inference mode even in training mode (no update, same outputs).
    np.testing.assert_array_equal(
        model(x[:4], training=True).numpy(), model(x[:4], training=False).numpy()
    )


def test_no_weights_trains_the_backbone_from_scratch(digits32):
    """weights=none has nothing to keep: the backbone and its BatchNorm statistics train."""
    import keras

    from edgecnn.zoo import build_model

    x, y = digits32
    model = build_model("mobilenet", SHAPE, 10, weights="none", alpha=0.25)
    backbone = model.get_layer("backbone")
    assert backbone.trainable
    before = [w.copy() for w in backbone.get_weights()]
    bn = next(la for la in backbone.layers if isinstance(la, keras.layers.BatchNormalization))
    assert bn.momentum == 0.9  # not keras' 0.999: statistics must catch up within an epoch
    mean_before = bn.moving_mean.numpy().copy()
    _compile(model)
    model.fit(x, y, batch_size=32, epochs=1, steps_per_epoch=1, verbose=0)
    after = backbone.get_weights()
    changed = sum(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert changed > len(before) // 2, f"only {changed} of {len(before)} backbone arrays moved"
    assert not np.array_equal(mean_before, bn.moving_mean.numpy())


def test_preprocessing_matches_keras_applications(digits32):
    """0-255 RGB in; the baked-in layer does what each backbone's preprocess_input does."""
    import keras

    from edgecnn.zoo import build_model

    x = digits32[0][:4]
    x = x * np.array([1.0, 0.7, 0.4], dtype=np.float32)  # distinct channels to catch a swap
    vgg = build_model("vgg16", SHAPE, 10)
    got = vgg.get_layer("preprocess")(x).numpy()
    np.testing.assert_allclose(got, keras.applications.vgg16.preprocess_input(x.copy()), atol=1e-4)
    mnv2 = build_model("mobilenet_v2", SHAPE, 10, alpha=0.35)
    got = mnv2.get_layer("preprocess")(x).numpy()
    want = keras.applications.mobilenet_v2.preprocess_input(x.copy())
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_local_weights_file_is_loaded(tmp_path, digits32):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    from edgecnn.zoo import build_model

    source = build_model("mobilenet_v2", SHAPE, 10, alpha=0.35).get_layer("backbone")
    native = tmp_path / "backbone.weights.h5"
    source.save_weights(native)
    legacy = tmp_path / "backbone.h5"  # the format keras.applications' ImageNet files use
    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)

    fresh = build_model("mobilenet_v2", SHAPE, 10, alpha=0.35).get_layer("backbone")
    assert not all(
        np.array_equal(a, b) for a, b in zip(source.get_weights(), fresh.get_weights(), strict=True)
    )
    for path in (native, legacy):
        loaded = build_model("mobilenet_v2", SHAPE, 10, alpha=0.35, weights=str(path), dropout=0)
        got = loaded.get_layer("backbone").get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(), got, strict=True))

    # Pretrained: the base is frozen and BatchNorm runs in inference mode even under fit().
    x, y = digits32
    assert not loaded.get_layer("backbone").trainable
    _compile(loaded)
    loaded.fit(x, y, batch_size=32, epochs=1, steps_per_epoch=1, verbose=0)
    after = loaded.get_layer("backbone").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(), after, strict=True))
    np.testing.assert_array_equal(
        loaded(x[:4], training=True).numpy(), loaded(x[:4], training=False).numpy()
    )

    # A file for another width, or not a weights file at all: one clear error.
    with pytest.raises(BadInput, match="does not fit the mobilenet_v2 backbone"):
        build_model("mobilenet_v2", SHAPE, 10, alpha=0.5, weights=str(native))
    with pytest.raises(BadInput, match="does not fit the mobilenet backbone"):
        build_model("mobilenet", SHAPE, 10, alpha=0.25, weights=str(legacy))
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(BadInput, match="does not fit"):
        build_model("mobilenet_v2", SHAPE, 10, alpha=0.35, weights=str(junk))
    with pytest.raises(BadInput, match="weights file not found"):
        build_model("mobilenet_v2", SHAPE, 10, alpha=0.35, weights=str(tmp_path / "missing.h5"))


@pytest.mark.parametrize(
    "arch,shape,opts,message",
    [
        ("mobilenet_v2", (24, 24, 3), {}, "at least 32x32"),
        ("mobilenet_v2", (32, 32, 1), {}, "3 channels"),
        ("mobilenet", SHAPE, {"alpha": 0.35, "weights": "imagenet"}, "alpha 0.25, 0.5, 0.75, 1"),
        ("mobilenet_v3_small", SHAPE, {"alpha": 0.5, "weights": "imagenet"}, "alpha 0.75, 1"),
        ("vgg16", SHAPE, {"alpha": 0.5}, "no width multiplier"),
        ("mobilenet_v2", SHAPE, {"alpha": 0.0}, "alpha must be"),
        ("mobilenet_v2", SHAPE, {"head": "attention"}, "unknown head"),
        ("mobilenet_v2", SHAPE, {"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_transfer_options(arch, shape, opts, message):
    from edgecnn.zoo import build_model

    with pytest.raises(BadInput, match=message):
        build_model(arch, shape, 10, **opts)


def test_fine_tune_unfreezes_top_layers_but_not_batchnorm(digits32):
    import keras

    from edgecnn.zoo import build_model, set_fine_tune

    x, y = digits32
    # freeze=True is what a pretrained (ImageNet / local file) build does.
    model = build_model("mobilenet_v2", SHAPE, 10, alpha=0.35, head="flatten", l2=1e-4, freeze=True)
    frozen_count = len(model.trainable_weights)
    n = set_fine_tune(model, 20)
    backbone = model.get_layer("backbone")
    top = backbone.layers[-20:]
    assert n == sum(
        1 for la in top if la.weights and not isinstance(la, keras.layers.BatchNormalization)
    )
    assert n > 0 and len(model.trainable_weights) > frozen_count
    assert not any(la.trainable for la in backbone.layers[:-20] if la.weights)
    bns = [la for la in backbone.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert bns and not any(la.trainable for la in bns)

    conv = [la for la in top if isinstance(la, keras.layers.Conv2D)][-1]
    before_conv = conv.kernel.numpy().copy()
    before_bn = [w.numpy().copy() for la in bns for w in la.weights]
    _compile(model, lr=1e-4)  # the trainer recompiles after set_fine_tune
    model.fit(x, y, batch_size=32, epochs=1, steps_per_epoch=1, verbose=0)
    assert not np.array_equal(before_conv, conv.kernel.numpy())
    after_bn = [w.numpy() for la in bns for w in la.weights]
    assert all(np.array_equal(a, b) for a, b in zip(before_bn, after_bn, strict=True))
    assert set_fine_tune(model, 0) == 0 and not backbone.trainable

    scratch = build_model("mobilenet_v2", SHAPE, 10, alpha=0.35)  # weights=none: all trainable
    n_all = set_fine_tune(scratch, 20)
    assert n_all == sum(1 for la in scratch.get_layer("backbone").layers if la.weights)


def test_saved_transfer_model_reloads(tmp_path, digits32):
    """The VGG16 model carries a custom layer: load_keras_model and plain keras both reload it."""
    import keras

    from edgecnn.zoo import build_model, load_keras_model

    x = digits32[0][:4]
    model = build_model("vgg16", SHAPE, 10, dense_units=32)
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "model.keras"  # a training directory's layout
    model.save(path)
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(load_keras_model(path).predict(x, verbose=0), want, rtol=1e-5)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(x, verbose=0), want, rtol=1e-5)
    assert load_keras_model(tmp_path / "run").name == "vgg16"

    with pytest.raises(BadInput, match="not found"):
        load_keras_model(tmp_path / "missing.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(BadInput, match="not a readable Keras model"):
        load_keras_model(bad)
    fake = tmp_path / "fake.keras"  # a zip archive, but not a Keras model
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("config.json", "{not json")
    with pytest.raises(BadInput, match="not a readable Keras model"):
        load_keras_model(fake)
    with pytest.raises(BadInput, match="without a model.keras"):
        load_keras_model(tmp_path)


def test_cnn_mnist_macs_match_hand_count():
    from edgecnn.zoo import build_model
    from edgecnn.zoo.cost import manifest_cost, model_cost

    model = build_model("cnn_mnist", (28, 28, 1), 10)
    cost = model_cost(model)
    by_name = {r["name"]: r for r in cost["layers"]}
    # Hand count, per image: out_h * out_w * out_c * (k_h * k_w * in_c) for a conv,
    # in * out for a dense layer, one MAC per pixel for the Rescaling.
    conv1 = 26 * 26 * 32 * (3 * 3 * 1)  # 28 -> 26 (valid 3x3)
    conv2 = 11 * 11 * 64 * (3 * 3 * 32)  # pool 26 -> 13, conv 13 -> 11
    fc1 = (5 * 5 * 64) * 128  # pool 11 -> 5, flatten 1600
    fc2 = 128 * 10
    rescale = 28 * 28
    assert by_name["conv1"]["macs"] == conv1 == 194_688
    assert by_name["conv2"]["macs"] == conv2
    assert by_name["fc1"]["macs"] == fc1
    assert by_name["predictions"]["macs"] == fc2
    assert cost["total_macs"] == conv1 + conv2 + fc1 + fc2 + rescale
    assert by_name["conv2"]["output_shape"] == [11, 11, 64]
    assert by_name["pool2"]["ops"] == 5 * 5 * 64 * 4
    assert cost["total_params"] == model.count_params()
    assert manifest_cost(model) == {"macs": cost["total_macs"], "params": model.count_params()}


def test_backbone_macs_match_published_figures():
    """MobileNetV2-1.0-224 is quoted at 300M MACs (Sandler et al., 2018); nested layers are counted."""
    from edgecnn.zoo import build_model
    from edgecnn.zoo.cost import model_cost

    model = build_model(
        "mobilenet_v2", (224, 224, 3), 1000, alpha=1.0, dense_units=0, dropout=0, freeze=True
    )
    cost = model_cost(model)
    conv_dense = sum(
        r["macs"] for r in cost["layers"] if "Conv" in r["type"] or r["type"] == "Dense"
    )
    assert 295e6 <= conv_dense <= 305e6, conv_dense
    assert cost["total_params"] == model.count_params()
    assert cost["trainable_params"] == 1280 * 1000 + 1000  # only the head: the base is frozen
    assert any(r["name"].startswith("backbone/") for r in cost["layers"])
