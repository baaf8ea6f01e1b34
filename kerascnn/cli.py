"""The user-facing `train` command (`python train.py`).

    python train.py --model best
    python train.py --model sequential --epochs 1 --subset 5000
    python train.py --config run.json --lr 5e-4      # flags override the file

Defaults < `--config`/`--hparams` JSON < flags. Bad usage exits with status
2 and an argparse-style message, before any run directory is made; a run
whose loss diverges exits with status 1.
"""

import argparse
import os
import sys

from kerascnn.config import TrainConfig

DEFAULTS = TrainConfig()


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, received {text!r}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, received {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, received {text!r}")
    return value


def build_parser():
    from kerascnn.config import PRECISIONS, STRATEGIES
    from kerascnn.data import list_datasets
    from kerascnn.models import list_models

    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a CNN image classifier with Keras (the lecture's models and recipe).",
        argument_default=argparse.SUPPRESS,  # unset flags don't override the config file
    )
    d = DEFAULTS
    p.add_argument("--model", choices=list_models(), help=f"which model (default: {d.model})")
    p.add_argument("--dataset", choices=list_datasets(), help=f"default: {d.dataset}")
    p.add_argument("--epochs", type=positive_int, help=f"default: {d.epochs}")
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, help=f"per replica (default: {d.batch_size})")
    p.add_argument("--lr", type=positive_float, help=f"initial learning rate (default: {d.lr})")
    p.add_argument("--lr-period", dest="lr_period", type=positive_int, help=f"epochs between rate cuts (default: {d.lr_period})")
    p.add_argument("--lr-factor", dest="lr_factor", type=positive_float, help=f"rate multiplier per cut (default: {d.lr_factor})")
    p.add_argument("--members", type=positive_int, help="ensemble members (ensemble: 3, best: 5)")
    p.add_argument("--residual", action="store_true", help="functional model: residual stages")
    p.add_argument("--seed", type=int, help=f"default: {d.seed}")
    p.add_argument("--split-seed", dest="split_seed", type=int,
                   help=f"seeds the validation split, apart from --seed (default: {d.split_seed})")
    p.add_argument("--zoom", type=float, help="augmentation zoom, a fraction, e.g. 0.1 (default: the model's)")
    p.add_argument("--member", choices=("lecture", "strided"), help="best: the member design (default: lecture)")
    p.add_argument("--ema", type=float, metavar="MOMENTUM",
                   help="validate and save an average of the weights, e.g. 0.999 (default: the model's, 0: off)")
    p.add_argument("--label-smoothing", dest="label_smoothing", type=float, help="e.g. 0.1 (default: 0)")
    p.add_argument("--subset", type=positive_int, help="train on the first N training images")
    p.add_argument("--val-size", dest="val_size", type=positive_int, help=f"default: {d.val_size}")
    p.add_argument("--data-dir", dest="data_dir", help="dataset directory (default: $KERASCNN_DATA_DIR, then caches)")
    p.add_argument("--logdir", help=f"where run directories go (default: {d.logdir})")
    p.add_argument("--image-every", dest="image_every", type=int, metavar="N",
                   help="also write TensorBoard images every N epochs (default: 0, at the end only)")
    p.add_argument("--precision", choices=PRECISIONS, help="auto: bf16 on CPUs with AVX512_BF16/AMX (default: auto)")
    p.add_argument("--strategy", choices=STRATEGIES,
                   help="auto: mirrored on 2+ GPUs; multiworker: several processes or machines (README) (default: auto)")
    p.add_argument(
        "--config", "--hparams", dest="config_file", metavar="FILE",
        help="JSON of config values, e.g. tune.py's best_hparams.json; flags override it",
    )
    p.add_argument("--no-resume", dest="resume", action="store_false", help="never resume an interrupted run")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2),
                   help="Keras progress output (default: 1, a progress bar, on a terminal; else 2, a line per epoch)")
    return p


def default_verbose(stream=None):
    """1 (a redrawn progress bar) on a terminal; 2 (a line per epoch) into a file, a pipe or a log."""
    stream = sys.stdout if stream is None else stream
    return 1 if stream.isatty() else 2


def resolve_config(args, parser):
    """Defaults < config file < flags; argparse-style error on bad values."""
    from kerascnn.config import ConfigError

    flags = vars(args).copy()
    for name in ("config_file", "resume", "verbose"):
        flags.pop(name, None)
    try:
        values = {}
        if getattr(args, "config_file", None):
            values = TrainConfig.from_json(args.config_file).to_dict()
        values.update(flags)
        return TrainConfig(**values)
    except ConfigError as e:
        parser.error(str(e))


def train_main(argv=None):
    """Entry point of `train.py`; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    config = resolve_config(args, parser)
    from kerascnn.distribute import DistributeError, check_strategy

    try:
        check_strategy(config.strategy)  # before any data is loaded
    except DistributeError as e:
        parser.error(str(e))

    from kerascnn.data import DataError
    from kerascnn.models import ModelError
    from kerascnn.rundir import RunDirError
    from kerascnn.training import TrainingDiverged, train

    try:
        verbose = getattr(args, "verbose", default_verbose())
        result = train(config, verbose=verbose, resume=getattr(args, "resume", True))
    except (DataError, DistributeError, ModelError, RunDirError) as e:
        parser.error(str(e))
    except TrainingDiverged as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1
    m = result.metrics
    print(f"test_accuracy={m['test_accuracy']:.4f} test_loss={m['test_loss']:.4f} run_dir={result.run_dir}")
    return 0


__all__ = ["build_parser", "train_main"]
