"""The user-facing commands, thin users of the library, with one convention.

    train.py                 kerascnn.commands.train    train one model (a run directory under logs/)
    tune.py                  kerascnn.commands.tune     search the `best` CNN's hyperparameters
    python -m kerascnn ...   kerascnn.commands.results  evaluate, predict, export, serve a trained model

Every command:

* reads a JSON file with `--config` and lets flags override it (defaults <
  file < flags), one flag per config field;
* answers `--help` without importing TensorFlow (parsers need only the
  config, the dataset names and the registry's model names);
* quiets TensorFlow's C++ logging once (`quiet_tensorflow`);
* exits 0 when all went well; 2 for bad usage (the thing named, what was
  expected, what was received, an argparse-style message, nothing written);
  1 when the job ran and failed; 130 when interrupted (`run_command`).
"""

import argparse
import logging
import os
import sys


def quiet_tensorflow():
    """TensorFlow's C++ INFO and WARNING lines off, and its retracing warning dropped.

    Call before TensorFlow is imported (the commands do, first thing).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").addFilter(drop_retracing_warning)


def drop_retracing_warning(record):
    """A tuner's trials and a sweep's runs build new models, so new tf.functions are expected: TensorFlow's
    warning about "retracing" would only bury the progress lines."""
    return "triggered tf.function retracing" not in record.getMessage()


def usage_errors():
    """The exceptions that mean bad usage (exit 2): a config, data, model, strategy, directory or file refused."""
    from kerascnn.config import ConfigError
    from kerascnn.data import DataError
    from kerascnn.distribute import DistributeError
    from kerascnn.export import ExportError
    from kerascnn.loading import ModelFileError
    from kerascnn.models.registry import ModelError
    from kerascnn.rundir import RunDirError
    from kerascnn.serve import ServeError
    from kerascnn.tuning.config import TuningError

    return (ConfigError, DataError, DistributeError, ExportError, ModelError, ModelFileError, RunDirError, ServeError,
            TuningError)


def run_command(parser, job, argv=None, failures=tuple):
    """Parses `argv`, runs `job(args)` and turns what it raises into the exit status.

    Args:
        parser: the command's `argparse.ArgumentParser`.
        job: function of the parsed arguments returning the exit status.
        argv: list of str. Defaults to `sys.argv[1:]`.
        failures: function returning the exception classes that mean the
            job ran and failed (exit 1, the message on stderr); called only
            after parsing, so `--help` imports nothing heavy. `usage_errors()` exit 2 through
            `parser.error` (or the subcommand's, `args.command_parser`).

    Returns:
        The exit status.
    """
    quiet_tensorflow()
    args = parser.parse_args(argv)
    prog = getattr(args, "command_parser", parser).prog
    try:
        return job(args)
    except usage_errors() as e:
        getattr(args, "command_parser", parser).error(str(e))
    except failures() as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: stopped. Run the same command again to resume.", file=sys.stderr)
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
