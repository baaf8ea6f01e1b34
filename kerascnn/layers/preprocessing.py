"""What a model takes: its input shape, the preprocessing layers that make raw pixels its own business,
the feature-map sizes through its pooling stages, and what a built model tells of its input and classes.
"""

from keras import layers

from kerascnn import basics, compat
from kerascnn.config import check_value

# The default input and classes: MNIST's. A model knows no dataset; these are only its defaults.
DIGIT_SHAPE = (28, 28, 1)
DIGIT_CLASSES = 10


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
