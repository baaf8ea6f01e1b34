"""The `train` command (`python train.py`): one flag per config field, then `kerascnn.train`.

    python train.py --model best
    python train.py --model sequential --epochs 1 --subset 5000
    python train.py --config run.json --lr 5e-4      # flags override the file

Defaults < `--config`/`--hparams` JSON < flags. Bad usage exits with status
2 and an argparse-style message, before any run directory is made; a run
whose loss diverges exits with status 1 (`kerascnn.commands.run_command`).
"""

import argparse
import sys

from kerascnn.commands import describe_run, gpu_names, run_command, start_tensorflow
from kerascnn.commands.flags import add_config_flags
from kerascnn.config import TrainConfig

PROG = "train.py"


def build_parser(prog=PROG):
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train a CNN image classifier with Keras (the lecture's models and recipe).",
        argument_default=argparse.SUPPRESS,  # unset flags don't override the config file
    )
    add_config_flags(parser, TrainConfig)  # one per field, its help and checks from the field (kerascnn/config.py)
    parser.add_argument(
        "--config", "--hparams", dest="config_file", metavar="FILE",
        help="JSON of config values, e.g. tune.py's best_hparams.json; flags override it",
    )
    parser.add_argument("--no-resume", dest="resume", action="store_false", help="never resume an interrupted run")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2),
                        help="Keras progress output (default: 1, a progress bar, on a terminal; else 2, a line per epoch)")
    return parser


def default_verbose(stream=None):
    """1 (a redrawn progress bar) on a terminal; 2 (a line per epoch) into a file, a pipe or a log."""
    stream = sys.stdout if stream is None else stream
    return 1 if stream.isatty() else 2


def resolve_config(args, parser, extra=()):
    """Defaults < config file < flags; an argparse-style error (exit 2) on bad values.

    Args:
        extra: names in `args` that are the command's own, not config fields.
    """
    from kerascnn.config import ConfigError

    flags = {k: v for k, v in vars(args).items() if k not in ("config_file", "resume", "verbose", *extra)}
    try:
        values = {}
        if getattr(args, "config_file", None):
            values = TrainConfig.from_json(args.config_file).to_dict()
        values.update(flags)
        return TrainConfig(**values)
    except ConfigError as e:
        parser.error(str(e))


def main(argv=None, prog=PROG):
    """Entry point of `train.py` and `kerascnn train`; returns the exit status."""
    parser = build_parser(prog)

    def job(args):
        config = resolve_config(args, parser)  # before TensorFlow is imported: bad usage exits at once
        start_tensorflow()
        from kerascnn import distribute
        from kerascnn.precision import resolve_precision

        distribute.check_strategy(config.strategy)  # before any data is loaded
        plan = None
        if config.strategy == "multiworker":
            plan = distribute.setup(config.strategy)  # JAX joins its cluster before its first call (gpu_names' below)
        print(describe_run(resolve_precision(config.precision), gpu_names()), flush=True)
        from kerascnn.training import train

        with distribute.ends_at_once_on_failure(plan):  # a process whose cluster broke does not wait 100 s for it
            result = train(config, verbose=getattr(args, "verbose", default_verbose()),
                           resume=getattr(args, "resume", True))
        m = result.metrics
        print(f"test_accuracy={m['test_accuracy']:.4f} test_loss={m['test_loss']:.4f} run_dir={result.run_dir}")
        return 0

    return run_command(parser, job, argv)
