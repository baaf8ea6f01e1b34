"""The ensemble wrapper: one `keras.Model` that averages members' softmax.

Each member learns from its own loss, as if trained alone: in training the
loss is the mean over members of each member's cross-entropy on its own
prediction (not the cross-entropy of the averaged prediction, which would
couple the members). With Adam, whose steps do not depend on the scale of
the loss, the mean gives each member the update it would get alone.
Evaluation, `predict()` and the accuracy metric use the averaged output.

The members' own outputs reach the loss as the model's output: in training,
`call` returns them as a tuple, one `(batch, classes)` tensor a member, and
the model's `compute_loss` takes each member's loss from its own while
`compute_metrics` scores their mean. Each member runs once per training
step, and nothing is kept on the model between `call` and the loss, so the
same code runs under `fit()` on every backend and strategy. (A tuple, not
one stacked tensor: on TensorFlow the cross-entropy of a tensor straight
out of a softmax is computed from its logits, as for a model alone; a slice
of a stack would lose that and change the numbers.)

With `tta` (pixels), inference also averages over shifted copies of each
image (test-time augmentation): the image and its copies moved `tta` pixels
up, down, left and right, each through every member. Training sees the
images unshifted; the augmentation layers inside the members do that job.

Example:

>>> from kerascnn.models import create_model
>>> ens = create_model("ensemble", members=2)
>>> len(ens.members), ens.count_params()
(2, 1239572)
"""

import keras
import numpy as np
from keras import ops

from kerascnn.layers import DIGIT_CLASSES, DIGIT_SHAPE, PACKAGE, model_input_shape, shift_images, shift_views
from kerascnn.models.lecture import STAGES, LectureCNN, front
from kerascnn.models.registry import ModelError, register_model


@keras.saving.register_keras_serializable(package=PACKAGE)
class Ensemble(keras.Model):
    """Averages the softmax outputs of its member models.

    Called with `training=True` (as `fit()` calls it), it returns the
    members' outputs, a tuple of `(batch, classes)` tensors, for the
    per-member loss; otherwise their average, `(batch, classes)`.

    Args:
        members: list of `keras.Model`, each mapping images to class
            probabilities of the same shape.
        tta: int, pixels: at inference, also average over the images
            shifted this far up, down, left and right (0: off, the default).
        temperature: float > 0: at inference, the average `p` becomes
            `softmax(log(p) / temperature)`, the calibration fitted on
            validation after training (`kerascnn.calibration`). Defaults to
            1.0: the plain average.
    """

    def __init__(self, members, tta=0, temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        if not members:
            raise ValueError(f"`members` must be a non-empty list of models. Received: members={members!r}")
        self.members = list(members)
        self.tta = tta
        self.views = tuple(shift_views(tta))
        if not temperature > 0:
            raise ValueError(f"`temperature` must be a number > 0. Received: temperature={temperature!r}")
        self.temperature = float(temperature)

    def build(self, input_shape):
        height, width = input_shape[1:3]
        if self.tta and any(side is not None and self.tta >= side for side in (height, width)):
            raise ModelError(f"`tta` must be less than the image's side ({height}x{width}). Received: tta={self.tta}")
        for member in self.members:
            if not member.built:
                member.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        if training:  # each member once, on the images as they are
            return tuple(member(inputs, training=training) for member in self.members)
        views = [shift_images(inputs, dy, dx) for dy, dx in self.views]
        outputs = [member(view, training=training) for view in views for member in self.members]
        average = ops.mean(ops.stack(outputs, axis=0), axis=0)
        if self.temperature == 1.0:
            return average
        logp = ops.log(ops.maximum(ops.cast(average, "float32"), 1e-12))
        return ops.softmax(logp / self.temperature, axis=-1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, tuple):  # evaluation: the loss of the ensemble's own prediction
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        # Training: the mean of the members' losses, each on its own prediction.
        losses = [super(Ensemble, self).compute_loss(x, y, out, sample_weight, training) for out in y_pred]
        return ops.mean(ops.stack(losses))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, tuple):  # training: the metrics score the ensemble's prediction, as in evaluation
            y_pred = ops.mean(ops.stack(y_pred, axis=0), axis=0)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def get_config(self):
        members = [keras.saving.serialize_keras_object(m) for m in self.members]
        return {**super().get_config(), "members": members, "tta": self.tta, "temperature": self.temperature}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        members = [keras.saving.deserialize_keras_object(m) for m in config.pop("members")]
        return cls(members, **config)


class MemberPredictor:
    """Each member's softmax output for a model, in one `predict()` pass.

    One functional model over the members (sharing their weights) outputs
    all of them at once: one predict loop where a `predict()` per member
    runs one each, and the members' ops can run side by side. For `best` on
    5,000 validation images on the development CPU: about 1.5 s against
    2.8 s. A model that is not an `Ensemble` counts as its own single member.

    Example:

    >>> import numpy as np
    >>> from kerascnn.models import create_model
    >>> predictor = MemberPredictor(create_model("ensemble", members=2))
    >>> predictor(np.zeros((3, 28, 28, 1), "float32")).shape
    (2, 3, 10)

    Each member's output is averaged over the views of the model's
    test-time augmentation, if it has any, so the mean over members is the
    model's own prediction.

    Args:
        model: `keras.Model`, an `Ensemble` or a plain classifier.
        tta: int, pixels: the test-time augmentation to apply (0: none).
            Defaults to the model's own.
    """

    def __init__(self, model, tta=None):
        self.source = model
        members = model.members if isinstance(model, Ensemble) else [model]
        tta = getattr(model, "tta", 0) if tta is None else tta
        inputs = keras.Input(model_input_shape(members[0]))
        views = [shift_images(inputs, dy, dx) for dy, dx in shift_views(tta)]
        per_member = [ops.mean(ops.stack([member(view) for view in views], axis=0), axis=0) for member in members]
        outputs = ops.stack(per_member, axis=1)  # (N, members, classes)
        self.model = keras.Model(inputs, outputs, name=f"{model.name}_members")

    def __call__(self, x, batch_size=256):
        """(members, N, classes) float32 probabilities for images `x` as the model takes them."""
        probabilities = self.model.predict(x, batch_size=batch_size, verbose=0)
        return np.asarray(probabilities, np.float32).transpose(1, 0, 2)


def build_ensemble(member_fn, members, name, shape=DIGIT_SHAPE, tta=0):
    """An `Ensemble` of `members` models `member_fn(name=...)`, built for inputs of `shape`."""
    model = Ensemble([member_fn(name=f"member_{i}") for i in range(members)], tta=tta, name=name)
    model.build((None, *shape))
    return model


@register_model("ensemble")
def ensemble(
    *,
    members=3,
    filters=32,
    kernel_size=3,
    dense_units=256,
    dropout=0.4,
    input_shape=DIGIT_SHAPE,
    num_classes=DIGIT_CLASSES,
    image_size=None,
    rescale=None,
    tta=0,
    global_pool=False,
    stages=STAGES,
):
    """The lecture's ensemble: `members` subclassed CNNs, softmax averaged.

    Each member resizes and rescales its own input when `image_size` and
    `rescale` are given (see `kerascnn.layers.pixel_input`).
    """
    shape, _ = front(input_shape, image_size=image_size, rescale=rescale, stages=stages)
    member = lambda name: LectureCNN(
        filters=filters, kernel_size=kernel_size, dense_units=dense_units, dropout=dropout, num_classes=num_classes,
        image_size=image_size, rescale=rescale, global_pool=global_pool, stages=stages, name=name,
    )
    return build_ensemble(member, members, "ensemble", shape, tta)
