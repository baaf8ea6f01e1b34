"""One image through a model: each stage's activations, the probabilities, Grad-CAM and saliency.

`Explainer(model, member)` builds, once, a Functional view over the
member's own layers (`kerascnn.inspect.stages.trace`) whose outputs are
every stage, every conv stage's input, the member's class scores and each
member's probabilities; one compiled pass (`kerascnn.inspect.gradients`)
returns them with two gradients, on TensorFlow or JAX:

* Grad-CAM (Selvaraju et al., 2017): the last conv stage's channels
  weighted by the mean gradient of the winning class's score (the logit,
  before softmax) over each channel. The gradient is taken for a zero
  per-channel offset (`GradientProbe`) added to that stage's output, which
  is the sum of the gradient over the channel's map, whatever kind of
  model holds the stage;
* saliency (Simonyan et al., 2014): |d p(winner) / d pixel|, the largest
  over a pixel's channels, where p is the whole model's probability.

Example:

>>> import numpy as np
>>> from kerascnn.models import create_model
>>> e = explain(create_model("sequential"), np.zeros((28, 28), "float32"))
>>> [(s.kind, s.shape) for s in e.stages][:2]
[('conv', (28, 28, 32)), ('pool', (14, 14, 32))]
>>> e.stages[1].text, e.stages[1].expected_shape
('pool 2x2/2 SAME', (14, 14, 32))
>>> [s.text for s in e.stages][-2:]
['dense 10', 'softmax 10']
>>> e.probabilities.shape, e.gradcam.shape, e.saliency.shape
((10,), (28, 28), (28, 28))
"""

import dataclasses

import keras
import numpy as np

from kerascnn import calibration
from kerascnn.inspect.gradients import INPUT, compile_pass
from kerascnn.inspect.stages import InspectError, describe, expected_shape, is_softmax, trace


@dataclasses.dataclass
class Stage:
    """One stage of the network and its output for the image.

    Attributes:
        name: str, the layer's name.
        kind: str, "conv", "pool", "dense", "add" or "softmax".
        text: str, what it does, e.g. "conv 3x3/1 SAME, 32 filters, ReLU".
        shape: tuple, the output shape without the batch axis.
        activations: float32 array of `shape`.
        expected_shape: tuple or None: for conv and pooling, the shape
            `kerascnn.basics.output_size` gives (equal to `shape`); None for
            other stages or a side of any size.
        input: float32 array (H, W, C) or None: for a conv stage, what the
            convolution received, which `neuron` slides the kernel over.
        layer: the Keras layer of the stage (`neuron` reads its weights).
    """

    name: str
    kind: str
    text: str
    shape: tuple
    activations: np.ndarray
    expected_shape: tuple = None
    input: np.ndarray = dataclasses.field(default=None, repr=False)
    layer: object = dataclasses.field(default=None, repr=False, compare=False)


@dataclasses.dataclass
class Explanation:
    """What `explain` returns.

    Attributes:
        image: float32 array (H, W, C), the image as the model took it.
        member: int, the member shown (1-based; 1 for a single model).
        stages: list of `Stage`, in order.
        probabilities: float32 array (classes,), the whole model's answer.
        predicted: int, its most probable class.
        gradcam: float32 array (H, W) in [0, 1]: Grad-CAM for `predicted`
            at the member's last conv stage, resized to the image.
        members: int, the model's members (1 for a single model).
        saliency: float32 array (H, W) in [0, 1]: |d p(predicted) / d pixel|.
        member_probabilities: float32 array (members, classes).
    """

    image: np.ndarray
    member: int
    stages: list
    probabilities: np.ndarray
    predicted: int
    gradcam: np.ndarray
    members: int = 1
    saliency: np.ndarray = dataclasses.field(default=None, repr=False)
    member_probabilities: np.ndarray = dataclasses.field(default=None, repr=False)


class GradientProbe(keras.layers.Layer):
    """Adds a per-channel offset, zero, to its input: the gradient for it is the gradient summed over each map.

    Inserted after the last conv stage by `Explainer` (never saved with a
    model), so Grad-CAM's weights are one gradient for a variable on every
    backend and for every kind of model.
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.delta = self.add_weight(shape=(channels,), initializer="zeros", trainable=True, name="delta")

    def call(self, inputs):
        return inputs + keras.ops.cast(self.delta, inputs.dtype)


def _members(model):
    from kerascnn.models.ensemble import Ensemble

    return model.members if isinstance(model, Ensemble) else [model]


def check_member(model, member):
    """`member` as an int from 1 to the model's members; raises `InspectError` otherwise."""
    count = len(_members(model))
    if isinstance(member, bool) or not isinstance(member, (int, np.integer)) or not 1 <= member <= count:
        raise InspectError(
            f"`member` must be an integer from 1 to {count} (the model's members). Received: member={member!r}"
        )
    return int(member)


def _unit(array):
    """`array` scaled into [0, 1] by its maximum (all zeros stays zeros)."""
    top = float(array.max()) if array.size else 0.0
    return np.clip(array / top, 0.0, 1.0).astype(np.float32) if top > 0 else np.zeros_like(array, np.float32)


def gradcam(maps, channel_grads, size):
    """Grad-CAM from a conv stage's maps and the class score's gradient summed over each map.

    Args:
        maps: float array (h, w, C), the stage's output.
        channel_grads: float array (C,), d score / d (offset of channel c).
        size: (H, W), the image's size.

    Returns:
        float32 array (H, W) in [0, 1]: ReLU of the channels weighted by their
        mean gradient, resized bilinearly, scaled by its maximum.
    """
    maps = np.asarray(maps, np.float32)
    weights = np.asarray(channel_grads, np.float32) / (maps.shape[0] * maps.shape[1])  # the mean over the map
    cam = np.maximum(np.tensordot(maps, weights, axes=([2], [0])), 0.0)[..., None]
    resized = keras.ops.convert_to_numpy(keras.ops.image.resize(cam, tuple(size), interpolation="bilinear"))
    return _unit(resized[..., 0])


def saliency(grad_image):
    """|gradient| of a batch of one (1, H, W, C), the largest over channels, scaled into [0, 1]: (H, W)."""
    return _unit(np.abs(np.asarray(grad_image, np.float32)[0]).max(axis=-1))


def _scores(outputs):
    """The pass's two scores: the winning class's score (Grad-CAM), the winning probability (saliency)."""
    ops = keras.ops
    probabilities = ops.mean(ops.cast(outputs[-1][0], "float32"), axis=0)
    winner = ops.argmax(probabilities)
    return [ops.cast(ops.take(outputs[-2][0], winner), "float32"), ops.max(probabilities)]


class Explainer:
    """One model (and member) ready to explain images: the view and its compiled pass are built once.

    Args:
        model: `keras.Model` returning class probabilities: Sequential,
            Functional, a subclass with `layer_sequence`, or an `Ensemble` of
            those; freshly built or loaded.
        member: int, for an ensemble the member to show (1-based). Defaults to 1.

    Raises:
        InspectError: `member` out of range, a model with no conv layer, or
            a subclassed model whose layers cannot be read in order.
    """

    def __init__(self, model, member=1):
        from kerascnn.layers import model_input_shape
        from kerascnn.models.ensemble import MemberPredictor

        self.model, self.member = model, check_member(model, member)
        self.members = len(_members(model))
        chosen = _members(model)[self.member - 1]
        self.input_shape = model_input_shape(chosen)
        steps, _ = trace(chosen, keras.Input(self.input_shape))
        convs = [step for step in steps if (describe(step.layer) or ("",))[0] == "conv"]
        if not convs:
            raise InspectError(
                "`model` has no convolution layer to show: explain draws the feature maps of a CNN's conv "
                f"stages. Received: model={model.name}"
            )
        last_conv = convs[-1].layer
        self.probe = GradientProbe(convs[-1].output.shape[-1], name="gradient_probe")
        probed = lambda layer, output: self.probe(output) if layer is last_conv else output  # noqa: E731

        inputs = keras.Input(self.input_shape)
        steps, member_output = trace(chosen, inputs, after=probed)
        self.stages = []  # (name, kind, text, expected shape, layer), in order
        outputs, conv_inputs = [], []
        for step in steps:
            described = describe(step.layer)
            if described is None:
                continue
            kind, text = described
            shape = tuple(step.output.shape[1:])
            if text == "softmax":
                text = f"softmax {shape[-1]}"
            expected = None
            if kind in ("conv", "pool") and len(shape) == 3:
                expected = expected_shape(step.layer, step.input.shape, shape[-1])
                if expected is not None and expected != shape:
                    raise InspectError(
                        f"Layer `{step.layer.name}` outputs {shape} where the lecture's arithmetic (kerascnn.basics) "
                        f"gives {expected} for its input {tuple(step.input.shape[1:])}. "
                        f"Received: {step.layer.name}.output.shape={shape}"
                    )
            if kind == "conv":
                conv_inputs.append((len(self.stages), step.input))
            self.stages.append((step.layer.name, kind, text, expected, step.layer))
            outputs.append(step.output)
        self.last_conv = max(i for i, _ in conv_inputs)
        softmaxes = [step for step in steps if is_softmax(step.layer)]
        target = softmaxes[-1].input if softmaxes else member_output  # the class score: logits where there are
        answer = MemberPredictor(model).model(inputs)  # (1, members, classes): the whole model's answer
        self.conv_stages = [index for index, _ in conv_inputs]
        self.view = keras.Model(inputs, [*outputs, *(x for _, x in conv_inputs), target, answer],
                                name=f"{model.name}_explain_{self.member}")
        self._pass = compile_pass(self.view, _scores, [self.probe.delta, INPUT])

    def check_image(self, image):
        """`image` as a float32 (H, W, C) array the model takes; raises `InspectError` otherwise."""
        image = np.asarray(image, np.float32)
        if image.ndim == 2:
            image = image[..., None]
        fits = image.ndim == 3 and all(want in (None, got) for want, got in zip(self.input_shape, image.shape))
        if not fits:
            raise InspectError(
                f"`image` must be an array (H, W) or (H, W, C) the model takes, {self.input_shape}. "
                f"Received: image.shape={np.shape(image)}"
            )
        return image

    def __call__(self, image):
        """Explains one image: float array (H, W) or (H, W, C), as the model takes it. Returns an `Explanation`."""
        image = self.check_image(image)
        outputs, (cam_grads, saliency_grads) = self._pass(image[None])
        count = len(self.stages)
        stage_outputs, conv_inputs = outputs[:count], dict(zip(self.conv_stages, outputs[count:-2]))
        members = np.asarray(outputs[-1][0], np.float32)
        probabilities = calibration.answer(self.model, members)
        stages = [
            Stage(name, kind, text, tuple(out.shape[1:]), np.asarray(out[0], np.float32), expected,
                  input=np.asarray(conv_inputs[i][0], np.float32) if i in conv_inputs else None, layer=layer)
            for i, ((name, kind, text, expected, layer), out) in enumerate(zip(self.stages, stage_outputs))
        ]
        return Explanation(
            image, self.member, stages, probabilities, int(np.argmax(probabilities)),
            gradcam(stages[self.last_conv].activations, cam_grads, image.shape[:2]), self.members,
            saliency=saliency(saliency_grads), member_probabilities=members,
        )

    def first_kernel(self):
        """The first conv stage's kernel, float32 (kh, kw, C_in, filters)."""
        return conv_weights(self.stages[self.conv_stages[0]][4])[0]


class Answer:
    """Each member's probabilities and the saliency map for one image, in one compiled pass (no stages).

    Example:

    >>> from kerascnn.models import create_model
    >>> members, salient = Answer(create_model("ensemble", members=2))(np.zeros((28, 28, 1), "float32"))
    >>> members.shape, salient.shape
    ((2, 10), (28, 28))

    Args:
        model: `keras.Model` returning class probabilities; an `Ensemble`'s
            members are reported one by one.
    """

    def __init__(self, model):
        from kerascnn.models.ensemble import MemberPredictor

        view = MemberPredictor(model).model
        self._pass = compile_pass(view, lambda outputs: [keras.ops.max(keras.ops.mean(outputs[0][0], axis=0))], [INPUT])

    def __call__(self, image):
        """(members (members, classes), saliency (H, W) in [0, 1]) for an image (H, W, C) as the model takes it."""
        outputs, (grad_image,) = self._pass(np.asarray(image, np.float32)[None])
        return np.asarray(outputs[0][0], np.float32), saliency(grad_image)


def conv_weights(layer):
    """(kernel (kh, kw, C_in, filters), bias (filters,) or None, the Conv2D) of a conv stage's layer."""
    from kerascnn.layers import ConvBNReLU

    conv = layer.conv if isinstance(layer, ConvBNReLU) else layer
    kernel = keras.ops.convert_to_numpy(conv.kernel).astype(np.float32)
    bias = keras.ops.convert_to_numpy(conv.bias).astype(np.float32) if conv.use_bias else None
    return kernel, bias, conv


def explain(model, image, member=1):
    """Explains one image: each stage's activations, the shape arithmetic, probabilities, Grad-CAM, saliency.

    Args:
        model: `keras.Model`, as `Explainer` takes it.
        image: float array (H, W) or (H, W, C), as the model takes it (raw
            pixels for a model that scales its own).
        member: int, for an ensemble the member to show (1-based). Defaults to 1.

    Returns:
        An `Explanation`.

    Raises:
        InspectError: see `Explainer`, or an image of the wrong shape.
    """
    return Explainer(model, member)(image)
