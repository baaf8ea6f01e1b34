"""`pip install kerascnn` gives a working `kerascnn` command with no checkout.

A wheel built from this tree (as `pip install .` builds it, through
pyproject.toml's build system) is installed, not editable, into a fresh
virtual environment, and trains a short run from a folder outside the
checkout. The environment sees this machine's packages
(`--system-site-packages`), so TensorFlow is not downloaded again; the
kerascnn it imports is the wheel's, which the test checks.
"""

import glob
import json
import os
import shutil
import subprocess
import sys

from conftest import ROOT


def run(args, cwd, timeout=600):
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def test_a_wheel_in_a_fresh_venv_trains_from_outside_the_checkout(tmp_path):
    # Built from a copy of the tree, so setuptools' build/ and egg-info land there, not in the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "logs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(source)],
        tmp_path)
    (wheel,) = glob.glob(str(tmp_path / "dist" / "kerascnn-*.whl"))
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], tmp_path)
    bin_dir = venv / "bin"
    run([str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel], tmp_path)

    elsewhere = tmp_path / "elsewhere"  # no train.py, no kerascnn/ here
    elsewhere.mkdir()
    where = run([str(bin_dir / "python"), "-c", "import kerascnn, os; print(os.path.dirname(kerascnn.__file__))"],
                elsewhere).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel's copy, not the checkout's
    assert os.path.isfile(os.path.join(where, "static", "serve.html"))  # the page `kerascnn serve` sends

    listed = run([str(bin_dir / "kerascnn"), "--help"], elsewhere).stdout
    assert "usage: kerascnn " in listed and "train" in listed and "tune" in listed
    done = run([str(bin_dir / "kerascnn"), "train", "--model", "sequential", "--epochs", "1", "--subset", "500"],
               elsewhere)
    assert "test_accuracy=" in done.stdout, done.stdout
    (run_dir,) = glob.glob(str(elsewhere / "logs" / "sequential-*"))
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["epochs"] == 1 and metrics["train_images"] == 500
    assert metrics["test_accuracy"] > 0.2  # chance is 0.1; one epoch on 500 images gave 0.41
    assert os.path.isfile(os.path.join(run_dir, "best.keras"))
