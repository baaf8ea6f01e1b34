"""Hyperparameter search for the `best` CNN with keras-tuner (`python tune.py`).

`CNNHyperModel.build(hp)` declares the search space (`search_space`) and maps
the values chosen onto a `TrainConfig`; each trial is assembled as
`train.py`'s run is (`kerascnn.assemble`): model, compile, input pipeline
and schedule. Each trial is scored
by its best `val_accuracy` on the validation split carved from the training
set; the test set is never handed to the search. Trials train one member of
the ensemble (`MEMBERS`): the search tunes the member, and the final
`train.py` run trains the recipe's two of it.

A search lives in `<directory>/<project_name>/`:

    search.json         the search's identity: everything that changes a trial's result
    oracle.json, trial_*/   keras-tuner's state: running the command again resumes
    tensorboard/<trial>/execution0/   each trial's curves and its HParams session
    progress.jsonl      one JSON object per finished trial (the progress line, plus memory)
    best_hparams.json   the best trial's values as `TrainConfig` keys, for `train.py --hparams`

and `<directory>/<project_name>.lock` keeps a second single-machine search out.

With `KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT`
set, the same search runs on several machines with keras-tuner's own gRPC
oracle: the "chief" serves the oracle (`serve_oracle`) and workers run trials.
Workers send a heartbeat while they train; a worker silent for
`worker_timeout` seconds is given up for lost and its trial goes to the next
free worker, so the search still finishes. A worker is checked by the chief
when it joins, and stops when the chief is silent for `worker_timeout`.

The modules, one job each (this package re-exports their public names):

    config.py       SearchConfig (tune.py's flags), the constants, TuningError, SearchFailed
    hypermodel.py   the search space, CNNHyperModel, best_hparams
    oracles.py      keras-tuner's oracles plus progress, atomic saves, lost trials and workers
    tuners.py       keras-tuner's Tuner: memory hygiene, resume, the distributed roles
    distributed.py  KERASTUNER_* roles, the chief's gRPC server, the workers' joining, deadlines, heartbeat
    progress.py     the line per finished trial, progress.jsonl, best_hparams.json
    project.py      the search folder: its lock, its identity, --overwrite, the check of a joining worker
    search.py       run_search: the checks, then the search for this process's role
"""

from kerascnn import lazy_attributes

# Every public name of the modules, so that `from kerascnn.tuning import X` works; each module
# (and keras-tuner with it) is imported on first use, so `tune.py --help` stays light.
_NAMES = {
    "config": ("BEST_HPARAMS", "MEMBERS", "OBJECTIVE", "PROGRESS_FILE", "SEARCH_FILE", "TUNERS", "SearchConfig",
               "SearchFailed", "TuningError"),
    "distributed": ("check_port_free", "distributed_role", "serve_oracle"),
    "hypermodel": ("TUNED", "CNNHyperModel", "best_hparams", "search_space", "tuned_values"),
    "oracles": ("BayesianOptimizationOracle", "HyperbandOracle", "RandomSearchOracle", "make_oracle"),
    "progress": ("ProgressReporter", "best_trial", "format_progress", "resident_mb", "write_best_hparams"),
    "project": ("SearchLock", "check_kind", "check_project", "check_worker", "prepare_project", "search_identity"),
    "search": ("SearchResult", "run_search"),
}
__getattr__ = lazy_attributes(
    __name__, {name: f"{__name__}.{module}" for module, names in _NAMES.items() for name in names}
)
__all__ = sorted(name for names in _NAMES.values() for name in names)
