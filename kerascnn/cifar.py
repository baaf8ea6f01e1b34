"""CIFAR-10's files as Keras distributes them: the archive, its folder of pickled batches, read safely.

`cifar-10-python.tar.gz` (https://www.cs.toronto.edu/~kriz/cifar.html)
holds `cifar-10-batches-py/`: five training batches and a test batch of
10,000 images each, every one a Python 2 pickle of a dict of arrays.
`read_cifar` reads them from the archive as it is or from the extracted
folder; `read_cifar_batch` unpickles one as Keras' own `load_batch` does,
with nothing constructible but NumPy arrays. Which files are CIFAR-10,
and where they are looked for, is `kerascnn.data`'s (`DATASETS`,
`load_dataset`); this module only reads them, and imports NumPy only then.
"""

import hashlib
import os
import pickle
import tarfile
import zlib

# CIFAR-10's python distribution: a tar.gz of a folder of pickled batches (https://www.cs.toronto.edu/~kriz/cifar.html)
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")


def file_sha256(path):
    """The SHA-256 of a file's bytes, read a MiB at a time (what `keras.utils.get_file` checks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_cifar(source):
    """CIFAR-10's arrays from its archive (`cifar-10-python.tar.gz`) or the folder it extracts to.

    The batches (`CIFAR_BATCHES`) are pickles, read by `read_cifar_batch`,
    which makes nothing but the dict of arrays they hold.

    Args:
        source: str, the archive, or a folder holding the six batch files.

    Returns:
        (x_train, y_train, x_test, y_test): uint8 images (N, 32, 32, 3), int64 labels (N,).

    Raises:
        DataError: a batch is missing, unreadable or not a CIFAR batch.
    """
    import numpy as np

    from kerascnn.data import DataError

    batches = []
    if os.path.isdir(source):
        for batch in CIFAR_BATCHES:
            path = os.path.join(source, batch)
            try:
                with open(path, "rb") as f:
                    batches.append(read_cifar_batch(f, path))
            except OSError as e:
                raise DataError(f"{path}: cannot be read ({e}).") from None
    else:
        try:
            with tarfile.open(source, "r:gz") as tar:
                for batch in CIFAR_BATCHES:
                    member = f"{CIFAR_FOLDER}/{batch}"
                    try:
                        f = tar.extractfile(member)
                    except KeyError:
                        f = None
                    if f is None:
                        raise DataError(f"{source}: the archive holds no file {member}; is it CIFAR-10's?")
                    batches.append(read_cifar_batch(f, f"{source}:{member}"))
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"{source}: cannot be read ({e}); is it a complete, uncorrupted download?") from None
    x_train = np.concatenate([x for x, _ in batches[:-1]])
    y_train = np.concatenate([y for _, y in batches[:-1]])
    return x_train, y_train, np.ascontiguousarray(batches[-1][0]), batches[-1][1]


CIFAR_PIXELS = 32 * 32 * 3  # a row of a batch's data: the red plane, the green, the blue, each 32 rows of 32


def read_cifar_batch(file, where):
    """One CIFAR batch pickle: its images (N, 32, 32, 3) uint8 and labels (N,) int64.

    A batch is a Python 2 pickle of a dict: `b"data"`, a uint8 array
    (N, 3072), and `b"labels"`, a list of N ints (and `b"batch_label"`,
    `b"filenames"`, unused). It is unpickled as Keras' own `load_batch`
    does it, with only NumPy's array and dtype constructible
    (`_BatchUnpickler`), and anything but that dict is refused.

    Args:
        file: a binary file object.
        where: str, the file named in errors.

    Raises:
        DataError: not such a pickle.
    """
    import numpy as np

    from kerascnn.data import DataError

    try:
        batch = _BatchUnpickler(file, encoding="bytes").load()
    except DataError:
        raise
    except Exception as e:  # pickle.UnpicklingError, EOFError, ValueError, ...: all mean "not a batch"
        raise DataError(f"{where}: not a CIFAR batch ({type(e).__name__}: {e}).") from None
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == CIFAR_PIXELS):
        found = f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}".strip()
        raise DataError(f"{where}: not a CIFAR batch; expected a dict whose b'data' is a uint8 array "
                        f"(N, {CIFAR_PIXELS}). Received: {found if isinstance(batch, dict) else type(batch).__name__}")
    if not (isinstance(labels, list) and len(labels) == len(data) and all(type(v) is int for v in labels)):
        raise DataError(f"{where}: not a CIFAR batch; expected b'labels', a list of {len(data)} ints.")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.array(labels, np.int64)


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that can make NumPy arrays and dtypes, and nothing else (as Keras' `RestrictedUnpickler`)."""

    def find_class(self, module, name):
        import numpy as np

        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            # how an array is rebuilt, under NumPy 1's module name (CIFAR's files) and NumPy 2's
            ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
            ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refused to make {module}.{name}: a CIFAR batch holds only arrays")
        return allowed[module, name]
