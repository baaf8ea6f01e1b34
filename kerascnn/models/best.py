"""The lecture's "best" recipe as one model.

Augmentation layers inside each member (rotation up to 15 degrees, shift up
to 2 pixels, active in training only), ConvBNReLU and DenseBNReLU blocks,
and five members averaged by the ensemble wrapper. The learning rate
halving every 5 epochs comes from the trainer's schedule (`TrainConfig`).
Because each member has its own augmentation layers, each sees its own
random variants of every batch: diversity the lecture got from offline
augmentation, here at no cost in memory.
"""

from kerascnn.models.ensemble import build_ensemble
from kerascnn.models.lecture import LectureCNN
from kerascnn.models.registry import register_model


@register_model("best")
def best(
    members=5, filters=32, kernel_size=3, dense_units=256, dropout=0.4, batchnorm=True, rotation=15.0, shift=2.0
):
    """Augmented, batch-normalised lecture CNNs in a softmax-averaging ensemble."""
    member = lambda name: LectureCNN(filters, kernel_size, dense_units, dropout, batchnorm, rotation, shift, name=name)
    return build_ensemble(member, members, "best")
