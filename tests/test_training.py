"""Real training on small slices of real MNIST, through `train()` and `train.py`."""

import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from conftest import ROOT
from kerascnn.config import TrainConfig
from kerascnn.training import load_model, train


def history(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


def test_one_epoch_on_5000_images_learns(tmp_path, test_batch):
    config = TrainConfig(model="sequential", epochs=2, subset=5000, val_size=1000, lr_period=1,
                         logdir=str(tmp_path), precision="float32")
    result = train(config, verbose=0)
    run = result.run_dir
    assert os.path.basename(run).startswith("sequential-") and os.path.dirname(run) == str(tmp_path)
    for name in ("config.json", "metrics.json", "best.keras", "history.csv"):
        assert os.path.isfile(os.path.join(run, name)), name
    assert glob.glob(os.path.join(run, "train", "events.out.tfevents.*"))
    assert glob.glob(os.path.join(run, "validation", "events.out.tfevents.*"))
    assert not os.path.exists(os.path.join(run, "backup"))  # removed once training finished

    saved = json.load(open(os.path.join(run, "config.json")))
    assert saved == {**config.to_dict(), "precision": "float32"}
    m = json.load(open(os.path.join(run, "metrics.json")))
    assert m == result.metrics and m["epochs"] == 2 and m["params"] == 619786 and m["train_images"] == 5000
    assert m["test_accuracy"] > 0.9  # chance is 0.1

    rows = history(run)
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([1e-3, 5e-4])  # lr_period=1
    # The checkpoint is the epoch with the best validation accuracy, scored on test images.
    best = load_model(os.path.join(run, "best.keras"))
    x, y = test_batch
    accuracy = (best.predict(x, verbose=0).argmax(axis=1) == y).mean()
    assert accuracy > 0.9


def test_best_ensemble_learns_in_bfloat16(tmp_path, test_batch):
    config = TrainConfig(model="best", members=2, epochs=1, subset=5000, val_size=1000,
                         logdir=str(tmp_path), precision="mixed_bfloat16")
    result = train(config, verbose=0)
    assert result.metrics["precision"] == "mixed_bfloat16"
    model = load_model(os.path.join(result.run_dir, "best.keras"))
    assert len(model.members) == 2
    assert model.members[0].layers[-1].dtype_policy.compute_dtype == "float32"  # softmax kept in float32
    x, y = test_batch
    assert (model.predict(x, verbose=0).argmax(axis=1) == y).mean() > 0.5


def test_runs_never_share_a_directory(tmp_path):
    config = TrainConfig(epochs=1, subset=200, val_size=100, logdir=str(tmp_path), precision="float32")
    first = train(config, verbose=0).run_dir
    second = train(config, verbose=0).run_dir
    assert first != second and os.path.exists(os.path.join(first, "metrics.json"))


def test_killed_run_resumes_when_the_same_command_runs_again(tmp_path):
    """kill -9 during epoch 2 of 3; the same command continues to 3 epochs in the same run directory."""
    args = [sys.executable, os.path.join(ROOT, "train.py"), "--model", "sequential", "--epochs", "3",
            "--subset", "3000", "--val-size", "500", "--batch-size", "50", "--logdir", str(tmp_path),
            "--precision", "float32", "--verbose", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    csv_files = []
    while time.time() < deadline and proc.poll() is None:
        csv_files = glob.glob(os.path.join(tmp_path, "sequential-*", "history.csv"))
        if csv_files and len(history(os.path.dirname(csv_files[0]))) >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.5)  # well into epoch 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = os.path.dirname(csv_files[0])
    assert not os.path.exists(os.path.join(run, "metrics.json"))

    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"Resuming the interrupted run in {run}" in again.stdout
    assert again.stdout.strip().splitlines()[-1].endswith(f"run_dir={run}")
    assert glob.glob(os.path.join(tmp_path, "*")) == [run]
    epochs = sorted({int(r["epoch"]) for r in history(run)})
    assert epochs == [0, 1, 2]
    assert json.load(open(os.path.join(run, "metrics.json")))["epochs"] == 3
