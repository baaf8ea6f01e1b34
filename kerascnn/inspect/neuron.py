"""One value of a conv stage's feature map, recomputed as the lecture computes it: window . kernel + bias."""

import dataclasses

import keras
import numpy as np

from kerascnn import basics
from kerascnn.inspect.explainer import conv_weights
from kerascnn.inspect.stages import InspectError, pair


@dataclasses.dataclass
class Neuron:
    """How one value of a conv stage's feature map is made: a kernel slid over a window of the stage's input.

    Attributes:
        stage: str, the stage's name.
        channel, row, col: int, the value's place in the stage's output.
        window: float32 array (kh, kw, C_in): the input under the kernel
            (zeros where SAME padding reaches past the edge).
        kernel: float32 array (kh, kw, C_in): the weights of `channel`.
        bias: float, the conv's bias for `channel` (0 without one).
        steps: list of (str, float): "dot product + bias" (the sum of
            `window * kernel` plus `bias`), then each step the layer applies
            after it ("batch norm", "ReLU", ...), ending at the map's value.
        value: float, the value the model itself computed there.
        origin: (int, int), the input row and column of the window's top-left
            corner (negative where padding reaches past the edge).
    """

    stage: str
    channel: int
    row: int
    col: int
    window: np.ndarray
    kernel: np.ndarray
    bias: float
    steps: list
    value: float
    origin: tuple


def neuron(stage, channel, row, col):
    """One value of a conv stage's output, recomputed as the lecture computes it: window . kernel + bias.

    Example:

    >>> from kerascnn.models import create_model
    >>> from kerascnn.inspect import explain
    >>> e = explain(create_model("sequential"), np.zeros((28, 28), "float32"))
    >>> n = neuron(e.stages[0], channel=3, row=0, col=0)
    >>> n.window.shape, n.kernel.shape, n.origin, [name for name, _ in n.steps]
    ((3, 3, 1), (3, 3, 1), (-1, -1), ['dot product + bias', 'ReLU'])

    Args:
        stage: a conv `Stage` of an `Explanation`.
        channel, row, col: int, where in the stage's output.

    Returns:
        A `Neuron`; its last step equals `value` up to the model's precision.

    Raises:
        InspectError: a stage that is not a conv, or a place outside its output.
    """
    from kerascnn.layers import ConvBNReLU

    if stage.kind != "conv" or stage.input is None:
        raise InspectError(f"`stage` must be a conv stage of an Explanation. Received: stage={stage.name} ({stage.kind})")
    height, width, channels = stage.shape
    for name, value, size in (("channel", channel, channels), ("row", row, height), ("col", col, width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < size:
            raise InspectError(f"`{name}` must be an integer from 0 to {size - 1} for {stage.name} "
                               f"({height}x{width}x{channels}). Received: {name}={value!r}")
    block = stage.layer
    kernels, biases, conv = conv_weights(block)
    kernel = kernels[..., channel]
    bias = 0.0 if biases is None else float(biases[channel])
    (kh, kw), (sh, sw) = kernel.shape[:2], pair(conv.strides)
    dh, dw = pair(conv.dilation_rate)
    x = stage.input
    top = left = 0
    if conv.padding == "same":
        top = basics.same_padding(x.shape[0], dh * (kh - 1) + 1, sh)[0]
        left = basics.same_padding(x.shape[1], dw * (kw - 1) + 1, sw)[0]
    rows, cols = row * sh - top + dh * np.arange(kh), col * sw - left + dw * np.arange(kw)
    inside = (rows[:, None] >= 0) & (rows[:, None] < x.shape[0]) & (cols >= 0) & (cols < x.shape[1])
    window = np.zeros(kernel.shape, np.float32)
    window[inside] = x[np.clip(rows, 0, x.shape[0] - 1)[:, None], np.clip(cols, 0, x.shape[1] - 1)][inside]
    z = float(np.sum(window.astype(np.float64) * kernel)) + bias
    steps = [("dot product + bias", z)]
    if isinstance(block, ConvBNReLU):
        bn = block.bn
        gamma = float(keras.ops.convert_to_numpy(bn.gamma)[channel]) if bn.scale else 1.0
        beta = float(keras.ops.convert_to_numpy(bn.beta)[channel]) if bn.center else 0.0
        mean = float(keras.ops.convert_to_numpy(bn.moving_mean)[channel])
        variance = float(keras.ops.convert_to_numpy(bn.moving_variance)[channel])
        steps.append(("batch norm", gamma * (z - mean) / np.sqrt(variance + bn.epsilon) + beta))
        steps.append(("ReLU", max(steps[-1][1], 0.0)))
    else:
        activation = keras.activations.serialize(conv.activation)
        if activation != "linear":
            after = keras.ops.convert_to_numpy(conv.activation(keras.ops.convert_to_tensor([z], "float32")))
            steps.append(("ReLU" if activation == "relu" else activation, float(after[0])))
    return Neuron(stage.name, int(channel), int(row), int(col), window, kernel, bias,
                  [(name, float(v)) for name, v in steps], float(stage.activations[row, col, channel]),
                  (int(rows[0]), int(cols[0])))
