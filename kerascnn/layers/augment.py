"""Augmentation inside the model, ImageDataGenerator-style, and the shifted views of test-time augmentation.

The layers run in training only; at inference images pass through.
"""

import math

import keras
from keras import layers

from kerascnn import compat
from kerascnn.config import check_value
from kerascnn.layers.blocks import PACKAGE
from kerascnn.layers.preprocessing import DIGIT_SHAPE


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


def gaussian_kernel(sigma):
    """A normalised 1-D Gaussian of standard deviation `sigma`, truncated at 3 sigma, as a float32 NumPy array."""
    import numpy as np

    radius = max(1, int(math.ceil(3.0 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return (taps / taps.sum()).astype("float32")


def bilinear_read(images, y, x, fill_value=0.0):
    """`images` (batch, H, W, C) read at the points (`y`, `x`), each (batch, H, W), bilinearly; `fill_value` outside.

    Written with gathers on a flat view, so the batch may be of unknown
    size (a `fit()` trace): `keras.ops.image.map_coordinates` needs every
    dimension known under TensorFlow.
    """
    ops = keras.ops
    batch = ops.shape(images)[0]
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    flat = ops.reshape(images, (-1, channels))
    base = (ops.arange(batch, dtype="int32") * (height * width))[:, None, None]
    y0, x0 = ops.floor(y), ops.floor(x)
    out = 0.0
    for dy in (0, 1):
        for dx in (0, 1):
            yc, xc = y0 + dy, x0 + dx
            weight = (1.0 - ops.abs(y - yc)) * (1.0 - ops.abs(x - xc))
            inside = (yc >= 0) & (yc <= height - 1) & (xc >= 0) & (xc <= width - 1)
            yi = ops.cast(ops.clip(yc, 0, height - 1), "int32")
            xi = ops.cast(ops.clip(xc, 0, width - 1), "int32")
            picked = ops.take(flat, ops.reshape(base + yi * width + xi, (-1,)), axis=0)
            picked = ops.reshape(picked, (batch, height, width, channels))
            picked = ops.where(inside[..., None], picked, fill_value)
            out = out + weight[..., None] * picked
    return out


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomElastic(layers.Layer):
    """Elastic distortion (Simard et al. 2003): each image bent by its own smooth random field.

    For every image, two fields of uniform noise in [-1, 1] (one for x, one
    for y) are smoothed by a Gaussian of `sigma` pixels and scaled by
    `alpha`; each output pixel is read, bilinearly, from its own position
    plus that displacement, with `fill_value` outside. Simard et al. used
    alpha = 34, sigma = 4 on 28x28 digits. Training only; at inference the
    images pass through.

    Keras has `RandomElasticTransform` (3.10+), but in 3.10-3.15 its x and y
    fields are one draw (pixels move only along the diagonal), it treats a
    `fit()` batch of unknown size as one image, and it does not compile
    under JAX (docs/ACCURACY.md). This layer draws both fields per image
    from the batch's dynamic size and resamples with its own gathers
    (`bilinear_read`), so it trains under `fit()` on both backends, with
    batches of unknown size.

    Example:

    >>> warp = RandomElastic(alpha=34.0, sigma=4.0, seed=1)
    >>> x = keras.ops.ones((2, 28, 28, 1))
    >>> bool(keras.ops.all(warp(x) == x))  # inference: unchanged
    True
    >>> tuple(warp(x, training=True).shape)
    (2, 28, 28, 1)

    Args:
        alpha: float, the field's scale in pixels; 0 turns the layer off.
        sigma: float, the smoothing's standard deviation in pixels. Defaults to 4.
        fill_value: float, the value of pixels read from outside. Defaults to 0.
        seed: int or None, for the random fields.
    """

    def __init__(self, alpha=34.0, sigma=4.0, fill_value=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        check_value(alpha >= 0, "alpha", "a number >= 0", alpha, error=ValueError)
        check_value(sigma > 0, "sigma", "a number > 0", sigma, error=ValueError)
        self.alpha, self.sigma, self.fill_value, self.seed = float(alpha), float(sigma), float(fill_value), seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        taps = gaussian_kernel(self.sigma)
        # Separable smoothing of the two displacement channels: (k, 1) then (1, k) depthwise kernels.
        self._rows = taps.reshape(-1, 1, 1, 1).repeat(2, axis=2)
        self._cols = taps.reshape(1, -1, 1, 1).repeat(2, axis=2)

    def call(self, inputs, training=None):
        if not training or not self.alpha:
            return inputs
        ops = keras.ops
        images = ops.cast(inputs, "float32")  # the resampling is float32
        batch = ops.shape(images)[0]
        height, width, channels = images.shape[1], images.shape[2], images.shape[3]
        noise = keras.random.uniform((batch, height, width, 2), -1.0, 1.0, seed=self.seed_generator)
        field = ops.depthwise_conv(noise, self._rows, padding="same")
        field = ops.depthwise_conv(field, self._cols, padding="same") * self.alpha
        y = ops.arange(height, dtype="float32")[None, :, None] + field[..., 1]
        x = ops.arange(width, dtype="float32")[None, None, :] + field[..., 0]
        out = bilinear_read(images, y, x, self.fill_value)
        return ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "sigma": self.sigma,
            "fill_value": self.fill_value,
            "seed": self.seed,
        }


def augmentation(rotation=15.0, shift=2.0, zoom=0.0, size=DIGIT_SHAPE[0], dtype=None, elastic=0.0, flip=False,
                 brightness=0.0, contrast=0.0):
    """ImageDataGenerator-style augmentation as Keras layers inside the model.

    In order: a random horizontal flip (`flip`, Keras' `RandomFlip`);
    rotation up to `rotation` degrees either way and shift up to `shift`
    pixels in each direction, filling with 0 (black, MNIST's background):
    Keras' `RandomRotation` and `RandomTranslation`, or, with a `zoom` (a
    fraction), one `RandomAffine` warp doing all three, so the zoom costs no
    extra resampling; with `elastic` (alpha, pixels) a `RandomElastic`
    distortion; last `brightness` and `contrast` (fractions, for colour:
    Keras' `RandomBrightness` and `RandomContrast` on [0, 1] pixels).
    Each draws per picture. The layers run in training only: at inference
    images pass through unchanged. Inside the model they run in the
    compiled train step, per batch, with no Python in the input pipeline.
    The amounts usually come from a policy (`kerascnn.layers.policy`).

    Example:

    >>> [type(layer).__name__ for layer in augmentation(10, 2.8, 0.1, flip=True, brightness=0.2)]
    ['RandomFlip', 'RandomAffine', 'RandomBrightness']

    Args:
        size: int, the image's side in pixels (the shift is a share of it).
        dtype: the layers' dtype policy. Defaults to None: the global
            policy. A model that makes them in `__init__` passes its own
            (see `kerascnn.models.lecture.LectureCNN`).

    Returns:
        A list of layers (empty when all amounts are 0).
    """
    out = [layers.RandomFlip("horizontal", dtype=dtype)] if flip else []
    if zoom:
        out.append(RandomAffine(rotation=rotation, zoom=zoom, shift=shift, dtype=dtype))
    else:
        if rotation:
            out.append(layers.RandomRotation(rotation / 360.0, fill_mode="constant", fill_value=0.0, dtype=dtype))
        if shift:
            out.append(
                layers.RandomTranslation(shift / size, shift / size, fill_mode="constant", fill_value=0.0, dtype=dtype)
            )
    if elastic:
        out.append(RandomElastic(alpha=elastic, dtype=dtype))
    if brightness:
        out.append(layers.RandomBrightness(brightness, value_range=(0.0, 1.0), dtype=dtype))
    if contrast:
        out.append(layers.RandomContrast(contrast, value_range=(0.0, 1.0), dtype=dtype))
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
