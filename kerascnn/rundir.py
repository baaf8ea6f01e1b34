"""One directory per run under the log directory, never reused.

`logs/<model>-<YYYYmmdd-HHMMSS>/` holds `config.json` (the resolved
config), TensorBoard event files (`train/`, `validation/`), `best.keras`,
`best.json` (its epoch and validation accuracy), `history.csv`, `elapsed.json` (training time over the run's sittings),
`backup/` and `trained.json` until `metrics.json` is written, `run.lock` while a process works on it.
A run that was interrupted (it has `backup/` or `trained.json` but no
`metrics.json`) is the one exception: running the same config again
resumes it in place.
"""

import contextlib
import fcntl
import glob
import json
import os
import secrets
import shutil
import socket
import tempfile
import time

from kerascnn.errors import OutputExists, UsageError

# A run directory's files: every module names them through these (one place for each name).
CONFIG = "config.json"  # the resolved config (`kerascnn.config.resolve`)
METRICS = "metrics.json"  # written once the run has finished
DATA = "data.json"  # class names, input size and colours, the test files carved (kerascnn.data.DataSpec)
BEST_MODEL = "best.keras"  # the checkpoint of the best epoch by validation accuracy
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


def check_writable(logdir, needed=0):
    """Raises `RunDirError` naming `logdir` if a run cannot be written there.

    Probes by writing a file in the nearest existing directory (permission
    bits say nothing when running as root) and checks the free space.
    """
    path = os.path.abspath(logdir)
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise RunDirError(f"Log directory {logdir}: {existing} is a file, not a directory.")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise RunDirError(f"Log directory {logdir} is not writable ({existing}: {e.strerror}).") from None
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise RunDirError(
            f"Log directory {logdir} has {free / 2**20:.0f} MB free; this run needs about "
            f"{needed / 2**20:.0f} MB (best.keras, backup, logs). Free some space or choose --logdir."
        )


def find_resumable(logdir, model, config_dict, same=None):
    """The newest unfinished run of exactly this config, or None.

    Args:
        same: function of a run's stored config dict returning the dict to
            compare with `config_dict` (an older `config.json`, brought up to
            date); a `ValueError` from it means "not this config". Defaults
            to comparing the stored dict as it is.
    """
    candidates = []
    for run in glob.glob(os.path.join(logdir, f"{model}-*")):
        if os.path.exists(os.path.join(run, METRICS)):
            continue
        if not (os.path.isdir(os.path.join(run, BACKUP)) or os.path.exists(os.path.join(run, TRAINED))):
            continue
        try:
            with open(os.path.join(run, CONFIG)) as f:
                stored = json.load(f)
            if (same(stored) if same else stored) == config_dict:
                candidates.append(run)
        except (OSError, ValueError):
            continue
    return max(candidates, key=os.path.getmtime) if candidates else None


class FileLock:
    """An exclusive `fcntl.flock` on the file `path`, named after its holder (pid, host, time).

    The operating system drops the lock when its process ends, killed or not,
    so a stopped job can always be resumed; the file itself stays. A second
    process asking for it gets `refused(holder)` raised at once, never a wait.
    Used for a run directory (`RunLock`) and a search folder
    (`kerascnn.tuning.project.SearchLock`).

    Args:
        path: str, the lock file (made, with its folder, if missing).
    """

    def __init__(self, path):
        self.path = path
        self._file = None

    def refused(self, holder):
        """The exception raised when another process holds the lock; `holder` is what its file says."""
        return RunDirError(f"{self.path} is held by another process ({holder}).")

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise self.refused(holder) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc):
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


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


def create_run_dir(logdir, model):
    """Makes a new, empty `<logdir>/<model>-<timestamp>[-N]` and returns it."""
    os.makedirs(logdir, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        path = os.path.join(logdir, f"{model}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            os.makedirs(path)  # exist_ok=False: two runs never share a directory
            return path
        except FileExistsError:
            continue
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
def atomic_write(path):
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
    """
    directory, name = os.path.split(os.path.abspath(path))
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
