"""A folder of class subfolders, checked: every image's header read with Pillow, links and empty classes caught.

What `scan_folder` refuses, and why, is in `kerascnn.images`' docstring.
"""

import collections
import errno
import os
import unicodedata
import warnings

import numpy as np

from kerascnn.data import DataError
from kerascnn.images.decode import NOT_DECODED, has_alpha, image_extensions, open_image

EXTENSIONS = image_extensions()  # every format Pillow decodes here, as predict reads them
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
MAX_LISTED = 10  # bad files named in one message
# The longest side the model works at by default. Larger pictures are scaled down to it, aspect kept:
# a 400x300 photo is worked at 128x96, a 12-megapixel one at 128x96 too (`capped_size`).
MAX_SIDE = 128


MAC_METADATA = "__MACOSX"  # a macOS zip's folder of resource forks; `._x.png` and `.DS_Store` are hidden names


def is_hidden(name):
    """Whether a file or folder is hidden or macOS metadata (`.x`, `._x.png`, `.DS_Store`, `__MACOSX`): skipped."""
    return name.startswith(".") or name == MAC_METADATA


def nfc(name):
    """A name in Unicode's composed form (NFC): "é" typed on Linux and stored by macOS (NFD) is one name."""
    return unicodedata.normalize("NFC", name)


def as_size(image_size):
    """`--image-size` as (height, width): N is N x N; None stays None."""
    if image_size is None:
        return None
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def capped_size(size, longest=MAX_SIDE):
    """The default working (height, width) for pictures of `size`: itself, or scaled down to `longest`.

    Pictures whose longer side is at most `longest` keep their size (MNIST's
    28x28, CIFAR's 32x32, 8x8 digits); larger ones are scaled so the longer
    side is `longest`, the aspect kept and each side rounded, never below 8
    pixels nor below the picture's own side.

    >>> capped_size((28, 28)), capped_size((300, 400)), capped_size((3000, 4000)), capped_size((10, 4000))
    ((28, 28), (96, 128), (96, 128), (8, 128))
    """
    height, width = size
    scale = longest / max(height, width)
    if scale >= 1:
        return tuple(size)
    return tuple(max(round(side * scale), min(side, 8)) for side in (height, width))


def cap_note(common, size):
    """The one-line note for pictures scaled down by default (`capped_size`); sides as width x height."""
    return (f"note: the pictures are {common[1]}x{common[0]} (width x height), larger than {MAX_SIDE} px on the "
            f"longer side; the model works at {size[1]}x{size[0]} (resized, aspect kept), which keeps its memory "
            f"small. --image-size N works at N x N instead.")


class FolderScan:
    """What `scan_folder` found: class names (sorted, in NFC), image files, (path, size, mode) each, their
    labels, and skips: files without an image extension, and hidden files and macOS metadata (`hidden`)."""

    def __init__(self, classes, files, labels, skipped_names, hidden=()):
        self.classes, self.files, self.labels = classes, files, labels
        self.skipped_names, self.skipped = skipped_names[:MAX_LISTED], len(skipped_names)
        self.hidden = list(hidden)


def scan_folder(root):
    """Checks a folder of class subfolders and reads every image's header (size, colour mode).

    Raises:
        DataError: see the module docstring; the message names the folder or files.
    """
    try:
        entries = sorted(os.listdir(root))
    except OSError as e:
        raise DataError(f"{root}: cannot be read ({e.strerror}).") from None
    folders, hidden = {}, []  # class name (NFC) -> its folder's name as stored
    for name in entries:
        full = os.path.join(root, name)
        if is_hidden(name):
            hidden.append(os.path.relpath(full, root))
            continue
        _check_link(full, root)
        if os.path.isdir(full):
            if nfc(name) in folders:
                raise DataError(
                    f"{root}: the class folders {folders[nfc(name)]!r} and {name!r} are one name spelt two ways "
                    f"(Unicode NFC and NFD); merge them. Received: folders={[folders[nfc(name)], name]}"
                )
            folders[nfc(name)] = name
    classes = sorted(folders)
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
        for path in _walk(os.path.join(root, folders[name]), root, hidden):
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
                f"{os.path.join(root, folders[name])}: the class folder {name!r} has no images "
                f"({', '.join(EXTENSIONS)}); "
                "add some or remove the folder."
            )
    if broken:
        listed = "\n  ".join(broken[:MAX_LISTED])
        more = f"\n  ... and {len(broken) - MAX_LISTED} more" if len(broken) > MAX_LISTED else ""
        raise DataError(
            f"{len(broken)} files in {root} cannot be read as images; nothing was trained or written. "
            f"Move them away (or fix them) and run again:\n  {listed}{more}"
        )
    return FolderScan(classes, files, labels, skipped, hidden)


def _walk(folder, root, hidden):
    # Like Keras: symbolic links to folders inside a class folder are not followed (no loops).
    # Hidden files and folders and macOS metadata are not read; their paths go to `hidden`.
    for dirpath, dirnames, filenames in sorted(os.walk(folder, followlinks=False)):
        if any(is_hidden(part) for part in os.path.relpath(dirpath, folder).split(os.sep) if part != "."):
            continue  # inside a hidden folder, counted once below
        hidden.extend(os.path.relpath(os.path.join(dirpath, n), root) for n in dirnames if is_hidden(n))
        dirnames[:] = sorted(n for n in dirnames if not is_hidden(n))
        for name in dirnames:
            _check_link(os.path.join(dirpath, name), root)
        for name in sorted(filenames):
            if is_hidden(name):
                hidden.append(os.path.relpath(os.path.join(dirpath, name), root))
                continue
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
                return image.format not in NOT_DECODED
    except Exception:  # noqa: BLE001 - anything Pillow cannot identify is not a picture
        return False


def choose_format(files, image_size, color_mode, log):
    """The working (height, width) and colour mode: the flags', else the data's; notes on conversions.

    The data's size is its most common one, scaled down to `MAX_SIDE` on the
    longer side when it is larger (`capped_size`), with a note.
    """
    sizes = collections.Counter(size for _, size, _ in files)
    common = sizes.most_common(1)[0][0]
    size = as_size(image_size) or capped_size(common)
    if size != common and image_size is None:
        log(cap_note(common, size))
        size_of = common  # the note on other sizes is about the pictures, not the cap
    else:
        size_of = size
    others = sum(n for s, n in sizes.items() if s != size_of)
    if others:
        to = "it" if size_of == size else f"{size[0]}x{size[1]}"
        log(f"note: {others} of {len(files)} images are not {size_of[0]}x{size_of[1]} and are resized to {to} (bilinear).")
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
    found, expected = [nfc(n) for n in found], [nfc(n) for n in expected]
    if found != expected:
        raise DataError(class_mismatch(where, list(found), list(expected), whose))
