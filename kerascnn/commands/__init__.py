"""The user-facing commands, thin users of the library, with one convention.

    train.py                 kerascnn.commands.train    train one model (a run directory under logs/)
    tune.py                  kerascnn.commands.tune     search the `best` CNN's hyperparameters
    python -m kerascnn ...   kerascnn.commands.results  evaluate, predict, export, serve a trained model

Every command:

* reads a JSON file with `--config` and lets flags override it (defaults <
  file < flags), one flag per config field;
* answers `--help` without importing TensorFlow (parsers need only the
  config, the dataset names and the registry's model names);
* quiets TensorFlow's C++ logging (`quiet_tensorflow`, `start_tensorflow`)
  and, if it trains, says in one line what the run uses (`describe_run`);
* exits 0 when all went well; 2 for bad usage (the thing named, what was
  expected, what was received, an argparse-style message, nothing written);
  1 when the job ran and failed; 130 when interrupted (`run_command`, which
  catches `kerascnn.errors.UsageError` and `RunFailed`).
"""

import argparse
import contextlib
import logging
import os
import re
import sys
import tempfile

from kerascnn.errors import RunFailed, UsageError

# Set by `quiet_tensorflow` when TF_CPP_MIN_LOG_LEVEL was not in the environment, so the level is ours to choose.
_quiet = False
# TensorFlow's C++ start-up lines, which TF_CPP_MIN_LOG_LEVEL does not all reach: absl's notice that it logs before
# being set up; INFO and WARNING lines (cudart_stub.cc's "Could not find cuda drivers", which absl prints itself);
# and, on a machine without a GPU, the ERROR-level "failed call to cuInit" that the search for a GPU logs.
STARTUP_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "
    r"|E\d{4} .*failed call to cuInit"
)


def quiet_tensorflow():
    """TensorFlow's C++ INFO and WARNING lines off, and its retracing warning dropped.

    Call before TensorFlow is imported (`run_command` does, first thing).
    A `TF_CPP_MIN_LOG_LEVEL` you set yourself is left as it is, and then
    `start_tensorflow` drops none of TensorFlow's lines either.
    """
    global _quiet
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        _quiet = True
    logging.getLogger("tensorflow").addFilter(drop_retracing_warning)


def drop_retracing_warning(record):
    """A tuner's trials and a sweep's runs build new models, so new tf.functions are expected: TensorFlow's
    warning about "retracing" would only bury the progress lines."""
    return "triggered tf.function retracing" not in record.getMessage()


def start_tensorflow():
    """Imports Keras and TensorFlow, without TensorFlow's start-up lines.

    A command that trains or loads a model calls this once its usage has
    been checked (so that bad usage exits before TensorFlow is imported).
    Unless you set `TF_CPP_MIN_LOG_LEVEL` (see `quiet_tensorflow`), what
    TensorFlow's C++ code writes to stderr meanwhile is held back, and passed
    on less the lines `STARTUP_LINE` matches. On the TensorFlow backend it
    also looks for GPUs here, where those lines are written.

    On JAX it touches no device: a process of a multi-process run must join
    its cluster (`kerascnn.distribute.setup`) before JAX's first call, so
    `gpu_names` comes after that.
    """
    with _dropping_startup_lines(_quiet):
        import keras
        import tensorflow as tf

        if keras.backend.backend() == "tensorflow":
            tf.config.list_physical_devices("GPU")


def gpu_names():
    """The names of the GPUs the backend uses (empty on a CPU), for `describe_run`.

    On JAX this is a first call into JAX: call it after `kerascnn.distribute.setup`.

    Returns:
        list of str.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
    if backend == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    return []


def describe_run(precision, gpus):
    """The one line a training command prints before it starts: backend, precision, device.

    Args:
        precision: str, the resolved policy name, e.g. "float32".
        gpus: list of str, from `gpu_names`.

    Example:

    >>> describe_run("float32", []).split(" backend, ")[1]
    'float32 precision, CPU (no GPU found)'
    >>> describe_run("mixed_float16", ["NVIDIA H200", "NVIDIA H200"]).split(" backend, ")[1]
    'mixed_float16 precision, 2 GPUs (NVIDIA H200)'
    """
    import importlib

    import keras

    backend = keras.backend.backend()
    name = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch", "numpy": "NumPy"}.get(backend, backend)
    version = getattr(importlib.import_module(backend), "__version__", "")
    if gpus:
        device = f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({', '.join(sorted(set(gpus)))})"
    else:
        device = "CPU (no GPU found)"
    return f"kerascnn: {name} {version} backend, {precision} precision, {device}"


@contextlib.contextmanager
def _dropping_startup_lines(enabled):
    """While the block runs, file descriptor 2 (where C++ code writes) goes to a temporary file; then its lines
    go to stderr, less those `STARTUP_LINE` matches. Python's own stderr is flushed around it, so nothing is lost
    or reordered within stderr."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode(errors="replace").splitlines(keepends=True)
                    if not STARTUP_LINE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def run_command(parser, job, argv=None):
    """Parses `argv`, runs `job(args)` and turns what it raises into the exit status.

    `kerascnn.errors.UsageError` (a config, data, model, strategy, directory
    or file refused) exits 2 through `parser.error` (or the subcommand's,
    `args.command_parser`); `kerascnn.errors.RunFailed` (the job ran and
    failed) prints the message and returns 1. Neither needs an import, so
    bad usage exits as fast as `--help`.

    Args:
        parser: the command's `argparse.ArgumentParser`.
        job: function of the parsed arguments returning the exit status.
        argv: list of str. Defaults to `sys.argv[1:]`.

    Returns:
        The exit status.
    """
    quiet_tensorflow()
    args = parser.parse_args(argv)
    command_parser = getattr(args, "command_parser", parser)
    try:
        return job(args)
    except UsageError as e:
        command_parser.error(str(e))
    except RunFailed as e:
        print(f"{command_parser.prog}: error: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print(f"{command_parser.prog}: stopped. Run the same command again to resume.", file=sys.stderr)
        return 130


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, received {text!r}")
    return value


def dataset_arg(text):
    """argparse type: a dataset name, a folder (of class subfolders) or an `.npz` file, as `TrainConfig.dataset`."""
    from kerascnn.commands.flags import flag_type
    from kerascnn.config import TrainConfig

    return flag_type(TrainConfig.__dataclass_fields__["dataset"])(text)
