"""Layers and layer helpers shared by the models, by job.

* `kerascnn.layers.blocks`: batch-norm blocks (`FusedBatchNormalization`,
  `ConvBNReLU`, `DenseBNReLU`), the lecture's conv, dense and pooling
  parts, the classifier head;
* `kerascnn.layers.augment`: augmentation layers inside the model
  (`RandomAffine`, `RandomElastic`, `augmentation`), and the shifted views of test-time
  augmentation;
* `kerascnn.layers.preprocessing`: the model's input (`pixel_input`,
  `working_size`), the pooling stages' arithmetic (`check_stages`), and
  what a built model takes and answers.

Every name is importable from `kerascnn.layers` too.
"""

from kerascnn.layers.preprocessing import (
    DIGIT_CLASSES,
    DIGIT_SHAPE,
    check_stages,
    model_input_shape,
    num_classes,
    pixel_input,
    takes_raw_pixels,
    working_size,
)
from kerascnn.layers.blocks import (
    BN_MOMENTUM,
    PACKAGE,
    ConvBNReLU,
    DenseBNReLU,
    FusedBatchNormalization,
    TemperatureSoftmax,
    classifier_head,
    conv_block,
    dense_block,
    pool,
)
from kerascnn.layers.augment import (
    RandomAffine,
    RandomElastic,
    affine_matrix,
    allow_jit,
    augmentation,
    shift_images,
    shift_views,
)

__all__ = [
    "BN_MOMENTUM",
    "DIGIT_CLASSES",
    "DIGIT_SHAPE",
    "PACKAGE",
    "ConvBNReLU",
    "DenseBNReLU",
    "FusedBatchNormalization",
    "RandomAffine",
    "RandomElastic",
    "affine_matrix",
    "allow_jit",
    "augmentation",
    "check_stages",
    "TemperatureSoftmax",
    "classifier_head",
    "conv_block",
    "dense_block",
    "model_input_shape",
    "num_classes",
    "pixel_input",
    "pool",
    "shift_images",
    "shift_views",
    "takes_raw_pixels",
    "working_size",
]
