"""Training across processes or machines: tf.distribute.MultiWorkerMirroredStrategy, TF_CONFIG.

Keras 3's `fit()` does not run under this strategy (keras-team/keras#20585: its first
step reduces a distributed batch and its metric reduction asks for an axis a scalar
lacks), so this is the custom training loop of TensorFlow's multi-worker guide: every
worker takes its shard of each global batch, the replicas' gradients are all-reduced,
and every worker holds the same weights. The epoch logs and the callbacks are driven as
`fit()` drives them, so `edgecnn.train` handles both paths alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

VAL_BATCH = 256


def _train_step(model: Any, strategy: Any) -> Any:
    import tensorflow as tf

    per_example = tf.keras.losses.SparseCategoricalCrossentropy(reduction="none")  # as compiled

    def replica(x: Any, y: Any) -> tuple[Any, Any, Any]:
        ctx = tf.distribute.get_replica_context()
        count = tf.cast(tf.shape(y)[0], tf.float32)
        total = ctx.all_reduce("SUM", count)  # the global batch (the last one may be short)
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            loss_sum = tf.reduce_sum(per_example(y, probs))
            scaled = loss_sum / total
        grads = tape.gradient(scaled, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
        correct = tf.reduce_sum(
            tf.cast(tf.equal(tf.argmax(probs, 1, output_type=y.dtype), y), tf.float32)
        )
        return loss_sum, correct, count

    @tf.function
    def step(batch: Any) -> tuple[Any, Any, Any]:
        out = strategy.run(replica, args=batch)
        return tuple(strategy.reduce("SUM", v, axis=None) for v in out)

    return step


def _evaluate(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Validation loss and accuracy, computed locally (every worker has the same weights)."""
    probs = np.concatenate([np.asarray(model(x[i : i + VAL_BATCH].astype(np.float32), training=False))
                            for i in range(0, len(x), VAL_BATCH)])  # fmt: skip
    picked = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return float(-np.log(picked).mean()), float((probs.argmax(1) == y).mean())


def fit_multi_worker(
    model: Any, train_ds: Any, val: tuple[np.ndarray, np.ndarray], epochs: int, callbacks: list[Any]
) -> dict[str, list[float]]:
    """`model.fit(train_ds, validation_data=val, epochs=..., callbacks=...)` under the current
    (multi-worker) strategy; returns the history dict fit() would."""
    import keras
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    dist = strategy.experimental_distribute_dataset(train_ds)
    step = _train_step(model, strategy)
    cbs = keras.callbacks.CallbackList(callbacks, model=model)
    history: dict[str, list[float]] = {}
    model.stop_training = False
    cbs.on_train_begin()
    for epoch in range(epochs):
        cbs.on_epoch_begin(epoch)
        sums = np.zeros(3)
        for batch in dist:
            sums += [float(v) for v in step(batch)]
        val_loss, val_acc = _evaluate(model, *val)
        logs = {"loss": sums[0] / sums[2], "accuracy": sums[1] / sums[2],
                "val_loss": val_loss, "val_accuracy": val_acc}  # fmt: skip
        cbs.on_epoch_end(epoch, logs)
        for k, v in logs.items():
            history.setdefault(k, []).append(v)
        if model.stop_training:
            break
    cbs.on_train_end()
    return history
