"""`imagenet_photos`: the real photos in scikit-image's wheel, labelled with ImageNet classes.

Why: it is the only offline data on which an ImageNet classifier can be
checked (and int8-calibrated) here. Three photos have an unambiguous
ImageNet class: coffee (espresso), chelsea (a tabby cat; ImageNet models
split such cats between tabby, tiger cat and Egyptian cat) and rocket
(missile). The label space is all 1000 ImageNet classes, so the dataset
fits the pretrained classifier's output as it is.

Splits: test holds each photo's centre square and its mirror image (the
photo check); train and val hold other real views of the same photos
(off-centre squares at three scales, and their mirrors). Those views are
only for int8 calibration: a dataset of three photos cannot train a model,
and `train` refuses to fit on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from edgecnn.errors import BadInput
from edgecnn.runtime.preprocess import fit_image

# scikit-image loader name -> ImageNet short label (see edgecnn.zoo.imagenet)
PHOTO_LABELS: dict[str, str] = {"coffee": "espresso", "chelsea": "tabby", "rocket": "missile"}
# Acceptable top-1 classes per photo (the known-good answers of ImageNet models).
KNOWN_GOOD: dict[str, tuple[str, ...]] = {
    "coffee": ("espresso",),
    "chelsea": ("tabby", "tiger cat", "Egyptian cat"),
    "rocket": ("missile", "projectile"),
}
SIDE = 224  # stored size; datasets are resized to the model's input on use
VIEW_SCALES = (0.9, 0.75, 0.6)  # side of an off-centre square, as a share of the short side


def skimage_data(dataset: str) -> Any:
    """`skimage.data`, or a one-line BadInput naming the dataset that needs it."""
    try:
        import skimage.data
    except ImportError:
        raise BadInput(
            f"{dataset} needs scikit-image: pip install scikit-image (or edgecnn[train])"
        ) from None
    return skimage.data


def load_photo(name: str) -> np.ndarray:
    """One scikit-image photo as HxWx3 uint8 RGB."""
    data = skimage_data("imagenet_photos")
    try:
        img = np.asarray(getattr(data, name)())
    except Exception as e:  # a photo fetched over the network fails offline
        raise BadInput(f"scikit-image photo {name!r} is not available: {e}") from None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return np.ascontiguousarray(img[..., :3], dtype=np.uint8)


def square(img: np.ndarray, side: int, top: int, left: int, out: int = SIDE) -> np.ndarray:
    crop = img[top : top + side, left : left + side]
    return np.asarray(Image.fromarray(crop).resize((out, out), Image.BILINEAR))


def centre_square(img: np.ndarray, out: int = SIDE) -> np.ndarray:
    """The largest centred square, resized: the runtime's own `resize: crop`, so the photo
    check sees exactly what the device and the daemon feed the model."""
    return fit_image(img, (out, out, 3), "RGB", "crop")


def _views(img: np.ndarray) -> list[np.ndarray]:
    h, w = img.shape[:2]
    views = []
    for scale in VIEW_SCALES:
        s = int(min(h, w) * scale)
        for fy, fx in ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.5, 0.5)):
            v = square(img, s, int((h - s) * fy), int((w - s) * fx))
            views += [v, v[:, ::-1]]
    return views


def load_imagenet_photos() -> tuple:
    """Raw splits (see edgecnn.data.sources.Raw) over the 1000 ImageNet labels."""
    from edgecnn.zoo.imagenet import imagenet_index, imagenet_labels

    x, y, xt, yt = [], [], [], []
    for name, label in PHOTO_LABELS.items():
        img = load_photo(name)
        cls = imagenet_index(label)
        c = centre_square(img)
        xt += [c, c[:, ::-1]]
        yt += [cls, cls]
        views = _views(img)
        x += views
        y += [cls] * len(views)
    return (
        np.stack(x), np.array(y, dtype=np.int64), np.stack(xt), np.array(yt, dtype=np.int64),
        imagenet_labels(), {"origin": "skimage.data (coffee, chelsea, rocket)", "label_space": True},
    )  # fmt: skip
