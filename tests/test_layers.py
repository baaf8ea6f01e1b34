"""The shared blocks: the fused batch norm matches Keras' own, value for value."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerascnn.layers import BN_MOMENTUM, FusedBatchNormalization


def twin_layers(shape, seed=0, **kwargs):
    """Keras' BatchNormalization and ours, built on `shape` with the same non-trivial weights."""
    rng = np.random.default_rng(seed)
    keras_bn = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, **kwargs)
    fused_bn = FusedBatchNormalization(momentum=BN_MOMENTUM, **kwargs)
    for layer in (keras_bn, fused_bn):
        layer.build(shape)
    channels = shape[-1]
    values = {
        "gamma": rng.uniform(0.5, 1.5, channels),
        "beta": rng.normal(0, 0.5, channels),
        "moving_mean": rng.normal(0, 0.5, channels),
        "moving_variance": rng.uniform(0.5, 2.0, channels),
    }
    for layer in (keras_bn, fused_bn):
        layer.set_weights([values[w.name].astype("float32") for w in layer.weights])
    x = rng.normal(1.0, 2.0, shape).astype("float32")
    return keras_bn, fused_bn, x


def forward_and_gradients(layer, x):
    """The training output and the gradients of a random projection of it.

    A random weight per element: normalised activations sum to zero over the
    batch, so a per-channel weighting would leave the input and gamma with
    zero gradients, the same for any two layers.
    """
    x = tf.constant(x)
    weights = tf.constant(np.random.default_rng(7).normal(size=x.shape), "float32")
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, "float32") * weights)
    grads = tape.gradient(loss, [x, *layer.trainable_variables])
    return y, grads


@pytest.mark.parametrize("shape", [(8, 5, 5, 4), (16, 6), (4, 3, 7)], ids=["conv", "dense", "rank3"])
def test_fused_batch_norm_trains_like_keras(shape):
    keras_bn, fused_bn, x = twin_layers(shape)
    y_keras, g_keras = forward_and_gradients(keras_bn, x)
    y_fused, g_fused = forward_and_gradients(fused_bn, x)

    np.testing.assert_allclose(y_fused, y_keras, rtol=1e-4, atol=1e-4)
    assert len(g_fused) == len(g_keras) == 3  # the input, gamma, beta
    for got, want in zip(g_fused, g_keras):
        assert got is not None and np.abs(want).max() > 1e-2  # non-trivial, so the comparison means something
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    # The moving statistics moved, and by the same (biased-variance) update.
    assert not np.allclose(fused_bn.moving_mean.numpy(), twin_layers(shape)[1].moving_mean.numpy())
    np.testing.assert_allclose(fused_bn.moving_mean.numpy(), keras_bn.moving_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        fused_bn.moving_variance.numpy(), keras_bn.moving_variance.numpy(), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("shape", [(8, 5, 5, 4), (16, 6)], ids=["conv", "dense"])
def test_fused_batch_norm_infers_with_moving_statistics(shape):
    keras_bn, fused_bn, x = twin_layers(shape, seed=1)
    np.testing.assert_allclose(fused_bn(x, training=False), keras_bn(x, training=False), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused_bn.moving_mean.numpy(), keras_bn.moving_mean.numpy())  # untouched


def test_fused_batch_norm_without_scale_or_center():
    keras_bn, fused_bn, x = twin_layers((8, 3, 3, 2), scale=False, center=False)
    np.testing.assert_allclose(fused_bn(x, training=True), keras_bn(x, training=True), rtol=1e-4, atol=1e-4)


def test_fused_batch_norm_under_bfloat16():
    keras_bn, fused_bn, x = twin_layers((8, 5, 5, 4), dtype="mixed_bfloat16")
    y_fused, y_keras = fused_bn(x, training=True), keras_bn(x, training=True)
    assert y_fused.dtype == y_keras.dtype == tf.bfloat16
    assert fused_bn.moving_mean.dtype == "float32"
    np.testing.assert_allclose(tf.cast(y_fused, "float32"), tf.cast(y_keras, "float32"), rtol=0.02, atol=0.05)


def test_frozen_fused_batch_norm_uses_moving_statistics_in_training():
    keras_bn, fused_bn, x = twin_layers((8, 5, 5, 4), seed=2)
    keras_bn.trainable = fused_bn.trainable = False
    np.testing.assert_allclose(fused_bn(x, training=True), keras_bn(x, training=True), rtol=1e-5, atol=1e-5)


def test_fused_batch_norm_round_trips_through_its_config():
    bn = FusedBatchNormalization(momentum=0.8, epsilon=1e-4)
    restored = keras.layers.deserialize(keras.layers.serialize(bn))
    assert type(restored) is FusedBatchNormalization
    assert restored.get_config() == bn.get_config()


def test_a_compiled_train_step_runs_the_fused_kernel_in_bfloat16():
    """What `fit()` runs: a traced step, under mixed_bfloat16, with FusedBatchNormV3 in its graph."""
    keras_bn, fused_bn, x = twin_layers((8, 5, 5, 4), seed=3, dtype="mixed_bfloat16")

    def step(layer):
        @tf.function
        def train_step(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.cast(layer(x, training=True), "float32") ** 2)
            return tape.gradient(loss, layer.trainable_variables)

        graph_ops = {op.type for op in train_step.get_concrete_function(tf.constant(x)).graph.get_operations()}
        return train_step(tf.constant(x)), graph_ops

    (g_fused, fused_ops), (g_keras, keras_ops) = step(fused_bn), step(keras_bn)
    assert "FusedBatchNormV3" in fused_ops and "FusedBatchNormV3" not in keras_ops
    assert "FusedBatchNormGradV3" in fused_ops  # the backward pass is fused too
    for got, want in zip(g_fused, g_keras):
        np.testing.assert_allclose(got, want, rtol=0.05, atol=0.5)
    np.testing.assert_allclose(fused_bn.moving_mean.numpy(), keras_bn.moving_mean.numpy(), rtol=0.02, atol=0.02)
    np.testing.assert_allclose(
        fused_bn.moving_variance.numpy(), keras_bn.moving_variance.numpy(), rtol=0.02, atol=0.02
    )


def test_float64_uses_keras_implementation():
    keras_bn, fused_bn, x = twin_layers((8, 3, 3, 2), dtype="float64")  # no fused kernel for float64
    np.testing.assert_allclose(fused_bn(x, training=True), keras_bn(x, training=True), rtol=1e-6, atol=1e-6)
