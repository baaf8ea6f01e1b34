"""Model registry and the registered models.

The registry's names are known without Keras (`train.py --help` imports
none); a model's module, and Keras with it, is imported when the model is
first created. `Ensemble` and `LectureCNN` import on first use too.
"""

from kerascnn import lazy_attributes
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

__getattr__ = lazy_attributes(
    __name__, {"Ensemble": "kerascnn.models.ensemble", "LectureCNN": "kerascnn.models.lecture"}
)


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
