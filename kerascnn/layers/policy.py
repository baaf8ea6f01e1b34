"""Augmentation policies: how much `best` bends its training pictures, chosen from the data.

A policy is a set of amounts for the augmentation layers
(`kerascnn.layers.augment.augmentation`), written as shares of the
picture's side so that one policy fits a 28-pixel digit and a 224-pixel
photo alike:

* `digits`: rotation up to 15 degrees and a shift of 1/14 of the side
  (2 pixels at 28), no flip. The lecture's augmentation, the numbers every
  MNIST result of this project was measured with. A digit must not be
  mirrored: a flipped 2 or 7 is no digit.
* `photos`: a horizontal flip and a shift of 1/10 of the side: the
  published Fashion-MNIST and CIFAR-10 recipe (flips and a pad-and-crop,
  here a per-image translation). Chosen on validation over a heavier first
  version (also rotation 10 degrees, zoom 10%, and for colour brightness
  and contrast 20%), which under-fit: docs/RESULTS.md, "Beyond digits".
  Never tuned on a test set.
* `none`: no augmentation.

`auto` (the default) picks `digits` for MNIST and for one-channel pictures
of written marks (dark strokes on a plain background, or light on dark:
few pixels inked, and those mostly full strength), `photos` for everything
else: Fashion-MNIST, CIFAR-10, any colour folder, any grey folder of
shaded pictures. A model that does not augment by default (the lecture's
three single CNNs) stays at `none` under `auto`.

The individual flags (`--rotation`, `--shift` in pixels, `--zoom`,
`--flip`, `--brightness`, `--contrast`) override a policy's amounts.

Example:

>>> amounts("photos", size=96, channels=3)["shift"]  # a tenth of the side, in pixels
9.6
>>> amounts("digits", size=28, channels=1) == {"rotation": 15.0, "shift": 2.0, "zoom": 0.0, "flip": False,
...                                            "brightness": 0.0, "contrast": 0.0}
True
"""

import dataclasses

from kerascnn.config import AUGMENT_FIELDS as FIELDS  # the config fields a policy sets
from kerascnn.data import DATASETS  # each built-in dataset's policy is its entry's `policy`; imports no NumPy

MARKS_MAX_INK = 0.3  # written marks: at most this share of the pixels inked (MNIST: 17%, Fashion-MNIST: 45%) ...
MARKS_MAX_GREY = 0.75  # ... and at most this share of the ink in grey tones (MNIST: 51%, Fashion-MNIST: 95%)
SAMPLE = 1000  # pictures looked at to tell written marks from other grey pictures


@dataclasses.dataclass(frozen=True)
class Policy:
    """A policy's amounts; `shift` is a share of the picture's side, `brightness` and `contrast` apply to colour only.

    Attributes:
        rotation: float, degrees either way.
        shift: float, the largest shift either way, as a share of the side.
        zoom: float, the largest zoom either way, as a fraction.
        flip: bool, a random horizontal flip.
        brightness, contrast: float, the largest change either way as a
            fraction (`keras.layers.RandomBrightness`, `RandomContrast`), for
            colour pictures.
    """

    rotation: float = 0.0
    shift: float = 0.0
    zoom: float = 0.0
    flip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0


TABLE = {
    "digits": Policy(rotation=15.0, shift=1 / 14),
    "photos": Policy(shift=0.1, flip=True),
    "none": Policy(),
}


def amounts(name, size, channels):
    """The config values of policy `name` for pictures `size` pixels a side with `channels` channels.

    The shift comes out in pixels at that side (the unit of `--shift`),
    rounded to 1/10,000 of a pixel; brightness and contrast are 0 for
    one-channel pictures.

    Args:
        name: str, "digits", "photos" or "none".
        size: int, the side the model works at (its height).
        channels: int, 1 or 3.

    Returns:
        A dict keyed by `FIELDS`.
    """
    values = dataclasses.asdict(TABLE[name])
    values["shift"] = round(values["shift"] * size, 4)
    if channels == 1:
        values["brightness"] = values["contrast"] = 0.0
    return {field: values[field] for field in FIELDS}


def builder_amounts(arguments):
    """The augmentation amounts among a model builder's arguments: `FIELDS` and `elastic`, those it takes.

    A builder keeps each amount an explicit keyword argument (the registry
    reads them with `inspect.signature` to know which fields a model
    takes) and passes them on together, as `locals()` at its top.

    Example:

    >>> def builder(*, filters=32, rotation=15.0, shift=2.0, elastic=0.0):
    ...     return builder_amounts(locals())
    >>> builder()
    {'rotation': 15.0, 'shift': 2.0, 'elastic': 0.0}

    Args:
        arguments: dict, the builder's arguments by name.

    Returns:
        A dict of the amounts `arguments` holds, in `FIELDS`' order then `elastic`.
    """
    return {name: arguments[name] for name in (*FIELDS, "elastic") if name in arguments}


def ink(images):
    """(share of pixels inked, share of the ink in grey tones) over one-channel uint8 `images`, medians per picture.

    Looks at up to `SAMPLE` pictures spread over `images`. A picture's background is its most common side: dark (MNIST) or light
    (a scan); the other side is ink. A pixel is inked when it is at least
    10% of the way from the background's level, grey when it is between 10%
    and 90%. Written marks have little ink, most of it at full strength;
    photographs and renderings of objects (Fashion-MNIST) are mostly grey.

    Example:

    >>> import numpy as np
    >>> strokes = np.zeros((2, 10, 10, 1), "uint8"); strokes[:, 4:6, 2:8] = 255
    >>> ink(strokes)
    (0.12, 0.0)
    """
    import numpy as np

    picked = images[np.unique(np.linspace(0, len(images) - 1, min(SAMPLE, len(images))).astype(int))]
    x = np.asarray(picked, dtype="float32").reshape(len(picked), -1) / 255.0  # decodes streamed pictures
    light = np.median(x, axis=1, keepdims=True) > 0.5
    x = np.where(light, 1.0 - x, x)  # ink is bright, background dark, whichever way the picture was
    inked = x >= 0.1
    grey = inked & (x <= 0.9)
    share = inked.mean(axis=1)
    grey_share = grey.sum(axis=1) / np.maximum(inked.sum(axis=1), 1)
    return round(float(np.median(share)), 4), round(float(np.median(grey_share)), 4)


def choose(dataset, channels, images=None):
    """The policy `auto` picks for this data, and why, in words.

    Args:
        dataset: str, the config's dataset: a built-in name (its policy is
            the `policy` of its `kerascnn.data.DATASETS` entry), or a folder
            or `.npz` of your own.
        channels: int, the pictures' channels as the model sees them.
        images: uint8 array (n, height, width, 1) of training pictures, for a
            one-channel folder or `.npz`: looked at to tell written marks from
            other grey pictures. None when not at hand.

    Returns:
        (name, why): name "digits" or "photos"; why a short phrase, or None
        when the choice needs `images` and none were given.

    Example:

    >>> choose("fashion_mnist", 1)
    ('photos', 'Fashion-MNIST is pictures of clothes')
    """
    if dataset in DATASETS:
        return DATASETS[dataset]["policy"]
    if channels > 1:
        return "photos", "colour pictures"
    if images is None:
        return None, None
    inked, grey = ink(images)
    words = f"{inked:.0%} of the pixels inked, {grey:.0%} of the ink grey"
    if inked <= MARKS_MAX_INK and grey <= MARKS_MAX_GREY:
        return "digits", f"one channel, written marks ({words})"
    return "photos", f"one channel, shaded pictures ({words})"
