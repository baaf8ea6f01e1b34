"""Model registry and the registered models.

The registry's names are known without Keras (`train.py --help` imports
none); a model's module, and Keras with it, is imported when the model is
first created. `Ensemble` and `LectureCNN` import on first use too.
"""

import importlib

from kerascnn.models.registry import (
    BUILTIN_MODELS,
    ModelError,
    create_model,
    list_models,
    load_builtin_models,
    model_defaults,
    register_model,
    resolve_recipe,
)

_CLASSES = {"Ensemble": "kerascnn.models.ensemble", "LectureCNN": "kerascnn.models.lecture"}


def __getattr__(name):
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name]), name)
    raise AttributeError(f"module 'kerascnn.models' has no attribute {name!r}")


__all__ = [
    "BUILTIN_MODELS",
    "Ensemble",
    "LectureCNN",
    "ModelError",
    "create_model",
    "list_models",
    "load_builtin_models",
    "model_defaults",
    "register_model",
    "resolve_recipe",
]
