"""Per-layer parameter and MAC counts for a Keras model (no TensorFlow ops, no inference).

Counts are per image (batch 1) and come from layer shapes and kernels alone:

* MACs (multiply-accumulates): convolutions (plain, depthwise, separable,
  transposed), Dense, and per-element affine layers (BatchNormalization,
  Rescaling, Normalization) at one MAC per output element. Converters fold
  BatchNorm into the preceding convolution, so its MACs are an upper bound.
  Biases and activations are not counted, as is usual.
* ops: other arithmetic that is not a MAC - pooling windows (comparisons or
  adds), element-wise merges (Add, Multiply, ...) and mean subtraction.

Nested models (a transfer model's "backbone") are expanded in place, their
layers named "backbone/<layer>". Shared by `edgecnn inspect`, the convert
report and bench estimates; `manifest_cost` gives the manifest's
`model.cost = {"macs": int, "params": int}`.
"""

from __future__ import annotations

from collections.abc import Iterator
from math import prod
from typing import Any

from edgecnn.errors import BadInput

Shape = tuple[Any, ...]


def _shape(t: Any) -> Shape:
    return tuple(None if d is None else int(d) for d in t.shape)


def _io_shapes(layer: Any) -> tuple[list[Shape], list[Shape]]:
    """Input and output shapes from the layer's first call in its graph."""
    nodes = getattr(layer, "_inbound_nodes", None) or []
    if nodes:
        node = nodes[0]
        return [_shape(t) for t in node.input_tensors], [_shape(t) for t in node.outputs]
    try:
        ins = layer.input if isinstance(layer.input, list) else [layer.input]
        outs = layer.output if isinstance(layer.output, list) else [layer.output]
        return [_shape(t) for t in ins], [_shape(t) for t in outs]
    except (AttributeError, ValueError):
        raise BadInput(
            f"layer {layer.name!r} has no known input shape; build the model with an Input first"
        ) from None


def _elements(shape: Shape) -> int:
    """Elements per image: the product of every axis after the batch axis."""
    dims = shape[1:]
    if any(d is None for d in dims):
        raise BadInput(f"cannot count operations on a dynamic shape {shape}")
    return int(prod(dims))


def _spatial(shape: Shape, data_format: str | None) -> int:
    """Positions per image: every axis but batch and channels."""
    dims = shape[2:] if data_format == "channels_first" else shape[1:-1]
    return int(prod(d or 1 for d in dims))


def _kernel_size(layer: Any, name: str = "kernel") -> int:
    return int(prod(getattr(layer, name).shape))


def layer_macs_ops(layer: Any, in_shapes: list[Shape], out_shapes: list[Shape]) -> tuple[int, int]:
    """(MACs, other ops) for one leaf layer, per image."""
    from keras import layers as L

    fmt = getattr(layer, "data_format", None)
    out = out_shapes[0]
    transposed = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
    separable = (L.SeparableConv1D, L.SeparableConv2D)
    # kernel is (*k, in/groups, out) for Conv/Dense and (*k, in, multiplier) for
    # depthwise: one MAC per kernel element per output position in both cases.
    direct = (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D)
    if isinstance(layer, transposed):
        return _spatial(in_shapes[0], fmt) * _kernel_size(layer), 0
    if isinstance(layer, separable):
        per_position = _kernel_size(layer, "depthwise_kernel") + _kernel_size(
            layer, "pointwise_kernel"
        )
        return _spatial(out, fmt) * per_position, 0
    if isinstance(layer, direct):
        return _spatial(out, fmt) * _kernel_size(layer), 0
    if isinstance(layer, L.Dense):
        return _spatial(out, None) * _kernel_size(layer), 0
    if isinstance(layer, (L.BatchNormalization, L.Rescaling, L.Normalization)):
        return _elements(out), 0
    if isinstance(layer, (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D)) or isinstance(
        layer, (L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D)
    ):
        return 0, _elements(out) * int(prod(layer.pool_size))
    global_pools = (
        L.GlobalAveragePooling1D,
        L.GlobalAveragePooling2D,
        L.GlobalAveragePooling3D,
        L.GlobalMaxPooling1D,
        L.GlobalMaxPooling2D,
        L.GlobalMaxPooling3D,
    )
    if isinstance(layer, global_pools):
        return 0, _elements(in_shapes[0])
    merges = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
    if isinstance(layer, merges):
        return 0, _elements(out) * max(1, len(in_shapes) - 1)
    if type(layer).__name__ == "CaffePreprocess":
        return 0, _elements(out)
    return 0, 0


def _is_container(layer: Any) -> bool:
    import keras

    return isinstance(layer, keras.Model)


def iter_leaf_layers(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(qualified name, layer) for every non-container layer, nested models expanded."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        name = f"{prefix}{layer.name}"
        if _is_container(layer):
            yield from iter_leaf_layers(layer, prefix=f"{name}/")
        else:
            yield name, layer


def _trainable_params(layer: Any) -> int:
    return int(sum(prod(w.shape) for w in layer.trainable_weights))


def model_cost(model: Any) -> dict[str, Any]:
    """Per-layer rows and totals.

    Rows: {"name", "type", "output_shape" (no batch axis), "params",
    "trainable_params", "macs", "ops"}. Totals: "total_macs", "total_params",
    "trainable_params", "total_ops".
    """
    rows: list[dict[str, Any]] = []
    for name, layer in iter_leaf_layers(model):
        in_shapes, out_shapes = _io_shapes(layer)
        macs, ops = layer_macs_ops(layer, in_shapes, out_shapes)
        rows.append(
            {
                "name": name,
                "type": type(layer).__name__,
                "output_shape": list(out_shapes[0][1:]) if out_shapes else [],
                "params": int(layer.count_params()) if layer.weights else 0,
                "trainable_params": _trainable_params(layer),
                "macs": int(macs),
                "ops": int(ops),
            }
        )
    return {
        "model": model.name,
        "input_shape": [list(_shape(t)[1:]) for t in model.inputs],
        "layers": rows,
        "total_macs": sum(r["macs"] for r in rows),
        "total_params": sum(r["params"] for r in rows),
        "trainable_params": sum(r["trainable_params"] for r in rows),
        "total_ops": sum(r["ops"] for r in rows),
    }


def manifest_cost(model: Any) -> dict[str, int]:
    """The manifest's `model.cost` entry."""
    cost = model_cost(model)
    return {"macs": int(cost["total_macs"]), "params": int(cost["total_params"])}


def format_count(n: int | float) -> str:
    """3.1M, 820.5K, 96 - for tables."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return str(int(n))
