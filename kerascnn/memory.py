"""Whether a run fits this machine's memory: a rough estimate, checked before any run directory is made.

A run on pictures of its own size can ask for more memory than the machine
has (a 4096x4096 working size, or a large batch of large pictures); the
process would then be killed mid-epoch, or swap for hours. `check_fits`
refuses such a run first, with exit status 2, naming `--image-size` and
`--batch-size`, the two flags that bring it down.
"""

import os

from kerascnn.errors import UsageError

BYTES_PER_VALUE = 4  # float32: weights, optimizer slots and activations (bf16 activations take less: rough)
OPTIMIZER_SLOTS = 2  # Adam's first and second moments
# Feature-map values per working-size pixel and member, forward, for the first stage's `filters` channels:
# the first stage's conv (and batch norm) outputs at full size dominate; later stages are a quarter each.
VALUES_PER_FILTER_PIXEL = 2


class OutOfMemory(UsageError):
    """The run's estimated memory is more than this machine has available."""


def estimate_bytes(params, image_size, channels, batch_size, members=1, filters=32, ema=False):
    """A rough estimate of the memory, in bytes, that training a model needs: weights plus one batch's activations.

    The formula (rough on purpose, to catch runs that are off by a factor,
    not to budget to the last megabyte):

    * weights: `params` x 4 bytes x (weights + gradients + Adam's 2 slots,
      + 1 for the weight average `ema`);
    * activations: `batch_size` x height x width of the working size x
      (3 x `channels` for the resize, rescale and augmentation copies +
      `VALUES_PER_FILTER_PIXEL` x `filters` x `members` for the feature
      maps) x 4 bytes x 2 (kept forward for the backward pass, and their
      gradients).

    Example: the lecture CNN on MNIST (619,786 parameters, 28x28 grey, batch
    100) needs about 50 MiB; a 4096x4096 working size about 900 GiB.

    >>> round(estimate_bytes(619786, (28, 28), 1, 100) / 2**20)
    50
    >>> estimate_bytes(126786, (4096, 4096), 3, 100) // 2**30
    912

    Args:
        params: int, the model's parameter count.
        image_size: (height, width) the model works at.
        channels: int, the pictures' channels (1 or 3).
        batch_size: int, pictures per step on this machine.
        members: int, networks in an ensemble (each has its own feature maps).
        filters: int, the first stage's filters.
        ema: bool, whether the optimizer keeps a weight average too.

    Returns:
        int, bytes.
    """
    slots = 2 + OPTIMIZER_SLOTS + (1 if ema else 0)
    weights = params * BYTES_PER_VALUE * slots
    per_pixel = 3 * channels + VALUES_PER_FILTER_PIXEL * filters * members
    activations = batch_size * image_size[0] * image_size[1] * per_pixel * BYTES_PER_VALUE * 2
    return int(weights + activations)


def available_bytes():
    """The memory available to a new process now: /proc/meminfo's MemAvailable, else free pages (os.sysconf)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None  # unknown: nothing to check against


def check_fits(needed, available, image_size, batch_size):
    """Raises `OutOfMemory` (exit status 2) when `needed` bytes exceed `available` (None: not known, passes).

    >>> check_fits(2 * 2**30, 2**30, (512, 512), 100)
    Traceback (most recent call last):
    ...
    kerascnn.memory.OutOfMemory: This run needs about 2.0 GiB of memory (model, optimizer and one batch of 512x512 pictures), but this machine has 1.0 GiB available. Work at a smaller size (--image-size, e.g. 128) or with fewer pictures per step (--batch-size, now 100). Received: image_size=(512, 512), batch_size=100
    """
    if available is None or needed <= available:
        return
    raise OutOfMemory(
        f"This run needs about {needed / 2**30:.1f} GiB of memory (model, optimizer and one batch of "
        f"{image_size[1]}x{image_size[0]} pictures), but this machine has {available / 2**30:.1f} GiB available. "
        f"Work at a smaller size (--image-size, e.g. 128) or with fewer pictures per step (--batch-size, now "
        f"{batch_size}). Received: image_size={tuple(image_size)}, batch_size={batch_size}"
    )


def run_bytes(model, spec, config):
    """`estimate_bytes` for a built `model` trained on data of `spec` as `config` says."""
    size = tuple(spec.image_size or spec.image_shape[:2])
    members = len(getattr(model, "members", None) or [model])
    return estimate_bytes(model.count_params(), size, spec.image_shape[-1], config.batch_size, members,
                          config.filters or 32, bool(config.ema))
