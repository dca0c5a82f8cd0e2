"""Datasets: real sources, splits, resizing, folders and calibration sampling."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgecnn.data import adapt_images, calibration_sample, load_dataset
from edgecnn.errors import BadInput


def test_digits_are_camera_pixels(digits_data):
    d = digits_data
    assert d.x_train.dtype == np.uint8 and d.x_train.shape[1:] == (8, 8, 1)
    assert d.x_train.max() == 255  # 0-16 scaled to 0-255
    assert d.num_classes == 10
    total = len(d.y_train) + len(d.y_val) + len(d.y_test)
    assert total == 1797
    # stratified: every class in every split
    for y in (d.y_train, d.y_val, d.y_test):
        assert set(np.unique(y)) == set(range(10))


def test_mnist5k_balanced_splits():
    d = load_dataset("mnist5k")
    assert d.x_train.shape[1:] == (28, 28, 1)
    counts = np.bincount(d.y_test, minlength=10)
    assert counts.min() == counts.max() == 100  # 20% of 500 per class


def test_fashion_mnist_official_split():
    from edgecnn.data.sources import FASHION_DEBIAN_DIR

    if not FASHION_DEBIAN_DIR.exists():
        pytest.skip(
            "needs Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"
        )
    d = load_dataset("fashion_mnist")
    assert len(d.y_test) == 10000 and len(d.y_train) + len(d.y_val) == 60000
    assert d.class_names[9] == "Ankle boot"


def test_adapt_gray_to_rgb_and_resize(digits_data):
    x = adapt_images(digits_data.x_test[:5], (96, 96, 3))
    assert x.shape == (5, 96, 96, 3) and x.dtype == np.uint8
    assert np.array_equal(x[..., 0], x[..., 2])
    back = adapt_images(x, (96, 96, 1))
    assert np.abs(back[..., 0].astype(int) - x[..., 0]).max() <= 1


def test_calibration_sample_has_every_class(digits_data):
    x, y = calibration_sample(digits_data.x_train, digits_data.y_train, 30, seed=1)
    assert len(y) == 30 and set(np.unique(y)) == set(range(10))
    with pytest.raises(BadInput, match="lacks classes"):
        calibration_sample(x[y == 3], y[y == 3], 10, num_classes=10)


def _write_folder(root, digits_data, n_per_class=12):
    """Real digit images as files of mixed format, size and mode."""
    x, y = digits_data.x_test, digits_data.y_test
    kept = []
    for cls in (0, 1, 7):
        (root / f"class_{cls}").mkdir(parents=True)
        for i, idx in enumerate(np.flatnonzero(y == cls)[:n_per_class]):
            img = Image.fromarray(x[idx, ..., 0])
            if i % 3 == 1:
                img.convert("RGBA").save(root / f"class_{cls}" / f"{i}.png")
            elif i % 3 == 2:
                img.resize((16, 16)).save(root / f"class_{cls}" / f"{i}.bmp")
            else:
                img.save(root / f"class_{cls}" / f"{i}.png")
                kept.append(x[idx, ..., 0])
    return kept


def test_folder_round_trip(tmp_path, digits_data):
    kept = _write_folder(tmp_path / "imgs", digits_data)
    d = load_dataset(f"folder:{tmp_path / 'imgs'}", test_split=0.25)
    assert d.class_names == ["class_0", "class_1", "class_7"]
    assert d.x_train.shape[1:] == (8, 8, 3)  # RGBA files make the set RGB; the common size wins
    total = len(d.y_train) + len(d.y_val) + len(d.y_test)
    assert total == 36
    # an original 8x8 gray PNG survives exactly (gray replicated into RGB)
    allx = np.concatenate([d.x_train, d.x_val, d.x_test])
    assert any(
        np.array_equal(a[..., 0], kept[0]) and np.array_equal(a[..., 1], kept[0]) for a in allx
    )


def test_npz_round_trip(tmp_path, digits_data):
    p = tmp_path / "d.npz"
    np.savez(p, x_train=digits_data.x_train[..., 0], y_train=digits_data.y_train,
             x_test=digits_data.x_test, y_test=digits_data.y_test)  # fmt: skip
    d = load_dataset(f"npz:{p}")
    assert np.array_equal(d.x_test, digits_data.x_test)


@pytest.mark.parametrize(
    "setup, message",
    [
        ("unknown", "unknown dataset"),
        ("empty", "holds no images"),
        ("one_class", "only one class"),
        ("unreadable", "cannot read image"),
        ("missing", "does not exist"),
    ],
)
def test_bad_sources(tmp_path, digits_data, setup, message):
    root = tmp_path / "f"
    root.mkdir()
    if setup == "one_class":
        (root / "a").mkdir()
        Image.fromarray(digits_data.x_test[0, ..., 0]).save(root / "a" / "x.png")
    elif setup == "unreadable":
        _write_folder(root, digits_data, 2)
        (root / "class_0" / "broken.png").write_bytes(b"not an image at all")
    name = {"unknown": "imagenet42", "missing": f"folder:{tmp_path / 'nope'}"}.get(
        setup, f"folder:{root}"
    )
    with pytest.raises(BadInput, match=message):
        load_dataset(name)


def test_offline_download_names_alternatives(monkeypatch, tmp_path):
    """mnist/cifar10 download; offline the message names the local alternatives."""
    import socket

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()
        pytest.skip("this machine has a network; the offline message cannot be provoked")
    except OSError:
        pass
    with pytest.raises(BadInput, match="digits, mnist5k"):
        load_dataset("cifar10")
