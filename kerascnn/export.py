"""Exports a trained model for serving: `python -m kerascnn export MODEL --format FORMAT`.

Through Keras' own `Model.export`, which traces the forward pass
(`training=False`: no augmentation, no dropout, batch norm's moving
statistics) into a standalone artifact that needs neither this package nor
the model's Python code:

| `--format`    | Keras format       | artifact                       | load it with                         |
|---------------|--------------------|--------------------------------|--------------------------------------|
| `saved_model` | `"tf_saved_model"` | a directory, endpoint `serve`  | `tf.saved_model.load(path).serve(x)` |
| `onnx`        | `"onnx"` (tf2onnx) | one `.onnx` file               | `onnxruntime.InferenceSession(path)` |
| `tflite`      | `"litert"` (TensorFlow's TFLite converter) | one `.tflite` file | `ai_edge_litert` / `tf.lite.Interpreter` |

Input: float32 images `(batch, 28, 28, 1)` in [0, 1] for a digit model;
for a model trained on your own images, raw 0..255 pixels
`(batch, height, width, channels)` of any height and width, which the
graph resizes and scales itself (its `Resizing` and `Rescaling` layers).
Output: float32 class probabilities `(batch, classes)`; the batch size is
free. The class names are in the run's `data.json`. Ensembles export as
one graph that averages their members.

A model trained in mixed precision (`mixed_bfloat16` on CPUs with
AVX512_BF16/AMX) is exported as a float32 copy: bfloat16 convolutions
become TFLite "Flex" ops that the standard TFLite runtime cannot run, ONNX
Runtime has no bfloat16 `Conv` kernel, and Keras' ONNX export requires a
float32 policy. The weights are float32 variables either way, so the copy
is the same model computed at full precision.

The artifact is written beside the model unless `--out` says otherwise
(`best.keras` -> `best_saved_model/`, `best.onnx`, `best.tflite`), into a
temporary name first and renamed when complete; an existing path is never
written over.
"""

import os
import shutil
import warnings

from kerascnn import loading
from kerascnn.errors import UsageError
from kerascnn.rundir import check_new_file

# --format -> (Keras' format name, default artifact suffix)
FORMATS = {
    "saved_model": ("tf_saved_model", "_saved_model"),
    "onnx": ("onnx", ".onnx"),
    "tflite": ("litert", ".tflite"),
}


class ExportError(UsageError, ValueError):
    """The export cannot be done: bad format or path, or a missing converter."""


def default_out(model_path, fmt):
    """The artifact path beside `model_path` for format `fmt`."""
    return os.path.splitext(model_path)[0] + FORMATS[fmt][1]


def check_out(out, fmt):
    """Raises `ExportError` for a tflite `out` without .tflite, or `rundir.check_new_file`'s errors (`out` exists,
    or its folder does not): every command's outputs are refused alike."""
    if fmt == "tflite" and not out.endswith(".tflite"):
        raise ExportError(f"--out for tflite must end with .tflite (LiteRT's rule). Received: --out {out}")
    check_new_file(out)


def check_converter(fmt):
    """Raises `ExportError` when the converter `fmt` needs is not installed."""
    if fmt != "onnx":
        return
    try:
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as e:
        raise ExportError(
            f"ONNX export needs tf2onnx and onnx ({e}). Install them with: pip install 'kerascnn[export]'"
        ) from None


def float32_copy(model):
    """The same model with every layer computing in float32, sharing no state.

    Rebuilds the model from its config with every dtype policy set to
    float32 and copies the weights (float32 variables under any mixed
    policy). A float32 model is rebuilt the same way, so the artifact never
    depends on the global dtype policy in force when it was loaded.
    """
    import keras
    import numpy as np

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("float32")  # for sublayers made in __init__
    try:
        config = _float32_config(keras.saving.serialize_keras_object(model))
        copy = keras.saving.deserialize_keras_object(config, safe_mode=True)
        copy(np.zeros((1, *_input_shape(model)), np.float32))  # built and "called": Keras' export needs both
        copy.set_weights(model.get_weights())
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    return copy


def _input_shape(model):
    """A concrete input shape to call `model` on once: a side of any size is called at 32 (as `num_classes` does)."""
    from kerascnn.layers import model_input_shape

    return tuple(32 if side is None else side for side in model_input_shape(model))


def _float32_config(node):
    if isinstance(node, dict):
        if node.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and isinstance(node.get("config"), dict):
            return {**node, "config": {**node["config"], "name": "float32"}}
        return {key: _float32_config(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_float32_config(value) for value in node]
    return node


def export_model(model, out, fmt):
    """Exports `model` as `fmt` to `out`, atomically; returns `out`.

    Args:
        model: a `keras.Model`.
        out: str, the artifact path (a directory for saved_model).
        fmt: str, one of `FORMATS`.

    Raises:
        ExportError: unknown format, a tflite `out` without .tflite, or the
            converter is missing.
        OutputExists, UsageError: `out` exists, or its folder does not.
    """
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format; expected one of {sorted(FORMATS)}. Received: format={fmt!r}")
    check_out(out, fmt)
    check_converter(fmt)
    keras_format, suffix = FORMATS[fmt]
    head, tail = os.path.split(os.path.abspath(out))
    tmp = os.path.join(head, f".{tail}.tmp-{os.getpid()}" + (suffix if fmt == "tflite" else ""))
    try:
        with warnings.catch_warnings():
            # Keras' tf2onnx patch probes `np.object`, which NumPy 2 warns about.
            warnings.filterwarnings("ignore", message=".*np.object.*", category=FutureWarning)
            float32_copy(model).export(tmp, format=keras_format, verbose=False)
        os.rename(tmp, out)  # the complete artifact appears at once
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.remove(tmp)
    return out


def export(path, fmt, out=None):
    """Loads the model at `path` (run directory or `.keras`) safely and exports it.

    Returns:
        str, the artifact's path.

    Raises:
        ModelFileError: the model cannot be found or loaded safely.
        ExportError: see `export_model`.
    """
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format; expected one of {sorted(FORMATS)}. Received: format={fmt!r}")
    model_path, _ = loading.resolve_model_path(path)
    out = out or default_out(model_path, fmt)
    check_out(out, fmt)  # before the (slower) load: a bad --out fails at once
    check_converter(fmt)
    return export_model(loading.load_model_file(model_path), out, fmt)
