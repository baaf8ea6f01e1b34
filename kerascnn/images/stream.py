"""Pictures left on disk: `ImageFiles` stands for the pixels its files decode to, and the memory test that decides.

The `tf.data` pipeline that streams them in batches is `kerascnn.pipeline`'s.
"""

import hashlib
import os

import numpy as np

STREAM_SHARE = 0.25  # stream="auto": from disk when the decoded pictures would take more of the memory
DECODE_CHUNK = 64  # pictures decoded per call into Python (Pillow)


def decode_files(paths, channels):
    """`decode_image` for `tf.numpy_function`: paths (bytes, the file system's encoding) -> uint8 pixels
    (n, max height, max width, channels), zero-padded, and each picture's (height, width)."""
    from kerascnn.images.decode import decode_image

    images = [decode_image(os.fsdecode(path), int(channels)) for path in paths]
    shapes = np.array([image.shape[:2] for image in images], np.int32).reshape(-1, 2)
    height, width = shapes.max(axis=0) if len(images) else (0, 0)
    if all(image.shape[:2] == (height, width) for image in images):
        return np.stack(images) if images else np.zeros((0, 0, 0, int(channels)), np.uint8), shapes
    pixels = np.zeros((len(images), height, width, int(channels)), np.uint8)
    for out, image in zip(pixels, images):
        out[: image.shape[0], : image.shape[1]] = image
    return pixels, shapes


def streams_from_disk(stream, decoded_bytes, log):
    """Whether the pictures stay on disk: `stream`, or for "auto" their decoded size against the memory."""
    if stream != "auto":
        return stream == "on"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if decoded_bytes <= STREAM_SHARE * memory:
        return False
    log(f"note: the pictures would take {decoded_bytes / 2**30:.1f} GiB decoded, over {STREAM_SHARE:.0%} of this "
        f"machine's {memory / 2**30:.0f} GiB: they stream from disk (--stream off reads them into memory).")
    return True


class ImageFiles:
    """Pictures left on disk, decoded by the input pipeline as it needs them (streaming).

    It stands for the uint8 array (N, height, width, channels) its files
    decode to: `len`, `shape`, indexing (`files[indices]` is another
    `ImageFiles`) and `np.asarray(files)`, which decodes them all, for the
    parts needed whole (validation pictures in TensorBoard, a test set).
    `kerascnn.pipeline.make_dataset` streams them to a model in batches.

    Decoding is `kerascnn.images.decode.decode_image`'s, the one decoder
    of every path (Pillow: EXIF orientation, palettes, every mode to
    `channels`, transparency on white), run by `tf.numpy_function` on
    `DECODE_CHUNK` files at a time (`decoded`), then a
    bilinear resize to `size` (`tf.image.resize`, as the model's own
    `Resizing` layer), rounded to uint8.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, paths, size, channels):
        self.paths = np.asarray(paths, dtype=str)
        self.size, self.channels = tuple(size), channels

    @property
    def shape(self):
        return (len(self.paths), *self.size, self.channels)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        return ImageFiles(self.paths[index], self.size, self.channels)

    def __array__(self, dtype=None, copy=None):
        import tensorflow as tf

        decoded = self.decoded(tf.data.Dataset.range(len(self))).map(lambda image, _: image).batch(256)
        batches = list(decoded.as_numpy_iterator())
        pixels = np.concatenate(batches) if batches else np.zeros(self.shape, np.uint8)
        return pixels if dtype is None else pixels.astype(dtype)

    def decoded(self, indices):
        """A `tf.data.Dataset` of (uint8 pixels `(*size, channels)`, index) for a dataset of indices into `paths`.

        The files are decoded `DECODE_CHUNK` at a time per `tf.numpy_function`
        call (one call per picture would cost more than Pillow's decoding of a
        small picture), in parallel and in order, then each is resized.
        """
        import tensorflow as tf

        paths, size, channels = tf.constant(self.paths), self.size, self.channels

        def resize(pixels):
            image = tf.image.resize(pixels, size, method="bilinear")
            return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

        def load(ids):
            pixels, shapes = tf.numpy_function(
                decode_files, [tf.gather(paths, ids), channels], (tf.uint8, tf.int32), stateful=False)
            pixels, shapes = tf.ensure_shape(pixels, (None, None, None, channels)), tf.ensure_shape(shapes, (None, 2))
            alike = tf.reduce_all(shapes == tf.shape(pixels)[1:3])  # one size: resized together
            images = tf.cond(alike, lambda: resize(pixels), lambda: tf.map_fn(
                lambda a: resize(a[0][: a[1][0], : a[1][1]]), (pixels, shapes),
                fn_output_signature=tf.TensorSpec((*size, channels), tf.uint8)))
            return tf.ensure_shape(images, (None, *size, channels)), ids

        parallel = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return indices.batch(DECODE_CHUNK).map(load, **parallel).unbatch()

    def cache_file(self, folder):
        """The cache's file prefix in `folder` (made if need be): named by the files (and their sizes
        and times), the size and the channels, so a changed picture or a new `--image-size` makes a
        new cache. The lock file of a cache never finished is removed."""
        digest = hashlib.sha256(repr((self.size, self.channels)).encode())
        for path in self.paths:
            info = os.stat(path)
            digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        os.makedirs(folder, exist_ok=True)
        prefix = os.path.join(folder, f"images-{digest.hexdigest()[:16]}")
        lock = prefix + ".lockfile"
        if os.path.exists(lock) and not os.path.exists(prefix + ".index"):
            os.remove(lock)  # left by a run stopped during its first pass; its cache was never finished
        return prefix
