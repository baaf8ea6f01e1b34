"""CIFAR-10 by name: its files in CIFAR's own layout, how it is recognised without a content digest, and what an
offline machine is told to put where.

The real CIFAR-10 cannot be downloaded on the machines these tests run on, so they write tiny archives in its exact
format (Python 2 pickles of a dict of arrays, in `cifar-10-batches-py/` inside a tar.gz): format tests, after which
the checks of CIFAR-10's form (50,000 + 10,000 images of 32x32x3, 5,000 + 1,000 of each class) and of its archive's
SHA-256 must refuse them, unless a test shrinks the form it expects.
"""

import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from conftest import MNIST_DIR, ROOT
from kerascnn import assemble
from kerascnn.cifar import CIFAR_BATCHES, file_sha256, read_cifar, read_cifar_batch
from kerascnn.data import DATASETS, DataError, dataset_spec, load_dataset
from kerascnn.layers import model_input_shape
from kerascnn.models import create_model

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def py2_pickle(value):
    """`value` as Python 2's cPickle writes it with protocol 2, as CIFAR's batch files are: byte strings as
    BINSTRING, the array through `numpy.core.multiarray._reconstruct` with its pixels as one string."""

    def save(v):
        if isinstance(v, bytes):
            return (b"U" + bytes([len(v)]) if len(v) < 256 else b"T" + struct.pack("<i", len(v))) + v
        if isinstance(v, int):
            return b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v)
        if isinstance(v, tuple) and len(v) == 2:
            return save(v[0]) + save(v[1]) + b"\x86"  # TUPLE2
        if isinstance(v, list):
            return b"]" + (b"(" + b"".join(map(save, v)) + b"e" if v else b"")  # APPENDS
        if isinstance(v, dict):
            return b"}(" + b"".join(save(k) + save(x) for k, x in v.items()) + b"u"  # SETITEMS
        assert isinstance(v, np.ndarray) and v.dtype == np.uint8 and v.ndim == 2
        dtype = (b"cnumpy\ndtype\n" + save(b"u1") + b"K\x00K\x01\x87R"  # dtype('u1', 0, 1), then its state
                 + b"(K\x03" + save(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
        return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + save(b"b") + b"\x87R"
                + b"(K\x01" + save(v.shape) + dtype + b"\x89" + save(v.tobytes()) + b"tb")  # BUILD (1, shape, ...)

    return b"\x80\x02" + save(value) + b"."


def batch_bytes(images, labels, name):
    """A CIFAR batch: images (N, 32, 32, 3) stored as rows of 3,072 (the red plane, the green, the blue)."""
    rows = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))
    return py2_pickle({b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": rows,
                       b"filenames": [f"{name}_{i}.png".encode() for i in range(len(images))]})


def tiny_cifar(per_batch=4, n_test=3, seed=0):
    """Random images and labels for the six batches: {batch name: (images, labels)}."""
    rng = np.random.default_rng(seed)
    return {name: (rng.integers(0, 256, (n, 32, 32, 3), np.uint8), rng.integers(0, 10, n))
            for name, n in zip(CIFAR_BATCHES, [per_batch] * 5 + [n_test])}


def write_cifar(path, batches, extracted=False):
    """The batches as `cifar-10-python.tar.gz` at `path`, or (`extracted`) as the folder it holds there."""
    if extracted:
        os.makedirs(path)
        for name, (images, labels) in batches.items():
            with open(os.path.join(path, name), "wb") as f:
                f.write(batch_bytes(images, labels, name))
        return str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, (images, labels) in batches.items():
            raw = batch_bytes(images, labels, name)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return str(path)


def expected_arrays(batches):
    train = [batches[name] for name in CIFAR_BATCHES[:-1]]
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), *batches["test_batch"])


def test_the_reader_takes_cifars_pickled_batches_from_the_archive_and_the_folder(tmp_path):
    batches = tiny_cifar()
    archive = write_cifar(tmp_path / "cifar-10-python.tar.gz", batches)
    folder = write_cifar(tmp_path / "cifar-10-batches-py", batches, extracted=True)
    for source in (archive, folder):
        arrays = read_cifar(source)
        for got, want in zip(arrays, expected_arrays(batches)):
            np.testing.assert_array_equal(got, want)
        assert arrays[0].shape == (20, 32, 32, 3) and arrays[0].dtype == np.uint8 and arrays[3].shape == (3,)


def test_a_pickle_that_makes_anything_but_arrays_is_refused(tmp_path):
    class Sneaky:
        def __reduce__(self):
            return os.system, ("echo never run",)

    for raw, message in ((pickle.dumps(Sneaky(), protocol=2), "refused to make posix.system"),
                         (py2_pickle({b"data": [[0] * 3072], b"labels": [0]}), r"b'data' is a uint8 array \(N, 3072\)"),
                         (py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "a list of 2 ints")):
        with pytest.raises(DataError, match=message):
            read_cifar_batch(io.BytesIO(raw), "data_batch_1")


def test_a_tiny_cifar_is_refused_by_its_archives_hash_and_by_its_form(tmp_path):
    """A format test's archive is not CIFAR-10: its SHA-256 is not Keras', and its extracted folder's 20 + 3
    images are not CIFAR-10's form."""
    archive = write_cifar(tmp_path / "cifar10" / "cifar-10-python.tar.gz", tiny_cifar())
    with pytest.raises(DataError, match=rf"{archive} is not the CIFAR-10 archive that keras.datasets.cifar10 "
                                        rf"downloads: its sha256 is [0-9a-f]{{64}}, expected 6d958be0"):
        load_dataset("cifar10", str(tmp_path), download=False)
    os.remove(archive)
    folder = write_cifar(tmp_path / "cifar10" / "cifar-10-batches-py", tiny_cifar(), extracted=True)
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", str(tmp_path), download=False)
    message = str(e.value)
    assert f"{folder} holds neither mnist nor fashion_mnist nor cifar10" in message, message
    assert "20 training images, not 50000" in message and "3 test images, not 10000" in message


def test_cifar_of_its_form_loads_as_a_32x32x3_dataset_and_builds_a_32x32x3_model(tmp_path, monkeypatch):
    """With the form shrunk to the tiny archive's (and its hash taken as Keras'), the archive loads: colour images,
    labels flattened, CIFAR-10's class names, and the model built for it takes 32x32x3."""
    batches = tiny_cifar(per_batch=2, n_test=1)  # 10 training images, one of each class, and 1 test image
    for i, name in enumerate(CIFAR_BATCHES[:-1]):
        batches[name] = (batches[name][0], np.array([2 * i, 2 * i + 1]))
    batches["test_batch"] = (batches["test_batch"][0], np.array([7]))
    archive = write_cifar(tmp_path / "cifar10" / "cifar-10-python.tar.gz", batches)
    names, url, _ = DATASETS["cifar10"]["archive"]
    monkeypatch.setitem(DATASETS["cifar10"], "archive", (names, url, file_sha256(archive)))
    monkeypatch.setitem(DATASETS["cifar10"], "sizes", (10, 1))
    monkeypatch.setitem(DATASETS["cifar10"], "per_class", None)
    data = load_dataset("cifar10", str(tmp_path), download=False)
    assert data.source == archive and data.x_train.shape == (10, 32, 32, 3) and data.y_train.tolist() == list(range(10))
    np.testing.assert_array_equal(data.x_test, batches["test_batch"][0])
    assert data.spec.class_names[0] == "airplane" and data.spec.class_names[9] == "truck"
    assert data.spec.image_shape == (32, 32, 3) and data.spec.to_dict()["source"] == archive
    model = create_model("sequential", **assemble.model_data_kwargs("sequential", data.spec))
    assert model_input_shape(model) == (32, 32, 3) and model.output_shape == (None, 10)
    assert dataset_spec("mnist").model_kwargs() == {}  # MNIST's models keep the builders' defaults


@pytest.mark.parametrize("damage", ["wrong hash", "corrupt"])
def test_a_bad_archive_gives_way_to_the_good_folder_beside_it(damage, tmp_path, monkeypatch, capsys):
    """An archive of another hash, or one of Keras' hash cut short, beside a good extracted folder: the folder is
    read, and a note says what was wrong with the archive and which copy was read instead."""
    batches = tiny_cifar()
    archive = write_cifar(tmp_path / "cifar10" / "cifar-10-python.tar.gz", tiny_cifar(seed=1))
    folder = write_cifar(tmp_path / "cifar10" / "cifar-10-batches-py", batches, extracted=True)
    monkeypatch.setitem(DATASETS["cifar10"], "sizes", (20, 3))
    monkeypatch.setitem(DATASETS["cifar10"], "per_class", None)
    if damage == "corrupt":
        raw = open(archive, "rb").read()
        open(archive, "wb").write(raw[: len(raw) // 2])
        names, url, _ = DATASETS["cifar10"]["archive"]
        monkeypatch.setitem(DATASETS["cifar10"], "archive", (names, url, file_sha256(archive)))
    data = load_dataset("cifar10", str(tmp_path), download=False)
    assert data.source == folder
    np.testing.assert_array_equal(data.x_train, expected_arrays(batches)[0])
    why = "is not the CIFAR-10 archive that keras.datasets.cifar10" if damage == "wrong hash" else "cannot be read"
    note = capsys.readouterr().err
    assert f"note: {archive}" in note and why in note and note.rstrip().endswith(f"Read {folder} instead.")


def test_with_no_good_copy_the_error_names_what_is_wrong_with_each(tmp_path):
    """A bad archive beside an incomplete folder, then beside a folder not of CIFAR-10's form: each is named, and
    what is wrong with it."""
    batches = tiny_cifar()
    archive = write_cifar(tmp_path / "cifar10" / "cifar-10-python.tar.gz", batches)
    folder = write_cifar(tmp_path / "cifar10" / "cifar-10-batches-py", batches, extracted=True)
    os.remove(os.path.join(folder, "test_batch"))
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", str(tmp_path), download=False)
    message = str(e.value)
    assert message.startswith(f"No copy of CIFAR-10 in {tmp_path / 'cifar10'} can be read: (1) {archive} is not the "
                              f"CIFAR-10 archive"), message
    assert message.endswith(f"(2) Dataset 'cifar10' in {folder} is incomplete: missing test_batch. "
                            f"Received: dataset='cifar10'")
    with open(os.path.join(folder, "test_batch"), "wb") as f:
        f.write(batch_bytes(*batches["test_batch"], "test_batch"))
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", str(tmp_path), download=False)
    message = str(e.value)
    assert f"(1) {archive} is not the CIFAR-10 archive" in message, message
    assert f"(2) {folder} holds neither mnist nor fashion_mnist nor cifar10" in message
    assert "3 test images, not 10000" in message and message.endswith("Received: dataset='cifar10'")


def test_the_copy_keras_extracts_in_its_cache_is_found(tmp_path, monkeypatch):
    """Keras' own `get_file`, as `cifar10.load_data()` calls it (given the tiny archive's hash), extracts into
    ~/.keras/datasets/cifar-10-batches-py-target/; the search without a directory reads it from there."""
    import keras

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KERASCNN_DATA_DIR")
    batches = tiny_cifar()
    archive = write_cifar(tmp_path / ".keras" / "datasets" / "cifar-10-batches-py-target_archive", batches)
    keras.utils.get_file(fname="cifar-10-batches-py-target", origin=URL, extract=True, file_hash=file_sha256(archive),
                         cache_dir=str(tmp_path / ".keras"))
    os.remove(archive)  # the extracted folder alone
    monkeypatch.setitem(DATASETS["cifar10"], "sizes", (20, 3))
    monkeypatch.setitem(DATASETS["cifar10"], "per_class", None)
    data = load_dataset("cifar10", download=False)
    assert data.source == str(tmp_path / ".keras" / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py")
    np.testing.assert_array_equal(data.x_train, expected_arrays(batches)[0])


def test_an_mnist_folder_named_cifar10_is_refused(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    for name in os.listdir(MNIST_DIR):
        if "ubyte" in name:
            (folder / name).symlink_to(os.path.join(MNIST_DIR, name))
    with pytest.raises(DataError, match=f"{folder} holds mnist, not cifar10"):
        load_dataset("cifar10", str(tmp_path), download=False)


def test_a_wrong_archive_in_keras_cache_is_named_and_left_in_place(tmp_path, monkeypatch):
    """Keras deletes an archive of the wrong hash in its cache when its download then fails; the search refuses
    it first, so the file stays and the error names it."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KERASCNN_DATA_DIR")
    cache = tmp_path / ".keras" / "datasets"
    cache.mkdir(parents=True)
    archive = write_cifar(cache / "cifar-10-batches-py-target_archive", tiny_cifar())
    with pytest.raises(DataError, match=f"{archive} is not the CIFAR-10 archive"):
        load_dataset("cifar10")
    assert os.path.isfile(archive)


def test_offline_with_nothing_in_place_exits_2_naming_the_file_and_where(tmp_path):
    """The real command, offline for real: an empty --data-dir, and no directory at all with an empty Keras cache
    (HOME in tmp_path). Each exits 2, names cifar-10-python.tar.gz, its URL and the folder to put it in, and writes
    no run directory."""
    (tmp_path / "empty").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "KERASCNN_DATA_DIR"}
    env["HOME"] = str(tmp_path / "home")
    common = [sys.executable, os.path.join(ROOT, "train.py"), "--dataset", "cifar10", "--model", "sequential",
              "--logdir", str(tmp_path / "logs")]
    runs = {where: subprocess.Popen(common + extra, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            for where, extra in ((tmp_path / "empty" / "cifar10", ["--data-dir", str(tmp_path / "empty")]),
                                 (tmp_path / "home" / ".keras" / "datasets" / "cifar10", []))}
    for where, run in runs.items():
        _, stderr = run.communicate(timeout=600)
        assert run.returncode == 2, stderr[-2000:]
        assert f"Put cifar-10-python.tar.gz (from {URL}, downloaded where there is internet) in {where} " in stderr
        assert "Dataset 'cifar10' not found" in stderr
        assert "as it is or extracted (its cifar-10-batches-py/ folder" in stderr
    assert "download through keras.datasets failed" in stderr and "URL fetch failure" in stderr
    assert not os.path.exists(tmp_path / "logs") or os.listdir(tmp_path / "logs") == []
