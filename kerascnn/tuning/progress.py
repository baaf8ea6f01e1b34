"""Progress and results: one line per finished trial, memory in use, the best trial.

`ProgressReporter` prints a line per finished trial (`format_progress`),
appends it with the memory in use to `progress.jsonl`, and keeps
`best_hparams.json` current (`write_best_hparams`).
"""

import json
import os
import time

from keras_tuner.engine.trial import TrialStatus

from kerascnn import rundir
from kerascnn.tuning.config import BEST_HPARAMS, OBJECTIVE, PROGRESS_FILE
from kerascnn.tuning.hypermodel import best_hparams, tuned_values


class ProgressReporter:
    """One line per finished trial on stdout and in `progress.jsonl`; keeps `best_hparams.json` current.

    Args:
        project_dir: str, the search's folder.
        data: dict, the data settings written into `best_hparams.json` (`SearchConfig.data_values`).
    """

    def __init__(self, project_dir, data):
        self.project_dir, self.data = project_dir, data
        self.start = time.monotonic()

    def trial_ended(self, oracle, trial, tuner_id=None):
        best = best_trial(oracle)
        elapsed = time.monotonic() - self.start
        record = {
            "trial": len(oracle.end_order),
            "total": oracle.max_trials,
            "trial_id": trial.trial_id,
            "status": trial.status,
            OBJECTIVE: trial.score if trial.status == TrialStatus.COMPLETED else None,
            "best": best.score if best else None,
            "best_trial_id": best.trial_id if best else None,
            "elapsed_seconds": round(elapsed, 1),
            "hparams": tuned_values(trial.hyperparameters),
            "epochs": trial.hyperparameters.values.get("tuner/epochs"),
            "tuner_id": tuner_id,
            "message": _reason(trial.message),
            "rss_mb": resident_mb(),
        }
        print(format_progress(record), flush=True)
        with open(os.path.join(self.project_dir, PROGRESS_FILE), "a") as f:
            f.write(json.dumps(record) + "\n")
        if best is not None:
            write_best_hparams(self.project_dir, best, self.data)


def format_progress(record):
    """The progress line of one finished trial.

    Example:

    >>> format_progress({"trial": 3, "total": 10, "trial_id": "02", "status": "COMPLETED",
    ...     "val_accuracy": 0.91234, "best": 0.93, "best_trial_id": "01", "elapsed_seconds": 83.4,
    ...     "hparams": {"lr": 0.00123, "batchnorm": True}, "epochs": None, "message": None})
    'Trial 3/10 (trial_02): val_accuracy=0.9123 | best 0.9300 (trial_01) | elapsed 0:01:23 | lr=0.00123 batchnorm=True'
    """
    if record["status"] == TrialStatus.COMPLETED:
        outcome = f"{OBJECTIVE}={record[OBJECTIVE]:.4f}"
    else:
        outcome = record["status"] + (f" ({record['message']})" if record.get("message") else "")
    best = f"best {record['best']:.4f} (trial_{record['best_trial_id']})" if record["best"] is not None else "best -"
    minutes, seconds = divmod(round(record["elapsed_seconds"]), 60)
    values = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in record["hparams"].items())
    if record.get("epochs"):
        values += f" epochs={record['epochs']}"
    total = record["total"] or "?"
    return (
        f"Trial {record['trial']}/{total} (trial_{record['trial_id']}): {outcome} | {best} | "
        f"elapsed {minutes // 60}:{minutes % 60:02d}:{seconds:02d} | {values}"
    )


def _reason(message):
    """The last line of a failed trial's traceback, without the module path."""
    lines = [line for line in (message or "").splitlines() if line.strip()]
    if not lines:
        return None
    name, _, text = lines[-1].partition(": ")
    return f"{name.rsplit('.', 1)[-1]}: {text}" if text else lines[-1]


def resident_mb():
    """This process's resident memory in MiB (Linux), or None."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


def best_trial(oracle):
    """The best completed trial, or None."""
    trials = oracle.get_best_trials(1)
    return trials[0] if trials and trials[0].status == TrialStatus.COMPLETED else None


def write_best_hparams(project_dir, trial, data):
    """Writes `best_hparams.json` (atomically) and returns its path."""
    path = os.path.join(project_dir, BEST_HPARAMS)
    rundir.write_json(path, best_hparams(trial, data))
    return path
