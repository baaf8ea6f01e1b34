"""kerascnn: a Keras-native trainer for convolutional image classifiers.

The lecture series "CNN with MNIST" (lab 11) as a library: convolution
basics (`kerascnn.basics`), the lecture CNN written three ways, an ensemble
and the "best" recipe (`kerascnn.models`), assembled into a run
(`kerascnn.assemble`) and trained with `fit()` and Keras callbacks
(`kerascnn.training`). The commands (`train.py`, `tune.py`,
`python -m kerascnn`) are thin users of it (`kerascnn.commands`).

`import kerascnn` is light: Keras (and its backend) loads when first used.
The package's layers and models are registered with Keras as soon as Keras
is imported, before or after `kerascnn`, so `keras.saving.load_model` can
rebuild a saved `.keras` file. The API in two lines:

>>> import kerascnn
>>> model = kerascnn.load_model("logs/best-20250101-120000")  # doctest: +SKIP
>>> model.predict(images).argmax(axis=1)  # doctest: +SKIP
>>> result = kerascnn.train(kerascnn.TrainConfig(model="sequential", epochs=1))  # doctest: +SKIP
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

from kerascnn.config import TrainConfig  # noqa: E402  (a leaf: no Keras)

# Public names that need Keras, and the module each comes from: imported on first use.
_LAZY = {
    "RunResult": "kerascnn.training",
    "train": "kerascnn.training",
    "create_model": "kerascnn.models",
    "list_models": "kerascnn.models",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kerascnn' has no attribute {name!r}")


def register_with_keras():
    """Registers the package's layers and models with Keras' serialization (imports Keras)."""
    importlib.import_module("kerascnn.models").load_builtin_models()


class _RegisterWhenKerasLoads(importlib.abc.MetaPathFinder):
    """Runs `register_with_keras` once Keras is imported, wherever that import happens.

    That is right after `import keras` finishes, unless Keras loads half-way
    through the import of a module the models are built from (say
    `from kerascnn.layers import ...` first): the models import that module
    back, so registering fails then, and runs again as each kerascnn module
    finishes loading, until it succeeds.
    """

    def __init__(self):
        self.finding = self.registering = self.keras_loaded = False

    def find_spec(self, name, path=None, target=None):
        if self.finding or not (name == "keras" or name.startswith("kerascnn.")):
            return None
        self.finding = True  # the finders after this one find the module
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.finding = False
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            exec_module = spec.loader.exec_module

            def exec_then_register(module):
                exec_module(module)
                self.keras_loaded = self.keras_loaded or name == "keras"
                if self.keras_loaded:
                    self.register()

            spec.loader.exec_module = exec_then_register
        return spec

    def register(self):
        if self.registering or self not in sys.meta_path:  # under way, or done
            return
        self.registering = True
        try:
            register_with_keras()
        except ImportError as error:
            if "partially initialized module 'kerascnn." not in str(error):
                raise
            return  # again when the half-loaded module has finished
        finally:
            self.registering = False
        sys.meta_path.remove(self)


if "keras" in sys.modules:
    register_with_keras()
elif not any(isinstance(finder, _RegisterWhenKerasLoads) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenKerasLoads())


def load_model(path, compile=False):
    """Loads a trained model from a run directory or a `.keras` file, checked and in safe mode.

    Example:

    >>> import os, tempfile, kerascnn
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> kerascnn.create_model("sequential").save(path)
    >>> kerascnn.load_model(path).count_params()
    619786

    Args:
        path: str or path-like, a run directory (its `best.keras`) or a
            `.keras` file.
        compile: bool, restore the optimizer, loss and metrics (to
            `evaluate()`). Defaults to False.

    Returns:
        The `keras.Model`.

    Raises:
        kerascnn.loading.ModelFileError: missing, corrupt, or refused by
            safe mode; the message names the file.
    """
    from kerascnn.loading import load_model_file, resolve_model_path

    model_path, _ = resolve_model_path(path)
    return load_model_file(model_path, compile=compile)


__all__ = ["RunResult", "TrainConfig", "create_model", "list_models", "load_model", "train"]
