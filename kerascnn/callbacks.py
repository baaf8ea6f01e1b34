"""The callbacks every run uses, made in one place.

* `LearningRateScheduler` with `StepDecay`: the rate times `factor` every
  `period` epochs (halved every 5 by default); Keras logs it per epoch as
  `learning_rate`, so TensorBoard charts it.
* `ModelCheckpoint`: the best model by validation accuracy, `best.keras`.
* `TensorBoard`: per-epoch scalars, train and validation on the same charts.
* `BackupAndRestore`: running the same command again after an interruption
  resumes from the last finished epoch instead of starting over.
* `TerminateOnNaN`: a diverged run stops at once.
* `CSVLogger`: `history.csv`, appended to when a run resumes.
"""

import os

import keras


class StepDecay:
    """Learning-rate schedule: `initial * factor ** (epoch // period)`.

    Epochs are 0-based as Keras passes them, so with the defaults epochs
    1-5 train at 1e-3, 6-10 at 5e-4 and 11-15 at 2.5e-4. The rate depends on
    the epoch only, so a resumed run continues on the same schedule.

    Example:

    >>> schedule = StepDecay(1e-3)
    >>> [schedule(e) for e in (0, 5, 10)]
    [0.001, 0.0005, 0.00025]

    Args:
        initial: float, the rate of the first period.
        period: int, epochs per step. Defaults to 5.
        factor: float, multiplier per step. Defaults to 0.5.
    """

    def __init__(self, initial, period=5, factor=0.5):
        if not initial > 0:
            raise ValueError(f"`initial` must be > 0. Received: initial={initial!r}")
        if not (isinstance(period, int) and period >= 1):
            raise ValueError(f"`period` must be an integer >= 1. Received: period={period!r}")
        if not 0 < factor <= 1:
            raise ValueError(f"`factor` must be in (0, 1]. Received: factor={factor!r}")
        self.initial, self.period, self.factor = initial, period, factor

    def __call__(self, epoch, lr=None):
        return self.initial * self.factor ** (epoch // self.period)


def make_callbacks(config, run_dir):
    """The callbacks for one run of `config` writing into `run_dir`.

    Returns:
        (callbacks, checkpoint): the list for `fit()`, and the checkpoint
        callback, so a resumed run can restore its best score so far.
    """
    checkpoint = keras.callbacks.ModelCheckpoint(
        os.path.join(run_dir, "best.keras"), monitor="val_accuracy", mode="max", save_best_only=True
    )
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup")),
        keras.callbacks.LearningRateScheduler(StepDecay(config.lr, config.lr_period, config.lr_factor)),
        keras.callbacks.TerminateOnNaN(),
        checkpoint,
        keras.callbacks.TensorBoard(run_dir, update_freq="epoch"),
        keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True),
    ]
    return callbacks, checkpoint
