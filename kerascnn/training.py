"""Training: one run of a config, from its assembly to its test score.

`train(config)` is the whole job behind `python train.py`, in four steps:
assemble the run (`kerascnn.assemble`), open its directory (a new one, or
the interrupted run of the same config to resume), fit with the run's
callbacks, and score the checkpoint its rule kept on validation, once,
on the test set. Everything it can check before spending training time
(the config, the data, the model's arguments, the log directory) is
checked before the run directory exists, so a bad run leaves nothing behind.

Example:

>>> from kerascnn.config import TrainConfig
>>> result = train(TrainConfig(model="sequential", epochs=1, subset=500))  # doctest: +SKIP
>>> sorted(result.metrics)[:3]  # doctest: +SKIP
['best_epoch', 'best_val_accuracy', 'epochs']
"""

import contextlib
import csv
import dataclasses
import os
import platform
import shutil
import time

import keras

from kerascnn import calibration, compat, distribute, memory, report, resuming, rundir
from kerascnn.assemble import assemble
from kerascnn.callbacks import CHECKPOINT_RULES, SafeModelCheckpoint, checkpoint_callback, make_callbacks
from kerascnn.config import resolve
from kerascnn.errors import RunFailed, UsageError
from kerascnn.evaluate import score_predictions
from kerascnn.loading import load_model_file
from kerascnn.summaries import summaries_callback


class TrainingDiverged(RunFailed, RuntimeError):
    """The loss became NaN or infinite; training was stopped."""


@dataclasses.dataclass
class RunResult:
    run_dir: str  # None in a worker other than the chief: it keeps nothing
    metrics: dict
    resumed: bool
    model: keras.Model = None  # the model as training left it (best.keras holds the best epoch)


def train(config, verbose="auto", resume=True, callbacks=()):
    """Trains `config.model` and returns a `RunResult`.

    Args:
        config: `TrainConfig`.
        verbose: Keras `fit()` verbosity. Defaults to "auto" (progress bar).
        resume: bool, continue an interrupted run of the same config.
            Defaults to True.
        callbacks: extra Keras callbacks, run after the built-in ones.
            Defaults to none.

    Raises:
        DataError, ModelError, RunDirError, DistributeError, memory.OutOfMemory:
            before any run directory exists; RunDirError also for an interrupted
            run that cannot be resumed as asked (in use, damaged, or of another
            config: `kerascnn.resuming`), which is left as it is.
        TrainingDiverged: the loss became NaN or infinite; `best.keras` (if any)
            keeps the last good epoch.
    """
    # 1. Spread the run, resolve its config, then assemble it: precision, seed, data, pipelines, model, schedule.
    plan = distribute.setup(config.strategy)  # first: JAX joins its cluster before any computation
    # The recipe, the model's defaults and the precision, decided once: everything below reads this config,
    # and config.json records it, so `train.py --config <run>/config.json` trains this run again.
    config = resolve(config)
    run = assemble(config, plan)
    config = run.config  # with the augmentation policy `auto` chose from the data
    # Before anything is written: a run that cannot fit this machine's memory is refused (exit 2).
    memory.check_fits(memory.run_bytes(run.model, run.splits.spec, config), memory.available_bytes(),
                      run.splits.spec.image_size or run.splits.spec.image_shape[:2], config.batch_size)

    # 2. Its directory: the interrupted run of the same config, or a new one, locked while this process works on it.
    # Only the chief writes it; the other processes of a multi-process run follow the chief's answer.
    with contextlib.ExitStack() as lock:
        run_dir, resumed = _open_run_dir(config, plan, resume, lock, run.model.count_params())
        return _train_in(run_dir, resumed, config, plan, run, verbose, callbacks)


def _train_in(run_dir, resumed, config, plan, run, verbose, callbacks):
    """Steps 3 and 4 of `train` in the opened (and locked) `run_dir`: fit, unless a resumed run's training
    had finished, then score its best checkpoint and write metrics.json.

    Args:
        resumed: `resuming.Resume` of an interrupted run, or None for a new one.
    """
    model = run.model
    if verbose and plan.is_chief:
        print(report.start_block(config, run, run_dir, resumed is not None), flush=True)
    # What the commands need of the data later: class names, input size and colours, the test files carved.
    rundir.write_json(os.path.join(run_dir, rundir.DATA), run.splits.spec.to_dict())
    history_path = os.path.join(run_dir, rundir.HISTORY)
    best_path = os.path.join(run_dir, rundir.BEST_MODEL)
    backup_dir = os.path.join(run_dir, rundir.BACKUP)
    trained_path = os.path.join(run_dir, rundir.TRAINED)

    if resumed is not None and (resumed.point == "scoring" or resumed.epoch >= config.epochs):
        # 3'. Training had finished when the run was stopped: its checkpoint and record are kept; score them.
        if not os.path.exists(trained_path):  # stopped after the last epoch's backup, before trained.json
            rundir.write_json(trained_path, resuming.training_record(run_dir))
        if plan.is_chief:  # said whatever the verbosity, as "Resuming the interrupted run" is
            print(f"Training had finished; scoring {best_path} on the test set.", flush=True)
        checkpoint = checkpoint_callback(config, run_dir)  # reads best.json
        trained = rundir.read_json(trained_path)
    else:
        # 3. Train, with the run's callbacks (and the clock of its training time over its sittings).
        # Keras' JAX predict() cannot fetch outputs spread over processes: no image summaries there (the chief
        # draws them after training, from best.keras on its own).
        validation = (run.splits.x_val, run.splits.y_val) if plan.num_processes == 1 else None
        clock = TrainingClock(os.path.join(run_dir, rundir.ELAPSED), resumed is not None)
        run_callbacks = make_callbacks(config, run_dir, run.schedule, validation, plan)
        # The checkpoint knows the best epoch and its score, over all sittings of a resumed run.
        (checkpoint,) = [c for c in run_callbacks if isinstance(c, SafeModelCheckpoint)]
        model.fit(
            run.train, epochs=config.epochs, validation_data=run.val, verbose=verbose, shuffle=False,
            callbacks=[*run_callbacks, *callbacks, clock],
        )  # shuffle=False: the dataset shuffles itself, seeded

        if model.stop_training:  # only TerminateOnNaN stops a run early
            shutil.rmtree(backup_dir, ignore_errors=True)  # it may hold the diverged epoch: nothing to resume
            kept = f" The best checkpoint so far is kept: {best_path}." if os.path.exists(best_path) else ""
            raise TrainingDiverged(
                f"Training stopped: the loss became NaN or infinite (learning rate {config.lr}). "
                f"Try a lower rate (for example --lr {config.lr / 10:g}).{kept}"
            )
        # From the last epoch's backup on, a stop leaves a run that resumes straight to the scoring: its backup
        # holds every epoch (`resuming.prepare` reads its count), and from here trained.json says so.
        _test_pause(PAUSE_AFTER_TRAINING)
        trained = {"seconds": clock.seconds, "sittings": clock.sittings, "epochs": resuming.count_epochs(history_path)}
        rundir.write_json(trained_path, trained)
    _test_pause(PAUSE_BEFORE_SCORING)

    # 4. Score the checkpoint chosen on validation, once, on the test set.
    if not os.path.exists(best_path):
        raise resuming.damaged(run_dir, f"its checkpoint {rundir.BEST_MODEL} is missing")
    best = load_model_file(best_path, compile=True)  # the same checks as a user-supplied file
    y_test = run.splits.y_test
    probabilities = calibrated = alone = None
    if plan.name != "multiworker":  # one pass of predictions: the scores as `evaluate` computes them, and the pictures
        # The temperature, fitted on validation and saved in best.keras before the test is read.
        calibrated = _calibrate(best, best_path, run)
        probabilities = best.predict(run.test_input(), verbose=0)
        scores = score_predictions(y_test, probabilities, len(run.splits.spec.class_names))
    else:  # its test batches hold copies per device, and Keras' JAX predict() cannot gather outputs over processes
        best.compile(loss=keras.losses.SparseCategoricalCrossentropy(),  # evaluate()'s reduction, the same loss
                     metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
        scores = best.evaluate(run.test_input(), return_dict=True, verbose=0)
        if plan.is_chief:  # the pictures' predictions: best.keras again, on this process alone
            with distribute.alone():
                alone = load_model_file(best_path)
                probabilities = alone.predict(run.test_input(distribute.Plan("default")), verbose=0)
    metrics = {
        "test_accuracy": float(scores["accuracy"]),
        "test_loss": float(scores["loss"]),  # cross-entropy on the probabilities, unsmoothed, as `evaluate` says
        "test_images": int(len(y_test)),
        **({"per_class_accuracy": report.per_class_accuracy(y_test, probabilities.argmax(axis=1),
                                                            run.splits.spec.class_names)}
           if probabilities is not None else {}),
        "best_epoch": checkpoint.best_epoch,  # 1-based, as the log, history.csv and best.json number it
        "best_val_accuracy": _val_accuracy(history_path, checkpoint),
        "checkpoint": {"rule": config.checkpoint, "epoch": checkpoint.best_epoch,
                       "why": CHECKPOINT_RULES[config.checkpoint][2], "monitor": checkpoint.monitor,
                       "value": float(checkpoint.best)},
        **({"calibration": {**calibrated, **dict(zip(("test_uncalibrated", "test"), calibration.without_and_with(
                probabilities, y_test, calibrated["temperature"])))}} if calibrated else {}),
        "epochs": trained["epochs"],
        "wall_seconds": round(trained["seconds"], 1),  # training time, all sittings of a resumed run
        "sittings": trained["sittings"],
        "peak_rss_mb": peak_rss_mb(),
        "resumed": resumed is not None,
        "params": int(best.count_params()),
        "train_images": int(run.train_images),
        "precision": run.policy,
        "strategy": plan.name,
        "replicas": plan.replicas,
        "global_batch_size": plan.global_batch(config.batch_size),
        "versions": versions(),
    }
    rundir.write_json(os.path.join(run_dir, rundir.METRICS), metrics)  # atomic: the run is finished from here
    shutil.rmtree(backup_dir, ignore_errors=True)  # what resuming needed, no longer
    if os.path.exists(trained_path):
        os.remove(trained_path)
    if probabilities is not None and plan.is_chief:  # after the metrics: a picture cannot cost the scores
        report.write_result_pictures(run_dir, run.splits.x_test, y_test, probabilities, scores["accuracy"],
                                     run.splits.spec.class_names)
    if alone is not None and plan.num_processes > 1:  # no image summaries during its training: best.keras's, once
        with distribute.alone():
            summaries = summaries_callback(config, run_dir, run.splits.x_val, run.splits.y_val)
            summaries.write_model(alone, trained["epochs"] - 1)  # at the last epoch's step
    if verbose and plan.is_chief:
        print(report.end_block(metrics, run_dir), flush=True)
    if not plan.is_chief:
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir = None
    return RunResult(run_dir, metrics, resumed is not None, model)


def _calibrate(model, path, run):
    """Fits `model`'s temperature on the run's validation split and saves it in `path` (atomically).

    The temperature is fitted on the uncalibrated probabilities (it is set to 1 first, so a resumed run
    that had saved one fits the same value again). Returns {"temperature", "validation_images",
    "validation_uncalibrated", "validation"} (the scores before and after), or None for a model that
    cannot hold a temperature.
    """
    if not calibration.set_temperature(model, 1.0):
        return None
    raw = model.predict(run.val, verbose=0)
    y_val = run.splits.y_val
    temperature = calibration.fit_temperature(raw, y_val)
    calibration.set_temperature(model, temperature)
    with rundir.atomic_write(path) as partial:
        model.save(partial)
    return {"temperature": temperature, "validation_images": int(len(y_val)),
            "validation_uncalibrated": calibration.calibration_scores(raw, y_val),
            "validation": calibration.calibration_scores(calibration.scale(raw, temperature), y_val)}


def _val_accuracy(history_path, checkpoint):
    """The validation accuracy of the epoch the checkpoint holds, from history.csv (the monitor may be another)."""
    if checkpoint.monitor == "val_accuracy":
        return float(checkpoint.best)
    header, rows = resuming.history_rows(history_path)
    if header is None or checkpoint.best_epoch not in rows:
        return None
    row = dict(zip(next(csv.reader([header])), next(csv.reader([rows[checkpoint.best_epoch]]))))
    return float(row["val_accuracy"]) if row.get("val_accuracy") else None


# Test hooks (tests only, never set otherwise): each holds a run that many seconds at one moment, so a test can
# stop a real process there, found by the run's files. After training (fit() has returned; the last epoch's
# backup, history row and checkpoint are on disk, trained.json is not), and before the test scoring
# (trained.json written, metrics.json not).
PAUSE_AFTER_TRAINING = "KERASCNN_TEST_PAUSE_AFTER_TRAINING"
PAUSE_BEFORE_SCORING = "KERASCNN_TEST_PAUSE_BEFORE_SCORING"


def _test_pause(variable):
    """Sleeps `$variable` seconds (a `PAUSE_*` name above); unset, as always outside tests, it does nothing."""
    seconds = os.environ.get(variable)
    if seconds:
        time.sleep(float(seconds))


# The files of an interrupted run that its next epoch reads (the checkpoint and its record, the history, the clock,
# the finished training's record, the newest backup copy): the chief sends them to the other processes when a
# multi-process run resumes, so every process goes on from the same state.
RESUMED_FROM = (rundir.BEST_MODEL, rundir.BEST_RECORD, rundir.HISTORY, rundir.ELAPSED, rundir.TRAINED,
                *compat.backup_copies(rundir.BACKUP)[0])


def _open_run_dir(config, plan, resume, lock, params):
    """(run_dir, `resuming.Resume` or None): the interrupted run of the resolved `config` to resume, or a new one.

    The chief opens it (`_open_as_chief`). With several processes, it then
    sends its answer to the others: the run it opened or the reason it
    refused one (they raise the same error, so every process exits 2
    together). Each other process works in a temporary folder
    (`distribute.worker_dir`) that, for a resumed run, first receives the
    chief's copy of the files in `RESUMED_FROM`: all processes restore the
    same epoch from the same bytes, and no filesystem need be shared.

    Args:
        params: int, the model's parameter count (the disk a run needs).
    """
    if plan.num_processes == 1:
        return _open_as_chief(config, plan, resume, lock, params)
    answer = None
    if plan.is_chief:
        try:
            run_dir, resumed = _open_as_chief(config, plan, resume, lock, params)
        except Exception as e:  # any failure: the others are told at once, not left at the collective
            distribute.share(plan, {"refused": str(e)})
            raise
        answer = {"run_dir": run_dir, "resumed": None if resumed is None else list(resumed)}
    answer = distribute.share(plan, answer)
    if "refused" in answer:
        raise rundir.RunDirError(answer["refused"])
    resumed = None if answer["resumed"] is None else resuming.Resume(*answer["resumed"])
    run_dir = answer["run_dir"] if plan.is_chief else distribute.worker_dir()
    if resumed is not None:
        distribute.share_files(plan, RESUMED_FROM, source=run_dir, target=run_dir)
    return run_dir, resumed


def _open_as_chief(config, plan, resume, lock, params):
    """`_open_run_dir` in the chief, which writes the run directory.

    The directory is locked (`rundir.RunLock`, entered on the `lock`
    ExitStack) before it is used: a second process resuming the same run is
    refused, naming the first. A new directory that cannot be locked or
    written is removed again: a refused run leaves no half-made directory.
    The run's spread (`rundir.SPREAD`: processes and replicas) is part of
    what a resumed run must share with this one (`resuming.find`).
    """
    rundir.check_writable(config.logdir, rundir.bytes_needed(params))
    spread = {"processes": plan.num_processes, "replicas": plan.replicas}
    run_dir = resuming.find(config, spread) if resume else None
    if run_dir is not None:
        lock.enter_context(rundir.RunLock(run_dir))
        resumed = resuming.prepare(run_dir)  # refuses a damaged run; puts its backup and history in order
        if resumed.point == "epoch" and resumed.epoch < config.epochs:
            where = f" from epoch {resumed.epoch + 1}"
        else:
            where = " from its first epoch (none had finished)" if resumed.point == "start" else ""
        print(f"Resuming the interrupted run in {run_dir}{where}", flush=True)
        return run_dir, resumed
    run_dir = rundir.create_run_dir(config.logdir, config.model)
    try:
        lock.enter_context(rundir.RunLock(run_dir))
        rundir.write_json(os.path.join(run_dir, rundir.CONFIG), config.to_dict())
        rundir.write_json(os.path.join(run_dir, rundir.SPREAD), spread)
    except (OSError, rundir.RunDirError) as e:
        shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(e, rundir.RunDirError):
            raise
        raise rundir.RunDirError(f"Cannot write the new run directory {run_dir} ({e.strerror}); it was removed. "
                                 f"Received: logdir={config.logdir!r}") from None
    return run_dir, None


class TrainingClock(keras.callbacks.Callback):
    """Records a run's training time over all its sittings in `path` (`elapsed.json`).

    Each epoch's end writes the total so far, so a resumed run adds to it;
    an interrupted sitting's unfinished epoch is not counted (it is re-run).

    Args:
        path: str, the run's `elapsed.json`.
        resumed: bool, whether earlier sittings' time is in `path` to add to.
    """

    def __init__(self, path, resumed):
        super().__init__()
        self.path = path
        earlier = rundir.read_json(path) if resumed and os.path.exists(path) else {"seconds": 0.0, "sittings": 0}
        self.earlier, self.sittings = earlier["seconds"], earlier["sittings"] + 1
        self.seconds = self.earlier
        rundir.write_json(path, {"seconds": self.earlier, "sittings": self.sittings})

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self._record()

    def on_train_end(self, logs=None):
        self._record(write=False)

    def _record(self, write=True):
        self.seconds = self.earlier + time.perf_counter() - self.start
        if write:
            rundir.write_json(self.path, {"seconds": self.seconds, "sittings": self.sittings})


def peak_rss_mb():
    """This process's peak resident memory in MB, or None where neither source exists (Windows).

    On Linux, `VmHWM` from /proc/self/status: `ru_maxrss` keeps the parent's
    resident size at the fork across `exec`, so a worker started by a process
    that had loaded TensorFlow reported at least the parent's size.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    try:
        import resource
    except ImportError:
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if platform.system() == "Darwin" else 1)
    return round(kib / 1024, 1)  # ru_maxrss is KiB on Linux, bytes on macOS


def versions():
    try:
        import tensorflow as tf

        tf_version = tf.__version__
    except ImportError:  # Keras 3 on JAX needs no TensorFlow
        tf_version = None
    return {
        "python": platform.python_version(),
        "tensorflow": tf_version,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
