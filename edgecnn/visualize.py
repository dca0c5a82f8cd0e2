"""First-layer filters and feature maps of a Keras model, drawn to PNG (host side).

Works through nested models: a transfer model's first convolutions live in
its "backbone", so activations are read by running the outer model up to the
backbone's input and the backbone up to the wanted layers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInput
from edgecnn.plots import pyplot, save_figure

MAX_FILTERS = 64
MAX_MAPS = 16


def _conv_types() -> tuple[type, ...]:
    from keras import layers as L

    return (L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D)


def _walk(model: Any, chain: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(containers from the top model down to the owner, layer) in graph order."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk(layer, (*chain, layer))
        else:
            yield chain, layer


def first_conv_layers(model: Any, n: int) -> list[tuple[tuple[Any, ...], Any]]:
    convs = [(c, layer) for c, layer in _walk(model) if isinstance(layer, _conv_types())]
    if not convs:
        raise BadInput(f"model {model.name!r} has no convolution layers to draw")
    return convs[:n]


def _qualified(chain: tuple[Any, ...], layer: Any) -> str:
    return "/".join([*(c.name for c in chain), layer.name])


def _unit(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def plot_filters(model: Any, path: str | os.PathLike) -> dict[str, Any]:
    """The first convolution's kernels as a grid: RGB when it reads 3 channels, else gray."""
    chain, layer = first_conv_layers(model, 1)[0]
    from keras import layers as L

    depthwise = isinstance(layer, (L.DepthwiseConv2D, L.SeparableConv2D))
    attr = "depthwise_kernel" if isinstance(layer, L.SeparableConv2D) else "kernel"
    k = np.asarray(getattr(layer, attr).numpy(), dtype=np.float32)  # (kh, kw, in, out|mult)
    kh, kw, cin, cout = k.shape
    cmap: str | None = "gray"
    if depthwise:  # one single-channel filter per (input channel, multiplier)
        tiles = [_unit(k[:, :, c, m]) for c in range(cin) for m in range(cout)]
    elif cin == 3:
        if any(type(x).__name__ == "CaffePreprocess" for _, x in _walk(model)):
            k = k[:, :, ::-1, :]  # the backbone reads BGR: draw its filters in RGB
        tiles = [_unit(k[..., i]) for i in range(cout)]  # drawn as RGB
        cmap = None
    else:
        tiles = [_unit(k[..., i].mean(axis=-1)) for i in range(cout)]
    shown = tiles[:MAX_FILTERS]
    cols = min(8, len(shown))
    rows = (len(shown) + cols - 1) // cols
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1 + 0.5), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(shown):
            ax.imshow(shown[i], cmap=cmap, interpolation="nearest", vmin=0, vmax=1)
    name = _qualified(chain, layer)
    fig.suptitle(
        f"{name}: {len(shown)} of {len(tiles)} filters, kernel {kh}x{kw}x{cin}", fontsize=9
    )
    out = save_figure(fig, path)
    return {
        "layer": name,
        "kernel_shape": [kh, kw, cin, cout],
        "drawn": len(shown),
        "path": str(out),
    }


def check_image(path: str | os.PathLike) -> None:
    """Fail fast (before TensorFlow loads) on a missing or unreadable image."""
    from edgecnn.runtime.images import decode_image

    try:
        decode_image(path)
    except BadInput as e:
        raise BadInput(f"cannot read image {path}: {e}") from None


def load_image(path: str | os.PathLike, shape: tuple[int, int, int]) -> np.ndarray:
    """One image file as a (1, H, W, C) float32 batch of 0-255 pixels in the model's shape."""
    from edgecnn.data.base import adapt_images
    from edgecnn.runtime.images import decode_image

    arr = decode_image(path, mode="L" if shape[2] == 1 else "RGB")
    return adapt_images(arr[None], shape).astype(np.float32)


def _inputs(model: Any) -> Any:
    """A single input as a tensor, not a one-element list (keeps Keras' structure check quiet)."""
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def feature_maps(model: Any, image: np.ndarray, n_layers: int = 2) -> list[tuple[str, np.ndarray]]:
    """Activations (H, W, C) of the first `n_layers` convolutions for one image batch."""
    import keras

    targets = first_conv_layers(model, n_layers)
    results: dict[str, np.ndarray] = {}
    groups: dict[tuple[int, ...], tuple[tuple[Any, ...], list[Any]]] = {}
    for chain, layer in targets:
        key = tuple(id(c) for c in chain)
        groups.setdefault(key, (chain, []))[1].append(layer)
    for chain, layers in groups.values():
        owner, value = model, image
        for container in chain:  # run the parent up to the nested model's input
            nodes = getattr(container, "_inbound_nodes", None) or []
            if not nodes:
                raise BadInput(f"cannot trace into nested model {container.name!r}")
            fed = nodes[0].input_tensors
            feed = keras.Model(_inputs(owner), fed[0] if len(fed) == 1 else fed)
            value = feed(value, training=False)
            owner = container
        probe = keras.Model(_inputs(owner), [layer.output for layer in layers])
        outs = probe(value, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for layer, out in zip(layers, outs, strict=True):
            results[_qualified(chain, layer)] = np.asarray(out)[0]
    return [(_qualified(c, layer), results[_qualified(c, layer)]) for c, layer in targets]


def plot_feature_maps(
    model: Any, image_path: str | os.PathLike, path: str | os.PathLike, n_layers: int = 2
) -> dict[str, Any]:
    """The input image and up to 16 channels of each of the first convolutions' outputs."""
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if len(shape) != 3 or any(d <= 0 for d in shape):
        raise BadInput(f"feature maps need a fixed image input, model takes {shape}")
    image = load_image(image_path, shape)  # type: ignore[arg-type]
    maps = feature_maps(model, image, n_layers)
    plt = pyplot()
    cols = MAX_MAPS
    fig, axes = plt.subplots(
        len(maps) + 1, cols, figsize=(cols * 0.9, (len(maps) + 1) * 1.1 + 0.4), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    shown = image[0] / 255.0
    axes[0, 0].imshow(shown[..., 0] if shape[2] == 1 else shown, cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title("input", fontsize=7)
    info = []
    for row, (name, fmap) in enumerate(maps, start=1):
        channels = min(cols, fmap.shape[-1])
        for ch in range(channels):
            axes[row, ch].imshow(fmap[..., ch], cmap="viridis", interpolation="nearest")
        axes[row, 0].set_title(name, fontsize=7, loc="left")
        info.append({"layer": name, "shape": list(fmap.shape), "drawn": channels})
    fig.suptitle(f"feature maps: {Path(image_path).name}", fontsize=9)
    out = save_figure(fig, path)
    return {"image": str(image_path), "layers": info, "path": str(out)}
