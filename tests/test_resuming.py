"""Which interrupted run a command resumes, and a run's history put in order (`kerascnn.resuming`).

The real stops, damaged backups and refusals, with real processes, are in tests/test_training.py.
"""

import os

import pytest

from kerascnn import rundir
from kerascnn.config import TrainConfig, resolve
from kerascnn.data import DataSpec
from kerascnn.resuming import find, history_rows, identity


def interrupted(logdir, config):
    """A run directory of `config` (resolved) that an interrupted run with a backup leaves."""
    run = rundir.create_run_dir(str(logdir), config.model)
    rundir.write_json(os.path.join(run, rundir.CONFIG), config.to_dict())
    os.makedirs(os.path.join(run, rundir.BACKUP))
    rundir.write_json(os.path.join(run, rundir.BACKUP, "training_metadata.json"), {"epoch": 1, "batch": 0})
    return run


def test_a_run_is_found_by_its_values_wherever_its_logs_data_and_pictures_are_named_from(tmp_path, monkeypatch):
    """A trailing slash on --logdir, --data-dir instead of $KERASCNN_DATA_DIR (a built-in dataset is known by its
    content, wherever it is read), and a folder of pictures named by another path to it: the same run."""
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    monkeypatch.chdir(tmp_path)
    first = resolve(TrainConfig(dataset="pictures", logdir=str(tmp_path / "logs"), precision="float32"))
    run = interrupted(tmp_path / "logs", first)
    monkeypatch.setenv("KERASCNN_DATA_DIR", "/somewhere")
    again = resolve(TrainConfig(dataset=f"{pictures}/", logdir=f"{tmp_path}/logs/", data_dir="/elsewhere",
                                precision="float32"))
    assert identity(again.to_dict()) == identity(first.to_dict())
    assert find(again) == run
    assert identity({"dataset": "mnist", "logdir": "a", "data_dir": "b", "cache_dir": "c"}) == {"dataset": "mnist"}


def test_an_interrupted_run_of_another_config_is_refused_naming_what_differs(tmp_path):
    logdir = str(tmp_path / "logs")
    old = resolve(TrainConfig(epochs=3, lr=0.001, logdir=logdir, precision="float32"))
    run = interrupted(logdir, old)
    new = resolve(TrainConfig(epochs=4, lr=0.002, logdir=logdir, precision="float32"))
    with pytest.raises(rundir.RunDirError, match=(
            rf"An interrupted run of sequential on mnist is in {run}, with another config: epochs \(3 there, 4 "
            rf"here\), lr \(0.001 there, 0.002 here\)\. To resume it, run it with its own settings \(--config "
            rf"{run}/config.json\); to start a new run beside it \(it is left as it is\), add --no-resume\. "
            rf"Received: epochs=4, lr=0\.002$")):
        find(new)
    # Another dataset is another run: not named, a new run starts. So is a run training now (its lock held), and
    # a run with no finished epoch.
    assert find(resolve(TrainConfig(dataset="fashion_mnist", logdir=logdir, precision="float32"))) is None
    with rundir.RunLock(run):
        assert rundir.FileLock.is_held(os.path.join(run, rundir.LOCK)) and find(new) is None
    assert not rundir.FileLock.is_held(os.path.join(run, rundir.LOCK))
    os.remove(os.path.join(run, rundir.BACKUP, "training_metadata.json"))
    assert rundir.resume_point(run) == "start" and find(new) is None


def test_history_rows_keep_whole_rows_only_and_the_last_of_an_epoch_written_twice(tmp_path):
    path = tmp_path / "history.csv"
    path.write_bytes(b"epoch,accuracy,loss\r\n1,0.5,1.2\r\n2,0.6,1.0\r\n2,0.61,0.9\r\n3,0.7\r\n4,0.8,0.")
    header, rows = history_rows(str(path))
    assert header == "epoch,accuracy,loss\r\n" and rows == {1: "1,0.5,1.2\r\n", 2: "2,0.61,0.9\r\n"}
    path.write_bytes(b"epoch,accu")  # even the header cut short
    assert history_rows(str(path)) == (None, {}) and history_rows(str(tmp_path / "none.csv")) == (None, {})


def test_processes_and_replicas_are_part_of_a_runs_identity(tmp_path):
    """A run records how it is spread (spread.json); resumed over another number of processes it is refused by
    name with both values, as another config is. A run that recorded none (made before) matches any spread."""
    config = resolve(TrainConfig(logdir=str(tmp_path), precision="float32"))
    run = interrupted(tmp_path, config)
    rundir.write_json(os.path.join(run, rundir.SPREAD), {"processes": 2, "replicas": 2})
    assert find(config, {"processes": 2, "replicas": 2}) == run
    with pytest.raises(rundir.RunDirError, match=r"with another config: processes \(2 there, 1 here\), "
                                                 r"replicas \(2 there, 1 here\)\..*--no-resume"):
        find(config, {"processes": 1, "replicas": 1})
    os.remove(os.path.join(run, rundir.SPREAD))
    assert find(config, {"processes": 1, "replicas": 1}) == run


def test_a_run_from_before_the_augmentation_policies_resumes_where_it_trains_as_it_did(mnist, tmp_path):
    """A config.json without augment, flip, brightness and contrast (written before them) of best on a grey folder
    of digits: the digits policy that `auto` now chooses trains as that code did (its rotation, shift and zoom, no
    flip, no brightness or contrast change), so the run is found; a flip it never had is refused by name."""
    logdir, folder = str(tmp_path / "logs"), tmp_path / "digits"
    folder.mkdir()
    spec, images = DataSpec([str(c) for c in range(10)], (28, 28, 1)), mnist.x_train[:200]
    wanted = resolve(TrainConfig(model="best", dataset=str(folder), logdir=logdir, precision="float32"), spec, images)
    assert (wanted.augment, wanted.rotation, wanted.shift, wanted.flip) == ("digits", 15.0, 2.0, False)
    run = interrupted(logdir, wanted)
    stored = rundir.read_json(os.path.join(run, rundir.CONFIG))
    for key in ("augment", "flip", "brightness", "contrast"):
        del stored[key]
    rundir.write_json(os.path.join(run, rundir.CONFIG), stored)
    assert find(wanted) == run
    flipped = resolve(TrainConfig(model="best", dataset=str(folder), logdir=logdir, precision="float32", flip=True),
                      spec, images)
    with pytest.raises(rundir.RunDirError, match=(
            r"with another config: flip \(not recorded there, a run from before the augmentation policies: False, "
            r"True here\)\. .* Received: flip=True$")):
        find(flipped)
