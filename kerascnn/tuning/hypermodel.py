"""The search space and the `best` CNN as a keras-tuner `HyperModel`.

`CNNHyperModel.build(hp)` declares the search space (`search_space`) and maps
the values chosen onto a `TrainConfig`; the trial is then assembled as
`train.py`'s run is (`kerascnn.assemble`): the same model, compile, input
pipeline and schedule. `best_hparams` turns a trial into the
`train.py --hparams` JSON.

Example:

>>> config = CNNHyperModel().config(keras_tuner.HyperParameters())
>>> config.model, config.members, config.lr, config.batch_size, config.filters
('best', 1, 0.001, 100, 32)
"""

import dataclasses

import keras
import keras_tuner

from kerascnn.assemble import assemble, build_model
from kerascnn.config import AUGMENT_FIELDS, MODEL_FIELDS, RECIPE_FIELDS, TrainConfig, resolve
from kerascnn.data import Splits, dataset_spec
from kerascnn.tuning.config import MEMBERS


def search_space(hp):
    """Declares the search space on `hp`; returns the values, keyed by `TrainConfig` field.

    Defaults are `best`'s, so a trial with no values chosen is
    `train.py --model best` with one member (and `best`'s label smoothing).
    """
    return {
        "lr": hp.Float("lr", 1e-4, 1e-2, sampling="log", default=1e-3),  # Adam's initial rate
        "batch_size": hp.Choice("batch_size", [50, 100, 200, 400], default=100),
        "lr_period": hp.Int("lr_period", 2, 8, default=5),  # epochs between halvings
        "filters": hp.Choice("filters", [16, 32, 64], default=32),  # first stage; doubles per stage
        "kernel_size": hp.Choice("kernel_size", [3, 5], default=3),
        "dense_units": hp.Choice("dense_units", [64, 128, 256, 512], default=256),
        "dropout": hp.Choice("dropout", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], default=0.4),
        "batchnorm": hp.Boolean("batchnorm", default=True),
        "rotation": hp.Choice("rotation", [0.0, 5.0, 10.0, 15.0, 20.0], default=15.0),  # degrees
        "shift": hp.Choice("shift", [0.0, 1.0, 2.0, 3.0], default=2.0),  # pixels
    }


TUNED = tuple(search_space(keras_tuner.HyperParameters()))
# The augmentation policy every trial trains with (`--augment auto`, chosen from the data) and its amounts not
# tuned: part of a search's identity, found from the pictures where they are your own (`trial_policy`).
POLICY_KEYS = ("augment", *(f for f in AUGMENT_FIELDS if f not in TUNED))


class CNNHyperModel(keras_tuner.HyperModel):
    """The `best` CNN as a keras-tuner `HyperModel`, built and trained as `train.py` does.

    `build(hp)` maps the values chosen onto a `TrainConfig` (`config(hp)`) and
    builds and compiles the model from it; `fit` assembles the rest of the
    run around that model (pipelines for the batch size chosen, the
    schedule) and trains it.

    Example:

    >>> hp = keras_tuner.HyperParameters()
    >>> hp.values.update({"filters": 64, "batchnorm": False})
    >>> config = CNNHyperModel().config(hp)
    >>> config.filters, config.batchnorm, config.dense_units
    (64, False, 256)

    Args:
        base: `TrainConfig` holding what is not tuned (dataset, seed,
            precision, ...). Defaults to `TrainConfig(model="best", members=1)`.
        spec: `data.DataSpec` of the data, which sets the models' input and
            classes. Defaults to MNIST's.
    """

    def __init__(self, base=None, spec=None):
        super().__init__(name="best_cnn")
        self.spec = spec or dataset_spec()
        # No weight average: it needs thousands of steps, more than a trial has.
        self.base = base or TrainConfig(model="best", members=MEMBERS, ema=0.0)

    def config(self, hp):
        """The `TrainConfig` of the values chosen in `hp` (declaring them if new)."""
        return dataclasses.replace(self.base, **search_space(hp))

    def build(self, hp):
        # keras-tuner clears the Keras session before each build, and with it
        # the dtype policy: build_model sets the precision (and the seed) each time.
        model = build_model(self.config(hp), self.spec)
        # Built now, Adam's state is restored along with the weights when
        # Hyperband promotes a trial from its checkpoint.
        model.optimizer.build(model.trainable_variables)
        return model

    def fit(self, hp, model, x, y, validation_data, callbacks=None, epochs=1, initial_epoch=0, verbose=0, **kwargs):
        config = self.config(hp)
        run = assemble(config, splits=Splits(x, y, *validation_data, None, None, self.spec), model=model)
        nan = keras.callbacks.TerminateOnNaN()
        history = model.fit(
            run.train, validation_data=run.val, epochs=epochs, initial_epoch=initial_epoch,
            callbacks=[*run.schedule, nan, *(callbacks or [])], verbose=verbose, shuffle=False, **kwargs,
        )  # the schedule first, so TensorBoard logs the rate of each epoch
        if model.stop_training:  # only TerminateOnNaN stops a trial early
            raise keras_tuner.errors.FailedTrialError(f"the loss became NaN at lr={config.lr:.3g}")
        return history


def trial_recipe(base, spec=None, images=None):
    """What every trial of a search on `base` is built and trained with besides the tuned values: best's recipe as
    the installed kerascnn resolves it (the augmentation policy and its zoom, label smoothing, weight average,
    member design, the rate cut's factor, ...). Part of a search's identity (`tuning.project`): a kerascnn whose
    recipe differs would train other trials.

    The policy (`POLICY_KEYS`) is left out while it needs the pictures (a
    grey folder or `.npz` of your own, not yet read); `trial_policy` finds
    it from them.

    Example:

    >>> recipe = trial_recipe(TrainConfig(model="best", members=1))
    >>> recipe["augment"], recipe["zoom"], recipe["label_smoothing"], "rotation" in recipe
    ('digits', 0.0, 0.1, False)

    Args:
        base: `TrainConfig` every trial shares.
        spec, images: the data's `DataSpec` and uint8 training pictures, or None (`kerascnn.config.resolve`).
    """
    resolved = resolve(dataclasses.replace(base, precision="float32"), spec, images)  # precision: a fact
    fields = [f for f in ("augment", *MODEL_FIELDS, *RECIPE_FIELDS, "lr_factor")
              if f not in (*TUNED, "members", "epochs")]
    if resolved.augment == "auto":  # chosen from pictures not read yet
        fields = [f for f in fields if f not in POLICY_KEYS]
    return {f: getattr(resolved, f) for f in fields}


def trial_policy(base, splits):
    """The augmentation policy and amounts (`POLICY_KEYS`) every trial of a search on `base` trains with, chosen
    from `splits`' training pictures as `kerascnn.config.resolve` chooses them for a run."""
    recipe = trial_recipe(base, splits.spec, splits.x_train)
    return {k: recipe[k] for k in POLICY_KEYS}


def tuned_values(hp):
    """The tuned values of a trial's hyperparameters (no `tuner/...` bookkeeping)."""
    return {name: hp.values[name] for name in TUNED if name in hp.values}


def best_hparams(trial, data):
    """The `train.py --hparams` JSON of `trial`: `TrainConfig` keys only.

    Args:
        data: dict, the search's data settings (`SearchConfig.data_values`):
            the dataset, and the image size and colour mode it was searched at.
    """
    values = {"model": "best", **data, **tuned_values(trial.hyperparameters)}
    TrainConfig.from_dict(values)  # refuses what train.py would refuse
    return values
