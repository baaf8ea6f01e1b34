"""The shared blocks: the fused batch norm matches Keras' own, value for value."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerascnn.config import ConfigError
from kerascnn.layers import BN_MOMENTUM, FusedBatchNormalization, shift_images, shift_views


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


# RandomAffine: rotation, zoom and shift in one warp.


def test_affine_matrix_moves_zooms_and_turns_pixels_where_it_says():
    from kerascnn.layers import affine_matrix

    image = np.zeros((1, 28, 28, 1), "float32")
    image[0, 10, 12, 0] = 1.0  # row 10, column 12

    def warp(angle=0.0, zoom=1.0, dx=0.0, dy=0.0):
        m = affine_matrix(*[np.array([v], "float32") for v in (angle, zoom, zoom, dx, dy)], 28, 28)
        out = keras.ops.convert_to_numpy(keras.ops.image.affine_transform(image, m, interpolation="nearest"))
        return tuple(int(i) for i in np.argwhere(out[0, :, :, 0] > 0.5)[0])

    assert warp(dx=2, dy=-3) == (7, 14)  # right by 2, up by 3
    assert warp(zoom=2.0) in {(6, 10), (6, 11), (7, 10), (7, 11)}  # twice as far from the centre: (6.5, 10.5)
    rotated = warp(angle=np.pi / 2)  # a quarter turn about the centre keeps the distance to it
    assert abs(np.hypot(rotated[0] - 13.5, rotated[1] - 13.5) - np.hypot(10 - 13.5, 12 - 13.5)) < 1.0
    assert rotated != (10, 12)


def test_random_zoom_stays_inside_the_frame(mnist):
    from kerascnn.layers import RandomAffine

    digits = (mnist.x_test[:500].reshape(-1, 28, 28, 1) / 255.0).astype("float32")
    inside = np.ones((28, 28), bool)
    inside[4:24, 4:24] = False
    digits = digits[digits[:, inside, 0].max(axis=1) == 0]  # those whose ink lies in the centred 20x20 box
    assert len(digits) > 100
    layer = RandomAffine(zoom=0.15, seed=3)
    out = keras.ops.convert_to_numpy(layer(digits, training=True))
    assert np.abs(out - digits).max() > 0.5  # the zoom happened
    border = np.ones((28, 28), bool)
    border[2:-2, 2:-2] = False
    assert out[:, border, 0].max() < 0.05  # at most 1.15 x 20 = 23 px: the 2-px border stays black
    ratio = out.sum(axis=(1, 2, 3)) / digits.sum(axis=(1, 2, 3))  # ink scales with the area, 0.85**2 .. 1.15**2
    assert 0.65 < ratio.min() and ratio.max() < 1.4 and ratio.std() > 0.02


def test_random_affine_is_off_at_inference_and_round_trips_in_a_saved_model(tmp_path):
    from kerascnn.models import create_model

    model = create_model("best", members=1, filters=4, dense_units=8, zoom=0.1)
    x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    member = loaded.members[0]
    assert [type(layer).__name__ for layer in member.augment] == ["RandomAffine"]
    assert member.augment[0].zoom == 0.1


@pytest.mark.parametrize("kwargs,message", [
    (dict(zoom=1.0), "`zoom` must be a number in"),
    (dict(rotation=-1), "`rotation` must be a number in"),
    (dict(shift=-2), "`shift` must be a number >= 0. Received: shift=-2"),
])
def test_random_affine_refuses_bad_amounts(kwargs, message):
    from kerascnn.layers import RandomAffine

    with pytest.raises(ValueError, match=message):
        RandomAffine(**kwargs)


def test_shift_views_are_none_then_the_four_directions():
    assert shift_views(0) == [(0, 0)]
    assert shift_views(2) == [(0, 0), (2, 0), (-2, 0), (0, 2), (0, -2)]
    with pytest.raises(ConfigError, match=r"`tta` must be an integer number of pixels >= 0. Received: tta=-1"):
        shift_views(-1)


def test_shift_images_moves_the_digit_and_fills_with_background():
    image = np.zeros((1, 5, 5, 1), "float32")
    image[0, 2, 2, 0] = 1.0
    for dy, dx in shift_views(2):
        moved = keras.ops.convert_to_numpy(shift_images(image, dy, dx))
        assert moved.shape == image.shape and moved.sum() == 1.0  # nothing smeared, the rest is 0
        assert moved[0, 2 + dy, 2 + dx, 0] == 1.0
    with pytest.raises(ConfigError, match="less than the image's side"):
        shift_images(image, 5, 0)
    assert shift_images(image, 0, 0) is image
    # In a model that takes any size: the same shifts, sizes known only at run time.
    inputs = keras.Input((None, None, 1))
    any_size = keras.Model(inputs, shift_images(inputs, -2, 1))
    np.testing.assert_array_equal(any_size.predict(image, verbose=0),
                                  keras.ops.convert_to_numpy(shift_images(image, -2, 1)))


# RandomElastic: Simard's elastic distortion, a field per image and per direction.

def test_elastic_bends_each_image_by_its_own_field_in_x_and_y_independently():
    from kerascnn.layers import RandomElastic

    # Bilinear reading of a linear ramp returns the position read: with the column index in channel 0 and the
    # row index in channel 1, the output is (x + dx, y + dy), the field itself.
    rows, cols = np.meshgrid(np.arange(28.0), np.arange(28.0), indexing="ij")
    ramps = np.repeat(np.stack([cols, rows], axis=-1)[None], 8, axis=0).astype("float32")
    out = keras.ops.convert_to_numpy(RandomElastic(alpha=34.0, sigma=4.0, seed=7)(ramps, training=True))
    inner = (slice(None), slice(6, 22), slice(6, 22))  # away from the border, where reads fall outside
    dx, dy = (out[..., 0] - cols)[inner], (out[..., 1] - rows)[inner]
    assert 0.3 < dx.std() < 4 and 0.3 < dy.std() < 4  # Simard's strength: a pixel or two
    # Two fields, not one: Keras 3.10-3.15's RandomElasticTransform moves every pixel along the diagonal (dx == dy).
    assert abs(np.corrcoef(dx.ravel(), dy.ravel())[0, 1]) < 0.5
    # Each image of the batch has its own field (Keras' layer gives a fit() batch image 0's for all).
    per_image = np.corrcoef(dx.reshape(8, -1))[np.triu_indices(8, 1)]
    assert np.abs(per_image).max() < 0.9
    # And the field is smooth: neighbouring pixels move together.
    assert np.corrcoef(dx[:, :, :-1].ravel(), dx[:, :, 1:].ravel())[0, 1] > 0.8


def test_elastic_is_seeded_off_at_inference_and_keeps_the_digit(mnist):
    from kerascnn.layers import RandomElastic

    digits = (mnist.x_test[:64].reshape(-1, 28, 28, 1) / 255.0).astype("float32")
    assert np.array_equal(keras.ops.convert_to_numpy(RandomElastic(seed=1)(digits)), digits)  # inference: as is
    first = keras.ops.convert_to_numpy(RandomElastic(seed=1)(digits, training=True))
    again = keras.ops.convert_to_numpy(RandomElastic(seed=1)(digits, training=True))
    other = keras.ops.convert_to_numpy(RandomElastic(seed=2)(digits, training=True))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 0.01
    # Simard's strength bends strokes by a pixel or two: most ink stays, the picture is not scrambled.
    ink = first.sum(axis=(1, 2, 3)) / digits.sum(axis=(1, 2, 3))
    assert 0.5 < ink.min() and ink.max() < 2.0 and 0.9 < ink.mean() < 1.1  # a local stretch, on average none
    overlap = (first * digits).sum(axis=(1, 2, 3)) / np.sqrt((first**2).sum(axis=(1, 2, 3)) * (digits**2).sum(axis=(1, 2, 3)))
    assert 0.5 < overlap.mean() < 0.98


def test_elastic_trains_under_fit_with_batches_of_unknown_size_and_round_trips(tmp_path, mnist):
    from kerascnn.models import create_model

    model = create_model("best", members=1, filters=4, dense_units=8, elastic=34.0)
    member = model.members[0]
    assert [type(layer).__name__ for layer in member.augment][-1] == "RandomElastic"
    model.compile("adam", "sparse_categorical_crossentropy")
    x = (mnist.x_train[:250].reshape(-1, 28, 28, 1) / 255.0).astype("float32")
    history = model.fit(x, mnist.y_train[:250], batch_size=100, epochs=1, verbose=0)  # 100, 100, then 50
    assert np.isfinite(history.history["loss"][0])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.members[0].augment[-1].alpha == 34.0
    np.testing.assert_allclose(loaded.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0), atol=1e-6)


def test_elastic_refuses_bad_amounts():
    from kerascnn.layers import RandomElastic

    with pytest.raises(ValueError, match="`sigma` must be a number > 0. Received: sigma=0"):
        RandomElastic(sigma=0)
    with pytest.raises(ValueError, match="`alpha` must be a number >= 0. Received: alpha=-1"):
        RandomElastic(alpha=-1)
