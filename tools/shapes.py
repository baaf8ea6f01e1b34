"""Writes a folder of colour pictures of shapes, one subfolder per class: data anyone can make offline.

Six classes (circle, square, triangle, star, cross, ring), drawn with
Pillow at `--size` pixels a side. Each picture has its own random
background colour with a soft vertical gradient, a shape of another random
colour at a random place, size (30-65% of the side) and angle, a second,
thin random outline as clutter, and Gaussian pixel noise. Colour says
nothing of the class, and neither does position: a model must learn the
outline. The same `--seed` writes the same pictures.

    python tools/shapes.py --out logs/shapes64 --size 64 --per-class 600

docs/RESULTS.md reports `best` on the folder this command writes.
"""

import argparse
import math
import os
import sys

import numpy as np

CLASSES = ("circle", "square", "triangle", "star", "cross", "ring")


def outline(name, cx, cy, radius, angle):
    """The polygon points (or, for circle and ring, the bounding box) of shape `name`."""
    if name in ("circle", "ring"):
        return [cx - radius, cy - radius, cx + radius, cy + radius]
    if name == "square":
        corners = [(angle + math.pi / 4 + k * math.pi / 2) for k in range(4)]
        return [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in corners]
    if name == "triangle":
        return [(cx + radius * math.cos(angle + k * 2 * math.pi / 3), cy + radius * math.sin(angle + k * 2 * math.pi / 3))
                for k in range(3)]
    if name == "star":
        points = []
        for k in range(10):
            r = radius if k % 2 == 0 else radius * 0.42
            a = angle + k * math.pi / 5
            points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
        return points
    if name == "cross":
        w = radius * 0.35
        arm = [(-w, -radius), (w, -radius), (w, -w), (radius, -w), (radius, w), (w, w), (w, radius), (-w, radius),
               (-w, w), (-radius, w), (-radius, -w), (-w, -w)]
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in arm]
    raise ValueError(f"`name` must be one of {list(CLASSES)}. Received: name={name!r}")


def far_colour(rng, other, distance=90):
    """A random RGB colour at least `distance` away (Euclidean, 0-255) from `other`."""
    while True:
        colour = rng.integers(0, 256, 3)
        if np.linalg.norm(colour - other) >= distance:
            return colour


def picture(name, size, rng):
    """One RGB picture (uint8, size x size x 3) of shape `name`."""
    from PIL import Image, ImageDraw

    background = rng.integers(0, 256, 3)
    ramp = np.linspace(-25, 25, size)[:, None, None] * rng.choice([-1, 1])
    pixels = np.clip(background[None, None, :] + ramp + np.zeros((size, size, 3)), 0, 255).astype("uint8")
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    radius = size * rng.uniform(0.15, 0.325)
    cx, cy = (rng.uniform(radius, size - radius) for _ in range(2))
    angle = rng.uniform(0, 2 * math.pi)
    colour = tuple(int(c) for c in far_colour(rng, background))
    clutter = tuple(int(c) for c in far_colour(rng, background, 60))
    other = CLASSES[rng.integers(len(CLASSES))]  # a thin outline of any shape, as clutter
    r2 = size * rng.uniform(0.1, 0.2)
    shape2 = outline(other, rng.uniform(0, size), rng.uniform(0, size), r2, rng.uniform(0, 2 * math.pi))
    line = max(1, size // 48)
    if other in ("circle", "ring"):
        draw.ellipse(shape2, outline=clutter, width=line)
    else:
        draw.polygon(shape2, outline=clutter, width=line)
    points = outline(name, cx, cy, radius, angle)
    if name == "circle":
        draw.ellipse(points, fill=colour)
    elif name == "ring":
        draw.ellipse(points, outline=colour, width=max(2, int(radius * 0.35)))
    else:
        draw.polygon(points, fill=colour)
    noisy = np.asarray(image, "float32") + rng.normal(0, 12, (size, size, 3))
    return np.clip(noisy, 0, 255).astype("uint8")


def write_folder(out, size=64, per_class=600, seed=0):
    """Writes `per_class` PNG pictures of each of `CLASSES` into `out/<class>/`; returns the number written."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in CLASSES:
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(picture(name, size, rng)).save(os.path.join(folder, f"{name}_{i:05d}.png"))
    return per_class * len(CLASSES)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the folder to write (class subfolders go inside)")
    parser.add_argument("--size", type=int, default=64, help="pixels a side (default: 64)")
    parser.add_argument("--per-class", type=int, default=600, help="pictures per class (default: 600)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every draw (default: 0)")
    args = parser.parse_args(argv)
    if os.path.exists(args.out) and os.listdir(args.out):
        print(f"--out {args.out} exists and is not empty; give a new folder.", file=sys.stderr)
        return 2
    if args.size < 16 or args.per_class < 1:
        print(f"--size must be at least 16 and --per-class at least 1. Received: --size {args.size}, "
              f"--per-class {args.per_class}", file=sys.stderr)
        return 2
    count = write_folder(args.out, args.size, args.per_class, args.seed)
    print(f"wrote {count} pictures of {len(CLASSES)} classes, {args.size}x{args.size} RGB, to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
