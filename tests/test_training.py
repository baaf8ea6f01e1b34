"""Real training on small slices of real MNIST, through `train()` and `train.py`."""

import csv
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import MNIST_DIR, ROOT, run_cli
from kerascnn.config import TrainConfig, resolve
from kerascnn.loading import load_model_file
from kerascnn.training import TrainingDiverged, train


def history(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


def test_one_epoch_on_5000_images_learns(tmp_path, test_batch):
    config = TrainConfig(model="sequential", epochs=2, subset=5000, val_size=1000, lr_period=1,
                         logdir=str(tmp_path), precision="float32")
    started = time.monotonic()
    result = train(config, verbose=0)
    call_seconds = time.monotonic() - started
    run = result.run_dir
    assert os.path.basename(run).startswith("sequential-") and os.path.dirname(run) == str(tmp_path)
    for name in ("config.json", "metrics.json", "best.keras", "history.csv"):
        assert os.path.isfile(os.path.join(run, name)), name
    assert glob.glob(os.path.join(run, "train", "events.out.tfevents.*"))
    assert glob.glob(os.path.join(run, "validation", "events.out.tfevents.*"))
    assert not os.path.exists(os.path.join(run, "backup"))  # removed once training finished

    saved = json.load(open(os.path.join(run, "config.json")))
    # The values that ran: the recipe's epochs, the model's defaults, and the batch for 5,000 training pictures.
    assert saved == {**resolve(config).to_dict(), "batch_size": 50}
    assert (saved["precision"], saved["filters"], saved["dropout"], saved["batchnorm"]) == ("float32", 32, 0.4, False)
    m = json.load(open(os.path.join(run, "metrics.json")))
    assert m == result.metrics and m["epochs"] == 2 and m["params"] == 619786 and m["train_images"] == 5000
    assert m["test_accuracy"] > 0.9  # chance is 0.1
    assert 100 < m["peak_rss_mb"] < 8000
    # Training time: at least the last epoch end's total on disk, at most the whole call's.
    on_disk = json.load(open(os.path.join(run, "elapsed.json")))["seconds"]
    assert on_disk > 0 and on_disk - 0.1 <= m["wall_seconds"] <= call_seconds  # rounded to 0.1 s

    rows = history(run)
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([1e-3, 5e-4])  # lr_period=1
    best_row = max(rows, key=lambda r: float(r["val_accuracy"]))
    assert [r["epoch"] for r in rows] == ["1", "2"]  # numbered as Keras' log prints them, and as best_epoch is
    assert (m["best_epoch"], m["best_val_accuracy"]) == (int(best_row["epoch"]), float(best_row["val_accuracy"]))
    # The checkpoint is the epoch with the best validation accuracy, scored on test images.
    best = load_model_file(os.path.join(run, "best.keras"))
    x, y = test_batch
    accuracy = (best.predict(x, verbose=0).argmax(axis=1) == y).mean()
    assert accuracy > 0.9


def test_best_ensemble_learns_in_bfloat16(tmp_path, test_batch):
    config = TrainConfig(model="best", members=2, epochs=1, subset=5000, val_size=1000,
                         logdir=str(tmp_path), precision="mixed_bfloat16")
    result = train(config, verbose=0)
    assert result.metrics["precision"] == "mixed_bfloat16"
    model = load_model_file(os.path.join(result.run_dir, "best.keras"))
    assert len(model.members) == 2
    assert model.members[0].layers[-1].dtype_policy.compute_dtype == "float32"  # softmax kept in float32
    x, y = test_batch
    assert (model.predict(x, verbose=0).argmax(axis=1) == y).mean() > 0.5


def test_divergence_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path, test_batch):
    class Explode(keras.callbacks.Callback):  # epoch 2 at a rate no network survives
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                self.model.optimizer.learning_rate.assign(1e6)

    config = TrainConfig(epochs=3, subset=2000, val_size=500, logdir=str(tmp_path), precision="float32")
    with pytest.raises(TrainingDiverged, match=r"loss became NaN or infinite.*Try a lower rate.*checkpoint so far is kept"):
        train(config, verbose=0, callbacks=[Explode()])
    (run,) = glob.glob(os.path.join(tmp_path, "sequential-*"))
    assert len(history(run)) == 2 and history(run)[1]["loss"] in ("nan", "inf")  # stopped in epoch 2
    model = load_model_file(os.path.join(run, "best.keras"))
    probs = model.predict(test_batch[0], verbose=0)
    assert np.isfinite(probs).all() and (probs.argmax(axis=1) == test_batch[1]).mean() > 0.5


def test_runs_never_share_a_directory(tmp_path):
    config = TrainConfig(epochs=1, subset=200, val_size=100, logdir=str(tmp_path), precision="float32")
    first = train(config, verbose=0).run_dir
    second = train(config, verbose=0).run_dir
    assert first != second and os.path.exists(os.path.join(first, "metrics.json"))


# python -c KILL_MID_EPOCH CONFIG.json EPOCH BATCH: trains CONFIG and kills itself with SIGKILL at the end of
# batch BATCH of epoch EPOCH (both from 1, as Keras' log prints them): no clean-up runs.
KILL_MID_EPOCH = """
import os, signal, sys
import keras
from kerascnn.config import TrainConfig
from kerascnn.training import train

class KillMidEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1
    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch + 1) == (int(sys.argv[2]), int(sys.argv[3])):
            os.kill(os.getpid(), signal.SIGKILL)

train(TrainConfig.from_json(sys.argv[1]), verbose=0, callbacks=[KillMidEpoch()])
"""


def test_killed_run_resumes_and_repeats_the_uninterrupted_run(tmp_path):
    """kill -9 in the middle of epoch 2 of 3; running the same command again finishes the run in
    the same directory, and its epochs equal an uninterrupted run's exactly: data order, dropout and
    augmentation are keyed by (seed, epoch), and the CPU kernels here are deterministic."""
    values = {"model": "best", "members": 1, "filters": 8, "dense_units": 32,  # BN, dropout, augmentation
              "epochs": 3, "subset": 2500, "val_size": 500, "batch_size": 50, "precision": "float32",
              "checkpoint": "accuracy"}  # the rule whose best must carry over the sittings (best's own keeps the last)
    config = tmp_path / "run.json"
    config.write_text(json.dumps({**values, "logdir": str(tmp_path / "killed")}))
    reference_config = tmp_path / "reference.json"
    reference_config.write_text(json.dumps({**values, "logdir": str(tmp_path / "reference")}))

    started = time.monotonic()
    killed = subprocess.run([sys.executable, "-c", KILL_MID_EPOCH, str(config), "2", "11"], capture_output=True,
                            text=True, timeout=300, cwd=ROOT)  # kill -9 at batch 11 of epoch 2
    killed_seconds = time.monotonic() - started
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (run,) = glob.glob(os.path.join(tmp_path, "killed", "best-*"))
    assert len(history(run)) == 1 and not os.path.exists(os.path.join(run, "metrics.json"))
    first = json.load(open(os.path.join(run, "elapsed.json")))
    assert first["sittings"] == 1 and 0 < first["seconds"] < killed_seconds  # epoch 1's time, kept on disk

    again = run_cli("train.py", "--config", str(config), "--verbose", "2")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"Resuming the interrupted run in {run}" in again.stdout
    assert again.stdout.strip().splitlines()[-1].endswith(f"run_dir={run}")
    assert glob.glob(os.path.join(tmp_path, "killed", "*")) == [run]
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert metrics["epochs"] == 3 and metrics["sittings"] == 2
    last = json.load(open(os.path.join(run, "elapsed.json")))  # the whole run: both sittings
    assert last["sittings"] == 2 and last["seconds"] > first["seconds"]
    # Both sittings: counting only the last one (the old bug) gives last - first, less than this.
    # No upper bound: the end of fit() after epoch 3 took 6 s on a loaded 2-core machine.
    assert metrics["wall_seconds"] >= last["seconds"] - 0.1

    reference = run_cli("train.py", "--config", str(reference_config), "--verbose", "0")
    assert reference.returncode == 0, reference.stderr[-2000:]
    (ref_run,) = glob.glob(os.path.join(tmp_path, "reference", "best-*"))
    assert json.load(open(os.path.join(ref_run, "metrics.json")))["sittings"] == 1
    scores = lambda d: [(r["epoch"], r["val_accuracy"], r["val_loss"]) for r in history(d)]
    assert scores(run) == scores(ref_run)
    # The best epoch over both sittings, as the checkpoint recorded it, is the uninterrupted run's.
    best = max(history(ref_run), key=lambda r: float(r["val_accuracy"]))  # the first of equals, as the checkpoint
    ref_metrics = json.load(open(os.path.join(ref_run, "metrics.json")))
    for m in (metrics, ref_metrics):
        assert (m["best_epoch"], m["best_val_accuracy"]) == (int(best["epoch"]), float(best["val_accuracy"]))
    assert json.load(open(os.path.join(run, "best.json")))["best_epoch"] == int(best["epoch"])


def test_a_runs_config_json_alone_trains_the_same_run_again(tmp_path):
    """config.json is the resolved config: the values that ran, the model's defaults and the recipe filled in
    (no null for an argument the model takes), and `train.py --config` on it alone repeats the run's epochs."""
    from kerascnn.config import MODEL_FIELDS
    from kerascnn.models import model_defaults

    logdir = str(tmp_path / "logs")
    first = run_cli("train.py", "--model", "best", "--members", "1", "--epochs", "1", "--subset", "300",
                    "--val-size", "100", "--precision", "float32", "--logdir", logdir, "--verbose", "0")
    assert first.returncode == 0, first.stderr[-2000:]
    (run,) = glob.glob(os.path.join(logdir, "best-*"))
    saved = json.load(open(os.path.join(run, "config.json")))
    taken = [name for name in MODEL_FIELDS if name in model_defaults("best")]
    assert [name for name in taken if saved[name] is None] == []
    assert (saved["epochs"], saved["label_smoothing"], saved["members"], saved["filters"], saved["rotation"]) == (
        1, 0.1, 1, 32, 15.0)

    again = run_cli("train.py", "--config", os.path.join(run, "config.json"), "--verbose", "0")
    assert again.returncode == 0, again.stderr[-2000:]
    (second,) = set(glob.glob(os.path.join(logdir, "best-*"))) - {run}
    assert json.load(open(os.path.join(second, "config.json"))) == saved
    numbers = lambda d: [{k: r[k] for k in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")}
                         for r in history(d)]
    assert numbers(second) == numbers(run) and len(numbers(run)) == 1


@pytest.mark.parametrize("model", ["functional", "subclass"])
def test_functional_and_subclass_models_train_save_and_load(model, tmp_path, test_batch):
    config = TrainConfig(model=model, epochs=1, subset=2000, val_size=500, logdir=str(tmp_path), precision="float32")
    result = train(config, verbose=0)
    assert os.path.basename(result.run_dir).startswith(f"{model}-") and result.metrics["epochs"] == 1
    assert result.metrics["test_accuracy"] > 0.5  # chance is 0.1
    best = load_model_file(os.path.join(result.run_dir, "best.keras"))
    x, y = test_batch
    assert (best.predict(x, verbose=0).argmax(axis=1) == y).mean() > 0.5


def test_peak_memory_is_the_process_own_not_its_parents():
    """A worker started by a large process reports its own peak (Linux kept the parent's in `ru_maxrss`)."""
    from kerascnn.training import peak_rss_mb

    ballast = np.ones(2 * 2**30, np.uint8)  # 2 GiB, touched: resident in this process
    child = subprocess.run([sys.executable, "-c", "from kerascnn.training import peak_rss_mb; print(peak_rss_mb())"],
                           capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert child.returncode == 0, child.stderr[-2000:]
    own, worker = peak_rss_mb(), float(child.stdout.split()[-1])
    assert own > 2048 and 0 < worker < own - 1024, (own, worker)  # the worker loads Keras, well under 2 GiB
    del ballast


# --- Stops during the test scoring; the run's lock; a missing checkpoint ------------------------------------
SMALL_VALUES = {"model": "best", "members": 1, "filters": 8, "dense_units": 32, "epochs": 2, "subset": 400,
                "val_size": 100, "batch_size": 50, "precision": "float32"}
SMALL = [*(arg for k, v in SMALL_VALUES.items() for arg in (f"--{k.replace('_', '-')}", str(v))), "--verbose", "0"]
PAUSE = {"KERASCNN_TEST_PAUSE_BEFORE_SCORING": "120"}  # kerascnn.training._test_pause: a window to stop in
SCORES = ("test_accuracy", "test_loss", "best_epoch", "best_val_accuracy", "epochs", "test_images")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """metrics.json of the SMALL run, trained and scored in one go."""
    logdir = tmp_path_factory.mktemp("uninterrupted")
    done = run_cli("train.py", *SMALL, "--logdir", str(logdir))
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = glob.glob(os.path.join(logdir, "best-*"))
    return json.load(open(os.path.join(run, "metrics.json")))


def ctrl_c_as_in_a_terminal():
    """In the child, before exec: SIGINT back to its default, so Python turns it into KeyboardInterrupt.

    A shell starts a background job (`pytest ... &`, as some CI runners do) with SIGINT ignored, and a Python
    started with SIGINT ignored leaves it ignored: the test's Ctrl-C would then not reach the run at all.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_paused(logdir, log):
    """train.py on SMALL, held before its test scoring; returns (process, run_dir) once training has finished,
    found by its files: trained.json (training done, scoring pending) and no metrics.json."""
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *SMALL, "--logdir", str(logdir)],
                            cwd=ROOT, env={**os.environ, **PAUSE}, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=ctrl_c_as_in_a_terminal)
    deadline = time.monotonic() + 300
    while not glob.glob(os.path.join(logdir, "best-*", "trained.json")):
        assert proc.poll() is None, f"exited before its training finished: {open(log.name).read()[-2000:]}"
        assert time.monotonic() < deadline, "hung: no trained.json after 300 s"
        time.sleep(0.1)
    (run,) = glob.glob(os.path.join(logdir, "best-*"))
    assert len(history(run)) == 2 and not os.path.exists(os.path.join(run, "metrics.json"))
    return proc, run


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_a_run_stopped_during_its_test_scoring_resumes_to_the_same_metrics(sig, tmp_path, uninterrupted):
    """Training finished, the test scoring pending: a Ctrl-C or a kill -9 there loses nothing; the same command
    again finds the run, skips the training and writes the uninterrupted run's metrics.json."""
    logdir = tmp_path / "logs"
    with open(tmp_path / "first.log", "w") as log:
        proc, run = start_paused(logdir, log)
        proc.send_signal(sig)
        status = proc.wait(timeout=120)
    output = open(tmp_path / "first.log").read()
    if sig == signal.SIGINT:
        assert status == 130 and "Run the same command again to resume" in output, output[-2000:]
    else:
        assert status == -signal.SIGKILL
    assert not os.path.exists(os.path.join(run, "metrics.json"))
    assert os.path.isdir(os.path.join(run, "backup")) and os.path.exists(os.path.join(run, "best.keras"))

    again = run_cli("train.py", *SMALL, "--logdir", str(logdir))
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"Resuming the interrupted run in {run}" in again.stdout and "Training had finished" in again.stdout
    assert glob.glob(os.path.join(logdir, "*")) == [run] and len(history(run)) == 2  # no epoch trained again
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert {k: metrics[k] for k in SCORES} == {k: uninterrupted[k] for k in SCORES}
    assert metrics["resumed"] and metrics["sittings"] == 1  # one sitting of training
    # Finished: what resuming needed is gone, and the same command starts a new run.
    assert not os.path.exists(os.path.join(run, "backup")) and not os.path.exists(os.path.join(run, "trained.json"))


def test_a_run_in_use_or_missing_its_checkpoint_is_refused_with_exit_2(tmp_path):
    """A second process resuming a run that another one holds exits 2 naming that process; a run whose
    best.keras is gone exits 2 saying so and offering --no-resume, before any training, never a traceback."""
    logdir = tmp_path / "logs"
    with open(tmp_path / "first.log", "w") as log:
        first, run = start_paused(logdir, log)
        try:
            second = run_cli("train.py", *SMALL, "--logdir", str(logdir))
            assert second.returncode == 2, second.stderr[-2000:]
            assert f"The run in {run} is in use by another process (pid {first.pid} on" in second.stderr
            assert "Traceback" not in second.stderr and first.poll() is None
        finally:
            first.kill()
            first.wait(timeout=120)

    os.remove(os.path.join(run, "best.keras"))
    third = run_cli("train.py", *SMALL, "--logdir", str(logdir))
    assert third.returncode == 2 and "Traceback" not in third.stderr, third.stderr[-2000:]
    assert f"The interrupted run in {run} cannot be resumed: its checkpoint best.keras is missing" in third.stderr
    assert "--no-resume" in third.stderr
    assert glob.glob(os.path.join(logdir, "*")) == [run] and not os.path.exists(os.path.join(run, "metrics.json"))


# --- Stops after the last epoch, in the first epoch; damaged backups and history; another config ------------
@pytest.fixture(scope="module")
def stopped_after_training(tmp_path_factory):
    """A SMALL run killed (-9) after its last epoch's backup and before trained.json: every epoch trained and
    backed up (backup/ holds epoch 2, and epoch 1 as the previous copy), the test scoring not begun. Found by its
    files: the backup's metadata says 2 epochs; the process is held there by the after-training pause. Tests
    work on copies (`copy_run`)."""
    logdir = tmp_path_factory.mktemp("stopped_after_training")
    env = {**os.environ, "KERASCNN_TEST_PAUSE_AFTER_TRAINING": "120"}
    with open(logdir / "train.log", "w") as log:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *SMALL, "--logdir", str(logdir)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while backup_epochs(logdir) != 2:
            assert proc.poll() is None, f"exited before its training finished: {open(log.name).read()[-2000:]}"
            assert time.monotonic() < deadline, "hung: no backup of epoch 2 after 300 s"
            time.sleep(0.1)
        proc.kill()
        assert proc.wait(timeout=120) == -signal.SIGKILL
    (run,) = glob.glob(os.path.join(logdir, "best-*"))
    assert len(history(run)) == 2 and sorted(os.listdir(os.path.join(run, "backup"))) == [
        "latest.weights.h5", "latest.weights.h5.bkp", "training_metadata.json", "training_metadata.json.bkp"]
    assert not os.path.exists(os.path.join(run, "trained.json")) and not os.path.exists(os.path.join(run, "metrics.json"))
    return run


def backup_epochs(logdir):
    """The epochs the newest backup under `logdir` holds (Keras' metadata, read whole), or None."""
    try:
        (metadata,) = glob.glob(os.path.join(logdir, "best-*", "backup", "training_metadata.json"))
        return json.load(open(metadata))["epoch"]
    except ValueError:  # not there yet, or being written
        return None


def copy_run(run, logdir):
    """A copy of the run directory `run` in `logdir` (a run is found by the folder it is in, wherever it began)."""
    return shutil.copytree(run, os.path.join(logdir, os.path.basename(run)))


def contents(run):
    """{path in `run`: SHA-256 of the file} of every file but run.lock (which a refused process holds a while)."""
    files = [os.path.join(root, name) for root, _, names in os.walk(run) for name in names if name != "run.lock"]
    return {os.path.relpath(path, run): hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in files}


def test_a_run_stopped_after_its_last_epoch_resumes_to_the_scoring_from_any_equal_command(
        stopped_after_training, tmp_path, uninterrupted):
    """A stop between the end of training and trained.json loses nothing: the backup holds every epoch, so the
    same command scores the kept checkpoint, training nothing again, to the uninterrupted run's metrics. The same
    command is recognised by its values: a trailing slash on --logdir and --data-dir given instead of
    $KERASCNN_DATA_DIR (which the first sitting used) find the run. Finished, it keeps no run.lock."""
    logdir = tmp_path / "logs"
    run = copy_run(stopped_after_training, logdir)
    env = {k: v for k, v in os.environ.items() if k != "KERASCNN_DATA_DIR"}
    again = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *SMALL, "--logdir", f"{logdir}/",
                            "--data-dir", MNIST_DIR], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"Resuming the interrupted run in {run}\n" in again.stdout and "Training had finished" in again.stdout
    assert glob.glob(os.path.join(logdir, "*")) == [run] and len(history(run)) == 2  # no epoch trained again
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert {k: metrics[k] for k in SCORES} == {k: uninterrupted[k] for k in SCORES}
    assert metrics["sittings"] == 1  # one sitting of training
    for gone in ("backup", "trained.json", "run.lock"):
        assert not os.path.exists(os.path.join(run, gone)), gone


def test_a_damaged_newest_backup_and_a_cut_history_row_resume_from_the_older_backup(
        stopped_after_training, tmp_path, uninterrupted):
    """The newest backup truncated and history.csv's last row cut mid-line (as a stop mid-write leaves them):
    the run resumes from the previous backup, epoch 1, trains epoch 2 again, and history.csv ends with exactly
    one complete row per epoch; the metrics are the uninterrupted run's."""
    logdir = tmp_path / "logs"
    run = copy_run(stopped_after_training, logdir)
    with open(os.path.join(run, "backup", "latest.weights.h5"), "r+b") as f:
        f.truncate(1000)
    text = open(os.path.join(run, "history.csv"), newline="").read()
    with open(os.path.join(run, "history.csv"), "w", newline="") as f:
        f.write(text[:-20])

    again = run_cli("train.py", *SMALL, "--logdir", str(logdir))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "The newest backup cannot be used (backup/latest.weights.h5: " in again.stdout
    assert "resuming from the previous one, epoch 1." in again.stdout
    assert f"Resuming the interrupted run in {run} from epoch 2" in again.stdout
    lines = open(os.path.join(run, "history.csv"), newline="").read().splitlines(keepends=True)
    assert len(lines) == 3 and all(line.endswith("\r\n") for line in lines)  # the header and two whole rows
    assert [r["epoch"] for r in history(run)] == ["1", "2"]
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert {k: metrics[k] for k in SCORES} == {k: uninterrupted[k] for k in SCORES}
    assert metrics["sittings"] == 2 and not os.path.exists(os.path.join(run, "backup"))


def test_a_run_whose_every_backup_copy_is_damaged_is_refused_and_left_as_it_is(stopped_after_training, tmp_path):
    """Garbage in the newest backup, the previous one truncated to nothing: exit 2 naming both copies and
    offering --no-resume, never a traceback and never training from scratch; not a file changed or removed."""
    logdir = tmp_path / "logs"
    run = copy_run(stopped_after_training, logdir)
    with open(os.path.join(run, "backup", "latest.weights.h5"), "wb") as f:
        f.write(b"not HDF5 " * 100)
    open(os.path.join(run, "backup", "latest.weights.h5.bkp"), "wb").close()
    before = contents(run)

    again = run_cli("train.py", *SMALL, "--logdir", str(logdir))
    assert again.returncode == 2 and "Traceback" not in again.stderr, again.stderr[-2000:]
    (error,) = [line for line in again.stderr.splitlines() if line.startswith("train.py: error: ")]
    assert f"The interrupted run in {run} cannot be resumed: no copy of its backup can be used " \
           f"(backup/latest.weights.h5: " in error
    assert "; backup/latest.weights.h5.bkp: " in error and "Add --no-resume to start a new run" in error
    assert error.endswith(f"Received: run_dir={run}")
    assert contents(run) == before and glob.glob(os.path.join(logdir, "*")) == [run]


def test_an_interrupted_run_of_another_config_is_named_not_passed_over(stopped_after_training, tmp_path):
    """The same model and data with another learning rate: exit 2 naming the interrupted run, the key that
    differs with both values, and the two ways on; no new run directory is made beside it."""
    logdir = tmp_path / "logs"
    run = copy_run(stopped_after_training, logdir)
    again = run_cli("train.py", *SMALL, "--lr", "0.002", "--logdir", str(logdir))
    assert again.returncode == 2 and "Traceback" not in again.stderr, again.stderr[-2000:]
    (error,) = [line for line in again.stderr.splitlines() if line.startswith("train.py: error: ")]
    assert f"An interrupted run of best on mnist is in {run}, with another config: lr (0.001 there, 0.002 here). " \
           f"To resume it, run it with its own settings (--config {run}/config.json); to start a new run beside " \
           f"it (it is left as it is), add --no-resume. Received: lr=0.002" in error
    assert glob.glob(os.path.join(logdir, "*")) == [run]


def test_an_own_folder_run_from_before_the_augmentation_policies_resumes(mnist, tmp_path):
    """best on your own .npz of digits, killed (-9) in epoch 2, its config.json stripped of augment, flip,
    brightness and contrast as the code before the policies wrote it: a --flip it never trained with is refused
    naming flip, writing nothing; the same command resumes it in place (the digits policy `auto` chooses trains
    as that code did) and finishes."""
    data = tmp_path / "digits.npz"
    np.savez(data, x_train=mnist.x_train[:400, ..., 0], y_train=mnist.y_train[:400],
             x_test=mnist.x_test[:100, ..., 0], y_test=mnist.y_test[:100])
    logdir = tmp_path / "logs"
    config = tmp_path / "run.json"
    config.write_text(json.dumps({**SMALL_VALUES, "subset": None, "dataset": str(data), "logdir": str(logdir)}))
    killed = subprocess.run([sys.executable, "-c", KILL_MID_EPOCH, str(config), "2", "2"], capture_output=True,
                            text=True, timeout=300, cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (run,) = glob.glob(os.path.join(logdir, "best-*"))
    stored = json.load(open(os.path.join(run, "config.json")))
    assert stored["augment"] == "digits" and backup_epochs(logdir) == 1
    for key in ("augment", "flip", "brightness", "contrast"):
        del stored[key]
    Path(run, "config.json").write_text(json.dumps(stored))
    before = contents(run)

    refused = run_cli("train.py", "--config", str(config), "--flip", "true", "--verbose", "0")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert (f"An interrupted run of best on {data} is in {run}, with another config: flip (not recorded there, a "
            f"run from before the augmentation policies: False, True here).") in refused.stderr
    assert refused.stderr.rstrip().endswith("Received: flip=True") and contents(run) == before

    again = run_cli("train.py", "--config", str(config), "--verbose", "0")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"Resuming the interrupted run in {run}" in again.stdout
    assert glob.glob(os.path.join(logdir, "*")) == [run] and [r["epoch"] for r in history(run)] == ["1", "2"]
    assert os.path.exists(os.path.join(run, "metrics.json"))


def test_a_run_killed_in_its_first_epoch_is_resumed_in_place(tmp_path, uninterrupted):
    """kill -9 in epoch 1 (no epoch finished, no backup yet): the same command resumes that directory from its
    first epoch instead of leaving it an orphan beside a new one, to the uninterrupted run's metrics."""
    logdir = tmp_path / "logs"
    config = tmp_path / "run.json"
    config.write_text(json.dumps({**SMALL_VALUES, "logdir": str(logdir)}))
    killed = subprocess.run([sys.executable, "-c", KILL_MID_EPOCH, str(config), "1", "3"], capture_output=True,
                            text=True, timeout=300, cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (run,) = glob.glob(os.path.join(logdir, "best-*"))
    assert not os.path.exists(os.path.join(run, "backup")) and os.path.exists(os.path.join(run, "config.json"))

    again = run_cli("train.py", "--config", str(config), "--verbose", "0")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"Resuming the interrupted run in {run} from its first epoch (none had finished)" in again.stdout
    assert glob.glob(os.path.join(logdir, "*")) == [run] and [r["epoch"] for r in history(run)] == ["1", "2"]
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert {k: metrics[k] for k in SCORES} == {k: uninterrupted[k] for k in SCORES}


def test_an_over_long_log_directory_exits_2_and_makes_nothing(tmp_path):
    """A --logdir so deep that a run's files would pass the file system's path limit made a run directory,
    then failed writing TensorBoard's files, with a traceback: now refused by name, nothing made."""
    deep = tmp_path / "/".join(["d" * 250] * 16)
    done = run_cli("train.py", "--subset", "200", "--val-size", "100", "--epochs", "1", "--logdir", str(deep))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"train.py: error: Log directory {deep} is too long: its path has" in done.stderr
    assert f"Choose a shorter --logdir. Received: logdir={str(deep)!r}" in done.stderr
    assert os.listdir(tmp_path) == []
