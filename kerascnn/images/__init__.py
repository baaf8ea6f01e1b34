"""Your own images: a folder of class subfolders, or an `.npz`, as a `data.Dataset`.

`--dataset` takes a name (`mnist`, `fashion_mnist`) or a path:

* **A folder in Keras' layout**: one subfolder per class, its name the
  class's name (any language). With `train/` and `test/` subfolders, each
  holds the same classes and the test part is used only for the final
  score. Otherwise a seeded, stratified share of each class
  (`TEST_SHARE`) is set aside as the test part; which files, is recorded
  in the run directory (`data.json`).
* **An `.npz`** with `x_train`, `y_train`, `x_test`, `y_test` (uint8
  pixels (N, H, W) or (N, H, W, C), integer labels from 0) and, if it
  likes, `class_names`.

The folder is read with subfolders of a class folder included and
symbolic links to folders inside a class folder not followed, as
`keras.utils.image_dataset_from_directory` does, but every picture is
decoded by the one decoder of every path (`kerascnn.images.decode`:
Pillow, every format it reads, EXIF orientation applied, palettes
expanded, every mode converted the same way, transparency on white),
after a scan that decodes and checks every file (`kerascnn.images.scan`):

* files whose names do not end in an image extension (`notes.txt`,
  `Thumbs.db`), and files with no extension that Pillow does not
  recognise, are **skipped and counted** in a note: they never claimed
  to be images (a picture with no extension is read, as `predict` reads it);
* a file that claims to be an image and cannot be decoded (truncated,
  corrupt, not what its name says, a decompression bomb, a broken link)
  **stops** the run before anything is written, with every such file
  listed (up to `MAX_LISTED`): a labelled set with a broken file is
  usually an incomplete copy, and training on what is left would change
  the results without anyone noticing. Move the files away, or fix them,
  and run again;
* an empty folder, a single class, a class folder with no images, or a
  symbolic link that points back to a folder above it, stop the run too,
  naming the folder.

Sizes and colours follow the data: the most common size is the model's
working size (`--image-size N` for N x N), and the colour mode is
`grayscale` when every picture is grey, else `rgb` (`--color-mode`).
Pictures of other sizes are resized (bilinear), grey ones repeated into
three channels and transparent ones composited on white; a note says how
many. The pixels stay uint8; the model resizes and scales them itself
(`kerascnn.layers.pixel_input`), so a saved model takes raw pixels.

**Memory or disk** (`stream`): a folder whose decoded pictures would take
more than `STREAM_SHARE` of this machine's memory is not read into memory
but streamed: the pipeline reads and decodes each batch's files as it is
needed, in parallel and ahead of the model (`ImageFiles`), so memory holds
file names, not pixels, however large the folder. Both ways decode with the
same operations and draw the same per-epoch order, so a run trains on the
same batches either way. With a cache folder (`cache_dir`), the decoded
pictures are written there during the first epoch and read back after it
(`tf.data.Dataset.cache`); the order then comes from a shuffle buffer of
`kerascnn.pipeline.SHUFFLE_BYTES`, no longer the same as in memory. An `.npz` is always
read into memory (`kerascnn.images.npz`).

The modules, by job: `decode` (the one decoder), `scan` (the folder checked), `stream` (pictures left
on disk: `ImageFiles`), `npz`; this one puts them together. The `tf.data`
pipelines that feed a model from either are `kerascnn.pipeline`'s.
"""

import os

import numpy as np

from kerascnn.config import COLOR_MODES, STREAMS
from kerascnn.data import DataError, Dataset, DataSpec
from kerascnn.images.decode import decode_image
from kerascnn.images.npz import load_npz
from kerascnn.images.scan import (
    EXTENSIONS,
    FolderScan,
    check_classes,
    choose_format,
    class_mismatch,
    read_header,
    scan_folder,
    stratified_test_indices,
)
from kerascnn.images.stream import STREAM_SHARE, ImageFiles, streams_from_disk

TEST_SHARE = 0.2  # of each class, when the folder has no test/ part


def is_image_dataset(name):
    """Whether `--dataset` names a folder or an `.npz` file rather than a built-in dataset."""
    return os.path.isdir(name) or name.endswith(".npz")


def dataset_label(dataset):
    """A label of `dataset` fit for a file name: its name, or its folder's or file's base name.

    >>> dataset_label("mnist"), dataset_label("photos/leaves/"), dataset_label("my/digits.npz")
    ('mnist', 'leaves', 'digits')
    """
    return os.path.splitext(os.path.basename(os.path.normpath(dataset)))[0] or "images"


def load_images(path, image_size=None, color_mode=None, seed=777, log=print, stream="auto"):
    """Reads a folder or an `.npz` (see the module docstring) into a `Dataset`.

    Args:
        path: str, the folder or `.npz` file.
        image_size: int (N x N), (height, width) or None, the size the model works at.
            Defaults to the data's most common size.
        color_mode: "grayscale", "rgb" or None (the data's).
        seed: int, seeds the stratified test split. Defaults to 777.
        log: function printing the notes (skipped files, conversions).
        stream: "auto", "on" or "off": a folder's pictures stay on disk as
            `ImageFiles` ("on"), are decoded into memory ("off"), or stay on
            disk when they would take more than `STREAM_SHARE` of the
            memory ("auto", the default).

    Raises:
        DataError: the folder or file cannot be used; the message names it.
    """
    if color_mode is not None and color_mode not in COLOR_MODES:
        raise DataError(f"`color_mode` must be one of {COLOR_MODES}. Received: color_mode={color_mode!r}")
    if stream not in STREAMS:
        raise DataError(f"`stream` must be one of {STREAMS}. Received: stream={stream!r}")
    if os.path.isdir(path):
        return _load_folder(path, image_size, color_mode, seed, log, stream)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file or folder. Received: dataset={path!r}")
    return load_npz(path, image_size, color_mode)


def _load_folder(root, image_size, color_mode, seed, log, stream):
    parts = {p: os.path.join(root, p) for p in ("train", "test")}
    split_layout = all(os.path.isdir(p) for p in parts.values())
    scans = {p: scan_folder(d) for p, d in parts.items()} if split_layout else {"all": scan_folder(root)}
    first = next(iter(scans.values()))
    if split_layout and scans["test"].classes != first.classes:
        raise DataError(class_mismatch(parts["test"], scans["test"].classes, first.classes, "train/"))
    files = [f for scan in scans.values() for f in scan.files]
    size, mode = choose_format(files, image_size, color_mode, log)
    skipped = sum(scan.skipped for scan in scans.values())
    if skipped:
        examples = ", ".join(f for scan in scans.values() for f in scan.skipped_names)[:300]
        log(f"note: {skipped} files without an image extension {EXTENSIONS} were skipped: {examples}")
    channels = 1 if mode == "grayscale" else 3
    on_disk = streams_from_disk(stream, len(files) * size[0] * size[1] * channels, log)
    arrays = {}
    for p, scan in scans.items():
        images = ImageFiles([path for path, _, _ in scan.files], size, channels)
        arrays[p] = (images if on_disk else np.asarray(images)), np.asarray(scan.labels, np.int32)
    spec = DataSpec(first.classes, (*size, channels), raw_pixels=True,
                    record={"source": os.path.abspath(root), "color_mode": mode, "layout": "train/test",
                            "streamed": on_disk})
    if split_layout:
        (x_train, y_train), (x_test, y_test) = arrays["train"], arrays["test"]
    else:
        x, y = arrays["all"]
        for c, n in enumerate(np.bincount(y, minlength=len(first.classes))):
            if n < 2:
                raise DataError(f"{os.path.join(root, first.classes[c])}: {n} image; a class needs at least 2 "
                                "when a share of each is set aside for testing (or give train/ and test/ folders).")
        test = stratified_test_indices(y, TEST_SHARE, seed)
        train = np.setdiff1d(np.arange(len(y)), test)
        x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
        spec.record.update(layout="one folder", test_share=TEST_SHARE, split_seed=seed,
                           test_files=[os.path.relpath(first.files[i][0], root) for i in test])
    return Dataset(os.path.basename(os.path.normpath(root)), root, x_train, y_train, x_test, y_test, spec)


__all__ = [
    "EXTENSIONS",
    "STREAM_SHARE",
    "TEST_SHARE",
    "FolderScan",
    "ImageFiles",
    "check_classes",
    "dataset_label",
    "decode_image",
    "is_image_dataset",
    "load_images",
    "read_header",
    "scan_folder",
    "stratified_test_indices",
    "streams_from_disk",
]
