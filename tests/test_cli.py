"""train.py's command line: bad usage exits 2 with a clear message and leaves nothing behind."""

import json
import os
import re
import subprocess
import sys
import time

import pytest
from PIL import Image

from conftest import MNIST_DIR, ROOT, run_cli, write_tiny_mnist
from kerascnn.commands.train import default_verbose
from kerascnn.commands.train import main as train_main


def fails_with(capsys, tmp_path, argv, message):
    logdir = tmp_path / "logs"
    with pytest.raises(SystemExit) as e:
        train_main([*argv, "--logdir", str(logdir)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: train.py" in err and message in err, err
    assert not logdir.exists() or not os.listdir(logdir)


@pytest.mark.parametrize("argv,message", [
    (["--model", "resnet"], "argument --model: invalid choice: 'resnet' (choose from "),
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, received '0'"),
    (["--epochs", "ten"], "argument --epochs: expected an integer >= 1, received 'ten'"),
    (["--batch-size", "-5"], "argument --batch-size: expected an integer >= 1"),
    (["--lr", "nan"], "argument --lr: expected a finite number > 0"),
    (["--dataset", "cifar100"], "argument --dataset: expected one of ['cifar10', 'fashion_mnist', 'mnist'], a folder "
                                "of class subfolders or an .npz file, received 'cifar100'"),
    (["--precision", "fp8"], "argument --precision: invalid choice"),
])
def test_bad_flags(capsys, tmp_path, argv, message):
    fails_with(capsys, tmp_path, argv, message)


def test_subset_larger_than_the_data(capsys, tmp_path):
    fails_with(capsys, tmp_path, ["--subset", "60000"], "subset=60000 is larger than the 55000 training images")


def test_members_on_a_single_model(capsys, tmp_path):
    fails_with(capsys, tmp_path, ["--model", "sequential", "--members", "3"], "'sequential' does not take ['members']")


def test_missing_or_broken_data_dir(capsys, tmp_path):
    fails_with(capsys, tmp_path, ["--data-dir", str(tmp_path / "none")], "does not exist")
    write_tiny_mnist(tmp_path / "bad", **{"train-labels-idx1-ubyte.gz": [1, 2, 3]})
    fails_with(capsys, tmp_path, ["--data-dir", str(tmp_path / "bad")], "20 train images but 3 labels")


def test_a_folder_of_mnist_is_not_fashion_mnist(tmp_path):
    """The README's offline setup (a folder of MNIST's four files) asked for Fashion-MNIST: the real command exits 2
    naming the folder, the dataset asked for and the one it holds, and writes no run directory."""
    digits = tmp_path / "digits"
    digits.mkdir()
    for name in os.listdir(MNIST_DIR):
        if name.endswith(".gz"):
            os.symlink(os.path.join(MNIST_DIR, name), digits / name)
    result = run_cli("train.py", "--dataset", "fashion_mnist", "--data-dir", str(digits), "--epochs", "1",
                     "--subset", "500", "--logdir", str(tmp_path / "logs"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{digits} holds mnist, not fashion_mnist" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "logs").exists() or not os.listdir(tmp_path / "logs")


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="dataset-fashion-mnist not installed")
def test_debians_fashion_mnist_is_not_mnist(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("KERASCNN_DATA_DIR", "/usr/share/datasets/fashion-mnist")  # the default dataset is mnist
    fails_with(capsys, tmp_path, ["--epochs", "1", "--subset", "500"],
               "/usr/share/datasets/fashion-mnist holds fashion_mnist, not mnist")


def test_config_file_layers_under_flags(capsys, tmp_path):
    path = tmp_path / "hp.json"
    path.write_text(json.dumps({"model": "functional", "epochs": 0}))
    fails_with(capsys, tmp_path, ["--hparams", str(path)], "`epochs` must be an integer >= 1. Received: epochs=0")
    path.write_text(json.dumps({"model": "functional", "dropout": 0.3, "bogus": 1}))
    fails_with(capsys, tmp_path, ["--config", str(path)], "Unknown config keys ['bogus']")


def test_log_directory_that_is_a_file(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SystemExit) as e:
        train_main(["--subset", "100", "--logdir", str(tmp_path / "afile" / "logs")])
    assert e.value.code == 2 and "is a file, not a directory" in capsys.readouterr().err


def test_real_process_exit_status(tmp_path):
    result = run_cli("train.py", "--model", "nope", "--logdir", str(tmp_path))
    assert result.returncode == 2 and "invalid choice: 'nope'" in result.stderr
    assert "Traceback" not in result.stderr and not os.listdir(tmp_path)


def test_diverging_rate_exits_1_and_suggests_a_lower_one(tmp_path):
    result = run_cli("train.py", "--lr", "1e6", "--subset", "500", "--val-size", "200", "--epochs", "2",
                     "--logdir", str(tmp_path), "--verbose", "0")
    assert result.returncode == 1
    assert "loss became NaN or infinite (learning rate 1000000.0). Try a lower rate (for example --lr 100000)" in (
        result.stderr)
    assert "Traceback" not in result.stderr


def test_default_verbose_is_a_bar_on_a_terminal_and_a_line_per_epoch_otherwise(tmp_path):
    leader, follower = os.openpty()
    with open(follower, "w") as terminal, open(tmp_path / "log.txt", "w") as log:
        assert default_verbose(terminal) == 1 and default_verbose(log) == 2
    os.close(leader)


def test_piped_train_py_prints_one_line_per_epoch(tmp_path):
    started = time.monotonic()
    done = run_cli("train.py", "--epochs", "2", "--subset", "400", "--val-size", "100", "--precision", "float32",
                   "--logdir", str(tmp_path))
    command_seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert "━" not in done.stdout and "\r" not in done.stdout  # no progress bar redrawn
    lines = done.stdout.splitlines()
    assert [line for line in lines if line.startswith("Epoch ")] == ["Epoch 1/2", "Epoch 2/2"]
    epoch_lines = [line for line in lines if re.match(r"\d+/\d+ - \d+s - .*val_accuracy: ", line)]
    assert len(epoch_lines) == 2, done.stdout
    (run,) = os.listdir(tmp_path)
    metrics = json.load(open(tmp_path / run / "metrics.json"))
    assert metrics["sittings"] == 1
    # Training time: at least the last epoch end's total on disk, at most the whole command's.
    on_disk = json.load(open(tmp_path / run / "elapsed.json"))["seconds"]
    assert on_disk > 0 and on_disk - 0.1 <= metrics["wall_seconds"] <= command_seconds  # rounded to 0.1 s


def test_a_training_command_prints_what_the_run_uses_and_no_tensorflow_log_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a new user runs it
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), "--epochs", "1", "--subset", "200", "--val-size", "100",
         "--precision", "float32", "--logdir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = (done.stderr + done.stdout).splitlines()
    assert [line for line in lines if re.match(r"[IWEF]\d{4} ", line) or "absl::InitializeLog" in line] == []
    uses = [line for line in lines if line.startswith("kerascnn: ")]
    assert len(uses) == 1 and re.fullmatch(r"kerascnn: TensorFlow \S+ backend, float32 precision, (CPU \(no GPU found\)|"
                                           r"\d+ GPUs? \(.+\))", uses[0]), uses
    # Then what it found and what it will write, before the first epoch; what it kept and scored, at the end.
    (run,) = os.listdir(tmp_path)
    start = lines.index(uses[0]) + 1
    assert lines[start:start + 5] == [
        f"data: mnist from {os.path.abspath(MNIST_DIR)}: 10 classes, 28x28 grey",
        "images: 200 train, 100 validation, 10,000 test",  # --subset counts the training split
        "model: sequential, 619,786 parameters; float32; 1 epoch of 13 steps (batch 16)",  # 200 / 16
        "augmentation: none (sequential does not augment by default): off",
        f"run directory: {tmp_path / run} (new)",
    ]
    metrics = json.load(open(tmp_path / run / "metrics.json"))
    kept = lines.index("kept: epoch 1 of 1, the highest validation accuracy "
                       f"({metrics['best_val_accuracy']:.2%})")
    assert lines[kept + 1] == (f"test: accuracy {metrics['test_accuracy']:.2%} (loss {metrics['test_loss']:.4f}) "
                               "on 10,000 images, scored once")
    calibrated = metrics["calibration"]
    assert lines[kept + 2] == (f"calibration: temperature {calibrated['temperature']:.3f}, fitted on "
                               f"{calibrated['validation_images']:,} validation images; test ECE "
                               f"{calibrated['test_uncalibrated']['ece']:.2%} -> {calibrated['test']['ece']:.2%}, "
                               f"NLL {calibrated['test_uncalibrated']['nll']:.4f} -> {calibrated['test']['nll']:.4f}")
    assert calibrated["test"]["nll"] == pytest.approx(metrics["test_loss"], abs=1e-4)  # the loss is the calibrated one
    assert lines[kept + 3].startswith("time: 0:") and lines[kept + 3].endswith(f"results in {tmp_path / run}")
    # The pictures `evaluate` draws are in the run directory: the test set's confusion matrix and mistakes.
    for name in ("confusion_matrix.png", "misclassified.png"):
        with Image.open(tmp_path / run / name) as picture:
            assert picture.format == "PNG" and min(picture.size) > 200
