"""tune.py and kerascnn.tuning: search space, bad usage, progress, memory, TensorBoard,
best_hparams.json -> train.py, resume after a kill, the lock, and the distributed mode
(a chief and two workers on loopback, one of them killed mid-trial)."""

import contextlib
import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

import keras
import keras_tuner
import pytest

import tune
from conftest import ROOT, free_port
from kerascnn import tuning
from kerascnn.commands.train import build_parser, resolve_config
from kerascnn.config import BATCH, TrainConfig
from kerascnn.models import create_model, model_defaults

# Small and fast: 100 training and 100 validation images, one epoch, float32.
TINY = ["--max-epochs", "1", "--subset", "100", "--val-size", "100", "--precision", "float32"]


def call_main(argv):
    """Runs tune.main in this process; returns (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = tune.main(argv)
        except SystemExit as e:
            status = e.code
    return status, out.getvalue(), err.getvalue()


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def snapshot(directory):
    """Every file under `directory` with its size and modification time."""
    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            st = os.stat(os.path.join(root, name))
            found[os.path.relpath(os.path.join(root, name), directory)] = (st.st_size, st.st_mtime_ns)
    return found


# --- The search space and the hypermodel ---------------------------------------


def test_defaults_are_the_recipe_and_every_value_is_a_train_config_field():
    hp = keras_tuner.HyperParameters()
    config = tuning.CNNHyperModel().config(hp)
    recipe = model_defaults("best")
    assert config.model == "best" and config.members == 1
    for name in ("filters", "kernel_size", "dense_units", "dropout", "batchnorm", "rotation", "shift"):
        assert getattr(config, name) == recipe[name], name
    defaults = TrainConfig()
    assert (config.lr, config.batch_size, config.lr_period) == (defaults.lr, BATCH, defaults.lr_period)
    fields = set(TrainConfig().to_dict())
    assert {p.name for p in hp.space} == set(tuning.TUNED) <= fields
    assert hp.space[0].name == "lr" and hp.space[0].sampling == "log"
    for p in hp.space:  # a range to search, not a constant
        if hasattr(p, "max_value"):  # Int, Float
            assert p.max_value > p.min_value, p.name
        elif hasattr(p, "values"):  # Choice (Boolean: True or False)
            assert len(p.values) >= 2, p.name


def test_build_maps_values_onto_the_train_py_model():
    hp = keras_tuner.HyperParameters()
    hp.values.update({"filters": 16, "dense_units": 64, "kernel_size": 5, "batchnorm": False})
    model = tuning.CNNHyperModel().build(hp)
    expected = create_model("best", members=1, filters=16, dense_units=64, kernel_size=5, batchnorm=False)
    assert model.count_params() == expected.count_params()
    assert len(model.members) == 1 and model.optimizer.learning_rate.numpy() == pytest.approx(1e-3)


def test_build_sets_the_precision_after_keras_tuner_clears_the_session():
    # keras-tuner calls clear_session() before every build; that resets the dtype policy.
    hypermodel = tuning.CNNHyperModel(TrainConfig(model="best", members=1, precision="mixed_bfloat16"))
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    keras.backend.clear_session()
    assert keras.mixed_precision.dtype_policy().name == "float32"
    model = hypermodel.build(keras_tuner.HyperParameters())
    assert model.members[0].convs[0].dtype_policy.name == "mixed_bfloat16"


# --- Bad usage: exit 2, a clear message, nothing written ---------------------------


@pytest.mark.parametrize("argv,message", [
    (["--tuner", "grid"], "argument --tuner: invalid choice: 'grid' (choose from "),
    (["--max-trials", "0"], "argument --max-trials: expected an integer >= 1, received '0'"),
    (["--max-epochs", "-2"], "argument --max-epochs: expected an integer >= 1, received '-2'"),
    (["--project-name", "a/b"], "argument --project-name: expected a folder name (no path separators), received 'a/b'"),
    (["--subset", "60000"], "subset=60000 is larger than the 55000 training images"),
    (["--worker-timeout", "0"], "argument --worker-timeout: expected a finite number > 0, received '0'"),
])
def test_bad_usage_exits_2_and_writes_nothing(tmp_path, argv, message):
    directory = tmp_path / "tune"
    status, _, err = call_main([*argv, "--directory", str(directory)])
    assert status == 2 and "usage: tune.py" in err and message in err, err
    assert not directory.exists()


def test_incomplete_distributed_variables_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.delenv("KERASTUNER_ORACLE_PORT", raising=False)
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    status, _, err = call_main(["--directory", str(tmp_path / "tune")])
    assert status == 2 and "but KERASTUNER_ORACLE_PORT is not" in err, err
    assert not (tmp_path / "tune").exists()


def test_a_port_in_use_is_refused(tmp_path, monkeypatch):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
        monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
        monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(port))
        status, _, err = call_main(["--directory", str(tmp_path / "tune")])
    assert status == 2 and f"Port {port} on 127.0.0.1 is already in use" in err, err
    assert f"Received: KERASTUNER_ORACLE_PORT={port}" in err
    assert not (tmp_path / "tune").exists()


def test_a_folder_that_is_not_a_search_is_left_alone(tmp_path):
    project = tmp_path / "tune" / "mine"
    project.mkdir(parents=True)
    (project / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        status, _, err = call_main(["--directory", str(tmp_path / "tune"), "--project-name", "mine", *extra])
        assert status == 2 and "holds files that are not a tune.py search" in err, err
    assert os.listdir(project) == ["notes.txt"]


# --- One search of ten trials, read back in several ways ---------------------------


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """`tune.py --tuner random --max-trials 10` on tiny data, run once for this module."""
    directory = tmp_path_factory.mktemp("search")
    status, out, err = call_main(["--tuner", "random", "--max-trials", "10", *TINY, "--directory", str(directory)])
    assert status == 0, err
    project = os.path.join(str(directory), "mnist-best")
    progress = read_jsonl(os.path.join(project, "progress.jsonl"))
    return {"out": out, "project": project, "directory": str(directory), "progress": progress}


def test_one_progress_line_per_trial_then_the_train_command(search):
    lines = search["out"].splitlines()
    progress = [line for line in lines if line.startswith("Trial ")]
    assert [line.split()[1] for line in progress] == [f"{n}/10" for n in range(1, 11)]
    for line, record in zip(progress, search["progress"]):
        assert f"val_accuracy={record['val_accuracy']:.4f}" in line and f"| best {record['best']:.4f}" in line
        assert "| elapsed 0:" in line and all(f" {name}=" in line for name in tuning.TUNED), line
    best = max(search["progress"], key=lambda r: r["val_accuracy"])
    assert search["progress"][-1]["best"] == best["val_accuracy"]
    assert f"trial_{best['trial_id']}, val_accuracy={best['val_accuracy']:.4f}" in search["out"]
    assert lines[-1] == f"python train.py --hparams {search['project']}/best_hparams.json"


def test_memory_stays_flat_from_trial_to_trial(search):
    rss = [record["rss_mb"] for record in search["progress"]]
    assert len(rss) == 10 and all(rss)
    assert rss[-1] - rss[2] < 150, rss


def test_tensorboard_has_every_trial_in_hparams_with_its_curves(search):
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(os.path.join(search["project"], "tensorboard"))
    mux.Reload()
    sessions = {}
    for run, tags in mux.PluginRunToTagToContent(metadata.PLUGIN_NAME).items():
        if metadata.SESSION_START_INFO_TAG in tags:
            info = metadata.parse_session_start_info_plugin_data(tags[metadata.SESSION_START_INFO_TAG])
            sessions[run] = {k: getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}
    records = {r["trial_id"]: r for r in search["progress"]}
    assert sorted(sessions) == sorted(f"{trial_id}/execution0" for trial_id in records)
    for trial_id, record in records.items():
        assert sessions[f"{trial_id}/execution0"] == pytest.approx(record["hparams"])
        accuracy = mux.Tensors(f"{trial_id}/execution0/validation", "epoch_accuracy")
        assert float(tensor_util.make_ndarray(accuracy[-1].tensor_proto)) == pytest.approx(record["val_accuracy"])
        assert mux.Tensors(f"{trial_id}/execution0/train", "epoch_loss")
        assert mux.Tensors(f"{trial_id}/execution0/train", "epoch_learning_rate")


def test_best_hparams_are_what_train_py_hparams_reads(search):
    path = os.path.join(search["project"], "best_hparams.json")
    with open(path) as f:
        values = json.load(f)
    best = max(search["progress"], key=lambda r: r["val_accuracy"])
    assert values == {"model": "best", "dataset": "mnist", "split_seed": 777, **best["hparams"]}
    # train.py's own parsing: the file under its defaults, flags over the file.
    parser = build_parser()
    config = resolve_config(parser.parse_args(["--hparams", path, "--epochs", "3"]), parser)
    assert {k: getattr(config, k) for k in best["hparams"]} == best["hparams"]
    assert (config.model, config.members, config.epochs, config.subset) == ("best", None, 3, None)


def test_a_search_of_another_kind_is_refused_and_left_as_it_is(search):
    before = snapshot(search["directory"])
    for argv, found, asked in (
        (["--tuner", "hyperband", "--max-trials", "10", *TINY], "tuner='random'", "tuner='hyperband'"),
        (["--tuner", "random", "--max-trials", "10", *TINY, "--subset", "200"], "subset=100", "subset=200"),
    ):
        status, _, err = call_main([*argv, "--directory", search["directory"]])
        assert status == 2 and f"holds a search made with {found}; this command asks for {asked}" in err, err
        assert "--overwrite to start afresh" in err
    assert snapshot(search["directory"]) == before


def test_the_search_never_sees_a_picture_the_final_run_tests_on(mnist, tmp_path, monkeypatch):
    """tune.py --seed 1 on a folder without test/: the search and train.py carve the same 20% test share
    (one split function, one seed field, --split-seed), so no picture the search trains or validates on is
    in the final run's test set. Pictures are compared by their pixels' hash."""
    import hashlib

    import numpy as np
    from PIL import Image

    import train
    from kerascnn import data as data_lib

    digest = lambda image: hashlib.sha256(np.ascontiguousarray(image, np.uint8).reshape(-1).tobytes()).hexdigest()
    root = tmp_path / "digits"  # 200 real digits in class folders, no test/ folder
    for i, (image, label) in enumerate(zip(mnist.x_train[:200], mnist.y_train[:200])):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(root / str(label) / f"{i}.png")
    every_picture = {digest(np.asarray(Image.open(path))) for path in root.glob("*/*.png")}
    assert len(every_picture) == 200

    seen = set()  # what the search trains and validates on, as the one split hands it over
    split = data_lib.split

    def recording_split(*args, **kwargs):
        splits = split(*args, **kwargs)
        seen.update(digest(image) for image in (*splits.x_train, *splits.x_val))
        return splits

    monkeypatch.setattr(data_lib, "split", recording_split)
    status, out, err = call_main(["--tuner", "random", "--max-trials", "1", "--max-epochs", "1", "--seed", "1",
                                  "--dataset", str(root), "--val-size", "40", "--stream", "off",
                                  "--precision", "float32", "--directory", str(tmp_path / "tune")])
    assert status == 0, err
    assert len(seen) == 160 and seen <= every_picture  # 80% of the folder, hashed as the files are
    searched = set(seen)
    hparams = shlex.split(out.strip().splitlines()[-1])[-1]

    # The final run, as tune.py prints it (one member, one epoch: only its split matters here).
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = train.main(["--hparams", hparams, "--members", "1", "--epochs", "1", "--verbose", "0",
                             "--logdir", str(tmp_path / "logs")])
    assert status == 0, err.getvalue()[-2000:]
    run_dir = out.getvalue().strip().splitlines()[-1].split("run_dir=")[1]
    with open(os.path.join(run_dir, "data.json")) as f:
        test_files = json.load(f)["test_files"]
    tested = {digest(np.asarray(Image.open(root / name))) for name in test_files}
    assert len(tested) == 40
    assert not searched & tested, f"{len(searched & tested)} of the final run's test pictures were in the search"


@pytest.mark.skipif(not __import__("importlib").util.find_spec("sklearn"), reason="needs keras-tuner[bayesian]")
def test_bayesian_tuner_runs(tmp_path):
    status, out, err = call_main(["--tuner", "bayesian", "--max-trials", "1", *TINY, "--directory", str(tmp_path)])
    assert status == 0, err
    assert "Trial 1/1 (trial_0): val_accuracy=" in out and "python train.py --hparams" in out


# --- Resume after a kill; the lock; --overwrite -----------------------------------


# Only a hung process reaches this: every wait below is for an event (a line printed, a file written, a
# process exiting), however long a loaded machine takes to get there.
HANG_GUARD = 1800  # seconds


def start(args, env=None, on_line=None):
    """Starts `python tune.py args` with its output, line by line, in `proc.lines`.

    `on_line(proc, line)`, if given, is called for each line as soon as it is read.
    """
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tune.py"), *args], cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    proc.lines = []

    def read():
        for line in iter(proc.stdout.readline, ""):
            proc.lines.append(line)
            if on_line is not None:
                on_line(proc, line)

    proc.reader = threading.Thread(target=read, daemon=True)
    proc.reader.start()
    return proc


def wait_for(condition, what, procs=()):
    """Waits until `condition()` holds; fails at once if one of `procs` exits first."""
    deadline = time.monotonic() + HANG_GUARD
    while True:
        dead = [p for p in procs if p.poll() is not None]  # before the condition: a process may end on the event
        if condition():
            return
        assert not dead, f"exited while waiting for {what}: " + "".join(dead[0].lines)
        assert time.monotonic() < deadline, f"hung: no {what} after {HANG_GUARD} s"
        time.sleep(0.2)


def test_a_killed_search_resumes_without_rerunning_trials(tmp_path):
    # Hyperband, max 3 epochs: three 1-epoch trials, then the best is promoted to 3 epochs
    # from its checkpoint; the promotion runs in the resumed process.
    args = [*TINY, "--max-epochs", "3", "--directory", str(tmp_path), "--max-trials", "4"]
    project = tmp_path / "mnist-best"
    first = start(args)
    try:
        wait_for(lambda: (project / "progress.jsonl").exists(), "the first trial", [first])
        status, _, err = call_main(args)  # a second search on the same folder
        assert status == 2 and f"is in use by another tune.py (pid {first.pid} on" in err, err
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    done = {r["trial_id"] for r in read_jsonl(project / "progress.jsonl")}
    stamps = {t: os.stat(project / f"trial_{t}" / "trial.json").st_mtime_ns for t in done}

    status, out, err = call_main(args)  # the same command again
    assert status == 0, err
    assert f"Resuming the search in {project}: {len(done)} of 4 trials done." in out
    records = read_jsonl(project / "progress.jsonl")
    assert sorted(r["trial_id"] for r in records) == ["0", "1", "2", "3"]
    rerun = {line.split("(trial_")[1].split(")")[0] for line in out.splitlines() if line.startswith("Trial ")}
    assert rerun == {"0", "1", "2", "3"} - done
    assert {t: os.stat(project / f"trial_{t}" / "trial.json").st_mtime_ns for t in done} == stamps
    assert records[-1]["epochs"] == 3  # Hyperband's promotion, from a checkpoint
    assert out.splitlines()[-1] == f"python train.py --hparams {project}/best_hparams.json"

    status, out, _ = call_main([*args, "--max-trials", "1", "--overwrite"])  # the last flag wins
    assert status == 0 and "Resuming" not in out
    assert len(read_jsonl(project / "progress.jsonl")) == 1 and not (project / "trial_1").exists()


def finish(proc):
    """Waits for `proc` to exit; returns (exit status, its output)."""
    status = proc.wait(timeout=HANG_GUARD)
    proc.reader.join(HANG_GUARD)  # the rest of its output
    return status, "".join(proc.lines)


def trial_files(project, skip=()):
    """`snapshot` of each trial's folder and TensorBoard logs, but those of the trials in `skip`."""
    found = snapshot(project)
    return {path: stamp for path, stamp in found.items()
            if path.startswith(("trial_", "tensorboard")) and not path.startswith(
                tuple(f"{where}{t}{os.sep}" for t in skip for where in ("trial_", f"tensorboard{os.sep}")))}


def copy_search(search, tmp_path):
    """A copy of the module's ten-trial search, to damage or resume; returns (directory, project)."""
    import shutil

    directory = tmp_path / "copy"
    shutil.copytree(search["directory"], directory)
    return directory, directory / "mnist-best"


def test_a_missing_trial_folder_is_skipped_and_its_id_never_reused(search, tmp_path):
    """`rm -r trial_02` of a finished search, then the same command with one trial more: trial_02 counts as done
    and lost, the new trial is trial_10 (keras-tuner numbers by count, which made it trial_09 and overwrote it,
    then spun on that ID), and every other trial's files are as they were."""
    import shutil

    directory, project = copy_search(search, tmp_path)
    shutil.rmtree(project / "trial_02")
    before = trial_files(project)
    status, out = finish(start(["--tuner", "random", "--max-trials", "11", *TINY, "--directory", str(directory)]))
    assert status == 0, out
    assert (f"Resuming the search in {project}: 10 of 11 trials done. Lost, so counted as done without a result "
            f"and not run again") in out and "trial_02 (its folder is missing)" in out
    assert "raise --max-trials by 1" in out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("Trial ")] == ["Trial 11/11 (trial_10)"]
    after = trial_files(project, skip=["10"])
    assert after == before  # no other trial touched, trial_02 not made again
    assert json.loads((project / "trial_10" / "trial.json").read_text())["status"] == "COMPLETED"
    state = json.loads((project / "oracle.json").read_text())
    assert sorted(state["start_order"]) == sorted(state["end_order"]) == [f"{i:02d}" for i in range(11)]
    assert "Best of 11 trials (1 lost): trial_" in out
    assert out.splitlines()[-1] == f"python train.py --hparams {project}/best_hparams.json"


def test_a_damaged_trial_json_is_skipped_and_left_as_it_is(tmp_path):
    """Hyperband (its brackets name every trial): trial_1/trial.json cut in half, then the search resumed with one
    trial more. The damaged file stays as it is, trial_1 is not promoted nor rerun, the next trial is trial_3."""
    args = [*TINY, "--max-epochs", "3", "--directory", str(tmp_path)]
    status, _, err = call_main([*args, "--max-trials", "3"])
    assert status == 0, err
    project = tmp_path / "mnist-best"
    damaged = project / "trial_1" / "trial.json"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    before = trial_files(project)
    status, out = finish(start([*args, "--max-trials", "4"]))
    assert status == 0, out
    assert "Resuming the search in" in out and "3 of 4 trials done" in out
    assert "trial_1 (its trial.json cannot be read (JSONDecodeError" in out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("Trial ")] == ["Trial 4/4 (trial_3)"]
    assert trial_files(project, skip=["3"]) == before  # the damaged file too
    trial = json.loads((project / "trial_3" / "trial.json").read_text())
    assert trial["status"] == "COMPLETED" and trial["hyperparameters"]["values"].get("tuner/trial_id") != "1"
    assert out.splitlines()[-1] == f"python train.py --hparams {project}/best_hparams.json"


def test_a_smaller_max_trials_says_how_many_trials_are_done(search, tmp_path):
    directory, project = copy_search(search, tmp_path)
    before = trial_files(project)
    status, out = finish(start(["--tuner", "random", "--max-trials", "2", *TINY, "--directory", str(directory)]))
    assert status == 0, out
    assert (f"Resuming the search in {project}: 10 trials done, more than --max-trials 2: no new trial is "
            f"started.") in out
    assert "of 2 trials done" not in out and "Trial " not in out and "Best of 10 trials: trial_" in out
    assert trial_files(project) == before


def test_a_resume_that_would_change_the_trials_is_refused(search):
    """Image size, colour mode and precision change every trial's result: a resume with other ones exits 2 naming
    each, and writes nothing."""
    before = snapshot(search["directory"])
    status, out = finish(start(["--tuner", "random", "--max-trials", "10", *TINY, "--directory", search["directory"],
                                "--image-size", "12", "--color-mode", "rgb", "--precision", "mixed_bfloat16"]))
    assert status == 2, out
    asked = "image_size=12, color_mode='rgb', precision='mixed_bfloat16'"
    assert (f"holds a search made with image_size=None, color_mode=None, precision='float32'; this command asks "
            f"for {asked}") in out
    assert "--overwrite to start afresh" in out and out.rstrip().endswith(f"Received: {asked}")
    assert snapshot(search["directory"]) == before


def test_a_resume_on_other_data_is_refused(mnist, tmp_path):
    """Your own .npz, searched, then one picture changed: the data's SHA-256 (kerascnn.data.content_digest of what
    the search trains and validates on) differs, and the same command exits 2 naming data_sha256."""
    import numpy as np

    data = tmp_path / "digits.npz"
    x, y = mnist.x_train[:300, ..., 0], mnist.y_train[:300]
    np.savez(data, x_train=x, y_train=y, x_test=mnist.x_test[:100, ..., 0], y_test=mnist.y_test[:100])
    args = ["--tuner", "random", "--max-trials", "1", "--max-epochs", "1", "--dataset", str(data), "--val-size", "50",
            "--precision", "float32", "--directory", str(tmp_path / "tune"), "--project-name", "mine"]
    status, _, err = call_main(args)
    assert status == 0, err
    recorded = json.loads((tmp_path / "tune" / "mine" / "search.json").read_text())["data_sha256"]
    x = x.copy()
    x[0, 0, 0] ^= 255
    np.savez(data, x_train=x, y_train=y, x_test=mnist.x_test[:100, ..., 0], y_test=mnist.y_test[:100])
    before = snapshot(tmp_path / "tune")
    status, out = finish(start(args))
    assert status == 2, out
    assert f"holds a search made with data_sha256={recorded[:16]}...; this command asks for data_sha256=" in out
    assert "the data is not the same" in out and "Received: data_sha256=" in out
    assert snapshot(tmp_path / "tune") == before


def test_a_resume_whose_augmentation_policy_changed_is_refused(mnist, tmp_path, monkeypatch):
    """Your own grey .npz: the policy `auto` chooses from its pictures (digits) and its amounts are recorded in
    search.json by the process that read them. A kerascnn whose digits policy zooms would train other trials: the
    same command exits 2 naming zoom. A search.json of an older tune.py, which held None for them, resumes and
    records them."""
    import numpy as np

    from kerascnn.layers import policy

    data = tmp_path / "digits.npz"
    np.savez(data, x_train=mnist.x_train[:300, ..., 0], y_train=mnist.y_train[:300],
             x_test=mnist.x_test[:100, ..., 0], y_test=mnist.y_test[:100])
    args = ["--tuner", "random", "--max-trials", "1", "--max-epochs", "1", "--dataset", str(data), "--val-size", "50",
            "--precision", "float32", "--directory", str(tmp_path / "tune"), "--project-name", "mine"]
    status, _, err = call_main(args)
    assert status == 0, err
    kind_file = tmp_path / "tune" / "mine" / "search.json"
    recorded = json.loads(kind_file.read_text())
    assert {k: recorded[k] for k in ("augment", "zoom", "flip", "brightness", "contrast")} == {
        "augment": "digits", "zoom": 0.0, "flip": False, "brightness": 0.0, "contrast": 0.0}

    monkeypatch.setitem(policy.TABLE, "digits", policy.Policy(rotation=15.0, shift=1 / 14, zoom=0.1))
    before = snapshot(tmp_path / "tune")
    status, out, err = call_main(args)
    assert status == 2, out
    assert "holds a search made with zoom=0.0; this command asks for zoom=0.1" in err
    assert "the augmentation policy the installed kerascnn chooses for this data" in err
    assert err.rstrip().endswith("Received: zoom=0.1")
    assert snapshot(tmp_path / "tune") == before
    monkeypatch.undo()

    older = {**recorded, "zoom": None, "flip": None, "brightness": None, "contrast": None}
    del older["augment"]  # what tune.py wrote before it recorded the policy
    kind_file.write_text(json.dumps(older))
    status, out, err = call_main(args)
    assert status == 0, err
    assert json.loads(kind_file.read_text()) == recorded


# --- Distributed: a chief and two workers on 127.0.0.1 ------------------------------


def test_chief_and_two_workers_finish_even_when_a_worker_dies(tmp_path):
    # The worker timeout is the one duration left: the chief gives a worker up after that much silence. 30 s is
    # the heartbeat (a sixth of it) missed six times over, which a loaded machine does not do to a live worker.
    port = free_port()
    args = ["--tuner", "random", "--max-trials", "6", *TINY, "--directory", str(tmp_path), "--worker-timeout", "30"]
    env = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    begun = []  # the trials tuner1 has begun, in order

    def kill_in_second_trial(victim, line):
        if "running trial" in line:
            begun.append(line.split()[-1])
            if len(begun) == 2:
                # From the thread that read the line, at once: the trial has just begun (it was created for
                # tuner1 before tuner1 printed this), and there is a model to build and train before it ends.
                victim.kill()

    chief = start(args, {**env, "KERASTUNER_TUNER_ID": "chief"})
    victim = start(args, {**env, "KERASTUNER_TUNER_ID": "tuner1"}, on_line=kill_in_second_trial)
    procs = [chief, victim]
    try:
        # tuner0 joins once tuner1 is training: it starts Python, TensorFlow and the data while tuner1 trains,
        # and tuner1 asks for its second trial long before tuner0 could have run the five left.
        wait_for(lambda: begun, "tuner1's first trial", procs)
        survivor = start(args, {**env, "KERASTUNER_TUNER_ID": "tuner0"})
        procs.append(survivor)
        wait_for(lambda: len(begun) == 2, "tuner1's second trial", procs)
        lost = begun[1]
        assert victim.wait(timeout=HANG_GUARD) == -signal.SIGKILL
        assert chief.wait(timeout=HANG_GUARD) == 0, "".join(chief.lines)
        assert survivor.wait(timeout=HANG_GUARD) == 0, "".join(survivor.lines)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    project = tmp_path / "mnist-best"
    trials = [json.loads((project / f"trial_{i}" / "trial.json").read_text()) for i in range(6)]
    assert [t["status"] for t in trials] == ["COMPLETED"] * 6
    records = read_jsonl(project / "progress.jsonl")
    owners = {r["trial_id"]: r["tuner_id"] for r in records}
    assert sorted(owners) == [str(i) for i in range(6)]
    assert set(owners.values()) == {"tuner0", "tuner1"} and owners[lost] == "tuner0"
    out = "".join(chief.lines)
    assert "Worker tuner1 silent for" in out and f"its trial {lost} goes to the next free worker" in out
    assert TrainConfig.from_json(project / "best_hparams.json").model == "best"
    assert f"python train.py --hparams {project}/best_hparams.json" in out.splitlines()
    recorded = json.loads((project / "search.json").read_text())  # the chief trains nothing: a worker found these
    assert recorded["precision"] == "float32" and len(recorded["data_sha256"]) == 64


def test_a_worker_is_checked_against_the_chief_wherever_it_started(tmp_path):
    """Two workers started before the chief: one with another --max-epochs and --precision, one on another
    --directory. Each waits for the chief, is refused with exit 2 naming what differs, and runs nothing."""
    port = free_port()
    env = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    args = ["--tuner", "random", "--max-trials", "2", *TINY, "--worker-timeout", "5"]
    other = start([*args, "--directory", str(tmp_path), "--max-epochs", "2", "--precision", "mixed_bfloat16"],
                  {**env, "KERASTUNER_TUNER_ID": "tuner0"})
    elsewhere = start([*args, "--directory", str(tmp_path / "elsewhere")], {**env, "KERASTUNER_TUNER_ID": "tuner1"})
    chief = None
    try:
        # The workers are up (their first line) before the chief starts.
        wait_for(lambda: other.lines and elsewhere.lines, "the workers to start", [other, elsewhere])
        chief = start([*args, "--directory", str(tmp_path)], {**env, "KERASTUNER_TUNER_ID": "chief"})
        (status, out), (status_elsewhere, out_elsewhere) = finish(other), finish(elsewhere)
        wait_for(lambda: "".join(chief.lines).count("Refused worker") == 2, "the chief's two refusals", [chief])
    finally:
        for proc in (other, elsewhere, chief):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert status == 2, out
    asked = "max_epochs=2, precision='mixed_bfloat16'"
    assert (f"The chief at 127.0.0.1:{port} serves the search in {tmp_path / 'mnist-best'}, made with max_epochs=1, "
            f"precision='float32'; this worker asks for {asked}.") in out
    assert out.rstrip().endswith(f"Received: {asked}") and "running trial" not in out
    assert status_elsewhere == 2, out_elsewhere
    assert (f"This worker's search folder {tmp_path / 'elsewhere' / 'mnist-best'} is not the chief's (it holds no "
            f"tune.py search): the chief at 127.0.0.1:{port} serves the search in {tmp_path / 'mnist-best'}.") in \
        out_elsewhere
    assert f"Received: directory='{tmp_path / 'elsewhere'}', project_name='mnist-best'" in out_elsewhere
    assert "Refused worker tuner0: The chief at" in "".join(chief.lines)
    assert not list((tmp_path / "mnist-best").glob("trial_*"))


def test_a_worker_whose_chief_is_gone_stops_within_the_worker_timeout(tmp_path):
    """The chief killed while its only worker trains: the worker stops in the middle of its trial, once the chief
    has not answered for --worker-timeout, with the message that says what happened and what to do."""
    port = free_port()
    env = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    # A trial far longer than the timeout: 5,000 images, 30 epochs.
    args = ["--tuner", "random", "--max-trials", "1", "--max-epochs", "30", "--subset", "5000", "--val-size", "500",
            "--precision", "float32", "--worker-timeout", "10", "--directory", str(tmp_path)]
    chief = start(args, {**env, "KERASTUNER_TUNER_ID": "chief"})
    worker = start(args, {**env, "KERASTUNER_TUNER_ID": "tuner0"})
    try:
        wait_for(lambda: any("running trial" in line for line in worker.lines), "the worker's trial", [chief, worker])
        chief.kill()
        chief.wait()
        killed = time.monotonic()
        status, out = finish(worker)
        waited = time.monotonic() - killed
    finally:
        for proc in (chief, worker):
            if proc.poll() is None:
                proc.kill()
    assert status == 1, out
    assert re.search(rf"tune.py: error: This worker lost the chief at 127.0.0.1:{port}: no answer for \d+ s "
                     rf"\(--worker-timeout 10\)\. Start the chief again with the same command, then this worker", out)
    assert "finished trial" not in out  # stopped in the middle of it
    assert waited < 10 + 30, f"the worker took {waited:.0f} s to stop"


def test_a_read_only_search_folder_under_a_writable_directory_exits_2(tmp_path, read_only_folder):
    """The search's own folder read-only (the --directory above it writable): refused by name before any data
    is read, never a traceback from writing search.json into it."""
    status, _, err = call_main(["--directory", str(tmp_path), "--project-name", read_only_folder.name])
    assert status == 2 and f"Search folder {read_only_folder} is not writable ({read_only_folder}: Read-only file " \
                           f"system). Received: directory={str(tmp_path)!r}, project_name='read-only'" in err, err
    assert sorted(os.listdir(tmp_path)) == ["read-only"] and os.listdir(read_only_folder) == []
