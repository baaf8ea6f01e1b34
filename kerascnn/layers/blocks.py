"""The models' building blocks: batch-norm blocks, the lecture's stage parts, the classifier head.

All are registered Keras serializables whose `get_config` returns every
constructor argument, so any model using them round-trips through `.keras`.
"""

import keras
from keras import layers

from kerascnn.config import check_value
from kerascnn.layers.preprocessing import DIGIT_CLASSES

PACKAGE = "kerascnn"
# Batch-norm moving-average momentum. Keras' default, 0.99, needs ~500 steps
# before the inference statistics forget their initial values, so a short run
# (one epoch on a subset) scores near chance at inference; 0.9 (PyTorch's
# default) settles in ~50 steps; a full run (thousands of steps) settles either way.
BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedBatchNormalization(layers.BatchNormalization):
    """`BatchNormalization` that runs TensorFlow's fused kernel on TensorFlow.

    Keras 3's TensorFlow backend computes batch norm from separate ops (a
    cast to float32, `tf.nn.moments`, then `tf.nn.batch_normalization`),
    each a pass over the activations, forward and backward
    (keras-team/keras-core#225). TensorFlow's `FusedBatchNormV3` does it in
    one kernel, oneDNN's on this CPU, in bfloat16 too. One `best` member,
    trained on its own, took 57.8 ms per bf16 step (batch 100) with Keras'
    layer and 24.7 ms with this one, less than the 26.2 ms of the same member
    without batch norm, whose convs carry a bias instead. Five members
    together, whose ops overlap, train 1.5x faster (`python tools/bench.py`).

    Same variables and arguments as `keras.layers.BatchNormalization`, and
    the same results up to rounding (`tests/test_layers.py` compares them):
    batch statistics in training, moving averages with `momentum` updated
    from the biased batch variance, moving statistics at inference. Inputs of
    any rank are normalised over every axis but the last. Other backends
    (XLA fuses the ops there), dtypes without a fused kernel (float64),
    `axis` other than the last, a `mask`, `renorm`
    and `synchronized` use Keras' own implementation, as does every instance
    while the class attribute `fused` is False (the benchmark's comparison row).

    Example:

    >>> bn = FusedBatchNormalization()
    >>> tuple(bn(keras.ops.ones((2, 4, 4, 3)), training=True).shape)
    (2, 4, 4, 3)
    """

    fused = True

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # only reached on the TensorFlow backend

        channels = inputs.shape[-1]
        x = tf.reshape(inputs, (1, 1, -1, channels))  # NHWC; normalised over all but C
        scale = self.gamma if self.scale else tf.ones((channels,))
        offset = self.beta if self.center else tf.zeros((channels,))
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, scale, offset, epsilon=self.epsilon, is_training=True
            )
            # The kernel returns the unbiased variance; Keras averages the biased one.
            count = tf.cast(tf.shape(x)[2], variance.dtype)
            variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, scale, offset, self.moving_mean, self.moving_variance, epsilon=self.epsilon, is_training=False
            )
        return keras.ops.cast(tf.reshape(y, tf.shape(inputs)), self.compute_dtype)

    def _fusable(self, inputs, mask):
        return (
            self.fused
            and keras.backend.backend() == "tensorflow"
            and keras.backend.standardize_dtype(inputs.dtype) in ("float32", "bfloat16", "float16")  # its kernels
            and mask is None
            and self.axis in (-1, len(inputs.shape) - 1)
            and not self.renorm
            and not self.synchronized
        )


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConvBNReLU(layers.Layer):
    """Conv2D (no bias: batch norm has one) -> FusedBatchNormalization -> ReLU.

    Example:

    >>> block = ConvBNReLU(8)
    >>> tuple(block(keras.ops.zeros((2, 28, 28, 1))).shape)
    (2, 28, 28, 8)

    Args:
        filters: int, output channels.
        kernel_size: int, square kernel size. Defaults to 3.
        strides: int. Defaults to 1.
        padding: "same" or "valid". Defaults to "same".
    """

    def __init__(self, filters, kernel_size=3, strides=1, padding="same", **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.conv = layers.Conv2D(
            filters, kernel_size, strides=strides, padding=padding, use_bias=False, dtype=self.dtype_policy
        )
        self.bn = FusedBatchNormalization(momentum=BN_MOMENTUM, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        return keras.ops.relu(self.bn(self.conv(inputs), training=training))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class DenseBNReLU(layers.Layer):
    """Dense (no bias) -> FusedBatchNormalization -> ReLU.

    Args:
        units: int, output units.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = layers.Dense(units, use_bias=False, dtype=self.dtype_policy)
        self.bn = FusedBatchNormalization(momentum=BN_MOMENTUM, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.bn.build(self.dense.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        return keras.ops.relu(self.bn(self.dense(inputs), training=training))

    def compute_output_shape(self, input_shape):
        return self.dense.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def conv_block(filters, kernel_size, batchnorm, dtype=None):
    """The lecture's conv stage body: conv+ReLU, or ConvBNReLU with batch norm."""
    if batchnorm:
        return ConvBNReLU(filters, kernel_size, dtype=dtype)
    return layers.Conv2D(filters, kernel_size, padding="same", activation="relu", dtype=dtype)


def dense_block(units, batchnorm, dtype=None):
    if batchnorm:
        return DenseBNReLU(units, dtype=dtype)
    return layers.Dense(units, activation="relu", dtype=dtype)


def pool(dtype=None):
    """2x2 max-pool, stride 2, SAME: 28 -> 14 -> 7 -> 4."""
    return layers.MaxPool2D(2, 2, padding="same", dtype=dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TemperatureSoftmax(layers.Activation):
    """The classifier's softmax, of `logits / temperature`: where a single network keeps its calibration.

    An `Activation("softmax")` (it is one, so whatever reads a model's
    softmax finds it) with one number more. At 1.0, the default, it is the
    plain softmax; `kerascnn.calibration.set_temperature` sets the value
    fitted on validation after training, and `get_config` saves it with the
    model. Dividing the logits by one positive number keeps their order: the
    predicted class never changes.

    Example:

    >>> import numpy as np
    >>> head = TemperatureSoftmax(temperature=2.0)
    >>> np.round(keras.ops.convert_to_numpy(head(np.log(np.array([[0.8, 0.2]], "float32")))).astype(float), 3).tolist()
    [[0.667, 0.333]]

    Args:
        temperature: float > 0. Defaults to 1.0.
    """

    def __init__(self, temperature=1.0, **kwargs):
        kwargs.pop("activation", None)
        super().__init__("softmax", **kwargs)
        check_value(temperature > 0, "temperature", "a number > 0", temperature, error=ValueError)
        self.temperature = float(temperature)

    def call(self, inputs):
        if self.temperature != 1.0:
            inputs = keras.ops.cast(inputs, self.compute_dtype) / self.temperature
        return super().call(inputs)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def classifier_head(num_classes=DIGIT_CLASSES, dtype=None, temperature=1.0):
    """Dense logits then the softmax (`TemperatureSoftmax`), kept in float32 under mixed precision."""
    check_value(isinstance(num_classes, int) and num_classes >= 2, "num_classes", "an integer >= 2", num_classes,
                error=ValueError)
    return [layers.Dense(num_classes, dtype=dtype), TemperatureSoftmax(temperature, dtype="float32")]
