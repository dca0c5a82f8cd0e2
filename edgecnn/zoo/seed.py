"""The seed CNNs: small from-scratch classifiers for digits, MNIST and CIFAR-10."""

from __future__ import annotations

from typing import Any


def _reg(l2: float) -> Any:
    import keras

    return keras.regularizers.L2(l2) if l2 > 0 else None


def build_seed(
    arch: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    dropout: float = 0.0,
    l2: float = 0.0,
    dense_units: int = 128,
    **_: Any,
) -> Any:
    """Conv/pool stacks with a Rescaling(1/255) front, as named in the zoo."""
    import keras
    from keras import layers

    blocks = {
        "cnn_mnist": ([32, 64], "valid"),
        "cnn_cifar10": ([32, 64, 128], "valid"),
        "cnn_small": ([16, 32], "same"),
    }[arch]
    filters, padding = blocks
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    for i, f in enumerate(filters, start=1):
        x = layers.Conv2D(
            f, 3, padding=padding, activation="relu", kernel_regularizer=_reg(l2), name=f"conv{i}"
        )(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", kernel_regularizer=_reg(l2), name="fc1")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=arch)
