"""The `tune` command (`python tune.py`): one flag per search-config field, then `kerascnn.tuning.run_search`.

    python tune.py                                    # Hyperband: 30 trials of up to 10 epochs
    python tune.py --tuner random --max-trials 10 --subset 10000    # a quicker look
    python tune.py --config search.json --max-trials 5               # flags override the file
    python train.py --hparams logs/tune/mnist-best/best_hparams.json # the final model

Running the same command again resumes a stopped search; `--overwrite` starts
afresh. On several machines, run the same command with KERASTUNER_TUNER_ID
(chief, tuner0, tuner1, ...), KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT
set and a shared --directory (docs/TUNING.md). Bad usage exits with status 2
and leaves what is on disk as it was; a search that fails exits with 1.
"""

import argparse
import shlex

from kerascnn.commands import dataset_arg, positive_float, positive_int, run_command
from kerascnn.commands import describe_run, start_tensorflow
from kerascnn.commands.train import HELP as TRAIN_HELP
from kerascnn.config import COLOR_MODES, PRECISIONS, STREAMS, read_json_file
from kerascnn.data import list_datasets
from kerascnn.tuning.config import TUNERS, SearchConfig, TuningError


def build_parser():
    d = SearchConfig()
    p = argparse.ArgumentParser(
        prog="tune.py",
        description="Search the hyperparameters of the `best` CNN with keras-tuner; "
        "prints the train.py command that trains the final model with the best of them.",
        argument_default=argparse.SUPPRESS,  # unset flags don't override the config file
    )
    p.add_argument("--tuner", choices=TUNERS, help=f"search algorithm (default: {d.tuner})")
    p.add_argument("--max-trials", dest="max_trials", type=positive_int, help=f"trials in all (default: {d.max_trials})")
    p.add_argument("--max-epochs", dest="max_epochs", type=positive_int,
                   help=f"epochs per trial, at most (default: {d.max_epochs})")
    p.add_argument("--dataset", type=dataset_arg,
                   help=f"{' or '.join(list_datasets())}, a folder of class subfolders or an .npz (default: {d.dataset})")
    # The data flags train.py has too: the same help.
    p.add_argument("--image-size", dest="image_size", type=positive_int, help=TRAIN_HELP["image_size"])
    p.add_argument("--color-mode", dest="color_mode", choices=COLOR_MODES, help=TRAIN_HELP["color_mode"])
    p.add_argument("--stream", choices=STREAMS, help=f"{TRAIN_HELP['stream']} (default: auto)")
    p.add_argument("--cache-dir", dest="cache_dir", help=TRAIN_HELP["cache_dir"])
    p.add_argument("--subset", type=positive_int, help="search on the first N training images (default: all)")
    p.add_argument("--val-size", dest="val_size", type=positive_int,
                   help=f"validation images, scored (default: {d.val_size})")
    p.add_argument("--data-dir", dest="data_dir", help="dataset directory (default: $KERASCNN_DATA_DIR, then caches)")
    p.add_argument("--directory", help=f"where searches live (default: {d.directory})")
    p.add_argument("--project-name", dest="project_name", help="this search's folder in --directory (default: <dataset>-best)")
    p.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    p.add_argument("--seed", type=int, help=f"default: {d.seed}")
    p.add_argument("--precision", choices=PRECISIONS, help="default: auto")
    p.add_argument(
        "--worker-timeout", dest="worker_timeout", type=positive_float, metavar="SECONDS",
        help=f"distributed: a worker silent this long is lost, its trial goes to another (default: {d.worker_timeout:g})",
    )
    p.add_argument("--config", dest="config_file", metavar="FILE",
                   help="JSON of search-config values (the flags' names with underscores); flags override it")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=0, help="Keras output in trials (default: 0)")
    return p


def resolve_search_config(args):
    """Defaults < `--config` JSON < flags, as `SearchConfig`; `TuningError` names a bad file or value."""
    values = {}
    path = getattr(args, "config_file", None)
    if path:
        values = read_json_file(path, error=TuningError)
        if not isinstance(values, dict):
            raise TuningError(f"A config must be a JSON object. Received: {type(values).__name__} in {path}")
    values.update({k: v for k, v in vars(args).items() if k not in ("config_file", "verbose")})
    fields = set(SearchConfig.__dataclass_fields__)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise TuningError(f"Unknown search config keys {unknown}; expected some of {sorted(fields)}. Received: {path}")
    return SearchConfig(**values)


def main(argv=None):
    """Entry point of `tune.py`; returns the exit status."""

    def job(args):
        config = resolve_search_config(args)  # before TensorFlow is imported: bad usage exits at once
        gpus = start_tensorflow()
        from kerascnn.precision import resolve_precision
        from kerascnn.tuning import run_search

        print(describe_run(resolve_precision(config.precision), gpus), flush=True)
        result = run_search(config, verbose=args.verbose)
        report(result)
        return 0

    return run_command(build_parser(), job, argv)


def report(result):
    if result.role == "worker":
        print(f"Worker done: ran {result.trials_done} trials of the search in {result.project_dir}; "
              "the chief writes the results.")
        return
    values = " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in result.best_hparams.items() if k not in ("model", "dataset", "image_size", "color_mode")
    )
    best = f"trial_{result.best_trial_id}, val_accuracy={result.best_score:.4f}"
    print(f"Best of {result.trials_done} trials: {best}, {values}")
    print(f"Best hyperparameters: {result.best_hparams_path}")
    print("Train the final model (the 5-member ensemble, all training images) with:")
    print(f"python train.py --hparams {shlex.quote(result.best_hparams_path)}")
