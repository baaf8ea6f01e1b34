"""Training: compile, fit with the run's callbacks, evaluate on the test set.

`train(config)` is the whole job behind `python train.py`. Everything it
can check before spending training time (the config, the data, the model's
arguments, the log directory) is checked before the run directory exists,
so a bad run leaves nothing behind. The test set is used once, at the end,
on the checkpoint chosen by validation accuracy.

Example:

>>> from kerascnn.config import TrainConfig
>>> result = train(TrainConfig(model="sequential", epochs=1, subset=500))  # doctest: +SKIP
>>> sorted(result.metrics)[:3]  # doctest: +SKIP
['best_epoch', 'best_val_accuracy', 'epochs']
"""

import csv
import dataclasses
import math
import os
import platform
import shutil
import time

import keras

from kerascnn import data as data_lib
from kerascnn import distribute, rundir
from kerascnn.callbacks import make_callbacks
from kerascnn.layers import allow_jit
from kerascnn.loading import load_model_file
from kerascnn.losses import SparseCrossentropy
from kerascnn.models import create_model, resolve_recipe
from kerascnn.precision import jit_compile_setting, set_precision


ELAPSED = "elapsed.json"  # in the run directory: training seconds and sittings so far


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training was stopped."""


@dataclasses.dataclass
class RunResult:
    run_dir: str  # None in a worker other than the chief: it keeps nothing
    metrics: dict
    resumed: bool
    model: keras.Model = None  # the model as training left it (best.keras holds the best epoch)


def compile_model(model, config, **overrides):
    """Adam, cross-entropy on probabilities, accuracy: the one compile.

    The weight average (`ema`) and label smoothing are the config's, or the
    model's recipe's where the config leaves them None.

    Args:
        overrides: other `Model.compile` arguments, e.g. `jit_compile=True`
            (the benchmark) or `steps_per_execution=10` (`kerascnn.sweep`).
    """
    recipe = resolve_recipe(config.model, ema=config.ema, label_smoothing=config.label_smoothing)
    allow_jit(model)
    if recipe["label_smoothing"]:
        loss = SparseCrossentropy(recipe["label_smoothing"])
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(
        **{
            "optimizer": keras.optimizers.Adam(
                config.lr, use_ema=recipe["ema"] > 0, ema_momentum=recipe["ema"] or 0.99
            ),
            "loss": loss,
            "metrics": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            "jit_compile": jit_compile_setting(),
            **overrides,
        }
    )
    return model


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
        DataError, ModelError, RunDirError, DistributeError: before any run
            directory exists.
        TrainingDiverged: the loss became NaN or infinite; `best.keras` (if any)
            keeps the last good epoch.
    """
    plan = distribute.setup(config.strategy)  # first: JAX joins its cluster before any computation
    policy = set_precision(config.precision)
    keras.utils.set_random_seed(config.seed)
    dataset = data_lib.load_dataset(config.dataset, config.data_dir)
    splits = data_lib.split(dataset, config.val_size, config.subset, config.split_seed)
    del dataset  # the splits are copies: keep one set of images in memory, not two
    epoch = data_lib.epoch_variable()  # keys each epoch's order; set by the EpochSeeds callback
    train_ds = plan.train_dataset(splits.x_train, splits.y_train, config.batch_size, seed=config.seed, epoch=epoch)
    train_images = len(splits.x_train)
    splits.x_train = splits.y_train = None  # the pipeline holds its own copy (tf.constant); drop ours
    val_ds = plan.eval_dataset(splits.x_val, splits.y_val, config.batch_size)
    with plan.scope():  # the variables, mirrored over the replicas
        model = create_model(config.model, **config.model_kwargs())
    if plan.is_chief:  # only the chief writes the run directory
        rundir.check_writable(config.logdir, rundir.bytes_needed(model.count_params()))

    resolved = {**config.to_dict(), "precision": policy}
    resume = resume and plan.num_processes == 1  # other workers cannot read the chief's backup/
    run_dir = rundir.find_resumable(config.logdir, config.model, resolved) if resume else None
    resumed = run_dir is not None
    if resumed:
        print(f"Resuming the interrupted run in {run_dir}")
    elif not plan.is_chief:
        run_dir = distribute.worker_dir()  # the same files as the chief's, removed at the end
    else:
        run_dir = rundir.create_run_dir(config.logdir, config.model)
        rundir.write_json(os.path.join(run_dir, rundir.CONFIG), resolved)

    with plan.scope():  # the optimizer's and metrics' variables too
        compile_model(model, config)
    # Keras' JAX predict() cannot fetch outputs spread over processes: no image summaries there.
    validation = (splits.x_val, splits.y_val) if plan.num_processes == 1 else None
    extra_callbacks = list(callbacks)
    callbacks, checkpoint = make_callbacks(config, run_dir, validation=validation, epoch_variable=epoch)
    callbacks += extra_callbacks
    history_path = os.path.join(run_dir, "history.csv")
    if resumed:
        checkpoint.best = _best_so_far(history_path, checkpoint.best)

    # The whole run's training time over its sittings: each epoch's end records the total so far, so
    # a resumed run adds to it (an interrupted sitting's unfinished epoch is not counted; it is re-run).
    clock_path = os.path.join(run_dir, ELAPSED)
    earlier = {"seconds": 0.0, "sittings": 0}
    if resumed and os.path.exists(clock_path):
        earlier = rundir.read_json(clock_path)
    sittings = earlier["sittings"] + 1
    rundir.write_json(clock_path, {"seconds": earlier["seconds"], "sittings": sittings})
    start = time.perf_counter()
    record_time = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: rundir.write_json(
        clock_path, {"seconds": earlier["seconds"] + time.perf_counter() - start, "sittings": sittings}))
    model.fit(
        train_ds, epochs=config.epochs, validation_data=val_ds, callbacks=[*callbacks, record_time],
        verbose=verbose, shuffle=False,
    )  # shuffle=False: the dataset shuffles itself, seeded
    train_seconds = earlier["seconds"] + time.perf_counter() - start

    best_path = os.path.join(run_dir, "best.keras")
    if model.stop_training:  # only TerminateOnNaN stops a run early
        kept = f" The best checkpoint so far is kept: {best_path}." if os.path.exists(best_path) else ""
        raise TrainingDiverged(
            f"Training stopped: the loss became NaN or infinite (learning rate {config.lr}). "
            f"Try a lower rate (for example --lr {config.lr / 10:g}).{kept}"
        )

    best = load_model_file(best_path, compile=True)  # the same checks as a user-supplied file
    test_ds = plan.eval_dataset(splits.x_test, splits.y_test, config.batch_size)
    scores = best.evaluate(test_ds, return_dict=True, verbose=0)
    rows = _history(history_path)
    best_row = max(rows, key=lambda r: float(r["val_accuracy"]))
    metrics = {
        "test_accuracy": float(scores["accuracy"]),
        "test_loss": float(scores["loss"]),
        "best_epoch": int(best_row["epoch"]) + 1,
        "best_val_accuracy": float(best_row["val_accuracy"]),
        "epochs": len(rows),
        "wall_seconds": round(train_seconds, 1),  # all sittings of a resumed run
        "sittings": sittings,
        "peak_rss_mb": peak_rss_mb(),
        "resumed": resumed,
        "params": int(best.count_params()),
        "train_images": int(train_images),
        "precision": policy,
        "strategy": plan.name,
        "replicas": plan.replicas,
        "global_batch_size": plan.global_batch(config.batch_size),
        "versions": versions(),
    }
    rundir.write_json(os.path.join(run_dir, rundir.METRICS), metrics)
    if not plan.is_chief:
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir = None
    return RunResult(run_dir, metrics, resumed, model)


def _history(path):
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return []
    # A resumed run appends; an epoch re-run after a crash appears twice: keep the last.
    return list({r["epoch"]: r for r in rows}.values())


def _best_so_far(history_path, default):
    scores = [float(r["val_accuracy"]) for r in _history(history_path)]
    scores = [s for s in scores if not math.isnan(s)]
    return max(scores) if scores else default


def peak_rss_mb():
    """This process's peak resident memory in MB (`ru_maxrss`), or None without `resource` (Windows)."""
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
