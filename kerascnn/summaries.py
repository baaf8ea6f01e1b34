"""TensorBoard summaries that show what went wrong, beside Keras' own scalars.

`keras.callbacks.TensorBoard` already writes per-epoch loss, accuracy and
learning rate into `<run>/train` and `<run>/validation`. `TensorBoardSummaries`
adds, in the same run directory:

* `train/`: the run's resolved config as the text summary `config`;
* `validation/`: the image summaries `confusion_matrix` and `misclassified`
  (the most confident mistakes, labelled true/predicted) on the validation
  split, at the end of training and every `image_every` epochs; at the same
  moments, what is inside the network (of member 1 for an `Ensemble`):
  `filters`, the first conv layer's kernels, one tile per filter, and
  `feature_maps/00_input`, `feature_maps/01_<layer>`, ... in the order of
  the network: the first validation image and each conv and pooling stage's
  feature maps for it (the stages `python -m kerascnn explain` shows), so
  the filters and maps can be watched forming over the epochs;
* `validation/member_<i>/`: for an `Ensemble`, each member's validation
  accuracy per epoch under the tag `epoch_accuracy`, the tag Keras uses for
  the ensemble's, so TensorBoard draws the members on the same chart.

Steps are 0-based epochs, as Keras' callback writes them, so the images of
epoch N sit at the same step as its scalars.

What is inside the network is read through `kerascnn.inspect` (the one way
to look inside a model: its stages, their maps, the first conv kernel), the
same reading the explain command and the page use: a report is built on
that look inside, never the other way round.

Example:

>>> import numpy as np
>>> x, y = np.zeros((8, 28, 28, 1), "uint8"), np.arange(8) % 10
>>> callback = TensorBoardSummaries("logs/run", x, y, image_every=5)
>>> callback.image_every
5
"""

import json
import os

import keras
import numpy as np

from kerascnn import figures
from kerascnn.config import check_value
from kerascnn.data import model_input
from kerascnn.figures import MAPS_PER_STAGE
from kerascnn.inspect import Explainer, InspectError
from kerascnn.layers import takes_raw_pixels
from kerascnn.models import Ensemble
from kerascnn.models.ensemble import MemberPredictor


class TensorBoardSummaries(keras.callbacks.Callback):
    """Writes the confusion matrix, misclassified digits, filters, feature maps, config and member accuracies.

    Image summaries are computed from the model as it stands at the end of
    that epoch (not the best checkpoint), on the whole validation split.
    Nothing is written when training stopped on a NaN loss.

    The pictures of the inside (read through `kerascnn.inspect.Explainer`,
    built once, at the first images; for an `Ensemble`, of member 1) are:

    * `filters`: the first conv layer's kernels as one grid
      (`kerascnn.figures.draw_filters`): 8 tiles a row, one per filter,
      each kh x kw weights enlarged 8 times and scaled to its own range
      (light: its highest weight, dark: its lowest), with blue one-pixel
      gaps. A kernel over 1 input channel is drawn grey; over 3 (RGB
      pictures), in colour, as the colours it responds to; over any other
      number, the mean over its input channels, in grey.
    * `feature_maps/00_input`: the first validation image, the same one at
      every epoch, so the pictures compare over the epochs; then
      `feature_maps/01_<layer name>`, `02_...`: each conv and pooling stage
      in the order of the network (global pooling, dense and softmax stages
      have no maps), its first `kerascnn.figures.MAPS_PER_STAGE` (16)
      channels for that image as heat maps (`kerascnn.figures.draw_feature_maps`),
      8 a row, each scaled to its own range and enlarged to about 56 pixels
      a side. The numbers make TensorBoard, which sorts tags by name, show
      the stages in the network's order.

    A model `Explainer` cannot read (one without a conv layer, or a
    subclassed model other than `LectureCNN`) gets no `filters` or
    `feature_maps/...` images; the others are written as usual.

    Example:

    ```python
    callback = TensorBoardSummaries(run_dir, x_val, y_val, config=config_dict, image_every=5)
    model.fit(train_ds, validation_data=val_ds, callbacks=[tensorboard, callback])
    ```

    Args:
        log_dir: str, the run directory (the `log_dir` of Keras'
            `TensorBoard` callback).
        x_val: array (N, 28, 28, 1), validation images: uint8 in [0, 255]
            (scaled by 1/255 as the input pipeline does) or float in [0, 1].
        y_val: int array (N,), validation labels.
        config: dict or None, the run's config, shown as a text summary.
            Defaults to None (no text summary).
        image_every: int >= 0, also write the image summaries every this
            many epochs; 0 writes them at the end of training only.
            Defaults to 0.
        batch_size: int >= 1, batch size for the validation predictions.
            Defaults to 256.
        max_misclassified: int >= 1, digits in the `misclassified` grid.
            Defaults to 36.
        class_names: list of str or None, the names on both pictures'
            labels. Defaults to the class indices.
    """

    def __init__(self, log_dir, x_val, y_val, config=None, image_every=0, batch_size=256, max_misclassified=36,
                 class_names=None):
        super().__init__()
        x_val, y_val = np.asarray(x_val), np.asarray(y_val).reshape(-1)
        if len(x_val) == 0 or len(x_val) != len(y_val):
            raise ValueError(
                "`x_val` and `y_val` must be non-empty and of the same length. "
                f"Received: len(x_val)={len(x_val)}, len(y_val)={len(y_val)}"
            )
        _check_int("image_every", image_every, 0)
        _check_int("batch_size", batch_size, 1)
        _check_int("max_misclassified", max_misclassified, 1)
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"`config` must be a dict or None. Received: config={type(config).__name__}")
        self.log_dir = str(log_dir)
        self.x_val, self.y_val = x_val, y_val
        self.config = config
        self.image_every = int(image_every)
        self.batch_size = int(batch_size)
        self.max_misclassified = int(max_misclassified)
        self.class_names = None if class_names is None else [str(name) for name in class_names]
        self._writers = {}
        self._last_epoch = None
        self._images_at = None
        self._members = None  # the MemberPredictor of the model being trained
        self._inside = None  # (model, Explainer or None), built at the first images

    # Writers -----------------------------------------------------------------

    def _writer(self, name):
        import tensorflow as tf

        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(os.path.join(self.log_dir, name))
        return self._writers[name]

    def _close(self):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    # Callback hooks ----------------------------------------------------------

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        if self.config is not None:
            with self._writer("train").as_default():
                tf.summary.text("config", config_markdown(self.config), step=0)
            self._writer("train").flush()

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        images_now = bool(self.image_every) and (epoch + 1) % self.image_every == 0
        members = self.model.members if isinstance(self.model, Ensemble) else None
        if not (images_now or members) or getattr(self.model, "stop_training", False):
            return
        probabilities, member_probabilities = self._predict()
        if members:
            self._write_member_accuracy(epoch, member_probabilities)
        if images_now:
            self._write_images(epoch, probabilities)

    def on_train_end(self, logs=None):
        try:
            stopped = getattr(self.model, "stop_training", False)  # set by fit(), e.g. TerminateOnNaN
            if self._last_epoch is not None and self._images_at != self._last_epoch and not stopped:
                self._write_images(self._last_epoch, self._predict()[0])
        finally:
            self._close()

    def write_model(self, model, epoch):
        """Writes what the callback writes at the end of training, for `model` at step `epoch` (0-based).

        For a run whose training could not write them (several processes:
        Keras' JAX `predict()` cannot gather outputs spread over processes):
        its best checkpoint, loaded on one process after training. The
        config as text, then each member's validation accuracy (an
        `Ensemble`) and the images, at the step of `epoch`.
        """
        self.set_model(model)
        try:
            self.on_train_begin()
            probabilities, member_probabilities = self._predict()
            if member_probabilities is not None:
                self._write_member_accuracy(epoch, member_probabilities)
            self._write_images(epoch, probabilities)
        finally:
            self._close()

    # Work --------------------------------------------------------------------

    def _scaled(self, x=None):
        """Validation images (all, or `x`) as the model takes them: raw pixels or scaled to [0, 1]."""
        x = self.x_val if x is None else x
        if x.dtype != np.uint8:
            return x.astype("float32")
        return model_input(x, takes_raw_pixels(self.model))

    def _predict(self):
        """Validation probabilities of the model, and of each member for an ensemble."""
        x = self._scaled()
        if isinstance(self.model, Ensemble):
            if self._members is None or self._members.source is not self.model:
                self._members = MemberPredictor(self.model)
            members = self._members(x, batch_size=self.batch_size)
            return members.mean(axis=0), members  # what `Ensemble.call` computes
        return self.model.predict(x, batch_size=self.batch_size, verbose=0), None

    def _write_member_accuracy(self, epoch, member_probabilities):
        import tensorflow as tf

        for i, probabilities in enumerate(member_probabilities):
            accuracy = float(np.mean(probabilities.argmax(axis=1) == self.y_val))
            writer = self._writer(os.path.join("validation", f"member_{i}"))
            with writer.as_default():
                tf.summary.scalar("epoch_accuracy", accuracy, step=epoch)
            writer.flush()

    def _write_images(self, epoch, probabilities):
        import tensorflow as tf

        accuracy = float(np.mean(probabilities.argmax(axis=1) == self.y_val))
        title = f"validation, epoch {epoch + 1}: accuracy {accuracy:.4f}"
        grid = figures.draw_misclassified(self.x_val, self.y_val, probabilities, self.max_misclassified,
                                          class_names=self.class_names)
        writer = self._writer("validation")
        with writer.as_default():
            picture = figures.draw_confusion(self.y_val, probabilities, title, self.class_names)
            tf.summary.image(
                "confusion_matrix", picture[None], step=epoch,
                description="Validation split; rows: true class, columns: predicted.",
            )
            tf.summary.image(
                "misclassified", grid[None], step=epoch,
                description="Misclassified validation digits, most confident first: true / predicted.",
            )
            self._write_inside(epoch)
        writer.flush()
        self._images_at = epoch

    def _explainer(self):
        """The Explainer of the model (member 1 of an ensemble), built once; None for a model without conv."""
        if self._inside is None or self._inside[0] is not self.model:
            try:
                self._inside = (self.model, Explainer(self.model, member=1))
            except InspectError:  # no conv layer, or a model whose layers cannot be read in order
                self._inside = (self.model, None)
        return self._inside[1]

    def _write_inside(self, epoch):
        """`filters` and `feature_maps/...` (see the class docstring), into the writer in use."""
        import tensorflow as tf

        explainer = self._explainer()
        if explainer is None:
            return
        whose = f", member 1 of {len(self.model.members)}" if isinstance(self.model, Ensemble) else ""
        kernel = explainer.first_kernel()
        kh, kw, channels, count = kernel.shape
        tf.summary.image(
            "filters", figures.draw_filters(kernel)[None], step=epoch,
            description=f"The first conv layer's {count} filters{whose}, {kh}x{kw} over {channels} input "
                        f"channel{'s' * (channels != 1)}, one tile each, scaled to its own range: light, its "
                        "highest weight.",
        )
        explanation = explainer(self._scaled(self.x_val[:1])[0])
        stages = [s for s in explanation.stages if s.kind in ("conv", "pool") and s.activations.ndim == 3]
        image = explanation.image
        shown = image if image.shape[-1] == 3 else image.mean(axis=-1)  # RGB as it is, else grey
        tf.summary.image(
            "feature_maps/00_input", figures.tile_grid(shown[None], scale=figures.enlargement(*image.shape[:2]))[None],
            step=epoch, description="Validation image 0: every `feature_maps` picture, at every epoch, is of it.",
        )
        for index, stage in enumerate(stages, start=1):
            tf.summary.image(
                f"feature_maps/{index:02d}_{stage.name}",
                figures.draw_feature_maps(stage.activations, MAPS_PER_STAGE)[None], step=epoch,
                description=f"{stage.text}, output {'x'.join(str(d) for d in stage.shape)}{whose}: the first "
                            f"{min(MAPS_PER_STAGE, stage.shape[-1])} channels for validation image 0, "
                            "each scaled to its own range.",
            )


def _check_int(name, value, minimum):
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= minimum
    check_value(ok, name, f"an integer >= {minimum}", value, error=ValueError)


def config_markdown(config):
    """A config dict as a Markdown table (TensorBoard's text dashboard renders it).

    >>> print(config_markdown({"model": "best", "lr": 0.001, "members": None}))
    | setting | value |
    |---|---|
    | `lr` | `0.001` |
    | `members` | `null` |
    | `model` | `best` |
    """
    shown = lambda value: value if isinstance(value, str) else json.dumps(value)  # as in config.json
    rows = [f"| `{key}` | `{shown(value)}` |" for key, value in sorted(config.items())]
    return "\n".join(["| setting | value |", "|---|---|", *rows])


def summaries_callback(config, run_dir, x_val, y_val):
    """The `TensorBoardSummaries` for a run of `config` (a `TrainConfig`) in `run_dir`.

    The text summary shows the run's `config.json` (the resolved config,
    precision included) when it exists, else `config` itself; the pictures
    name the classes as the run's `data.json` does.
    """
    from kerascnn.config import BATCH
    from kerascnn.rundir import CONFIG, DATA, read_json

    path = os.path.join(run_dir, CONFIG)
    values = read_json(path) if os.path.exists(path) else config.to_dict()
    data = os.path.join(run_dir, DATA)
    names = read_json(data).get("class_names") if os.path.exists(data) else None
    return TensorBoardSummaries(
        run_dir, x_val, y_val, config=values, image_every=config.image_every,
        batch_size=config.batch_size or BATCH,  # predictions only; a config resolved without its data has no batch
        class_names=names,
    )
