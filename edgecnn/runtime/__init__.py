"""Device-side runtime: load an artifact, preprocess, run, postprocess (never TensorFlow)."""

from edgecnn.runtime.preprocess import Prediction, dequantize, top_k
from edgecnn.runtime.runner import Runner, edgetpu_available, resolve, select_artifact

__all__ = [
    "Prediction",
    "Runner",
    "dequantize",
    "edgetpu_available",
    "resolve",
    "select_artifact",
    "top_k",
]
