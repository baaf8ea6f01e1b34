"""Pictures left on disk: `ImageFiles` stands for the pixels its files decode to, and the memory test that decides.

The `tf.data` pipeline that streams them in batches is `kerascnn.pipeline`'s.
"""

import hashlib
import os

import numpy as np

STREAM_SHARE = 0.25  # stream="auto": from disk when the decoded pictures would take more of the memory


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
    `channels`, transparency on white), run by `tf.numpy_function`, then a
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

        decoded = tf.data.Dataset.from_tensor_slices(self.paths).map(
            self.decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(256)
        batches = list(decoded.as_numpy_iterator())
        pixels = np.concatenate(batches) if batches else np.zeros(self.shape, np.uint8)
        return pixels if dtype is None else pixels.astype(dtype)

    def decode(self, path):
        """The uint8 pixels of the file at `path` (a string tensor), inside a `tf.data` graph."""
        import tensorflow as tf

        from kerascnn.images.decode import decode_file_for_tf

        image = tf.numpy_function(decode_file_for_tf, [path, self.channels], tf.uint8, stateful=False)
        image = tf.image.resize(tf.ensure_shape(image, (None, None, self.channels)), self.size, method="bilinear")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return tf.ensure_shape(image, (*self.size, self.channels))

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
