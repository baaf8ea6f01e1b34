"""The input, built in one place: a dataset by name or path, then the `tf.data` batches a model is fed.

Everything that makes a run's input lives here and calls down into the
layers below, never back up:

* `kerascnn.data`: MNIST, Fashion-MNIST and CIFAR-10 by name, the dataset types,
  the validation split, scaling;
* `kerascnn.images`: your own pictures, in memory or left on disk
  (`ImageFiles`);
* `kerascnn.distribute.Plan`: how many images each process feeds a step,
  and its place in the global batch. It builds nothing.

Images stay uint8 until a whole batch is cast and scaled inside the graph,
so memory holds one byte per pixel and no Python runs per batch.

Example:

>>> import numpy as np
>>> from kerascnn.distribute import Plan
>>> x, y = np.zeros((10, 28, 28, 1), np.uint8), np.arange(10)
>>> [tuple(images.shape) for images, _ in eval_dataset(x, y, Plan("default"), per_replica=4)]
[(4, 28, 28, 1), (4, 28, 28, 1), (2, 28, 28, 1)]
"""

import numpy as np

from kerascnn import data, images
from kerascnn.errors import DistributeError

SHUFFLE_BYTES = 256 * 2**20  # streamed pictures with a cache: the shuffle buffer's size, in decoded pixels


def load_dataset(name, data_dir=None, download=True, image_size=None, color_mode=None, seed=777, stream="auto"):
    """A dataset by name (`kerascnn.data.load_dataset`), or your own images from a folder or `.npz`.

    Args:
        name: str, "mnist", "fashion_mnist" or "cifar10"; or a folder of class
            subfolders or an `.npz` file (`kerascnn.images.load_images`,
            which takes `image_size`, `color_mode`, the split's `seed` and
            `stream`, whether the pictures stay on disk).
        data_dir, download: where a dataset by name is read from
            (`kerascnn.data.load_dataset`).

    Returns:
        A `kerascnn.data.Dataset`.

    Raises:
        DataError: nothing usable found; the message names what was looked for.
    """
    if name not in data.DATASETS and images.is_image_dataset(name):
        return images.load_images(name, image_size, color_mode, seed, stream=stream)
    if name not in data.DATASETS:
        raise data.DataError(
            f"`dataset` must be one of {data.list_datasets()}, a folder of class subfolders or an .npz file. "
            f"Received: dataset={name!r}"
        )
    return data.load_dataset(name, data_dir, download)


def train_dataset(x, y, plan, per_replica, seed, epoch=None, scale=True, cache=None):
    """This process's training input: shuffled batches of its share of each step.

    One process: all of each global batch (a strategy splits it over
    replicas). `multiworker`: every process shuffles the same way and takes
    its slice of each global batch, as `DataParallel.distribute_dataset`
    does; the last, partial global batch of an epoch is dropped, because
    every process must run the same steps on batches that split evenly
    (the data is reshuffled each epoch, so no image is always left out).
    Pictures left on disk (`kerascnn.images.ImageFiles`, without a cache)
    are sliced before they are decoded: each process opens only the files
    of its own slices. With a cache, each process decodes every file once,
    on its first pass, into its own cache.

    Args:
        x, y: uint8 images (an array or `ImageFiles`) and their labels.
        plan: the run's `kerascnn.distribute.Plan`.
        per_replica: int, images per replica per step.
        seed, epoch, scale, cache: as `make_dataset`.
    """
    import tensorflow as tf

    global_batch = plan.global_batch(per_replica)
    if plan.name != "multiworker":
        return make_dataset(x, y, global_batch, shuffle=True, seed=seed, epoch=epoch, scale=scale, cache=cache)
    steps = plan.steps_per_epoch(len(x), per_replica)
    if steps < 1:
        raise DistributeError(
            f"The training split has fewer images than one global batch ({per_replica} per replica "
            f"x {plan.replicas} replicas). Received: train_images={len(x)}, global_batch={global_batch}"
        )
    local = per_replica * plan.local_replicas  # this process's slice of each global batch
    if plan.num_processes > 1 and isinstance(x, images.ImageFiles) and cache is None:
        ds = make_dataset(x, y, local, shuffle=True, seed=seed, epoch=epoch, scale=scale,
                          part=(global_batch, plan.process_id * local))
    else:
        ds = make_dataset(x, y, global_batch, shuffle=True, seed=seed, epoch=epoch, scale=scale, cache=cache)
        ds = ds.rebatch(global_batch, drop_remainder=True)
        if plan.num_processes > 1:
            ds = ds.rebatch(local).shard(plan.num_processes, plan.process_id)
    return ds.apply(tf.data.experimental.assert_cardinality(steps))


def eval_dataset(x, y, plan, per_replica, scale=True, cache=None):
    """Validation or test input that every replica can evaluate exactly.

    One process: batches of the global batch size. `multiworker`: every
    process feeds every batch of `per_replica` images, repeated once per
    local device, so any last batch splits evenly over the devices and each
    device evaluates the whole set: accuracy and loss are means, which
    copies do not change. Evaluation does not get faster with more
    devices; training does.
    """
    import tensorflow as tf

    ds = make_dataset(x, y, plan.eval_batch(per_replica), scale=scale, cache=cache)
    if plan.name != "multiworker" or plan.local_replicas == 1:
        return ds
    copies = plan.local_replicas
    repeat = lambda t: tf.concat([t] * copies, axis=0)
    return ds.map(lambda x, y: (repeat(x), repeat(y)))


def make_dataset(x, y, batch_size, shuffle=False, seed=777, epoch=None, scale=True, cache=None, part=None):
    """A `tf.data.Dataset` of (float32 images in [0, 1], int32 labels) batches.

    Images stay uint8 until a whole batch is cast and scaled inside the
    graph, so memory holds one byte per pixel and no Python runs per batch.
    Pictures left on disk (`kerascnn.images.ImageFiles`) are decoded by
    the pipeline, in parallel, as it needs them (`file_batches`).

    Args:
        shuffle: bool, a new order every pass. Defaults to False.
        seed: int, seeds the order. Defaults to 777.
        epoch: a scalar integer `tf.Variable` or None. When given, each pass's
            order is a function of (seed, epoch value) alone, read when the
            pass starts, so a run resumed at epoch 7 in a new process sees
            the same order an uninterrupted run saw at epoch 7
            (`kerascnn.callbacks.EpochSeeds` sets it). Without it, the order
            depends on how many passes this process has made.
        scale: bool, scale to [0, 1]; False feeds raw 0..255 pixels as
            float32, for a model that scales them itself
            (`DataSpec.raw_pixels`). Defaults to True.
        cache: str or None, pictures on disk only: a folder to cache them
            in, decoded (`file_batches`). Defaults to None.
        part: (global batch size, start) or None, pictures on disk without
            a cache only: of each global batch of the order, only the
            `batch_size` pictures from `start` on are decoded (`file_batches`).
            Defaults to None (all).
    """
    import tensorflow as tf

    if isinstance(x, images.ImageFiles):  # pictures on disk
        ds = file_batches(x, y, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, cache=cache, part=part)
    elif shuffle and epoch is not None:
        pixels, labels = tf.constant(x), tf.constant(y)
        batches = epoch_order(len(x), seed, epoch).batch(batch_size)
        steps = -(-len(x) // batch_size)  # unbatch hides the length: state it for the progress bar
        batches = batches.apply(tf.data.experimental.assert_cardinality(steps))
        ds = batches.map(lambda i: (tf.gather(pixels, i), tf.gather(labels, i)))
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if shuffle:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
    ds = ds.map(_scale if scale else _as_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def epoch_order(n, seed, epoch):
    """A `tf.data.Dataset` of the indices 0..n-1 in each pass's order (see `make_dataset`'s `epoch`)."""
    import tensorflow as tf

    if epoch is None:
        return tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)

    def order(_):
        return tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=epoch_key(seed, epoch))

    return tf.data.Dataset.from_tensors(0).map(order).unbatch()


def epoch_key(seed, epoch):
    """The stateless seed (seed, epoch value) of a pass, read when it starts."""
    import tensorflow as tf

    return tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch.read_value(), tf.int64)])


def epoch_seed(seed, epoch):
    """`epoch_key` as one int64, for ops that take a single seed (`Dataset.shuffle`)."""
    import tensorflow as tf

    return tf.random.stateless_uniform((), epoch_key(seed, epoch), minval=None, maxval=None, dtype=tf.int64)


def epoch_variable():
    """The scalar `tf.Variable` that keys `make_dataset`'s per-epoch order."""
    import tensorflow as tf

    return tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")


def file_batches(files, labels, batch_size, shuffle=False, seed=777, epoch=None, cache=None, part=None):
    """A `tf.data.Dataset` of (uint8 images, labels) batches of pictures on disk, decoded in parallel ahead of the model.

    Args:
        files: `kerascnn.images.ImageFiles`.
        labels: array (N,), the label of each file.
        shuffle, seed, epoch: as `make_dataset`: without a cache, the
            same per-epoch order as the pictures in memory would have.
        cache: str or None, a folder: the decoded pictures are written
            there on the first pass and read back after it; the order
            then comes from a shuffle buffer of `SHUFFLE_BYTES`.
        part: (global batch size, start) or None, without a cache: the order
            is cut into global batches (the last, partial one dropped), and
            of each only the `batch_size` files from `start` on are read, so
            a process of a multi-process run opens only its own share.
            Defaults to None (every file).
    """
    import tensorflow as tf

    labels = tf.constant(labels)

    def load(indices):  # decoded in parallel, in order (`ImageFiles.decoded`)
        return files.decoded(indices).map(lambda image, i: (image, tf.gather(labels, i)))

    if cache is None:
        order = epoch_order(len(files), seed, epoch) if shuffle else tf.data.Dataset.range(len(files))
        if part is not None:
            global_batch, start = part
            order = order.batch(global_batch, drop_remainder=True).map(
                lambda indices: indices[start:start + batch_size]).unbatch()
        ds = load(order)
    else:
        if part is not None:
            raise ValueError("`part` reads a share of the files without a cache. "
                             f"Received: part={part}, cache={cache!r}")
        decoded = load(tf.data.Dataset.range(len(files))).cache(files.cache_file(cache))
        buffer = max(1, min(len(files), SHUFFLE_BYTES // int(np.prod(files.shape[1:]))))
        if not shuffle:
            ds = decoded
        elif epoch is None:
            ds = decoded.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        else:  # each pass's buffer seeded by (seed, epoch), read when the pass starts
            ds = tf.data.Dataset.from_tensors(0).flat_map(
                lambda _: decoded.shuffle(buffer, seed=epoch_seed(seed, epoch)))
    ds = ds.batch(batch_size)
    steps = len(files) // part[0] if part is not None else -(-len(files) // batch_size)
    return ds.apply(tf.data.experimental.assert_cardinality(steps))


def _scale(x, y):
    import tensorflow as tf

    return data.scale_images(x), tf.cast(y, tf.int32)


def _as_float(x, y):
    import tensorflow as tf

    return tf.cast(x, tf.float32), tf.cast(y, tf.int32)
