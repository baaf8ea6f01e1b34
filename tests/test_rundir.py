"""Run directories: unique, checked up front, JSON written atomically."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kerascnn.rundir import (
    RunDirError, atomic_write, bytes_needed, check_writable, create_run_dir, find_resumable, resume_point, write_json,
)


def test_run_dirs_are_unique(tmp_path):
    dirs = {create_run_dir(str(tmp_path), "best") for _ in range(3)}
    assert len(dirs) == 3 and all(os.path.basename(d).startswith("best-") for d in dirs)


def test_resumable_only_for_same_config_and_unfinished(tmp_path):
    run = create_run_dir(str(tmp_path), "sequential")
    same, other = {"model": "sequential", "lr": 0.001}, {"model": "sequential", "lr": 0.002}
    assert resume_point(run) is None  # no config.json: not a run (yet)
    write_json(os.path.join(run, "config.json"), same)
    # Stopped before its first epoch ended: resumed in place, from the start, not left as an orphan.
    assert resume_point(run) == "start" and find_resumable(str(tmp_path), "sequential", same) == run
    (Path(run) / "history.csv").write_text("epoch,loss\r\n1,2.3\r\n2,nan\r\n")  # diverged: its backup removed
    assert resume_point(run) is None and find_resumable(str(tmp_path), "sequential", same) is None
    os.makedirs(os.path.join(run, "backup"))
    assert resume_point(run) is None  # an empty backup/ holds no epoch
    (Path(run) / "backup" / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    assert resume_point(run) == "epoch" and find_resumable(str(tmp_path), "sequential", same) == run
    assert find_resumable(str(tmp_path), "sequential", other) is None
    write_json(os.path.join(run, "trained.json"), {"epochs": 2})
    assert resume_point(run) == "scoring"
    write_json(os.path.join(run, "metrics.json"), {"test_accuracy": 0.99})
    assert resume_point(run) is None and find_resumable(str(tmp_path), "sequential", same) is None


def test_write_json_leaves_no_temporary(tmp_path):
    write_json(str(tmp_path / "m.json"), {"b": 1, "a": 2})
    assert json.load(open(tmp_path / "m.json")) == {"a": 2, "b": 1} and os.listdir(tmp_path) == ["m.json"]


def test_a_failed_write_leaves_the_earlier_file_intact(tmp_path):
    path = str(tmp_path / "m.json")
    write_json(path, {"epoch": 1})
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json(path, {"epoch": 2, "model": object()})  # fails half-way through the dump
    assert json.load(open(path)) == {"epoch": 1} and os.listdir(tmp_path) == ["m.json"]

    with pytest.raises(KeyboardInterrupt):  # a writer cut off after half its bytes, as a kill would
        with atomic_write(path) as tmp:
            with open(tmp, "w") as f:
                f.write('{"epo')
            raise KeyboardInterrupt
    assert json.load(open(path)) == {"epoch": 1} and os.listdir(tmp_path) == ["m.json"]

    with atomic_write(path) as tmp:  # a block that writes nothing changes nothing
        assert os.path.dirname(tmp) == str(tmp_path) and tmp.endswith(".json")  # beside it, its extension kept
    assert json.load(open(path)) == {"epoch": 1} and os.listdir(tmp_path) == ["m.json"]


def test_unwritable_and_file_paths_are_named(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunDirError, match="is a file, not a directory"):
        check_writable(str(tmp_path / "f" / "logs"))
    with pytest.raises(RunDirError, match=r"Log directory /proc/logs is not writable"):
        check_writable("/proc/logs")
    check_writable(str(tmp_path / "new" / "logs"))  # missing parents are fine
    assert not (tmp_path / "new").exists()


def test_a_run_larger_than_the_free_space_is_refused_and_nothing_is_written(tmp_path):
    """The free-space check on this machine's own disk, with no mount needed: a run asking for 1 GiB more than
    the disk has free is refused, naming the directory and both sizes; one asking for 1 MB goes ahead."""
    logdir = tmp_path / "logs"
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(RunDirError, match=rf"Log directory {re.escape(str(logdir))} has (\d+) MB free; this run "
                                          r"needs about (\d+) MB \(best.keras, backup, logs\)") as error:
        check_writable(str(logdir), free + 2**30)
    reported_free, reported_need = map(int, re.search(r"has (\d+) MB.*about (\d+) MB", str(error.value)).groups())
    assert abs(reported_free - free / 2**20) < 64  # other processes write too: a loose bound on the same reading
    assert abs(reported_need - (free + 2**30) / 2**20) < 1
    assert os.listdir(tmp_path) == []
    check_writable(str(logdir), 2**20)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB tmpfs: a real full disk. Needs root and mount rights (skipped otherwise)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root with mount rights)")
    yield mnt
    subprocess.run(["umount", str(mnt)])


def test_disk_too_full_is_refused_before_training(tiny_disk):
    with pytest.raises(RunDirError, match=r"has 2 MB free; this run needs about 30 MB"):
        check_writable(str(tiny_disk / "logs"), bytes_needed(619786))
    assert os.listdir(tiny_disk) == []


def test_an_older_config_json_is_compared_as_brought_up_to_date(tmp_path):
    """`same` maps a stored config before comparing: a run whose config.json predates the resolved one resumes."""
    run = create_run_dir(str(tmp_path), "sequential")
    os.makedirs(os.path.join(run, "backup"))
    write_json(os.path.join(run, "config.json"), {"model": "sequential", "filters": None})
    resolved = {"model": "sequential", "filters": 32}
    assert find_resumable(str(tmp_path), "sequential", resolved) is None
    fill = lambda stored: {**stored, "filters": stored["filters"] or 32}
    assert find_resumable(str(tmp_path), "sequential", resolved, same=fill) == run

    def refuse(stored):
        raise ValueError("not a config")

    assert find_resumable(str(tmp_path), "sequential", resolved, same=refuse) is None


def test_run_file_names_are_written_in_rundir_only():
    """Every module names a run's files through rundir's constants, so a name cannot drift between them."""
    import ast

    from kerascnn import rundir

    names = {rundir.CONFIG, rundir.METRICS, rundir.DATA, rundir.BEST_MODEL, rundir.BEST_RECORD, rundir.HISTORY,
             rundir.ELAPSED, rundir.BACKUP, rundir.TRAINED, rundir.LOCK}
    package = os.path.dirname(rundir.__file__)
    # loading.py's ARCHIVE_CONFIG is Keras' config.json inside a .keras zip, not the run's.
    allowed = {(os.path.join(package, "loading.py"), "config.json")}
    found = []
    for root, _, files in os.walk(package):
        for name in files:
            path = os.path.join(root, name)
            if not name.endswith(".py") or path == rundir.__file__:
                continue
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and node.value in names and (path, node.value) not in allowed:
                    found.append(f"{os.path.relpath(path, package)}:{node.lineno}: {node.value!r}")
    assert not found, found


def test_names_and_paths_too_long_for_the_file_system_are_refused_and_nothing_is_made(tmp_path):
    """A folder name over NAME_MAX (255 bytes here), or a log directory so deep that a run's files would pass
    PATH_MAX, is refused naming it before anything is made: os.makedirs would fail half-way, or a run fail later."""
    long_name = tmp_path / ("x" * 300) / "logs"
    with pytest.raises(RunDirError, match=r"the folder name x{40}\.\.\. has 300 bytes; this file system takes names "
                                          r"of at most 255 bytes\. Choose a shorter --logdir\. Received: logdir="):
        check_writable(str(long_name))
    deep = tmp_path / "/".join(["d" * 250] * 16)
    with pytest.raises(RunDirError, match=r"is too long: its path has \d+ bytes, and a run writes files up to 256 "
                                          r"bytes deeper, over this file system's limit of 4096 bytes a path"):
        check_writable(str(deep))
    assert os.listdir(tmp_path) == []


def test_a_read_only_run_directory_is_named_not_a_traceback(read_only_folder):
    from kerascnn.rundir import RunLock

    with pytest.raises(RunDirError, match=rf"The run directory {read_only_folder} is not writable \(Read-only file "
                                          r"system: .*run.lock\).*--no-resume.*Received: run_dir="):
        with RunLock(str(read_only_folder)):
            pass
    with pytest.raises(RunDirError, match=r"is not writable"):
        check_writable(str(read_only_folder))


def test_the_run_lock_file_goes_with_a_finished_run_and_a_removed_file_is_locked_afresh(tmp_path):
    """The holder of a finished run's lock removes run.lock as it lets go; an interrupted run keeps it (naming
    its last holder). A process that locked a file the holder removed meanwhile locks the new one instead, so
    two processes never hold the lock of one run at once."""
    from kerascnn.rundir import FileLock, RunLock

    run = create_run_dir(str(tmp_path), "sequential")
    lock_file = os.path.join(run, "run.lock")
    with RunLock(run):
        assert f"pid {os.getpid()} on " in open(lock_file).read()
    assert os.path.exists(lock_file)  # interrupted: kept
    with RunLock(run):
        write_json(os.path.join(run, "metrics.json"), {"test_accuracy": 0.9})
    assert not os.path.exists(lock_file)  # finished: gone

    first = FileLock(lock_file).__enter__()
    late = open(lock_file)  # opened by a second process just before the holder removed the file
    first.release(remove=True)
    assert not os.path.exists(lock_file)
    assert not FileLock(lock_file)._is_at_path(late)  # a lock taken on `late` does not count: the path is taken again
    late.close()
    with FileLock(lock_file):  # a new file, a new lock
        with pytest.raises(RunDirError, match="held by another process"):
            FileLock(lock_file).__enter__()
