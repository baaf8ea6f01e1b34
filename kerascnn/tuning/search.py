"""The whole job: `run_search` checks everything, then runs, resumes, serves or works on a search.

Everything that can be checked (the config, the distributed variables, the
chief's port, the data, the folder's lock and the search's identity; a
worker is checked by the chief when it joins) is checked before anything is
written; `_search` then builds the oracle, hypermodel and tuner for the
process's role and returns a `SearchResult`.
"""

import dataclasses
import functools
import importlib.util
import os
import time
from typing import Optional

import grpc
import keras

from kerascnn import rundir
from kerascnn.assemble import load_splits
from kerascnn.data import content_digest
from kerascnn.precision import resolve_precision
from kerascnn.tuning.config import SEARCH_FILE, SearchFailed, TuningError
from kerascnn.tuning.distributed import ChiefLink, ChiefLost, check_port_free, distributed_role, target
from kerascnn.tuning.hypermodel import CNNHyperModel, best_hparams, trial_policy
from kerascnn.tuning.oracles import make_oracle
from kerascnn.tuning.progress import ProgressReporter, best_trial, write_best_hparams
from kerascnn.tuning.project import SEARCH_ID, SearchLock, check_project, check_worker, prepare_project, search_identity
from kerascnn.tuning.tuners import _HyperbandSearchTuner, _SearchTuner


@dataclasses.dataclass
class SearchResult:
    role: Optional[str]  # None, "chief" or "worker"
    project_dir: str
    trials_done: int  # finished trials in the search, lost ones too (a worker: the trials it ran)
    max_trials: int
    best_trial_id: Optional[str] = None
    best_score: Optional[float] = None
    best_hparams: Optional[dict] = None
    best_hparams_path: Optional[str] = None
    trials_lost: int = 0  # of trials_done, those whose folder or trial.json was lost (`_SearchOracle.reload`)


def run_search(config, verbose=0):
    """Runs, resumes, serves or works on the search `config` describes.

    Everything that can be checked (the config, the distributed variables,
    the chief's port, the data, the folder's lock and the search's identity)
    is checked before anything is written. A worker joins the chief first,
    which checks it (`tuning.project.check_worker`).

    Args:
        config: `SearchConfig`.
        verbose: Keras `fit()` verbosity inside trials. Defaults to 0.

    The role comes from the `KERASTUNER_*` environment variables, which
    keras-tuner itself reads too (`distributed_role`).

    Returns:
        `SearchResult`; `best_hparams_path` is set except on a worker.

    Raises:
        TuningError, DataError, RunDirError: bad usage, before anything is
            written (a worker the chief refuses, too).
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
    identity = search_identity(config)
    facts, shown = {}, {}
    if role != "chief" or config.precision != "auto":  # the chief trains nothing: `auto` is its workers' to say
        facts["precision"] = resolve_precision(config.precision)
        if config.precision == "auto":
            shown["precision"] = f"{facts['precision']!r} (--precision 'auto' on this machine)"
    if role != "worker":
        check_project(config, identity, facts, shown)  # what the flags say, before the data is loaded
    splits = None
    if role != "chief":  # the chief only serves the oracle
        # train.py's split, by the same function and seed (--split-seed, not --seed): the final run's test
        # set is what the search never trains or validates on.
        splits = load_splits(config.train_config())
        splits.x_test = splits.y_test = None  # the test set stays out of the search
        facts["data_sha256"] = content_digest(splits.x_train, splits.y_train, splits.x_val, splits.y_val)
        # The augmentation policy chosen from the pictures, where the flags alone could not say it (your own).
        facts.update({k: v for k, v in trial_policy(config.train_config(), splits).items() if k not in identity})
    if role == "worker":
        if config.overwrite:
            print("--overwrite is the chief's to do; this worker joins the search as it is.", flush=True)
        link = ChiefLink(address, config.worker_timeout)
        refusal = link.join(functools.partial(join_request, config, identity, facts, shown))
        if refusal is not None:
            raise TuningError(refusal)
        try:
            return _search(config, role, address, splits, verbose, link=link)
        except grpc.RpcError as e:  # an error on the chief's side
            raise SearchFailed(f"This worker lost the chief at {link.target}: {e}") from e
        except ChiefLost:  # the heartbeat found the chief lost in the middle of a trial
            raise SearchFailed(link.lost) from None
    check_project(config, identity, facts, shown)  # and the data's digest; before the lock file is touched
    with SearchLock(config.project_dir):
        resuming, unrecorded = prepare_project(config, identity, facts)  # again, now that no other can change it
        if unrecorded:
            print(f"note: {config.project_dir}/{SEARCH_FILE} did not record {', '.join(unrecorded)} (an older "
                  f"tune.py began the search); they are recorded now as this command's.", flush=True)
        check = functools.partial(check_worker, config, target(address)) if role == "chief" else None
        return _search(config, role, address, splits, verbose, resuming, check_worker=check)


def join_request(config, identity, facts, shown):
    """What a worker sends the chief when it joins (`tuning.project.check_worker` reads it).

    The search ID is read from the worker's own folder, once the chief is up:
    it proves the folder is the chief's. It is waited for up to
    `--worker-timeout`, for a shared folder slow to show the chief's file.
    """
    kind_file = os.path.join(config.project_dir, SEARCH_FILE)
    deadline = time.monotonic() + config.worker_timeout
    while True:
        try:
            search_id = rundir.read_json(kind_file).get(SEARCH_ID)
        except (OSError, ValueError, AttributeError):
            search_id = None
        if search_id is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return {
        "tuner_id": os.environ.get("KERASTUNER_TUNER_ID"), "identity": identity, "facts": facts, "shown": shown,
        "search_id": search_id, "project_dir": os.path.abspath(config.project_dir), "directory": config.directory,
        "project_name": config.project_name,
    }


def _search(config, role, address, splits, verbose, resuming=False, link=None, check_worker=None):
    base = config.train_config()
    if splits is not None:  # every trial trains with the augmentation policy `auto` chooses from the data
        base = dataclasses.replace(base, augment=trial_policy(base, splits)["augment"])
    tuner_class = _HyperbandSearchTuner if config.tuner == "hyperband" else _SearchTuner
    tuner = tuner_class(
        make_oracle(config), CNNHyperModel(base, splits.spec if splits else None), role=role, address=address,
        worker_timeout=config.worker_timeout, link=link, check_worker=check_worker,
        directory=config.directory, project_name=config.project_name,
    )
    oracle = tuner.oracle
    if role != "worker":
        oracle.reporter = ProgressReporter(config.project_dir, config.data_values())
        if resuming:
            print(resume_line(config, oracle), flush=True)
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
        best.trial_id, best.score, best_hparams(best, config.data_values()), path, len(oracle.lost),
    )


def resume_line(config, oracle):
    """What a resumed search says first: the trials done of the budget, and the trials lost, if any.

    A lost trial (its folder or trial.json missing or unreadable) counts as
    done and is not run again: a larger --max-trials runs others in its place.
    """
    done = len(oracle.end_order)
    if done > config.max_trials:
        line = (f"Resuming the search in {config.project_dir}: {done} trials done, more than --max-trials "
                f"{config.max_trials}: no new trial is started.")
    else:
        line = f"Resuming the search in {config.project_dir}: {done} of {config.max_trials} trials done."
    if oracle.lost:
        lost = "; ".join(f"trial_{trial_id} ({why})" for trial_id, why in sorted(oracle.lost.items()))
        count = len(oracle.lost)
        line += (f" Lost, so counted as done without a result and not run again (what is left of the folder "
                 f"stays as it is): {lost}. To run {'a trial' if count == 1 else f'{count} trials'} in "
                 f"{'its' if count == 1 else 'their'} place, raise --max-trials by {count}.")
    return line
