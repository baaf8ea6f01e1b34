"""`--strategy`: the cluster environment, each process's input, and real runs.

The real runs go through subprocesses: MirroredStrategy over two logical
CPU devices (TensorFlow must be told before it starts, so in a fresh
process that runs this file as a script), and `multiworker` as
docs/DISTRIBUTED.md starts it, two `train.py` processes on 127.0.0.1
(Keras' JAX distribution API).
"""

import csv
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, free_port
from kerascnn.config import ConfigError, TrainConfig
from kerascnn.distribute import (
    KERAS_VARIABLES,
    Cluster,
    DistributeError,
    Plan,
    check_strategy,
    cluster_from_environment,
    setup,
)

WORKERS = {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}
RUN_FILES = ("config.json", "metrics.json", "best.keras", "history.csv")
SMALL = {"filters": 16, "dense_units": 64, "dropout": 0.1}  # the lecture CNN, narrower: quick on 2 cores


def tf_config(cluster=None, job="worker", index=0):
    return json.dumps({"cluster": cluster or WORKERS, "task": {"type": job, "index": index}})


def small_mnist(path, mnist, n_train=1100, n_test=500):
    """The first real MNIST images as your own `.npz` (a short test set keeps evaluation short). By path, since a
    part of MNIST is not MNIST: `--dataset mnist` takes only the whole dataset (`kerascnn.data.content_digest`)."""
    np.savez(path, x_train=mnist.x_train[:n_train, ..., 0], y_train=mnist.y_train[:n_train],
             x_test=mnist.x_test[:n_test, ..., 0], y_test=mnist.y_test[:n_test])
    return str(path)


# The cluster environment -------------------------------------------------------


def test_tf_config_numbers_the_chief_first_and_makes_it_the_coordinator():
    cluster = {"chief": ["head:1000"], "worker": ["w0:1001", "w1:1002"]}
    found = [cluster_from_environment({"TF_CONFIG": tf_config(cluster, job, i)})
             for job, i in (("chief", 0), ("worker", 0), ("worker", 1))]
    assert [c.process_id for c in found] == [0, 1, 2]
    assert {(c.coordinator, c.num_processes, c.source) for c in found} == {("head:1000", 3, "TF_CONFIG")}


def test_keras_variables_win_over_tf_config():
    environ = {"TF_CONFIG": tf_config(index=1), "KERAS_DISTRIBUTION_JOB_ADDRESSES": "127.0.0.1:5000,127.0.0.1:5001",
               "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "0"}
    assert cluster_from_environment(environ) == Cluster("127.0.0.1:5000", 2, 0, "KERAS_DISTRIBUTION_*")


@pytest.mark.parametrize("environ,message", [
    ({}, "needs its cluster in the environment"),
    ({"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": '}, "TF_CONFIG is not valid JSON"),
    ({"TF_CONFIG": '["a:1"]'}, 'TF_CONFIG must be a JSON object with "cluster" and "task"'),
    ({"TF_CONFIG": tf_config(index=2)}, r"task.index must be an integer in 0..1 .*Received: task="),
    ({"TF_CONFIG": tf_config(index=-1)}, r"task.index must be an integer in 0..1"),
    ({"TF_CONFIG": tf_config(job="chief")}, r"task.type must be one of the cluster's jobs \['worker'\]"),
    ({"TF_CONFIG": tf_config({"worker": ["a:1"], "ps": ["b:2"]})}, r"may only have the jobs .*Received: cluster jobs \['ps', 'worker'\]"),
    ({"TF_CONFIG": tf_config({"worker": ["no-port"]})}, "must hold \"host:port\" addresses. Received: 'no-port'"),
    ({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1"}, "needs all of KERAS_DISTRIBUTION_JOB_ADDRESSES"),
    ({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
      "KERAS_DISTRIBUTION_PROCESS_ID": "2"}, "PROCESS_ID must be in 0..1 for 2 processes. Received: KERAS_DISTRIBUTION_PROCESS_ID=2"),
    ({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1", "KERAS_DISTRIBUTION_NUM_PROCESSES": "two",
      "KERAS_DISTRIBUTION_PROCESS_ID": "0"}, "NUM_PROCESSES must be an integer >= 1. Received: KERAS_DISTRIBUTION_NUM_PROCESSES='two'"),
    ({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1,b:1,c:1", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
      "KERAS_DISTRIBUTION_PROCESS_ID": "0"}, "lists 3 addresses for KERAS_DISTRIBUTION_NUM_PROCESSES=2"),
])
def test_a_bad_cluster_environment_is_refused_by_name(environ, message):
    with pytest.raises(DistributeError, match=message):
        cluster_from_environment(environ)


def test_config_refuses_an_unknown_strategy():
    assert TrainConfig().strategy == "auto"
    with pytest.raises(ConfigError, match=r"`strategy` must be one of .*Received: strategy='horovod'"):
        TrainConfig(strategy="horovod")


def test_multiworker_on_the_tensorflow_backend_says_to_use_jax():
    with pytest.raises(DistributeError, match="KERAS_BACKEND=jax.*Received: backend=tensorflow"):
        check_strategy("multiworker", {"TF_CONFIG": tf_config()})


def test_auto_mirrors_only_over_several_gpus():
    import tensorflow as tf

    plan = setup("auto")
    several = len(tf.config.list_logical_devices("GPU")) > 1
    assert plan.name == ("mirrored" if several else "default")
    assert plan.is_chief and plan.global_batch(100) == 100 * plan.replicas


# train.py refuses a bad environment before it loads any data -------------------


@pytest.mark.parametrize("environ,message", [
    ({}, "needs its cluster in the environment"),
    ({"TF_CONFIG": "{cluster: [}"}, "TF_CONFIG is not valid JSON"),
    ({"TF_CONFIG": tf_config(index=2)}, "task.index must be an integer in 0..1"),
])
def test_train_py_exits_2_on_a_bad_cluster_environment_before_loading_data(
    tmp_path, monkeypatch, capsys, environ, message
):
    from kerascnn.commands.train import main as train_main

    for name in ("TF_CONFIG", *KERAS_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    logdir = tmp_path / "logs"
    with pytest.raises(SystemExit) as exit_:
        # A missing data directory would be the error if data were loaded first.
        train_main(["--strategy", "multiworker", "--data-dir", str(tmp_path / "no-data"), "--logdir", str(logdir)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("usage: train.py")
    assert "no-data" not in err and not logdir.exists()


# Each process's input ----------------------------------------------------------


def batches(ds):
    return [(x.numpy().ravel() * 255).round().astype(int).tolist() for x, _ in ds]


def test_multiworker_processes_feed_disjoint_slices_of_the_same_global_batches():
    from kerascnn.pipeline import make_dataset, train_dataset

    x, y = np.arange(14, dtype="uint8").reshape(14, 1), np.arange(14)
    per_replica, seed = 3, 5
    shards = [batches(train_dataset(x, y, Plan("multiworker", replicas=2, process_id=i, num_processes=2), per_replica, seed))
              for i in range(2)]
    # One process with the same seed sees these global batches; the last, partial one is dropped.
    expected = batches(make_dataset(x, y, 2 * per_replica, shuffle=True, seed=seed))[:2]
    assert [len(s) for s in shards] == [2, 2]  # same number of steps in every process
    assert [a + b for a, b in zip(*shards)] == expected


def test_multiworker_evaluation_repeats_batches_for_each_local_device():
    from kerascnn.pipeline import eval_dataset

    x, y = np.arange(5, dtype="uint8").reshape(5, 1), np.arange(5)
    plan = Plan("multiworker", replicas=4, local_replicas=2, process_id=1, num_processes=2)
    assert batches(eval_dataset(x, y, plan, per_replica=3)) == [[0, 1, 2, 0, 1, 2], [3, 4, 3, 4]]


def test_streamed_pictures_are_read_only_by_the_process_whose_slices_they_are(tmp_path):
    """Pictures left on disk give each process the same batches as in memory, and each process opens only the
    files of its own slices: with the other process's files of this epoch deleted, it still reads its own."""
    from PIL import Image

    from kerascnn.images import ImageFiles
    from kerascnn.pipeline import epoch_variable, train_dataset

    n, per_replica, seed = 26, 3, 5  # global batches of 6: 4 steps, the last 2 pictures dropped
    pixels = (np.arange(n, dtype="uint8") * 9)[:, None, None, None] * np.ones((1, 4, 4, 1), "uint8")
    paths = [str(tmp_path / f"{i}.png") for i in range(n)]
    for path, image in zip(paths, pixels):
        Image.fromarray(image[..., 0]).save(path)
    files, y = ImageFiles(paths, (4, 4), 1), np.arange(n)
    plans = [Plan("multiworker", replicas=2, process_id=i, num_processes=2) for i in range(2)]
    epoch = epoch_variable()
    epoch.assign(1)
    streamed = [batches(train_dataset(files, y, plan, per_replica, seed, epoch=epoch)) for plan in plans]
    in_memory = [batches(train_dataset(pixels, y, plan, per_replica, seed, epoch=epoch)) for plan in plans]
    assert streamed == in_memory and [len(s) for s in streamed] == [4, 4]

    mine = {value // 9 for batch in streamed[0] for value in batch[::16]}  # each picture is 16 pixels of i * 9
    assert len(mine) == 12
    for i in set(range(n)) - mine:
        os.remove(paths[i])
    assert batches(train_dataset(files, y, plans[0], per_replica, seed, epoch=epoch)) == streamed[0]
    with pytest.raises(Exception, match="No such file|FileNotFound|cannot|not found"):
        batches(train_dataset(files, y, plans[1], per_replica, seed, epoch=epoch))


# Real runs, in subprocesses ----------------------------------------------------


def run_self(*args, env=None, timeout=300):
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *args], cwd=ROOT, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_complete_run_dir(run):
    for name in RUN_FILES:
        assert os.path.isfile(os.path.join(run, name)), name
    assert glob.glob(os.path.join(run, "train", "events.out.tfevents.*"))
    assert glob.glob(os.path.join(run, "validation", "events.out.tfevents.*"))
    assert not os.path.exists(os.path.join(run, "backup"))


def assert_members_learn_from_their_own_losses(probe):
    per_member, of_mean, step = probe
    assert abs(per_member - of_mean) > 1  # the members disagree, so the two losses differ
    assert step == pytest.approx(per_member, rel=1e-4)


def test_mirrored_over_two_cpu_devices_trains_the_ensemble(tmp_path, mnist):
    config = dict(model="ensemble", members=2, epochs=1, val_size=100, batch_size=20, lr=3e-3, precision="float32",
                  strategy="mirrored", dataset=small_mnist(tmp_path / "small.npz", mnist), logdir=str(tmp_path / "logs"),
                  **SMALL)
    out = run_self("mirrored", json.dumps(config))
    m = out["metrics"]
    assert (m["strategy"], m["replicas"], m["global_batch_size"]) == ("mirrored", 2, 40)
    assert m["test_accuracy"] > 0.3  # chance is 0.1
    assert_complete_run_dir(out["run_dir"])
    assert glob.glob(os.path.join(out["run_dir"], "validation", "member_1", "events.out.tfevents.*"))
    assert_members_learn_from_their_own_losses(out["probe"])


def test_ensemble_losses_per_member_under_jax_data_parallel_on_two_devices():
    pytest.importorskip("jax")
    env = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{free_port()}",
           "KERAS_DISTRIBUTION_NUM_PROCESSES": "1", "KERAS_DISTRIBUTION_PROCESS_ID": "0"}
    out = run_self("probe", "multiworker", env=env)
    assert out["replicas"] == 2
    assert_members_learn_from_their_own_losses(out["probe"])


# Two train.py processes on loopback: one run, its resume after kill -9, its pictures ------------------------
# docs/DISTRIBUTED.md's two commands, `KERAS_BACKEND=jax KERAS_DISTRIBUTION_* python train.py --strategy
# multiworker`, process 0 and process 1, on a folder of MNIST digits as PNG class subfolders (your own images).
# One uninterrupted run (`reference`) is shared by the tests; a kill -9 is timed by the files the run writes.

PAIR_FLAGS = ["--model", "sequential", "--strategy", "multiworker", "--epochs", "2", "--batch-size", "20",
              "--lr", "3e-3", "--precision", "float32", "--verbose", "0",
              *[f"--{name.replace('_', '-')}={value}" for name, value in SMALL.items()]]


@pytest.fixture(scope="module")
def digit_folder(mnist, tmp_path_factory):
    """700 MNIST training digits as <root>/<digit>/<i>.png: 20% carved for test, 10% of the rest for validation."""
    from PIL import Image

    root = tmp_path_factory.mktemp("digits")
    for i, (image, label) in enumerate(zip(mnist.x_train[:700], mnist.y_train[:700])):
        os.makedirs(root / str(label), exist_ok=True)
        Image.fromarray(image[..., 0]).save(root / str(label) / f"{i}.png")
    return str(root)


class Pair:
    """The two processes of one sitting, started as the docs start them; their output in files under `folder`."""

    def __init__(self, folder, logdir, address, flags, name):
        self.folder, self.name = folder, name
        self.procs = []
        for index in range(2):
            env = {**os.environ, "KERAS_BACKEND": "jax", "TMPDIR": str(folder / "tmp"),
                   "KERAS_DISTRIBUTION_JOB_ADDRESSES": address, "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                   "KERAS_DISTRIBUTION_PROCESS_ID": str(index)}
            env.pop("TF_CONFIG", None)
            (folder / "tmp").mkdir(exist_ok=True)
            with open(self.path("out", index), "w") as out, open(self.path("err", index), "w") as err:
                self.procs.append(subprocess.Popen([sys.executable, "train.py", *flags, "--logdir", str(logdir)],
                                                   cwd=ROOT, env=env, stdout=out, stderr=err))

    def path(self, stream, index):
        return self.folder / f"{self.name}-{stream}-{index}"

    def text(self, stream, index):
        return self.path(stream, index).read_text()

    def wait(self, timeout=600):
        """The exit statuses; a process still running after `timeout` seconds is killed (the test then fails)."""
        try:
            return [p.wait(timeout=timeout) for p in self.procs]
        finally:
            self.kill()

    def kill(self, *indices):
        for p in [self.procs[i] for i in indices] if indices else self.procs:
            if p.poll() is None:
                p.kill()

    def wait_for(self, done, what, timeout=600):
        """Waits until `done()` is true, while both processes run; fails naming `what` otherwise."""
        deadline = time.monotonic() + timeout
        while not done():
            for index, p in enumerate(self.procs):
                assert p.poll() is None, f"process {index} exited before {what}: {self.text('err', index)[-3000:]}"
            assert time.monotonic() < deadline, f"hung: not {what} after {timeout} s"
            time.sleep(0.1)


def backup_epochs(logdir):
    """The epochs the chief's newest backup under `logdir` holds (Keras' metadata, read whole), or None."""
    try:
        (metadata,) = glob.glob(os.path.join(logdir, "*", "backup", "training_metadata.json"))
        return json.load(open(metadata))["epoch"]
    except (ValueError, OSError):  # not there yet, or being replaced
        return None


def last_line_fields(text):
    return dict(field.split("=", 1) for field in text.strip().splitlines()[-1].split())


def val_scores(run_dir):
    """(epoch, val_accuracy, val_loss) of each row of the run's history.csv."""
    with open(os.path.join(run_dir, "history.csv")) as f:
        return [(r["epoch"], float(r["val_accuracy"]), float(r["val_loss"])) for r in csv.DictReader(f)]


def assert_scores_equal(run_dir, reference_dir):
    """Per-epoch validation scores equal the reference's (JAX's CPU kernels here repeat themselves exactly)."""
    assert val_scores(run_dir) == val_scores(reference_dir)


@pytest.fixture(scope="module")
def reference(digit_folder, tmp_path_factory):
    """The uninterrupted run: two processes, the digit folder streamed. (run_dir, the Pair)."""
    pytest.importorskip("jax")
    folder = tmp_path_factory.mktemp("reference")
    logdir = folder / "logs"
    pair = Pair(folder, logdir, f"127.0.0.1:{free_port()}",
                [*PAIR_FLAGS, "--dataset", digit_folder, "--stream", "on"], "run")
    for index, code in enumerate(pair.wait()):
        assert code == 0, pair.text("err", index)[-3000:]
    (run,) = glob.glob(str(logdir / "*"))
    return run, pair


def test_two_train_py_processes_as_the_docs_start_them_train_one_model_and_draw_its_pictures(reference):
    """Both exit 0; only the chief keeps a run directory, and it holds what a one-process run's holds: the test
    pictures and per-class scores from best.keras, the TensorBoard images (confusion matrix, misclassified,
    filters, feature maps)."""
    import tensorflow as tf

    run, pair = reference
    chief, worker = [pair.text("out", i).splitlines() for i in range(2)]
    for lines in (chief, worker):  # the start-up line, printed after joining (Gloo's own line may come first)
        assert [line for line in lines if line.startswith("kerascnn: JAX ")] == [lines[-2]]
    scores = [last_line_fields(pair.text("out", i)) for i in range(2)]
    assert scores[0]["run_dir"] == run and scores[1]["run_dir"] == "None"
    assert not glob.glob(str(pair.folder / "tmp" / "kerascnn-worker-*"))
    assert_complete_run_dir(run)
    m = json.load(open(os.path.join(run, "metrics.json")))
    assert (m["strategy"], m["replicas"], m["global_batch_size"], m["epochs"]) == ("multiworker", 2, 40, 2)
    assert (m["resumed"], m["sittings"]) == (False, 1)
    assert json.load(open(os.path.join(run, "spread.json"))) == {"processes": 2, "replicas": 2}
    assert json.load(open(os.path.join(run, "data.json")))["streamed"]
    # One model: both processes score the same weights on the same test images.
    assert float(scores[0]["test_accuracy"]) > 0.3
    assert [s["test_accuracy"] for s in scores] == [f"{m['test_accuracy']:.4f}"] * 2
    assert scores[0]["test_loss"] == scores[1]["test_loss"]
    # The chief's pictures, from best.keras on its own: they agree with the scores of all processes.
    assert sum(c["images"] for c in m["per_class_accuracy"].values()) == m["test_images"]
    correct = sum(c["accuracy"] * c["images"] for c in m["per_class_accuracy"].values())
    assert correct / m["test_images"] == pytest.approx(m["test_accuracy"], abs=1e-6)
    assert os.path.getsize(os.path.join(run, "confusion_matrix.png")) > 1000
    # As in one process, the test's misclassified pictures are drawn when they are in memory (the next tests).
    assert not os.path.exists(os.path.join(run, "misclassified.png"))
    tags = {value.tag for path in glob.glob(os.path.join(run, "validation", "events.out.tfevents.*"))
            for event in tf.compat.v1.train.summary_iterator(path) for value in event.summary.value
            if event.step == 1}  # the last epoch's step
    assert {"confusion_matrix", "misclassified", "filters", "feature_maps/00_input", "feature_maps/01_conv2d"} <= tags


@pytest.fixture(scope="module")
def interrupted(digit_folder, tmp_path_factory):
    """The reference's command, both processes killed (-9) once the backup of epoch 1 is on disk. Tests resume
    copies of it (`copy_run`). (run_dir, the flags.)"""
    pytest.importorskip("jax")
    folder = tmp_path_factory.mktemp("interrupted")
    logdir = folder / "logs"
    flags = [*PAIR_FLAGS, "--dataset", digit_folder, "--stream", "on"]
    pair = Pair(folder, logdir, f"127.0.0.1:{free_port()}", flags, "killed")
    pair.wait_for(lambda: backup_epochs(logdir) == 1, "the backup of epoch 1 was written")
    pair.kill()
    assert pair.wait() == [-signal.SIGKILL] * 2
    (run,) = glob.glob(str(logdir / "*"))
    assert len(val_scores(run)) == 1 and not os.path.exists(os.path.join(run, "metrics.json"))
    return run, flags


def copy_run(run, folder):
    """A copy of the run directory `run` in `folder`/logs (a run is found by the folder it is in)."""
    return shutil.copytree(run, os.path.join(folder, "logs", os.path.basename(run)))


def test_both_processes_killed_after_an_epoch_resume_in_the_same_run_directory(interrupted, reference, tmp_path):
    """The same two commands again continue the run in its own directory from epoch 2: one run directory, its
    epochs' validation scores the uninterrupted run's, metrics.json saying it resumed, over two sittings."""
    run = copy_run(interrupted[0], tmp_path)
    again = Pair(tmp_path, tmp_path / "logs", f"127.0.0.1:{free_port()}", interrupted[1], "again")
    for index, code in enumerate(again.wait()):
        assert code == 0, again.text("err", index)[-3000:]
    assert f"Resuming the interrupted run in {run} from epoch 2" in again.text("out", 0)
    assert last_line_fields(again.text("out", 0))["run_dir"] == run
    assert glob.glob(str(tmp_path / "logs" / "*")) == [run]
    assert_complete_run_dir(run)
    assert_scores_equal(run, reference[0])
    m = json.load(open(os.path.join(run, "metrics.json")))
    assert (m["resumed"], m["sittings"], m["epochs"]) == (True, 2, 2)
    ref = json.load(open(os.path.join(reference[0], "metrics.json")))
    assert (m["best_epoch"], m["test_accuracy"]) == (ref["best_epoch"], ref["test_accuracy"])


def test_a_restart_with_another_batch_size_exits_2_in_both_processes(interrupted, tmp_path):
    """Another --batch-size than the interrupted run's: both processes exit 2 with resuming's message naming the
    difference and the two ways on; the interrupted run is left as it is, and no run directory is made."""
    run = copy_run(interrupted[0], tmp_path)
    before = sorted(os.listdir(run))
    flags = [*interrupted[1], "--batch-size", "25"]
    again = Pair(tmp_path, tmp_path / "logs", f"127.0.0.1:{free_port()}", flags, "other")
    assert again.wait() == [2, 2]
    for index in range(2):
        err = again.text("err", index)
        assert "Traceback" not in err, err[-3000:]
        assert f"An interrupted run of sequential on {interrupted[1][-3]} is in {run}, with another config: " \
               f"batch_size (20 there, 25 here)." in err
        assert "--no-resume" in err and f"--config {run}/config.json" in err
    assert glob.glob(str(tmp_path / "logs" / "*")) == [run] and sorted(os.listdir(run)) == before


def test_the_worker_killed_alone_ends_the_chief_and_both_resume_the_run_in_memory(digit_folder, reference, tmp_path):
    """kill -9 of process 1 alone, after epoch 1's backup: the chief stops at once (exit 1, saying to start every
    command again) instead of waiting for JAX's heartbeat timeout; the same commands resume the run to the
    uninterrupted run's scores. The pictures here are read into memory, where the reference streamed them:
    the same pixels and batches, so the same scores."""
    logdir = tmp_path / "logs"
    flags = [*PAIR_FLAGS, "--dataset", digit_folder, "--stream", "off"]
    address = f"127.0.0.1:{free_port()}"
    first = Pair(tmp_path, logdir, address, flags, "first")
    first.wait_for(lambda: backup_epochs(logdir) == 1, "the backup of epoch 1 was written")
    first.kill(1)
    codes = first.wait(timeout=90)  # well under JAX's 100 s heartbeat timeout
    assert codes == [1, -signal.SIGKILL], first.text("err", 0)[-3000:]
    assert "Start every process's command again to resume the run." in first.text("err", 0)
    (run,) = glob.glob(str(logdir / "*"))
    assert not os.path.exists(os.path.join(run, "metrics.json"))

    again = Pair(tmp_path, logdir, address, flags, "again")
    for index, code in enumerate(again.wait()):
        assert code == 0, again.text("err", index)[-3000:]
    assert f"Resuming the interrupted run in {run} from epoch 2" in again.text("out", 0)
    assert glob.glob(str(logdir / "*")) == [run]
    assert_scores_equal(run, reference[0])
    m = json.load(open(os.path.join(run, "metrics.json")))
    assert (m["resumed"], m["sittings"]) == (True, 2)
    assert not json.load(open(os.path.join(run, "data.json")))["streamed"]
    for name in ("confusion_matrix.png", "misclassified.png"):  # the test pictures, in memory: both drawn
        assert os.path.getsize(os.path.join(run, name)) > 1000, name


# The subprocesses' side ---------------------------------------------------------


def ensemble_loss_probe(plan):
    """(mean of the members' losses, loss of the mean, the train step's loss) on 64 test images."""
    import keras

    from kerascnn.data import load_dataset
    from kerascnn.models import create_model
    from kerascnn.assemble import compile_model

    data = load_dataset("mnist", download=False)
    x, y = data.x_test[:64].astype("float32") / 255.0, data.y_test[:64].astype("int32")
    keras.utils.set_random_seed(1)
    with plan.scope():
        model = create_model("ensemble", members=2, **{**SMALL, "dropout": 0.0})  # a deterministic step
        compile_model(model, TrainConfig(precision="float32"))
    head = model.members[1].logits
    head.bias.assign(10.0 * np.eye(10, dtype="float32")[0])  # member 1 sure of "0", member 0 unsure
    probabilities = [member.predict(x, verbose=0) for member in model.members]
    loss = lambda p: float(np.mean(-np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0))))
    per_member = float(np.mean([loss(p) for p in probabilities]))
    of_mean = loss(np.mean(probabilities, axis=0))
    step = float(model.train_on_batch(x, y, return_dict=True)["loss"])
    return per_member, of_mean, step


def _main(mode, *args):
    if mode == "mirrored":  # two logical CPU devices, set before TensorFlow starts
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    if mode == "probe":
        plan = setup(args[0])
        return {"replicas": plan.replicas, "probe": ensemble_loss_probe(plan)}
    from kerascnn.training import train  # "mirrored": a whole run, then the probe under the same strategy

    result = train(TrainConfig(**json.loads(args[0])), verbose=0)
    return {"run_dir": result.run_dir, "metrics": result.metrics, "probe": ensemble_loss_probe(setup("mirrored"))}


if __name__ == "__main__":
    print(json.dumps(_main(*sys.argv[1:])))
