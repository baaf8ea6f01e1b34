"""Pictures of results: a confusion matrix, misclassified digits, a CNN's filters and feature maps.

The drawings are RGB `uint8` arrays `(height, width, 3)`, so the same
picture goes to TensorBoard (`tf.summary.image`, see `kerascnn.summaries`)
and to a PNG file (`save_png`, see `kerascnn.evaluate`). Figures are made
with `matplotlib.figure.Figure` and rendered by the Agg canvas directly, not
through `pyplot`: no global figure state, and the user's backend (a notebook's
inline one, say) is left alone. The filters and feature maps are tiled
with NumPy alone (`tile_grid`): pixels, not a plotted figure.

Example:

>>> cm = confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], num_classes=3)
>>> cm.tolist()
[[1, 0, 0], [0, 1, 1], [0, 0, 1]]
>>> print(format_confusion_table(cm))
true\\pred  0  1  2
        0  1  0  0
        1  0  1  1
        2  0  0  1
>>> picture = draw_confusion_matrix(cm)
>>> picture.shape, picture.dtype
((520, 520, 3), dtype('uint8'))
>>> draw_filters(np.ones((3, 3, 1, 32))).shape  # 8 x 4 tiles of 24 x 24, 1-pixel gaps
(99, 199, 3)
"""

import warnings

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from kerascnn.rundir import atomic_write

DPI = 100
BLUE, RED, GREY = "#1f60b4", "#c82828", "#6e6e6e"
GRID_COLUMNS = 8  # tiles a row in the filter and feature-map grids
FILTER_SCALE = 8  # a kernel's weight becomes 8 x 8 pixels: a 3x3 kernel is a 24 x 24 tile
MAP_PIXELS = 56  # feature maps are enlarged to about this many pixels a side: 28x28 twice, 7x7 8 times
MAPS_PER_STAGE = 16  # feature maps drawn per stage (explain page, TensorBoard): the first channels


def render(figure):
    """The figure drawn by Agg at its own size and dpi, as an RGB `uint8` array.

    A class name in a script the installed fonts lack (CJK without a CJK
    font) is drawn as boxes; matplotlib's warning per glyph is dropped, as
    the picture is only a view of names printed in full elsewhere.
    """
    canvas = FigureCanvasAgg(figure)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def new_figure(width, height):
    """A white `Figure` of `width` x `height` pixels (at `DPI`), not known to pyplot."""
    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")


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


def _rgb(hex_colour):
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255.0


def draw_confusion(y_true, probabilities, title, class_names=None):
    """The confusion matrix of `probabilities`' most probable classes against `y_true`, drawn (RGB array).

    The one path from predictions to the picture, for the run's test set
    (`kerascnn.report`) and TensorBoard's validation images (`kerascnn.summaries`).
    """
    probabilities = np.asarray(probabilities)
    cm = confusion_matrix(y_true, probabilities.argmax(axis=1), probabilities.shape[1])
    return draw_confusion_matrix(cm, title, class_names=class_names)


def draw_confusion_matrix(cm, title=None, size=(520, 520), class_names=None):
    """The confusion matrix as a picture: counts in cells, shaded by share of the true class.

    Diagonal cells (right) are blue, off-diagonal cells (mistakes) red; the
    shade is the cell's share of its row, so a class with few images still
    shows its mistakes. Red uses the square root of the share, so that a
    mistake made on 1% of a class is visible next to 99% correct.

    Args:
        cm: int array (C, C), rows true, columns predicted.
        title: str or None, a line above the matrix. Defaults to None.
        size: (width, height) in pixels. Defaults to (520, 520).
        class_names: list of str or None, the tick labels. Defaults to the indices.

    Returns:
        uint8 array (height, width, 3).
    """
    cm = np.asarray(cm, np.int64)
    n = len(cm)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    diagonal = np.eye(n, dtype=bool)
    amount = np.where(diagonal, share, np.sqrt(share))[..., None]
    colour = np.where(diagonal[..., None], _rgb(BLUE), _rgb(RED))
    cells = 1 + (colour - 1) * amount  # white blended towards the colour

    figure = new_figure(*size)
    ax = figure.add_axes((0.1, 0.11, 0.85, 0.73 if title else 0.78))
    ax.imshow(cells, interpolation="nearest")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    if class_names is not None and list(class_names) != [str(c) for c in range(n)]:  # digits keep their look
        ax.set_xticklabels(class_names, rotation=90, fontsize=8)
        ax.set_yticklabels(class_names, fontsize=8)
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="#e1e1e1", linewidth=1)
    ax.tick_params(which="minor", length=0)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("predicted class", color=GREY)
    ax.set_ylabel("true class", color=GREY)
    fontsize = 10 if n <= 10 else 7
    for i, j in zip(*np.nonzero(cm)):
        ink = "white" if amount[i, j, 0] > 0.55 else "black"
        ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color=ink, fontsize=fontsize)
    if title:
        figure.suptitle(title, fontsize=11, y=0.99)
    figure.text(0.5, 0.04, "rows: true class   columns: predicted   red: mistakes", ha="center", color=GREY,
                fontsize=9)
    return render(figure)


def misclassified_indices(y_true, probabilities, limit=36):
    """Indices of misclassified images, the most confident mistakes first."""
    probabilities = np.asarray(probabilities)
    y_pred = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != np.asarray(y_true).reshape(-1))
    confidence = probabilities[wrong, y_pred[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:limit]


def draw_misclassified(images, y_true, probabilities, limit=36, columns=6, class_names=None):
    """A grid of misclassified digits, each captioned "true 7 / pred 1" and its probability.

    Args:
        images: array (N, 28, 28) or (N, 28, 28, 1), uint8 in [0, 255] or
            float in [0, 1]; white ink on black as MNIST stores it.
        y_true: int array (N,), the labels.
        probabilities: float array (N, C), the model's softmax output.
        limit: int, at most this many digits, the most confident mistakes
            first. Defaults to 36.
        columns: int, digits per row. Defaults to 6.
        class_names: list of str, a name per class for the captions. Defaults to the indices.

    Returns:
        uint8 array (height, width, 3): 110 x 130 pixels a digit; a short
        notice (320 x 60) when nothing is wrong.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]  # grey: drawn with a grey colour map; RGB pictures as they are
    probabilities = np.asarray(probabilities)
    y_true = np.asarray(y_true).reshape(-1)
    chosen = misclassified_indices(y_true, probabilities, limit)
    if not len(chosen):
        figure = new_figure(320, 60)
        figure.text(0.5, 0.5, "no misclassified images", ha="center", va="center", fontsize=12)
        return render(figure)
    rows, cols = -(-len(chosen) // columns), min(len(chosen), columns)
    figure = new_figure(cols * 110, rows * 130)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.01, top=1 - 0.3 / rows, wspace=0.15, hspace=0.45)
    for k, index in enumerate(chosen):
        ax = figure.add_subplot(rows, cols, k + 1)
        ax.imshow(images[index], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_axis_off()
        predicted = int(probabilities[index].argmax())
        true, guess = (int(y_true[index]), predicted) if class_names is None else (
            class_names[int(y_true[index])], class_names[predicted])
        ax.set_title(f"true {true} / pred {guess}\np={probabilities[index, predicted]:.2f}",
                     color=RED, fontsize=9)
    return render(figure)


def save_png(array, path):
    """Writes an RGB array as a PNG atomically (see `kerascnn.rundir.atomic_write`); returns `path`."""
    with atomic_write(path) as tmp:
        Image.fromarray(np.asarray(array, np.uint8)).save(tmp, format="PNG")
    return path


def tile_grid(tiles, columns=GRID_COLUMNS, scale=1, gap=1, gap_colour=(255, 255, 255), colour_map=None,
              value_range=None):
    """Small pictures in rows, each scaled to its own range, enlarged, with a gap between them.

    Each tile is scaled on its own from its lowest value (black, or the
    colour map's first colour) to its highest (white, or its last), so a
    tile of small numbers shows its pattern as clearly as one of large
    numbers; a flat tile (one value) is drawn all lowest. NaN and infinite
    values count as 0.

    Example:

    >>> grid = tile_grid(np.arange(5 * 2 * 3).reshape(5, 2, 3), columns=4, scale=2)
    >>> grid.shape  # 2 rows of 4 x 6 tiles, 1-pixel gaps; the empty cells are gap colour
    (9, 27, 3)
    >>> grid[0, :6, 0].tolist(), grid[0, 6].tolist()
    ([0, 0, 51, 51, 102, 102], [255, 255, 255])

    Args:
        tiles: float array (N, h, w), grey or to colour with `colour_map`,
            or (N, h, w, 3), RGB scaled as a whole (the colours keep their
            balance).
        columns: int >= 1, tiles a row. Defaults to `GRID_COLUMNS` (8).
        scale: int >= 1, each value becomes `scale` x `scale` pixels
            (nearest neighbour). Defaults to 1.
        gap: int >= 0, pixels between tiles. Defaults to 1.
        gap_colour: RGB of 0..255, the gaps' and empty cells' colour.
            Defaults to white.
        colour_map: str or None, a matplotlib colour map for grey tiles
            ("viridis"); None draws them grey. Defaults to None.
        value_range: (low, high) or None: one scale for every tile, `low`
            black and `high` white (pictures, where a tile's brightness
            matters); None scales each tile to its own range. Defaults to None.

    Returns:
        uint8 array (rows * (h * scale + gap) - gap, cols * (w * scale + gap) - gap, 3),
        where cols = min(N, columns) and rows = ceil(N / columns).
    """
    tiles = np.nan_to_num(np.asarray(tiles, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    rgb = tiles.ndim == 4 and tiles.shape[-1] == 3
    if not (tiles.ndim == 3 or rgb) or not len(tiles) or 0 in tiles.shape:
        raise ValueError(
            f"`tiles` must be a non-empty array (N, h, w) or (N, h, w, 3). Received: tiles.shape={tiles.shape}"
        )
    for name, value, minimum in (("columns", columns, 1), ("scale", scale, 1), ("gap", gap, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    if rgb and colour_map is not None:
        raise ValueError(
            f"`colour_map` is for grey tiles; RGB tiles have their own colours. Received: colour_map={colour_map!r}"
        )

    axes = tuple(range(1, tiles.ndim))
    if value_range is not None:
        low, high = (np.full((1,) * tiles.ndim, float(v)) for v in value_range)
        tiles = np.clip(tiles, low, high)
    else:
        low, high = tiles.min(axis=axes, keepdims=True), tiles.max(axis=axes, keepdims=True)
    span = high - low
    unit = np.where(span > 0, (tiles - low) / np.where(span > 0, span, 1.0), 0.0)
    if rgb:
        colours = unit
    elif colour_map is None:
        colours = np.repeat(unit[..., None], 3, axis=-1)
    else:
        import matplotlib

        colours = matplotlib.colormaps[colour_map](unit)[..., :3]
    colours = np.rint(colours * 255.0).astype(np.uint8)
    colours = np.repeat(np.repeat(colours, scale, axis=1), scale, axis=2)

    n, h, w = colours.shape[:3]
    cols, rows = min(n, columns), -(-n // columns)
    grid = np.empty((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), np.uint8)
    grid[...] = np.asarray(gap_colour, np.uint8)
    for k, tile in enumerate(colours):
        top, left = (k // columns) * (h + gap), (k % columns) * (w + gap)
        grid[top : top + h, left : left + w] = tile
    return grid


def draw_filters(kernel, columns=GRID_COLUMNS, scale=FILTER_SCALE):
    """A conv layer's filters as a grid of tiles, one per filter (output channel), kh x kw each.

    What a first-layer filter looks for in the picture: light where its
    weight is highest, dark where lowest, each tile scaled to its own range,
    enlarged `scale` times (nearest neighbour) so a 3x3 kernel is visible,
    with blue one-pixel gaps (a colour no grey weight takes). With 3 input
    channels (RGB pictures) a tile is the kernel's three channels as one
    colour picture, scaled together; with 1 it is the kernel in grey; with
    any other number, the mean over the input channels in grey.

    Args:
        kernel: float array (kh, kw, in_channels, filters), as Keras'
            `Conv2D.kernel` stores it.
        columns: int, tiles a row. Defaults to `GRID_COLUMNS` (8).
        scale: int, pixels a weight (a side). Defaults to `FILTER_SCALE` (8).

    Returns:
        uint8 array (height, width, 3), laid out as `tile_grid` says.
    """
    kernel = np.asarray(kernel, np.float32)
    if kernel.ndim != 4:
        raise ValueError(
            f"`kernel` must be a conv kernel (kh, kw, in_channels, filters). Received: kernel.shape={kernel.shape}"
        )
    tiles = np.moveaxis(kernel, 3, 0)  # (filters, kh, kw, in_channels)
    tiles = tiles if tiles.shape[-1] == 3 else tiles.mean(axis=-1)
    return tile_grid(tiles, columns, scale, gap=1, gap_colour=np.rint(_rgb(BLUE) * 255))


def enlargement(height, width, pixels=MAP_PIXELS):
    """The whole factor that enlarges a `height` x `width` picture to about `pixels` a side (at least 1).

    >>> [enlargement(side, side) for side in (28, 14, 7, 4, 100)]
    [2, 4, 8, 14, 1]
    """
    return max(1, -(-int(pixels) // max(int(height), int(width))))


def draw_feature_maps(maps, limit=16, columns=GRID_COLUMNS, pixels=MAP_PIXELS, colour_map="viridis"):
    """A stage's feature maps as a grid of heat maps: its first `limit` channels, one tile each.

    Each map is scaled to its own range (a channel that is 0 everywhere,
    as a ReLU's often is, is drawn all dark) and enlarged to about `pixels`
    a side (see `enlargement`), so the maps of every stage of a network are
    drawn about the same size: 28x28 maps twice, 7x7 maps 8 times.

    Args:
        maps: float array (H, W, C), a conv or pooling stage's output for one image.
        limit: int >= 1, at most this many channels, the first. Defaults to 16.
        columns: int, tiles a row. Defaults to `GRID_COLUMNS` (8).
        pixels: int, about this many pixels a tile's side. Defaults to `MAP_PIXELS` (56).
        colour_map: str or None, matplotlib's name; None draws grey. Defaults to "viridis".

    Returns:
        uint8 array (height, width, 3), laid out as `tile_grid` says.
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3:
        raise ValueError(f"`maps` must be an array (H, W, C). Received: maps.shape={maps.shape}")
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"`limit` must be an integer >= 1. Received: limit={limit!r}")
    tiles = np.moveaxis(maps[..., :limit], -1, 0)
    return tile_grid(tiles, columns, enlargement(*maps.shape[:2], pixels), gap=1, colour_map=colour_map)
