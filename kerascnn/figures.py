"""Pictures of results, drawn with Pillow: a confusion matrix and misclassified digits.

The drawings are RGB `uint8` arrays `(height, width, 3)`, so the same
picture goes to TensorBoard (`tf.summary.image`, see `kerascnn.summaries`)
and to a PNG file (`save_png`, see `kerascnn.evaluate`). Matplotlib is not
needed: a 10x10 grid of numbers and a grid of 28x28 digits are a few
rectangles and some text.

Example:

>>> cm = confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], num_classes=3)
>>> cm.tolist()
[[1, 0, 0], [0, 1, 1], [0, 0, 1]]
>>> print(format_confusion_table(cm))
true\\pred  0  1  2
        0  1  0  0
        1  0  1  1
        2  0  0  1
>>> draw_confusion_matrix(cm).shape[2], draw_confusion_matrix(cm).dtype
(3, dtype('uint8'))
"""

import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CELL = 40  # confusion matrix cell, pixels
TILE_SCALE = 3  # misclassified digits are drawn 3x: 84x84 pixels
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (110, 110, 110)
BLUE, RED = (31, 96, 180), (200, 40, 40)


def confusion_matrix(y_true, y_pred, num_classes=10):
    """Counts, rows the true class and columns the predicted class.

    Args:
        y_true: int array-like (N,), the labels.
        y_pred: int array-like (N,), the predicted classes.
        num_classes: int. Defaults to 10.

    Returns:
        int64 array (num_classes, num_classes).
    """
    y_true = np.asarray(y_true, np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, np.int64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"`y_true` and `y_pred` must have the same length. Received: {len(y_true)} and {len(y_pred)}"
        )
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"`{name}` must hold classes in 0..{num_classes - 1}. Received: {y.min()}..{y.max()}")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def format_confusion_table(cm):
    """The confusion matrix as a plain-text table (rows true, columns predicted)."""
    cm = np.asarray(cm)
    corner = "true\\pred"
    width = max(len(str(int(cm.max()))), len(str(len(cm) - 1))) + 1
    lines = [corner + "".join(f"{c:>{width + 1}}" for c in range(len(cm)))]
    for i, row in enumerate(cm):
        lines.append(f"{i:>{len(corner)}}" + "".join(f"{int(v):>{width + 1}}" for v in row))
    return "\n".join(lines)


def font(size):
    """Pillow's built-in scalable font (FreeType), or its bitmap font without FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1, or built without FreeType
        return ImageFont.load_default()


def _centred_text(draw, box, text, fill, text_font):
    left, top, right, bottom = draw.textbbox((0, 0), text, font=text_font)
    x = (box[0] + box[2] - (right - left)) / 2 - left
    y = (box[1] + box[3] - (bottom - top)) / 2 - top
    draw.text((x, y), text, fill=fill, font=text_font)


def _mix(colour, amount):
    """White blended towards `colour` by `amount` in [0, 1]."""
    return tuple(int(round(255 + (c - 255) * amount)) for c in colour)


def draw_confusion_matrix(cm, title=None):
    """The confusion matrix as a picture: counts in cells, shaded by share of the true class.

    Diagonal cells (right) are blue, off-diagonal cells (mistakes) red; the
    shade is the cell's share of its row, so a class with few images still
    shows its mistakes. Red uses the square root of the share, so that a
    mistake made on 1% of a class is visible next to 99% correct.

    Args:
        cm: int array (C, C), rows true, columns predicted.
        title: str or None, a line above the matrix. Defaults to None.

    Returns:
        uint8 array (height, width, 3).
    """
    cm = np.asarray(cm, np.int64)
    n = len(cm)
    label_font, cell_font, title_font = font(14), font(13), font(15)
    left, top = 64, 70 if title else 46
    width, height = left + n * CELL + 12, top + n * CELL + 34
    image = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(image)
    if title:
        _centred_text(draw, (0, 4, width, 26), title, BLACK, title_font)
    _centred_text(draw, (left, top - 42, left + n * CELL, top - 24), "predicted", GREY, label_font)
    rows = np.maximum(cm.sum(axis=1, keepdims=True), 1)
    share = cm / rows
    for i in range(n):
        _centred_text(draw, (left - 26, top + i * CELL, left, top + (i + 1) * CELL), str(i), BLACK, label_font)
        _centred_text(draw, (left + i * CELL, top - 24, left + (i + 1) * CELL, top), str(i), BLACK, label_font)
        for j in range(n):
            amount = share[i, j] if i == j else np.sqrt(share[i, j])
            fill = _mix(BLUE if i == j else RED, float(amount))
            box = (left + j * CELL, top + i * CELL, left + (j + 1) * CELL - 1, top + (i + 1) * CELL - 1)
            draw.rectangle(box, fill=fill, outline=(225, 225, 225))
            if cm[i, j]:
                ink = WHITE if amount > 0.55 else BLACK
                _centred_text(draw, box, str(int(cm[i, j])), ink, cell_font)
    # "true" written down the left margin, one letter per line.
    _centred_text(draw, (0, top, 30, top + n * CELL), "\n".join("true"), GREY, label_font)
    caption = "rows: true class   columns: predicted   red: mistakes"
    _centred_text(draw, (0, top + n * CELL + 6, width, height - 4), caption, GREY, font(12))
    return np.asarray(image)


def misclassified_indices(y_true, probabilities, limit=36):
    """Indices of misclassified images, the most confident mistakes first."""
    probabilities = np.asarray(probabilities)
    y_pred = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != np.asarray(y_true).reshape(-1))
    confidence = probabilities[wrong, y_pred[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:limit]


def draw_misclassified(images, y_true, probabilities, limit=36, columns=6):
    """A grid of misclassified digits, each captioned "true 7 / pred 1" and its probability.

    Args:
        images: array (N, 28, 28) or (N, 28, 28, 1), uint8 in [0, 255] or
            float in [0, 1]; white ink on black as MNIST stores it.
        y_true: int array (N,), the labels.
        probabilities: float array (N, C), the model's softmax output.
        limit: int, at most this many digits, the most confident mistakes
            first. Defaults to 36.
        columns: int, digits per row. Defaults to 6.

    Returns:
        uint8 array (height, width, 3); a short notice when nothing is wrong.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    images = images.reshape(len(images), images.shape[1], images.shape[2])
    probabilities = np.asarray(probabilities)
    chosen = misclassified_indices(y_true, probabilities, limit)
    caption_font = font(12)
    if not len(chosen):
        image = Image.new("RGB", (320, 60), WHITE)
        _centred_text(ImageDraw.Draw(image), (0, 0, 320, 60), "no misclassified images", BLACK, font(14))
        return np.asarray(image)
    size = images.shape[1] * TILE_SCALE
    tile_w, tile_h = size + 16, size + 36
    rows = -(-len(chosen) // columns)
    image = Image.new("RGB", (min(len(chosen), columns) * tile_w, rows * tile_h), WHITE)
    draw = ImageDraw.Draw(image)
    for k, index in enumerate(chosen):
        x, y = (k % columns) * tile_w + 8, (k // columns) * tile_h + 2
        digit = Image.fromarray(images[index], "L").resize((size, size), Image.Resampling.NEAREST)
        image.paste(digit.convert("RGB"), (x, y))
        predicted = int(probabilities[index].argmax())
        label = int(np.asarray(y_true).reshape(-1)[index])
        lines = (f"true {label} / pred {predicted}", f"p={probabilities[index, predicted]:.2f}")
        for line, (colour, offset) in zip(lines, ((RED, 1), (GREY, 16))):
            _centred_text(draw, (x - 8, y + size + offset, x + size + 8, y + size + offset + 15), line, colour, caption_font)
    return np.asarray(image)


def save_png(array, path):
    """Writes an RGB array as a PNG atomically (a temporary file, then renamed)."""
    tmp = f"{path}.tmp-{os.getpid()}.png"
    try:
        Image.fromarray(np.asarray(array, np.uint8)).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
