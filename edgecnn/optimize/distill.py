"""Knowledge distillation for fine-tuning a pruned model (Hinton et al., 2015).

The unpruned model is the teacher: its softened outputs on the training images are extra
targets next to the labels. They carry how the teacher ranks the wrong classes too, which a
pruned student recovers from in fewer epochs than from labels alone. The teacher is run once
up front (its probabilities are stored next to the labels), so an epoch costs no more than
plain fine-tuning. Targets are packed as [one-hot label | teacher probabilities] so that
Keras' ordinary fit/validation loop carries them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = 1e-7


def teacher_probabilities(teacher: Any, x: np.ndarray, from_logits: bool) -> np.ndarray:
    out = np.asarray(teacher.predict(x.astype(np.float32), batch_size=256, verbose=0))
    if from_logits:
        out = np.exp(out - out.max(axis=1, keepdims=True))
        out /= out.sum(axis=1, keepdims=True)
    return out.astype(np.float32)


def packed_targets(y: np.ndarray, soft: np.ndarray) -> np.ndarray:
    classes = soft.shape[1]
    return np.concatenate([np.eye(classes, dtype=np.float32)[y.astype(int)], soft], axis=1)


def _soften(log_p: Any, temperature: float) -> Any:
    import keras

    return keras.ops.log_softmax(log_p / temperature, axis=-1)


def distillation_loss(classes: int, alpha: float, temperature: float, from_logits: bool) -> Any:
    """(1 - alpha) * cross-entropy with the labels + alpha * T^2 * KL(teacher_T || student_T)."""
    from keras import ops

    def loss(y_true: Any, y_pred: Any) -> Any:
        hard, soft = y_true[:, :classes], y_true[:, classes:]
        if from_logits:
            log_p = ops.log_softmax(y_pred, axis=-1)
        else:
            log_p = ops.log(ops.clip(y_pred, EPS, 1.0))
        ce = -ops.sum(hard * log_p, axis=-1)
        log_q_t = _soften(ops.log(ops.clip(soft, EPS, 1.0)), temperature)
        log_p_t = _soften(log_p, temperature)
        kl = ops.sum(ops.exp(log_q_t) * (log_q_t - log_p_t), axis=-1)
        return (1.0 - alpha) * ce + alpha * temperature**2 * kl

    loss.__name__ = "distillation"
    return loss


def label_accuracy(classes: int) -> Any:
    """Top-1 against the label half of the packed targets: logged as (val_)accuracy."""
    from keras import ops

    def accuracy(y_true: Any, y_pred: Any) -> Any:
        hit = ops.argmax(y_true[:, :classes], axis=-1) == ops.argmax(y_pred, axis=-1)
        return ops.cast(hit, "float32")

    return accuracy


def compile_for_distillation(
    model: Any, learning_rate: float, classes: int, alpha: float, temperature: float,
    from_logits: bool,
) -> None:  # fmt: skip
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=distillation_loss(classes, alpha, temperature, from_logits),
        metrics=[label_accuracy(classes)],
    )
