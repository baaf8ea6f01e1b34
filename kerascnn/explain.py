"""What a CNN sees, stage by stage: feature maps, the lecture's shape arithmetic, Grad-CAM.

`explain(model, image)` runs one image through a model and returns an
`Explanation`: one `Stage` per conv, pooling, dense, residual-add and
softmax stage in order, with its output activations; the shape the
lecture's arithmetic (`kerascnn.basics.output_size`) predicts for each conv
and pooling stage, checked against the model's own; the model's class
probabilities; and a Grad-CAM heat map (Selvaraju et al., 2017) of where
the last conv stage looked for the predicted class. `explain_figure` draws
it on one page; `python -m kerascnn explain MODEL IMAGE` saves that page.

Every kind of kerascnn model is read: Sequential, Functional (residual
too), the subclassed `LectureCNN` (through a Functional view that reuses its
layer objects, so the weights are the same), and an `Ensemble`, of which
one member (`member`, 1-based) is shown while the probabilities are the
whole ensemble's. Batch norm and ReLU inside `ConvBNReLU`/`DenseBNReLU`
belong to their block's stage; Flatten, Dropout, augmentation and
preprocessing layers are not stages.

Example:

>>> import numpy as np
>>> from kerascnn.models import create_model
>>> e = explain(create_model("sequential"), np.zeros((28, 28), "float32"))
>>> [(s.kind, s.shape) for s in e.stages][:2]
[('conv', (28, 28, 32)), ('pool', (14, 14, 32))]
>>> e.stages[1].text, e.stages[1].expected_shape
('pool 2x2/2 SAME', (14, 14, 32))
>>> e.probabilities.shape, e.gradcam.shape
((10,), (28, 28))
"""

import dataclasses

import keras
import numpy as np
from keras import layers

from kerascnn import basics
from kerascnn.errors import UsageError

MAPS_PER_STAGE = 16  # feature maps drawn per stage: the first channels


class ExplainError(UsageError, ValueError):
    """The model or the image cannot be explained (no conv layer, a member out of range, a wrong shape)."""


@dataclasses.dataclass
class Stage:
    """One stage of the network and its output for the image.

    Attributes:
        name: str, the layer's name.
        kind: str, "conv", "pool", "dense", "add" or "softmax".
        text: str, what it does, e.g. "conv 3x3/1 SAME, 32 filters".
        shape: tuple, the output shape without the batch axis.
        activations: float32 array of `shape`.
        expected_shape: tuple or None: for conv and pooling, the shape
            `kerascnn.basics.output_size` gives (equal to `shape`); None for
            other stages or a side of any size.
        input: float32 array (H, W, C) or None: for a conv stage, what the
            convolution received (the image, or the previous stage's
            output), which `neuron` slides the kernel over; None otherwise.
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
        members: int, the model's members (1 for a single model).
        stages: list of `Stage`, in order.
        probabilities: float32 array (classes,), the whole model's answer.
        predicted: int, its most probable class.
        gradcam: float32 array (H, W) in [0, 1]: Grad-CAM for `predicted`
            at the member's last conv stage, resized to the image.
    """

    image: np.ndarray
    member: int
    stages: list
    probabilities: np.ndarray
    predicted: int
    gradcam: np.ndarray
    members: int = 1


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _window(kernel, strides, padding):
    (kh, kw), (sh, sw) = _pair(kernel), _pair(strides)
    stride = str(sh) if sh == sw else f"{sh}x{sw}"
    return f"{kh}x{kw}/{stride} {padding.upper()}"


def _expected(layer, input_shape, channels):
    """The (H, W, C) `basics.output_size` gives for a conv or pooling layer; None for a side of any size."""
    height, width = input_shape[1:3]
    if height is None or width is None:
        return None
    kernel = layer.kernel_size if hasattr(layer, "kernel_size") else layer.pool_size
    dilation = _pair(getattr(layer, "dilation_rate", 1))
    (kh, kw), (sh, sw) = _pair(kernel), _pair(layer.strides)
    kh, kw = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1  # a dilated kernel's reach
    return (
        basics.output_size(int(height), kh, sh, layer.padding),
        basics.output_size(int(width), kw, sw, layer.padding),
        channels,
    )


def _describe(layer, next_layer=None):
    """(kind, text) of a stage layer, or None for a layer that is not a stage.

    A Dense layer with no activation right before a softmax `Activation` is
    the classifier's logits: it belongs to the softmax stage.
    """
    from kerascnn.layers import ConvBNReLU, DenseBNReLU

    if isinstance(layer, ConvBNReLU):
        window = _window(layer.kernel_size, layer.strides, layer.padding)
        return "conv", f"conv {window}, {layer.filters} filters, BN"
    if isinstance(layer, layers.Conv2D):
        return "conv", f"conv {_window(layer.kernel_size, layer.strides, layer.padding)}, {layer.filters} filters"
    if isinstance(layer, (layers.MaxPooling2D, layers.AveragePooling2D)):
        how = "pool" if isinstance(layer, layers.MaxPooling2D) else "avg pool"
        return "pool", f"{how} {_window(layer.pool_size, layer.strides, layer.padding)}"
    if isinstance(layer, (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D)):
        return "pool", "global " + ("average" if isinstance(layer, layers.GlobalAveragePooling2D) else "max") + " pool"
    if isinstance(layer, DenseBNReLU):
        return "dense", f"dense {layer.units}, BN"
    if isinstance(layer, layers.Dense):
        activation = keras.activations.serialize(layer.activation)
        if activation == "softmax":
            return "softmax", f"dense {layer.units}, softmax"
        if activation == "linear" and _is_softmax(next_layer):
            return None  # the logits of the softmax stage that follows
        return "dense", f"dense {layer.units}"
    if _is_softmax(layer):
        return "softmax", "softmax"
    if isinstance(layer, layers.Add):
        return "add", "add (residual)"
    return None


def _is_softmax(layer):
    return isinstance(layer, layers.Activation) and keras.activations.serialize(layer.activation) == "softmax"


class Explainer:
    """One model (and member) ready to explain images: the multi-output view is built once.

    `explain` builds one per call; keep an `Explainer` to explain many
    images with the same model.

    Args:
        model: `keras.Model`, Sequential, Functional, `LectureCNN` or an
            `Ensemble` of those, returning class probabilities.
        member: int, for an ensemble the member to show (1-based). Defaults to 1.

    Raises:
        ExplainError: `member` out of range, a model with no conv layer, or
            a subclassed model whose layers cannot be read in order.
    """

    def __init__(self, model, member=1):
        from kerascnn.layers import model_input_shape
        from kerascnn.models.ensemble import Ensemble

        members = model.members if isinstance(model, Ensemble) else [model]
        if isinstance(member, bool) or not isinstance(member, (int, np.integer)) or not 1 <= member <= len(members):
            raise ExplainError(
                f"`member` must be an integer from 1 to {len(members)} (the model's members). Received: member={member!r}"
            )
        self.model, self.member = model, int(member)
        chosen = members[self.member - 1]
        self.input_shape = model_input_shape(chosen)
        inputs = keras.Input(self.input_shape)
        steps, logits, member_output = self._trace(chosen, inputs)  # [(layer, input, output)], logits, answer
        self.stages = []  # (name, kind, text, expected shape); outputs in the same order
        self.layers = []  # the stages' layers
        outputs, conv_inputs = [], []  # conv_inputs: (stage index, the tensor the conv received)
        for index, (layer, x_in, x_out) in enumerate(steps):
            following = steps[index + 1][0] if index + 1 < len(steps) else None
            described = _describe(layer, following)
            if described is None:
                continue
            kind, text = described
            if kind == "softmax" and text == "softmax":
                text = f"dense {x_out.shape[-1]}, softmax" if logits is not None else f"softmax {x_out.shape[-1]}"
            shape = tuple(x_out.shape[1:])
            expected = _expected(layer, x_in.shape, shape[-1]) if kind in ("conv", "pool") and len(shape) == 3 else None
            if expected is not None and expected != shape:
                raise ExplainError(
                    f"Layer `{layer.name}` outputs {shape} where the lecture's arithmetic (kerascnn.basics) gives "
                    f"{expected} for its input {tuple(x_in.shape[1:])}. Received: {layer.name}.output.shape={shape}"
                )
            if kind == "conv":
                conv_inputs.append((len(self.stages), x_in))
            self.stages.append((layer.name, kind, text, expected))
            self.layers.append(layer)
            outputs.append(x_out)
        convs = [i for i, stage in enumerate(self.stages) if stage[1] == "conv"]
        if not convs:
            raise ExplainError(
                "`model` has no convolution layer to show: explain draws the feature maps of a CNN's conv "
                f"stages. Received: model={model.name}"
            )
        self.last_conv = convs[-1]
        answer = model(inputs) if model is not chosen else member_output  # the whole ensemble's answer
        target = logits if logits is not None else member_output  # Grad-CAM's class score
        self.conv_stages = [index for index, _ in conv_inputs]
        self.view = keras.Model(
            inputs, [*outputs, *(x for _, x in conv_inputs), target, answer], name=f"{model.name}_explain_{self.member}"
        )
        self._compiled = None

    @staticmethod
    def _trace(member, inputs):
        """The member's layers in order on `inputs`: ([(layer, in, out)], logits or None, output)."""
        from kerascnn.models.lecture import LectureCNN

        if isinstance(member, LectureCNN):
            return Explainer._trace_lecture(member, inputs)
        if not getattr(member, "inputs", None):
            raise ExplainError(
                "`model` must be Sequential, Functional, a LectureCNN or an Ensemble of those: a subclassed "
                f"model has no graph whose stages can be read in order. Received: model={member.name}"
            )
        # Node 0 of each layer is the one the member's own graph made, so `layer.input` and `layer.output`
        # are its tensors there; one Model of that graph re-applied to `inputs` gives them all at once.
        stage_layers = [layer for layer in member.layers if not isinstance(layer, layers.InputLayer)]
        ends = [layer.output for layer in stage_layers]
        where = {id(t): i for i, t in enumerate(ends)}
        softmaxes = [layer for layer in stage_layers if _is_softmax(layer)]
        logits = where.get(id(softmaxes[-1].input)) if softmaxes else None
        answer = where.get(id(member.outputs[0]))
        if answer is None:
            ends.append(member.outputs[0])
            answer = len(ends) - 1
        for layer in stage_layers:  # each layer's input too (a conv's is what its kernel slides over)
            if not isinstance(layer.input, (list, tuple)) and id(layer.input) not in where:
                where[id(layer.input)] = len(ends)
                ends.append(layer.input)
        graph_inputs = member.inputs[0] if len(member.inputs) == 1 else member.inputs
        values = keras.Model(graph_inputs, ends)(inputs)
        steps = [(layer, values[where[id(layer.input)]] if id(layer.input) in where else layer.input, values[i])
                 for i, layer in enumerate(stage_layers)]
        return steps, None if logits is None else values[logits], values[answer]

    @staticmethod
    def _trace_lecture(member, inputs):
        """A `LectureCNN`'s `call`, layer by layer, on symbolic inputs: the same layer objects, so the same weights."""
        steps = []

        def apply(layer, x):
            y = layer(x)
            steps.append((layer, x, y))
            return y

        x = inputs
        for layer in [*member.preprocess, *member.augment]:
            x = apply(layer, x)
        for conv, pooling in zip(member.convs, member.pools):
            x = apply(pooling, apply(conv, x))
        x = apply(member.drop, apply(member.hidden, apply(member.flatten, x)))
        logits = apply(member.logits, x)
        return steps, logits, apply(member.softmax, logits)

    def tensors(self, x):
        """The whole pass on a batch of one, as tensors; traceable, so it can run inside a `tf.function`.

        Args:
            x: float32 tensor (1, H, W, C).

        Returns:
            (stage outputs, conv stage inputs (in `conv_stages` order),
            probabilities (classes,), Grad-CAM (H, W) in [0, 1]).
        """
        import tensorflow as tf

        with tf.GradientTape() as tape:
            outputs = self.view(x, training=False)
            conv = outputs[self.last_conv]
            tape.watch(conv)
            probabilities = tf.cast(outputs[-1][0], tf.float32)
            score = tf.gather(outputs[-2][0], tf.argmax(probabilities))
        cam = _gradcam(conv, tape.gradient(score, conv), tf.shape(x)[1:3])
        count = len(self.stages)
        return list(outputs[:count]), list(outputs[count:-2]), probabilities, cam

    def check_image(self, image):
        """`image` as a float32 (H, W, C) array the model takes; raises `ExplainError` otherwise."""
        image = np.asarray(image, np.float32)
        if image.ndim == 2:
            image = image[..., None]
        fits = image.ndim == 3 and all(want in (None, got) for want, got in zip(self.input_shape, image.shape))
        if not fits:
            raise ExplainError(
                f"`image` must be an array (H, W) or (H, W, C) the model takes, {self.input_shape}. "
                f"Received: image.shape={np.shape(image)}"
            )
        return image

    def explanation(self, image, stage_outputs, conv_inputs, probabilities, gradcam):
        """An `Explanation` from the arrays `tensors` returned (batch of one) for `image`."""
        inputs = dict(zip(self.conv_stages, conv_inputs))
        stages = [
            Stage(name, kind, text, tuple(np.shape(out)[1:]), np.asarray(out[0], np.float32), expected,
                  input=np.asarray(inputs[i][0], np.float32) if i in inputs else None, layer=layer)
            for i, ((name, kind, text, expected), layer, out) in enumerate(zip(self.stages, self.layers, stage_outputs))
        ]
        probabilities = np.asarray(probabilities, np.float32)
        return Explanation(image, self.member, stages, probabilities, int(np.argmax(probabilities)),
                           np.asarray(gradcam, np.float32), len(getattr(self.model, "members", [self.model])))

    def __call__(self, image):
        """Explains one image: float array (H, W) or (H, W, C), as the model takes it. Returns an `Explanation`."""
        import tensorflow as tf

        image = self.check_image(image)
        if self._compiled is None:  # one graph for the whole pass; traced again only for a new image size
            self._compiled = tf.function(self.tensors, reduce_retracing=True)
        return self.explanation(image, *self._compiled(tf.constant(image[None])))


def _gradcam(conv, grads, size):
    """ReLU of the channels weighted by their mean gradient, resized to `size`, scaled into [0, 1] (a tensor)."""
    import tensorflow as tf

    if grads is None:  # the class score does not depend on the conv stage
        return tf.zeros(size, tf.float32)
    conv, grads = tf.cast(conv, tf.float32), tf.cast(grads, tf.float32)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * conv, axis=-1, keepdims=True))
    cam = tf.image.resize(cam, size, method="bilinear")[0, ..., 0]
    top = tf.reduce_max(cam)
    return tf.where(top > 0, tf.clip_by_value(cam / tf.maximum(top, 1e-30), 0.0, 1.0), tf.zeros_like(cam))


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
        ExplainError: a stage that is not a conv, or a place outside its output.
    """
    from kerascnn.layers import ConvBNReLU

    if stage.kind != "conv" or stage.input is None:
        raise ExplainError(f"`stage` must be a conv stage of an Explanation. Received: stage={stage.name} ({stage.kind})")
    height, width, channels = stage.shape
    for name, value, size in (("channel", channel, channels), ("row", row, height), ("col", col, width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < size:
            raise ExplainError(f"`{name}` must be an integer from 0 to {size - 1} for {stage.name} "
                               f"({height}x{width}x{channels}). Received: {name}={value!r}")
    block = stage.layer
    conv = block.conv if isinstance(block, ConvBNReLU) else block
    kernel = keras.ops.convert_to_numpy(conv.kernel).astype(np.float32)[..., channel]
    bias = float(keras.ops.convert_to_numpy(conv.bias)[channel]) if conv.use_bias else 0.0
    (kh, kw), (sh, sw) = kernel.shape[:2], _pair(conv.strides)
    dh, dw = _pair(conv.dilation_rate)
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


def explain(model, image, member=1):
    """Explains one image: each stage's activations, the shape arithmetic, probabilities and Grad-CAM.

    Args:
        model: `keras.Model`, as `Explainer` takes it.
        image: float array (H, W) or (H, W, C), as the model takes it (raw
            pixels for a model that scales its own).
        member: int, for an ensemble the member to show (1-based). Defaults to 1.

    Returns:
        An `Explanation`.

    Raises:
        ExplainError: see `Explainer`, or an image of the wrong shape.
    """
    return Explainer(model, member)(image)


def explain_figure(explanation):
    """One page: the input, Grad-CAM over it, the probabilities, then each stage's feature maps.

    The page is a `matplotlib.figure.Figure` (not known to pyplot, as in
    `kerascnn.figures`) made of subfigures: the first holds the input, the
    Grad-CAM overlay and the probability bars; then one per stage, titled
    with its `text` and shape (`28x28x32`), holding the first
    `MAPS_PER_STAGE` channels as small heat maps (a dense or softmax
    stage's vector is one heat map). Render it with `kerascnn.figures.render`.

    Args:
        explanation: an `Explanation`.

    Returns:
        `matplotlib.figure.Figure`.
    """
    from kerascnn.figures import DPI, GREY, new_figure

    columns = MAPS_PER_STAGE // 2
    heights = [2.6] + [1.6 if s.activations.ndim == 3 and s.shape[-1] > columns else 1.1 for s in explanation.stages]
    figure = new_figure(columns * 110, int(sum(heights) * DPI))
    head, *groups = figure.subfigures(len(heights), 1, height_ratios=heights)

    picture = explanation.image if explanation.image.shape[-1] in (3, 4) else explanation.image[..., 0]
    shown = picture / max(float(picture.max()), 1.0) if picture.ndim == 3 else picture  # RGB drawn in [0, 1]
    ax_in, ax_cam, ax_p = head.subplots(1, 3)
    ax_in.imshow(shown, cmap="gray")
    ax_in.set_title("input", fontsize=9)
    ax_cam.imshow(shown, cmap="gray")
    ax_cam.imshow(explanation.gradcam, cmap="jet", alpha=0.5, vmin=0, vmax=1)
    whose = f", member {explanation.member} of {explanation.members}" if explanation.members > 1 else ""
    ax_cam.set_title(f"Grad-CAM, class {explanation.predicted}{whose}", fontsize=9)
    for ax in (ax_in, ax_cam):
        ax.set_axis_off()
    classes = np.arange(len(explanation.probabilities))
    ax_p.bar(classes, explanation.probabilities, color=GREY)
    ax_p.bar([explanation.predicted], [explanation.probabilities[explanation.predicted]], color="#1f60b4")
    ax_p.set_xticks(classes)
    ax_p.set_ylim(0, 1)
    ax_p.set_title("probabilities", fontsize=9)
    ax_p.tick_params(labelsize=7)

    for stage, group in zip(explanation.stages, groups):
        group.suptitle(f"{stage.name}: {stage.text}   {'x'.join(str(d) for d in stage.shape)}", fontsize=9)
        if stage.activations.ndim == 3:
            maps = [stage.activations[..., c] for c in range(min(MAPS_PER_STAGE, stage.shape[-1]))]
        else:  # a vector: one heat map, as rows of up to 32 values
            vector = stage.activations.reshape(-1)
            width = min(32, len(vector))
            maps = [np.pad(vector, (0, -len(vector) % width)).reshape(-1, width)]
        rows = 1 if len(maps) <= columns else 2
        for k, heat in enumerate(maps):
            ax = group.add_subplot(rows, columns if len(maps) > 1 else 1, k + 1)
            ax.imshow(heat, cmap="viridis", interpolation="nearest")
            ax.set_axis_off()
    return figure
