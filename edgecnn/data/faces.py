"""`lfw_subset`: scikit-image's 200 real 25x25 crops from Labeled Faces in the Wild.

Why: a small real RGB-free two-class task (face / non-face) that ships in the
scikit-image wheel, so transfer learning from an ImageNet backbone can be
checked offline against training the same network from scratch. Per
`skimage.data.lfw_subset`'s docstring the first 100 images are faces and the
next 100 non-faces (background crops of the same photos); the array is float
0..1, brought to 0-255 uint8 here like every other source.
"""

from __future__ import annotations

import numpy as np

from edgecnn.data.base import to_uint8_nhwc
from edgecnn.data.photos import skimage_data
from edgecnn.errors import BadInput

LFW_NAMES = ["face", "non-face"]
LFW_PER_CLASS = 100


def load_lfw_subset() -> tuple:
    """Raw data (see edgecnn.data.sources.Raw): 200 gray 25x25 images, labels 0=face, 1=non-face."""
    data = skimage_data("lfw_subset")
    try:
        images = np.asarray(data.lfw_subset())
    except Exception as e:  # noqa: BLE001 - a broken or partial install surfaces in many ways
        raise BadInput(f"scikit-image's lfw_subset is not available: {e}") from None
    if images.shape != (2 * LFW_PER_CLASS, 25, 25):
        raise BadInput(
            f"scikit-image's lfw_subset has shape {images.shape}; expected (200, 25, 25)"
        )
    scale = 1.0 if images.max() <= 1.0 else 255.0  # documented as uint8, shipped as float 0..1
    x = to_uint8_nhwc(images, max_value=scale)
    y = np.repeat(np.arange(2, dtype=np.int64), LFW_PER_CLASS)
    return x, y, None, None, list(LFW_NAMES), {"origin": "skimage.data.lfw_subset"}
