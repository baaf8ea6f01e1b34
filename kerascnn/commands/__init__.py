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
  1 when the job ran and failed; 130 when interrupted (`run_command`, which
  catches `kerascnn.errors.UsageError` and `RunFailed`).
"""

import argparse
import logging
import os
import sys

from kerascnn.errors import RunFailed, UsageError


def quiet_tensorflow():
    """TensorFlow's C++ INFO and WARNING lines off, and its retracing warning dropped.

    Call before TensorFlow is imported (`run_command` does, first thing).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").addFilter(drop_retracing_warning)


def drop_retracing_warning(record):
    """A tuner's trials and a sweep's runs build new models, so new tf.functions are expected: TensorFlow's
    warning about "retracing" would only bury the progress lines."""
    return "triggered tf.function retracing" not in record.getMessage()


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


def positive_float(text):
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, received {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, received {text!r}")
    return value


def dataset_arg(text):
    """argparse type: a dataset name, a folder (of class subfolders) or an `.npz` file."""
    from kerascnn.data import list_datasets

    if text in list_datasets() or os.path.isdir(text) or (text.endswith(".npz") and os.path.isfile(text)):
        return text
    raise argparse.ArgumentTypeError(
        f"expected one of {list_datasets()}, a folder of class subfolders or an .npz file, received {text!r} "
        f"(no such {'file' if text.endswith('.npz') else 'folder or dataset name'})"
    )


def boolean(text):
    """argparse type: true/false (also 1/0, yes/no)."""
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, received {text!r}")
    return value
