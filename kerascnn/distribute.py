"""One training run on several devices or machines, on an existing engine.

`--strategy` chooses how `train()` spreads one run:

* `default`: one device (TensorFlow's default strategy; on JAX, no
  distribution).
* `mirrored`: `tf.distribute.MirroredStrategy`, one replica per visible GPU
  (on a machine without GPUs, one per logical CPU device). TensorFlow
  backend.
* `multiworker`: several processes, on one machine or many, through Keras'
  own distribution API (`keras.distribution.initialize` and `DataParallel`)
  on JAX's multi-process runtime. Needs `KERAS_BACKEND=jax`.
* `auto`: `mirrored` when TensorFlow sees more than one GPU, else `default`.
  It never joins a cluster: that takes `multiworker`.

Why not `tf.distribute.MultiWorkerMirroredStrategy`: with TensorFlow 2.21
and Keras 3.15 its `fit()` fails (keras-team/keras#20585, open). Keras
reduces the first input batch across workers with `strategy.reduce("MEAN",
(x, y), axis=None)` before building the model, which raises `ValueError:
Attempt to convert a value (PerReplica:{...}) ... to a Tensor`; past that,
the train step reduces its scalar metrics with `strategy.reduce("MEAN", v,
axis=0)` and fails with `Invalid reduction dimension 0 for input with 0
dimensions`. No option of `fit()` avoids either (docs/DISTRIBUTED.md).

The cluster of a `multiworker` run comes from the environment, either Keras'
variables (`KERAS_DISTRIBUTION_JOB_ADDRESSES`: the coordinator, process 0's
`host:port`, optionally followed by the others; `KERAS_DISTRIBUTION_NUM_PROCESSES`;
`KERAS_DISTRIBUTION_PROCESS_ID`) or a `TF_CONFIG` (its first `chief`, else
first `worker`, is process 0 and the coordinator; only the count of the
other addresses matters). Keras' variables win when both are set. Process 0
is the chief: only it writes the run directory.

`--batch-size` is per replica: each step trains on `batch_size * replicas`
images, all processes together.

What the processes of a run must agree on goes between them over the
cluster itself (JAX's `multihost_utils`: a broadcast from the chief, a
gather, a barrier), so no shared filesystem is needed: `share` sends the
chief's answer (the run directory it opened, or why it refused one),
`share_files` the files of an interrupted run that the others resume from,
`check_same` checks that every process holds the same value, `barrier`
waits for all. `alone` turns the distribution off for work that only the
chief does (the pictures after training), and `ends_at_once_on_failure`
ends a process whose cluster broke at once instead of after JAX's
heartbeat timeout.

Example:

>>> cluster_from_environment({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:1234",
...     "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "1"})
Cluster(coordinator='10.0.0.1:1234', num_processes=2, process_id=1, source='KERAS_DISTRIBUTION_*')
>>> Plan("mirrored", replicas=4).global_batch(100)
400
"""

import atexit
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import traceback

import numpy as np

from kerascnn.config import STRATEGIES  # the names live with the config
from kerascnn.errors import DistributeError  # here for its callers too: `from kerascnn.distribute import DistributeError`
from kerascnn.errors import RunFailed, UsageError

KERAS_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)
TF_CONFIG_JOBS = ("chief", "worker")  # in process order: the chief, if any, is process 0


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The processes of a `multiworker` run, as the environment describes them.

    Args:
        coordinator: str, `host:port` of process 0, where JAX's coordinator
            service listens.
        num_processes: int, processes in the run.
        process_id: int, this process, in `0..num_processes - 1`.
        source: str, the variables it came from.
    """

    coordinator: str
    num_processes: int
    process_id: int
    source: str


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one run is spread: its scope, and the batch sizes each process feeds.

    It places the input and builds none: `kerascnn.pipeline` builds each
    process's batches from it (`train_dataset`, `eval_dataset`).

    Example:

    >>> plan = Plan("default")
    >>> plan.is_chief, plan.global_batch(100), plan.eval_batch(100)
    (True, 100, 100)

    Args:
        name: str, the strategy used: "default", "mirrored" or "multiworker".
        replicas: int, model replicas trained in sync, all processes together.
            Defaults to 1.
        local_replicas: int, replicas in this process. Defaults to 1.
        process_id: int, this process (0 is the chief). Defaults to 0.
        num_processes: int, processes in the run. Defaults to 1.
        strategy: the `tf.distribute.Strategy` to build and compile in, or
            None. Defaults to None.
    """

    name: str
    replicas: int = 1
    local_replicas: int = 1
    process_id: int = 0
    num_processes: int = 1
    strategy: object = None

    @property
    def is_chief(self):
        """True in the process that writes the run directory (process 0)."""
        return self.process_id == 0

    def scope(self):
        """The scope to create the model, its optimizer and metrics in."""
        # JAX: the `DataParallel` distribution is set process-wide by `setup`.
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def global_batch(self, per_replica):
        """Images per training step, all replicas together."""
        return per_replica * self.replicas

    def steps_per_epoch(self, train_images, per_replica):
        """Training steps in an epoch of `train_images` pictures: a last, partial global batch is a step, except
        across processes, where every process must take the same number (`kerascnn.pipeline.train_dataset`)."""
        whole, part = divmod(train_images, self.global_batch(per_replica))
        return whole + (1 if part and self.name != "multiworker" else 0)

    def eval_batch(self, per_replica):
        """The batch size of evaluation datasets (see `kerascnn.pipeline.eval_dataset`)."""
        return per_replica if self.name == "multiworker" else self.global_batch(per_replica)


def cluster_from_environment(environ=None):
    """The `Cluster` that `KERAS_DISTRIBUTION_*` or `TF_CONFIG` describe.

    Args:
        environ: mapping, the environment. Defaults to `os.environ`.

    Raises:
        DistributeError: neither is set, or the one used is malformed (not
            JSON, a missing or unknown field, a task index out of range).
    """
    environ = os.environ if environ is None else environ
    if any(name in environ for name in KERAS_VARIABLES):
        return _from_keras_variables(environ)
    if "TF_CONFIG" in environ:
        return _from_tf_config(environ["TF_CONFIG"])
    raise DistributeError(
        "`--strategy multiworker` needs its cluster in the environment: TF_CONFIG (JSON), or "
        f"{', '.join(KERAS_VARIABLES)} (docs/DISTRIBUTED.md). "
        "Received: none of them is set"
    )


def _from_keras_variables(environ):
    missing = [name for name in KERAS_VARIABLES if not environ.get(name)]
    if missing:
        present = {name: environ.get(name) for name in KERAS_VARIABLES}
        raise DistributeError(f"`--strategy multiworker` needs all of {', '.join(KERAS_VARIABLES)}. Received: {present}")
    addresses = environ["KERAS_DISTRIBUTION_JOB_ADDRESSES"].split(",")
    for address in addresses:
        _check_address(address, "KERAS_DISTRIBUTION_JOB_ADDRESSES")
    count = _int_variable(environ, "KERAS_DISTRIBUTION_NUM_PROCESSES", 1)
    index = _int_variable(environ, "KERAS_DISTRIBUTION_PROCESS_ID", 0)
    if index >= count:
        raise DistributeError(
            f"KERAS_DISTRIBUTION_PROCESS_ID must be in 0..{count - 1} for {count} processes. "
            f"Received: KERAS_DISTRIBUTION_PROCESS_ID={index}"
        )
    if len(addresses) > 1 and len(addresses) != count:
        raise DistributeError(
            f"KERAS_DISTRIBUTION_JOB_ADDRESSES lists {len(addresses)} addresses for "
            f"KERAS_DISTRIBUTION_NUM_PROCESSES={count}; give one per process or only the coordinator's. "
            f"Received: KERAS_DISTRIBUTION_JOB_ADDRESSES={environ['KERAS_DISTRIBUTION_JOB_ADDRESSES']!r}"
        )
    return Cluster(addresses[0].strip(), count, index, "KERAS_DISTRIBUTION_*")


def _int_variable(environ, name, minimum):
    text = environ[name]
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise DistributeError(f"{name} must be an integer >= {minimum}. Received: {name}={text!r}")
    return value


def _from_tf_config(text):
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as e:
        raise DistributeError(f"TF_CONFIG is not valid JSON ({e}). Received: TF_CONFIG={_short(text)}") from None
    if not (isinstance(tf_config, dict) and isinstance(tf_config.get("cluster"), dict)
            and isinstance(tf_config.get("task"), dict)):
        raise DistributeError(
            'TF_CONFIG must be a JSON object with "cluster" and "task" objects, as in {"cluster": '
            '{"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}}. '
            f"Received: TF_CONFIG={_short(text)}"
        )
    cluster, task = tf_config["cluster"], tf_config["task"]
    unknown = sorted(set(cluster) - set(TF_CONFIG_JOBS))
    if unknown or not cluster:
        raise DistributeError(
            f"TF_CONFIG's cluster may only have the jobs {list(TF_CONFIG_JOBS)} (data-parallel training has "
            f"no parameter servers or evaluators). Received: cluster jobs {sorted(cluster)}"
        )
    for job, addresses in cluster.items():
        if not (isinstance(addresses, list) and addresses):
            raise DistributeError(f"TF_CONFIG's cluster.{job} must be a non-empty list of \"host:port\". "
                                  f"Received: cluster.{job}={addresses!r}")
        for address in addresses:
            _check_address(address, f"TF_CONFIG's cluster.{job}")
    if len(cluster.get("chief", [])) > 1:
        raise DistributeError(f"TF_CONFIG's cluster.chief must have one address. Received: {cluster['chief']!r}")
    job, index = task.get("type"), task.get("index")
    if job not in cluster:
        raise DistributeError(
            f"TF_CONFIG's task.type must be one of the cluster's jobs {sorted(cluster)}. Received: task={task!r}"
        )
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[job]):
        raise DistributeError(
            f"TF_CONFIG's task.index must be an integer in 0..{len(cluster[job]) - 1} for the "
            f"{len(cluster[job])} {job!r} addresses. Received: task={task!r}"
        )
    order = [(j, i) for j in TF_CONFIG_JOBS for i in range(len(cluster.get(j, [])))]
    first_job = order[0][0]
    return Cluster(cluster[first_job][0], len(order), order.index((job, index)), "TF_CONFIG")


def _check_address(address, where):
    host, _, port = str(address).strip().rpartition(":")
    if not (isinstance(address, str) and host and port.isdigit() and 0 < int(port) < 65536):
        raise DistributeError(f"{where} must hold \"host:port\" addresses. Received: {address!r}")


def _short(text, limit=200):
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_strategy(strategy, environ=None):
    """Validates `strategy` against the environment and backend; touches no device.

    `train.py` calls this before it loads any data, so bad usage exits at once.

    Args:
        strategy: str, one of `STRATEGIES`.
        environ: mapping, the environment. Defaults to `os.environ`.

    Returns:
        The `Cluster` for "multiworker", else None.

    Raises:
        DistributeError: an unknown strategy, a missing or malformed cluster
            environment, or a backend the strategy does not run on.
    """
    import keras

    if strategy not in STRATEGIES:
        raise DistributeError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={strategy!r}")
    backend = keras.backend.backend()
    if strategy == "multiworker":
        cluster = cluster_from_environment(environ)
        if backend != "jax":
            raise DistributeError(
                "`--strategy multiworker` trains on Keras' JAX distribution API (TensorFlow's "
                "MultiWorkerMirroredStrategy fails in Keras 3's fit(), keras-team/keras#20585): run it "
                f"with KERAS_BACKEND=jax and jax installed (pip install 'kerascnn[jax]'). Received: backend={backend}"
            )
        return cluster
    if strategy == "mirrored" and backend != "tensorflow":
        raise DistributeError(
            "`--strategy mirrored` is TensorFlow's MirroredStrategy and needs the TensorFlow backend; on JAX, "
            f"`--strategy multiworker` with one process uses all its devices. Received: backend={backend}"
        )
    return None


def setup(strategy, environ=None):
    """Starts `strategy` and returns its `Plan`; call before any computation.

    "multiworker" joins the cluster (`keras.distribution.initialize`, which
    waits for every process) and sets a process-wide `DataParallel`
    distribution over all processes' devices.

    Args:
        strategy: str, one of `STRATEGIES`.
        environ: mapping, the environment. Defaults to `os.environ`.

    Raises:
        DistributeError: as `check_strategy`.
    """
    import keras

    cluster = check_strategy(strategy, environ)
    backend = keras.backend.backend()
    if strategy == "multiworker":
        return _setup_multiworker(cluster)
    if backend != "tensorflow":
        return Plan("default")
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if strategy == "mirrored" or (strategy == "auto" and len(gpus) > 1):
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        mirrored = tf.distribute.MirroredStrategy(devices)
        n = mirrored.num_replicas_in_sync
        return Plan("mirrored", replicas=n, local_replicas=n, strategy=mirrored)
    return Plan("default")


def worker_dir():
    """A temporary directory for a worker other than the chief, removed at exit.

    Such a worker runs the same callbacks as the chief (they take part in no
    collective step, but keep the code the same); `train()` removes the
    directory when it returns, and this removes it should the run fail.
    """
    path = tempfile.mkdtemp(prefix="kerascnn-worker-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _setup_multiworker(cluster):
    import jax
    import keras

    if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
    if not jax.distributed.is_initialized():
        keras.distribution.initialize(cluster.coordinator, cluster.num_processes, cluster.process_id)
    # Each process feeds its own share (see `kerascnn.pipeline.train_dataset`), so Keras must not shard again.
    keras.distribution.set_distribution(keras.distribution.DataParallel(auto_shard_dataset=False))
    return Plan(
        "multiworker",
        replicas=jax.device_count(),
        local_replicas=jax.local_device_count(),
        process_id=jax.process_index(),
        num_processes=jax.process_count(),
    )


# What the processes share -------------------------------------------------------------------------------------


def share(plan, value=None):
    """The chief's `value` (anything JSON can hold), in every process of `plan`'s run.

    Every process must call it at the same point; what the others pass is
    ignored. With one process, `value` comes back as it is.
    """
    if plan.num_processes == 1:
        return value
    data = json.dumps(value).encode() if plan.is_chief else b""
    return json.loads(_broadcast_bytes(plan, data).decode())


def share_files(plan, names, source=None, target=None):
    """Copies the chief's files `names` (paths relative to `source`) to `target` in the other processes.

    The chief sends those of `names` that exist under its `source`; every
    other process writes them under its `target` (each file whole, then
    renamed into place: `kerascnn.rundir.atomic_write`) and removes those
    of `names` that the chief lacks, so `target` holds exactly the chief's.
    Every process must call it at the same point.

    Args:
        plan: the run's `Plan`.
        names: list of str, paths relative to the folders.
        source: str, the chief's folder (ignored elsewhere).
        target: str, this process's folder (ignored in the chief).
    """
    from kerascnn import rundir

    if plan.num_processes == 1:
        return
    files = {}
    if plan.is_chief:
        for name in names:
            path = os.path.join(source, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    files[name] = f.read()
    sizes = share(plan, {name: len(data) for name, data in files.items()} if plan.is_chief else None)
    blob = _broadcast_bytes(plan, b"".join(files[name] for name in sizes) if plan.is_chief else b"")
    if plan.is_chief:
        return
    offset = 0
    for name in names:
        path = os.path.join(target, name)
        if name not in sizes:
            if os.path.exists(path):
                os.remove(path)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with rundir.atomic_write(path) as tmp, open(tmp, "wb") as f:
            f.write(blob[offset:offset + sizes[name]])
        offset += sizes[name]


def check_same(plan, value, what):
    """Raises `DistributeError` unless every process of `plan`'s run passed the same integer `value`.

    Args:
        what: str, what `value` is, for the message.
    """
    if plan.num_processes == 1:
        return
    from jax.experimental import multihost_utils

    values = [int(v) for v in multihost_utils.process_allgather(np.asarray([value], np.int64)).reshape(-1)]
    if len(set(values)) > 1:
        each = ", ".join(f"process {i}: {v}" for i, v in enumerate(values))
        raise DistributeError(f"The processes of this run disagree on {what}: {each}. Received: {what}={value}")


def barrier(plan, name):
    """Waits until every process of `plan`'s run has reached the barrier `name` (the same name in all)."""
    if plan.num_processes > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _broadcast_bytes(plan, data):
    """The chief's bytes `data` in every process: their length first, then the bytes (one all-reduce each)."""
    from jax.experimental import multihost_utils

    size = int(multihost_utils.broadcast_one_to_all(np.asarray(len(data), np.int64)))
    if size == 0:
        return b""
    mine = np.frombuffer(data, np.uint8) if plan.is_chief else np.zeros(size, np.uint8)
    return np.asarray(multihost_utils.broadcast_one_to_all(mine), np.uint8).tobytes()


@contextlib.contextmanager
def alone():
    """Keras' distribution off inside the block, on again after it.

    A model loaded in the block lives on this process's first device and
    predicts without the other processes (Keras' JAX `predict()` cannot
    gather outputs spread over processes): the chief's pictures after a
    multi-process run.
    """
    import keras

    distribution = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(distribution)


@contextlib.contextmanager
def ends_at_once_on_failure(plan):
    """Ends this process as soon as the block fails with an error other than bad usage or a diverged run.

    When one process of a run dies (a kill -9, a lost machine), the others
    fail in their next collective step ("Connection closed by peer"); left
    to itself, such a process then waits at JAX's shutdown barrier for the
    dead one until the heartbeat timeout (100 s) and aborts. Here it
    prints the error, says how to go on, and exits with status 1 at once.
    Bad usage (exit 2), a diverged loss (exit 1) and Ctrl-C (130) are left
    to the command: every process meets them together, and the processes
    leave the cluster together. One process: nothing changes.
    """
    try:
        yield
    except (UsageError, RunFailed, KeyboardInterrupt):
        raise
    except BaseException:
        if plan is None or plan.num_processes == 1:
            raise
        traceback.print_exc()
        print(f"kerascnn: process {plan.process_id} of {plan.num_processes} stopped: this run's cluster failed "
              "(a process died?). Start every process's command again to resume the run.", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)  # skips JAX's shutdown barrier, which would wait for the dead process
