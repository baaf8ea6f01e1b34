"""Building blocks shared by the models: BN blocks, augmentation, the head.

All are registered Keras serializables whose `get_config` returns every
constructor argument, so any model using them round-trips through `.keras`.
"""

import math

import keras
from keras import layers

from kerascnn import basics, compat
from kerascnn.config import check_value

PACKAGE = "kerascnn"
# Batch-norm moving-average momentum. Keras' default, 0.99, needs ~500 steps
# before the inference statistics forget their initial values, so a short run
# (one epoch on a subset) scores near chance at inference; 0.9 (PyTorch's
# default) settles in ~50 steps; a full run (thousands of steps) settles either way.
BN_MOMENTUM = 0.9
# The default input and classes: MNIST's. A model knows no dataset; these are only its defaults.
DIGIT_SHAPE = (28, 28, 1)
DIGIT_CLASSES = 10


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
    without batch norm, whose convs carry a bias instead. The five members
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


def affine_matrix(angle, zoom_x, zoom_y, shift_x, shift_y, height, width):
    """Rows for `keras.ops.image.affine_transform`: rotate, zoom, shift about the centre.

    The transform maps each output pixel back to the input point it is read
    from: `input = centre + R(-angle) diag(1/zoom) (output - centre - shift)`,
    with the centre at ((width - 1) / 2, (height - 1) / 2) as in Keras'
    own image layers. A zoom above 1 enlarges the picture, a positive shift
    moves it right and down; the angle is in radians.

    Example:

    >>> import numpy as np
    >>> m = affine_matrix(*np.array([[0.0], [1.0], [1.0], [2.0], [0.0]]), 28, 28)
    >>> (np.asarray(m).round(3) + 0.0).tolist()  # a pure shift of 2 px to the right
    [[1.0, 0.0, -2.0, 0.0, 1.0, 0.0, 0.0, 0.0]]

    Args:
        angle, zoom_x, zoom_y, shift_x, shift_y: tensors of shape (batch,);
            shifts in pixels.
        height, width: int, the image size.

    Returns:
        A (batch, 8) float32 tensor.
    """
    ops = keras.ops
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    cos, sin = ops.cos(angle), ops.sin(angle)
    a0, a1 = cos / zoom_x, sin / zoom_y
    b0, b1 = -sin / zoom_x, cos / zoom_y
    ux, uy = cx + shift_x, cy + shift_y
    a2 = cx - a0 * ux - a1 * uy
    b2 = cy - b0 * ux - b1 * uy
    zeros = ops.zeros_like(angle)
    return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomAffine(layers.Layer):
    """Random rotation, zoom and shift in one warp, ImageDataGenerator-style.

    Keras has a layer per transform (`RandomRotation`, `RandomZoom`,
    `RandomTranslation`), each resampling the whole batch once. This layer
    draws all three per image and composes them into one affine matrix, so
    the image is resampled once, however many transforms are on: zoom comes
    at no extra cost, and each transform's blur is paid once, not three
    times. Like Keras' layers it acts in training only and fills with
    `fill_value` (0: MNIST's black background).

    Example:

    >>> aug = RandomAffine(rotation=10, zoom=0.1, shift=2.8)
    >>> x = keras.ops.ones((2, 28, 28, 1))
    >>> bool(keras.ops.all(aug(x) == x))  # inference: unchanged
    True
    >>> tuple(aug(x, training=True).shape)
    (2, 28, 28, 1)

    Args:
        rotation: float, the largest rotation either way, in degrees.
        zoom: float, the largest zoom either way as a fraction: each axis is
            scaled by a factor drawn from [1 - zoom, 1 + zoom].
        shift: float, the largest shift either way, in pixels, per axis.
        fill_value: float, the value of pixels that come from outside.
        seed: int or None, for the random draws.
    """

    def __init__(self, rotation=0.0, zoom=0.0, shift=0.0, fill_value=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        for name, value, limit in (("rotation", rotation, 180.0), ("zoom", zoom, 1.0), ("shift", shift, None)):
            ok = value >= 0 and (limit is None or value < limit)
            check_value(ok, name, f"a number in [0, {limit})" if limit else "a number >= 0", value, error=ValueError)
        self.rotation, self.zoom, self.shift = float(rotation), float(zoom), float(shift)
        self.fill_value, self.seed = float(fill_value), seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # TensorFlow's image-transform op has no XLA kernel; JAX's path compiles.
        self.supports_jit = keras.backend.backend() != "tensorflow"

    def call(self, inputs, training=None):
        if not training or not (self.rotation or self.zoom or self.shift):
            return inputs
        batch = keras.ops.shape(inputs)[0]
        height, width = inputs.shape[1], inputs.shape[2]

        def draw(limit):
            return keras.random.uniform((batch,), -limit, limit, seed=self.seed_generator)

        angle = draw(self.rotation * math.pi / 180.0)
        zoom_x, zoom_y = 1.0 + draw(self.zoom), 1.0 + draw(self.zoom)
        shift_x, shift_y = draw(self.shift), draw(self.shift)
        matrix = affine_matrix(angle, zoom_x, zoom_y, shift_x, shift_y, height, width)
        images = keras.ops.cast(inputs, "float32")  # the warp's kernels are float32
        out = keras.ops.image.affine_transform(
            images, matrix, interpolation="bilinear", fill_mode="constant", fill_value=self.fill_value,
            data_format="channels_last",
        )
        return keras.ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "rotation": self.rotation,
            "zoom": self.zoom,
            "shift": self.shift,
            "fill_value": self.fill_value,
            "seed": self.seed,
        }


def augmentation(rotation=15.0, shift=2.0, zoom=0.0, size=DIGIT_SHAPE[0], dtype=None):
    """ImageDataGenerator-style augmentation as Keras layers inside the model.

    Random rotation up to `rotation` degrees either way and shift up to
    `shift` pixels in each direction, filling with 0 (black, MNIST's
    background): Keras' `RandomRotation` and `RandomTranslation`. With a
    `zoom` (a fraction), one `RandomAffine` warp does all three instead,
    so the zoom costs no extra resampling. The layers run in training only:
    at inference images pass through unchanged. Inside the model they run
    in the compiled train step, per batch, with no Python in the input pipeline.

    Args:
        size: int, the image's side in pixels (the shift is a share of it).
        dtype: the layers' dtype policy. Defaults to None: the global
            policy. A model that makes them in `__init__` passes its own
            (see `kerascnn.models.lecture.LectureCNN`).

    Returns:
        A list of layers (empty when all amounts are 0).
    """
    if zoom:
        return [RandomAffine(rotation=rotation, zoom=zoom, shift=shift, dtype=dtype)]
    out = []
    if rotation:
        out.append(layers.RandomRotation(rotation / 360.0, fill_mode="constant", fill_value=0.0, dtype=dtype))
    if shift:
        out.append(
            layers.RandomTranslation(shift / size, shift / size, fill_mode="constant", fill_value=0.0, dtype=dtype)
        )
    return out


def shift_images(images, dy, dx):
    """Images moved `dy` pixels down and `dx` right (negative: up, left), filled with 0 like the augmentation.

    The views of test-time augmentation (`shift_views`). Works on any backend's
    tensors and on NumPy arrays, channels last, of known or unknown size; no
    shift returns `images` itself.

    Example:

    >>> import numpy as np
    >>> x = np.arange(9, dtype="float32").reshape(1, 3, 3, 1)
    >>> keras.ops.convert_to_numpy(shift_images(x, 1, -1))[0, :, :, 0].tolist()
    [[0.0, 0.0, 0.0], [1.0, 2.0, 0.0], [4.0, 5.0, 0.0]]
    """
    if not (dy or dx):
        return images
    height, width = images.shape[1], images.shape[2]
    fits = (height is None or abs(dy) < height) and (width is None or abs(dx) < width)
    check_value(fits, "shift", f"less than the image's side ({height}x{width})", (dy, dx))
    padded = keras.ops.pad(images, [[0, 0], [abs(dy), abs(dy)], [abs(dx), abs(dx)], [0, 0]])
    # Keep the window the image came from, moved: crop |d| - d before and |d| + d after, on each axis.
    return padded[:, abs(dy) - dy : -(abs(dy) + dy) or None, abs(dx) - dx : -(abs(dx) + dx) or None, :]


def shift_views(pixels):
    """The (dy, dx) shifts that test-time augmentation averages over: none, and `pixels` up, down, left, right."""
    check_value(isinstance(pixels, int) and pixels >= 0, "tta", "an integer number of pixels >= 0", pixels)
    if not pixels:
        return [(0, 0)]
    return [(0, 0), (pixels, 0), (-pixels, 0), (0, pixels), (0, -pixels)]


def allow_jit(model):
    """Lets JAX compile a model that holds the augmentation layers.

    Keras marks `RandomRotation` and `RandomTranslation` `supports_jit =
    False` because TensorFlow's image-transform op has no XLA kernel. Under
    the JAX backend that flag makes `fit()` drop `jit_compile` for the whole
    model and run every train step op by op: `best` trained at 310
    model-images/s on this CPU that way. Their JAX path (`keras.ops.image`,
    seeds held as variables) compiles fine, so on JAX the flag is cleared
    (Keras itself dropped the same flag from `RandomFlip` once it was found
    jittable: keras-team/keras-core#665).
    Called by `assemble.compile_model`, so it covers loaded models too.
    Under TensorFlow the flag stays: there it guards a real XLA gap.
    """
    if keras.backend.backend() == "jax":
        for layer in compat.flatten_layers(model):
            if isinstance(layer, (layers.RandomRotation, layers.RandomTranslation)):
                compat.mark_jittable(layer)
    return model


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


def classifier_head(num_classes=DIGIT_CLASSES, dtype=None):
    """Dense logits then softmax kept in float32 under mixed precision."""
    check_value(isinstance(num_classes, int) and num_classes >= 2, "num_classes", "an integer >= 2", num_classes,
                error=ValueError)
    return [layers.Dense(num_classes, dtype=dtype), layers.Activation("softmax", dtype="float32")]


def pixel_input(input_shape=DIGIT_SHAPE, image_size=None, rescale=None):
    """The model's input and the preprocessing layers that make raw pixels its own business.

    With the defaults (MNIST's models) the model takes float32 images of
    `input_shape` already scaled to [0, 1], as the input pipeline makes
    them, and there are no preprocessing layers: every MNIST model, saved
    file and number stays as it was. With `image_size` the model takes
    pictures of any height and width (`input_shape`'s are ignored) and a
    `keras.layers.Resizing` (bilinear, as `image_dataset_from_directory`)
    brings them to `image_size`; with `rescale` a `keras.layers.Rescaling`
    multiplies the pixels (1/255: raw 0..255 values to [0, 1]). Both run
    in float32 under any precision policy, so a saved or exported model
    takes raw pixels and needs nothing beside it.

    Example:

    >>> shape, stage = pixel_input((32, 32, 3), image_size=(32, 32), rescale=1 / 255)
    >>> shape, [type(layer).__name__ for layer in stage]
    ((None, None, 3), ['Resizing', 'Rescaling'])

    Args:
        input_shape: tuple (height, width, channels). Defaults to (28, 28, 1).
        image_size: tuple (height, width) or None, the size the model works at.
        rescale: float or None, the pixels' multiplier.

    Returns:
        (the `keras.Input` shape, a list of layers).
    """
    stage = []
    shape = tuple(input_shape)
    if image_size is not None:
        shape = (None, None, shape[-1])
        stage.append(layers.Resizing(*image_size, interpolation="bilinear", dtype="float32"))
    if rescale is not None:
        stage.append(layers.Rescaling(rescale, dtype="float32"))
    return shape, stage


def working_size(input_shape=DIGIT_SHAPE, image_size=None):
    """(height, width) the convolutions see: `image_size`, or else `input_shape`'s."""
    return tuple(image_size) if image_size is not None else tuple(input_shape[:2])


def check_stages(input_shape, image_size, stages, window=2, error=ValueError):
    """The feature-map sizes through `stages` 2x2 SAME poolings; an error if one gets below `window`.

    The lecture's arithmetic (`kerascnn.basics.output_size`): each pooling
    halves the side, rounding up (28 -> 14 -> 7 -> 4). A pooling fed a map
    smaller than its window has nothing to pool, so the smallest side that
    passes three stages is 5 (5 -> 3 -> 2 -> 1).

    >>> check_stages((28, 28, 1), None, 3)
    [(28, 28), (14, 14), (7, 7), (4, 4)]
    >>> check_stages((4, 4, 1), None, 3)
    Traceback (most recent call last):
    ...
    ValueError: `input_shape` is too small for 3 pooling stages: the feature maps would be 4x4 -> 2x2 -> 1x1, and a 2x2 pooling needs a map of at least 2x2. Use images of at least 5x5 (--image-size). Received: input_shape=(4, 4, 1)
    """
    check_value(len(tuple(input_shape)) == 3, "input_shape", "(height, width, channels)", input_shape, error=error)
    sizes = [working_size(input_shape, image_size)]
    for _ in range(stages):
        if min(sizes[-1]) < window:
            maps = " -> ".join(f"{h}x{w}" for h, w in sizes)
            name, value = ("image_size", tuple(image_size)) if image_size is not None else ("input_shape", tuple(input_shape))
            smallest = 2 ** (stages - 1) + 1
            raise error(
                f"`{name}` is too small for {stages} pooling stages: the feature maps would be {maps}, and a "
                f"{window}x{window} pooling needs a map of at least {window}x{window}. Use images of at least "
                f"{smallest}x{smallest} (--image-size). Received: {name}={value!r}"
            )
        sizes.append(tuple(basics.output_size(n, window, window, "same") for n in sizes[-1]))
    return sizes


def model_input_shape(model):
    """The (height, width, channels) a built model takes; None for a side of any size.

    >>> from kerascnn.models import create_model
    >>> model_input_shape(create_model("subclass"))
    (28, 28, 1)
    """
    inputs = getattr(model, "inputs", None)
    if inputs:  # Functional and Sequential models
        return tuple(inputs[0].shape[1:])
    return tuple(model.get_build_config()["input_shape"][1:])  # a subclassed model: the shape it was built for


def num_classes(model):
    """The classes a model tells apart: the length of its output for one blank image."""
    import numpy as np

    shape = tuple(32 if side is None else side for side in model_input_shape(model))
    return int(model(np.zeros((1, *shape), "float32"), training=False).shape[-1])


def takes_raw_pixels(model):
    """Whether `model` scales its own input (a `Rescaling` layer): raw 0..255 pixels go in, not [0, 1]."""
    return any(isinstance(layer, layers.Rescaling) for layer in compat.flatten_layers(model))
