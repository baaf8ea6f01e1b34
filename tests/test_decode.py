"""One decoder on every path: pictures of each mode and format, built here with Pillow, decoded by the scan,
in-memory loading, the streamed `tf.data` pipeline and predict's preparation, and compared with Pillow's own
pixels (EXIF orientation applied, converted to grey or RGB, transparency on white)."""

import os
import sys

import numpy as np
import pytest
from PIL import Image, ImageOps

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kerascnn.data import DataError  # noqa: E402
from kerascnn.images import load_images, read_header  # noqa: E402

HEIGHT, WIDTH = 16, 24  # every picture's size as shown


def _pictures(root):
    """{file name: path} of one picture per mode and format, all HEIGHT x WIDTH as shown."""
    rng = np.random.default_rng(35)
    rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    rgb[:, :8] = [220, 50, 50]  # a block of one colour, as in the palette BMP
    grey = rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
    rgba = np.dstack([rgb, rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)])
    palette = Image.fromarray(rgb).quantize(16)
    made = {
        "L.png": Image.fromarray(grey, "L"),
        "RGB.png": Image.fromarray(rgb),
        "RGBA.png": Image.fromarray(rgba, "RGBA"),
        "P.png": palette,
        "1.png": Image.fromarray(grey > 128),
        "I16.png": Image.fromarray(grey.astype(np.uint16) * 257 + rng.integers(0, 257, grey.shape).astype(np.uint16)),
        "palette8.bmp": palette,
        "bit1.bmp": Image.fromarray(grey > 100),
        "grey.bmp": Image.fromarray(grey, "L"),
        "colour.gif": palette,
        "grey.gif": Image.fromarray(grey, "L"),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "photo.webp": Image.fromarray(rgb),
        "scan.tiff": Image.fromarray(rgb),
        "noextension": Image.fromarray(rgb),
    }
    paths = {}
    for i, (name, image) in enumerate(made.items()):
        path = os.path.join(root, "ab"[i % 2], name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        kwargs = {"lossless": True} if name.endswith(".webp") else {}
        image.save(path, format="PNG" if "." not in name else None, **kwargs)
        paths[name] = path
    # A phone photo stored sideways (WIDTH x HEIGHT turned) and tagged "rotate 90° clockwise" (orientation 6).
    exif = Image.Exif()
    exif[0x0112] = 6
    path = os.path.join(root, "b", "rotated.jpg")
    Image.fromarray(np.rot90(rgb, 1).copy()).save(path, exif=exif.tobytes(), quality=95, subsampling=0)
    paths["rotated.jpg"] = path
    return paths


def pillow_pixels(path, channels):
    """Pillow's own reading: exif_transpose, 16-bit scaled to 8, transparency on white, then convert."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
    if image.mode.startswith("I;16") or (image.mode in ("I", "F") and np.asarray(image).max() > 255):
        image = Image.fromarray(np.round(np.asarray(image, np.float64) / 257).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    return pixels[..., None] if pixels.ndim == 2 else pixels


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("modes"))
    paths = _pictures(root)
    with open(os.path.join(root, "a", "README"), "w") as f:
        f.write("not a picture, and no extension")
    return root, paths


def test_the_scan_reports_the_size_as_shown_and_reads_every_format(folder):
    root, paths = folder
    for name, path in paths.items():
        assert read_header(path)[0] == (HEIGHT, WIDTH), name  # the rotated photo too: its size after EXIF
    notes = []
    data = load_images(root, stream="off", log=notes.append)
    assert len(data.x_train) + len(data.x_test) == len(paths)  # WebP, TIFF and the picture with no extension
    text = "\n".join(notes)
    assert "1 files without an image extension" in text and "README" in text  # the text file is skipped
    assert "composited on white" in text


@pytest.mark.parametrize("color_mode", ["rgb", "grayscale"])
def test_every_path_decodes_each_mode_and_format_as_pillow_does(folder, color_mode):
    from kerascnn.models import create_model
    from kerascnn.pipeline import make_dataset
    from kerascnn.predict import prepare, prepare_bytes_as_trained

    root, paths = folder
    channels = 1 if color_mode == "grayscale" else 3
    memory = load_images(root, color_mode=color_mode, stream="off", log=lambda note: None)
    disk = load_images(root, color_mode=color_mode, stream="on", log=lambda note: None)
    assert memory.x_train.shape[1:] == (HEIGHT, WIDTH, channels)
    streamed = np.concatenate([x.numpy() for x, _ in make_dataset(disk.x_train, disk.y_train, 4, scale=False)])
    model = create_model("sequential", input_shape=(HEIGHT, WIDTH, channels), num_classes=2,
                         image_size=(HEIGHT, WIDTH), rescale=1 / 255)
    by_path = {p: i for i, p in enumerate(disk.x_train.paths)}
    checked = 0
    for name, path in paths.items():
        expected = pillow_pixels(path, channels)
        assert expected.shape == (HEIGHT, WIDTH, channels), name
        with open(path, "rb") as f:
            uploaded = prepare_bytes_as_trained(f.read(), model)  # the page
        np.testing.assert_array_equal(uploaded, expected, err_msg=f"{name}: the page")
        np.testing.assert_array_equal(prepare(path, model), expected, err_msg=f"{name}: predict")
        if path in by_path:
            i = by_path[path]
            np.testing.assert_array_equal(memory.x_train[i], expected, err_msg=f"{name}: in memory")
            np.testing.assert_array_equal(streamed[i], expected, err_msg=f"{name}: streamed")
            checked += 1
    assert checked == len(disk.x_train)
    np.testing.assert_array_equal(np.asarray(disk.x_test), memory.x_test)


def test_exif_orientation_and_bmp_palettes_are_applied(folder):
    """The two silent errors of the issue: a sideways photo and palette indices instead of colours."""
    from kerascnn.images import ImageFiles

    _, paths = folder
    rotated = np.asarray(ImageFiles([paths["rotated.jpg"]], (HEIGHT, WIDTH), 3))[0]
    assert np.abs(rotated[:, :8].astype(int) - [220, 50, 50]).max() <= 8  # the red block on the left: upright
    bmp = np.asarray(ImageFiles([paths["palette8.bmp"]], (HEIGHT, WIDTH), 3))[0]
    assert np.abs(bmp[:, :8].astype(int) - [220, 50, 50]).max() <= 8  # the palette's colour, not an index


def test_a_picture_that_breaks_after_the_scan_names_its_file(tmp_path):
    import tensorflow as tf

    from kerascnn.images import ImageFiles

    bad = tmp_path / "gone bad.webp"
    bad.write_bytes(b"RIFF0000WEBPnot really")
    with pytest.raises(tf.errors.OpError, match="gone bad.webp"):
        np.asarray(ImageFiles([str(bad)], (8, 8), 3))
    with pytest.raises(DataError, match="gone bad.webp"):
        read_header(str(bad))
