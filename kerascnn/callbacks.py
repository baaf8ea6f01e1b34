"""The callbacks every run uses, made in one place.

* `LearningRateScheduler` with `StepDecay`: the rate times `factor` every
  `period` epochs (halved every 5 by default); Keras logs it per epoch as
  `learning_rate`, so TensorBoard charts it.
* `SafeModelCheckpoint`: Keras' `ModelCheckpoint` keeping the best model by
  validation accuracy in `best.keras`, written atomically and never from
  an epoch whose loss was NaN; its epoch and score in `best.json`, which
  a resumed run's checkpoint starts from.
* `TensorBoard`: per-epoch scalars, train and validation on the same charts.
* `BackupAndRestore`: running the same command again after an interruption
  resumes from the last finished epoch instead of starting over; the backup
  is kept until the run's `metrics.json` is written. A run of several
  processes uses `SharedBackup`: one writer, copies that a kill cannot
  leave half-written, a barrier, the same epoch restored in every process.
* `EpochSeeds`: each epoch's data order, dropout and augmentation depend on
  (seed, epoch) only, so a resumed run repeats the uninterrupted one.
* `SwapEMAWeights` (when the run averages its weights, `ema` > 0):
  validation, the checkpoint, the logs and the summaries see the average
  of the weights; `RestoreTrainingWeights` puts the trained weights back
  before the backup, so training and resuming continue from them.
* `TerminateOnNaN`: a diverged run stops at once.
* `EpochLog`: Keras' `CSVLogger` writing `history.csv` (epochs numbered
  from 1, as in Keras' log), appended to when a run resumes.
* `TensorBoardSummaries` (given the validation arrays): confusion matrix,
  misclassified digits, the first conv layer's filters and one image's
  feature maps as images, the config as text, ensemble members'
  validation accuracy (see `kerascnn.summaries`).
"""

import csv
import json
import math
import os
import shutil

import keras

from kerascnn import compat, distribute, rundir
from kerascnn.config import check_value, resolve
from kerascnn.summaries import summaries_callback

EPOCHS_FROM = 1  # epochs are numbered from 1 wherever a run writes them (best.json, history.csv, metrics.json)


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
        check_value(initial > 0, "initial", "> 0", initial, error=ValueError)
        check_value(isinstance(period, int) and period >= 1, "period", "an integer >= 1", period, error=ValueError)
        check_value(0 < factor <= 1, "factor", "in (0, 1]", factor, error=ValueError)
        self.initial, self.period, self.factor = initial, period, factor

    def __call__(self, epoch, lr=None):
        return self.initial * self.factor ** (epoch // self.period)


class EpochSeeds(keras.callbacks.Callback):
    """Makes every epoch's randomness a function of (seed, epoch) alone.

    At the start of each epoch it sets the data-order variable read by
    `kerascnn.pipeline.make_dataset(..., epoch=...)` and re-seeds every Keras
    `SeedGenerator` in the model (dropout, augmentation). Keras'
    `BackupAndRestore` saves weights and optimizer state but not these
    random states, so without this a run resumed at epoch 7 would draw the
    masks and augmentations of epoch 1; with it, a resumed run repeats the
    uninterrupted run's epochs exactly (given deterministic kernels).

    Args:
        seed: int, the run's seed.
        epoch_variable: scalar integer `tf.Variable` or None, the data
            pipeline's epoch.
    """

    def __init__(self, seed, epoch_variable=None):
        super().__init__()
        self.seed = seed
        self.epoch_variable = epoch_variable

    def on_epoch_begin(self, epoch, logs=None):
        if self.epoch_variable is not None:
            self.epoch_variable.assign(epoch)
        for i, state in enumerate(compat.seed_states(self.model)):
            compat.set_seed_state(state, seed=self.seed * 7919 + i, stream=epoch)  # a prime apart per generator


class SafeModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` that cannot leave a broken or diverged checkpoint, and records what it holds.

    Keras writes the model to a temporary `.keras` file in the same
    directory, which is then renamed over `filepath`
    (`kerascnn.rundir.atomic_write`): a process killed mid-save leaves the
    previous checkpoint intact. An epoch whose loss or monitored value is
    not finite is never saved, so a run that diverges keeps the model from
    before.

    After each save, the epoch (1-based, as Keras' log prints it) and its
    monitored value are recorded in `best_epoch` and `best` and, for the
    next sitting of a resumed run, in a JSON file beside the checkpoint
    (`best.json` for `best.keras`; `EPOCHS_FROM` says where it counts from,
    and a record without it, written before it was 1-based, is read as
    0-based). A
    checkpoint callback created where that record exists starts from it:
    the earlier sittings' best is the value to beat (Keras'
    `initial_value_threshold`), and `best_epoch` stays theirs until an epoch
    beats it. This is where a run's best epoch and value come from.

    Example:

    >>> cb = SafeModelCheckpoint("/tmp/run/best.keras", monitor="val_accuracy", mode="max")
    >>> cb.filepath, cb.record_path, cb.best_epoch
    ('/tmp/run/best.keras', '/tmp/run/best.json', None)

    Args:
        filepath: str, where the checkpoint ends up; must end in `.keras`.
        **kwargs: passed to `keras.callbacks.ModelCheckpoint`
            (`save_best_only` defaults to True here).

    Attributes:
        best: float or None, the monitored value of the epoch the checkpoint
            holds (with `save_best_only`), over all sittings.
        best_epoch: int or None, that epoch, 1-based as Keras' log and
            `history.csv` (`EpochLog`) number it; None before any save.
    """

    def __init__(self, filepath, **kwargs):
        if not str(filepath).endswith(".keras"):
            raise ValueError(f"`filepath` must end in .keras. Received: filepath={filepath!r}")
        kwargs.setdefault("save_best_only", True)
        self.final_path = str(filepath)
        self.record_path = self.final_path[: -len(".keras")] + ".json"
        record = self._read_record(kwargs.get("monitor", "val_loss"))
        if record is not None and kwargs.get("initial_value_threshold") is None:
            kwargs["initial_value_threshold"] = record["best"]
        super().__init__(self.final_path, **kwargs)
        self.best_epoch = None if record is None else record["best_epoch"]

    def _read_record(self, monitor):
        """The earlier sittings' record for `monitor` (its epoch 1-based), or None."""
        if not os.path.exists(self.record_path):
            return None
        record = rundir.read_json(self.record_path)
        if record.get("monitor") != monitor:
            return None
        # A record without "epochs_from" was written when it counted from 0.
        return {**record, "best_epoch": record["best_epoch"] + 1 - record.get("epochs_from", 0)}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        values = [logs.get("loss"), logs.get(self.monitor)]
        if any(v is None or not math.isfinite(float(v)) for v in values):
            return
        with rundir.atomic_write(self.final_path) as partial:
            self.filepath = partial  # Keras saves here, if the epoch is better
            try:
                super().on_epoch_end(epoch, logs)
            finally:
                self.filepath = self.final_path
            saved = os.path.exists(partial)
        if saved:
            self.best, self.best_epoch = float(logs[self.monitor]), epoch + 1
            rundir.write_json(self.record_path, {"monitor": self.monitor, "best": self.best,
                                                 "best_epoch": self.best_epoch, "epochs_from": EPOCHS_FROM})


class EpochLog(keras.callbacks.CSVLogger):
    """Keras' `CSVLogger` numbering its rows' epochs from 1, as Keras' log and `best.json` do.

    Appending to a file begun with 0-based rows (a run begun before this
    numbering, resumed) keeps that file's numbering, so its rows stay one
    sequence; `epochs_from` reads a file's numbering.

    Args:
        filename: str, the CSV file (`history.csv`).
        **kwargs: passed to `keras.callbacks.CSVLogger`.
    """

    def __init__(self, filename, **kwargs):
        super().__init__(filename, **kwargs)
        self.first = EPOCHS_FROM

    def on_train_begin(self, logs=None):
        if self.append:
            self.first = epochs_from(self.filename)
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + self.first, logs)


def epochs_from(path):
    """The number a `history.csv` gives its first epoch: `EPOCHS_FROM`, or 0 for a file written before that."""
    try:
        with open(path, newline="") as f:
            first = next(csv.DictReader(f), None)
    except OSError:
        return EPOCHS_FROM
    return EPOCHS_FROM if first is None else int(first["epoch"])


class RestoreTrainingWeights(keras.callbacks.Callback):
    """Puts the trained weights back in the model after `SwapEMAWeights` swapped the average in.

    `SwapEMAWeights(swap_on_epoch=True)` swaps the weight average into the
    model at the end of each epoch, for the callbacks after it, and swaps
    it out at the next epoch's start. A backup written in between would
    hold the average as the model's weights (and the trained ones as the
    average): a run resumed from it would train on from the average and
    part from the uninterrupted run. Placed just before `BackupAndRestore`,
    this swaps back first, through `SwapEMAWeights`' own hook, so backups
    hold what an uninterrupted run holds at the next epoch's start.

    Args:
        swap: the run's `keras.callbacks.SwapEMAWeights`.
    """

    def __init__(self, swap):
        super().__init__()
        self.swap = swap

    def on_epoch_end(self, epoch, logs=None):
        self.swap.on_epoch_begin(epoch + 1, logs)  # swaps the trained weights back in


class SharedBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` for a run of several processes: one writer, whole copies, one epoch everywhere.

    Keras' callback has no multi-process logic: every process writes the
    same files, with no barrier, and loads whatever it finds. Here:

    * Every process restores from its own `backup_dir` as Keras does: the
      chief's is the run's `backup/`; each other process's holds the copy the
      chief sent it when the run opened (`kerascnn.distribute.share_files`),
      so all load the same bytes. Then every process checks that all restored
      the same epoch (`kerascnn.distribute.check_same`), and stops with exit 2
      naming each one's if not.
    * At each epoch's end every process writes its own folder (saving the
      weights gathers them from all processes, so all must take part; only
      the chief's is the run's, the others' are temporary and never read),
      in an order that leaves a usable copy wherever a kill -9 cuts it: the
      newest copy is copied over the previous one, the newest metadata
      removed (a newest copy without it is passed over for the previous
      one: `kerascnn.resuming.prepare`), then the weights and the metadata
      are each written whole beside their place and renamed into it. Then
      every process waits at a barrier, so no process starts the next epoch
      before the backup of this one is on the chief's disk.

    Example:

    >>> from kerascnn.distribute import Plan
    >>> SharedBackup("/tmp/run/backup", Plan("multiworker", replicas=2, num_processes=2)).backup_dir
    '/tmp/run/backup'

    Args:
        backup_dir: str, this process's backup folder.
        plan: the run's `kerascnn.distribute.Plan`.
    """

    def __init__(self, backup_dir, plan):
        super().__init__(backup_dir, double_checkpoint=True, delete_checkpoint=False)
        self.plan = plan
        self.copies = compat.backup_copies(backup_dir)  # [(weights, metadata)], the newest first

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # Keras loads the newest copy, which resuming.prepare made usable
        metadata = self.copies[0][1]
        epoch = compat.backup_epoch(metadata) if os.path.exists(metadata) else 0
        distribute.check_same(self.plan, epoch, "the epochs restored from the backup")

    def on_epoch_end(self, epoch, logs=None):
        self.write(epoch + 1)
        distribute.barrier(self.plan, f"kerascnn backup of epoch {epoch + 1}")

    def write(self, epochs):
        """Writes the model's state after `epochs` finished epochs, in the order the class docstring gives."""
        (weights, metadata), (previous_weights, previous_metadata) = self.copies
        os.makedirs(self.backup_dir, exist_ok=True)
        if os.path.exists(weights) and os.path.exists(metadata):
            for source, target in ((weights, previous_weights), (metadata, previous_metadata)):
                with rundir.atomic_write(target, extension=".bkp") as tmp:
                    shutil.copyfile(source, tmp)
        if os.path.exists(metadata):
            os.remove(metadata)
        with rundir.atomic_write(weights, extension=".weights.h5") as tmp:
            self.model.save_weights(tmp)
        with rundir.atomic_write(metadata) as tmp, open(tmp, "w") as f:
            json.dump(compat.backup_metadata(epochs), f)


def schedule_callbacks(config, epoch_variable=None):
    """The callbacks that set each epoch of a run of `config`, in order.

    `EpochSeeds` (the epoch's data order, dropout and augmentation), the
    learning-rate schedule, and, when the run averages its weights (the
    resolved config's `ema` > 0), `SwapEMAWeights`, which puts
    the average in the model for validation and for the callbacks after it
    at the end of each epoch. Called by `kerascnn.assemble.assemble`, so
    every way of training runs the same schedule.

    Args:
        config: `TrainConfig`, as `kerascnn.config.resolve` made it (a run's
            `Run.config`); resolved here if not.
        epoch_variable: the data pipeline's epoch `tf.Variable` (see
            `EpochSeeds`), or None. Defaults to None.
    """
    config = resolve(config)  # a no-op for a run's config: resolved once, by assemble
    callbacks = [
        EpochSeeds(config.seed, epoch_variable),
        keras.callbacks.LearningRateScheduler(StepDecay(config.lr, config.lr_period, config.lr_factor)),
    ]
    if config.ema:
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    return callbacks


# The checkpoint rules (`TrainConfig.checkpoint`): what `best.keras` keeps, as ModelCheckpoint's monitor and mode,
# and the words metrics.json and the end of a run say it with.
CHECKPOINT_RULES = {
    "accuracy": ("val_accuracy", "max", "the highest validation accuracy"),
    "nll": ("val_nll", "min", "the lowest validation cross-entropy (unsmoothed)"),
    "last": ("val_accuracy", "max", "the last epoch"),
}


def checkpoint_callback(config, run_dir):
    """The run's `SafeModelCheckpoint` into `run_dir/best.keras`, keeping the epoch `config.checkpoint` says.

    `accuracy` and `nll` save an epoch that beats the best so far (Keras'
    `save_best_only`); `last` saves every epoch, so the file holds the
    final one. In a resumed run, it starts from the earlier sittings' record (best.json).
    """
    monitor, mode, _ = CHECKPOINT_RULES[resolve(config).checkpoint]
    return SafeModelCheckpoint(os.path.join(run_dir, rundir.BEST_MODEL), monitor=monitor, mode=mode,
                               save_best_only=resolve(config).checkpoint != "last")


def make_callbacks(config, run_dir, schedule, validation=None, plan=None):
    """The callbacks for one run of `config` writing into `run_dir`, in order.

    Args:
        config: the run's resolved `TrainConfig` (`Run.config`).
        schedule: the run's `schedule_callbacks` (`Run.schedule`); they come first.
        validation: (x_val, y_val) or None: with the validation arrays,
            `kerascnn.summaries.TensorBoardSummaries` is added (confusion
            matrix, misclassified digits, filters and feature maps, the
            config as text, ensemble members' accuracy). Defaults to None.
        plan: the run's `kerascnn.distribute.Plan`: with several processes,
            the backup is a `SharedBackup`. Defaults to None (one process).

    Returns:
        The list for `fit()`.
    """
    callbacks = [
        *schedule,
        keras.callbacks.TerminateOnNaN(),
        checkpoint_callback(config, run_dir),
        keras.callbacks.TensorBoard(run_dir, update_freq="epoch"),
        EpochLog(os.path.join(run_dir, rundir.HISTORY), append=True),
    ]
    if validation is not None:
        callbacks.append(summaries_callback(config, run_dir, *validation))
    swaps = [c for c in schedule if isinstance(c, keras.callbacks.SwapEMAWeights)]
    callbacks += [RestoreTrainingWeights(swap) for swap in swaps]
    # Last: an epoch counts as done for resuming only once its checkpoint and logs are
    # written; double_checkpoint keeps the previous backup if a kill cuts a save short.
    # Kept when fit() ends (delete_checkpoint=False): `kerascnn.training.train` removes it once
    # metrics.json is written, so a stop during the test scoring still finds the run to resume.
    backup_dir = os.path.join(run_dir, rundir.BACKUP)
    if plan is not None and plan.num_processes > 1:
        callbacks.append(SharedBackup(backup_dir, plan))
    else:
        callbacks.append(keras.callbacks.BackupAndRestore(backup_dir, double_checkpoint=True, delete_checkpoint=False))
    return callbacks
