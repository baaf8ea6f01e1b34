"""Shared fixtures: real MNIST from ../shared (or $KERASCNN_DATA_DIR), tiny IDX writers."""

import gzip
import os
import socket
import struct
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # the checkout: kerascnn, train.py, tune.py and tools/ import from here
SHARED_MNIST = os.path.join(ROOT, "..", "shared", "datasets", "mnist")
os.environ.setdefault("KERASCNN_DATA_DIR", os.path.abspath(SHARED_MNIST))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
MNIST_DIR = os.environ["KERASCNN_DATA_DIR"]


@pytest.fixture(scope="session")
def mnist():
    from kerascnn.data import load_dataset

    return load_dataset("mnist", MNIST_DIR, download=False)


@pytest.fixture(scope="session")
def test_batch(mnist):
    """1,000 real test images scaled to [0, 1], and their labels."""
    return mnist.x_test[:1000].astype("float32") / 255.0, mnist.y_test[:1000]


def free_port():
    """A free TCP port on the loopback interface (every server in the tests binds 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_idx(path, array, magic=None, truncate=0):
    """Writes `array` (uint8) as an IDX file, gzipped when `path` ends in .gz."""
    array = np.asarray(array, np.uint8)
    magic = magic if magic is not None else 0x800 + array.ndim
    raw = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    raw = raw[: len(raw) - truncate]
    with (gzip.open if path.endswith(".gz") else open)(path, "wb") as f:
        f.write(raw)


def write_tiny_mnist(directory, n_train=20, n_test=10, **overrides):
    """A tiny, valid IDX dataset; `overrides` maps a file name to an array."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 255, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 255, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(n_test) % 10,
    }
    arrays.update(overrides)
    for name, array in arrays.items():
        write_idx(os.path.join(directory, name), array)
    return directory


def run_cli(script, *args, cwd=ROOT, env=None, timeout=600):
    """Runs `python <script> args...` as a user would; returns CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(autouse=True)
def float32_policy():
    """Training sets Keras' global precision policy; every test starts and ends in float32."""
    import keras

    keras.mixed_precision.set_dtype_policy("float32")
    yield
    keras.mixed_precision.set_dtype_policy("float32")


@pytest.fixture
def read_only_folder(tmp_path):
    """An empty folder on a read-only file system (a tmpfs mounted read-only): unwritable even by root, whom
    permission bits do not stop. Needs mount rights (skipped otherwise)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(folder)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root with mount rights)")
    yield folder
    subprocess.run(["umount", str(folder)])


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """The run directory of one small ensemble, trained once per test session on real MNIST.

    Two members of 16 filters, 2 epochs on 5,000 images, image summaries
    every epoch: about 15 seconds, ~93% test accuracy. Tests that write
    into a run directory work on a copy (`shutil.copytree`), so every test
    sees the run as training left it.
    """
    import keras

    from kerascnn.config import TrainConfig
    from kerascnn.training import train

    config = TrainConfig(model="ensemble", members=2, filters=16, dense_units=64, epochs=2, subset=5000,
                         val_size=500, image_every=1, precision="float32",
                         logdir=str(tmp_path_factory.mktemp("small_run_logs")))
    try:
        return train(config, verbose=0).run_dir
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
