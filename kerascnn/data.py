"""Datasets by name, read from the standard distributions; the dataset types, the validation split, scaling.

Your own images are `kerascnn.images`'; `kerascnn.pipeline` loads either
and builds the `tf.data` input from them.

A dataset by name is read from the first place that holds it:

1. `data_dir` (`--data-dir`) or else the `KERASCNN_DATA_DIR` environment
   variable: when one is given, only there (an empty or wrong directory is
   an error, never silently replaced by other data);
2. Keras' own cache, `~/.keras/datasets`;
3. Debian's `/usr/share/datasets/fashion-mnist` (package `dataset-fashion-mnist`);
4. a download through `keras.datasets` (needs the internet).

A machine without the internet (this project's development and CI machines)
points `KERASCNN_DATA_DIR` at its copy; the package never looks around the
place it is installed in.

In a directory, the dataset is either the four IDX files
(`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
`t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`; gzipped or not)
or Keras' `.npz` (keys `x_train`, `y_train`, `x_test`, `y_test`), either in
a sub-directory named after the dataset (`<dir>/fashion_mnist`) or in the
directory itself, in that order.

MNIST and Fashion-MNIST use the same four file names, so a built-in
dataset is recognised by its content, not by its file names: the SHA-256
of its four arrays (`content_digest`) must be the one `DATASETS` records
for it, whether the IDX files are gzipped or not or the arrays come from
an `.npz`. A place holding another built-in dataset is never used for
this one: the search goes on past it, and if nothing holds the dataset
asked for, the error names the place and what it holds ("/data holds
mnist, not fashion_mnist"). A given `data_dir` is still searched alone,
so a `--data-dir` holding MNIST is an error for `--dataset fashion_mnist`
rather than a quiet switch to Debian's copy; give Fashion-MNIST its own
`<dir>/fashion_mnist` beside MNIST's files to keep both in one place.
Files that hold no built-in dataset (a subset, your own digits) are an
error too: your own data loads by path (`--dataset my.npz` or a folder of
class subfolders, `kerascnn.images`), unchecked.

CIFAR-10 (`cifar10`, 32x32 RGB) comes as Keras downloads it: the archive
`cifar-10-python.tar.gz`, read as it is, or the `cifar-10-batches-py/`
folder it extracts to (`data_batch_1`..`5`, `test_batch`: pickles, read
by `kerascnn.cifar`, which makes nothing but their arrays), or the
batch files themselves, or a `cifar10.npz`; in `<dir>/cifar10`,
`<dir>/cifar-10-batches-py-target` (where Keras 3.15's `load_data` extracts
it in its cache) or `<dir>`. Its content digest is not recorded (no copy
was at hand where this was written), so it is recognised by what can be
checked without one: an archive must have the SHA-256 that
`keras.datasets.cifar10` checks (Keras' `file_hash`), and the arrays, from
the archive, the folder or the `.npz`, must have CIFAR-10's form, 50,000 +
10,000 images of 32x32x3 with 5,000 + 1,000 of each class
(`form_differences`). That refuses MNIST's and Fashion-MNIST's files (by
their digests: "holds mnist, not cifar10"), a part of CIFAR-10 and other
datasets, but not a made-up set of CIFAR-10's form in its extracted
layout; the archive's hash is the one check of its content. A bad copy
(an archive of another hash, a folder missing batches) gives way to a good
one beside it, with a note naming both; with none good, the error names
what is wrong with each. Offline with
none of these, the error names the archive, its URL and the folder to put
it in, and the command exits 2.

Images stay uint8 in memory (60,000 MNIST images are 47 MB); the input
pipeline scales them to [0, 1] per batch, inside the `tf.data` graph
(`scale_images`, also used where NumPy arrays are fed). This module
imports NumPy only when it reads data, so `kerascnn.config` can take the
dataset names from `DATASETS` without it.

Example, with a tiny MNIST-shaped `.npz` written for it (`load_dataset("mnist")`
reads the real one from the places above the same way, and accepts it by
its digest):

>>> import tempfile
>>> import numpy as np
>>> images, labels = np.zeros((20, 28, 28), np.uint8), np.arange(20) % 10
>>> with tempfile.TemporaryDirectory() as folder:
...     np.savez(os.path.join(folder, "mnist.npz"), x_train=images, y_train=labels, x_test=images[:10],
...              y_test=labels[:10])
...     try:
...         load_dataset("mnist", data_dir=folder)
...     except DataError as e:
...         print(str(e).replace(folder, "<folder>")[:92])
<folder>/mnist.npz holds neither mnist nor fashion_mnist nor cifar10 (sha256 76a80b13c6bc395
"""

from __future__ import annotations  # the annotations name np.ndarray; NumPy is imported where data is read

import dataclasses
import gzip
import hashlib
import os
import struct
import sys
import zlib

from kerascnn.errors import UsageError

IMAGE_SHAPE = (28, 28, 1)  # MNIST's and Fashion-MNIST's; a model knows no dataset (kerascnn.layers.DIGIT_SHAPE)
NUM_CLASSES = 10
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# The built-in datasets, the one list of them (kerascnn.config, the commands and evaluate take their names from
# here). Each entry:
#   title: the name in words; classes: a name per label, in label order; shape: (height, width, channels);
#   dirs: sub-directories of a searched directory to look in first; npz: its `.npz` file names;
#   system_dirs: directories searched after Keras' cache (no `data_dir` given); keras: its `keras.datasets` module;
#   sizes: (training, test) images; sha256: `content_digest` of its arrays, what identifies its files (computed
#   from MNIST's IDX files, ../shared/datasets/mnist, and Debian's dataset-fashion-mnist; the same gzipped, plain
#   or as an .npz), or None where no copy was at hand to compute it: `identify` then checks the form instead
#   (shape, sizes, `per_class`);
#   per_class: (training, test) images of each class, or None; archive: the file distributed, or None:
#   (the names it is read under, its URL, its SHA-256 as `keras.datasets` checks it);
#   prepare: how a person's picture is made to look like this dataset's for a model trained on it, a key of
#   `PREPARATIONS` (`kerascnn.predict` follows it; a dataset without one is refused there, not guessed).
#   policy: (the augmentation policy `--augment auto` picks for it, why in words): kerascnn/layers/policy.py.
DATASETS = {
    "mnist": {
        "title": "MNIST",
        "classes": tuple(str(c) for c in range(NUM_CLASSES)),
        "shape": IMAGE_SHAPE,
        "dirs": ("mnist",),
        "npz": ("mnist.npz",),
        "system_dirs": (),
        "keras": "mnist",
        "sizes": (60000, 10000),
        "sha256": "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16",
        "per_class": None,
        "archive": None,
        "prepare": "digit",
        "policy": ("digits", "MNIST is handwritten digits"),
    },
    "fashion_mnist": {
        "title": "Fashion-MNIST",
        "classes": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                    "Ankle boot"),
        "shape": IMAGE_SHAPE,
        "dirs": ("fashion_mnist", "fashion-mnist"),
        "npz": ("fashion_mnist.npz", "fashion-mnist.npz"),
        "system_dirs": ("/usr/share/datasets/fashion-mnist",),
        "keras": "fashion_mnist",
        "sizes": (60000, 10000),
        "sha256": "ca3ab2a37f845e1b8ae23cab1b51749a3011ba3bf1d9016176d75cbaabac376f",
        "per_class": None,
        "archive": None,
        "prepare": "whole_dark",  # clothes fill the frame, light on black (the dataset's images are negated)
        "policy": ("photos", "Fashion-MNIST is pictures of clothes"),
    },
    "cifar10": {
        "title": "CIFAR-10",
        "classes": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        "shape": (32, 32, 3),
        # cifar-10-batches-py-target: where Keras 3's `cifar10.load_data()` extracts the archive in its cache
        "dirs": ("cifar10", "cifar-10-batches-py-target"),
        "npz": ("cifar10.npz",),
        "system_dirs": (),
        "keras": "cifar10",
        "sizes": (50000, 10000),
        "sha256": None,  # not computed: no copy of CIFAR-10 on the machines this was written on (no internet)
        "per_class": (5000, 1000),  # the CIFAR page: each class exactly 5,000 training and 1,000 test images
        # The public name, and the one Keras 3.15's `cifar10.load_data()` keeps it under in ~/.keras/datasets;
        # the SHA-256 is the `file_hash` that load_data checks (keras/src/datasets/cifar10.py).
        "archive": (("cifar-10-python.tar.gz", "cifar-10-batches-py-target_archive"),
                    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
        "prepare": "whole",  # colour photos of the object, as they are
        "policy": ("photos", "CIFAR-10 is colour photos"),
    },
}
# How a person's picture is prepared for a model trained on a built-in dataset (its entry's "prepare"); the
# steps are `kerascnn.predict`'s. Every preparation reads the picture into the model's channels and ends in the
# model's [0, 1] pixels at its input size.
PREPARATIONS = {
    "digit": "MNIST-style: grey, inverted when the paper is light, the ink scaled into a 20-px box and centred "
             "by its mass in the 28x28 frame",
    "whole_dark": "the whole picture resized to the frame; inverted when its border is light, so the object is "
                  "light on a black background (Fashion-MNIST's)",
    "whole": "the whole picture resized to the frame, its colours as they are (CIFAR-10's)",
}
FASHION_CLASSES = DATASETS["fashion_mnist"]["classes"]
OWN_VAL_SHARE = 0.1  # your own images: at most this share of the training part validates (see `split`)
MIN_PER_CLASS = 3  # your own images: one picture of each class for training, validation and test
DIGEST_CHUNK = 4096  # images hashed at a time by `content_digest` (decoded first, when they stream from disk)
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


class DataError(UsageError):
    """A dataset is missing or its files are not what they should be."""


FLATTEN_MAX_SIDE = 32  # own pictures worked at up to 32 px a side keep the flatten head (see DataSpec.model_kwargs)


@dataclasses.dataclass
class DataSpec:
    """What a model and the commands need to know of a dataset.

    Attributes:
        class_names: list of str, a name per label, in label order.
        image_shape: tuple (height, width, channels) of the arrays.
        raw_pixels: bool. False (MNIST, Fashion-MNIST): the input pipeline
            scales pixels to [0, 1] and the model has no preprocessing, as
            always. True (your own images): the pipeline feeds raw 0..255
            pixels and the model resizes and scales them itself.
        image_size: tuple (height, width) the model works at; None: `image_shape`'s.
        record: dict, what the run directory's `data.json` records besides
            (source, colour mode, the test files carved).
    """

    class_names: list
    image_shape: tuple = IMAGE_SHAPE
    raw_pixels: bool = False
    image_size: tuple = None
    record: dict = dataclasses.field(default_factory=dict)

    def model_kwargs(self):
        """The builder arguments for this data (none for MNIST: the builders' defaults are its).

        A built-in dataset of another shape (CIFAR-10's 32x32x3) gets its
        `input_shape` and `num_classes`, its pixels scaled by the pipeline
        as MNIST's are.

        Your own images larger than `FLATTEN_MAX_SIDE` get `global_pool=True`:
        a global average pooling in place of the flatten, so the model's size
        stops growing with the picture (`kerascnn.models.lecture`). Up to
        that side the lecture's flatten stays: its head is as small as
        MNIST's, and it keeps where things are (a 28x28 digit folder trained
        3 epochs: 59% with global pooling against over 85% with the flatten).
        They also get a stage per halving of the picture
        (`kerascnn.basics.stage_count`: 3 up to 63 px, 4 from 64, 5 from 128).
        """
        if not self.raw_pixels:
            if tuple(self.image_shape) == IMAGE_SHAPE and len(self.class_names) == NUM_CLASSES:
                return {}
            return {"input_shape": tuple(self.image_shape), "num_classes": len(self.class_names)}
        from kerascnn.basics import stage_count

        size = tuple(self.image_size or self.image_shape[:2])
        return {"input_shape": tuple(self.image_shape), "num_classes": len(self.class_names), "image_size": size,
                "rescale": 1 / 255, "global_pool": max(size) > FLATTEN_MAX_SIDE, "stages": stage_count(min(size))}

    def to_dict(self):
        """What `data.json` holds: `class_names`, `image_shape`, `image_size`, `raw_pixels` and the record."""
        size = list(self.image_size or self.image_shape[:2])
        return {"class_names": list(self.class_names), "image_shape": list(self.image_shape), "image_size": size,
                "raw_pixels": self.raw_pixels, **self.record}


def dataset_spec(name="mnist"):
    """The `DataSpec` of a built-in dataset: its class names and image shape (`DATASETS`).

    Args:
        name: str, a key of `DATASETS`. Defaults to "mnist".

    >>> dataset_spec("cifar10").model_kwargs()
    {'input_shape': (32, 32, 3), 'num_classes': 10}
    """
    return DataSpec(list(DATASETS[name]["classes"]), tuple(DATASETS[name]["shape"]))


@dataclasses.dataclass
class Dataset:
    """A dataset in memory: uint8 images (N, H, W, C), integer labels (N,) and its `DataSpec`."""

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    spec: DataSpec = None
    x_val: np.ndarray = None  # a validation set given with the data (a folder's val/): used as it is, not carved
    y_val: np.ndarray = None

    def __post_init__(self):
        if self.spec is None:  # a built-in dataset's, or digits' for arrays made in memory
            self.spec = dataset_spec(self.name if self.name in DATASETS else "mnist")
            if self.name in DATASETS:
                # which dataset (data.json: how `predict` prepares pictures for the model) and where it was found
                # (data.json, the start block)
                self.spec.record = {"dataset": self.name, **({"source": self.source} if self.source else {})}


@dataclasses.dataclass
class Splits:
    """Train, validation (carved from train) and test arrays."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    spec: DataSpec = None

    def __post_init__(self):
        if self.spec is None:
            self.spec = dataset_spec()


def list_datasets():
    """The built-in datasets' names, sorted (`DATASETS`' keys)."""
    return sorted(DATASETS)


def search_dirs(name, data_dir=None):
    """The directories `load_dataset` looks in, in order."""
    if name not in DATASETS:
        raise DataError(f"Unknown dataset {name!r}; expected one of {list_datasets()}.")
    within = lambda root: [os.path.join(root, sub) for sub in DATASETS[name]["dirs"]] + [root]
    user_dir = data_dir or os.environ.get("KERASCNN_DATA_DIR")
    if user_dir:
        return within(user_dir)
    keras_cache = os.path.join(os.path.expanduser("~"), ".keras", "datasets")
    return within(keras_cache) + list(DATASETS[name]["system_dirs"])


def load_dataset(name, data_dir=None, download=True):
    """Loads dataset `name` from the first place that holds it (see module doc).

    Your own images (a folder or an `.npz`) load through
    `kerascnn.pipeline.load_dataset`, which calls this for a name.

    Args:
        name: str, a built-in dataset: "mnist", "fashion_mnist" or "cifar10" (`DATASETS`).
        data_dir: str or None, the directory to read from (and nowhere
            else). Defaults to `$KERASCNN_DATA_DIR`, and without either to
            the standard places.
        download: bool, whether to fall back to `keras.datasets` when no
            local copy is found in the standard places. Defaults to True.

    Returns:
        A `Dataset`.

    Raises:
        DataError: nothing found (the message lists the places searched and
            the files expected, and names any place that holds another
            built-in dataset instead), files that hold no built-in dataset
            (the message gives their digest), or a file found is broken.
    """
    dirs = search_dirs(name, data_dir)
    user_dir = data_dir or os.environ.get("KERASCNN_DATA_DIR")
    if user_dir and not os.path.isdir(user_dir):
        raise DataError(f"Data directory {user_dir} does not exist or is not a directory. "
                        f"Received: data_dir={user_dir!r}")
    others = []  # (place, the other built-in dataset it holds): never used for `name`
    for d in dirs:
        found = _load_from_dir(name, d)
        if found is None:
            continue
        held = identify(found, name, user_dir)
        if held == name:
            return found
        others.append((found.source, held))
    if user_dir:
        reason = f"the data directory given ({user_dir}) is searched alone"
    elif download:
        try:
            return _download(name)
        except Exception as e:  # keras raises many kinds; all mean "not available"
            reason = f"download through keras.datasets failed ({type(e).__name__}: {e})"
    else:
        reason = "download disabled"
    expected, put = _expected(name)
    target = os.path.join(user_dir or os.path.dirname(dirs[0]), DATASETS[name]["dirs"][0])
    if others:
        held = "; ".join(f"{place} holds {other}, not {name}" for place, other in others)
        found = (f"{held} (a built-in dataset is recognised by the content of its files, not their names, and "
                 f"another dataset's files are never used for it).")
    else:
        found = f"Dataset {name!r} not found."
    hint = f"Put {put} in {target} or point --data-dir or KERASCNN_DATA_DIR at a directory holding {name}'s files."
    raise DataError(
        f"{found} Looked in: {', '.join(dirs)}; {reason}. Expected {expected}. {hint} "
        f"Received: dataset={name!r}, data_dir={user_dir!r}"
    )


def _expected(name):
    """(the files `name` is read from, in words; what to put in place, in words)."""
    from kerascnn.cifar import CIFAR_BATCHES, CIFAR_FOLDER  # imported where used: kerascnn.config imports this module

    entry = DATASETS[name]
    npz = " / ".join(entry["npz"])
    if entry["archive"] is None:
        return f"{entry['title']}'s IDX files {', '.join(IDX_FILES)} or {npz}", "them"
    names, url, sha256 = entry["archive"]
    return (f"{entry['title']}'s archive {names[0]} (sha256 {sha256}), as it is or extracted (its "
            f"{CIFAR_FOLDER}/ folder: {', '.join(CIFAR_BATCHES)}), or {npz}",
            f"{names[0]} (from {url}, downloaded where there is internet)")


def content_digest(x_train, y_train, x_test, y_test):
    """The SHA-256 of a dataset's four arrays: what identifies a built-in dataset's files (`DATASETS`' `sha256`),
    and a search's data (`tune.py` records the digest of the four arrays it trains and validates on).

    The arrays are hashed as uint8, C-contiguous bytes, in this order, so
    the digest does not depend on how they were stored: IDX files gzipped
    or not, an `.npz`, images (N, 28, 28) or (N, 28, 28, 1). Hashing
    MNIST's 55 MB takes about 30 ms. Pictures left on disk
    (`kerascnn.images.stream.ImageFiles`) are decoded and hashed
    `DIGEST_CHUNK` at a time, to the digest their decoded array has.

    Returns:
        str, 64 hexadecimal digits.

    >>> import numpy as np
    >>> content_digest(np.zeros((1, 2, 2), np.uint8), np.array([3]), np.zeros((0, 2, 2)), np.array([], np.uint8))[:16]
    '016a682d1df4f869'
    """
    import numpy as np

    digest = hashlib.sha256()
    for array in (x_train, y_train, x_test, y_test):
        for start in range(0, len(array), DIGEST_CHUNK):  # the bytes in order, a slice at a time: one digest
            digest.update(np.ascontiguousarray(array[start:start + DIGEST_CHUNK], np.uint8).data)
    return digest.hexdigest()


def identify(data, name, data_dir=None):
    """Which built-in dataset `data`'s arrays are, by their `content_digest`.

    Args:
        data: `Dataset`, read from a place searched for `name`.
        name: str, the dataset asked for (named in the error).
        data_dir: str or None, the directory given (named in the error).

    Returns:
        str, the key of the `DATASETS` entry whose `sha256` the arrays have
        (`name` itself, or another built-in dataset the caller must not use).

    Raises:
        DataError: the arrays are no built-in dataset; the message names
            the place, `name` and the digest found.
    """
    digest = content_digest(data.x_train, data.y_train, data.x_test, data.y_test)
    for known, entry in DATASETS.items():
        if entry["sha256"] == digest:
            return known
    entry = DATASETS[name]
    if entry["sha256"] is None:  # no digest recorded (CIFAR-10): its form, which no other built-in dataset has
        differences = form_differences(data, name)
        if not differences:
            return name
        recognised = (f"{name} is recognised by its form, {_form(name)} (its content digest is not recorded), and "
                      f"these differ: {'; '.join(differences)}")
    else:
        recognised = (f"a built-in dataset is recognised by its content, and {name}'s {entry['sizes'][0]} + "
                      f"{entry['sizes'][1]} images have sha256 {entry['sha256']}")
    sizes = f"{len(data.x_train)} training and {len(data.x_test)} test images"
    raise DataError(
        f"{data.source} holds neither {' nor '.join(DATASETS)} (sha256 {digest}, {sizes}), so it is not loaded as "
        f"{name!r}: {recognised}. Your own data loads by path: "
        f"--dataset my.npz or a folder of class subfolders (docs/IMAGES.md). "
        f"Received: dataset={name!r}, data_dir={data_dir!r}"
    )


def _form(name):
    entry = DATASETS[name]
    form = f"{entry['sizes'][0]} + {entry['sizes'][1]} images of {'x'.join(map(str, entry['shape']))}"
    if entry["per_class"]:
        form += f", {entry['per_class'][0]} + {entry['per_class'][1]} of each of its {len(entry['classes'])} classes"
    return form


def form_differences(data, name):
    """How `data`'s arrays differ from built-in dataset `name`'s form: shape, sizes, images per class.

    What identifies a built-in dataset whose content digest is not recorded
    (`DATASETS`' `sha256` None: CIFAR-10). It tells CIFAR-10 from the other
    built-in datasets and from a part of it, not from a made-up set of the
    same form; its archive is checked by its SHA-256 as well (`load_dataset`).

    Returns:
        list of str, one line per difference; empty when the form is `name`'s.
    """
    import numpy as np

    entry = DATASETS[name]
    differences = []
    for part, x, y, size, each in (("training", data.x_train, data.y_train, entry["sizes"][0], 0),
                                   ("test", data.x_test, data.y_test, entry["sizes"][1], 1)):
        if tuple(x.shape[1:]) != tuple(entry["shape"]):
            differences.append(f"{part} images of shape {tuple(x.shape[1:])}, not {tuple(entry['shape'])}")
        if len(x) != size:
            differences.append(f"{len(x)} {part} images, not {size}")
        counts = np.bincount(np.asarray(y, np.int64), minlength=len(entry["classes"])).tolist()
        if entry["per_class"] and counts != [entry["per_class"][each]] * len(entry["classes"]):
            differences.append(f"{part} images per class {counts}, not {entry['per_class'][each]} each")
    return differences


def _load_from_dir(name, directory):
    """The first of `name`'s layouts found in `directory`, read and checked; None when there is none.

    In order: its `.npz`; for a dataset distributed as an archive
    (CIFAR-10) the archive, the folder it extracts to or the batch files;
    the four IDX files (MNIST's and Fashion-MNIST's, read for CIFAR-10 too,
    so the error can say which dataset they hold).
    """
    if not os.path.isdir(directory):
        return None
    entry = DATASETS[name]
    for npz in entry["npz"]:
        path = os.path.join(directory, npz)
        if os.path.isfile(path):
            return _checked(name, path, *read_npz(path), shape=entry["shape"])
    if entry["archive"] is not None:
        found = _load_cifar(name, directory)
        if found is not None:
            return found
    paths = [_idx_path(directory, f) for f in IDX_FILES]
    present = [p for p in paths if p]
    if not present:
        return None
    if len(present) < len(paths):
        missing = [f for f, p in zip(IDX_FILES, paths) if not p]
        raise DataError(f"Dataset {name!r} in {directory} is incomplete: missing {', '.join(missing)}.")
    x_train, y_train = read_idx_pair(paths[0], paths[1])
    x_test, y_test = read_idx_pair(paths[2], paths[3])
    return _checked(name, directory, x_train, y_train, x_test, y_test, shape=IMAGE_SHAPE)


def _load_cifar(name, directory):
    """CIFAR-10 from `directory`: its archive (checked by its SHA-256), its extracted folder, or the batch files.

    The first good copy in that order is read. A bad one (an archive of
    another hash or that cannot be read, a folder missing batches or not of
    CIFAR-10's form) gives way to the next, with a note on stderr naming
    what was wrong with it and the copy read instead; when no copy is good,
    the error names what is wrong with each (one bad copy alone: its own
    error). None when `directory` holds no copy at all.
    """
    from kerascnn.cifar import CIFAR_BATCHES, CIFAR_FOLDER, file_sha256, read_cifar

    entry = DATASETS[name]
    names, url, sha256 = entry["archive"]
    bad = []  # DataError per bad copy, in the order tried
    for archive in names:
        path = os.path.join(directory, archive)
        if not os.path.isfile(path):
            continue
        found = file_sha256(path)
        if found != sha256:
            bad.append(DataError(
                f"{path} is not the {entry['title']} archive that keras.datasets.{name} downloads: its "
                f"sha256 is {found}, expected {sha256}. Is it a complete download of {url}? "
                f"Received: dataset={name!r}"
            ))
            continue
        try:
            return _passed_over(bad, _checked(name, path, *read_cifar(path), shape=entry["shape"]))
        except DataError as e:
            bad.append(e)
    for folder in (os.path.join(directory, CIFAR_FOLDER), directory):
        present = [b for b in CIFAR_BATCHES if os.path.isfile(os.path.join(folder, b))]
        if not present:
            continue
        if len(present) < len(CIFAR_BATCHES):
            missing = [b for b in CIFAR_BATCHES if b not in present]
            bad.append(DataError(f"Dataset {name!r} in {folder} is incomplete: missing {', '.join(missing)}."))
            continue
        try:
            data = _checked(name, folder, *read_cifar(folder), shape=entry["shape"])
            if bad:  # a fallback must be the dataset itself; `load_dataset` checks a first choice
                held = identify(data, name)
                if held != name:
                    raise DataError(f"{folder} holds {held}, not {name}.")
            return _passed_over(bad, data)
        except DataError as e:
            bad.append(e)
    if len(bad) == 1:
        raise bad[0]
    if bad:
        each = " ".join(f"({i}) {_unreceived(e)}" for i, e in enumerate(bad, 1))
        raise DataError(f"No copy of {entry['title']} in {directory} can be read: {each} Received: dataset={name!r}")
    return None


def _unreceived(error):
    """An error's message without its closing `Received: ...`, to be quoted in another."""
    return str(error).split(" Received: ")[0]


def _passed_over(bad, data):
    """`data`, after a note on stderr naming the bad copies `bad` passed over for it, if any."""
    if bad:
        why = " ".join(_unreceived(e) for e in bad)
        print(f"note: {why} Read {data.source} instead.", file=sys.stderr, flush=True)
    return data


def _idx_path(directory, gz_name):
    for candidate in (gz_name, gz_name[: -len(".gz")]):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


def _checked(name, source, x_train, y_train, x_test, y_test, shape=IMAGE_SHAPE):
    """The arrays as a `Dataset` of uint8 images (N, *shape) and labels (N,), or a `DataError` naming `source`.

    Images of one channel may come without it ((N, 28, 28)); labels may come
    as a column ((N, 1), Keras' CIFAR-10).
    """
    import numpy as np

    shape, arrays = tuple(shape), []
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if x.shape[1:] != shape and not (shape[2] == 1 and x.shape[1:] == shape[:2]):
            raise DataError(
                f"{source}: {split} images have shape {x.shape[1:]}; expected {shape[:2] if shape[2] == 1 else shape}."
            )
        if y.ndim != 1:
            raise DataError(f"{source}: {split} labels have shape {y.shape}; expected ({len(y)},) or ({len(y)}, 1).")
        if len(x) != len(y):
            raise DataError(f"{source}: {len(x)} {split} images but {len(y)} labels; they must match.")
        if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
            raise DataError(
                f"{source}: {split} labels must be in 0..{NUM_CLASSES - 1}; found {y.min()}..{y.max()}."
            )
        arrays += [x.reshape((-1,) + shape).astype(np.uint8, copy=False), y.astype(np.uint8, copy=False)]
    return Dataset(name, source, *arrays)


def read_idx(path, magic):
    """Reads one IDX file (gzipped or not) and returns its uint8 array.

    Raises:
        DataError: the file is truncated, not gzip, or has the wrong magic.
    """
    import numpy as np

    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot be read ({e}); is it a complete, uncorrupted download?") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX header.")
    found = struct.unpack(">I", raw[:4])[0]
    if found != magic:
        raise DataError(f"{path}: IDX magic number is 0x{found:08x}; expected 0x{magic:08x}.")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: header promises {expected} bytes of data {tuple(dims)} but the file holds "
            f"{len(raw) - header}; the file is truncated or corrupt."
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def read_idx_pair(images_path, labels_path):
    return read_idx(images_path, _IDX_IMAGES_MAGIC), read_idx(labels_path, _IDX_LABELS_MAGIC)


def read_npz(path):
    """Reads Keras' `.npz` layout without unpickling anything."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_KEYS if k not in f.files]
            if missing:
                raise DataError(f"{path}: missing keys {missing}; expected keys {list(NPZ_KEYS)}.")
            return tuple(f[k] for k in NPZ_KEYS)
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError (pickled objects), OSError
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e}).") from None


def _download(name):
    """`name` through `keras.datasets`, then recognised by its content like any other copy."""
    import importlib

    loader = importlib.import_module(f"keras.datasets.{DATASETS[name]['keras']}")
    (x_train, y_train), (x_test, y_test) = loader.load_data()
    data = _checked(name, f"keras.datasets.{name}", x_train, y_train, x_test, y_test, shape=DATASETS[name]["shape"])
    held = identify(data, name)
    if held != name:
        raise DataError(f"keras.datasets.{name} gave {held}'s images, not {name}'s; it was not used. "
                        f"Received: dataset={name!r}")
    return data


def split(data, val_size=5000, subset=None, seed=777):
    """Carves a seeded validation split from the training set.

    The validation images are a seeded random sample of the training set;
    the training split is the rest, in the original order, optionally cut
    to its first `subset` images. The test set is passed through untouched.

    For your own images (`DataSpec.raw_pixels`) the validation split is
    `val_size` images or a tenth of the training part (`OWN_VAL_SHARE`),
    whichever is fewer, so a folder of a few hundred pictures needs no flag;
    it is stratified (`stratified_indices`: each class's share, at least one
    picture of each), and every class must then be in every split. A
    validation set given with the data (`Dataset.x_val`, a folder's `val/`)
    is used as it is. MNIST and Fashion-MNIST keep their plain seeded sample,
    so their splits, and the numbers measured on them, stay as they were.

    Raises:
        DataError: `val_size` or `subset` asks for more images than there
            are, or (your own images) a class is missing from a split.
    """
    import numpy as np

    n = len(data.x_train)
    given = data.x_val is not None
    if given:
        train_idx, val_idx = np.arange(n), None
        val_size = len(data.x_val)
    else:
        if data.spec.raw_pixels:
            val_size = max(1, min(val_size, int(n * OWN_VAL_SHARE)))
        if val_size >= n:
            raise DataError(f"val_size={val_size} leaves no training images; {name_of(data)} has {n}.")
        if data.spec.raw_pixels:
            val_idx = stratified_indices(data.y_train, val_size, seed)
            train_idx = np.setdiff1d(np.arange(n), val_idx)
        else:
            order = np.random.default_rng(seed).permutation(n)
            val_idx = np.sort(order[:val_size])
            train_idx = np.sort(order[val_size:])
    if subset is not None:
        if subset > len(train_idx):
            raise DataError(
                f"subset={subset} is larger than the {len(train_idx)} training images of "
                f"{name_of(data)} left after the {val_size}-image validation split."
            )
        train_idx = train_idx[:subset]
    x_val, y_val = (data.x_val, data.y_val) if given else (data.x_train[val_idx], data.y_train[val_idx])
    splits = Splits(
        data.x_train[train_idx],
        data.y_train[train_idx],
        x_val,
        y_val,
        data.x_test,
        data.y_test,
        data.spec,
    )
    if data.spec.raw_pixels:
        check_every_class(splits, subset)
    return splits


def stratified_indices(labels, count, seed):
    """A seeded sample of about `count` of `labels`' indices, each class in its share, sorted.

    Each class gives its share of `count` (the largest remainders round
    up, so the total is `count`), at least one and never all of its own.

    >>> import numpy as np
    >>> stratified_indices(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]), 5, 0).tolist()
    [2, 3, 4, 5, 8]
    """
    import numpy as np

    labels = np.asarray(labels)
    classes, sizes = np.unique(labels, return_counts=True)
    quota = sizes * count / len(labels)
    take = np.floor(quota).astype(int)
    extra = count - take.sum()
    take[np.argsort(-(quota - take), kind="stable")[:extra]] += 1
    take = np.clip(take, 1, np.maximum(sizes - 1, 1))
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), t, replace=False) for c, t in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


IMBALANCE = 10  # the start block warns when the largest class has more than this many times the smallest's pictures


def check_every_class(splits, subset=None):
    """Every class in the training, validation and test splits, or a `DataError` naming those that are not.

    Records the pictures per class and split in the spec (`class_counts`,
    in `data.json`; the start block's imbalance warning reads it).
    """
    import numpy as np

    names = splits.spec.class_names
    counts = {part: np.bincount(np.asarray(y, np.int64), minlength=len(names)).tolist()
              for part, y in (("train", splits.y_train), ("validation", splits.y_val), ("test", splits.y_test))}
    missing = [(names[c], part) for part, n in counts.items() for c in range(len(names)) if n[c] == 0]
    if missing:
        listed = ", ".join(f"{name!r} has no {part} pictures" for name, part in missing[:10])
        cut = f" (after --subset {subset})" if subset is not None else ""
        raise DataError(
            f"Every class must be in the training, validation and test splits{cut}: {listed}. Give each class at "
            f"least {MIN_PER_CLASS} pictures (one for each split; more to learn from), or remove it. "
            f"Received: pictures per class {{split: counts}} = {counts}, classes={list(names)}"
        )
    splits.spec.record["class_counts"] = counts


def imbalance_warning(spec):
    """One line when the largest class holds more than `IMBALANCE` times the smallest's pictures, else None."""
    counts = spec.record.get("class_counts")
    if not counts:
        return None
    total = [sum(n) for n in zip(*counts.values())]
    big, small = max(range(len(total)), key=total.__getitem__), min(range(len(total)), key=total.__getitem__)
    if total[big] <= IMBALANCE * total[small]:
        return None
    names = spec.class_names
    return (f"warning: the classes are imbalanced {total[big] / total[small]:.0f} to 1 ({names[big]!r}: {total[big]} "
            f"pictures, {names[small]!r}: {total[small]}); the mean accuracy hides the small classes: read the "
            f"per-class accuracy at the end.")


def name_of(data):
    return f"{data.name!r} ({data.source})"


def scale_images(images):
    """uint8 pixels to float32 in [0, 1]: the one place images are scaled.

    Takes a NumPy array (evaluation, summaries, Keras without TensorFlow) or
    a tensor inside the `tf.data` graph (`make_dataset`).

    >>> import numpy as np
    >>> scale_images(np.array([0, 51, 255], np.uint8))
    array([0. , 0.2, 1. ], dtype=float32)
    """
    import numpy as np

    if isinstance(images, np.ndarray):
        return images.astype(np.float32) / np.float32(255)
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 255.0


def model_input(images, raw_pixels):
    """NumPy uint8 images as a model takes them: raw 0..255 pixels as float32 for a model that scales
    its own (`DataSpec.raw_pixels`, `kerascnn.layers.takes_raw_pixels`), else scaled to [0, 1]."""
    import numpy as np

    return np.asarray(images, np.float32) if raw_pixels else scale_images(images)
