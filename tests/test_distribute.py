"""`--strategy`: the cluster environment, each process's input, and real runs.

The real runs go through subprocesses: MirroredStrategy over two logical
CPU devices (TensorFlow must be told before it starts, so in a fresh
process that runs this file as a script), and `multiworker` as
docs/DISTRIBUTED.md starts it, two `train.py` processes on 127.0.0.1
(Keras' JAX distribution API).
"""

import glob
import json
import os
import subprocess
import sys

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


def test_two_train_py_processes_as_the_docs_start_them_train_one_model(tmp_path, mnist):
    """docs/DISTRIBUTED.md's two commands, on loopback: `KERAS_BACKEND=jax KERAS_DISTRIBUTION_* python train.py
    --strategy multiworker`, process 0 and process 1. Both exit 0, and only the chief keeps a run directory."""
    pytest.importorskip("jax")
    logdir, scratch = tmp_path / "logs", tmp_path / "tmp"
    scratch.mkdir()
    flags = ["--model", "sequential", "--strategy", "multiworker", "--epochs", "1", "--val-size", "100",
             "--batch-size", "20", "--lr", "3e-3", "--precision", "float32", "--verbose", "0",
             "--dataset", small_mnist(tmp_path / "small.npz", mnist), "--logdir", str(logdir),
             *[f"--{name.replace('_', '-')}={value}" for name, value in SMALL.items()]]
    address = f"127.0.0.1:{free_port()}"
    procs = []
    for index in range(2):
        env = {**os.environ, "KERAS_BACKEND": "jax", "TMPDIR": str(scratch), "KERAS_DISTRIBUTION_JOB_ADDRESSES": address,
               "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": str(index)}
        env.pop("TF_CONFIG", None)
        with open(tmp_path / f"out-{index}", "w") as stdout, open(tmp_path / f"err-{index}", "w") as stderr:
            procs.append(subprocess.Popen([sys.executable, "train.py", *flags], cwd=ROOT, env=env,
                                          stdout=stdout, stderr=stderr))
    try:
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for index, code in enumerate(codes):
        assert code == 0, (tmp_path / f"err-{index}").read_text()[-3000:]
    chief, worker = [(tmp_path / f"out-{i}").read_text().splitlines() for i in range(2)]
    for lines in (chief, worker):  # the start-up line, printed after joining (Gloo's own line may come first)
        assert [line for line in lines if line.startswith("kerascnn: JAX ")] == [lines[-2]]
    scores = [dict(field.split("=", 1) for field in lines[-1].split()) for lines in (chief, worker)]

    # Only the chief keeps a run directory, and it is complete.
    assert scores[1]["run_dir"] == "None"
    assert glob.glob(str(logdir / "*")) == [scores[0]["run_dir"]]
    assert_complete_run_dir(scores[0]["run_dir"])
    assert not glob.glob(str(scratch / "kerascnn-worker-*"))
    m = json.load(open(os.path.join(scores[0]["run_dir"], "metrics.json")))
    assert (m["strategy"], m["replicas"], m["global_batch_size"], m["epochs"]) == ("multiworker", 2, 40, 1)
    # One model: both processes score the same weights on the same test images.
    assert float(scores[0]["test_accuracy"]) > 0.3
    assert [s["test_accuracy"] for s in scores] == [f"{m['test_accuracy']:.4f}"] * 2
    assert scores[0]["test_loss"] == scores[1]["test_loss"]


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
