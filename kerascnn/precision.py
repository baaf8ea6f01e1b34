"""Chooses how a run computes: the precision policy and whether to use XLA.

`auto` picks `mixed_bfloat16` on CPUs with AVX512_BF16 or AMX (about 2x the
float32 training speed on such a CPU), `mixed_float16` on GPUs with tensor
cores (compute capability 7.0+), and `float32` otherwise. Models keep their
final softmax in float32 either way (see `kerascnn.layers.classifier_head`).

Example:

>>> resolve_precision("float32")
'float32'
"""

import keras

from kerascnn.config import PRECISIONS  # noqa: F401  (the names live with the config)


def cpu_has_bf16():
    """True when /proc/cpuinfo lists AVX512_BF16 or AMX-BF16."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def gpu_has_tensor_cores():
    """True when the backend sees a GPU of compute capability 7.0 or newer."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            for gpu in tf.config.list_physical_devices("GPU"):
                cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
                if cc and cc >= (7, 0):
                    return True
        elif backend == "jax":
            import jax

            for d in jax.devices():
                cc = getattr(d, "compute_capability", None)
                if d.platform == "gpu" and cc and float(cc) >= 7.0:
                    return True
    except Exception:  # device queries are best effort; fall back to float32
        return False
    return False


def resolve_precision(precision):
    """Returns the concrete policy name for `precision` (resolving "auto").

    Args:
        precision: str, one of `PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}. Received: precision={precision!r}")
    if precision != "auto":
        return precision
    if gpu_has_tensor_cores():
        return "mixed_float16"
    if cpu_has_bf16():
        return "mixed_bfloat16"
    return "float32"


def set_precision(precision):
    """Sets Keras' global dtype policy and returns the policy name used."""
    policy = resolve_precision(precision)
    keras.mixed_precision.set_dtype_policy(policy)
    return policy


def jit_compile_setting():
    """The `jit_compile` value for `Model.compile` on this backend and device.

    Chosen by measurement, not by default (docs/PERFORMANCE.md,
    `python tools/bench.py`):

    * TensorFlow on CPU: False. Forced XLA trained the lecture CNN at 1,490
      images/s against 2,340 without it on the 2-core AVX-512 development
      CPU: XLA's CPU convolutions are slower than oneDNN's.
    * TensorFlow on GPU: "auto", which lets Keras use XLA when every layer
      supports it (the augmentation layers of `best` do not, and Keras then
      falls back to plain graphs). Not measured here: the development
      machines have no GPU; this is Keras' own default.
    * JAX: True; JAX compiles with XLA or runs op by op, and op by op is
      far slower. `layers.allow_jit` (called by `assemble.compile_model`)
      clears the augmentation layers' TensorFlow-only `supports_jit = False`,
      without which Keras would silently run `best` uncompiled.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        return True
    if backend == "tensorflow":
        import tensorflow as tf

        return "auto" if tf.config.list_physical_devices("GPU") else False
    return "auto"
