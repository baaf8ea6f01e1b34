"""The lecture's convolution and pooling arithmetic, as functions.

For an input of size `n`, window `k` and stride `s` (per spatial axis):

* VALID: no padding; output = floor((n - k) / s) + 1.
* SAME: output = ceil(n / s); the input is padded by
  `total = max((out - 1) * s + k - n, 0)` zeros, `floor(total / 2)` before
  and the rest after (TensorFlow's and Keras' rule).

Examples (the lecture's toy cases):

>>> output_size(3, 2, 1, "valid"), output_size(3, 2, 1, "same")
(2, 3)
>>> same_padding(3, 2, 1)
(0, 1)
>>> output_size(28, 3, 2, "same"), output_size(14, 2, 2, "same")
(14, 7)
>>> [output_size(n, 2, 2, "same") for n in (28, 14, 7)]
[14, 7, 4]
"""

import math

PADDINGS = ("valid", "same")


def _check(n, k, s, padding):
    for name, value in (("size", n), ("kernel", k), ("stride", s)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
    if padding not in PADDINGS:
        raise ValueError(f"`padding` must be one of {PADDINGS}. Received: padding={padding!r}")
    if padding == "valid" and k > n:
        raise ValueError(f"VALID needs kernel <= size. Received: kernel={k}, size={n}")


def output_size(size, kernel, stride=1, padding="valid"):
    """Output length along one axis of a convolution or pooling window.

    Args:
        size: int, input length.
        kernel: int, window length.
        stride: int, step between windows. Defaults to 1.
        padding: str, "valid" or "same". Defaults to "valid".
    """
    padding = padding.lower() if isinstance(padding, str) else padding
    _check(size, kernel, stride, padding)
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


def same_padding(size, kernel, stride=1):
    """(before, after) zeros SAME adds along one axis: floor(total/2), the rest."""
    _check(size, kernel, stride, "same")
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def output_shape(input_shape, filters, kernel, stride=1, padding="valid"):
    """NHWC output shape of a Conv2D (or pooling, with `filters=None`).

    >>> output_shape((1, 28, 28, 1), 5, 3, 2, "same")
    (1, 14, 14, 5)
    >>> output_shape((1, 14, 14, 5), None, 2, 2, "same")
    (1, 7, 7, 5)
    """
    batch, height, width, channels = input_shape
    return (
        batch,
        output_size(height, kernel, stride, padding),
        output_size(width, kernel, stride, padding),
        channels if filters is None else filters,
    )


def stage_count(size, smallest=3, largest=5):
    """Pooling stages for pictures `size` pixels a side: halve until the maps are 4 to 8 pixels, 3 to 5 stages.

    The lecture's three stages up to 63 pixels (28 -> 4, 32 -> 4, 48 -> 6,
    63 -> 8: SAME pooling rounds up), four from 64 (64 -> 4), five from 128
    (128 -> 4, 224 -> 7): the last
    stage sees a few pixels a side, so the receptive field grows with the
    picture. Five at most: a sixth 256-filter stage would add 0.6M weights
    per member for maps already small enough to pool globally (300 -> 10).

    >>> [stage_count(side) for side in (28, 32, 63, 64, 96, 128, 224, 300)]
    [3, 3, 3, 4, 4, 5, 5, 5]
    """
    return max(smallest, min(largest, int(math.floor(math.log2(size / 4)))))
