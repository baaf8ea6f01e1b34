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

from kerascnn.commands import describe_run, gpu_names, run_command, start_tensorflow
from kerascnn.commands.flags import add_config_flags
from kerascnn.config import read_json_file
from kerascnn.tuning.config import SearchConfig, TuningError


PROG = "tune.py"


def build_parser(prog=PROG):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Search the hyperparameters of the `best` CNN with keras-tuner; "
        "prints the train.py command that trains the final model with the best of them.",
        argument_default=argparse.SUPPRESS,  # unset flags don't override the config file
    )
    add_config_flags(p, SearchConfig)  # one per field, its help and checks from the field (kerascnn/tuning/config.py)
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


def main(argv=None, prog=PROG):
    """Entry point of `tune.py` and `kerascnn tune`; returns the exit status."""

    def job(args):
        config = resolve_search_config(args)  # before TensorFlow is imported: bad usage exits at once
        start_tensorflow()
        from kerascnn.precision import resolve_precision
        from kerascnn.tuning import run_search

        print(describe_run(resolve_precision(config.precision), gpu_names()), flush=True)
        result = run_search(config, verbose=args.verbose)
        report(result)
        return 0

    return run_command(build_parser(prog), job, argv)


def report(result):
    if result.role == "worker":
        print(f"Worker done: ran {result.trials_done} trials of the search in {result.project_dir}; "
              "the chief writes the results.")
        return
    values = " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in result.best_hparams.items() if k not in ("model", "dataset", "split_seed", "image_size", "color_mode")
    )
    best = f"trial_{result.best_trial_id}, val_accuracy={result.best_score:.4f}"
    lost = f" ({result.trials_lost} lost)" if result.trials_lost else ""
    print(f"Best of {result.trials_done} trials{lost}: {best}, {values}")
    print(f"Best hyperparameters: {result.best_hparams_path}")
    print("Train the final model (best's recipe: its ensemble, all training images) with:")
    print(f"python train.py --hparams {shlex.quote(result.best_hparams_path)}")
