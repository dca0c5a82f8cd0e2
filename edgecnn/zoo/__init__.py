"""Model zoo: seed CNNs and transfer backbones, by name.

Every model takes raw camera pixels (0-255) and bakes its normalization in,
so the same bytes work on host and device.
"""

from edgecnn.zoo import layers as _layers  # noqa: F401  (registers custom layers for load_model)
from edgecnn.zoo.io import load_keras_model
from edgecnn.zoo.registry import ARCHS, ArchInfo, build_model, default_input_shape, is_transfer
from edgecnn.zoo.transfer import input_contract, set_fine_tune

__all__ = [
    "ARCHS",
    "ArchInfo",
    "build_model",
    "default_input_shape",
    "input_contract",
    "is_transfer",
    "load_keras_model",
    "set_fine_tune",
]
