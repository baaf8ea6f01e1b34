"""The lecture's convolution/pooling toy values, checked against Keras layers."""

import keras
import numpy as np
import pytest

from kerascnn.basics import output_shape, output_size, same_padding

IMAGE = np.arange(1, 10, dtype="float32").reshape(1, 3, 3, 1)  # the lecture's 3x3 image of 1..9


def conv(image, weight, padding, strides=1):
    layer = keras.layers.Conv2D(weight.shape[-1], weight.shape[:2], strides, padding=padding, use_bias=False)
    layer.build(image.shape)
    layer.set_weights([weight])
    return keras.ops.convert_to_numpy(layer(image))


@pytest.mark.parametrize("padding,expected", [
    ("valid", [[12, 16], [24, 28]]),
    ("same", [[12, 16, 9], [24, 28, 15], [15, 17, 9]]),
])
def test_2x2_ones_filter_on_3x3_image(padding, expected):
    out = conv(IMAGE, np.ones((2, 2, 1, 1), "float32"), padding)
    np.testing.assert_array_equal(out[0, :, :, 0], expected)
    assert out.shape[1] == output_size(3, 2, 1, padding)


def test_three_filters_scale_the_map():
    weight = np.stack([np.ones((2, 2, 1)), 10 * np.ones((2, 2, 1)), -np.ones((2, 2, 1))], axis=-1).astype("float32")
    out = conv(IMAGE, weight, "same")[0]
    base = np.array([[12, 16, 9], [24, 28, 15], [15, 17, 9]])
    np.testing.assert_array_equal(out[..., 0], base)
    np.testing.assert_array_equal(out[..., 1], 10 * base)
    np.testing.assert_array_equal(out[..., 2], -base)


@pytest.mark.parametrize("padding,expected", [("valid", [[4]]), ("same", [[4, 3], [2, 1]])])
def test_max_pool_2x2_stride_1(padding, expected):
    image = np.array([[4, 3], [2, 1]], "float32").reshape(1, 2, 2, 1)
    out = keras.layers.MaxPool2D(2, 1, padding=padding)(image)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out)[0, :, :, 0], expected)


def test_mnist_digit_through_conv_and_pool(mnist):
    digit = mnist.x_train[:1].astype("float32") / 255.0
    feature = keras.layers.Conv2D(5, 3, strides=2, padding="same")(digit)
    pooled = keras.layers.MaxPool2D(2, 2, padding="same")(feature)
    assert tuple(feature.shape) == output_shape(digit.shape, 5, 3, 2, "same") == (1, 14, 14, 5)
    assert tuple(pooled.shape) == output_shape(feature.shape, None, 2, 2, "same") == (1, 7, 7, 5)


@pytest.mark.parametrize("size", [1, 2, 5, 7, 28])
@pytest.mark.parametrize("kernel", [1, 2, 3, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_output_size_matches_keras(size, kernel, stride, padding):
    if padding == "valid" and kernel > size:
        with pytest.raises(ValueError, match="kernel <= size"):
            output_size(size, kernel, stride, padding)
        return
    layer = keras.layers.Conv2D(1, kernel, stride, padding=padding)
    shape = layer.compute_output_shape((1, size, size, 1))
    assert shape[1] == output_size(size, kernel, stride, padding)


@pytest.mark.parametrize("size,kernel,stride", [(3, 2, 1), (28, 3, 2), (7, 2, 2), (5, 4, 1), (6, 3, 2)])
def test_same_padding_split_matches_explicit_zero_padding(size, kernel, stride):
    """Conv SAME equals conv VALID on the input padded floor(total/2) before, the rest after."""
    before, after = same_padding(size, kernel, stride)
    x = np.random.default_rng(0).normal(size=(1, size, size, 1)).astype("float32")
    w = np.random.default_rng(1).normal(size=(kernel, kernel, 1, 1)).astype("float32")
    same = conv(x, w, "same", stride)
    padded = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
    np.testing.assert_allclose(conv(padded, w, "valid", stride), same, rtol=1e-5, atol=1e-5)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="stride"):
        output_size(28, 3, 0)
    with pytest.raises(ValueError, match="padding"):
        output_size(28, 3, 1, "full")
