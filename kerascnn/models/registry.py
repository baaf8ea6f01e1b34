"""Models registered by name and created through one `create_model`.

Example:

>>> "sequential" in list_models()
True
>>> create_model("nope")
Traceback (most recent call last):
...
kerascnn.models.registry.ModelError: Unknown model 'nope'; expected one of ['best', 'ensemble', 'functional', 'sequential', 'subclass'].
"""

import importlib
import inspect

from kerascnn.errors import UsageError

# The built-in models and the module that registers each: known without importing Keras
# (`train.py --help`); a module is imported when one of its models is first needed.
BUILTIN_MODELS = {
    "best": "kerascnn.models.best",
    "ensemble": "kerascnn.models.ensemble",
    "functional": "kerascnn.models.lecture",
    "sequential": "kerascnn.models.lecture",
    "subclass": "kerascnn.models.lecture",
}
_REGISTRY = {}
_RECIPES = {}
# Training settings a model's recipe may set (`register_model(name, ema=0.999)`),
# and their values for models that set none. A config value that is not None wins.
RECIPE_DEFAULTS = {"ema": 0.0, "label_smoothing": 0.0, "epochs": 15, "checkpoint": "accuracy"}


class ModelError(UsageError, ValueError):
    """An unknown model name, or an argument the model does not take."""


def register_model(name, **recipe):
    """Decorator registering a builder `fn(**kwargs) -> keras.Model` as `name`.

    Args:
        name: str, the model's name.
        **recipe: training settings this model trains with unless the config
            says otherwise, from `RECIPE_DEFAULTS`' keys (e.g. `ema=0.999`).
    """
    unknown = sorted(set(recipe) - set(RECIPE_DEFAULTS))
    if unknown:
        raise ModelError(f"Unknown recipe keys {unknown}; expected some of {sorted(RECIPE_DEFAULTS)}.")

    def wrap(fn):
        if name in _REGISTRY:
            raise ModelError(f"Model {name!r} is already registered (by {_REGISTRY[name].__module__}).")
        _REGISTRY[name] = fn
        _RECIPES[name] = {**RECIPE_DEFAULTS, **recipe}
        return fn

    return wrap


def resolve_recipe(name, **values):
    """The training settings for model `name`: `values` that are not None, else its recipe's.

    >>> resolve_recipe("sequential", ema=None, label_smoothing=0.1, epochs=None)
    {'ema': 0.0, 'label_smoothing': 0.1, 'epochs': 15, 'checkpoint': 'accuracy'}
    """
    _builder(name)
    return {k: v if values.get(k) is None else values[k] for k, v in _RECIPES[name].items()}


def list_models():
    """The registered model names, the built-in ones included, sorted (imports no Keras)."""
    return sorted(set(_REGISTRY) | set(BUILTIN_MODELS))


def load_builtin_models():
    """Imports the built-in models' modules, registering them (and their layers) with Keras."""
    for module in sorted(set(BUILTIN_MODELS.values())):
        importlib.import_module(module)


def model_defaults(name):
    """The builder's keyword arguments and their defaults."""
    params = inspect.signature(_builder(name)).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def create_model(name, **kwargs):
    """Builds the registered model `name`, uncompiled and built.

    Args:
        name: str, a name from `list_models()`.
        **kwargs: builder arguments; a value of None means "the default".

    Raises:
        ModelError: unknown name, or an argument the builder does not take.
    """
    builder = _builder(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    unknown = sorted(set(kwargs) - set(model_defaults(name)))
    if unknown:
        raise ModelError(
            f"Model {name!r} does not take {unknown}; it takes {sorted(model_defaults(name))}."
        )
    return builder(**kwargs)


def _builder(name):
    if name not in _REGISTRY and name in BUILTIN_MODELS:
        importlib.import_module(BUILTIN_MODELS[name])
    if name not in _REGISTRY:
        raise ModelError(f"Unknown model {name!r}; expected one of {list_models()}.")
    return _REGISTRY[name]
