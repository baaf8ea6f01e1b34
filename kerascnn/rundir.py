"""One directory per run under the log directory, never reused.

`logs/<model>-<YYYYmmdd-HHMMSS>/` holds `config.json` (the resolved
config), `spread.json` (its processes and replicas), TensorBoard event files (`train/`, `validation/`), `best.keras`,
`best.json` (its epoch and validation accuracy), `history.csv`, `elapsed.json` (training time over the run's sittings),
`backup/` and `trained.json` until `metrics.json` is written, `run.lock` while a process works on it.
A run that was interrupted (no `metrics.json`; `resume_point` says from
where) is the one exception: running the same config again resumes it in
place (`kerascnn.resuming`).
"""

import contextlib
import csv
import fcntl
import glob
import json
import math
import os
import secrets
import shutil
import socket
import tempfile
import time

from kerascnn.errors import OutputExists, UsageError

# A run directory's files: every module names them through these (one place for each name).
CONFIG = "config.json"  # the resolved config (`kerascnn.config.resolve`)
SPREAD = "spread.json"  # how the run is spread: {"processes": N, "replicas": R}; a resume must keep them
METRICS = "metrics.json"  # written once the run has finished
DATA = "data.json"  # class names, input size and colours, the test files carved (kerascnn.data.DataSpec)
BEST_MODEL = "best.keras"  # the checkpoint of the epoch the run's checkpoint rule keeps (--checkpoint)
BEST_RECORD = "best.json"  # that checkpoint's epoch and score (beside BEST_MODEL, named after it)
HISTORY = "history.csv"  # one row per epoch
ELAPSED = "elapsed.json"  # training seconds and sittings so far
CONFUSION = "confusion_matrix.png"  # the test set's confusion matrix, drawn when training ends
MISCLASSIFIED = "misclassified.png"  # the test set's most confident mistakes, drawn when training ends
BACKUP = "backup"  # a folder, until metrics.json is written: what an interrupted run resumes from
TRAINED = "trained.json"  # training finished, test scoring pending: epochs, seconds and sittings of the training
LOCK = "run.lock"  # held (flock) by the process training or scoring the run; names it


class RunDirError(UsageError):
    """The log directory cannot be used."""


def bytes_needed(params):
    """Disk a run needs: `best.keras` and the backup each hold float32 weights
    plus Adam's two slots (3 x 4 bytes a parameter), and some slack for logs."""
    return 2 * 12 * params + 16 * 2**20


# The longest path a run writes below its log directory, in bytes: the run's own name
# (`<model>-<YYYYmmdd-HHMMSS>-<N>`) and TensorBoard's
# `validation/member_<i>/events.out.tfevents.<time>.<host>.<pid>.<n>.v2` (a host name has up to 64 bytes)
# are about 180; the rest is slack.
DEEPEST = 256


def check_writable(logdir, needed=0, name="Log directory", flag="--logdir", received=None):
    """Raises `RunDirError` naming `logdir` if a run cannot be written there.

    Probes by writing a file in the nearest existing directory (permission
    bits say nothing when running as root), checks that the names still to
    be made and the paths a run writes fit the file system's limits
    (`NAME_MAX`, `PATH_MAX`), and checks the free space. Nothing is left
    behind, whatever it finds.

    Args:
        logdir: str, the folder runs are written under.
        needed: int, bytes the run needs. Defaults to 0.
        name, flag: str, what `logdir` is and the flag that chooses it, for the message. Default to
            train.py's: "Log directory", "--logdir".
        received: str, what the message says after "Received:". Defaults to `logdir=<logdir>`.
    """
    path = os.path.abspath(logdir)
    said = f"Received: {received or f'logdir={logdir!r}'}"
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise RunDirError(f"{name} {logdir}: {existing} is a file, not a directory. {said}")
    name_max, path_max = _limits(existing)
    for part in os.path.relpath(path, existing).split(os.sep):
        if len(os.fsencode(part)) > name_max:
            raise RunDirError(
                f"{name} {logdir}: the folder name {part[:40]}... has {len(os.fsencode(part))} bytes; this file "
                f"system takes names of at most {name_max} bytes. Choose a shorter {flag}. {said}")
    if len(os.fsencode(path)) + DEEPEST > path_max:
        raise RunDirError(
            f"{name} {logdir} is too long: its path has {len(os.fsencode(path))} bytes, and a run writes files up to "
            f"{DEEPEST} bytes deeper, over this file system's limit of {path_max} bytes a path. Choose a shorter "
            f"{flag}. {said}")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise RunDirError(f"{name} {logdir} is not writable ({existing}: {e.strerror}). {said}") from None
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise RunDirError(
            f"{name} {logdir} has {free / 2**20:.0f} MB free; this run needs about "
            f"{needed / 2**20:.0f} MB (best.keras, backup, logs). Free some space or choose another {flag}. {said}"
        )


def _limits(directory):
    """(NAME_MAX, PATH_MAX) of the file system holding `directory`: 255 and 4096 where it cannot say (Windows)."""
    try:
        return os.pathconf(directory, "PC_NAME_MAX"), os.pathconf(directory, "PC_PATH_MAX")
    except (AttributeError, OSError, ValueError):
        return 255, 4096


def resume_point(run_dir):
    """Where the run in `run_dir` would resume from, or None when it cannot be resumed.

    * "scoring": its training had finished (`trained.json`); only the test scoring is left;
    * "epoch": `backup/` holds a finished epoch to go on from;
    * "start": no epoch had finished (stopped in the first one, or before
      its backup was written): it starts again from epoch 1, in place;
    * None: finished (`metrics.json`), not a run (no `config.json`), or
      stopped by a diverged loss (its last epoch's loss is not finite, and
      its backup was removed on purpose: nothing to go on from).
    """
    if os.path.exists(os.path.join(run_dir, METRICS)) or not os.path.exists(os.path.join(run_dir, CONFIG)):
        return None
    if os.path.exists(os.path.join(run_dir, TRAINED)):
        return "scoring"
    backup = os.path.join(run_dir, BACKUP)
    if os.path.isdir(backup) and os.listdir(backup):
        return "epoch"
    return None if _diverged(os.path.join(run_dir, HISTORY)) else "start"


def _diverged(history):
    """Whether the last row of `history` (history.csv) has a loss that is not finite."""
    try:
        with open(history, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return False
    try:
        return bool(rows) and not math.isfinite(float(rows[-1].get("loss")))
    except (TypeError, ValueError):  # a row cut short by a stop: not a loss that diverged
        return False


def unfinished_runs(logdir, model):
    """[(run_dir, stored config dict, resume point)] of the runs of `model` under `logdir` that could be resumed,
    newest first (`resume_point`; a run whose config.json cannot be read is left out)."""
    found = []
    for run in glob.glob(os.path.join(logdir, f"{model}-*")):
        point = resume_point(run)
        if point is None:
            continue
        try:
            stored = read_json(os.path.join(run, CONFIG))
        except (OSError, ValueError):
            continue
        found.append((os.path.getmtime(run), run, stored, point))
    return [(run, stored, point) for _, run, stored, point in sorted(found, reverse=True)]


def find_resumable(logdir, model, config_dict, same=None):
    """The newest unfinished run of exactly this config, or None.

    Args:
        same: function of a run's stored config dict returning the dict to
            compare with `config_dict` (an older `config.json`, brought up to
            date, its paths normalised); a `ValueError` from it means "not this
            config". Defaults to comparing the stored dict as it is.
    """
    for run, stored, _ in unfinished_runs(logdir, model):
        try:
            if (same(stored) if same else stored) == config_dict:
                return run
        except ValueError:
            continue
    return None


class FileLock:
    """An exclusive `fcntl.flock` on the file `path`, named after its holder (pid, host, time).

    The operating system drops the lock when its process ends, killed or not,
    so a stopped job can always be resumed; the file itself stays, unless
    its holder removes it as it lets go (`release(remove=True)`: a finished
    run's `RunLock`). A lock taken on a file its holder removed meanwhile is
    taken again on the file now at `path`, so two processes never both hold
    it. A second process asking for it gets `refused(holder)` raised at
    once, never a wait; a folder where the file cannot be written,
    `unwritable(error)`. Used for a run directory (`RunLock`) and a search
    folder (`kerascnn.tuning.project.SearchLock`).

    Args:
        path: str, the lock file (made, with its folder, if missing).
    """

    def __init__(self, path):
        self.path = path
        self._file = None

    def refused(self, holder):
        """The exception raised when another process holds the lock; `holder` is what its file says."""
        return RunDirError(f"{self.path} is held by another process ({holder}).")

    def unwritable(self, error):
        """The exception raised when the lock file cannot be made or written (`error`, an `OSError`)."""
        return RunDirError(f"Cannot write the lock file {self.path} ({error.strerror}): its folder must be "
                           f"writable. Received: path={self.path!r}")

    def __enter__(self):
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            for _ in range(100):  # each turn: a holder removed the file between our open and our lock
                f = open(self.path, "a+")
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    f.seek(0)
                    holder = f.read().strip() or "another process"
                    f.close()
                    raise self.refused(holder) from None
                if self._is_at_path(f):
                    break
                f.close()
            else:
                raise self.refused("another process, which keeps replacing the file")
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            f.flush()
        except OSError as e:
            raise self.unwritable(e) from None
        self._file = f
        return self

    def _is_at_path(self, f):
        try:
            at_path = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(f.fileno())
        return (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)

    @staticmethod
    def is_held(path):
        """Whether a process holds the lock of the file `path` now (probed with a shared lock, let go at once)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False  # no lock file: nobody holds it (a holder makes it before anything else)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing lets go of a lock taken
        return False

    def release(self, remove=False):
        """Lets go of the lock; with `remove`, first deletes its file (only ever by the holder, while it holds it)."""
        if self._file is None:
            return
        if remove and self._is_at_path(self._file):
            os.remove(self.path)
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def __exit__(self, *exc):
        self.release()


class RunLock(FileLock):
    """The lock of a run directory (`run.lock` in it): one process trains or scores a run at a time."""

    def __init__(self, run_dir):
        super().__init__(os.path.join(run_dir, LOCK))
        self.run_dir = run_dir

    def refused(self, holder):
        return RunDirError(
            f"The run in {self.run_dir} is in use by another process ({holder}). Wait for it to finish, "
            f"or add --no-resume to start a new run beside it. Received: run_dir={self.run_dir}"
        )

    def unwritable(self, error):
        return RunDirError(
            f"The run directory {self.run_dir} is not writable ({error.strerror}: {self.path}); a run writes its "
            f"lock, checkpoints and logs there. Make it writable, or add --no-resume to start a new run beside it. "
            f"Received: run_dir={self.run_dir}"
        )

    def __exit__(self, *exc):
        # A finished run keeps no lock file; an interrupted one keeps it, naming the process that last held it.
        self.release(remove=os.path.exists(os.path.join(self.run_dir, METRICS)))


def create_run_dir(logdir, model):
    """Makes a new, empty `<logdir>/<model>-<timestamp>[-N]` and returns it."""
    try:
        os.makedirs(logdir, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"Cannot make the log directory {logdir} ({e.strerror}). "
                          f"Received: logdir={logdir!r}") from None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        path = os.path.join(logdir, f"{model}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            os.makedirs(path)  # exist_ok=False: two runs never share a directory
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise RunDirError(f"Cannot make a run directory under {logdir} ({e.strerror}: {path}). "
                              f"Received: logdir={logdir!r}") from None
    raise RunDirError(f"Could not create a new run directory under {logdir}.")


def check_new_file(path, flag="--out"):
    """Raises `OutputExists` if `path` is there, or `UsageError` if its folder is not: a command never overwrites.

    Args:
        path: str, the file a command is about to write.
        flag: str, the flag that named it, for the message.
    """
    if os.path.lexists(path):
        raise OutputExists(f"{path} already exists; it was left as it is. Remove it or choose another {flag}. "
                           f"Received: {flag} {path}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write {path}: the directory {parent} does not exist. Received: {flag} {path}")


@contextlib.contextmanager
def atomic_write(path, extension=None):
    """Yields a temporary path beside `path`; what is written there replaces `path` at once.

    When the block ends, the file written at the temporary path is flushed
    to disk (fsync) and renamed over `path`, an atomic step on POSIX: a
    reader sees the earlier file or the new one, never part of one. If the
    block raises, `path` is left as it was and the temporary file is
    removed; if it writes nothing, `path` is left as it was. The temporary
    name keeps `path`'s extension (Keras and Pillow read it) behind a dot,
    so a kill -9 mid-write leaves at most a hidden `.NAME.partial-*` file.
    Every file kerascnn writes for keeps (JSON, checkpoints, PNGs) goes through here.

    Example:

    >>> with tempfile.TemporaryDirectory() as directory:
    ...     path = os.path.join(directory, "note.txt")
    ...     with atomic_write(path) as tmp, open(tmp, "w") as f:
    ...         _ = f.write("done")
    ...     print(open(path).read(), os.listdir(directory))
    done ['note.txt']

    Args:
        path: str, the file to write.
        extension: str, the ending the temporary name keeps, for a reader
            that needs more than the last one (Keras' `.weights.h5`).
            Defaults to `path`'s extension.
    """
    directory, name = os.path.split(os.path.abspath(path))
    if extension is not None and name.endswith(extension):
        stem = name[: -len(extension)]
    else:
        stem, extension = os.path.splitext(name)
    tmp = os.path.join(directory, f".{stem}.partial-{secrets.token_hex(4)}{extension}")
    try:
        yield tmp
        if os.path.exists(tmp):
            fd = os.open(tmp, os.O_RDWR)  # written by another library (Keras, Pillow): flushed here
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, values):
    """Writes JSON atomically (see `atomic_write`): never a half-written file."""
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        json.dump(values, f, indent=2, sort_keys=True)
        f.write("\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)
