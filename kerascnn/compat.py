"""Every reliance on a dependency's internals, in one place, checked against its version.

Keras, keras-tuner and TensorFlow are used through their public APIs
everywhere else. Where no public API does what a run needs, the reach-in is
here, one function each, with the reason and the upstream issue, and with
its own test in `tests/test_compat.py`, so that an upgrade that moves an
internal fails loudly in one place rather than somewhere in a long run.

The supported versions (`SUPPORTED`, the same ranges as `setup.cfg`) are
checked when this module is imported, from the installed packages' metadata
(no import of the packages themselves): a version below the range raises
`ImportError`, one above it warns. A package that is not installed is not
checked (Keras on JAX runs without TensorFlow; keras-tuner is needed by
`tune.py` only).

Example:

>>> check_versions({"keras": "3.15.1", "tensorflow": None, "keras-tuner": "1.4.8"})
>>> check_versions({"keras": "2.15.0"})
Traceback (most recent call last):
...
ImportError: kerascnn needs keras>=3.3,<3.16. Received: keras==2.15.0
"""

import importlib.metadata
import json
import warnings

from packaging.version import Version  # what pip itself compares versions with

# package -> (lowest supported, first unsupported): setup.cfg pins the same ranges.
SUPPORTED = {
    "keras": ("3.3", "3.16"),
    "keras-tuner": ("1.4.7", "1.5"),
    "tensorflow": ("2.16", "2.22"),
}


def installed_versions():
    """The installed version of each package in `SUPPORTED`, or None where it is absent."""
    found = {}
    for name in SUPPORTED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def check_versions(versions=None):
    """Raises `ImportError` for a version below `SUPPORTED`, warns for one above it.

    Args:
        versions: dict of package name to version string (None: not
            installed). Defaults to the installed packages.
    """
    versions = installed_versions() if versions is None else versions
    for name, version in versions.items():
        if version is None or name not in SUPPORTED:
            continue
        low, high = SUPPORTED[name]
        wanted = f"{name}>={low},<{high}"
        release = Version(version).release  # 2.22.0rc1 -> (2, 22, 0): a pre-release counts as its release
        if release < Version(low).release:
            raise ImportError(f"kerascnn needs {wanted}. Received: {name}=={version}")
        if release >= Version(high).release:
            warnings.warn(
                f"kerascnn is tested with {wanted}; the reach-ins of kerascnn/compat.py may not hold "
                f"(run tests/test_compat.py). Received: {name}=={version}",
                stacklevel=2,
            )


check_versions()


# Keras ---------------------------------------------------------------------------


def flatten_layers(model):
    """Every layer inside `model`, nested ones included, and `model` itself.

    Keras 3 has no public recursive iterator: `Model.layers` lists direct
    children only, and a member of an `Ensemble` is a model inside a model.
    `Layer._flatten_layers()` is what Keras itself uses (e.g. for
    `jit_compile`'s `supports_jit` check).
    """
    return list(model._flatten_layers(include_self=True, recursive=True))


def seed_states(model):
    """The state variables of every `keras.random.SeedGenerator` in `model`, in a fixed order.

    Public: `Model.non_trainable_variables` holds them; the name
    `seed_generator_state` is how Keras' `SeedGenerator` names its variable
    (keras/src/random/seed_generator.py).
    """
    return [v for v in model.non_trainable_variables if v.name == "seed_generator_state"]


# SeedGenerator adds 1 to the state's last word per draw: streams 2**20 draws apart never meet.
STREAM_STRIDE = 2**20


def set_seed_state(state, seed, stream):
    """Writes a `SeedGenerator` state: draws from now on depend on (`seed`, `stream`) alone.

    Keras' `BackupAndRestore` saves weights and optimizer state but not the
    random states, and `SeedGenerator` has no public way to reseed. Its state is
    `[seed, counter]` (keras/src/random/seed_generator.py: `[seed, 0]` at
    creation, the counter incremented per draw): this writes the seed word
    and puts the counter at `stream * STREAM_STRIDE`.
    """
    import keras

    value = keras.ops.convert_to_numpy(state).copy()
    value[...] = 0
    value.flat[0] = seed % 2**31
    value.flat[-1] = stream * STREAM_STRIDE
    state.assign(value)


def mark_jittable(layer):
    """Clears Keras' `supports_jit = False` on `layer`, so JAX compiles the model holding it.

    Keras marks `RandomRotation` and `RandomTranslation` unjittable because
    TensorFlow's image-transform op has no XLA kernel; their JAX path
    compiles (Keras dropped the same flag from `RandomFlip` once it was
    found jittable: keras-team/keras-core#665). The flag is a plain
    attribute that `Model.jit_compile` reads from every layer; no public
    setting overrides it.
    """
    layer.supports_jit = True
    return layer


def backup_copies(backup_dir):
    """The copies of a run's state that Keras' `BackupAndRestore(double_checkpoint=True)` keeps in `backup_dir`,
    newest first: [(weights file, metadata file), ...].

    Keras has no public way to ask which copy it will load, or to choose the
    older one: its `on_train_begin` falls back to the previous copy only for
    an `OSError` from the newer weights, and raises when that copy fails too
    (a traceback, the backups it could not read overwritten by then).
    `kerascnn.resuming` checks the copies first and puts the one that loads
    where Keras reads it. The paths are the callback's `_weights_path` and
    `_training_metadata_path` and, with `double_checkpoint` (as
    `kerascnn.callbacks.make_callbacks` makes it), `_prev_weights_path` and
    `_prev_training_metadata_path` (keras/src/callbacks/backup_and_restore.py:
    latest.weights.h5 and training_metadata.json, `.bkp` for the previous).
    """
    import keras

    callback = keras.callbacks.BackupAndRestore(backup_dir, double_checkpoint=True)
    copies = [(callback._weights_path, callback._training_metadata_path)]
    if hasattr(callback, "_prev_weights_path"):
        copies.append((callback._prev_weights_path, callback._prev_training_metadata_path))
    return copies


def backup_epoch(metadata_path):
    """The epochs finished when a `BackupAndRestore` copy was saved: its metadata file's `epoch`.

    Keras writes `{"epoch": E, "batch": B}` there (`_save_model`) and
    resumes at `initial_epoch = E`; E >= 1 for a copy saved at an epoch's end.

    Raises:
        OSError, ValueError: the file cannot be read or does not hold such a number.
    """
    with open(metadata_path) as f:
        values = json.load(f)
    epoch = values.get("epoch") if isinstance(values, dict) else None
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise ValueError(f"no epoch count in it (epoch={epoch!r})")
    return epoch


def backup_metadata(epochs):
    """What Keras' `BackupAndRestore` writes in its metadata file after `epochs` finished epochs (`_save_model`:
    `{"epoch": E, "batch": B}`, B the last batch seen, 0 at an epoch's end), for `kerascnn.callbacks.SharedBackup`,
    which writes its copies itself; `backup_epoch` reads it back."""
    return {"epoch": int(epochs), "batch": 0}


# TensorFlow -----------------------------------------------------------------------


def tf_gradient_registry():
    """TensorFlow's global gradient registry, a dict by op name ({} without TensorFlow).

    Each traced train step registers a custom gradient there that is never
    removed and pins the step's whole graph, ~25 MB a trial in a search
    (tensorflow/tensorflow#97697, open); there is no public way to drop an
    entry. `tuning.tuners` prunes the entries a finished trial added.
    """
    try:
        from tensorflow.python.framework import ops
    except ImportError:  # Keras on another backend
        return {}
    return ops._gradient_registry._registry


def release_free_heap():
    """Returns the C heap's free pages to the system (glibc's `malloc_trim`); False elsewhere.

    TensorFlow's many threads leave freed memory scattered over glibc's
    arenas, and a long search's resident memory grows without it. Python has
    no public call for this; it is a libc function, reached through ctypes.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        return False
    return True


def raise_in_thread(thread_id, exception_type):
    """Raises `exception_type` in the thread `thread_id` (`threading.get_ident()`) at its next Python line.

    CPython's `PyThreadState_SetAsyncExc`, through ctypes: Python has no
    call that raises in another thread, and a signal will not do, as it
    reaches only the main thread and a non-interactive shell starts a
    background job (`python tune.py &`) with SIGINT ignored.
    `tuning.distributed` stops a worker's trial this way when its
    heartbeat finds the chief lost.

    Returns:
        bool, whether the thread was found.
    """
    import ctypes

    return ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exception_type)) == 1


# keras-tuner ----------------------------------------------------------------------
# keras-tuner's distributed search (a chief serving the oracle over gRPC to
# workers) has no public API beyond the KERASTUNER_* environment variables:
# its servicer, client and protocol live in `keras_tuner.src.distribute` and
# `keras_tuner.src.protos` (keras-tuner 1.4). `tuning.distributed` serves and
# joins a search through the three names below, to add what keras-tuner's own
# loop lacks: a refused busy port, heartbeats, and lost workers' trials rerun.


def oracle_client_class():
    """keras-tuner's gRPC `OracleClient` (a worker's stand-in for the chief's oracle)."""
    from keras_tuner.src.distribute import oracle_client

    return oracle_client.OracleClient


def add_oracle_servicer(oracle, server):
    """Registers keras-tuner's `OracleServicer` for `oracle` on a `grpc.server`; returns the servicer."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    return servicer


def local_oracle(client):
    """The oracle an `OracleClient` wraps (the one a worker's tuner was given), before it talks to the chief."""
    return client._oracle


def retry_queue(oracle):
    """The oracle's queue of trial IDs to run again (a list, changed in place).

    keras-tuner's base `Oracle` requeues a trial that asked for a retry
    there; no public method adds to it, and a worker lost in the middle of a
    trial is such a case.
    """
    return oracle._retry_queue


def oracle_state_path(oracle):
    """Where keras-tuner keeps `oracle`'s state (`<project>/oracle.json`); its writer is not atomic."""
    return oracle._get_oracle_fname()


def trial_state_path(oracle, trial_id):
    """Where keras-tuner keeps a trial's state (`<project>/trial_<id>/trial.json`)."""
    import os

    return os.path.join(oracle._get_trial_dir(trial_id), "trial.json")


def trial_files(oracle):
    """{trial ID: path of its `trial.json`} for every `trial_<id>` folder of `oracle`'s search, the file there or not.

    keras-tuner 1.4 keeps each trial's state in `<project>/trial_<id>/trial.json`
    and reloads a search by loading every such file (`Oracle.reload`, which
    stops at the first it cannot read); the project folder is the oracle's
    private `_project_dir`. `tuning.oracles` reloads a search that lost a
    trial's folder or file through this.
    """
    import os

    project = oracle._project_dir
    return {
        name[len("trial_"):]: os.path.join(project, name, "trial.json")
        for name in sorted(os.listdir(project))
        if name.startswith("trial_") and os.path.isdir(os.path.join(project, name))
    }


def route_client_calls(client, call):
    """Sends every gRPC call of keras-tuner's `OracleClient` `client` through `call(method, request, **kwargs)`.

    keras-tuner 1.4's client calls the chief through its stub (`client.stub`,
    keras_tuner/src/distribute/oracle_client.py) with `wait_for_ready` and a
    fixed one-hour `timeout` (its module's `TIMEOUT`, keras-tuner#990 and
    #957), so a worker whose chief is gone waits up to an hour in each call;
    no argument sets it. `tuning.distributed` gives each call the worker's
    own deadline (`--worker-timeout`) this way.
    """
    import functools

    stub = client.stub

    class Calls:
        def __getattr__(self, name):
            return functools.partial(call, getattr(stub, name))

    client.stub = Calls()


def save_trial(oracle, trial):
    """Saves `trial`'s state through the oracle's `_save_trial` hook.

    keras-tuner's `Oracle` writes each trial's state through its private
    `_save_trial`; `tuning.oracles` overrides that hook to write atomically
    (a search killed mid-save still resumes), and calls it here.
    """
    oracle._save_trial(trial)


def init_base_tuner(tuner, **kwargs):
    """Runs `keras_tuner.Tuner.__init__` alone on a subclass of `keras_tuner.Hyperband`.

    `Hyperband.__init__` makes its own oracle from its arguments; a search
    on our oracle (`tuning.oracles`) keeps Hyperband's training (a promoted
    trial resumes from its checkpoint) but must skip that constructor. No
    public argument passes an oracle to `Hyperband`.
    """
    import keras_tuner

    keras_tuner.Tuner.__init__(tuner, **kwargs)
