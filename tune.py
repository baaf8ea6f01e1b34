"""Search the `best` CNN's hyperparameters with keras-tuner, on one machine or many.

    python tune.py                                    # Hyperband: 30 trials of up to 10 epochs
    python tune.py --tuner random --max-trials 10 --subset 10000    # a quicker look
    tensorboard --logdir logs/tune/mnist-best/tensorboard --host 127.0.0.1   # watch the trials
    python train.py --hparams logs/tune/mnist-best/best_hparams.json        # the final model

Running the same command again resumes a stopped search; `--overwrite` starts
afresh. On several machines, run the same command with KERASTUNER_TUNER_ID
(chief, tuner0, tuner1, ...), KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT
set and a shared --directory (README, "Tuning"). Bad usage exits with status
2 and leaves what is on disk as it was; a search that fails exits with 1.
"""

import argparse
import logging
import os
import shlex
import sys

from kerascnn.cli import positive_float, positive_int


def drop_retracing_warning(record):
    """Every trial builds a new model, so new tf.functions are expected: TensorFlow's
    warning about "retracing" would only bury the progress lines."""
    return "triggered tf.function retracing" not in record.getMessage()


def build_parser():
    from kerascnn.data import list_datasets
    from kerascnn.precision import PRECISIONS
    from kerascnn.tuning import TUNERS, SearchConfig

    d = SearchConfig()
    p = argparse.ArgumentParser(
        prog="tune.py",
        description="Search the hyperparameters of the `best` CNN with keras-tuner; "
        "prints the train.py command that trains the final model with the best of them.",
    )
    p.add_argument("--tuner", choices=TUNERS, default=d.tuner, help=f"search algorithm (default: {d.tuner})")
    p.add_argument("--max-trials", type=positive_int, default=d.max_trials, help=f"trials in all (default: {d.max_trials})")
    p.add_argument(
        "--max-epochs", type=positive_int, default=d.max_epochs, help=f"epochs per trial, at most (default: {d.max_epochs})"
    )
    p.add_argument("--dataset", choices=list_datasets(), default=d.dataset, help=f"default: {d.dataset}")
    p.add_argument("--subset", type=positive_int, help="search on the first N training images (default: all)")
    p.add_argument(
        "--val-size", type=positive_int, default=d.val_size, help=f"validation images, scored (default: {d.val_size})"
    )
    p.add_argument("--data-dir", help="dataset directory (default: $KERASCNN_DATA_DIR, then caches)")
    p.add_argument("--directory", default=d.directory, help=f"where searches live (default: {d.directory})")
    p.add_argument("--project-name", help="this search's folder in --directory (default: <dataset>-best)")
    p.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    p.add_argument("--seed", type=int, default=d.seed, help=f"default: {d.seed}")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision, help="default: auto")
    p.add_argument(
        "--worker-timeout", type=positive_float, default=d.worker_timeout, metavar="SECONDS",
        help=f"distributed: a worker silent this long is lost, its trial goes to another (default: {d.worker_timeout:g})",
    )
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=0, help="Keras output in trials (default: 0)")
    return p


def main(argv=None):
    """Entry point of `tune.py`; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").addFilter(drop_retracing_warning)
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    verbose = args.pop("verbose")

    import grpc

    from kerascnn.data import DataError
    from kerascnn.rundir import RunDirError
    from kerascnn.tuning import SearchConfig, SearchFailed, TuningError, run_search

    try:
        config = SearchConfig(**args)
        result = run_search(config, verbose=verbose)
    except (TuningError, DataError, RunDirError) as e:
        parser.error(str(e))
    except SearchFailed as e:
        print(f"tune.py: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tune.py: stopped. Run the same command again to resume; --overwrite starts afresh.", file=sys.stderr)
        return 130
    except grpc.RpcError as e:  # a worker that lost the chief
        print(f"tune.py: error: lost the chief's oracle ({e.code().name}): {e.details()}", file=sys.stderr)
        return 1

    if result.role == "worker":
        print(f"Worker done: ran {result.trials_done} trials of the search in {result.project_dir}; "
              "the chief writes the results.")
        return 0
    values = " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in result.best_hparams.items() if k not in ("model", "dataset")
    )
    best = f"trial_{result.best_trial_id}, val_accuracy={result.best_score:.4f}"
    print(f"Best of {result.trials_done} trials: {best}, {values}")
    print(f"Best hyperparameters: {result.best_hparams_path}")
    print("Train the final model (the 5-member ensemble, all training images) with:")
    print(f"python train.py --hparams {shlex.quote(result.best_hparams_path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
