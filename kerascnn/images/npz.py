"""Your own images as an `.npz`: `x_train`, `y_train`, `x_test`, `y_test`, and `class_names` if it likes."""

import os

import numpy as np

from kerascnn.config import COLOR_MODES
from kerascnn.data import DataError, Dataset, DataSpec, read_npz
from kerascnn.images.scan import as_size, cap_note, capped_size


def load_npz(path, image_size, color_mode, log=print):
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
    size = as_size(image_size) or capped_size(shape[:2])
    if image_size is None and size != tuple(shape[:2]):
        log(cap_note(shape[:2], size))
    spec = DataSpec(names, shape, raw_pixels=True, image_size=size,
                    record={"source": os.path.abspath(path), "color_mode": COLOR_MODES[shape[-1] == 3]})
    name = os.path.splitext(os.path.basename(path))[0]
    return Dataset(name, path, xs[0], y_train.astype(np.int32), xs[1], y_test.astype(np.int32), spec)
