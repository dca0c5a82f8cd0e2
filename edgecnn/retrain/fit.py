"""Fine-tuning the old Keras source (host side: TensorFlow, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.data import Dataset
from edgecnn.errors import BadInput
from edgecnn.manifest import Manifest
from edgecnn.train import TrainConfig, fit_more

AUGMENT_KEYS = ("flip", "rotation", "shift", "zoom", "batch_size")


def with_more_classes(model: Any, classes: int) -> Any:
    """The same network with a wider classifier: the old classes keep their weights, the new
    ones start from Keras' initializer (`--new-classes`: the head is retrained with them)."""
    import keras

    last = model.layers[-1]
    old = int(model.outputs[0].shape[-1])
    if classes == old:
        return model
    if not isinstance(last, keras.layers.Dense):
        raise BadInput(
            f"--new-classes needs a model whose last layer is a Dense classifier, not {type(last).__name__}"
        )
    head = keras.layers.Dense(classes, activation=last.activation, name=last.name)
    out = head(model.layers[-2].output)
    wider = keras.Model(model.inputs, out, name=model.name)
    w_old, b_old = last.get_weights()
    w, b = head.get_weights()
    w[:, :old], b[:old] = w_old, b_old
    b[old:] = float(np.min(b_old))  # new classes start no likelier than the least likely old one
    head.set_weights([w, b])
    return wider


def train_config(manifest: Manifest, epochs: int, lr: float, seed: int) -> TrainConfig:
    """The old run's batch size and augmentation, the retrain's epochs and learning rate."""
    t = manifest.training
    cfg = TrainConfig(arch=manifest.arch or "cnn_small", epochs=epochs, learning_rate=lr, seed=seed,
                      early_stopping=0, verbose=0)  # fmt: skip
    for key in AUGMENT_KEYS:
        if t.get(key) is not None:
            setattr(cfg, key, type(getattr(cfg, key))(t[key]))
    return cfg


def fine_tune(keras_path: Path, data: Dataset, cfg: TrainConfig) -> tuple[Any, list[dict]]:
    """(fine-tuned model, history rows), deterministic for a seed."""
    from edgecnn.quiet import quiet_tensorflow

    quiet_tensorflow()
    import keras
    import tensorflow as tf

    from edgecnn.zoo.io import load_keras_model

    keras.utils.set_random_seed(cfg.seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # noqa: BLE001 - older TF builds; seeds still apply
        pass
    model = with_more_classes(load_keras_model(keras_path), data.num_classes)
    rows = fit_more(model, cfg, data, cfg.epochs)
    return model, rows


def keras_scorer(keras_path: Path, labels: list[str]) -> Any:
    """A training run has no artifact: its float Keras model answers for it."""
    from edgecnn.zoo.io import load_keras_model

    model = load_keras_model(keras_path)

    def score(x: np.ndarray) -> list[str]:
        if len(x) == 0:
            return []
        probs = model.predict(x.astype(np.float32), batch_size=256, verbose=0)
        return [labels[i] for i in probs.argmax(axis=1)]

    return score
