"""One flat, commented configuration that flows from the CLI to `fit()`.

Precedence follows nanoGPT/LightningCLI: the defaults below < a JSON file
(`--config` or `--hparams`) < command-line flags. The resolved config is saved
as `config.json` in every run directory so the run can be reproduced.

Example:

>>> cfg = TrainConfig(model="sequential", epochs=2)
>>> cfg.batch_size
100
>>> TrainConfig.from_dict({"model": "best", "members": 3}).members
3
"""

import dataclasses
import json
from typing import Optional

from kerascnn.errors import UsageError

# The names validation accepts, here so that a config needs no Keras; precision.py and distribute.py act on them.
COLOR_MODES = ("grayscale", "rgb")
STREAMS = ("auto", "on", "off")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
MEMBERS = ("lecture", "strided", "residual")  # best's member designs (kerascnn/models/best.py)


class ConfigError(UsageError, ValueError):
    """A configuration value is invalid; the message names the field."""


@dataclasses.dataclass
class TrainConfig:
    # What to train.
    model: str = "sequential"  # a name from `kerascnn.models.list_models()`
    dataset: str = "mnist"  # "mnist", "fashion_mnist", a folder of class subfolders or an .npz (docs/IMAGES.md)
    # Optimisation (the lecture's values).
    epochs: int = 15  # passes over the training split
    batch_size: int = 100  # per replica; a step trains on batch_size x replicas images
    lr: float = 1e-3  # Adam's initial learning rate
    lr_period: int = 5  # halve ... every `lr_period` epochs
    lr_factor: float = 0.5  # ... by this factor
    # Model shape; None means "the model's own default".
    members: Optional[int] = None  # ensemble size (ensemble: 3, best: 5)
    filters: Optional[int] = None  # first stage's filters; doubles per stage (32)
    kernel_size: Optional[int] = None  # conv kernel size (3)
    dense_units: Optional[int] = None  # hidden dense units (256)
    dropout: Optional[float] = None  # dropout before the classifier (0.4)
    batchnorm: Optional[bool] = None  # ConvBNReLU blocks instead of conv+ReLU
    residual: Optional[bool] = None  # functional only: residual stages
    rotation: Optional[float] = None  # augmentation: max rotation, degrees (15)
    shift: Optional[float] = None  # augmentation: max shift, pixels (2)
    zoom: Optional[float] = None  # augmentation: max zoom, a fraction (0.1 = 90-110%)
    member: Optional[str] = None  # best: the member design, "lecture", "strided" or "residual"
    tta: Optional[int] = None  # ensembles: at inference, also average over the image shifted N px each way (0: off)
    # Regularisation (None: the model's recipe, see `kerascnn.models.model_recipe`).
    ema: Optional[float] = None  # momentum of an average of the weights used for validation and saving (0: off)
    label_smoothing: Optional[float] = None  # cross-entropy against labels smoothed by this much (0: off)
    # Data.
    val_size: int = 5000  # validation images carved from the training set
    subset: Optional[int] = None  # train on the first N training images only
    data_dir: Optional[str] = None  # where the dataset files are; see data.py
    image_size: Optional[int] = None  # your own images: the side the model works at (default: the data's)
    color_mode: Optional[str] = None  # your own images: grayscale | rgb (default: the data's)
    stream: str = "auto"  # your own images: on (decode from disk as needed) | off (into memory) | auto (by size)
    cache_dir: Optional[str] = None  # streamed images: cache them here, decoded, after the first epoch
    # Run.
    seed: int = 777  # seeds weights, shuffling, dropout and augmentation
    split_seed: int = 777  # seeds the validation split: fixed apart from `seed`, so seeds compare on one split
    precision: str = "auto"  # auto | float32 | mixed_bfloat16 | mixed_float16
    strategy: str = "auto"  # auto | default | mirrored | multiworker (kerascnn/distribute.py)
    logdir: str = "logs"  # run directories go under here
    image_every: int = 0  # also write image summaries every N epochs (0: only at the end)

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raises `ConfigError` naming the first field that is out of range."""
        check_value(self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        for name in ("seed", "split_seed"):
            value = getattr(self, name)
            check_value(0 <= value < 2**32, name, "an integer in [0, 2**32)", value)
        check_value(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        check_value(self.lr > 0, "lr", "a number > 0", self.lr)
        check_value(self.lr_period >= 1, "lr_period", "an integer >= 1", self.lr_period)
        check_value(0 < self.lr_factor <= 1, "lr_factor", "a number in (0, 1]", self.lr_factor)
        check_value(self.val_size >= 1, "val_size", "an integer >= 1", self.val_size)
        check_value(self.subset is None or self.subset >= 1, "subset", "an integer >= 1", self.subset)
        check_value(self.image_every >= 0, "image_every", "an integer >= 0", self.image_every)
        check_value(self.members is None or self.members >= 1, "members", "an integer >= 1", self.members)
        check_value(self.tta is None or self.tta >= 0, "tta", "an integer number of pixels >= 0", self.tta)
        check_value(
            self.dropout is None or 0 <= self.dropout < 1, "dropout", "a number in [0, 1)", self.dropout
        )
        for name in ("filters", "kernel_size", "dense_units"):
            value = getattr(self, name)
            check_value(value is None or value >= 1, name, "an integer >= 1", value)
        for name in ("rotation", "shift"):
            value = getattr(self, name)
            check_value(value is None or value >= 0, name, "a number >= 0", value)
        for name in ("zoom", "ema", "label_smoothing"):
            value = getattr(self, name)
            check_value(value is None or 0 <= value < 1, name, "a number in [0, 1)", value)
        check_value(self.image_size is None or self.image_size >= 1, "image_size", "an integer >= 1", self.image_size)
        check_value(self.color_mode in (None, *COLOR_MODES), "color_mode", f"one of {COLOR_MODES}", self.color_mode)
        check_value(self.stream in STREAMS, "stream", f"one of {STREAMS}", self.stream)
        check_value(self.precision in PRECISIONS, "precision", f"one of {PRECISIONS}", self.precision)
        check_value(self.strategy in STRATEGIES, "strategy", f"one of {STRATEGIES}", self.strategy)

    def model_kwargs(self):
        """The builder arguments this config sets (None = the model's default)."""
        names = (
            "members",
            "filters",
            "kernel_size",
            "dense_units",
            "dropout",
            "batchnorm",
            "residual",
            "rotation",
            "shift",
            "zoom",
            "member",
            "tta",
        )
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Builds a config from a dict, refusing keys it does not know."""
        if not isinstance(values, dict):
            raise ConfigError(f"A config must be a JSON object. Received: {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"Unknown config keys {unknown}; expected some of {sorted(known)}.")
        for f in dataclasses.fields(cls):
            if f.name in values and values[f.name] is not None:
                _check_type(f.name, values[f.name], f.default)
        return cls(**values)

    @classmethod
    def from_json(cls, path):
        """Reads a config (or a tuner's best hyperparameters) from a JSON file."""
        return cls.from_dict(read_json_file(path))


def read_json_file(path, error=ConfigError):
    """The JSON value in the config file `path`; `error` names the file when it cannot be read or parsed."""
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise error(f"Cannot read config file {path}: {e.strerror}.") from None
    except json.JSONDecodeError as e:
        raise error(f"Config file {path} is not valid JSON: {e}.") from None


# The type of each field whose default (None) does not say it; the others are their default's type.
FIELD_TYPES = {
    "members": int, "filters": int, "kernel_size": int, "dense_units": int,
    "subset": int, "dropout": float, "rotation": float, "shift": float, "zoom": float,
    "ema": float, "label_smoothing": float, "member": str, "tta": int,
    "batchnorm": bool, "residual": bool, "data_dir": str, "image_size": int, "color_mode": str,
    "cache_dir": str,
}


def _check_type(name, value, default):
    # JSON gives int/float/str/bool; the default (or FIELD_TYPES) says which.
    kind = FIELD_TYPES.get(name, type(default))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    check_value(ok, name, f"of type {kind.__name__}", value)


def check_value(ok, name, expected, received, error=ConfigError):
    """Raises `error` naming the field, what was expected and what was received.

    >>> check_value(0 < 5, "lr", "a number > 0", 5)
    >>> check_value(-1 > 0, "lr", "a number > 0", -1)
    Traceback (most recent call last):
    ...
    kerascnn.config.ConfigError: `lr` must be a number > 0. Received: lr=-1
    """
    if not ok:
        raise error(f"`{name}` must be {expected}. Received: {name}={received!r}")
