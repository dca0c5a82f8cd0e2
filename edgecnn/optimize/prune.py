"""Unstructured magnitude pruning for Keras 3 (tensorflow-model-optimization refuses Keras 3).

Zeroes the smallest-magnitude kernel weights of Conv2D, DepthwiseConv2D and
Dense layers following a polynomial-decay sparsity schedule, and re-applies the
masks after every training batch so optimizer momentum cannot regrow pruned
weights. Unstructured sparsity only shrinks the compressed download (gzip); it
does not make any runtime faster, which is what `filters.py` is for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.errors import BadInput

PRUNABLE = ("Conv2D", "DepthwiseConv2D", "Dense")


def check_sparsity(sparsity: float, what: str = "sparsity") -> float:
    """Sparsities live in [0, 1): pruning every weight leaves no model."""
    try:
        s = float(sparsity)
    except (TypeError, ValueError):
        raise BadInput(f"{what} must be a number in [0, 1), got {sparsity!r}") from None
    if not 0.0 <= s < 1.0 or s != s:
        raise BadInput(f"{what} must be in [0, 1), got {sparsity}")
    return s


@dataclass(frozen=True)
class PolynomialDecay:
    """Sparsity ramps from `initial` to `final` between `begin_step` and `end_step`.

    s(t) = final + (initial - final) * (1 - (t - begin) / (end - begin)) ** power,
    updated every `frequency` steps (the schedule of Zhu & Gupta, 2017, as in TFMOT).
    """

    final_sparsity: float
    initial_sparsity: float = 0.0
    begin_step: int = 0
    end_step: int = 100
    frequency: int = 10
    power: float = 3.0

    def __post_init__(self) -> None:
        check_sparsity(self.final_sparsity, "final sparsity")
        check_sparsity(self.initial_sparsity, "initial sparsity")
        if self.end_step < self.begin_step or self.frequency < 1:
            raise BadInput("pruning schedule needs begin_step <= end_step and frequency >= 1")

    def sparsity_at(self, step: int) -> float:
        if step <= self.begin_step:
            return self.initial_sparsity if step == self.begin_step else 0.0
        if step >= self.end_step or self.end_step == self.begin_step:
            return self.final_sparsity
        frac = (step - self.begin_step) / (self.end_step - self.begin_step)
        return (
            self.final_sparsity
            + (self.initial_sparsity - self.final_sparsity) * (1.0 - frac) ** self.power
        )

    def updates_at(self, step: int) -> bool:
        """Masks are recomputed on the schedule's grid and at its last step."""
        if step < self.begin_step or step > self.end_step:
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == self.end_step


def prunable_layers(model: Any) -> list[Any]:
    """Layers whose kernel gets pruned (nested models included)."""
    return [
        layer
        for layer in _flat_layers(model)
        if type(layer).__name__ in PRUNABLE and getattr(layer, "kernel", None) is not None
    ]


def _flat_layers(model: Any) -> list[Any]:
    out: list[Any] = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out.extend(_flat_layers(layer))
        else:
            out.append(layer)
    return out


def magnitude_mask(kernel: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep the largest |w|; exactly round(sparsity * n) weights become zero."""
    flat = np.abs(kernel).ravel()
    k = int(round(sparsity * flat.size))
    mask = np.ones(flat.size, dtype=kernel.dtype)
    if k > 0:
        # argpartition gives the exact count even when many weights tie (e.g. already zero).
        mask[np.argpartition(flat, k - 1)[:k]] = 0
    return mask.reshape(kernel.shape)


class MagnitudePruning:
    """A Keras callback factory (keras is imported lazily, so build it with `make`)."""

    @staticmethod
    def make(model: Any, schedule: PolynomialDecay) -> Any:
        import keras

        class _Callback(keras.callbacks.Callback):
            """Recompute masks on the schedule; hold them after every batch."""

            def __init__(self) -> None:
                super().__init__()
                self.schedule = schedule
                self.layers = prunable_layers(model)
                self.masks: dict[str, np.ndarray] = {}
                self.step = 0

            def _update_masks(self, sparsity: float) -> None:
                for layer in self.layers:
                    w = np.asarray(layer.kernel.numpy())
                    self.masks[layer.name] = magnitude_mask(w, sparsity)

            def apply_masks(self) -> None:
                for layer in self.layers:
                    mask = self.masks.get(layer.name)
                    if mask is not None:
                        layer.kernel.assign(np.asarray(layer.kernel.numpy()) * mask)

            def on_train_begin(self, logs: Any = None) -> None:
                if self.schedule.updates_at(self.step):
                    self._update_masks(self.schedule.sparsity_at(self.step))
                self.apply_masks()

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                self.step += 1
                if self.schedule.updates_at(self.step):
                    self._update_masks(self.schedule.sparsity_at(self.step))
                self.apply_masks()

            def on_train_end(self, logs: Any = None) -> None:
                # Whatever step training stopped at, leave the model at the target.
                self._update_masks(self.schedule.final_sparsity)
                self.apply_masks()

        return _Callback()


def prune_magnitude(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    sparsity: float,
    *,
    epochs: int = 2,
    batch_size: int = 64,
    learning_rate: float = 1e-4,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
) -> Any:
    """Prune `model` in place to `sparsity` while fine-tuning for `epochs`.

    The schedule ramps over the first ~2/3 of the steps so the last epoch
    trains with the final masks held. With `epochs == 0` it prunes one-shot.
    """
    import keras

    sparsity = check_sparsity(sparsity)
    if sparsity == 0.0:
        return model
    steps_per_epoch = max(1, int(np.ceil(len(x) / batch_size)))
    total = steps_per_epoch * max(epochs, 0)
    if total == 0:
        for layer in prunable_layers(model):
            w = np.asarray(layer.kernel.numpy())
            layer.kernel.assign(w * magnitude_mask(w, sparsity))
        return model
    end = max(1, int(total * 2 / 3))
    schedule = PolynomialDecay(
        final_sparsity=sparsity, begin_step=0, end_step=end, frequency=max(1, end // 10)
    )
    keras.utils.set_random_seed(seed)
    compile_for_finetune(model, learning_rate)
    callback = MagnitudePruning.make(model, schedule)
    model.fit(
        x.astype("float32"),
        y,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=None
        if validation is None
        else (validation[0].astype("float32"), validation[1]),
        callbacks=[callback],
        verbose=0,
    )
    return model


def outputs_probabilities(model: Any) -> bool:
    """True if the last layer already applies softmax (the zoo's convention)."""
    last = model.layers[-1]
    while hasattr(last, "layers") and last.layers:
        last = last.layers[-1]
    act = getattr(last, "activation", None)
    return getattr(act, "__name__", "") == "softmax" or type(last).__name__ == "Softmax"


def compile_for_finetune(model: Any, learning_rate: float) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=not outputs_probabilities(model)
        ),
        metrics=["accuracy"],
    )


def sparsity_report(model: Any) -> list[dict[str, Any]]:
    """Per-layer kernel sparsity (fraction of exact zeros)."""
    rows = []
    for layer in prunable_layers(model):
        w = np.asarray(layer.kernel.numpy())
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "weights": int(w.size),
                "zeros": int((w == 0).sum()),
                "sparsity": float((w == 0).mean()) if w.size else 0.0,
            }
        )
    return rows


def overall_sparsity(model: Any) -> float:
    rows = sparsity_report(model)
    n = sum(r["weights"] for r in rows)
    return sum(r["zeros"] for r in rows) / n if n else 0.0
