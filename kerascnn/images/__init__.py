"""Your own images: a folder of class subfolders, or an `.npz`, as a `data.Dataset`.

`--dataset` takes a name (`mnist`, `fashion_mnist`) or a path:

* **A folder in Keras' layout**: one subfolder per class, its name the
  class's name (any language, compared in NFC). With split folders
  (`SPLIT_NAMES`, any case: `train`/`training`, `val`/`valid`/`validation`/
  `dev`, `test`/`testing`; `split_folders`), each holds the same classes;
  a given test folder is used only for the final score, a given
  validation folder is the validation set. Without a test folder a seeded,
  stratified share of each class (`TEST_SHARE`) is set aside as the test
  part; which files, is recorded in the run directory (`data.json`). Every
  class needs a picture in each split (`data.MIN_PER_CLASS` in all).
  Hidden files and folders and macOS metadata are skipped with one note.
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
working size, scaled down to `MAX_SIDE` (128) pixels on the longer side,
aspect kept, when it is larger, with a note (`capped_size`; `--image-size N`
for N x N), and the colour mode is
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
from kerascnn.data import MIN_PER_CLASS, DataError, Dataset, DataSpec
from kerascnn.images.decode import decode_image
from kerascnn.images.npz import load_npz
from kerascnn.images.scan import (
    EXTENSIONS,
    MAX_SIDE,
    MAX_LISTED,
    FolderScan,
    capped_size,
    check_classes,
    choose_format,
    class_mismatch,
    is_hidden,
    nfc,
    read_header,
    scan_folder,
    stratified_test_indices,
)
from kerascnn.images.stream import STREAM_SHARE, ImageFiles, streams_from_disk

TEST_SHARE = 0.2  # of each class, when the folder has no test/ part
# Split folders, by their names folded to lower case: the role each plays.
SPLIT_NAMES = {"train": "train", "training": "train", "val": "validation", "valid": "validation",
               "validation": "validation", "dev": "validation", "test": "test", "testing": "test"}


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
    return load_npz(path, image_size, color_mode, log)


def _load_folder(root, image_size, color_mode, seed, log, stream):
    parts = split_folders(root)  # role -> folder: {"all": root} for one folder of classes
    scans = {p: scan_folder(d) for p, d in parts.items()}
    first = scans.get("train") or scans["all"]
    for p, scan in scans.items():
        if scan.classes != first.classes:
            whose = f"{os.path.basename(parts['train'])}/"
            raise DataError(class_mismatch(parts[p], scan.classes, first.classes, whose))
    files = [f for scan in scans.values() for f in scan.files]
    size, mode = choose_format(files, image_size, color_mode, log)
    skipped = sum(scan.skipped for scan in scans.values())
    if skipped:
        examples = ", ".join(f for scan in scans.values() for f in scan.skipped_names)[:300]
        log(f"note: {skipped} files without an image extension {EXTENSIONS} were skipped: {examples}")
    hidden = _top_hidden(root, parts) + [os.path.relpath(os.path.join(parts[p], h), root)
                                         for p, scan in scans.items() for h in scan.hidden]
    if hidden:
        log(f"note: {len(hidden)} hidden files and folders and macOS metadata (._*, __MACOSX, .DS_Store) were "
            f"skipped: {', '.join(hidden[:MAX_LISTED])}" + (" ..." if len(hidden) > MAX_LISTED else ""))
    channels = 1 if mode == "grayscale" else 3
    on_disk = streams_from_disk(stream, len(files) * size[0] * size[1] * channels, log)
    arrays = {}
    for p, scan in scans.items():
        images = ImageFiles([path for path, _, _ in scan.files], size, channels)
        arrays[p] = (images if on_disk else np.asarray(images)), np.asarray(scan.labels, np.int32)
    layout = "one folder" if "all" in parts else "/".join(os.path.basename(d) for d in parts.values())
    spec = DataSpec(first.classes, (*size, channels), raw_pixels=True,
                    record={"source": os.path.abspath(root), "color_mode": mode, "layout": layout,
                            "streamed": on_disk})
    x_train, y_train = arrays.get("train") or arrays["all"]
    x_val, y_val = arrays.get("validation", (None, None))
    carved_from = parts.get("train", root)
    # A class must reach every split: what is carved from the training part leaves it at least one picture.
    need = 1 + ("test" not in parts) + ("validation" not in parts)
    small = [(c, n) for c, n in enumerate(np.bincount(y_train, minlength=len(first.classes))) if n < need]
    if small:
        listed = ", ".join(f"{first.classes[c]!r} ({n})" for c, n in small[:MAX_LISTED])
        where = "" if "all" in parts else f" in {carved_from}"
        raise DataError(
            f"{carved_from}: too few pictures to put each class in training, validation and test: {listed}. "
            f"Each class needs at least {need}{where} (at least {MIN_PER_CLASS} in all, one per split); add "
            f"pictures or remove the class. Received: pictures per class="
            f"{dict(zip(first.classes, np.bincount(y_train, minlength=len(first.classes)).tolist()))}"
        )
    if "test" in parts:
        x_test, y_test = arrays["test"]
    else:
        test = stratified_test_indices(y_train, TEST_SHARE, seed)
        train = np.setdiff1d(np.arange(len(y_train)), test)
        x_train, y_train, x_test, y_test = x_train[train], y_train[train], x_train[test], y_train[test]
        spec.record.update(test_share=TEST_SHARE, split_seed=seed,
                           test_files=[os.path.relpath(first.files[i][0], root) for i in test])
    return Dataset(os.path.basename(os.path.normpath(root)), root, x_train, y_train, x_test, y_test, spec,
                   x_val, y_val)


def split_folders(root):
    """The split folders of `root` by role ("train", "validation", "test"), or {"all": root} for one folder of classes.

    Split folders are recognised by their names in any case (`SPLIT_NAMES`).
    A layout is `train/` with `test/`, a validation folder or both (or
    `train/` alone); other folders beside them, two folders for one role,
    or split folders without `train/` are refused.

    Raises:
        DataError: the top-level folders look like split folders but make no layout; the message lists them.
    """
    try:
        names = sorted(n for n in os.listdir(root) if not is_hidden(n) and os.path.isdir(os.path.join(root, n)))
    except OSError as e:
        raise DataError(f"{root}: cannot be read ({e.strerror}).") from None
    roles = {n: SPLIT_NAMES.get(nfc(n).casefold()) for n in names}
    if not any(roles.values()):
        return {"all": root}
    by_role = {}
    for n, role in roles.items():
        by_role.setdefault(role, []).append(n)
    problems = []
    others = by_role.pop(None, [])
    if others:
        problems.append(f"other folders beside them: {others}")
    problems += [f"{len(found)} {role} folders: {found}" for role, found in by_role.items() if len(found) > 1]
    if "train" not in by_role:
        problems.append("no training folder")
    if problems:
        raise DataError(
            f"{root}: its folders look like split folders but make no layout ({'; '.join(problems)}). "
            "A split layout is a training folder (train/ or training/) with a test folder (test/, testing/), "
            "a validation folder (val/, valid/, validation/, dev/) or both, in any case, each holding the same "
            f"class folders, and nothing else beside them; or put the class folders directly in {root} "
            f"(rename a class called like a split). Received: folders={names}"
        )
    return {role: os.path.join(root, by_role[role][0]) for role in ("train", "validation", "test") if role in by_role}


def _top_hidden(root, parts):
    if "all" in parts:
        return []  # scan_folder(root) lists them
    return sorted(n for n in os.listdir(root) if is_hidden(n))


__all__ = [
    "EXTENSIONS",
    "MAX_SIDE",
    "SPLIT_NAMES",
    "STREAM_SHARE",
    "TEST_SHARE",
    "FolderScan",
    "ImageFiles",
    "capped_size",
    "check_classes",
    "dataset_label",
    "decode_image",
    "is_image_dataset",
    "load_images",
    "read_header",
    "scan_folder",
    "split_folders",
    "stratified_test_indices",
    "streams_from_disk",
]
