"""What an interrupted run resumes from, and whether it can: found by its config, checked, put in order.

`train()` resumes a run in three steps, all here:

1. `find(config, spread)`: the newest interrupted run under the log directory whose
   config is this one, compared by `identity` (the values that decide the
   result: where the logs, the data and a cache are is left out, and a
   folder of pictures is compared by its resolved path), and spread over as
   many processes and replicas. A config.json from before the augmentation
   policies lacks their fields: they are read as what that code trained
   (`as_before_policies`). An interrupted run of the same model and data
   that holds finished work under another config is refused by name (exit
   2), listing the keys that differ, never passed over for a new run in
   silence.
2. the run's lock (`kerascnn.rundir.RunLock`), taken by the caller.
3. `prepare(run_dir)`: under the lock, checks that the run holds what its
   resume needs, and puts it in order. A missing `best.keras` or a backup of
   which no copy can be read is refused by name, offering `--no-resume`, and
   nothing is changed. A damaged newest backup copy gives way to the older one
   that loads; `history.csv` is rewritten (atomically) to one complete row
   per epoch up to the epoch resumed from, so a row cut short by a stop, or
   the row of an epoch trained again, never doubles or breaks it.

Example:

>>> identity({"model": "sequential", "logdir": "logs/", "data_dir": "/data", "dataset": "mnist", "lr": 0.001})
{'model': 'sequential', 'dataset': 'mnist', 'lr': 0.001}
"""

import collections
import csv
import io
import os
import shutil

from kerascnn import compat, rundir
from kerascnn.callbacks import EPOCHS_FROM
from kerascnn.config import DATASETS, TrainConfig, resolve
from kerascnn.errors import UsageError

# Where a run's files are, not what it computes: left out of a run's identity. A built-in dataset is
# recognised by the SHA-256 of its content wherever it is read from (`kerascnn.data.identify`), so the
# data directory, from --data-dir or $KERASCNN_DATA_DIR, changes nothing; nor does the log directory
# (the run is found in it) or the cache of decoded pictures.
WHERE = ("logdir", "data_dir", "cache_dir")

# The config fields added with the augmentation policies (kerascnn/layers/policy.py): a config.json written before
# them has none of them. That code trained with no policy (the amounts it recorded, rotation, shift and zoom, were
# its augmentation), never flipped and changed no brightness or contrast (`as_before_policies`).
BEFORE_POLICIES = ("augment", "flip", "brightness", "contrast")

# How an interrupted run resumes: `point` is `kerascnn.rundir.resume_point`'s ("scoring", "epoch" or
# "start"); `epoch` the epochs finished that it goes on from (None for "scoring", 0 for "start").
Resume = collections.namedtuple("Resume", "point epoch")


def identity(values):
    """The values of a resolved config dict that decide a run's result, paths normalised: what two runs must share
    for one to resume the other. `WHERE`'s fields are left out; a dataset that is a folder or a file, not a
    built-in name, is its resolved absolute path (a trailing slash, a relative path or a link say the same)."""
    kept = {k: v for k, v in values.items() if k not in WHERE}
    dataset = kept.get("dataset")
    if isinstance(dataset, str) and dataset not in DATASETS:
        kept["dataset"] = os.path.realpath(dataset)
    return kept


def stored_identity(stored, wanted=None):
    """`identity` of a run's `config.json`, brought up to date first (`resolve`: an older file's nulls filled in).

    A file from before the augmentation policies lacks `BEFORE_POLICIES`:
    they are filled in with what that code trained (`as_before_policies`)
    before it is resolved, so its run is found by a config that trains as it did.

    Args:
        stored: dict, the run's config.json.
        wanted: dict, `identity` of the config asking, or None.

    Raises:
        ValueError: `stored` is not a config this version can read.
    """
    try:
        return identity(resolve(TrainConfig.from_dict({**as_before_policies(stored, wanted), **stored})).to_dict())
    except UsageError as e:
        raise ValueError(str(e)) from None


def as_before_policies(stored, wanted=None):
    """The values of `BEFORE_POLICIES` that a config.json `stored` lacks, as the code that wrote it trained.

    No flip, brightness or contrast change (where the model takes them);
    and no policy: its augmentation was the amounts it recorded, which are
    compared as they are, so `augment` takes the name the config asking
    resolved to (`wanted`'s), or stays `auto` to be resolved.

    Example:

    >>> as_before_policies({"model": "best", "rotation": 15.0}, {"augment": "digits"})
    {'augment': 'digits', 'flip': False, 'brightness': 0.0, 'contrast': 0.0}
    >>> as_before_policies({"model": "best", "augment": "auto", "flip": None, "brightness": None, "contrast": None})
    {}

    Raises:
        ModelError: `stored`'s model is not registered.
    """
    from kerascnn.layers.policy import amounts
    from kerascnn.models.registry import model_defaults

    missing = [k for k in BEFORE_POLICIES if k not in stored]
    if not missing:
        return {}
    takes = model_defaults(stored.get("model", TrainConfig.model))
    off = amounts("none", 1, 1)
    values = {k: off[k] for k in missing if k != "augment" and k in takes}
    if "augment" in missing:
        values = {"augment": (wanted or {}).get("augment", "auto"), **values}
    return values


def find(config, spread=None):
    """The interrupted run of the resolved `config` to resume, or None to start a new one.

    Args:
        config: the resolved `TrainConfig`.
        spread: dict or None, how this run is spread (`{"processes": N,
            "replicas": R}`, as `rundir.SPREAD` records it): part of a run's
            identity, since the replicas set the global batch. A run that
            recorded none (made before it was recorded) matches any.
            Defaults to None (not compared).

    Raises:
        RunDirError: an interrupted run of the same model and data, that
            holds finished work (a backup or a finished training) and that no
            process holds, has another config or spread: its directory, the
            keys that differ with both values, and the two ways on (its own
            settings, or `--no-resume`).
    """
    wanted = {**identity(config.to_dict()), **(spread or {})}
    candidates = []
    for run, stored, point in rundir.unfinished_runs(config.logdir, config.model):
        try:
            theirs = {**stored_identity(stored, wanted), **(_stored_spread(run, spread) if spread else {})}
        except ValueError:
            continue
        if theirs == wanted:
            return run
        candidates.append((run, theirs, point, [k for k in BEFORE_POLICIES if k not in stored]))
    for run, theirs, point, missing in candidates:
        if point == "start" or rundir.FileLock.is_held(os.path.join(run, rundir.LOCK)):
            continue  # no epoch finished there, or not interrupted but training now: a new run passes nothing over
        if theirs.get("dataset") == wanted.get("dataset"):
            raise _another_config(run, theirs, wanted, missing)
    return None


def _stored_spread(run_dir, spread):
    """The run's recorded spread (`rundir.SPREAD`), or `spread` itself for a run that recorded none."""
    path = os.path.join(run_dir, rundir.SPREAD)
    if not os.path.exists(path):
        return spread
    try:
        return rundir.read_json(path)
    except OSError as e:
        raise ValueError(str(e)) from None


def _another_config(run_dir, theirs, wanted, missing=()):
    """The refusal of an interrupted run of another config; `missing`: the `BEFORE_POLICIES` its config.json lacks."""
    keys = [k for k in sorted(set(theirs) | set(wanted)) if theirs.get(k) != wanted.get(k)]
    there = lambda k: (f"not recorded there, a run from before the augmentation policies: {theirs.get(k)!r}"
                       if k in missing else f"{theirs.get(k)!r} there")
    differ = ", ".join(f"{k} ({there(k)}, {wanted.get(k)!r} here)" for k in keys)
    return rundir.RunDirError(
        f"An interrupted run of {wanted['model']} on {wanted['dataset']} is in {run_dir}, with another config: "
        f"{differ}. To resume it, run it with its own settings (--config {os.path.join(run_dir, rundir.CONFIG)}); "
        f"to start a new run beside it (it is left as it is), add --no-resume. "
        f"Received: {', '.join(f'{k}={wanted.get(k)!r}' for k in keys)}"
    )


def prepare(run_dir):
    """Checks the interrupted run in `run_dir` (locked by the caller) and puts it in order for its resume.

    Nothing is changed unless the run can resume. Then a newest backup copy
    that cannot be used is replaced by the older one that can (said on
    stdout), and `history.csv` keeps exactly one complete row per epoch
    finished, up to the epoch resumed from.

    Returns:
        `Resume`.

    Raises:
        RunDirError: the run finished meanwhile, or lacks what its resume
            needs (its checkpoint; a backup copy that loads with its history's
            rows): named, with `--no-resume` offered.
    """
    point = rundir.resume_point(run_dir)
    if point is None:
        raise rundir.RunDirError(f"The run in {run_dir} finished while this command was starting; run the command "
                                 f"again to start a new run. Received: run_dir={run_dir}")
    _check_checkpoint(run_dir)
    if point == "scoring":
        return Resume(point, None)
    history = os.path.join(run_dir, rundir.HISTORY)
    header, rows = history_rows(history)
    first = 0 if 0 in rows else EPOCHS_FROM  # a history begun before epochs counted from 1 counts from 0
    epoch = 0
    if point == "epoch":
        copies = compat.backup_copies(os.path.join(run_dir, rundir.BACKUP))
        chosen, epoch, problems = _usable_copy(run_dir, copies, rows, first)
        if chosen:  # from here on the run resumes: the newest copy gives way to the one that loads
            print(f"The newest backup cannot be used ({'; '.join(problems)}); resuming from the previous one, "
                  f"epoch {epoch}.", flush=True)
            _put_first(copies[0], copies[chosen])
    _rewrite_history(history, header, [rows[e] for e in range(first, first + epoch)])
    return Resume(point, epoch)


def _check_checkpoint(run_dir):
    """A recorded best epoch (best.json) without its checkpoint cannot be made up: later epochs need not beat
    it, and a finished training has no epochs left to write one."""
    record = os.path.join(run_dir, rundir.BEST_RECORD)
    if os.path.exists(record) and not os.path.exists(os.path.join(run_dir, rundir.BEST_MODEL)):
        epoch = rundir.read_json(record).get("best_epoch")
        raise damaged(run_dir, f"its checkpoint {rundir.BEST_MODEL} is missing ({rundir.BEST_RECORD} records "
                               f"the best epoch, {epoch}, and only that file holds its weights)")


def damaged(run_dir, what, remedy="put the missing file back"):
    """The refusal (exit 2) of the interrupted run in `run_dir`, which cannot resume because of `what`
    unless the user does `remedy`."""
    return rundir.RunDirError(
        f"The interrupted run in {run_dir} cannot be resumed: {what}. Add --no-resume to start a new run "
        f"(the interrupted one is left as it is), or {remedy}. Received: run_dir={run_dir}"
    )


def _usable_copy(run_dir, copies, rows, first):
    """(index in `copies`, its epoch, what was wrong with the newer ones): the newest backup copy whose metadata
    and weights read whole and whose epochs all have their row in the history; `damaged` raised when none has."""
    problems = []
    for i, (weights, metadata) in enumerate(copies):
        if not (os.path.exists(weights) or os.path.exists(metadata)):
            continue
        name = os.path.relpath(weights, run_dir)
        try:
            epoch = compat.backup_epoch(metadata)
        except (OSError, ValueError) as e:
            problems.append(f"{os.path.relpath(metadata, run_dir)}: {_why(e)}")
            continue
        try:
            check_weights(weights)
        except Exception as e:  # h5py raises OSError, KeyError, RuntimeError... on a damaged file
            problems.append(f"{name}: {_why(e)}")
            continue
        missing = [e for e in range(first, first + epoch) if e not in rows]
        if missing:
            problems.append(f"{name} holds {epoch} epochs, and {rundir.HISTORY} lacks the rows of epochs "
                            f"{', '.join(map(str, missing))}")
            continue
        return i, epoch, problems
    raise damaged(run_dir, f"no copy of its {rundir.BACKUP} can be used ({'; '.join(problems) or 'it holds none'})",
                  remedy="put back what is damaged")


def _why(error):
    text = str(error) if not isinstance(error, OSError) or not error.strerror else error.strerror
    return text if len(text) <= 160 else text[:157] + "..."


def check_weights(path):
    """Reads every array of the `.weights.h5` file `path`; raises what h5py raises when one cannot be read."""
    import h5py  # Keras' own dependency for .weights.h5 files

    def read(name, item):
        if isinstance(item, h5py.Dataset):
            item[()]

    with h5py.File(path, "r") as f:
        f.visititems(read)  # `read` returns None: the visit goes on to every item


def _put_first(newest, usable):
    """Copies the backup pair `usable` over the pair `newest`, so Keras loads it. The newest weights go first,
    then the metadata and the weights are copied (each atomically), so a stop on the way leaves the newest pair
    unusable and the next resume falls back again, never a pair of one epoch's weights and another's count."""
    if os.path.exists(newest[0]):
        os.remove(newest[0])
    for source, target in zip(reversed(usable), reversed(newest)):  # the metadata, then the weights
        with rundir.atomic_write(target) as tmp:
            shutil.copyfile(source, tmp)


def history_rows(path):
    """(header line or None, {epoch: row line}) of `history.csv` (Keras' `CSVLogger`), complete rows only.

    A row cut short by a stop (no line end, or too few fields) is left
    out; an epoch written twice (trained again after a fall-back) keeps its
    last row.
    """
    try:
        with open(path, newline="") as f:
            lines = f.read().splitlines(keepends=True)
    except OSError:
        return None, {}
    if not lines or not lines[0].endswith("\n"):
        return None, {}
    width = len(next(csv.reader(io.StringIO(lines[0]))))
    rows = {}
    for line in lines[1:]:
        fields = next(csv.reader(io.StringIO(line)), [])
        if not line.endswith("\n") or len(fields) != width:
            continue
        try:
            rows[int(fields[0])] = line
        except ValueError:
            continue
    return lines[0], rows


def count_epochs(path):
    """The epochs `history.csv` at `path` has a complete row for."""
    return len(history_rows(path)[1])


def _rewrite_history(path, header, kept):
    """Writes `history.csv` as `header` and the `kept` rows (atomically), unless it holds exactly that already."""
    if not os.path.exists(path):
        return
    text = (header or "") + "".join(kept)
    with open(path, newline="") as f:
        if f.read() == text:
            return
    with rundir.atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        f.write(text)


def training_record(run_dir):
    """trained.json's values for a run whose last epoch's backup was written but not trained.json: its training
    time and sittings as elapsed.json last recorded them, at that epoch's end, and its epochs."""
    elapsed = rundir.read_json(os.path.join(run_dir, rundir.ELAPSED))
    return {"seconds": elapsed["seconds"], "sittings": elapsed["sittings"],
            "epochs": count_epochs(os.path.join(run_dir, rundir.HISTORY))}
