"""kerascnn: a Keras-native trainer for convolutional image classifiers.

The lecture series "CNN with MNIST" (lab 11) as a library: convolution
basics (`kerascnn.basics`), the lecture CNN written three ways, an ensemble
and the "best" recipe (`kerascnn.models`), assembled into a run
(`kerascnn.assemble`) and trained with `fit()` and Keras callbacks
(`kerascnn.training`). The commands (`train.py`, `tune.py`,
`python -m kerascnn`) are thin users of it (`kerascnn.commands`).

`import kerascnn` is light: Keras (and its backend) loads when first used.
The package's layers and models are registered with Keras as soon as both
are imported, in either order, so `keras.saving.load_model` can rebuild a
saved `.keras` file. The API in two lines:

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


def lazy_attributes(package, modules):
    """A module `__getattr__` (PEP 562) that imports each name's module on first use.

    Keeps `import kerascnn` and `train.py --help` free of Keras and TensorFlow while
    `kerascnn.train`, `kerascnn.models.Ensemble` and the like still work.

    Example:

    >>> getattr_ = lazy_attributes("kerascnn", {"TrainConfig": "kerascnn.config"})
    >>> getattr_("TrainConfig").__name__
    'TrainConfig'

    Args:
        package: str, the name of the module that uses it, for the error.
        modules: dict, public name -> the module that defines it.
    """

    def __getattr__(name):
        if name in modules:
            return getattr(importlib.import_module(modules[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


from kerascnn.config import TrainConfig  # noqa: E402  (a leaf: no Keras)

# Public names that need Keras: imported on first use.
__getattr__ = lazy_attributes(__name__, {
    "RunResult": "kerascnn.training",
    "train": "kerascnn.training",
    "create_model": "kerascnn.models",
    "list_models": "kerascnn.models",
})


# Besides the built-in models (and the layers they are made of): every other class a saved kerascnn
# model refers to. A run's `.keras` file keeps its compile, and with it the loss (`best`'s label smoothing).
KERAS_CLASSES = ("kerascnn.losses",)


def register_with_keras():
    """Registers every class a saved kerascnn model needs with Keras' serialization (imports Keras):
    the built-in models, their layers, and the modules in `KERAS_CLASSES`."""
    importlib.import_module("kerascnn.models").load_builtin_models()
    for module in KERAS_CLASSES:
        importlib.import_module(module)


class _RegisterWhenKerasLoads(importlib.abc.MetaPathFinder):
    """Calls `register_with_keras` once Keras is imported and no kerascnn module is half-way through its import.

    Why an import hook: `keras.saving.load_model` finds a saved kerascnn
    layer only if its class was registered in this process (Keras imports no
    module outside its own packages to find a class), and `import kerascnn`
    must not import Keras (`train.py --help` stays fast). So when Keras is
    imported after kerascnn, its import is the moment to register. When a
    kerascnn module is what imports Keras (`from kerascnn.layers import ...`
    first), registering must wait until that module has finished, as the
    models import it back; `depth` counts the kerascnn modules being
    executed. Python has no post-import hook, so this finder wraps the
    loaders of `keras` and `kerascnn.*`, and leaves `sys.meta_path` once done.
    """

    def __init__(self):
        self.finding = False
        self.depth = 0  # kerascnn modules now executing

    def find_spec(self, name, path=None, target=None):
        if self.finding or not (name == "keras" or name.startswith("kerascnn.")):
            return None
        self.finding = True  # the finders after this one find the module
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.finding = False
        if spec is not None and hasattr(spec.loader, "exec_module"):
            exec_module, ours = spec.loader.exec_module, name != "keras"

            def exec_then_register(module):
                self.depth += ours
                try:
                    exec_module(module)
                finally:
                    self.depth -= ours
                if self.depth == 0 and "keras" in sys.modules and self in sys.meta_path:
                    sys.meta_path.remove(self)
                    register_with_keras()

            spec.loader.exec_module = exec_then_register
        return spec


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
