"""Serializable preprocessing layers baked into zoo models.

Importing this module registers them with Keras, so a saved `.keras` model
that contains them reloads with `keras.saving.load_model` (`edgecnn.zoo`
imports it; `edgecnn.zoo.io.load_keras_model` is the safe entry point).
"""

from __future__ import annotations

from typing import Any

from edgecnn.quiet import quiet_tensorflow

quiet_tensorflow()  # keras imports TensorFlow on the next line

import keras  # noqa: E402
from keras import ops  # noqa: E402

# ImageNet channel means in BGR order, as keras.applications.imagenet_utils ("caffe" mode).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="edgecnn")
class CaffePreprocess(keras.layers.Layer):
    """RGB 0-255 pixels -> BGR minus the ImageNet mean (VGG16's `preprocess_input`).

    The channel swap is three slices and a concatenation rather than a
    reverse op, because slices and concatenation map to every converter and
    to the Edge TPU, while REVERSE_V2 does not.
    """

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        bgr = ops.concatenate([x[..., 2:3], x[..., 1:2], x[..., 0:1]], axis=-1)
        mean = ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        return bgr - mean

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape
