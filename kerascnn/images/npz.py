"""Your own images as an `.npz`: `x_train`, `y_train`, `x_test`, `y_test`, and `class_names` if it likes."""

import os

import numpy as np

from kerascnn.config import COLOR_MODES
from kerascnn.data import DataError, Dataset, DataSpec, read_npz
from kerascnn.images.scan import as_size, cap_note, capped_size


def load_npz(path, image_size, color_mode, log=print):
    """Reads and checks an `.npz` of your own images (see `kerascnn.images`); every fault is a `DataError`."""
    x_train, y_train, x_test, y_test = read_npz(path)
    names = None
    try:
        with np.load(path, allow_pickle=False) as f:
            if "class_names" in f.files:
                names = [str(n) for n in np.asarray(f["class_names"]).reshape(-1)]
    except ValueError as e:  # an object array: pickled, not read
        raise DataError(f"{path}: `class_names` must be an array of strings, not pickled objects. "
                        f"Received: {e}") from None
    y_train, y_test = (_labels(path, split, x, y) for split, x, y in
                       (("train", x_train, y_train), ("test", x_test, y_test)))
    _check_classes(path, names, y_train, y_test)
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
    if len(names) < 2:
        raise DataError(f"{path}: only one class; a classifier needs at least 2.")
    shape = xs[0].shape[1:]
    size = as_size(image_size) or capped_size(shape[:2])
    if image_size is None and size != tuple(shape[:2]):
        log(cap_note(shape[:2], size))
    spec = DataSpec(names, shape, raw_pixels=True, image_size=size,
                    record={"source": os.path.abspath(path), "color_mode": COLOR_MODES[shape[-1] == 3]})
    name = os.path.splitext(os.path.basename(path))[0]
    return Dataset(name, path, xs[0], y_train.astype(np.int32), xs[1], y_test.astype(np.int32), spec)


def _labels(path, split, x, y):
    """`y_<split>` as int32 labels, one per image, or a `DataError` saying what is wrong with it."""
    key = f"y_{split}"
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2 and len(y) and np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all():
        raise DataError(f"{path}: `{key}` looks one-hot (a row of 0s and one 1 per image); labels are one integer "
                        f"class number per image: save {key}.argmax(axis=1). Received: {key}.shape={y.shape}")
    if y.ndim != 1:
        raise DataError(f"{path}: `{key}` must be one integer label per image, shape (N,). "
                        f"Received: {key}.shape={y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        whole = np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all()
        if not whole:
            hint = (" (names go in `class_names`, labels are their numbers: 0 for class_names[0], ...)"
                    if y.dtype.kind in "USO" else "")
            raise DataError(f"{path}: `{key}` must hold integer class numbers{hint}. Received: {key}.dtype={y.dtype}"
                            f", first labels {y[:3].tolist()}")
    if len(y) != len(x):
        raise DataError(f"{path}: `x_{split}` and `{key}` must have one label per image. Received: "
                        f"len(x_{split})={len(x)}, len({key})={len(y)}")
    if len(y) and y.min() < 0:
        raise DataError(f"{path}: `{key}` labels must be class numbers from 0. Received: {key}.min()={y.min()}")
    return y.astype(np.int32)


def _check_classes(path, names, y_train, y_test):
    """Every class number 0..K-1 used, and `class_names` (if given) naming each once."""
    top = int(max(y_train.max(initial=-1), y_test.max(initial=-1)))
    if names is not None and len(names) != top + 1:
        raise DataError(f"{path}: `class_names` must name each class, 0..{top} (the labels' range): "
                        f"{top + 1} names. Received: {len(names)} class_names {names[:10]}")
    used = set(np.unique(y_train).tolist()) | set(np.unique(y_test).tolist())
    unused = sorted(set(range(top + 1)) - used)
    if unused:
        start = " (labels that start at 1? subtract 1)" if unused == [0] else ""
        raise DataError(f"{path}: the labels skip class {', '.join(map(str, unused[:10]))}: no image has it{start}. "
                        f"Labels are the class numbers 0..K-1, each used. "
                        f"Received: labels {sorted(used)[:20]}")
