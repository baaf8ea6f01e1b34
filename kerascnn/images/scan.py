"""A folder of class subfolders, checked: every image's header read with Pillow, links and empty classes caught.

What `scan_folder` refuses, and why, is in `kerascnn.images`' docstring.
"""

import collections
import errno
import os
import warnings

import numpy as np

from kerascnn.data import DataError
from kerascnn.images.decode import has_alpha, image_extensions, open_image

EXTENSIONS = image_extensions()  # every format Pillow decodes here, as predict reads them
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
MAX_LISTED = 10  # bad files named in one message


def as_size(image_size):
    """`--image-size` as (height, width): N is N x N; None stays None."""
    if image_size is None:
        return None
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


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
            claims = path.lower().endswith(EXTENSIONS)
            if not claims and (os.path.splitext(os.path.basename(path))[1] or not _is_picture(path)):
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
    """(height, width) as shown (EXIF orientation applied) and Pillow mode of an image file, after a full decode.

    The decode is `kerascnn.images.decode.open_image`'s, the one every path uses.
    A palette or grey picture with a transparent colour reports "RGBA" or "LA".

    Raises:
        DataError: missing (a broken link), not an image, truncated or
            corrupt, or a decompression bomb; the message names the file.
    """
    image = open_image(path)
    size, mode = (image.height, image.width), image.mode
    if has_alpha(image) and mode in ("P", "L", "1", "RGB"):
        mode = "LA" if mode in ("L", "1") else "RGBA"
    return size, mode


def _is_picture(path):
    """Whether a file with no extension is a picture Pillow can open (its header only): such a file is
    read like any picture, as `predict` reads it; any other is skipped."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return image.format not in ("EPS", "MPEG")
    except Exception:  # noqa: BLE001 - anything Pillow cannot identify is not a picture
        return False


def choose_format(files, image_size, color_mode, log):
    """The working (height, width) and colour mode: the flags', else the data's; notes on conversions."""
    sizes = collections.Counter(size for _, size, _ in files)
    common = sizes.most_common(1)[0][0]
    size = as_size(image_size) or common
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
        log(f"note: {alpha} images have transparency; it is composited on white.")
    return size, mode


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


def class_mismatch(where, found, expected, whose):
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    return (
        f"{where}: its classes differ from {whose}'s: missing {missing}, extra {extra}. "
        f"Received: classes={found}, expected {expected}"
    )


def check_classes(where, found, expected, whose="the model"):
    """Raises `DataError` naming `where` when its class names are not `expected`, in order."""
    if list(found) != list(expected):
        raise DataError(class_mismatch(where, list(found), list(expected), whose))
