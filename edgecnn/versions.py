"""The one list of tools whose versions a manifest records (both sides; no imports of them)."""

from __future__ import annotations

import platform
from importlib import metadata

TOOLS = (
    "edgecnn",
    "tensorflow",
    "keras",
    "numpy",
    "ai-edge-litert",
    "tf2onnx",
    "onnx",
    "onnxruntime",
)


def tool_versions() -> dict[str, str]:
    """Python and every installed tool of TOOLS, by its distribution's version."""
    out = {"python": platform.python_version()}
    for pkg in TOOLS:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
