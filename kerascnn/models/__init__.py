"""Model registry and the registered models (importing this registers them)."""

from kerascnn.models import best, ensemble, lecture  # noqa: F401  (registers the builders)
from kerascnn.models.ensemble import Ensemble
from kerascnn.models.lecture import LectureCNN
from kerascnn.models.registry import (
    ModelError,
    create_model,
    list_models,
    model_defaults,
    register_model,
    resolve_recipe,
)

__all__ = [
    "Ensemble",
    "LectureCNN",
    "ModelError",
    "create_model",
    "list_models",
    "model_defaults",
    "register_model",
    "resolve_recipe",
]
