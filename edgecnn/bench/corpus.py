"""The calibration corpus: generated networks whose latency a device profile is fitted to.

Random networks from a small grammar of the blocks edge CNNs are made of (a stem
convolution, plain 3x3 and 1x1 convolutions, depthwise-separable and inverted-residual
blocks with residual adds, squeeze-excite, hard-swish, pooling, a dense head), at input
sizes 16-224 and widths 4-256 (many not multiples of 8, as pruned models are), so every
operator kind appears at many sizes. The full corpus adds wide plain and residual nets
(256-512 channels at 8-48 px, where int8 kernels run at another speed per MAC) and the
zoo's families (seed CNNs, MobileNet v1/v2/v3, EfficientNet-Lite0, VGG16, some of them
pruned) at widths and input sizes that tools/latency_heldout.py does not use: a grammar
of random blocks alone misses how real networks chain their kernels (52% of held-out
estimates within 15% on the grammar alone). The held-out check measures the fit on
configurations it never saw. Weights are random and int8 is calibrated on random pixels:
latency does not depend on either.
Host side (TensorFlow builds and converts the networks).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.fsutil import atomic_write_text

SIZES = {"full": 160, "small": 8}  # networks from the random grammar
WIDE_NETS = 12  # the full corpus's wide nets (their own random stream: the grammar's stays put)
WIDE = (256, 320, 384, 448, 512)
WIDTHS = (4, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256)
INPUTS = (16, 24, 28, 32, 48, 64, 96, 128, 160, 192, 224)
MAX_MACS = 700e6
CALIB_IMAGES = 16


@dataclass
class NetSpec:
    name: str
    input: tuple[int, int, int]
    blocks: list[tuple[Any, ...]] = field(default_factory=list)
    head: tuple[Any, ...] = ("gap", (), 10)
    family: tuple[Any, ...] = ()  # (zoo arch, alpha or 0, pruning ratio): a zoo network


# (arch, input side, channels, alpha or 0, pruning ratio): none of these configurations is
# one of tools/latency_heldout.py's.
FAMILIES: list[tuple[str, int, int, float, float]] = [
    ("cnn_small", 36, 1, 0, 0), ("cnn_small", 48, 3, 0, 0), ("cnn_mnist", 40, 1, 0, 0),
    ("cnn_mnist", 24, 3, 0, 0), ("cnn_cifar10", 48, 3, 0, 0), ("cnn_cifar10", 24, 1, 0, 0),
    ("cnn_mnist", 36, 1, 0, 0.3), ("cnn_mnist", 36, 1, 0, 0.7), ("cnn_cifar10", 40, 3, 0, 0.3),
    ("cnn_cifar10", 40, 3, 0, 0.7), ("mobilenet", 112, 3, 0.75, 0), ("mobilenet", 64, 3, 0.25, 0),
    ("mobilenet", 192, 3, 0.5, 0), ("mobilenet_v2", 128, 3, 0.35, 0), ("mobilenet_v2", 96, 3, 0.5, 0),
    ("mobilenet_v2", 112, 3, 0.75, 0), ("mobilenet_v2", 160, 3, 1.0, 0), ("mobilenet_v2", 96, 3, 0.5, 0.3),
    ("mobilenet_v2", 96, 3, 0.5, 0.7), ("mobilenet_v3_small", 96, 3, 1.0, 0),
    ("mobilenet_v3_small", 160, 3, 0.75, 0), ("mobilenet_v3_large", 96, 3, 0.75, 0),
    ("mobilenet_v3_large", 160, 3, 1.0, 0), ("efficientnet_lite0", 112, 3, 0, 0),
    ("efficientnet_lite0", 160, 3, 0, 0), ("efficientnet_lite0", 112, 3, 0, 0.5), ("vgg16", 40, 3, 0, 0),
]  # fmt: skip


def _block(rng: np.random.Generator, channels: int, side: int) -> tuple[tuple[Any, ...], int, int]:
    """(a random block, its output channels, its output side)."""
    kind = rng.choice(["conv", "conv1x1", "dwsep", "invres", "invres", "se", "pool", "hswish"])
    cout = int(rng.choice(WIDTHS))
    stride = 2 if side >= 8 and rng.random() < 0.35 else 1
    if kind == "conv":
        k = int(rng.choice([3, 3, 5]))
        return ("conv", k, cout, stride), cout, -(-side // stride)
    if kind == "conv1x1":
        return ("conv1x1", cout), cout, side
    if kind == "dwsep":
        return ("dwsep", int(rng.choice([3, 3, 5])), cout, stride), cout, -(-side // stride)
    if kind == "invres":
        expand = int(rng.choice([1, 3, 4, 6]))
        out = channels if stride == 1 and rng.random() < 0.6 else cout  # residual when equal
        return ("invres", expand, out, stride, int(rng.choice([3, 3, 5]))), out, -(-side // stride)
    if kind == "se":
        return ("se", max(2, channels // 4)), channels, side
    if kind == "pool" and side >= 4:
        return ("pool", str(rng.choice(["max", "avg"]))), channels, side // 2
    return ("hswish",), channels, side


def net_specs(size: str = "full", seed: int = 0) -> list[NetSpec]:
    """`SIZES[size]` random networks, the same ones for the same seed; the full corpus then
    adds the wide nets and the zoo families."""
    specs = grammar_specs(SIZES[size], seed)
    if size != "full":
        return specs
    return (
        specs + wide_specs(WIDE_NETS, seed + 1, len(specs)) + family_specs(len(specs) + WIDE_NETS)
    )


def family_specs(first: int) -> list[NetSpec]:
    return [
        NetSpec(f"n{first + i:03d}", (side, side, chans), family=(arch, alpha, ratio))
        for i, (arch, side, chans, alpha, ratio) in enumerate(FAMILIES)
    ]


def wide_specs(count: int, seed: int, first: int) -> list[NetSpec]:
    """Plain and residual nets of 256-512 channels at 8-48 px (VGG's and ResNet's late stages)."""
    rng = np.random.default_rng(seed)
    specs: list[NetSpec] = []
    while len(specs) < count:
        side = int(rng.choice([16, 24, 32, 48]))
        stem = int(rng.choice([32, 64, 96]))
        spec = NetSpec(f"n{first + len(specs):03d}", (side, side, 3), [("conv", 3, stem, 1)])
        s = side
        for _ in range(int(rng.integers(2, 6))):
            cout = int(rng.choice(WIDE))
            if rng.random() < 0.4 and s >= 4:
                spec.blocks.append(("pool", "max"))
                s //= 2
            if rng.random() < 0.4:
                spec.blocks += [("conv1x1", cout), ("res", cout)]
            else:
                spec.blocks.append(("conv", 3, cout, 1))
        units = tuple(int(u) for u in rng.choice([256, 512], size=int(rng.integers(0, 2))))
        spec.head = (str(rng.choice(["gap", "flatten"])) if s <= 4 else "gap", units, 10)
        if _macs(spec) <= MAX_MACS:
            specs.append(spec)
    return specs


def grammar_specs(count: int, seed: int) -> list[NetSpec]:
    rng = np.random.default_rng(seed)
    specs: list[NetSpec] = []
    while len(specs) < count:
        side = int(rng.choice(INPUTS))
        chans = 1 if side <= 32 and rng.random() < 0.3 else 3
        stem = int(rng.choice(WIDTHS[2:10]))
        stride = 2 if side >= 64 else 1
        spec = NetSpec(f"n{len(specs):03d}", (side, side, chans), [("conv", 3, stem, stride)])
        c, s = stem, -(-side // stride)
        for _ in range(int(rng.integers(1, 10))):
            blk, c, s = _block(rng, c, s)
            spec.blocks.append(blk)
        head = str(rng.choice(["gap", "gap", "flatten"])) if s <= 8 else "gap"
        units = tuple(int(u) for u in rng.choice([16, 64, 128, 256], size=int(rng.integers(0, 2))))
        spec.head = (head, units, int(rng.choice([2, 10, 100])))
        if _macs(spec) <= MAX_MACS:
            specs.append(spec)
    return specs


def _macs(spec: NetSpec) -> float:
    """A rough count (filters only) to keep the corpus within minutes to measure."""
    try:
        from edgecnn.zoo.cost import model_cost

        return float(model_cost(build_net(spec))["total_macs"])
    except Exception:
        return float("inf")


def _apply(x: Any, blk: tuple[Any, ...], name: str) -> Any:
    from keras import layers

    kind = blk[0]
    if kind == "conv":
        return layers.Conv2D(
            blk[2], blk[1], strides=blk[3], padding="same", activation="relu", name=name
        )(x)
    if kind == "conv1x1":
        return layers.Conv2D(blk[1], 1, activation="relu", name=name)(x)
    if kind == "dwsep":
        y = layers.DepthwiseConv2D(
            blk[1], strides=blk[3], padding="same", activation="relu", name=f"{name}_dw"
        )(x)
        return layers.Conv2D(blk[2], 1, activation="relu", name=f"{name}_pw")(y)
    if kind == "invres":
        _, expand, out, stride, k = blk
        y = (
            layers.Conv2D(int(x.shape[-1]) * expand, 1, activation="relu6", name=f"{name}_ex")(x)
            if expand > 1
            else x
        )
        y = layers.DepthwiseConv2D(
            k, strides=stride, padding="same", activation="relu6", name=f"{name}_dw"
        )(y)
        y = layers.Conv2D(out, 1, name=f"{name}_pj")(y)
        return (
            layers.Add(name=f"{name}_add")([x, y]) if stride == 1 and out == int(x.shape[-1]) else y
        )
    if kind == "se":
        s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_gap")(x)
        s = layers.Conv2D(blk[1], 1, activation="relu", name=f"{name}_r")(s)
        s = layers.Conv2D(int(x.shape[-1]), 1, activation="hard_sigmoid", name=f"{name}_e")(s)
        return layers.Multiply(name=f"{name}_mul")([x, s])
    if kind == "res":  # two 3x3 convolutions around an identity add
        y = layers.Conv2D(blk[1], 3, padding="same", activation="relu", name=f"{name}_a")(x)
        y = layers.Conv2D(blk[1], 3, padding="same", name=f"{name}_b")(y)
        return layers.ReLU(name=f"{name}_relu")(layers.Add(name=f"{name}_add")([x, y]))
    if kind == "pool":
        pool = layers.MaxPooling2D if blk[1] == "max" else layers.AveragePooling2D
        return pool(2, name=name)(x)
    return layers.Activation("hard_swish", name=name)(x)


def family_net(spec: NetSpec) -> Any:
    from edgecnn.optimize.structured import prune_structured
    from edgecnn.zoo import build_model, is_transfer

    arch, alpha, ratio = spec.family
    opts = {"weights": "none", **({"alpha": alpha} if alpha else {})} if is_transfer(arch) else {}
    model = build_model(arch, spec.input, 10, **opts)
    return prune_structured(model, ratio)[0] if ratio else model


def build_net(spec: NetSpec) -> Any:
    import keras
    from keras import layers

    if spec.family:
        return family_net(spec)
    inp = keras.Input(shape=spec.input, name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inp)
    for i, blk in enumerate(spec.blocks):
        x = _apply(x, blk, f"b{i}")
    head, units, classes = spec.head
    x = (
        layers.GlobalAveragePooling2D(name="gap")(x)
        if head == "gap"
        else layers.Flatten(name="flat")(x)
    )
    for j, u in enumerate(units):
        x = layers.Dense(u, activation="relu", name=f"fc{j}")(x)
    out = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name=spec.name)


def _calibration(spec: NetSpec) -> np.ndarray:
    return (
        np.random.default_rng(0)
        .uniform(0, 255, size=(CALIB_IMAGES, *spec.input))
        .astype(np.float32)
    )


def export_corpus(
    specs: list[NetSpec],
    out: Path,
    formats: tuple[str, ...],
    precisions: tuple[str, ...],
    say: Any = None,
) -> list[dict[str, Any]]:
    """Every net in every format and precision (through the exporter table) into `out`,
    with the index corpus.json the corpus worker reads."""
    from edgecnn.export import EXPORTERS, ExportJob, artifact_name
    from edgecnn.quiet import quiet_tensorflow
    from edgecnn.runtime.formats import FORMATS

    quiet_tensorflow()
    import keras

    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for spec in specs:
        if say:
            say(f"corpus {spec.name} {spec.input}")
        work = out / f".{spec.name}"
        work.mkdir(exist_ok=True)
        keras.utils.set_random_seed(zlib.crc32(spec.name.encode()))  # the same files every time
        job = ExportJob(build_net(spec), _calibration(spec), work, io_dtype="int8")
        for fmt in formats:  # all of one net first: int8 ONNX reuses the float ONNX
            for prec in (p for p in precisions if p in FORMATS[fmt].precisions):
                EXPORTERS[fmt].export(job, prec, work / artifact_name(fmt, prec))
                entries.append({"file": f"{spec.name}_{artifact_name(fmt, prec)}", "net": spec.name,
                                "format": fmt, "precision": prec})  # fmt: skip
        for f in work.iterdir():
            f.replace(out / f"{spec.name}_{f.name}")
        work.rmdir()
    index = {"specs": [asdict(s) for s in specs], "artifacts": entries}
    atomic_write_text(out / "corpus.json", json.dumps(index, indent=1))
    return entries
