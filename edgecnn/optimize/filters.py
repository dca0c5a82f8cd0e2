"""Structured (filter) pruning: drop the conv filters with the smallest L1 norm and rebuild.

Unlike magnitude pruning this makes every runtime faster, because the rebuilt
model really is thinner. The functional graph is walked twice:

1. analysis: each tensor remembers which conv produced its channels, through
   channel-preserving layers (BatchNorm, activations, pooling, padding,
   dropout, depthwise conv, global pooling, Flatten). A conv is prunable only
   if all its channel paths end in a consumer we can slice: another Conv2D
   (input channels), a Dense (input rows; after Flatten the rows are HWC
   ordered, so row = (h*W + w)*C + c), or a DepthwiseConv2D chain leading to
   one of those. A path into Add/Concatenate/Multiply (residual ties, as in
   MobileNetV2), a model output or an unknown layer blocks the conv: it is left
   alone rather than pruned inconsistently.
2. rebuild: a flat functional model (nested backbones are inlined) with the
   same layer names, `filters` reduced, and surviving weights copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.errors import BadInput

# Layers that keep the channel axis one-to-one (weights, if any, are per-channel).
_PASS = {
    "BatchNormalization",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "MaxPooling2D",
    "AveragePooling2D",
    "ZeroPadding2D",
    "Cropping2D",
    "Dropout",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "ActivityRegularization",
    "UpSampling2D",
    "Identity",
}
_GLOBAL_POOL = {"GlobalAveragePooling2D", "GlobalMaxPooling2D"}


@dataclass
class _Chan:
    """Where a tensor's channels come from: a candidate conv and, after Flatten, the HW grid."""

    conv: str
    flat_hw: tuple[int, int] | None = None


@dataclass
class FilterPlan:
    keep: dict[str, np.ndarray] = field(default_factory=dict)  # conv name -> kept filter indices
    blocked: dict[str, str] = field(default_factory=dict)  # conv name -> why left alone

    def summary(self) -> dict[str, Any]:
        return {
            "pruned_layers": {k: int(len(v)) for k, v in self.keep.items()},
            "skipped_layers": dict(self.blocked),
        }


def _walk(model: Any, inputs: list[Any], visit: Any) -> list[Any]:
    """Run `visit(layer, args, kwargs, node_inputs) -> outputs` over the graph, inlining nested models.

    `inputs` stand in for `model.inputs`; returns the stand-ins of `model.outputs`.
    """
    import keras
    from keras import tree

    if not hasattr(model, "_nodes_by_depth"):
        raise BadInput(f"cannot prune filters of {type(model).__name__}: not a functional model")
    tensors: dict[int, Any] = {id(x): y for x, y in zip(model.inputs, inputs, strict=False)}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if not node.operation or node.is_input:
                continue
            if any(id(x) not in tensors for x in node.input_tensors):
                continue
            op = node.operation
            if isinstance(op, keras.Model):
                inner_in = [tensors[id(x)] for x in node.input_tensors]
                outs = _walk(op, inner_in, visit)
            else:
                args, kwargs = node.arguments.fill_in(tensors)
                res = visit(op, args, kwargs, [tensors[id(x)] for x in node.input_tensors])
                outs = res if isinstance(res, list) else tree.flatten(res)
            for x, y in zip(node.outputs, outs, strict=False):
                tensors[id(x)] = y
    return [tensors[id(x)] for x in model.outputs]


def _is_conv(layer: Any) -> bool:
    return type(layer).__name__ == "Conv2D" and getattr(layer, "groups", 1) == 1


def _is_depthwise_pass(layer: Any) -> bool:
    return type(layer).__name__ == "DepthwiseConv2D" and getattr(layer, "depth_multiplier", 1) == 1


def plan_filter_pruning(
    model: Any, fraction: float, min_filters: int = 1, multiple: int = 1
) -> FilterPlan:
    """Decide which filters of which Conv2D layers to drop (smallest L1 norm first).

    `multiple` rounds the kept count up to a multiple (e.g. 8): int8 kernels in
    XNNPACK and most NPUs work in channel blocks, so odd widths can erase the gain.
    """
    if multiple < 1:
        raise BadInput(f"filter multiple must be >= 1, got {multiple}")
    if not 0.0 <= fraction < 1.0:
        raise BadInput(f"filter-pruning fraction must be in [0, 1), got {fraction}")
    candidates: dict[str, Any] = {}
    blocked: dict[str, str] = {}

    def block(src: Any, why: str) -> None:
        if isinstance(src, _Chan) and src.conv not in blocked:
            blocked[src.conv] = why

    def visit(layer: Any, args: Any, kwargs: Any, ins: list[Any]) -> Any:
        kind = type(layer).__name__
        src = ins[0] if len(ins) == 1 else None
        if _is_conv(layer):
            candidates[layer.name] = layer
            return [_Chan(layer.name)]
        if len(ins) == 1 and (kind in _PASS or _is_depthwise_pass(layer) or kind in _GLOBAL_POOL):
            if kind == "BatchNormalization" and layer.axis not in (-1, 3, [-1], [3]):
                block(src, f"{layer.name}: BatchNormalization on axis {layer.axis}")
                return [None]
            if kind in _GLOBAL_POOL and getattr(layer, "keepdims", False):
                return [src]
            return [src]
        if kind == "Flatten" and isinstance(src, _Chan) and src.flat_hw is None:
            shape = layer._inbound_nodes[0].input_tensors[0].shape if layer._inbound_nodes else None
            if shape is not None and len(shape) == 4:
                return [_Chan(src.conv, (int(shape[1]), int(shape[2])))]
            if shape is not None and len(shape) == 2:
                return [src]
            block(src, f"{layer.name}: Flatten of an unexpected shape")
            return [None]
        if kind == "Dense" and len(ins) == 1:
            return [None]  # consumes src by slicing its input rows
        for s in ins:
            block(s, f"channels tied or consumed by {kind} {layer.name}")
        return [None] * 16  # zip() in _walk trims this to the node's outputs

    outs = _walk(model, [None] * len(model.inputs), visit)
    for o in outs:
        block(o, "feeds a model output")
    plan = FilterPlan(blocked=blocked)
    if fraction == 0.0:
        return plan
    for name, layer in candidates.items():
        if name in blocked:
            continue
        kernel = np.asarray(layer.kernel.numpy())
        n = kernel.shape[-1]
        keep_n = max(min_filters, int(round(n * (1.0 - fraction))))
        keep_n = min(n, -(-keep_n // multiple) * multiple)
        if keep_n >= n:
            continue
        l1 = np.abs(kernel).reshape(-1, n).sum(axis=0)
        # Stable sort so equal norms (e.g. dead filters) resolve deterministically.
        keep = np.sort(np.argsort(-l1, kind="stable")[:keep_n])
        plan.keep[name] = keep
    return plan


def _slice_weights(
    layer: Any,
    weights: list[np.ndarray],
    out_keep: np.ndarray | None,
    in_src: Any,
    plan: FilterPlan,
) -> list[np.ndarray]:
    """Cut a layer's weights to the kept output filters and the kept input channels."""
    kind = type(layer).__name__
    in_keep = plan.keep.get(in_src.conv) if isinstance(in_src, _Chan) else None
    w = [np.asarray(a) for a in weights]
    if _is_conv(layer):
        if in_keep is not None:
            w[0] = w[0][:, :, in_keep, :]
        if out_keep is not None:
            w[0] = w[0][..., out_keep]
            if len(w) > 1:
                w[1] = w[1][out_keep]
        return w
    if in_keep is None:
        return w
    if kind == "Dense":
        if in_src.flat_hw is not None:
            h, wd = in_src.flat_hw
            c = w[0].shape[0] // (h * wd)
            rows = (np.arange(h * wd)[:, None] * c + in_keep[None, :]).ravel()
            w[0] = w[0][rows]
        else:
            w[0] = w[0][in_keep]
        return w
    if kind == "DepthwiseConv2D":
        w[0] = w[0][:, :, in_keep, :]
        if len(w) > 1:
            w[1] = w[1][in_keep]
        return w
    if kind == "BatchNormalization" or any(a.ndim == 1 and a.shape[0] > 0 for a in w):
        return [a[in_keep] if a.ndim >= 1 else a for a in w]
    return w


def prune_filters(
    model: Any, fraction: float, min_filters: int = 1, multiple: int = 1
) -> tuple[Any, FilterPlan]:
    """A new, thinner Keras model with the weakest `fraction` of prunable filters removed."""
    import keras

    plan = plan_filter_pruning(model, fraction, min_filters, multiple)
    used: set[str] = set()

    def visit(layer: Any, args: Any, kwargs: Any, ins: list[Any]) -> Any:
        weights = layer.get_weights()
        out_keep = plan.keep.get(layer.name) if _is_conv(layer) else None
        if not weights and layer.name not in used:
            new = layer  # weightless (pooling, Lambda, ...): safe to share, and Lambdas can't round-trip
        else:
            cfg = layer.get_config()
            name = cfg.get("name", layer.name)
            while name in used:
                name = f"{name}_1"
            cfg["name"] = name
            if out_keep is not None:
                cfg["filters"] = int(len(out_keep))
            new = type(layer).from_config(cfg)
        used.add(new.name)
        out = new(*args, **kwargs)
        if weights:
            new.set_weights(
                _slice_weights(layer, weights, out_keep, srcs.get(id(args[0]) if args else 0), plan)
            )
        # Track channel sources for the new tensors too (mirrors the analysis).
        src = srcs.get(id(args[0])) if args else None
        kind = type(layer).__name__
        if _is_conv(layer):
            srcs[id(out)] = _Chan(layer.name) if layer.name in plan.keep else None
        elif kind == "Flatten" and isinstance(src, _Chan):
            shape = args[0].shape
            srcs[id(out)] = (
                _Chan(src.conv, (int(shape[1]), int(shape[2]))) if len(shape) == 4 else src
            )
        elif kind in _PASS or kind in _GLOBAL_POOL or _is_depthwise_pass(layer):
            srcs[id(out)] = src
        return out

    srcs: dict[int, Any] = {}
    inputs = [keras.Input(shape=x.shape[1:], dtype=x.dtype, name=x.name) for x in model.inputs]
    outputs = _walk(model, inputs, visit)
    new_model = keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=model.name)
    return new_model, plan


def count_params(model: Any) -> int:
    return int(model.count_params())
