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

The folder is read by `keras.utils.image_dataset_from_directory` (PNG,
JPEG, GIF, BMP; subfolders of a class folder included; symbolic links to
folders inside a class folder are not followed, as Keras does), after a
scan with Pillow that reads every file's header and checks it:

* files whose names do not end in an image extension (`notes.txt`,
  `Thumbs.db`) are **skipped and counted** in a note: they never claimed
  to be images;
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
three channels and the transparency of RGBA ones dropped; a note says how
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
`SHUFFLE_BYTES`, no longer the same as in memory. An `.npz` is always
read into memory.
"""

import collections
import errno
import hashlib
import os
import warnings

import numpy as np

from kerascnn.config import COLOR_MODES, STREAMS
from kerascnn.data import DataError, Dataset, DataSpec, read_npz

EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # those image_dataset_from_directory reads
GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
TEST_SHARE = 0.2  # of each class, when the folder has no test/ part
MAX_LISTED = 10  # bad files named in one message
STREAM_SHARE = 0.25  # stream="auto": from disk when the decoded pictures would take more of the memory
SHUFFLE_BYTES = 256 * 2**20  # with a cache: the shuffle buffer's size, in decoded pixels


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
    return _load_npz(path, image_size, color_mode)


def _size(image_size):
    if image_size is None:
        return None
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def _load_folder(root, image_size, color_mode, seed, log, stream):
    parts = {p: os.path.join(root, p) for p in ("train", "test")}
    split_layout = all(os.path.isdir(p) for p in parts.values())
    scans = {p: scan_folder(d) for p, d in parts.items()} if split_layout else {"all": scan_folder(root)}
    first = next(iter(scans.values()))
    if split_layout and scans["test"].classes != first.classes:
        raise DataError(_class_mismatch(parts["test"], scans["test"].classes, first.classes, "train/"))
    files = [f for scan in scans.values() for f in scan.files]
    size, mode = _choose_format(files, image_size, color_mode, log)
    skipped = sum(scan.skipped for scan in scans.values())
    if skipped:
        examples = ", ".join(f for scan in scans.values() for f in scan.skipped_names)[:300]
        log(f"note: {skipped} files without an image extension {EXTENSIONS} were skipped: {examples}")
    channels = 1 if mode == "grayscale" else 3
    on_disk = _streams(stream, len(files) * size[0] * size[1] * channels, log)
    arrays = {}
    for p, scan in scans.items():
        images = ImageFiles([path for path, _, _ in scan.files], size, channels)
        if not on_disk:
            images = _read_folder(parts.get(p, root), first.classes, images)
        arrays[p] = images, np.asarray(scan.labels, np.int32)
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


def _streams(stream, decoded_bytes, log):
    """Whether the pictures stay on disk: `stream`, or for "auto" their decoded size against the memory."""
    if stream != "auto":
        return stream == "on"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if decoded_bytes <= STREAM_SHARE * memory:
        return False
    log(f"note: the pictures would take {decoded_bytes / 2**30:.1f} GiB decoded, over {STREAM_SHARE:.0%} of this "
        f"machine's {memory / 2**30:.0f} GiB: they stream from disk (--stream off reads them into memory).")
    return True


class ImageFiles:
    """Pictures left on disk, decoded by the input pipeline as it needs them (streaming).

    It stands for the uint8 array (N, height, width, channels) its files
    decode to: `len`, `shape`, indexing (`files[indices]` is another
    `ImageFiles`) and `np.asarray(files)`, which decodes them all, for the
    parts needed whole (validation pictures in TensorBoard, a test set).
    `batches` is the `tf.data` pipeline that `data.make_dataset` feeds a
    model from.

    Decoding is `image_dataset_from_directory`'s: `tf.io.decode_image` to
    `channels` (grey repeated into RGB, transparency dropped), a bilinear
    resize to `size`, then rounded to uint8 as `_read_folder` does.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, paths, size, channels):
        self.paths = np.asarray(paths, dtype=str)
        self.size, self.channels = tuple(size), channels

    @property
    def shape(self):
        return (len(self.paths), *self.size, self.channels)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        return ImageFiles(self.paths[index], self.size, self.channels)

    def __array__(self, dtype=None, copy=None):
        batches = [x for x, _ in self.batches(np.zeros(len(self), np.int32), 256).as_numpy_iterator()]
        pixels = np.concatenate(batches) if batches else np.zeros(self.shape, np.uint8)
        return pixels if dtype is None else pixels.astype(dtype)

    def decode(self, path):
        """The uint8 pixels of the file at `path` (a string tensor), inside a `tf.data` graph."""
        import tensorflow as tf

        image = tf.io.decode_image(tf.io.read_file(path), channels=self.channels, expand_animations=False)
        image = tf.image.resize(image, self.size, method="bilinear")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return tf.ensure_shape(image, (*self.size, self.channels))

    def batches(self, labels, batch_size, shuffle=False, seed=777, epoch=None, cache=None):
        """A `tf.data.Dataset` of (uint8 images, labels) batches, decoded in parallel ahead of the model.

        Args:
            labels: array (N,), the label of each file.
            shuffle, seed, epoch: as `data.make_dataset`: without a cache, the
                same per-epoch order as the pictures in memory would have.
            cache: str or None, a folder: the decoded pictures are written
                there on the first pass and read back after it; the order
                then comes from a shuffle buffer of `SHUFFLE_BYTES`.
        """
        import tensorflow as tf

        from kerascnn.data import epoch_order, epoch_seed

        paths, labels = tf.constant(self.paths), tf.constant(labels)

        def load(i):
            return self.decode(tf.gather(paths, i)), tf.gather(labels, i)

        parallel = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if cache is None:
            indices = epoch_order(len(self), seed, epoch) if shuffle else tf.data.Dataset.range(len(self))
            ds = indices.map(load, **parallel)
        else:
            decoded = tf.data.Dataset.range(len(self)).map(load, **parallel).cache(self.cache_file(cache))
            buffer = max(1, min(len(self), SHUFFLE_BYTES // int(np.prod(self.shape[1:]))))
            if not shuffle:
                ds = decoded
            elif epoch is None:
                ds = decoded.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
            else:  # each pass's buffer seeded by (seed, epoch), read when the pass starts
                ds = tf.data.Dataset.from_tensors(0).flat_map(
                    lambda _: decoded.shuffle(buffer, seed=epoch_seed(seed, epoch)))
        ds = ds.batch(batch_size)
        return ds.apply(tf.data.experimental.assert_cardinality(-(-len(self) // batch_size)))

    def cache_file(self, folder):
        """The cache's file prefix in `folder` (made if need be): named by the files (and their sizes
        and times), the size and the channels, so a changed picture or a new `--image-size` makes a
        new cache. The lock file of a cache never finished is removed."""
        digest = hashlib.sha256(repr((self.size, self.channels)).encode())
        for path in self.paths:
            info = os.stat(path)
            digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        os.makedirs(folder, exist_ok=True)
        prefix = os.path.join(folder, f"images-{digest.hexdigest()[:16]}")
        lock = prefix + ".lockfile"
        if os.path.exists(lock) and not os.path.exists(prefix + ".index"):
            os.remove(lock)  # left by a run stopped during its first pass; its cache was never finished
        return prefix


class FolderScan:
    """What `scan_folder` found: class names (sorted), image files, (path, size, mode) each, their
    labels, and skips."""

    def __init__(self, classes, files, labels, skipped_names):
        self.classes, self.files, self.labels = classes, files, labels
        self.skipped_names, self.skipped = skipped_names[:MAX_LISTED], len(skipped_names)


def scan_folder(root):
    """Checks a folder of class subfolders and reads every image's header (size, colour mode).

    Raises:
        DataError: see the module docstring; the message names the folder or files.
    """
    try:
        entries = sorted(os.listdir(root))
    except OSError as e:
        raise DataError(f"{root}: cannot be read ({e.strerror}).") from None
    classes = []
    for name in entries:
        full = os.path.join(root, name)
        _check_link(full, root)
        if os.path.isdir(full):
            classes.append(name)
    if not classes:
        raise DataError(
            f"{root} has no class subfolders: a dataset folder holds one subfolder per class "
            f"(e.g. {root}/cats/*.png, {root}/dogs/*.png). Received: dataset={root!r}"
        )
    if len(classes) < 2:
        raise DataError(
            f"{root} has only one class ({classes[0]!r}): a classifier needs at least 2 class subfolders."
        )
    files, labels, skipped, broken = [], [], [], []
    for label, name in enumerate(classes):
        found = 0
        for path in _walk(os.path.join(root, name), root):
            if not path.lower().endswith(EXTENSIONS):
                skipped.append(os.path.relpath(path, root))
                continue
            try:
                size, mode = read_header(path)
            except DataError as e:
                broken.append(str(e))
                continue
            files.append((path, size, mode))
            labels.append(label)
            found += 1
        if not found and not broken:
            raise DataError(
                f"{os.path.join(root, name)}: the class folder {name!r} has no images ({', '.join(EXTENSIONS)}); "
                "add some or remove the folder."
            )
    if broken:
        listed = "\n  ".join(broken[:MAX_LISTED])
        more = f"\n  ... and {len(broken) - MAX_LISTED} more" if len(broken) > MAX_LISTED else ""
        raise DataError(
            f"{len(broken)} files in {root} cannot be read as images; nothing was trained or written. "
            f"Move them away (or fix them) and run again:\n  {listed}{more}"
        )
    return FolderScan(classes, files, labels, skipped)


def _walk(folder, root):
    # Like Keras: symbolic links to folders inside a class folder are not followed (no loops).
    for dirpath, dirnames, filenames in sorted(os.walk(folder, followlinks=False)):
        dirnames.sort()
        for name in dirnames:
            _check_link(os.path.join(dirpath, name), root)
        for name in sorted(filenames):
            _check_link(os.path.join(dirpath, name), root)  # a link to itself shows up as a file
            yield os.path.join(dirpath, name)


def _check_link(path, root):
    """A symbolic link that loops (to itself, or to a folder above it) stops the run, naming it."""
    if not os.path.islink(path):
        return
    try:
        target = os.path.realpath(path, strict=True)
    except OSError as e:  # ELOOP: a link to itself or a cycle of links; ENOENT: a broken link
        if os.path.isdir(os.path.dirname(path)) and e.errno == errno.ELOOP:
            raise DataError(f"{path}: a symbolic link loop ({e.strerror}); remove the link.") from None
        return  # a broken link: its file is reported as unreadable, if it claims to be an image
    here = os.path.realpath(os.path.dirname(path))
    if os.path.isdir(target) and (here == target or here.startswith(target.rstrip(os.sep) + os.sep)):
        raise DataError(
            f"{path}: a symbolic link loop: it points to {target}, a folder that holds it; remove the link."
        )


def read_header(path):
    """(height, width) and Pillow mode of an image file, after Pillow's integrity check.

    Raises:
        DataError: missing (a broken link), not an image, truncated or
            corrupt, or a decompression bomb; the message names the file.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                size, mode = (image.height, image.width), image.mode
                if "transparency" in image.info and mode in ("P", "L"):
                    mode = "RGBA" if mode == "P" else "LA"
                image.load()  # decodes it: truncated data and bad checksums show here
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return _bad(path, "too many pixels to decode safely (a decompression bomb?)")
    except UnidentifiedImageError:
        return _bad(path, "not an image, though its name says so")
    except FileNotFoundError:
        return _bad(path, "missing (a broken symbolic link?)")
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        return _bad(path, f"truncated or corrupt ({e})")
    return size, mode


def _bad(path, reason):
    raise DataError(f"{path}: {reason}")


def _choose_format(files, image_size, color_mode, log):
    """The working (height, width) and colour mode: the flags', else the data's; notes on conversions."""
    sizes = collections.Counter(size for _, size, _ in files)
    common = sizes.most_common(1)[0][0]
    size = _size(image_size) or common
    others = sum(n for s, n in sizes.items() if s != size)
    if others:
        log(f"note: {others} of {len(files)} images are not {size[0]}x{size[1]} and are resized to it (bilinear).")
    grey = [path for path, _, mode in files if mode in GREY_MODES]
    mode = color_mode or ("grayscale" if len(grey) == len(files) else "rgb")
    alpha = sum(mode_ in ("RGBA", "LA", "PA") for _, _, mode_ in files)
    if mode == "rgb" and grey:
        log(f"note: {len(grey)} grey images are read as RGB (the grey repeated in three channels).")
    if mode == "grayscale" and len(grey) < len(files):
        log(f"note: {len(files) - len(grey)} colour images are read as grey (--color-mode grayscale).")
    if alpha:
        log(f"note: {alpha} images have transparency; it is dropped.")
    return size, mode


def _read_folder(folder, classes, files):
    """The uint8 pixels of `files` (an `ImageFiles`, in the scan's order), read from `folder` by
    `image_dataset_from_directory`."""
    import keras

    ds = keras.utils.image_dataset_from_directory(
        folder, labels="inferred", label_mode="int", class_names=classes, batch_size=256,
        color_mode="grayscale" if files.channels == 1 else "rgb", image_size=files.size, shuffle=False,
        interpolation="bilinear", follow_links=False, verbose=False,
    )
    pixels = np.concatenate([np.clip(np.rint(images), 0, 255).astype(np.uint8) for images, _ in ds.as_numpy_iterator()])
    if list(ds.file_paths) == files.paths.tolist():
        return pixels  # already in the scan's order: no second copy
    where = {path: i for i, path in enumerate(ds.file_paths)}
    return pixels[[where[path] for path in files.paths]]


def stratified_test_indices(labels, share, seed):
    """A seeded sample of `share` of each class's indices (at least one each), sorted.

    >>> stratified_test_indices(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]), 0.5, 0).tolist()
    [2, 3, 4, 5, 8]
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = max(1, min(len(members) - 1, int(round(len(members) * share))))
        chosen.append(rng.choice(members, take, replace=False))
    return np.sort(np.concatenate(chosen))


def _class_mismatch(where, found, expected, whose):
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    return (
        f"{where}: its classes differ from {whose}'s: missing {missing}, extra {extra}. "
        f"Received: classes={found}, expected {expected}"
    )


def check_classes(where, found, expected, whose="the model"):
    """Raises `DataError` naming `where` when its class names are not `expected`, in order."""
    if list(found) != list(expected):
        raise DataError(_class_mismatch(where, list(found), list(expected), whose))


def _load_npz(path, image_size, color_mode):
    x_train, y_train, x_test, y_test = read_npz(path)
    names = None
    with np.load(path, allow_pickle=False) as f:
        if "class_names" in f.files:
            names = [str(n) for n in f["class_names"]]
    xs = []
    for split, x in (("x_train", x_train), ("x_test", x_test)):
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise DataError(f"{path}: `{split}` must be (N, H, W), (N, H, W, 1) or (N, H, W, 3). Received: "
                            f"{split}.shape={x.shape}")
        if x.dtype != np.uint8:
            raise DataError(f"{path}: `{split}` must hold uint8 pixels 0..255. Received: {split}.dtype={x.dtype}")
        if color_mode == "rgb" and x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
        elif color_mode == "grayscale" and x.shape[-1] == 3:
            x = np.rint(x @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[..., None]
        xs.append(x)
    if xs[0].shape[1:] != xs[1].shape[1:]:
        raise DataError(f"{path}: train images are {xs[0].shape[1:]} but test images {xs[1].shape[1:]}.")
    classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    names = names or [str(c) for c in range(classes)]
    for split, y in (("y_train", y_train), ("y_test", y_test)):
        if len(y) and (y.min() < 0 or y.max() >= len(names)):
            raise DataError(f"{path}: `{split}` labels must be in 0..{len(names) - 1}. Received: "
                            f"{y.min()}..{y.max()}")
    if len(names) < 2:
        raise DataError(f"{path}: only one class; a classifier needs at least 2.")
    shape = xs[0].shape[1:]
    size = _size(image_size) or shape[:2]
    spec = DataSpec(names, shape, raw_pixels=True, image_size=size,
                    record={"source": os.path.abspath(path), "color_mode": COLOR_MODES[shape[-1] == 3]})
    name = os.path.splitext(os.path.basename(path))[0]
    return Dataset(name, path, xs[0], y_train.astype(np.int32), xs[1], y_test.astype(np.int32), spec)
