"""The whole job: `run_search` checks everything, then runs, resumes, serves or works on a search.

Everything that can be checked (the config, the distributed variables, the
chief's port, the data, the folder's lock and kind) is checked before
anything is written; `_search` then builds the oracle, hypermodel and tuner
for the process's role and returns a `SearchResult`.
"""

import dataclasses
import importlib.util
import os
from typing import Optional

import grpc
import keras

from kerascnn import rundir
from kerascnn.assemble import load_splits
from kerascnn.tuning.config import SEARCH_FILE, SearchFailed, TuningError
from kerascnn.tuning.distributed import check_port_free, distributed_role
from kerascnn.tuning.hypermodel import CNNHyperModel, best_hparams
from kerascnn.tuning.oracles import make_oracle
from kerascnn.tuning.progress import ProgressReporter, best_trial, write_best_hparams
from kerascnn.tuning.project import SearchLock, check_kind, check_project, prepare_project
from kerascnn.tuning.tuners import _HyperbandSearchTuner, _SearchTuner


@dataclasses.dataclass
class SearchResult:
    role: Optional[str]  # None, "chief" or "worker"
    project_dir: str
    trials_done: int  # finished trials in the search (a worker: the trials it ran)
    max_trials: int
    best_trial_id: Optional[str] = None
    best_score: Optional[float] = None
    best_hparams: Optional[dict] = None
    best_hparams_path: Optional[str] = None


def run_search(config, verbose=0):
    """Runs, resumes, serves or works on the search `config` describes.

    Everything that can be checked (the config, the distributed variables,
    the chief's port, the data, the folder's lock and kind) is checked
    before anything is written.

    Args:
        config: `SearchConfig`.
        verbose: Keras `fit()` verbosity inside trials. Defaults to 0.

    The role comes from the `KERASTUNER_*` environment variables, which
    keras-tuner itself reads too (`distributed_role`).

    Returns:
        `SearchResult`; `best_hparams_path` is set except on a worker.

    Raises:
        TuningError, DataError, RunDirError: bad usage, before anything is written.
        SearchFailed: the search ended without a completed trial, or stopped
            after too many failed trials in a row; or a worker lost the chief.
    """
    config.validate()
    if config.tuner == "bayesian" and importlib.util.find_spec("sklearn") is None:  # its Gaussian process
        raise TuningError(
            "The bayesian tuner needs scikit-learn: pip install 'keras-tuner[bayesian]'. Received: tuner='bayesian'"
        )
    role, address = distributed_role()
    if role == "chief":
        check_port_free(*address)
    # The search's own folder, where it already exists (a read-only one under a writable --directory included).
    rundir.check_writable(config.project_dir, name="Search folder", flag="--directory or --project-name",
                          received=f"directory={config.directory!r}, project_name={config.project_name!r}")
    splits = None
    if role != "chief":  # the chief only serves the oracle
        # train.py's split, by the same function and seed (--split-seed, not --seed): the final run's test
        # set is what the search never trains or validates on.
        splits = load_splits(config.train_config())
        splits.x_test = splits.y_test = None  # the test set stays out of the search
    if role == "worker":
        if config.overwrite:
            print("--overwrite is the chief's to do; this worker joins the search as it is.", flush=True)
        if os.path.exists(os.path.join(config.project_dir, SEARCH_FILE)):
            check_kind(os.path.join(config.project_dir, SEARCH_FILE), config.kind())
        try:
            return _search(config, role, address, splits, verbose)
        except grpc.RpcError as e:  # the chief stopped, or cannot be reached
            raise SearchFailed(f"This worker lost the chief at {address[0]}:{address[1]}: {e}") from e
    check_project(config)  # before the lock file is touched
    with SearchLock(config.project_dir):
        resuming = prepare_project(config)  # again, now that no other search can change it
        return _search(config, role, address, splits, verbose, resuming)


def _search(config, role, address, splits, verbose, resuming=False):
    base = config.train_config()
    tuner_class = _HyperbandSearchTuner if config.tuner == "hyperband" else _SearchTuner
    tuner = tuner_class(
        make_oracle(config), CNNHyperModel(base, splits.spec if splits else None), role=role, address=address, worker_timeout=config.worker_timeout,
        directory=config.directory, project_name=config.project_name,
    )
    oracle = tuner.oracle
    if role != "worker":
        oracle.reporter = ProgressReporter(config.project_dir, config.data_values())
        if resuming:
            print(f"Resuming the search in {config.project_dir}: {len(oracle.end_order)} of "
                  f"{config.max_trials} trials done.", flush=True)
    if role == "chief":
        tuner.search()
    else:
        board = keras.callbacks.TensorBoard(os.path.join(config.project_dir, "tensorboard"), write_graph=False)
        tuner.search(
            splits.x_train, splits.y_train, validation_data=(splits.x_val, splits.y_val),
            epochs=config.max_epochs, callbacks=[board], verbose=verbose,
        )
    if role == "worker":
        return SearchResult(role, config.project_dir, tuner.trials_run, config.max_trials)
    if oracle.failure:
        raise SearchFailed(f"The search stopped: {oracle.failure}")
    best = best_trial(oracle)
    if best is None:
        raise SearchFailed(
            f"No trial completed in {config.project_dir}; each trial's error is in trial_*/trial.json."
        )
    path = write_best_hparams(config.project_dir, best, config.data_values())
    return SearchResult(
        role, config.project_dir, len(oracle.end_order), config.max_trials,
        best.trial_id, best.score, best_hparams(best, config.data_values()), path,
    )
