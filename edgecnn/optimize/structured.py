"""Structured pruning of whole channel groups, and the rebuild of a thinner Keras model.

Why hand-written: no Keras 3 library does it (see edgecnn.optimize.depgraph). The groups
come from the channel graph; each group is scored by an importance criterion, the
weakest channels of every prunable group are dropped together (a residual chain loses
the same channels in every block, a depthwise convolution the same channels as the
convolution that feeds it), channel counts are rounded up to a multiple (8: the block
size XNNPACK's int8 and float kernels and the Edge TPU work in), and the model is rebuilt
with the surviving weights: a plain functional model that saves, loads, converts and
quantizes like any other.

Importance criteria (Torch-Pruning's names):
* "l1" / "l2": the norm of the channel's weights in every layer of the group (each
  layer's norms divided by their mean, so a wide layer does not outvote a narrow one);
* "bn": the absolute BatchNorm scale of the channel (network slimming);
* "taylor": first-order Taylor, |sum(w * dL/dw)| over the group's weights, on a few
  calibration batches.

Mean replacement (Evci et al., 2018): a removed channel's output is rarely zero on
average (BatchNorm's shift, a ReLU's positive mean), and the layers that read it lose
that constant. With calibration data, each Conv2D or Dense whose input channels go gets
their mean contribution (kernel x the channel's mean activation) added to its bias, so
the pruned net starts close to the original instead of from a broken one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgecnn.errors import BadInput
from edgecnn.optimize.depgraph import ChannelGraph, Group, Space, analyze, walk

IMPORTANCES = ("l1", "l2", "bn", "taylor")
DEFAULT_IMPORTANCE = "l1"  # needs no data
BUILD_IMPORTANCE = "auto"  # what a build uses unless told: see resolve_importance
DEFAULT_MULTIPLE = 8


def resolve_importance(name: str, model: Any) -> str:
    """ "auto": taylor for a network with BatchNorm, l1 for one without. Measured with
    tools/bench_pruning.py (mean replacement on): EfficientNet-Lite0-96 from ImageNet weights
    at 62.5% lost 1.5 / 0.6 points (float / int8) with taylor and 6.9 / 5.7 with l1; cnn_mnist
    (no BatchNorm) at 50% lost 0.1 / 0.1 with l1 and 0.9 / 1.0 with taylor. BatchNorm rescales
    every channel after its convolution, so the convolution's weight norm says little there."""
    if name != BUILD_IMPORTANCE:
        return name
    has_bn = any(type(layer).__name__ == "BatchNormalization" for layer in model._flatten_layers())
    return "taylor" if has_bn else "l1"


def check_ratio(ratio: float, what: str = "pruning ratio") -> float:
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise BadInput(f"{what} must be a number in [0, 1), got {ratio!r}") from None
    if not 0.0 <= r < 1.0 or r != r:
        raise BadInput(f"{what} must be in [0, 1), got {ratio}")
    return r


@dataclass
class PruningPlan:
    ratio: float
    multiple: int = DEFAULT_MULTIPLE
    importance: str = DEFAULT_IMPORTANCE
    per_layer: dict[str, float] = field(default_factory=dict)  # producer layer -> its group's ratio
    keep: dict[int, np.ndarray] = field(default_factory=dict)  # group id -> kept channel indices
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per pruned group
    left_alone: dict[str, str] = field(default_factory=dict)  # layer -> why
    # layer -> mean of each input channel on calibration data, for the layers whose input
    # channels go (mean replacement: their average contribution moves into the bias)
    input_means: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        """What the manifest records."""
        return {
            "method": "structured (channel groups)", "ratio": self.ratio, "per_layer": self.per_layer,
            "multiple": self.multiple, "importance": self.importance, "groups": self.rows,
            "left_alone": self.left_alone,
        }  # fmt: skip


# -- importance ----------------------------------------------------------------------------------


def _norms(w: np.ndarray, axis: int, p: int) -> np.ndarray:
    moved = np.moveaxis(np.abs(w) ** p, axis, -1)
    return moved.reshape(-1, moved.shape[-1]).sum(axis=0)


def _normalized(v: np.ndarray) -> np.ndarray:
    m = float(np.mean(v))
    return v / m if m > 0 else v


def _layer_scores(
    g: ChannelGraph, group: Group, p: int, grads: dict[str, list[np.ndarray]] | None
) -> np.ndarray:
    """Per-channel score of one group: producers' output filters and consumers' input slices."""
    total = np.zeros(group.size)
    for name in group.producers:
        w = _weights(g, name, grads)
        if w:
            kernel = w[1] if type(g.layers[name]).__name__ == "SeparableConv2D" else w[0]
            total += _normalized(_norms(kernel, -1, p))
    for name in group.consumers:
        total += _consumer_scores(g, name, group, p, grads)
    return total


def _weights(
    g: ChannelGraph, name: str, grads: dict[str, list[np.ndarray]] | None
) -> list[np.ndarray]:
    layer = g.layers[name]
    w = [np.asarray(v) for v in layer.get_weights()]
    if grads is None:
        return w
    kernels = [k for k in w if k.ndim >= 2]
    gk = [k for k in grads.get(name, []) if k.ndim >= 2]
    # Taylor: w * dL/dw, whose |sum| per channel is the first-order change in loss.
    return [a * b for a, b in zip(kernels, gk, strict=False)] if gk else w


def _consumer_scores(g: ChannelGraph, name: str, group: Group, p: int, grads: Any) -> np.ndarray:
    space = g.in_space[name]
    w = _weights(g, name, grads)
    if not w:
        return np.zeros(group.size)
    kind = type(g.layers[name]).__name__
    kernel = w[1] if kind == "SeparableConv2D" else w[0]
    per_row = _norms(kernel, 2 if kernel.ndim == 4 else 0, p)  # input-channel axis
    if space.flat_hw and kernel.ndim == 2:
        per_row = per_row.reshape(-1, space.channels).sum(axis=0)  # HWC rows -> channels
    offset = 0
    out = np.zeros(group.size)
    for seg in space.segments:
        if g.root(seg.gid) == group.gid and per_row.size >= offset + seg.size:
            out += _normalized(per_row[offset : offset + seg.size])
        offset += seg.size
    return out


def _bn_scores(g: ChannelGraph, group: Group) -> np.ndarray | None:
    total = np.zeros(group.size)
    found = False
    for name in group.members:
        layer = g.layers[name]
        if (
            type(layer).__name__ == "BatchNormalization"
            and getattr(layer, "gamma", None) is not None
        ):
            gamma = np.abs(np.asarray(layer.gamma.numpy()))
            if gamma.size == group.size:
                total += _normalized(gamma)
                found = True
    return total if found else None


def taylor_gradients(
    model: Any, data: tuple[np.ndarray, np.ndarray], batches: int = 4, batch: int = 32
) -> dict[str, list[np.ndarray]]:
    """Summed dL/dw per layer over a few calibration batches."""
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    layers = {
        w.path: (w, w.path.split("/")[-2] if "/" in w.path else w.name)
        for w in model.trainable_weights
    }
    sums: dict[str, np.ndarray] = {}
    x, y = data
    for i in range(min(batches, max(1, len(x) // batch))):
        xb = tf.constant(x[i * batch : (i + 1) * batch], tf.float32)
        with tf.GradientTape() as tape:
            loss = loss_fn(y[i * batch : (i + 1) * batch], model(xb, training=False))
        for (path, _), gr in zip(
            layers.items(), tape.gradient(loss, [v for v, _ in layers.values()]), strict=True
        ):
            if gr is not None:
                sums[path] = sums.get(path, 0) + np.asarray(gr)
    out: dict[str, list[np.ndarray]] = {}
    for path, (_, layer_name) in layers.items():
        if path in sums:
            out.setdefault(layer_name, []).append(sums[path])
    return out


def group_scores(
    g: ChannelGraph, group: Group, importance: str, grads: dict[str, list[np.ndarray]] | None = None
) -> np.ndarray:
    if importance == "bn":
        bn = _bn_scores(g, group)
        if bn is not None:
            return bn
    p = 2 if importance == "l2" else 1
    return _layer_scores(g, group, p, grads if importance == "taylor" else None)


# -- the plan ------------------------------------------------------------------------------------


def _kept_count(n: int, ratio: float, multiple: int) -> int:
    keep = max(1, int(round(n * (1.0 - ratio))))
    return min(n, max(multiple, math.ceil(keep / multiple) * multiple))


def _group_ratio(group: Group, plan: PruningPlan) -> float:
    named = [plan.per_layer[p] for p in group.producers if p in plan.per_layer]
    return max(named) if named else plan.ratio


def check_layer_names(g: ChannelGraph, names: list[str]) -> None:
    unknown = [n for n in names if n not in g.layers]
    if unknown:
        raise BadInput(
            f"the pruning plan names layers the model does not have: {', '.join(unknown[:5])}"
        )


def plan_pruning(
    model: Any, ratio: float, *, multiple: int = DEFAULT_MULTIPLE, importance: str = DEFAULT_IMPORTANCE,
    per_layer: dict[str, float] | None = None, data: tuple[np.ndarray, np.ndarray] | None = None,
    graph: ChannelGraph | None = None, compensate: bool = True,
) -> tuple[ChannelGraph, PruningPlan]:  # fmt: skip
    """Which channels of which groups go (the weakest by `importance`)."""
    ratio = check_ratio(ratio)
    per_layer = {k: check_ratio(v, f"pruning ratio of {k}") for k, v in (per_layer or {}).items()}
    if multiple < 1:
        raise BadInput(f"channel multiple must be >= 1, got {multiple}")
    if importance not in IMPORTANCES:
        raise BadInput(f"unknown importance {importance!r}; choose from {', '.join(IMPORTANCES)}")
    if importance == "taylor" and data is None:
        raise BadInput("taylor importance needs calibration data")
    g = graph or analyze(model)
    check_layer_names(g, list(per_layer))
    plan = PruningPlan(ratio, multiple, importance, per_layer, left_alone=g.blocked())
    grads = taylor_gradients(model, data) if importance == "taylor" and data is not None else None
    for group in sorted(g.prunable(), key=lambda grp: grp.gid):
        r = _group_ratio(group, plan)
        keep_n = _kept_count(group.size, r, multiple)
        if keep_n >= group.size:
            continue
        scores = group_scores(g, group, importance, grads)
        keep = np.sort(np.argsort(-scores, kind="stable")[:keep_n])
        plan.keep[group.gid] = keep
        plan.rows.append(
            {"producers": list(group.producers), "channels": group.size, "kept": int(keep_n)}
        )
    if compensate and data is not None and plan.keep:
        plan.input_means = input_means(model, g, plan, data[0][:MEAN_IMAGES])
    return g, plan


MEAN_IMAGES = 64
MIXING = ("Conv2D", "Dense")  # layers that sum over input channels (depthwise ones do not)


def input_means(
    model: Any, g: ChannelGraph, plan: PruningPlan, x: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-channel mean input (per unit for a Dense layer) of every mixing layer that loses
    input channels, measured on `x` through the original model."""
    import keras

    targets = [
        name
        for name, space in g.in_space.items()
        if type(g.layers.get(name)).__name__ in MIXING and kept_indices(g, plan, space) is not None
    ]
    if not targets:
        return {}
    seen: dict[str, Any] = {}

    def probe(node: Any, op: Any, tensors: dict[int, Any]) -> list[Any]:
        args, kwargs = node.arguments.fill_in(tensors)
        if getattr(op, "name", None) in targets:
            seen[op.name] = args[0]
        out = op(*args, **kwargs)
        return out if isinstance(out, list) else [out]

    inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype) for t in model.inputs]
    walk(model, inputs, probe)
    names = [n for n in targets if n in seen]
    taps = keras.Model(inputs, [seen[n] for n in names])
    sums: dict[str, np.ndarray] = {}
    for start in range(0, len(x), 16):
        outs = taps([x[start : start + 16].astype(np.float32)], training=False)
        for name, out in zip(names, outs if isinstance(outs, list) else [outs], strict=True):
            v = np.asarray(out, dtype=np.float64)
            total = v.reshape(-1, v.shape[-1]).sum(axis=0)
            sums[name] = sums.get(name, 0.0) + total
    counts = {n: len(x) * (int(np.prod(seen[n].shape[1:-1])) or 1) for n in names}
    return {n: (sums[n] / counts[n]).astype(np.float32) for n in names}


def compensated(
    op: Any, weights: list[np.ndarray], cfg: dict[str, Any], in_keep: np.ndarray,
    in_space: Space | None, means: np.ndarray,
) -> list[np.ndarray]:  # fmt: skip
    """`weights` with the removed inputs' mean contribution in the bias (added if absent)."""
    kernel = np.asarray(weights[0])
    if type(op).__name__ == "Conv2D":
        removed = np.setdiff1d(np.arange(kernel.shape[2]), in_keep)
        delta = np.einsum("hwco,c->o", kernel[:, :, removed, :], means[removed])
    else:  # Dense: rows, after a Flatten one per (position, channel)
        rows = _rows(in_space, in_keep) if in_space is not None else in_keep
        removed = np.setdiff1d(np.arange(kernel.shape[0]), rows)
        delta = means[removed] @ kernel[removed]
    if cfg.get("use_bias", True):
        return [kernel, np.asarray(weights[1]) + delta, *weights[2:]]
    cfg["use_bias"] = True
    return [kernel, delta.astype(kernel.dtype), *weights[1:]]


# -- the rebuild ---------------------------------------------------------------------------------


def kept_indices(g: ChannelGraph, plan: PruningPlan, space: Space | None) -> np.ndarray | None:
    """Indices kept along a tensor's channel axis (None: all of them)."""
    if space is None:
        return None
    parts, offset, pruned = [], 0, False
    for seg in space.segments:
        keep = plan.keep.get(g.root(seg.gid))
        pruned |= keep is not None
        parts.append(offset + (keep if keep is not None else np.arange(seg.size)))
        offset += seg.size
    return np.concatenate(parts) if pruned else None


def _rows(space: Space, keep: np.ndarray) -> np.ndarray:
    """A Dense layer's kept input rows: after Flatten, rows are (h * W + w) * C + c."""
    if not space.flat_hw:
        return keep
    h, w = space.flat_hw
    return (np.arange(h * w)[:, None] * space.channels + keep[None, :]).ravel()


def slice_weights(
    layer: Any,
    w: list[np.ndarray],
    in_keep: np.ndarray | None,
    out_keep: np.ndarray | None,
    in_space: Space | None,
) -> list[np.ndarray]:
    kind = type(layer).__name__
    w = [np.asarray(a) for a in w]
    if kind == "Conv2D":
        if in_keep is not None:
            w[0] = w[0][:, :, in_keep, :]
        if out_keep is not None:
            w[0] = w[0][..., out_keep]
            w[1:] = [b[out_keep] for b in w[1:]]
    elif kind == "Dense":
        if in_keep is not None:
            w[0] = w[0][_rows(in_space, in_keep)]
        if out_keep is not None:
            w[0] = w[0][:, out_keep]
            w[1:] = [b[out_keep] for b in w[1:]]
    elif kind == "SeparableConv2D":
        if in_keep is not None:
            w[0], w[1] = w[0][:, :, in_keep, :], w[1][:, :, in_keep, :]
        if out_keep is not None:
            w[1] = w[1][..., out_keep]
            w[2:] = [b[out_keep] for b in w[2:]]
    elif in_keep is not None:  # per-channel layers: BatchNorm, DepthwiseConv2D, PReLU
        n = in_space.channels if in_space else None
        w = [
            a[..., in_keep, :]
            if kind == "DepthwiseConv2D" and a.ndim == 4
            else (a[..., in_keep] if a.shape and a.shape[-1] == n else a)
            for a in w
        ]
    return w


def _rebuild_node(
    g: ChannelGraph,
    plan: PruningPlan,
    node: Any,
    op: Any,
    tensors: dict[int, Any],
    used: set[str],
    producers: set[str],
) -> list[Any]:
    args, kwargs = node.arguments.fill_in(tensors)
    if not hasattr(op, "get_weights"):  # a keras.ops operation (x + 3.0): stateless, reused
        out = op(*args, **kwargs)
        return out if isinstance(out, list) else [out]
    name = op.name
    in_space = g.in_space.get(name)
    in_keep = kept_indices(g, plan, in_space)
    out_keep = kept_indices(g, plan, g.out_space.get(name)) if name in producers else None
    weights = op.get_weights()
    cfg = op.get_config()
    means = plan.input_means.get(name)
    if means is not None and in_keep is not None and weights:
        weights = compensated(op, weights, cfg, in_keep, in_space, means)
    while cfg.get("name", name) in used:
        cfg["name"] = f"{cfg.get('name', name)}_1"
    for key in ("filters", "units"):
        if key in cfg and out_keep is not None:
            cfg[key] = int(len(out_keep))
    try:
        new = type(op).from_config(cfg)
    except Exception:  # a weightless layer that cannot round-trip its config (a Lambda)
        if weights:
            raise
        new = op
    used.add(new.name)
    out = new(*args, **kwargs)
    if weights:
        new.set_weights(slice_weights(op, weights, in_keep, out_keep, in_space))
    return out if isinstance(out, list) else [out]


def apply_plan(model: Any, g: ChannelGraph, plan: PruningPlan) -> Any:
    """A new, thinner functional model (nested models inlined) with the kept channels."""
    import keras

    producers = g.producer_names()
    used: set[str] = set()
    inputs = [keras.Input(shape=x.shape[1:], dtype=x.dtype, name=x.name) for x in model.inputs]
    outs = walk(
        model,
        inputs,
        lambda node, op, tensors: _rebuild_node(g, plan, node, op, tensors, used, producers),
    )
    return keras.Model(inputs, outs if len(outs) > 1 else outs[0], name=model.name)


def prune_structured(
    model: Any, ratio: float, *, multiple: int = DEFAULT_MULTIPLE, importance: str = DEFAULT_IMPORTANCE,
    per_layer: dict[str, float] | None = None, data: tuple[np.ndarray, np.ndarray] | None = None,
    compensate: bool = True,
) -> tuple[Any, PruningPlan]:  # fmt: skip
    g, plan = plan_pruning(model, ratio, multiple=multiple, importance=importance, per_layer=per_layer,
                           data=data, compensate=compensate)  # fmt: skip
    return apply_plan(model, g, plan), plan


# -- iterative pruning with fine-tuning ------------------------------------------------------------


def _best_weights_callback() -> Any:
    """Keeps the weights of the epoch with the best validation accuracy, restored at the end."""
    import keras

    class BestWeights(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best, self.weights = -1.0, None

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            acc = float((logs or {}).get("val_accuracy", (logs or {}).get("accuracy", 0.0)))
            if acc > self.best:
                self.best, self.weights = acc, self.model.get_weights()

        def on_train_end(self, logs: Any = None) -> None:
            if self.weights is not None:
                self.model.set_weights(self.weights)

    return BestWeights()


@dataclass
class FineTune:
    x: np.ndarray
    y: np.ndarray
    val: tuple[np.ndarray, np.ndarray] | None
    epochs: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 64
    distill: float = 0.0  # weight of the unpruned model's soft targets (0: labels only)
    temperature: float = 4.0
    soft: np.ndarray | None = None  # the teacher's probabilities on x (set by prune_iteratively)
    val_soft: np.ndarray | None = None


def with_teacher(ft: FineTune, teacher: Any) -> FineTune:
    """The unpruned model's probabilities on the fine-tuning (and validation) images."""
    from edgecnn.optimize.distill import teacher_probabilities
    from edgecnn.optimize.prune import outputs_probabilities

    if ft.distill <= 0 or ft.epochs <= 0:
        return ft
    logits = not outputs_probabilities(teacher)
    val_soft = teacher_probabilities(teacher, ft.val[0], logits) if ft.val is not None else None
    return replace(ft, soft=teacher_probabilities(teacher, ft.x, logits), val_soft=val_soft)


def _compile(model: Any, ft: FineTune) -> None:
    from edgecnn.optimize.distill import compile_for_distillation
    from edgecnn.optimize.prune import compile_for_finetune, outputs_probabilities

    if ft.soft is None:
        compile_for_finetune(model, ft.learning_rate)
        return
    compile_for_distillation(model, ft.learning_rate, ft.soft.shape[1], ft.distill,
                             ft.temperature, not outputs_probabilities(model))  # fmt: skip


def _targets(ft: FineTune) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    from edgecnn.optimize.distill import packed_targets

    val = ft.val if ft.val is not None and len(ft.val[1]) else None
    if ft.soft is None:
        return ft.y, None if val is None else (val[0].astype(np.float32), val[1])
    val_packed = None
    if val is not None and ft.val_soft is not None:
        val_packed = (val[0].astype(np.float32), packed_targets(val[1], ft.val_soft))
    return packed_targets(ft.y, ft.soft), val_packed


def fine_tune(model: Any, ft: FineTune) -> float | None:
    """Train every kernel (BatchNorm stays as it was) and keep the best epoch; its val accuracy."""
    from edgecnn.optimize.prune import compile_for_finetune

    for layer in model.layers:
        if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D", "Dense", "SeparableConv2D"):
            layer.trainable = True
    _compile(model, ft)
    best = _best_weights_callback()
    y, val = _targets(ft)
    model.fit(ft.x.astype(np.float32), y, epochs=ft.epochs, batch_size=ft.batch_size,
              validation_data=val, callbacks=[best], verbose=0)  # fmt: skip
    if ft.soft is not None:  # a plain compile state: the saved model needs no custom loss
        compile_for_finetune(model, ft.learning_rate)
    return best.best if best.best >= 0 else None


def prune_iteratively(
    model: Any, ratio: float, ft: FineTune | None, *, steps: int = 1, multiple: int = DEFAULT_MULTIPLE,
    importance: str = DEFAULT_IMPORTANCE, per_layer: dict[str, float] | None = None, say: Any = None,
) -> tuple[Any, list[dict[str, Any]]]:  # fmt: skip
    """Prune a step, fine-tune (keeping the best epoch), repeat: each step keeps the same
    fraction of channels, so `steps` of them keep (1 - ratio) of the original."""
    if steps < 1:
        raise BadInput(f"pruning steps must be >= 1, got {steps}")
    check_ratio(ratio)
    per_step = 1.0 - (1.0 - ratio) ** (1.0 / steps)
    layer_steps = {
        k: 1.0 - (1.0 - check_ratio(v, f"pruning ratio of {k}")) ** (1.0 / steps)
        for k, v in (per_layer or {}).items()
    }
    calib = (ft.x[:128].astype(np.float32), ft.y[:128]) if ft is not None else None
    if ft is not None:
        ft = with_teacher(ft, model)
    current, history = model, []
    for step in range(1, steps + 1):
        if say:
            say(f"structured pruning step {step}/{steps} ({per_step:.0%} of the channels left)")
        current, plan = prune_structured(current, per_step, multiple=multiple, importance=importance,
                                         per_layer=layer_steps, data=calib)  # fmt: skip
        record = plan.summary()
        if ft is not None and ft.epochs > 0:
            record["val_accuracy_after_finetune"] = fine_tune(current, ft)
        history.append(record)
        layer_steps = {
            k: v for k, v in layer_steps.items() if k in {lay.name for lay in current.layers}
        }
    return current, history
