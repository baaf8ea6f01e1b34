"""Cross-entropy on integer labels, with label smoothing.

Keras' `SparseCategoricalCrossentropy` takes no `label_smoothing` (only the
one-hot `CategoricalCrossentropy` does). This loss one-hot encodes the
integer labels inside the loss and hands them to Keras' categorical
cross-entropy, so the data pipeline keeps its int labels.

Example:

>>> import numpy as np
>>> loss = SparseCrossentropy(label_smoothing=0.1)
>>> probs = np.array([[0.9, 0.05, 0.05]], "float32")
>>> plain = keras.losses.SparseCategoricalCrossentropy()(np.array([0]), probs)
>>> bool(loss(np.array([0]), probs) > plain)  # smoothing also charges the 5% classes
True
"""

import keras

from kerascnn.layers import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class SparseCrossentropy(keras.losses.Loss):
    """Cross-entropy between integer labels and predicted probabilities.

    Args:
        label_smoothing: float in [0, 1): the target is `1 - label_smoothing`
            on the true class plus `label_smoothing / classes` everywhere.
            0 gives `SparseCategoricalCrossentropy`.
    """

    def __init__(self, label_smoothing=0.0, name="sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        classes = y_pred.shape[-1]
        labels = keras.ops.one_hot(keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,)), classes)
        return keras.losses.categorical_crossentropy(labels, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
