"""A model's layers in the order they run, and which of them are stages a person reads.

`trace` applies a model's own layer objects, one by one, to new symbolic
inputs and records each call: Sequential and Functional models (residual
ones too) through their graph, a subclassed model through its
`layer_sequence` (`kerascnn.models.LectureCNN` has one). Because the layers
are the model's own, a Functional model of the recorded tensors has the
same weights. `describe` says which layers are stages (conv, pooling,
dense, residual add, softmax) and what each does.

Example:

>>> import keras
>>> from kerascnn.models import create_model
>>> steps, output = trace(create_model("sequential"), keras.Input((28, 28, 1)))
>>> [describe(step.layer)[1] for step in steps if describe(step.layer)][:2]
['conv 3x3/1 SAME, 32 filters, ReLU', 'pool 2x2/2 SAME']
>>> [describe(step.layer)[1] for step in steps if describe(step.layer)][-3:]
['dense 256, ReLU', 'dense 10', 'softmax']
"""

import collections

import keras
from keras import layers

from kerascnn import basics
from kerascnn.errors import UsageError


class InspectError(UsageError, ValueError):
    """The model or the image cannot be looked inside (no conv layer, a member out of range, a wrong shape)."""


Step = collections.namedtuple("Step", "layer input output")
Step.__doc__ = "One layer call of a traced model: the layer, what it received and what it returned."


def trace(model, inputs, after=None):
    """Applies `model`'s layers to `inputs` in order, recording each call.

    Args:
        model: `keras.Model`: Sequential, Functional, or a subclass with a
            `layer_sequence` (the layers its `call` applies, in order).
        inputs: a symbolic tensor (`keras.Input`) the model takes.
        after: callable (layer, output) -> output, or None: applied to each
            layer's output before the next layer sees it (to insert a layer).

    Returns:
        (steps, output): a list of `Step`, in the order they ran, and the
        model's output on `inputs`.

    Raises:
        InspectError: a subclassed model without `layer_sequence`.
    """
    steps = []

    def apply(layer, *args, **kwargs):
        output = layer(*args, **kwargs)
        if after is not None:
            output = after(layer, output)
        steps.append(Step(layer, args[0] if len(args) == 1 else list(args), output))
        return output

    sequence = getattr(model, "layer_sequence", None)
    if sequence is None and isinstance(model, keras.Sequential):
        sequence = [layer for layer in model.layers if not isinstance(layer, layers.InputLayer)]
    if sequence is not None:
        x = inputs
        for layer in sequence:
            x = apply(layer, x)
        return steps, x
    if not getattr(model, "inputs", None):
        raise InspectError(
            "`model` must be Sequential, Functional, or a subclass with a `layer_sequence` (the layers its call "
            f"applies, in order): other subclassed models have no stages to read. Received: model={model.name}"
        )
    # The Functional graph run again on `inputs`, each layer call made by `apply`, with the model's own layers.
    clone = keras.models.clone_model(model, input_tensors=inputs, clone_function=lambda layer: layer,
                                     call_function=apply)
    return steps, clone.outputs[0] if len(clone.outputs) == 1 else clone.outputs


def pair(value):
    """(a, b) for an int or a pair."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _window(kernel, strides, padding):
    (kh, kw), (sh, sw) = pair(kernel), pair(strides)
    stride = str(sh) if sh == sw else f"{sh}x{sw}"
    return f"{kh}x{kw}/{stride} {padding.upper()}"


def expected_shape(layer, input_shape, channels):
    """The (H, W, C) `kerascnn.basics.output_size` gives for a conv or pooling layer; None for a side of any size."""
    height, width = input_shape[1:3]
    if height is None or width is None:
        return None
    kernel = layer.kernel_size if hasattr(layer, "kernel_size") else layer.pool_size
    dilation = pair(getattr(layer, "dilation_rate", 1))
    (kh, kw), (sh, sw) = pair(kernel), pair(layer.strides)
    kh, kw = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1  # a dilated kernel's reach
    return (
        basics.output_size(int(height), kh, sh, layer.padding),
        basics.output_size(int(width), kw, sw, layer.padding),
        channels,
    )


def is_softmax(layer):
    """Whether `layer` is a softmax `Activation` (the classifier's last step)."""
    return isinstance(layer, layers.Activation) and keras.activations.serialize(layer.activation) == "softmax"


def describe(layer):
    """(kind, text) of a stage layer, or None for a layer that is not a stage.

    Kinds: "conv", "pool", "dense", "add", "softmax". Batch norm and ReLU
    inside `ConvBNReLU`/`DenseBNReLU` belong to their block's stage;
    Flatten, Dropout, augmentation and preprocessing layers are not stages.
    """
    from kerascnn.layers import ConvBNReLU, DenseBNReLU

    if isinstance(layer, ConvBNReLU):
        window = _window(layer.kernel_size, layer.strides, layer.padding)
        return "conv", f"conv {window}, {layer.filters} filters, BN, ReLU"
    if isinstance(layer, layers.Conv2D):
        window = _window(layer.kernel_size, layer.strides, layer.padding)
        return "conv", f"conv {window}, {layer.filters} filters{_activation(layer)}"
    if isinstance(layer, (layers.MaxPooling2D, layers.AveragePooling2D)):
        how = "pool" if isinstance(layer, layers.MaxPooling2D) else "avg pool"
        return "pool", f"{how} {_window(layer.pool_size, layer.strides, layer.padding)}"
    if isinstance(layer, (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D)):
        return "pool", "global " + ("average" if isinstance(layer, layers.GlobalAveragePooling2D) else "max") + " pool"
    if isinstance(layer, DenseBNReLU):
        return "dense", f"dense {layer.units}, BN, ReLU"
    if isinstance(layer, layers.Dense):
        kind = "softmax" if keras.activations.serialize(layer.activation) == "softmax" else "dense"
        return kind, f"dense {layer.units}{_activation(layer)}"
    if is_softmax(layer):
        return "softmax", "softmax"
    if isinstance(layer, layers.Add):
        return "add", "add (residual)"
    return None


def _activation(layer):
    name = keras.activations.serialize(layer.activation)
    name = name if isinstance(name, str) else getattr(layer.activation, "__name__", "activation")
    return "" if name == "linear" else f", {'ReLU' if name == 'relu' else name}"
