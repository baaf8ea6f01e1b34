"""The `train` command (`python train.py`): one flag per config field, then `kerascnn.train`.

    python train.py --model best
    python train.py --model sequential --epochs 1 --subset 5000
    python train.py --config run.json --lr 5e-4      # flags override the file

Defaults < `--config`/`--hparams` JSON < flags. Bad usage exits with status
2 and an argparse-style message, before any run directory is made; a run
whose loss diverges exits with status 1 (`kerascnn.commands.run_command`).
"""

import argparse
import dataclasses
import sys

from kerascnn.commands import boolean, dataset_arg, positive_float, positive_int, run_command
from kerascnn.commands import describe_run, start_tensorflow
from kerascnn.config import COLOR_MODES, FIELD_TYPES, MEMBERS, PRECISIONS, STRATEGIES, STREAMS, TrainConfig
from kerascnn.data import list_datasets

DEFAULTS = TrainConfig()
# Flags that say more than "the config's field": choices, a type that refuses bad input early, help.
HELP = {
    "epochs": "passes over the training split",
    "batch_size": "per replica",
    "lr": "initial learning rate",
    "lr_period": "epochs between rate cuts",
    "lr_factor": "rate multiplier per cut",
    "members": "ensemble members (ensemble: 3, best: 5)",
    "filters": "first stage's filters, doubled per stage (default: the model's, 32)",
    "kernel_size": "conv kernel size (default: the model's, 3)",
    "dense_units": "hidden dense units (default: the model's, 256)",
    "dropout": "dropout before the classifier (default: the model's, 0.4)",
    "batchnorm": "true or false: batch-norm blocks (default: the model's)",
    "residual": "functional model: residual stages",
    "rotation": "augmentation: max rotation, degrees (default: the model's, 15)",
    "shift": "augmentation: max shift, pixels (default: the model's, 2)",
    "zoom": "augmentation zoom, a fraction, e.g. 0.1 (default: the model's)",
    "member": "best: the member design (default: lecture)",
    "tta": "best, ensemble: test-time augmentation, predictions averaged over the image and its copies shifted N "
           "pixels up, down, left and right (default: 0, off)",
    "ema": "validate and save an average of the weights, e.g. 0.999 (default: the model's, 0: off)",
    "label_smoothing": "e.g. 0.1 (default: 0)",
    "val_size": "validation images carved from the training set",
    "subset": "train on the first N training images",
    "dataset": f"{' or '.join(list_datasets())}; or a folder of class subfolders, or an .npz (docs/IMAGES.md)",
    "image_size": "your own images: the side N (N x N) the model works at (default: the data's most common size)",
    "color_mode": "your own images: grayscale or rgb (default: grayscale if every picture is grey)",
    "stream": "your own images: on: decode from disk as needed; off: into memory; auto: on when they would take over "
              "a quarter of the memory",
    "cache_dir": "streamed images: cache them here, decoded, on the first epoch (docs/IMAGES.md)",
    "data_dir": "dataset directory (default: $KERASCNN_DATA_DIR, then caches)",
    "logdir": "where run directories go",
    "seed": "seeds weights, shuffling, dropout and augmentation",
    "split_seed": "seeds the validation split, apart from --seed",
    "precision": "auto: bf16 on CPUs with AVX512_BF16/AMX",
    "strategy": "auto: mirrored on 2+ GPUs; multiworker: several processes or machines (docs/DISTRIBUTED.md)",
    "image_every": "also write TensorBoard images every N epochs (0: at the end only)",
}
TYPES = {int: int, float: float, str: str, bool: boolean}
POSITIVE = {"image_size", "epochs", "batch_size", "lr_period", "members", "filters", "kernel_size", "dense_units", "subset",
            "val_size"}


def add_config_flags(parser):
    """One flag per `TrainConfig` field (`--lr-period` for `lr_period`), none with a default of its own.

    Unset flags leave the field to the config file or the default
    (`argument_default=SUPPRESS`), so `resolve_config` can layer them.
    Returns `parser`.
    """
    from kerascnn.models import list_models  # the registry's names: no Keras needed

    choices = {"model": list_models(), "color_mode": COLOR_MODES, "precision": PRECISIONS, "strategy": STRATEGIES,
               "stream": STREAMS, "member": MEMBERS}
    for field in dataclasses.fields(TrainConfig):
        name = field.name
        kind = FIELD_TYPES.get(name, type(field.default))
        flag = "--" + name.replace("_", "-")
        help_text = HELP.get(name, "")
        if field.default is not None and "default" not in help_text:
            help_text = f"{help_text} (default: {field.default})".strip()
        if name == "residual":
            parser.add_argument(flag, dest=name, action="store_const", const=True, help=help_text)
            continue
        if name in POSITIVE:
            type_ = positive_int
        elif name == "dataset":
            type_ = dataset_arg
        elif name == "lr" or name == "lr_factor":
            type_ = positive_float
        else:
            type_ = TYPES[kind]
        parser.add_argument(flag, dest=name, type=type_, choices=choices.get(name), help=help_text,
                            metavar=name.upper() if name in choices else None)
    return parser


def build_parser():
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train a CNN image classifier with Keras (the lecture's models and recipe).",
        argument_default=argparse.SUPPRESS,  # unset flags don't override the config file
    )
    add_config_flags(parser)
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


def main(argv=None):
    """Entry point of `train.py`; returns the exit status."""
    parser = build_parser()

    def job(args):
        config = resolve_config(args, parser)  # before TensorFlow is imported: bad usage exits at once
        gpus = start_tensorflow()
        from kerascnn.distribute import check_strategy
        from kerascnn.precision import resolve_precision

        check_strategy(config.strategy)  # before any data is loaded
        print(describe_run(resolve_precision(config.precision), gpus), flush=True)
        from kerascnn.training import train

        result = train(config, verbose=getattr(args, "verbose", default_verbose()), resume=getattr(args, "resume", True))
        m = result.metrics
        print(f"test_accuracy={m['test_accuracy']:.4f} test_loss={m['test_loss']:.4f} run_dir={result.run_dir}")
        return 0

    return run_command(parser, job, argv)
