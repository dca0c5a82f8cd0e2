"""Model zoo: seed CNNs and transfer backbones, by name.

Every model takes raw camera pixels (0-255) and bakes its normalization in,
so the same bytes work on host and device.
"""

from edgecnn.zoo.registry import ARCHS, ArchInfo, build_model, default_input_shape, is_transfer

__all__ = ["ARCHS", "ArchInfo", "build_model", "default_input_shape", "is_transfer"]
