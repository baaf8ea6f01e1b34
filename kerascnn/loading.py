"""Finds and loads a trained model for `evaluate`, `predict` and `export`, safely.

A user names a run directory (`logs/<model>-<time>/`, whose `best.keras`
is used) or a `.keras` file. Before Keras sees the file it is checked here,
so each way it can be wrong gets its own clear message naming the file:

* missing, empty, a directory that is not a run, not a `.keras` file;
* truncated or corrupt (not a readable zip archive, or a member fails its
  CRC check);
* carrying code: a `Lambda` layer or a serialized Python function
  (`__lambda__`) is refused outright, before anything is deserialized.

Then Keras loads it with `safe_mode=True` (the second line of defence: it
refuses to deserialize any Python bytecode), and any other failure is
reported as "cannot be loaded", again naming the file. Legacy `.h5` files
are refused: only the `.keras` format is checked this way.

Example:

>>> resolve_model_path("no/such/run")
Traceback (most recent call last):
...
kerascnn.loading.ModelFileError: no/such/run: no such file or directory.
"""

import dataclasses
import json
import os
import zipfile
import zlib

from kerascnn import rundir
from kerascnn.errors import UsageError

RUN_MODEL = rundir.BEST_MODEL  # the model a run directory names
ARCHIVE_CONFIG = "config.json"  # Keras' own, inside a .keras (zip) archive: not the run's rundir.CONFIG
# Serialized objects that carry Python code. Keras' safe mode refuses the
# bytecode too; refusing them by name first gives the user a precise message.
CODE_CLASSES = {"Lambda": "a `Lambda` layer", "__lambda__": "a serialized Python lambda"}


class ModelFileError(UsageError, ValueError):
    """A model path is missing, not a model, corrupt, or refused as unsafe."""


@dataclasses.dataclass
class LoadedModel:
    """A model and where it came from.

    Attributes:
        model: the `keras.Model`.
        path: str, the `.keras` file.
        run_dir: str or None, the run directory when one was named.
        run_config: dict or None, the run's `config.json` when there is one,
            found in the run directory or beside the `.keras` file.
        data: dict or None, the run's `data.json` (class names, input size
            and colours, the built-in dataset's name;
            `kerascnn.data.DataSpec.to_dict`), found in the run directory or
            beside the `.keras` file.
    """

    model: object
    path: str
    run_dir: object = None
    run_config: object = None
    data: object = None

    @property
    def dataset(self):
        """The built-in dataset the model was trained on (a key of `kerascnn.data.DATASETS`), or None: not known.

        `data.json`'s "dataset" (written since it was recorded there), else
        the run's `config.json`'s; None for your own images and for a
        `.keras` file with neither beside it. `kerascnn.predict` prepares
        pictures by it.
        """
        from kerascnn.data import DATASETS

        for record in (self.data, self.run_config):
            name = record.get("dataset") if isinstance(record, dict) else None
            if isinstance(name, str) and name in DATASETS:
                return name
        return None

    @property
    def class_names(self):
        """The name of each class: `data.json`'s, else the built-in dataset's, else "0", "1", ... (a digit model's)."""
        if self.data and self.data.get("class_names"):
            return [str(name) for name in self.data["class_names"]]
        from kerascnn.data import DATASETS
        from kerascnn.layers import num_classes

        if self.dataset is not None and len(DATASETS[self.dataset]["classes"]) == num_classes(self.model):
            return list(DATASETS[self.dataset]["classes"])
        return [str(c) for c in range(num_classes(self.model))]


def resolve_model_path(path):
    """The `.keras` file for `path` (a run directory or a `.keras` file), and the run directory.

    Returns:
        (model_path, run_dir): `run_dir` is None when `path` is a file.

    Raises:
        ModelFileError: `path` is missing, a directory without `best.keras`,
            or not a `.keras` file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such file or directory.")
    if os.path.isdir(path):
        model_path = os.path.join(path, RUN_MODEL)
        if not os.path.isfile(model_path):
            raise ModelFileError(
                f"{path} is not a run directory: it has no {RUN_MODEL}. Pass a run directory "
                f"(logs/<model>-<time>/ holding {rundir.CONFIG} and {RUN_MODEL}) or a .keras file."
            )
        return model_path, path
    if not path.endswith(".keras"):
        raise ModelFileError(
            f"{path}: not a .keras model file; only Keras' .keras format is loaded (with safe mode). "
            f"Received: {os.path.basename(path)}"
        )
    return path, None


def check_keras_file(path):
    """Checks a `.keras` file without deserializing anything; returns its config dict.

    Raises:
        ModelFileError: empty, truncated or corrupt, or carrying code.
    """
    if os.path.getsize(path) == 0:
        raise ModelFileError(f"{path}: the file is empty (0 bytes); it is not a saved model.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if ARCHIVE_CONFIG not in names:
                raise ModelFileError(f"{path}: not a Keras model: the archive has no {ARCHIVE_CONFIG}.")
            bad = archive.testzip()  # reads every member and checks its CRC
            if bad is not None:
                raise ModelFileError(f"{path} is corrupt: {bad} inside it fails its CRC check.")
            config = json.loads(archive.read(ARCHIVE_CONFIG))
    except zipfile.BadZipFile:
        raise ModelFileError(
            f"{path} is truncated or corrupt: it is not a readable .keras (zip) archive."
        ) from None
    except (OSError, EOFError, zlib.error, zipfile.LargeZipFile, ValueError) as e:
        if isinstance(e, ModelFileError):
            raise
        raise ModelFileError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}).") from None
    found = sorted(_code_objects(config))
    if found:
        what = " and ".join(CODE_CLASSES[c] for c in found)
        raise ModelFileError(
            f"{path}: refused: the model contains {what} (arbitrary Python code), and models are "
            "loaded with Keras' safe mode on. Nothing from the file was run. Rebuild the model from "
            "registered layers (kerascnn.models) and save it again."
        )
    return config


def _code_objects(node):
    if isinstance(node, dict):
        if node.get("class_name") in CODE_CLASSES:
            yield node["class_name"]
        for value in node.values():
            yield from _code_objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _code_objects(value)


def load_model_file(path, compile=False):
    """Loads a checked `.keras` file with Keras' safe mode on.

    Args:
        compile: bool, restore the saved optimizer, loss and metrics too
            (needed to `evaluate()`). Defaults to False: `predict()` and
            `export` need none of it.

    Raises:
        ModelFileError: the checks of `check_keras_file` fail, or Keras
            cannot rebuild the model (the message names the file and gives
            Keras' reason).
    """
    import keras

    import kerascnn.models  # noqa: F401  (registers this package's layers and models)

    check_keras_file(path)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as e:  # Keras raises ValueError, TypeError, OSError, h5py errors...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "safe_mode" in str(e):
            raise ModelFileError(
                f"{path}: refused by Keras' safe mode (the model carries Python code): {reason}"
            ) from None
        raise ModelFileError(f"{path}: cannot be loaded as a Keras model ({type(e).__name__}: {reason})") from None


def load(path):
    """Resolves `path` (run directory or `.keras` file) and loads the model safely.

    Returns:
        A `LoadedModel`.

    Raises:
        ModelFileError: see `resolve_model_path` and `load_model_file`.
    """
    model_path, run_dir = resolve_model_path(path)
    model = load_model_file(model_path)
    beside = os.path.dirname(os.path.abspath(model_path))
    if run_dir is not None:
        run_config = _read_optional(os.path.join(run_dir, rundir.CONFIG))
    else:  # a run's best.keras named by itself
        run_config = _run_config(os.path.join(beside, rundir.CONFIG))
    data = _read_optional(os.path.join(beside, rundir.DATA))
    return LoadedModel(model, model_path, run_dir, run_config, data)


def _run_config(path):
    """The config.json beside a `.keras` file, or None: none there, or a file that is no kerascnn config (another
    tool's config.json beside an exported model must not set evaluate's dataset and split)."""
    from kerascnn.config import TrainConfig

    values = _read_optional(path)
    try:
        TrainConfig.from_dict(values)
    except (TypeError, ValueError, AttributeError):  # ConfigError is a ValueError
        return None
    return values


def _read_optional(path):
    # The model is what matters; a run's config and data only give defaults and names.
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
