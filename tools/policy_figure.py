"""Draws docs/augmentation_policies.png: one training batch as the `digits` and `photos` policies augment it.

    python tools/policy_figure.py            # MNIST from $KERASCNN_DATA_DIR, Fashion-MNIST from Debian's package

Rows, top to bottom: eight MNIST digits as they are, as `digits` augments
them and as `photos` would (flipped: why digits do not get it); eight
Fashion-MNIST pictures as they are, as `digits` and as `photos` augment
them; eight colour shapes (tools/shapes.py, 64 px) as they are, as
`digits` would and as `photos` augments them (a flip and a shift). The
layers are the ones a model holds (`kerascnn.layers.augmentation` with
`kerascnn.layers.policy.amounts`), called with `training=True`, one seeded
draw; the grid is `kerascnn.figures.tile_grid`.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "docs", "augmentation_policies.png")
FASHION = "/usr/share/datasets/fashion-mnist"
COUNT = 8


def augmented(images, policy, seed):
    """`images` (uint8, n x h x w x c) through `policy`'s layers in training mode, as floats in [0, 1]."""
    import keras

    from kerascnn.layers import augmentation
    from kerascnn.layers.policy import amounts

    keras.utils.set_random_seed(seed)
    x = images.astype("float32") / 255.0
    for layer in augmentation(**amounts(policy, images.shape[1], images.shape[-1]), size=images.shape[1]):
        x = layer(x, training=True)
    return np.clip(keras.ops.convert_to_numpy(x), 0.0, 1.0)


def row(images, scale):
    """A grid row of `images` (floats in [0, 1], n x h x w x c), each tile enlarged `scale` times, on one scale."""
    from kerascnn.figures import tile_grid

    tiles = images[..., 0] if images.shape[-1] == 1 else images
    # One scale for all: the augmentation's brightness and contrast changes stay visible.
    return tile_grid(tiles, columns=len(tiles), scale=scale, gap=2, value_range=(0.0, 1.0))


def figure(rows, label_width=190):
    """The rows stacked with a label on the left of each; an RGB uint8 array."""
    from PIL import Image, ImageDraw

    width = label_width + max(grid.shape[1] for _, grid in rows)
    height = sum(grid.shape[0] + 6 for _, grid in rows)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    top = 0
    for label, grid in rows:
        canvas.paste(Image.fromarray(grid), (label_width, top))
        draw.text((6, top + grid.shape[0] // 2 - 6), label, fill="black")
        top += grid.shape[0] + 6
    return np.asarray(canvas)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=OUT, help=f"the PNG to write (default: {os.path.relpath(OUT, ROOT)})")
    parser.add_argument("--seed", type=int, default=5, help="seeds the augmentation's draw (default: 5)")
    args = parser.parse_args(argv)
    from kerascnn.data import load_dataset
    from kerascnn.figures import save_png
    from tools.shapes import write_folder

    rows = []
    mnist = load_dataset("mnist").x_train[:COUNT]
    rows += [("MNIST", row(mnist / 255.0, 3)), ("MNIST, digits", row(augmented(mnist, "digits", args.seed), 3)),
             ("MNIST, photos (not used)", row(augmented(mnist, "photos", args.seed), 3))]
    if os.path.isdir(FASHION):
        fashion = load_dataset("fashion_mnist", FASHION).x_train[:COUNT]
        rows += [("Fashion-MNIST", row(fashion / 255.0, 3)),
                 ("Fashion-MNIST, digits", row(augmented(fashion, "digits", args.seed), 3)),
                 ("Fashion-MNIST, photos", row(augmented(fashion, "photos", args.seed), 3))]
    with tempfile.TemporaryDirectory() as folder:
        from PIL import Image

        write_folder(folder, size=64, per_class=2, seed=1)
        paths = sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files)[:COUNT]
        shapes = np.stack([np.asarray(Image.open(p)) for p in paths])
    rows += [("shapes (colour, 64 px)", row(shapes / 255.0, 1)),
             ("shapes, digits (not used)", row(augmented(shapes, "digits", args.seed), 1)),
             ("shapes, photos", row(augmented(shapes, "photos", args.seed), 1))]
    save_png(figure(rows), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
