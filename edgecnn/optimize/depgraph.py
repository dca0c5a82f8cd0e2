"""Channel groups of a Keras 3 functional model: which channels must be removed together.

Why this is written here: no library prunes Keras 3 models structurally
(tensorflow-model-optimization refuses Keras 3 and offers only 2:4 sparsity). The idea is
Torch-Pruning's dependency graph (DepGraph, CVPR 2023): follow every tensor's channel
axis through the graph, and put in one *group* all the layers whose channels are tied:

* a producer (Conv2D filters, Dense units, SeparableConv2D filters) starts a group;
* per-channel layers (BatchNormalization, DepthwiseConv2D with multiplier 1, PReLU,
  activations, pooling, padding, dropout, global pooling) carry it on;
* an element-wise merge of two tensors (Add, Multiply, ...) ties their groups into one,
  so a residual chain is one group, and a squeeze-excite block's expand convolution
  joins the channels it rescales (its reduce convolution is a group of its own);
* Concatenate lays groups side by side at offsets;
* consumers (the next Conv2D's input channels, a Dense layer's input rows, HWC-ordered
  after Flatten) are sliced to what their input group keeps.

The model input and anything that reaches a model output (the classifier) are never
pruned, and a group that touches a layer this graph does not understand is left alone,
with the layer named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.errors import BadInput

PASS = {
    "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "Dropout", "SpatialDropout2D", "GaussianNoise",
    "GaussianDropout", "ActivityRegularization", "MaxPooling2D", "AveragePooling2D", "ZeroPadding2D",
    "Cropping2D", "UpSampling2D", "Identity", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
}  # fmt: skip
MERGE = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
PER_CHANNEL = {"BatchNormalization", "PReLU"}


@dataclass
class Segment:
    gid: int
    size: int


@dataclass
class Space:
    """The channel axis of one tensor: groups side by side (more than one after Concatenate)."""

    segments: list[Segment]
    flat_hw: tuple[int, int] | None = None  # after Flatten: the spatial grid the rows come from

    @property
    def channels(self) -> int:
        return sum(s.size for s in self.segments)


@dataclass
class Group:
    gid: int
    size: int
    producers: list[str] = field(default_factory=list)  # layers whose output channels these are
    members: list[str] = field(default_factory=list)  # per-channel layers on the way
    consumers: list[str] = field(default_factory=list)  # layers that read these as input channels
    blocked: str | None = None  # why the group is left alone


class ChannelGraph:
    """The result of `analyze`: groups, and each layer's input and output channel spaces."""

    def __init__(self) -> None:
        self._parent: list[int] = []
        self.groups: dict[int, Group] = {}
        self.in_space: dict[str, Space] = {}
        self.out_space: dict[str, Space] = {}
        self.layers: dict[str, Any] = {}

    # -- union-find over groups ------------------------------------------------------------
    def new_group(
        self, size: int, producer: str | None = None, blocked: str | None = None
    ) -> Space:
        gid = len(self._parent)
        self._parent.append(gid)
        self.groups[gid] = Group(gid, size, [producer] if producer else [], blocked=blocked)
        return Space([Segment(gid, size)])

    def root(self, gid: int) -> int:
        while self._parent[gid] != gid:
            self._parent[gid] = self._parent[self._parent[gid]]
            gid = self._parent[gid]
        return gid

    def group(self, gid: int) -> Group:
        return self.groups[self.root(gid)]

    def union(self, a: int, b: int) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra == rb:
            return
        ga, gb = self.groups.pop(rb), self.groups[ra]
        self._parent[rb] = ra
        for name in ("producers", "members", "consumers"):
            getattr(gb, name).extend(x for x in getattr(ga, name) if x not in getattr(gb, name))
        gb.blocked = gb.blocked or ga.blocked

    def block(self, space: Space | None, why: str) -> None:
        for seg in space.segments if space else []:
            g = self.group(seg.gid)
            g.blocked = g.blocked or why

    def note(self, space: Space, role: str, layer: str) -> None:
        for seg in space.segments:
            lst = getattr(self.group(seg.gid), role)
            if layer not in lst:
                lst.append(layer)

    def producer_names(self) -> set[str]:
        return {p for grp in self.groups.values() for p in grp.producers}

    def prunable(self) -> list[Group]:
        return [g for g in self.groups.values() if g.blocked is None and g.producers]

    def blocked(self) -> dict[str, str]:
        """Layer -> why its channels are left alone (for the report)."""
        out: dict[str, str] = {}
        for g in self.groups.values():
            if g.blocked and g.producers:
                for p in g.producers:
                    out.setdefault(p, g.blocked)
        return out


# -- walking a functional graph (nested models inlined) ---------------------------------------


def walk(model: Any, inputs: list[Any], visit: Any) -> list[Any]:
    """`visit(node, operation, tensors) -> outputs` over every node, nested models inlined.

    `tensors` maps id(original KerasTensor) to its stand-in; `inputs` stand in for
    `model.inputs`; returns the stand-ins of `model.outputs`."""
    import keras

    if not hasattr(model, "_nodes_by_depth"):
        raise BadInput(f"cannot prune {type(model).__name__}: not a functional Keras model")
    tensors: dict[int, Any] = {id(x): y for x, y in zip(model.inputs, inputs, strict=False)}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if (
                not node.operation
                or node.is_input
                or any(id(x) not in tensors for x in node.input_tensors)
            ):
                continue
            op = node.operation
            if isinstance(op, keras.Model):
                outs = walk(op, [tensors[id(x)] for x in node.input_tensors], visit)
            else:
                outs = visit(node, op, tensors)
            for x, y in zip(node.outputs, outs, strict=False):
                tensors[id(x)] = y
    return [tensors[id(x)] for x in model.outputs]


def _kind(op: Any, node: Any) -> str:
    name = type(op).__name__
    n_in = len(node.input_tensors)
    if name == "Conv2D":
        return "conv" if getattr(op, "groups", 1) == 1 else "block"
    if name == "DepthwiseConv2D":
        return "per_channel" if getattr(op, "depth_multiplier", 1) == 1 else "block"
    if name == "SeparableConv2D":
        return "sepconv" if getattr(op, "depth_multiplier", 1) == 1 else "block"
    if name == "Dense":
        return "dense"
    if name in PER_CHANNEL:
        return "per_channel" if _last_axis(op) else "block"
    if name in PASS or (n_in == 1 and type(op).__module__.startswith("keras.src.ops")):
        return "pass"  # includes x + 3.0, x * (1/6): element-wise with a constant
    if name == "Flatten":
        return "flatten"
    if name in MERGE and n_in >= 2:
        return "merge"
    if name == "Concatenate" and getattr(op, "axis", None) in (-1, 3):
        return "concat"
    if name == "Rescaling" and np.ndim(getattr(op, "scale", 1.0)) == 0:
        return "pass"
    return "block"


def _last_axis(op: Any) -> bool:
    axis = getattr(op, "axis", -1)
    if type(op).__name__ == "PReLU":
        return True
    return axis in (-1, 3, [-1], [3], (-1,), (3,))


def _out_channels(node: Any) -> int:
    shape = node.outputs[0].shape
    return int(shape[-1]) if shape[-1] is not None else 0


def _analyze_node(g: ChannelGraph, node: Any, op: Any, tensors: dict[int, Any]) -> list[Any]:
    ins = [tensors[id(x)] for x in node.input_tensors]
    kind, name = _kind(op, node), op.name
    if name in g.layers:  # a layer called twice: its channels would have to agree twice
        kind = "block"
    g.layers[name] = op
    src = ins[0] if ins else None
    if src is not None:
        g.in_space[name] = src
    if kind in ("conv", "dense", "sepconv"):
        if src is not None:
            g.note(src, "consumers", name)
            if kind == "sepconv":
                g.note(src, "members", name)
        out = g.new_group(_out_channels(node), producer=name)
    elif kind in ("per_channel", "pass"):
        if kind == "per_channel":
            g.note(src, "members", name)
        out = Space(list(src.segments), src.flat_hw)
    elif kind == "flatten":
        shape = node.input_tensors[0].shape
        out = Space(
            list(src.segments), (int(shape[1]), int(shape[2])) if len(shape) == 4 else src.flat_hw
        )
    elif kind == "merge":
        out = _merge(g, ins, name)
    elif kind == "concat":
        out = Space([s for sp in ins for s in sp.segments])
    else:
        for sp in ins:
            g.block(
                sp,
                f"passes through {type(op).__name__} {name}, which the channel graph does not know",
            )
        out = g.new_group(_out_channels(node), blocked=f"made by {type(op).__name__} {name}")
    g.out_space[name] = out
    return [out] * max(1, len(node.outputs))


def _merge(g: ChannelGraph, ins: list[Space], name: str) -> Space:
    """Element-wise merge: the inputs' channels are tied, segment by segment."""
    first = ins[0]
    for other in ins[1:]:
        same = len(other.segments) == len(first.segments) and all(
            a.size == b.size for a, b in zip(first.segments, other.segments, strict=True)
        )
        if not same:
            for sp in ins:
                g.block(sp, f"{name} merges differently split channels")
            return Space(list(first.segments))
        for a, b in zip(first.segments, other.segments, strict=True):
            g.union(a.gid, b.gid)
    return Space(list(first.segments))


def analyze(model: Any) -> ChannelGraph:
    """The channel groups of `model` (see the module docstring)."""
    g = ChannelGraph()
    ins = [
        g.new_group(int(x.shape[-1]), blocked="model input (the stem's input is never pruned)")
        for x in model.inputs
    ]
    outs = walk(model, ins, lambda node, op, tensors: _analyze_node(g, node, op, tensors))
    for o in outs:
        g.block(o, "feeds a model output (the classifier is never pruned)")
    return g
