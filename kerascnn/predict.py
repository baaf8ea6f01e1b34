"""Classifies a person's own pictures: `python -m kerascnn predict MODEL IMAGE ...`.

A picture is made to look like what the model was trained on. `preparation`
decides how, and `prepare` (a file) and `prepare_bytes` (an upload: the page,
`kerascnn.serve`) are the one path every caller takes:

* a model trained on **your own images** (one that scales its own raw
  pixels, `kerascnn.layers.takes_raw_pixels`) gets what training did: the
  file decoded by the one decoder of `kerascnn.images.decode` into the
  model's channels (grey or RGB; EXIF orientation, palettes and every mode
  as training read them), resized bilinearly to the model's size, raw
  0..255 pixels in (`prepare_as_trained`);
* a model trained on a **built-in dataset** gets the preparation that
  dataset's entry names (`kerascnn.data.DATASETS[name]["prepare"]`, one of
  `kerascnn.data.PREPARATIONS`; the dataset is the run's,
  `kerascnn.loading.LoadedModel.dataset`):
  - "digit" (MNIST): the MNIST-style preparation below (`to_mnist`);
  - "whole_dark" (Fashion-MNIST): the whole picture, read in the model's
    channels, inverted when its border is light (a shirt photographed on
    white becomes light on black, as Fashion-MNIST's are), its background
    level taken off, resized to the model's input (`to_whole`); no box, no
    centring: the clothes fill the frame;
  - "whole" (CIFAR-10): the whole picture in the model's channels (colour
    stays colour), resized to the model's input, nothing else (`to_whole`);
* a model whose dataset **cannot be known** (a `.keras` file alone, with no
  run's `data.json` or `config.json` beside it) is judged by its input: a
  28x28x1 one is taken for a digit model, as it always was ("digit"); any
  other gets "whole" (a 3-channel model's pictures are never made grey).

A photo or scan of a handwritten digit looks nothing like an MNIST image
until it is prepared the way MNIST's were (LeCun et al.): any PNG or JPEG,
any size, colour or grey, dark ink on light paper or light ink on dark, is

1. read as grey in [0, 1] (EXIF rotation applied; transparency composited
   over a background that contrasts with the ink; larger than 2048 px is
   first shrunk to 2048 px on its longer side);
2. inverted when the background (the median of the border pixels) is
   light, so ink is bright on black as in MNIST;
3. stripped of its background level and stretched so the darkest stroke is
   1; faint specks (below 20% of the strongest ink) are dropped; a picture
   whose ink differs from its background by less than 15% is "blank";
4. cropped to the bounding box of the ink;
5. scaled so its longer side is 20 px, keeping the aspect ratio, and
   stretched again so its strongest pixel is 1 (MNIST's strokes are);
6. pasted into a 28x28 black frame so that its centre of mass falls on
   pixel (14, 14), as MNIST's do (measured: 13.99, 14.00 on average);
7. kept in [0, 1], the model's input scale.

Example:

>>> import numpy as np
>>> page = np.ones((120, 90))          # white paper...
>>> page[30:90, 40:50] = 0.0           # ...with a dark vertical stroke: a "1"
>>> digit = to_mnist(page)
>>> digit.shape, float(digit.max())
((28, 28, 1), 1.0)
>>> rows, cols = np.nonzero(digit[..., 0] > 0.5)
>>> int(rows.max() - rows.min() + 1), int(round(np.average(cols, weights=digit[rows, cols, 0])))
(20, 14)
"""

import io
import os
import warnings

import numpy as np

from kerascnn.errors import RunFailed

FRAME = 28  # MNIST's frame, pixels
BOX = 20  # the longer side of the digit inside it
CENTRE = 14.0  # MNIST's centre of mass (row, column), pixel indices
MAX_SIDE = 2048  # larger pictures are shrunk to this first
MIN_CONTRAST = 0.15  # ink must differ from the background by this much (of full scale)
SPECK = 0.2  # ink weaker than this share of the strongest is dropped


class ImageError(RunFailed, ValueError):
    """A picture cannot be classified: missing, empty, not an image, too large or blank."""


def read_grey(path):
    """Reads an image file as a float array (H, W) in [0, 1], 1 = white.

    Raises:
        ImageError: the file is missing, empty, a directory, not an image,
            truncated, or larger than Pillow's decompression-bomb limit.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError("no such file.")
    if os.path.isdir(path):
        raise ImageError("is a directory, not an image.")
    if os.path.getsize(path) == 0:
        raise ImageError("the file is empty (0 bytes).")
    return _decode(path)


def decode_grey(data):
    """Like `read_grey`, for a picture held in memory (an upload): bytes -> (H, W) in [0, 1].

    Raises:
        ImageError: empty, not an image, truncated, or larger than Pillow's
            decompression-bomb limit.
    """
    if not data:
        raise ImageError("the file is empty (0 bytes).")
    return _decode(io.BytesIO(data))


def _decode(source):
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                image.draft(None, (MAX_SIDE, MAX_SIDE))  # a large JPEG decodes at 1/2, 1/4 or 1/8 size
                image.load()
                image = ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"too large to open safely ({e})") from None
    except UnidentifiedImageError:
        raise ImageError("not an image (a PNG or JPEG was expected).") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"cannot decode the image: it is truncated or corrupt ({e}).") from None
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return _grey(image)


def _grey(image):
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16/32-bit grey
        values = np.asarray(image, np.float64)
        return np.clip(values / (65535.0 if values.max() > 255 else 255.0), 0, 1)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if not has_alpha:
        return np.asarray(image.convert("L"), np.float64) / 255.0
    rgba = image.convert("RGBA")
    luminance = np.asarray(rgba.convert("L"), np.float64) / 255.0
    alpha = np.asarray(rgba.getchannel("A"), np.float64) / 255.0
    opaque = alpha > 0.5
    # Ink drawn on a transparent sheet: put it on a background it stands out from.
    background = 1.0 if not opaque.any() or luminance[opaque].mean() < 0.5 else 0.0
    return luminance * alpha + background * (1.0 - alpha)


def to_mnist(grey):
    """MNIST-style preparation of a grey picture (see the module docstring).

    Args:
        grey: float array (H, W) in [0, 1].

    Returns:
        float32 array (28, 28, 1) in [0, 1], bright ink on black.

    Raises:
        ImageError: no ink: the picture is (nearly) uniform.
    """
    grey = np.asarray(grey, np.float64)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 0.5:  # light paper: make the ink the bright part
        grey, border = 1.0 - grey, 1.0 - border
    ink = np.clip(grey - np.median(border), 0.0, None)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise ImageError(
            f"blank: no ink found (the strongest stroke differs from the background by {peak:.0%}; "
            f"at least {MIN_CONTRAST:.0%} is needed)."
        )
    ink = ink / peak
    ink[ink < SPECK] = 0.0
    rows, cols = np.nonzero(ink)
    patch = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return _frame(_scale_to_box(patch))


def _scale_to_box(patch):
    from PIL import Image

    height, width = patch.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(patch.astype(np.float32), "F").resize(size, Image.Resampling.LANCZOS)
    resized = np.clip(np.asarray(resized, np.float64), 0.0, None)
    return resized / resized.max() if resized.max() > 0 else resized  # strokes at full strength, as in MNIST


def _frame(digit):
    from scipy import ndimage

    height, width = digit.shape
    if digit.sum() > 0:
        cy, cx = ndimage.center_of_mass(digit)
    else:
        cy, cx = (height - 1) / 2, (width - 1) / 2
    top = int(np.clip(round(CENTRE - cy), 0, FRAME - height))
    left = int(np.clip(round(CENTRE - cx), 0, FRAME - width))
    frame = np.zeros((FRAME, FRAME), np.float32)
    frame[top : top + height, left : left + width] = digit
    return frame[..., None]


def load_digit(path):
    """Reads and prepares one picture: float32 (28, 28, 1). Raises `ImageError`."""
    return to_mnist(read_grey(path))


def to_whole(pixels, shape, dark_background=False):
    """The whole picture as a model trained on Fashion-MNIST or CIFAR-10 takes it: no crop, no box, no centring.

    Args:
        pixels: uint8 array (H, W, C), C the model's channels (`kerascnn.images.decode.decode_image`).
        shape: (height, width, channels) the model takes (`prepared_shape`).
        dark_background: bool. True (Fashion-MNIST's "whole_dark"): when the
            median of the border is light the picture is inverted, so the
            object is light on black as the dataset's are, and the
            background's level is taken off (`(x - level) / (1 - level)`,
            so a dataset picture, whose background is 0, is unchanged).
            Defaults to False (CIFAR-10's "whole": the colours as they are).

    Returns:
        float32 array `shape` in [0, 1].

    Example:

    >>> photo = np.full((60, 40, 1), 240, np.uint8)  # a light background...
    >>> photo[10:50, 10:30] = 40                     # ...and a dark garment: (240 - 40) / 240 of full scale
    >>> shirt = to_whole(photo, (28, 28, 1), dark_background=True)
    >>> shirt.shape, float(shirt[0, 0, 0]), round(float(shirt[14, 14, 0]), 3)
    ((28, 28, 1), 0.0, 0.833)
    """
    import tensorflow as tf

    image = np.asarray(pixels, np.float64) / 255.0
    if dark_background:
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).ravel()
        level = float(np.median(border))
        if level > 0.5:  # a light background: make the object the bright part
            image, level = 1.0 - image, 1.0 - level
        image = np.clip((image - level) / (1.0 - level), 0.0, 1.0)
    height, width, _ = shape
    # Antialiased, so a large photo is averaged down rather than sampled; at the model's own size it is unchanged.
    resized = tf.image.resize(image.astype(np.float32), (height, width), method="bilinear", antialias=True)
    return np.clip(resized.numpy(), 0.0, 1.0).astype(np.float32)


def read_bytes(path):
    """The bytes of a picture file, or `ImageError` naming why it cannot be read."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError("missing (a broken symbolic link?)" if os.path.islink(path) else "no such file.")
    if os.path.isdir(path):
        raise ImageError("is a directory, not an image.")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ImageError(f"cannot be read ({e.strerror or e}).") from None


def prepare_as_trained(path, model):
    """A picture file as a model trained on your own images takes it: float32 (H, W, C) of raw 0..255 pixels.

    Reads the file and prepares it with `prepare_bytes_as_trained`.

    Raises:
        ImageError: missing, not an image, corrupt, or a decompression bomb.
    """
    return prepare_bytes_as_trained(read_bytes(path), model)


def prepare_bytes_as_trained(data, model):
    """A picture held in memory (an upload), prepared as `prepare_as_trained` prepares a file.

    They are decoded by the one decoder training used
    (`kerascnn.images.decode.decode_image`: Pillow, EXIF orientation
    applied, palettes expanded, every mode converted to the model's
    channels, transparency composited on white; a decompression bomb or a
    corrupt picture is refused) and resized bilinearly to the model's
    working size (`prepared_shape`) with `tf.image.resize`, as the training
    pipeline resized them; the model scales the pixels itself.

    Args:
        data: bytes of a picture in any format Pillow reads (PNG, JPEG,
            GIF, BMP, WebP, TIFF, ...).
        model: `keras.Model` that takes raw pixels (`kerascnn.layers.takes_raw_pixels`).

    Returns:
        float32 array `prepared_shape(model)` of raw 0..255 pixels.

    Raises:
        ImageError: empty, not an image, corrupt, or a decompression bomb.
    """
    import tensorflow as tf

    height, width, channels = prepared_shape(model)
    pixels = _decode_pixels(data, channels)
    return tf.image.resize(pixels, (height, width), method="bilinear").numpy().astype(np.float32)


def _decode_pixels(data, channels):
    """Bytes -> uint8 (H, W, channels) by training's decoder; its errors as `ImageError`s."""
    from kerascnn.data import DataError
    from kerascnn.images.decode import decode_image

    if not data:
        raise ImageError("the file is empty (0 bytes).")
    name = "the picture"
    try:
        return decode_image(data, channels, name=name)
    except DataError as e:
        raise ImageError(str(e).removeprefix(f"{name}: ")) from None


def prepared_shape(model):
    """The (height, width, channels) of a picture prepared for `model`: its `Resizing` size, else its input's.

    A digit model's is its input's, (28, 28, 1); a model trained on your own
    images takes any size and resizes it, so its pictures are prepared at
    that working size.

    Example:

    >>> from kerascnn.models import create_model
    >>> prepared_shape(create_model("sequential", input_shape=(32, 32, 3), num_classes=3, image_size=(24, 24),
    ...                             rescale=1 / 255))
    (24, 24, 3)
    """
    from kerascnn.layers import model_input_shape

    height, width, channels = model_input_shape(model)
    resizing = _resizing_layers(model)
    if resizing:
        height, width = resizing[0].height, resizing[0].width
    return height, width, channels


AS_TRAINED = "as_trained"  # `preparation` of a model trained on your own images: `prepare_bytes_as_trained`


def preparation(model, dataset=None):
    """How a picture is prepared for `model`: `AS_TRAINED`, or a key of `kerascnn.data.PREPARATIONS`.

    The rule (see the module docstring): a model that scales its own raw
    pixels gets `AS_TRAINED`; else the dataset it was trained on decides,
    by its `DATASETS` entry's "prepare"; else, the dataset unknown (a bare
    `.keras` file), a 28x28x1 input is taken for a digit model ("digit", as
    always) and any other input gets "whole", its channels kept.

    Example:

    >>> from kerascnn.models import create_model
    >>> digits = create_model("sequential")
    >>> preparation(digits), preparation(digits, "fashion_mnist")
    ('digit', 'whole_dark')
    >>> preparation(create_model("sequential", input_shape=(32, 32, 3)))
    'whole'

    Args:
        model: `keras.Model`.
        dataset: str or None, the built-in dataset it was trained on (a key
            of `kerascnn.data.DATASETS`; `LoadedModel.dataset`), or None
            when it is not known. Defaults to None.

    Raises:
        ValueError: `dataset` is not a built-in dataset's name.
    """
    from kerascnn.data import DATASETS, PREPARATIONS, list_datasets
    from kerascnn.layers import DIGIT_SHAPE, model_input_shape, takes_raw_pixels

    if takes_raw_pixels(model):
        return AS_TRAINED
    if dataset is not None:
        if dataset not in DATASETS:
            raise ValueError(f"`dataset` must be a built-in dataset, one of {list_datasets()}, or None. "
                             f"Received: dataset={dataset!r}")
        how = DATASETS[dataset].get("prepare")
        if how not in PREPARATIONS:  # a dataset added without saying how its pictures look
            raise ValueError(f"kerascnn.data.DATASETS[{dataset!r}] must name its preparation, one of "
                             f"{sorted(PREPARATIONS)}. Received: prepare={how!r}")
        return how
    return "digit" if tuple(model_input_shape(model)) == DIGIT_SHAPE else "whole"


def prepare_bytes(data, model, dataset=None):
    """A picture held in memory (an upload) as `model` takes it, by `preparation(model, dataset)`.

    Args:
        data: bytes of a picture (PNG, JPEG, ...).
        model: `keras.Model`.
        dataset: str or None, the built-in dataset it was trained on. Defaults to None (not known).

    Returns:
        float32 array `prepared_shape(model)`: raw 0..255 pixels for
        `AS_TRAINED`, else in [0, 1].

    Raises:
        ImageError: empty, not an image, corrupt, a decompression bomb, or (a digit) blank.
    """
    how = preparation(model, dataset)
    if how == AS_TRAINED:
        return prepare_bytes_as_trained(data, model)
    if how == "digit":
        return to_mnist(decode_grey(data))
    shape = prepared_shape(model)
    return to_whole(_decode_pixels(data, shape[-1]), shape, dark_background=how == "whole_dark")


def prepare(path, model, dataset=None):
    """One picture file as `model` takes it: read, then `prepare_bytes`. Raises `ImageError`."""
    return prepare_bytes(read_bytes(path), model, dataset)


def _resizing_layers(model):
    import keras

    from kerascnn import compat

    return [layer for layer in compat.flatten_layers(model) if isinstance(layer, keras.layers.Resizing)]


def classify(model, paths, batch_size=256, class_names=None, dataset=None):
    """Classifies picture files; a file that cannot be used gets an error entry.

    Args:
        model: a `keras.Model` returning class probabilities.
        paths: list of str, picture files.
        batch_size: int. Defaults to 256.
        class_names: list of str, a name per class. Defaults to "0", "1", ...
        dataset: str or None, the built-in dataset the model was trained on
            (`LoadedModel.dataset`): it decides how pictures are prepared
            (`preparation`). Defaults to None (not known).

    Returns:
        A list with one dict per path, in order: `file`, `class` (the
        index), `name`, `probability`, `runner_up` (`{"class", "name",
        "probability"}`); or `file` and `error` for a picture that could
        not be classified.
    """
    results, ready, images = [], [], []
    for path in paths:
        try:
            images.append(prepare(path, model, dataset))
            ready.append(len(results))
            results.append({"file": os.fspath(path)})
        except ImageError as e:
            results.append({"file": os.fspath(path), "error": str(e)})
    if images:
        probabilities = np.asarray(model.predict(np.stack(images), batch_size=batch_size, verbose=0))
        names = class_names or [str(c) for c in range(probabilities.shape[1])]
        for index, p in zip(ready, probabilities):
            first, second = np.argsort(-p, kind="stable")[:2]
            results[index].update(
                {
                    "class": int(first),
                    "name": names[first],
                    "probability": float(p[first]),
                    "runner_up": {"class": int(second), "name": names[second], "probability": float(p[second])},
                }
            )
    return results


def format_result(result):
    """One line for one picture, as `predict` prints it."""
    if "error" in result:
        return f"{result['file']}: error: {result['error']}"
    runner = result["runner_up"]
    return (
        f"{result['file']}: {result.get('name', result['class'])} (probability {result['probability']:.4f}); "
        f"runner-up {runner.get('name', runner['class'])} ({runner['probability']:.4f})"
    )
