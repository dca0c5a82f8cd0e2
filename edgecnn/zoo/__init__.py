"""Model zoo: seed CNNs and transfer backbones, by name.

Every model takes raw camera pixels (0-255) and bakes its normalization in,
so the same bytes work on host and device.

Names are resolved lazily: `edgecnn.zoo.registry` (names, shapes, checks) is
importable without TensorFlow, so the CLI rejects a bad `--arch` at once;
the builders and the custom-layer registration load Keras on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgecnn.zoo.registry import ARCHS, ArchInfo, build_model, default_input_shape, is_transfer

_LAZY = {
    "load_keras_model": "edgecnn.zoo.io",
    "input_contract": "edgecnn.zoo.transfer",
    "set_fine_tune": "edgecnn.zoo.transfer",
}

__all__ = ["ARCHS", "ArchInfo", "build_model", "default_input_shape", "is_transfer", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        importlib.import_module("edgecnn.zoo.layers")  # registers custom layers for load_model
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgecnn.zoo' has no attribute {name!r}")
