"""The pruning step: filter pruning (a thinner, faster model) and/or magnitude pruning (a
sparser, smaller download), each followed by fine-tuning on the training split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgecnn.build.config import BuildConfig
from edgecnn.data import Dataset

Say = Callable[[str], None]


def keras_accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    probs = model.predict(x.astype(np.float32), batch_size=256, verbose=0)
    return float((np.asarray(probs).argmax(axis=1) == y).mean())


def trainable_for_finetune(model: Any) -> None:
    """After filter pruning every kernel is re-fit; BatchNorm stays in inference mode."""
    for layer in model.layers:
        if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D", "Dense", "SeparableConv2D"):
            layer.trainable = True


def _copy(model: Any, seed: int) -> Any:
    """Prune a copy: a model passed in by the caller stays untouched."""
    import keras

    keras.utils.set_random_seed(seed)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _validation(ds: Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    return (ds.x_val.astype(np.float32), ds.y_val) if len(ds.y_val) else None


def _filters(
    model: Any, ds: Dataset, cfg: BuildConfig, x_eval: np.ndarray, y_eval: np.ndarray, say: Say
) -> tuple[Any, dict[str, Any]]:
    """Structured pruning of channel groups (edgecnn.optimize.structured), fine-tuned after
    each step unless magnitude pruning follows (it fine-tunes itself)."""
    from edgecnn.optimize.structured import FineTune, prune_iteratively, resolve_importance

    epochs = cfg.fine_tune_epochs if not cfg.prune else 0
    importance = resolve_importance(cfg.prune_importance, model)
    ft = FineTune(ds.x_train, ds.y_train, _validation(ds), epochs, cfg.learning_rate,
                  cfg.batch_size, distill=cfg.prune_distill)  # fmt: skip
    thin, steps = prune_iteratively(
        model, cfg.prune_filters or 0.0, ft, steps=cfg.prune_steps, multiple=cfg.filter_multiple,
        importance=importance, per_layer=cfg.prune_plan, say=say,
    )  # fmt: skip
    report = {"fraction": cfg.prune_filters, "multiple": cfg.filter_multiple, "importance": importance,
              "distill": cfg.prune_distill, "steps": steps, "pruned_layers": _channel_counts(thin), "skipped_layers": steps[0]["left_alone"]}  # fmt: skip
    report["accuracy_after_finetune" if epochs else "accuracy_before_finetune"] = keras_accuracy(
        thin, x_eval, y_eval
    )
    return thin, report


def _channel_counts(model: Any) -> dict[str, int]:
    return {lay.name: int(getattr(lay, "filters", None) or lay.units) for lay in model.layers
            if type(lay).__name__ in ("Conv2D", "Dense", "SeparableConv2D")}  # fmt: skip


def _magnitude(model: Any, ds: Dataset, cfg: BuildConfig, say: Say) -> dict[str, Any]:
    from edgecnn.optimize.prune import overall_sparsity, prune_magnitude, sparsity_report

    say(f"magnitude pruning to {cfg.prune:.0%}")
    if cfg.prune_filters:
        trainable_for_finetune(model)
    val = _validation(ds)
    prune_magnitude(
        model, ds.x_train, ds.y_train, cfg.prune, epochs=cfg.fine_tune_epochs,
        batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        validation=None if val is None else (ds.x_val, ds.y_val), seed=cfg.seed,
    )  # fmt: skip
    return {
        "target_sparsity": cfg.prune,
        "sparsity": overall_sparsity(model),
        "layers": sparsity_report(model),
    }


def prune_step(
    model: Any, ds: Dataset, cfg: BuildConfig, x_eval: np.ndarray, y_eval: np.ndarray, say: Say
) -> tuple[Any, dict[str, Any]]:
    """(the pruned reference model, its report); the model itself when nothing is pruned."""
    if not cfg.prunes:
        return model, {}
    reference = _copy(model, cfg.seed)
    report: dict[str, Any] = {}
    if cfg.prune_filters or cfg.prune_plan:
        reference, report["filters"] = _filters(reference, ds, cfg, x_eval, y_eval, say)
    if cfg.prune:
        report["magnitude"] = _magnitude(reference, ds, cfg, say)
    report["fine_tune_epochs"] = cfg.fine_tune_epochs
    return reference, report
