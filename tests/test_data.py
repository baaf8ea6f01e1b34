"""Dataset reading, its errors, the split and the tf.data pipeline."""

import gzip
import hashlib
import os
import shutil
import time

import numpy as np
import pytest

from conftest import MNIST_DIR, write_idx, write_tiny_mnist
from kerascnn.data import (DATASETS, Dataset, DataError, content_digest, dataset_spec, dataset_spec, list_datasets,
                           load_dataset, search_dirs, split)
from kerascnn.pipeline import epoch_variable, make_dataset
from kerascnn.pipeline import load_dataset as pipeline_load_dataset


def test_real_mnist_matches_its_checksums_and_shapes(mnist):
    sums = dict(line.split()[::-1] for line in open(os.path.join(MNIST_DIR, "SHA256SUMS")))
    for name, digest in sums.items():
        with open(os.path.join(MNIST_DIR, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, name
    assert mnist.x_train.shape == (60000, 28, 28, 1) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(mnist.y_train).tolist()[:2] == [5923, 6742]  # MNIST's known class counts


def test_split_is_seeded_disjoint_and_leaves_test_alone(mnist):
    a = split(mnist, val_size=5000, seed=1)
    b = split(mnist, val_size=5000, seed=1)
    c = split(mnist, val_size=5000, seed=2)
    assert len(a.x_train) == 55000 and len(a.x_val) == 5000
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_val, c.x_val)
    assert a.x_test is mnist.x_test


def test_split_partitions_the_training_set():
    ids = np.arange(300)
    images = np.broadcast_to((ids % 256).astype(np.uint8)[:, None, None, None], (300, 28, 28, 1))
    data = Dataset("ids", "memory", images, ids, images[:5], ids[:5])
    s = split(data, val_size=50, seed=0)
    assert sorted(np.concatenate([s.y_train, s.y_val]).tolist()) == ids.tolist()
    assert list(s.y_train) == sorted(s.y_train)  # the rest, in the original order


def test_subset_takes_the_first_training_images_and_refuses_too_many(mnist):
    s = split(mnist, subset=1234)
    assert len(s.x_train) == 1234 and len(s.x_val) == 5000
    with pytest.raises(DataError, match="subset=60000 is larger than the 55000 training images"):
        split(mnist, subset=60000)


def test_pipeline_scales_in_graph_and_keeps_uint8_in_memory(mnist):
    s = split(mnist, subset=300)
    assert s.x_train.dtype == np.uint8
    x, y = next(iter(make_dataset(s.x_train, s.y_train, 100)))
    assert x.dtype.name == "float32" and y.dtype.name == "int32" and tuple(x.shape) == (100, 28, 28, 1)
    np.testing.assert_allclose(x.numpy(), s.x_train[:100] / 255.0, atol=1e-6)
    shuffled = [b[1].numpy() for b in make_dataset(s.x_train, s.y_train, 300, shuffle=True, seed=3)]
    assert sorted(shuffled[0]) == sorted(s.y_train) and not np.array_equal(shuffled[0], s.y_train)


def test_epoch_keyed_order_depends_on_seed_and_epoch_only(mnist):
    x, y = mnist.x_train[:250], mnist.y_train[:250]
    epoch = epoch_variable()
    ds = make_dataset(x, y, 100, shuffle=True, seed=3, epoch=epoch)
    assert int(ds.cardinality()) == 3  # 100 + 100 + 50

    def one_pass(value):
        epoch.assign(value)
        return np.concatenate([b[1].numpy() for b in ds])

    first, second = one_pass(0), one_pass(1)
    assert sorted(first) == sorted(y) and not np.array_equal(first, second)
    fresh = make_dataset(x, y, 100, shuffle=True, seed=3, epoch=epoch)  # as in a resumed process
    epoch.assign(1)
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in fresh]), second)


IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")
FASHION_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
needs_fashion = pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason="dataset-fashion-mnist not installed")


def link_idx(source, directory):
    """`directory` holding symbolic links to the four IDX files in `source`; returns it as a str."""
    os.makedirs(directory, exist_ok=True)
    for name in IDX_NAMES:
        os.symlink(os.path.join(source, name), os.path.join(directory, name))
    return str(directory)


def test_idx_and_npz_and_subdirectory_layouts(tmp_path, mnist):
    """Real MNIST in each layout: gzipped IDX files, plain ones, an .npz; in the directory or its mnist/."""
    link_idx(MNIST_DIR, tmp_path / "root")
    assert load_dataset("mnist", str(tmp_path / "root"), download=False).source == str(tmp_path / "root")
    link_idx(MNIST_DIR, tmp_path / "sub" / "mnist")
    assert load_dataset("mnist", str(tmp_path / "sub"), download=False).source == str(tmp_path / "sub" / "mnist")
    (tmp_path / "plain").mkdir()
    for name in IDX_NAMES:
        with gzip.open(os.path.join(MNIST_DIR, name)) as f:
            (tmp_path / "plain" / name[: -len(".gz")]).write_bytes(f.read())
    plain = load_dataset("mnist", str(tmp_path / "plain"), download=False)
    np.savez(tmp_path / "mnist.npz", x_train=mnist.x_train[..., 0], y_train=mnist.y_train.astype(np.int64),
             x_test=mnist.x_test[..., 0], y_test=mnist.y_test.astype(np.int64))  # Keras' layout, wider labels
    from_npz = load_dataset("mnist", str(tmp_path), download=False)
    assert from_npz.source == str(tmp_path / "mnist.npz") and from_npz.x_train.shape == (60000, 28, 28, 1)
    digests = {content_digest(d.x_train, d.y_train, d.x_test, d.y_test) for d in (mnist, plain, from_npz)}
    assert digests == {DATASETS["mnist"]["sha256"]}


def test_digest_is_of_the_decoded_arrays_and_quick(mnist):
    """gzip or not, (N, 28, 28) or (N, 28, 28, 1): the same bytes, the same digest; 55 MB hash in well under 1 s."""
    arrays = (mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test)
    start = time.perf_counter()
    digest = content_digest(*arrays)
    seconds = time.perf_counter() - start
    assert digest == DATASETS["mnist"]["sha256"] and seconds < 1.0, seconds
    assert content_digest(mnist.x_train[..., 0], mnist.y_train.astype(np.int32), mnist.x_test[..., 0],
                          mnist.y_test) == digest
    assert content_digest(mnist.x_train, mnist.y_train, mnist.x_test[::-1], mnist.y_test) != digest


def test_mnist_files_asked_for_as_fashion_mnist_are_refused(tmp_path, monkeypatch):
    """The README's offline setup: a folder of MNIST's four files. Same file names, but they are not Fashion-MNIST."""
    folder = link_idx(MNIST_DIR, tmp_path / "digits")
    with pytest.raises(DataError) as e:
        load_dataset("fashion_mnist", folder, download=False)
    message = str(e.value)
    assert f"{folder} holds mnist, not fashion_mnist" in message, message
    assert "Received: dataset='fashion_mnist'" in message and os.path.join(folder, "fashion_mnist") in message
    monkeypatch.setenv("KERASCNN_DATA_DIR", folder)  # the same through the environment, and never Debian's instead
    with pytest.raises(DataError, match=f"{folder} holds mnist, not fashion_mnist"):
        load_dataset("fashion_mnist")
    assert load_dataset("mnist").source == folder  # the folder itself still serves MNIST


@needs_fashion
def test_fashion_mnist_files_asked_for_as_mnist_are_refused(tmp_path):
    with pytest.raises(DataError, match=f"{FASHION_DIR} holds fashion_mnist, not mnist"):
        load_dataset("mnist", FASHION_DIR, download=False)
    shutil.copytree(FASHION_DIR, tmp_path / "mnist")  # a copy in MNIST's sub-directory: refused as well
    with pytest.raises(DataError, match=f"{tmp_path / 'mnist'} holds fashion_mnist, not mnist"):
        load_dataset("mnist", str(tmp_path), download=False)


@needs_fashion
def test_one_folder_holds_both_by_subfolder(tmp_path):
    """MNIST's files at the root and Fashion-MNIST's in fashion_mnist/: each name gets its own."""
    root = link_idx(MNIST_DIR, tmp_path)
    link_idx(FASHION_DIR, tmp_path / "fashion_mnist")
    fashion = load_dataset("fashion_mnist", root, download=False)
    assert fashion.source == str(tmp_path / "fashion_mnist")
    assert fashion.spec.class_names[7] == "Sneaker" and np.bincount(fashion.y_train).tolist() == [6000] * 10
    assert load_dataset("mnist", root, download=False).source == root


def test_default_search_passes_over_another_datasets_files(tmp_path, monkeypatch):
    """No directory given: Keras' cache holding MNIST's files is no Fashion-MNIST; the search goes on to Debian's
    copy, and with none the error names what the cache holds."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KERASCNN_DATA_DIR")
    cache = link_idx(MNIST_DIR, tmp_path / ".keras" / "datasets")
    assert load_dataset("mnist", download=False).source == cache
    if os.path.isdir(FASHION_DIR):
        assert load_dataset("fashion_mnist", download=False).source == FASHION_DIR
    monkeypatch.setitem(DATASETS["fashion_mnist"], "system_dirs", ())
    with pytest.raises(DataError) as e:
        load_dataset("fashion_mnist", download=False)
    assert f"{cache} holds mnist, not fashion_mnist" in str(e.value) and "download disabled" in str(e.value)


def test_files_of_no_built_in_dataset_are_refused_and_load_as_your_own(tmp_path, mnist):
    """A subset of MNIST is not MNIST: refused by name with its digest; by path it is your own data, unchecked."""
    write_tiny_mnist(tmp_path / "tiny")
    with pytest.raises(DataError, match=r"tiny holds neither mnist nor fashion_mnist nor cifar10 \(sha256 [0-9a-f]{64}, 20 "
                                        r"training and 10 test images\), so it is not loaded as 'mnist'"):
        load_dataset("mnist", str(tmp_path / "tiny"), download=False)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=mnist.x_train[:300, ..., 0], y_train=mnist.y_train[:300], x_test=mnist.x_test[:50, ..., 0],
             y_test=mnist.y_test[:50])
    with pytest.raises(DataError, match=f"{path} holds neither mnist nor fashion_mnist nor cifar10") as e:
        load_dataset("mnist", str(tmp_path), download=False)
    assert "--dataset my.npz" in str(e.value)
    own = pipeline_load_dataset(str(path))
    assert own.x_train.shape == (300, 28, 28, 1) and own.spec.raw_pixels


def test_the_dataset_table_is_the_one_list():
    """Names, class names and the Keras loader all come from `DATASETS`."""
    from kerascnn import config

    assert config.DATASETS == tuple(list_datasets()) == ("cifar10", "fashion_mnist", "mnist")
    assert dataset_spec("fashion_mnist").class_names[7] == "Sneaker" and dataset_spec().class_names == list("0123456789")
    assert dataset_spec("cifar10").image_shape == (32, 32, 3)
    for entry in DATASETS.values():  # a content digest, or else a form and an archive's hash to recognise it by
        assert len(entry["sha256"]) == 64 if entry["sha256"] else entry["per_class"] and len(entry["archive"][2]) == 64


def test_search_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert search_dirs("fashion_mnist", "/data") == ["/data/fashion_mnist", "/data/fashion-mnist", "/data"]
    monkeypatch.delenv("KERASCNN_DATA_DIR")
    dirs = search_dirs("fashion_mnist")
    assert dirs[0] == str(tmp_path / ".keras" / "datasets" / "fashion_mnist")
    assert dirs[-1] == "/usr/share/datasets/fashion-mnist"


def test_an_empty_data_dir_is_an_error_not_a_fallback(tmp_path):
    """Real MNIST sits in ../shared and perhaps ~/.keras: a given, empty directory must not fall back to it."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"not found\. Looked in: .*empty/mnist, .*empty; the data directory given"):
        load_dataset("mnist", str(tmp_path / "empty"))


@needs_fashion
def test_fashion_mnist_from_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KERASCNN_DATA_DIR")
    d = load_dataset("fashion_mnist", download=False)
    assert d.source == "/usr/share/datasets/fashion-mnist" and d.x_train.shape == (60000, 28, 28, 1)


def test_nothing_found_names_places_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DataError) as e:
        load_dataset("mnist", str(tmp_path), download=False)
    message = str(e.value)
    assert str(tmp_path) in message and "train-images-idx3-ubyte.gz" in message and "mnist.npz" in message


def test_missing_data_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("mnist", str(tmp_path / "nope"), download=False)


BROKEN = {
    "truncated": (dict(truncate=100), "truncated or corrupt"),
    "wrong magic": (dict(magic=0x0801), "magic number is 0x00000801; expected 0x00000803"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_idx_files_are_named(tmp_path, case):
    kwargs, message = BROKEN[case]
    write_tiny_mnist(tmp_path)
    path = str(tmp_path / "train-images-idx3-ubyte.gz")
    write_idx(path, np.zeros((20, 28, 28)), **kwargs)
    with pytest.raises(DataError, match=message) as e:
        load_dataset("mnist", str(tmp_path), download=False)
    assert path in str(e.value)


def test_not_gzip_is_named(tmp_path):
    write_tiny_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: cannot be read"):
        load_dataset("mnist", str(tmp_path), download=False)


@pytest.mark.parametrize("override,message", [
    ({"train-labels-idx1-ubyte.gz": np.arange(19) % 10}, "20 train images but 19 labels"),
    ({"t10k-labels-idx1-ubyte.gz": np.full(10, 12)}, r"labels must be in 0..9; found 12..12"),
    ({"train-images-idx3-ubyte.gz": np.zeros((20, 32, 32))}, r"shape \(32, 32\); expected \(28, 28\)"),
])
def test_inconsistent_contents(tmp_path, override, message):
    write_tiny_mnist(tmp_path, **override)
    with pytest.raises(DataError, match=message):
        load_dataset("mnist", str(tmp_path), download=False)


def test_incomplete_idx_set(tmp_path):
    write_tiny_mnist(tmp_path)
    os.remove(tmp_path / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match="incomplete: missing t10k-images-idx3-ubyte.gz"):
        load_dataset("mnist", str(tmp_path), download=False)


def test_npz_without_keys_or_with_pickles(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"missing keys \['y_train', 'x_test', 'y_test'\]"):
        load_dataset("mnist", str(tmp_path), download=False)
    obj = np.array([{"a": 1}], dtype=object)
    np.savez(tmp_path / "mnist.npz", x_train=obj, y_train=obj, x_test=obj, y_test=obj)
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset("mnist", str(tmp_path), download=False)


def test_default_search_finds_the_keras_cache_and_nothing_beside_the_package(tmp_path, monkeypatch):
    """No --data-dir, no KERASCNN_DATA_DIR: ~/.keras/datasets, then the system's directories, never the checkout's."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KERASCNN_DATA_DIR")
    cache = tmp_path / ".keras" / "datasets" / "mnist"
    cache.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (cache / name).symlink_to(os.path.join(MNIST_DIR, name))
    d = load_dataset("mnist", download=False)
    assert d.source.startswith(str(cache)) and d.x_train.shape == (60000, 28, 28, 1)

    shutil.rmtree(tmp_path / ".keras")  # no cache: MNIST has no system directory, so it is not found
    with pytest.raises(DataError) as e:
        load_dataset("mnist", download=False)
    looked_in = str(e.value).split("Looked in: ")[1].split(";")[0].split(", ")
    assert looked_in == [str(cache), str(cache.parent)]
