"""The lecture's "best" recipe as one model, and a stronger member for it.

Augmentation layers inside each member (rotation up to 15 degrees, shift
up to 2 pixels, active in training only), ConvBNReLU and DenseBNReLU
blocks, and five members averaged by the ensemble wrapper. The learning
rate halving every 5 epochs comes from the trainer's schedule
(`TrainConfig`). Because each member has its own augmentation layers, each
sees its own random variants of every batch: diversity the lecture got
from offline augmentation, here at no cost in memory.

The accuracy search's candidates are options here and in the trainer:
`zoom` (one `RandomAffine` warp), `member="strided"`, and the trainer's
`ema` and `label_smoothing` (docs/ACCURACY.md). The defaults stay the
measured ones until a candidate wins on validation over seeds.
"""

import keras
from keras import layers

from kerascnn.data import IMAGE_SHAPE
from kerascnn.layers import ConvBNReLU, DenseBNReLU, augmentation, classifier_head
from kerascnn.models.ensemble import build_ensemble
from kerascnn.models.lecture import LectureCNN
from kerascnn.models.registry import ModelError, register_model

MEMBERS = ("lecture", "strided")


def strided_cnn(filters=32, dense_units=128, dropout=0.4, rotation=10.0, shift=2.8, zoom=0.1, name="strided_cnn"):
    """Conv-conv-strided conv stages, the member of Deotte's 99.75% MNIST ensemble.

    Per stage: two 3x3 ConvBNReLU (VALID) then a 5x5 stride-2 ConvBNReLU
    in place of max-pooling, then dropout (28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 4);
    two stages (32, 64 filters), dense (Deotte: 128 units), dropout,
    softmax. With 256 dense units, about twice the lecture member's
    multiply-adds (15.3M against 8.0M per image) and 74% of its
    parameters: the lecture member puts 85% of its weights in one dense layer.
    """
    inputs = keras.Input(IMAGE_SHAPE)
    x = inputs
    for layer in augmentation(rotation, shift, zoom):
        x = layer(x)
    for stage in range(2):
        width = filters * 2**stage
        x = ConvBNReLU(width, 3, padding="valid")(x)
        x = ConvBNReLU(width, 3, padding="valid")(x)
        x = ConvBNReLU(width, 5, strides=2, padding="same")(x)
        x = layers.Dropout(dropout)(x)
    x = DenseBNReLU(dense_units)(layers.Flatten()(x))
    x = layers.Dropout(dropout)(x)
    for layer in classifier_head():
        x = layer(x)
    return keras.Model(inputs, x, name=name)


@register_model("best")
def best(
    members=5,
    member="lecture",
    filters=32,
    kernel_size=3,
    dense_units=256,
    dropout=0.4,
    batchnorm=True,
    rotation=15.0,
    shift=2.0,
    zoom=0.0,
):
    """Augmented, batch-normalised CNNs in a softmax-averaging ensemble.

    `member="lecture"` is the lecture CNN with batch norm; "strided" is
    `strided_cnn` (`kernel_size` and `batchnorm` are the lecture member's only).
    """
    if member == "lecture":
        make = lambda name: LectureCNN(
            filters, kernel_size, dense_units, dropout, batchnorm, rotation, shift, zoom, name=name
        )
    elif member == "strided":
        make = lambda name: strided_cnn(filters, dense_units, dropout, rotation, shift, zoom, name=name)
    else:
        raise ModelError(f"`member` must be one of {list(MEMBERS)}. Received: member={member!r}")
    return build_ensemble(make, members, "best")
