"""The lecture's CNN, written three ways: Sequential, Functional, subclassed.

All three are the same network by default: three stages of 3x3 conv
(32, 64, 128 filters, stride 1, SAME, ReLU) each followed by 2x2 max-pool
stride 2 SAME (28 -> 14 -> 7 -> 4), flatten, dense 256 ReLU, dropout 0.4,
dense 10 with softmax: 619,786 parameters. Options used by `best` and the
tuner: `batchnorm` (ConvBNReLU/DenseBNReLU blocks) and augmentation
(`rotation` degrees, `shift` pixels; 0 turns it off).

`global_pool=True` puts a global average pooling where the flatten is: the
dense layer then takes the last stage's 128 channels whatever the picture's
size, so the parameter count no longer grows with it (a 96x128 picture
flattens to 12x16x128 = 24,576 values, a 6.3M-weight dense layer; pooled,
128 values, 33K weights). Models built for your own images get it
(`kerascnn.data.DataSpec.model_kwargs`); MNIST's keep the flatten, their
619,786 parameters and their saved files.

Example:

>>> from kerascnn.models import create_model
>>> create_model("sequential").count_params()
619786
>>> create_model("subclass").count_params()
619786
>>> create_model("sequential", global_pool=True).count_params()
128266
"""

import keras
from keras import layers

from kerascnn.layers import (
    DIGIT_CLASSES,
    DIGIT_SHAPE,
    PACKAGE,
    augmentation,
    check_stages,
    classifier_head,
    conv_block,
    dense_block,
    pixel_input,
    pool,
    working_size,
)
from kerascnn.layers.policy import amounts, builder_amounts
from kerascnn.models.registry import ModelError, register_model

STAGES = 3  # conv stages by default (28 -> 14 -> 7 -> 4); filters double at each
NO_AUGMENTATION = amounts("none", 28, 1)  # every amount off


def flatten(global_pool=False, dtype=None):
    """The layer between the last stage and the dense layer: `Flatten`, or a global average pooling."""
    return layers.GlobalAveragePooling2D(dtype=dtype) if global_pool else layers.Flatten(dtype=dtype)


def front(input_shape, *, image_size=None, rescale=None, stages=STAGES, **augment):
    """The input shape and the layers before the first conv: preprocessing, then augmentation (none by default).

    Checks first that the working size passes the `stages` pooling stages
    (`kerascnn.layers.check_stages`). `augment`: `augmentation`'s amounts
    (`rotation`, `shift`, `zoom`, `flip`, `brightness`, `contrast`).
    """
    check_stages(input_shape, image_size, stages, error=ModelError)
    shape, stage = pixel_input(input_shape, image_size, rescale)
    return shape, stage + augmentation(**{**NO_AUGMENTATION, **augment}, size=working_size(input_shape, image_size)[0])


def stage_width(filters, stage):
    """Filters of conv stage `stage` (0-based): `filters` doubled per stage, up to 8x from the fourth on.

    >>> [stage_width(32, s) for s in range(5)]
    [32, 64, 128, 256, 256]
    """
    return filters * 2 ** min(stage, 3)


@register_model("sequential")
def sequential(
    *,
    filters=32,
    kernel_size=3,
    dense_units=256,
    dropout=0.4,
    batchnorm=False,
    rotation=0.0,
    shift=0.0,
    zoom=0.0,
    flip=False,
    brightness=0.0,
    contrast=0.0,
    input_shape=DIGIT_SHAPE,
    num_classes=DIGIT_CLASSES,
    image_size=None,
    rescale=None,
    global_pool=False,
    stages=STAGES,
):
    """The lecture CNN with `keras.Sequential`.

    `input_shape` and `num_classes` default to MNIST's; `image_size` and
    `rescale` add the preprocessing layers of `kerascnn.layers.pixel_input`.
    """
    augment = builder_amounts(locals())
    shape, first = front(input_shape, image_size=image_size, rescale=rescale, stages=stages, **augment)
    stack = [keras.Input(shape), *first]
    for stage in range(stages):
        stack += [conv_block(stage_width(filters, stage), kernel_size, batchnorm), pool()]
    stack += [flatten(global_pool), dense_block(dense_units, batchnorm), layers.Dropout(dropout)]
    return keras.Sequential(stack + classifier_head(num_classes), name="sequential_cnn")


@register_model("functional")
def functional(
    *,
    filters=32,
    kernel_size=3,
    dense_units=256,
    dropout=0.4,
    batchnorm=False,
    rotation=0.0,
    shift=0.0,
    zoom=0.0,
    flip=False,
    brightness=0.0,
    contrast=0.0,
    residual=False,
    input_shape=DIGIT_SHAPE,
    num_classes=DIGIT_CLASSES,
    image_size=None,
    rescale=None,
    global_pool=False,
    stages=STAGES,
):
    """The lecture CNN with the Functional API.

    With `residual=True` each stage adds a second conv whose output is added
    back to its input (`x + conv(x)`, then ReLU): the residual block the
    lecture shows as something `Sequential` cannot express.
    """
    augment = builder_amounts(locals())
    shape, first = front(input_shape, image_size=image_size, rescale=rescale, stages=stages, **augment)
    inputs = keras.Input(shape)
    x = inputs
    for layer in first:
        x = layer(x)
    for stage in range(stages):
        x = conv_block(stage_width(filters, stage), kernel_size, batchnorm)(x)
        if residual:
            branch = layers.Conv2D(stage_width(filters, stage), kernel_size, padding="same")(x)
            x = layers.ReLU()(layers.Add()([x, branch]))
        x = pool()(x)
    x = flatten(global_pool)(x)
    x = dense_block(dense_units, batchnorm)(x)
    x = layers.Dropout(dropout)(x)
    for layer in classifier_head(num_classes):
        x = layer(x)
    return keras.Model(inputs, x, name="functional_resnet" if residual else "functional_cnn")


@keras.saving.register_keras_serializable(package=PACKAGE)
class LectureCNN(keras.Model):
    """The lecture CNN as a `keras.Model` subclass.

    Layers are made in `__init__` and wired in `call`; `training` reaches
    augmentation, batch norm and dropout, so all three behave differently
    in `fit()` and in `predict()`.

    Args:
        filters: int, first stage's filters (doubled at each stage). Defaults to 32.
        kernel_size: int. Defaults to 3.
        dense_units: int. Defaults to 256.
        dropout: float. Defaults to 0.4.
        batchnorm: bool, ConvBNReLU/DenseBNReLU blocks. Defaults to False.
        rotation: float, augmentation rotation in degrees; 0 for none. Defaults to 0.
        shift: float, augmentation shift in pixels; 0 for none. Defaults to 0.
        zoom: float, augmentation zoom as a fraction; 0 for none. Defaults to 0.
        flip: bool, random horizontal flips. Defaults to False.
        brightness, contrast: float, colour jitter as fractions; 0 for none. Default to 0.
        elastic: float, elastic distortion's alpha in pixels (`RandomElastic`); 0 for none. Defaults to 0.
        num_classes: int. Defaults to 10.
        image_size: tuple (height, width) or None: resize the input to it
            (`kerascnn.layers.pixel_input`). Defaults to None.
        rescale: float or None: multiply the input's pixels by it. Defaults to None.
        global_pool: bool, a global average pooling in place of the flatten:
            a parameter count that does not grow with the picture. Defaults
            to False (the lecture's flatten; files saved before it load as such).
        stages: int, conv-and-pool stages (`stage_width` filters each).
            Defaults to 3, the lecture's; larger pictures get more
            (`kerascnn.basics.stage_count`).
        temperature: float, its softmax head's temperature (`TemperatureSoftmax`),
            set by calibration after training. Defaults to 1.0.
    """

    def __init__(
        self,
        *,
        filters=32,
        kernel_size=3,
        dense_units=256,
        dropout=0.4,
        batchnorm=False,
        rotation=0.0,
        shift=0.0,
        zoom=0.0,
        elastic=0.0,
        flip=False,
        brightness=0.0,
        contrast=0.0,
        num_classes=DIGIT_CLASSES,
        image_size=None,
        rescale=None,
        global_pool=False,
        stages=STAGES,
        temperature=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.dense_units = dense_units
        self.dropout = dropout
        self.batchnorm = batchnorm
        self.rotation = rotation
        self.shift = shift
        self.zoom = zoom
        self.elastic = elastic
        self.flip, self.brightness, self.contrast = bool(flip), brightness, contrast
        self.stages = stages
        self.num_classes = num_classes
        self.image_size = None if image_size is None else tuple(image_size)
        self.rescale = rescale
        self.global_pool = bool(global_pool)
        # The sublayers take this model's dtype policy, not the global one. Only
        # the model's own policy is saved, so sublayers left to the global policy
        # would compute in whatever precision the loading process has set:
        # `evaluate` (float32) scored a mixed_bfloat16 run differently from
        # the `train()` that saved it.
        dtype = self.dtype_policy
        self.preprocess = pixel_input(image_size=image_size, rescale=rescale)[1]  # float32 under any policy
        size = working_size(image_size=image_size)[0]
        self.augment = augmentation(rotation, shift, zoom, size=size, dtype=dtype, elastic=elastic, flip=flip,
                                    brightness=brightness, contrast=contrast)
        self.convs = [conv_block(stage_width(filters, s), kernel_size, batchnorm, dtype=dtype) for s in range(stages)]
        self.pools = [pool(dtype=dtype) for _ in range(stages)]
        self.flatten = flatten(global_pool, dtype=dtype)
        self.hidden = dense_block(dense_units, batchnorm, dtype=dtype)
        self.drop = layers.Dropout(dropout, dtype=dtype)
        self.logits, self.softmax = classifier_head(num_classes, dtype=dtype, temperature=temperature)

    @property
    def layer_sequence(self):
        """The layers `call` applies, in order: the stages `kerascnn.inspect` reads without knowing this class."""
        blocks = [layer for pair in zip(self.convs, self.pools) for layer in pair]
        return [*self.preprocess, *self.augment, *blocks, self.flatten, self.hidden, self.drop, self.logits, self.softmax]

    def call(self, inputs, training=None):
        x = inputs
        for layer in self.layer_sequence:
            x = layer(x, training=training)
        return x

    def build(self, input_shape):
        shape = input_shape
        for layer in self.layer_sequence:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.built = True

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "dense_units": self.dense_units,
            "dropout": self.dropout,
            "batchnorm": self.batchnorm,
            "rotation": self.rotation,
            "shift": self.shift,
            "zoom": self.zoom,
            "elastic": self.elastic,
            "flip": self.flip,
            "brightness": self.brightness,
            "contrast": self.contrast,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "rescale": self.rescale,
            "global_pool": self.global_pool,
            "stages": self.stages,
            "temperature": self.softmax.temperature,  # its calibration (`kerascnn.calibration`), saved with it
        }


@register_model("subclass")
def subclass(
    *,
    filters=32,
    kernel_size=3,
    dense_units=256,
    dropout=0.4,
    batchnorm=False,
    rotation=0.0,
    shift=0.0,
    zoom=0.0,
    flip=False,
    brightness=0.0,
    contrast=0.0,
    input_shape=DIGIT_SHAPE,
    num_classes=DIGIT_CLASSES,
    image_size=None,
    rescale=None,
    global_pool=False,
    stages=STAGES,
):
    """The lecture CNN as a `LectureCNN` (`keras.Model` subclass)."""
    augment = builder_amounts(locals())
    shape, _ = front(input_shape, image_size=image_size, rescale=rescale, stages=stages)  # it augments in `call`
    model = LectureCNN(
        filters=filters, kernel_size=kernel_size, dense_units=dense_units, dropout=dropout, batchnorm=batchnorm,
        **augment, num_classes=num_classes, image_size=image_size, rescale=rescale, global_pool=global_pool,
        stages=stages, name="subclass_cnn",
    )
    model.build((None, *shape))
    return model
