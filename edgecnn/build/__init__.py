"""The build: prune -> quantize -> export -> verify, as steps a search can drive one by one.

    from edgecnn.build import BuildConfig, convert_model
    convert_model("runs/digits", "digits", "build/digits", BuildConfig(prune_filters=0.5))

Host side: the steps import TensorFlow lazily, so `BuildConfig(...).validated()` rejects a
bad option before TensorFlow loads.
"""

from edgecnn.build.config import DEFAULT_FORMATS, DEFAULT_PRECISIONS, BuildConfig
from edgecnn.build.pipeline import convert_from_recipe, convert_model

__all__ = [
    "DEFAULT_FORMATS",
    "DEFAULT_PRECISIONS",
    "BuildConfig",
    "convert_from_recipe",
    "convert_model",
]
