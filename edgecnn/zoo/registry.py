"""Architecture names, their default input shapes and builders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgecnn.errors import BadInput


@dataclass(frozen=True)
class ArchInfo:
    name: str
    kind: str  # "seed" or "transfer"
    default_shape: tuple[int, int, int]
    min_side: int
    has_alpha: bool = False


ARCHS: dict[str, ArchInfo] = {
    "cnn_mnist": ArchInfo("cnn_mnist", "seed", (28, 28, 1), 10),
    "cnn_cifar10": ArchInfo("cnn_cifar10", "seed", (32, 32, 3), 22),
    "cnn_small": ArchInfo("cnn_small", "seed", (28, 28, 1), 4),
    "vgg16": ArchInfo("vgg16", "transfer", (224, 224, 3), 32),
    "mobilenet": ArchInfo("mobilenet", "transfer", (224, 224, 3), 32, has_alpha=True),
    "mobilenet_v2": ArchInfo("mobilenet_v2", "transfer", (224, 224, 3), 32, has_alpha=True),
    "mobilenet_v3_small": ArchInfo(
        "mobilenet_v3_small", "transfer", (224, 224, 3), 32, has_alpha=True
    ),
    "mobilenet_v3_large": ArchInfo(
        "mobilenet_v3_large", "transfer", (224, 224, 3), 32, has_alpha=True
    ),
    "efficientnet_lite0": ArchInfo("efficientnet_lite0", "transfer", (224, 224, 3), 32),
}


def get_arch(name: str) -> ArchInfo:
    if name not in ARCHS:
        raise BadInput(f"unknown architecture {name!r}; choose one of: {', '.join(ARCHS)}")
    return ARCHS[name]


def is_transfer(name: str) -> bool:
    return get_arch(name).kind == "transfer"


def default_input_shape(
    arch: str, data_shape: tuple[int, int, int] | None = None, size: int | None = None
) -> tuple[int, int, int]:
    """The model's input: `size` if given, else the arch default; channels follow the data
    for seed CNNs (a 1-channel MNIST net stays 1-channel) and are RGB for backbones."""
    info = get_arch(arch)
    h, w, c = info.default_shape
    if size is not None:
        h = w = int(size)
    if info.kind == "seed" and data_shape is not None:
        c = int(data_shape[2])
    if min(h, w) < info.min_side:
        raise BadInput(
            f"{arch} needs inputs of at least {info.min_side}x{info.min_side}, got {h}x{w}"
        )
    return (h, w, c)


def build_model(
    arch: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    **options: Any,
) -> Any:
    """An uncompiled Keras inference model taking 0-255 pixels.

    Seed options: dropout, l2, dense_units. Transfer options: weights
    ("imagenet" | "none" | path), alpha, head ("avg" | "flatten"), dense_units,
    dropout, l2.
    """
    from edgecnn.quiet import quiet_tensorflow

    quiet_tensorflow()
    info = get_arch(arch)
    if num_classes < 2:
        raise BadInput(f"need at least two classes, got {num_classes}")
    if info.kind == "seed":
        from edgecnn.zoo.seed import build_seed

        return build_seed(arch, tuple(input_shape), num_classes, **options)
    from edgecnn.zoo.transfer import build_transfer

    return build_transfer(arch, tuple(input_shape), num_classes, **options)
