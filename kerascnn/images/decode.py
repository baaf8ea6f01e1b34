"""The one decoder of your own pictures: a file or bytes -> uint8 pixels (H, W, C), read as a person sees them.

The scan (`kerascnn.images.scan`), loading into memory and streaming
(`kerascnn.images.ImageFiles`, through `tf.numpy_function`), `evaluate`,
`predict` and the page (`kerascnn.predict.prepare_bytes_as_trained`) all
decode with `decode_image`, so a picture has the same pixels on every path.
It is Pillow's reading, in this order:

1. **Any format Pillow opens** (`IMAGE_EXTENSIONS`: PNG, JPEG, GIF, BMP,
   WebP, TIFF, ICO, PPM, TGA, ...); a GIF, WebP or TIFF with several frames
   gives its first.
2. **EXIF orientation applied** (`ImageOps.exif_transpose`): a phone photo
   tagged "rotate 90°" is read upright, and its size is the size shown.
3. **Every mode converted the same way** to the run's colour mode:
   grey (`channels=1`, Pillow's "L": ITU-R 601-2 luma) or RGB (`channels=3`):
   * palettes ("P", 8-bit BMP, GIF) are expanded to their colours;
   * "1" (1-bit) is 0 or 255;
   * 16-bit grey ("I;16", "I;16B", ...) is scaled to 8 bits (value / 257,
     rounded); 32-bit "I" and "F" the same when any value exceeds 255,
     else taken as 8-bit values;
   * "CMYK" and "YCbCr", "LAB", "HSV" go through Pillow's `convert`;
   * **transparency is composited on white** ("RGBA", "LA", "PA", and a
     palette's or grey's transparent colour): a transparent pixel is white,
     as on a page, not the colour hidden under it.

Errors are `DataError`s naming the file (exit 2).
"""

import io
import os
import warnings

import numpy as np

from kerascnn.data import DataError

ALPHA_BACKGROUND = (255, 255, 255)  # transparency is composited on white
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
ORIENTATION = 0x0112  # the EXIF orientation tag
NOT_DECODED = ("EPS", "MPEG")  # Pillow needs an outside program (Ghostscript) for EPS; MPEG it only identifies


def image_extensions():
    """The file extensions of every format Pillow can decode here (lower case, with the dot), sorted.

    Stub formats (HDF5, GRIB, BUFR, WMF: Pillow names them but needs a
    handler to decode), EPS (an outside program) and MPEG (a video Pillow
    only identifies) are left out.
    """
    from PIL import Image, ImageFile

    Image.init()
    readable = set()
    for fmt, (factory, _) in Image.OPEN.items():
        if fmt in NOT_DECODED or (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)):
            continue
        readable.add(fmt)
    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in readable))


def open_image(source, name=None):
    """Opens, decodes and orients a picture: a loaded `PIL.Image` as it is shown (EXIF applied).

    Args:
        source: a path, bytes, or a binary file object.
        name: what error messages call it. Defaults to the path, or "the picture".

    Raises:
        DataError: missing, empty, not an image, truncated or corrupt, or a
            decompression bomb; the message starts with `name`.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    if name is None:
        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "the picture"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                image.load()  # decodes it: truncated data and bad checksums show here
                exif = "exif" in image.info or image.format in ("TIFF", "MPO")  # else no orientation to read
                if exif and image.getexif().get(ORIENTATION, 1) not in (1, None):
                    return ImageOps.exif_transpose(image)
                return image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return _bad(name, "too many pixels to decode safely (a decompression bomb?)")
    except UnidentifiedImageError:
        return _bad(name, "not an image, though its name says so")
    except FileNotFoundError:
        return _bad(name, "missing (a broken symbolic link?)")
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        return _bad(name, f"truncated or corrupt ({e})")


def _bad(name, reason):
    raise DataError(f"{name}: {reason}")


def has_alpha(image):
    """Whether a Pillow image has transparency: an alpha channel or a transparent colour."""
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        "transparency" in image.info and image.mode in ("P", "L", "RGB", "1"))


def to_pixels(image, channels):
    """A loaded, oriented `PIL.Image` as uint8 (H, W, channels): 1 grey or 3 RGB (see the module docstring)."""
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3. Received: channels={channels!r}")
    if image.mode in SIXTEEN_BIT or image.mode in ("I", "F"):
        values = np.asarray(image, np.float64)
        if image.mode in SIXTEEN_BIT or (values.size and values.max() > 255):
            values = values / 257.0
        image = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), "L")
    if has_alpha(image):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255)), rgba)
    target = "L" if channels == 1 else "RGB"
    if image.mode != target:
        image = image.convert(target)
    pixels = np.asarray(image, np.uint8)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def decode_image(source, channels, name=None):
    """A picture (path, bytes or file object) as uint8 (H, W, channels), as shown; see the module docstring.

    Raises:
        DataError: it cannot be decoded; the message names it.
    """
    return to_pixels(open_image(source, name), channels)
