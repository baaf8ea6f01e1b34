"""One flat, commented configuration that flows from the CLI to `fit()`.

Precedence follows nanoGPT/LightningCLI: the defaults below < a JSON file
(`--config` or `--hparams`) < command-line flags. A None field means "the
model's default"; `resolve` fills every one of them in, once per run, and the
resolved config is what the run trains with and what it saves as
`config.json`, so `train.py --config <run>/config.json` repeats the run.

Example:

>>> cfg = TrainConfig(model="sequential", epochs=2, batch_size=50)
>>> cfg.batch_size
50
>>> TrainConfig.from_dict({"model": "best", "members": 3}).members
3
"""

import dataclasses
import json
import math
import numbers
import os
import typing
from typing import Optional

from kerascnn.data import list_datasets  # imports no NumPy until data is read
from kerascnn.errors import UsageError

# The names validation accepts, here so that a config needs no Keras; precision.py and distribute.py act on them.
COLOR_MODES = ("grayscale", "rgb")
STREAMS = ("auto", "on", "off")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
MEMBERS = ("lecture", "strided", "residual")  # best's member designs (kerascnn/models/best.py)
# Which epoch best.keras keeps (kerascnn/callbacks.py, CHECKPOINT_RULES): the highest validation accuracy, the
# lowest validation cross-entropy (unsmoothed), or the last epoch.
CHECKPOINTS = ("accuracy", "nll", "last")
DATASETS = tuple(list_datasets())  # the built-in datasets, sorted: kerascnn.data.DATASETS' names
# The fields that are the model builder's arguments (None: the model's default, `resolve` fills it in).
MODEL_FIELDS = ("members", "filters", "kernel_size", "dense_units", "dropout", "batchnorm", "residual", "rotation",
                "shift", "zoom", "flip", "brightness", "contrast", "elastic", "member", "tta")
# The augmentation policies (kerascnn/layers/policy.py): auto chooses one from the data.
AUGMENTS = ("auto", "digits", "photos", "none")
AUGMENT_FIELDS = ("rotation", "shift", "zoom", "flip", "brightness", "contrast")  # the amounts a policy sets
# The fields a model's training recipe sets (None: the recipe's, `kerascnn.models.resolve_recipe`).
RECIPE_FIELDS = ("ema", "label_smoothing", "epochs", "checkpoint")
# The batch size when `--batch-size` is not given (`batch_for`): the lecture's 100 pictures a step, fewer on a small
# training split so that an epoch still has MIN_STEPS steps (a folder of 2,592 pictures got 26 steps an epoch at
# 100, 728 in all of best's 28 epochs, and stopped short of learning: docs/RESULTS.md), never under MIN_BATCH
# (batch norm's statistics).
BATCH = 100
MIN_STEPS = 100
MIN_BATCH = 16


class ConfigError(UsageError, ValueError):
    """A configuration value is invalid; the message names the field."""


class Rule(typing.NamedTuple):
    """What a field's values must be: `ok(value)`, said in words by `expected` ("an integer >= 1").

    `why(value)`, when given, says in a few words why a refused value is
    refused ("no such file").
    """

    expected: str
    ok: typing.Callable
    why: typing.Optional[typing.Callable] = None


AT_LEAST_1 = Rule("an integer >= 1", lambda v: v >= 1)
AT_LEAST_0 = Rule("an integer >= 0", lambda v: v >= 0)
POSITIVE = Rule("a finite number > 0", lambda v: 0 < v < math.inf)
NOT_NEGATIVE = Rule("a number >= 0", lambda v: v >= 0)
FRACTION = Rule("a number in [0, 1)", lambda v: 0 <= v < 1)
SEED = Rule("an integer in [0, 2**32)", lambda v: 0 <= v < 2**32)
DATASET = Rule(
    f"one of {list(DATASETS)}, a folder of class subfolders or an .npz file",
    lambda v: v in DATASETS or os.path.isdir(v) or (v.endswith(".npz") and os.path.isfile(v)),
    lambda v: f"no such {'file' if v.endswith('.npz') else 'folder or dataset name'}",
)


def model_names():
    """The registry's model names (`kerascnn.models.list_models`; the registry imports no Keras)."""
    from kerascnn.models.registry import list_models

    return tuple(list_models())


def flag(default, help, *, choices=None, rule=None, switch=False):
    """A config field that carries what its command-line flag needs, as `dataclasses.field` metadata.

    The commands make one flag per field from it (`--lr-period` for
    `lr_period`, `kerascnn.commands.flags`), and `validate_fields` checks
    every value against it: the field's type (its annotation), `choices`,
    `rule`.

    Args:
        default: the field's default.
        help: str, the flag's help: what the field means.
        choices: tuple of the values allowed, or a function returning it
            (the registry's model names, known only when asked).
        rule: `Rule` a value must pass.
        switch: bool, a flag that takes no value and sets True (`--residual`).
    """
    metadata = {"help": help, "choices": choices, "rule": rule, "switch": switch}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class TrainConfig:
    # What to train.
    model: str = flag("sequential", "the model to train", choices=model_names)
    dataset: str = flag("mnist", f"{' or '.join(DATASETS)}; or a folder of class subfolders, or an .npz: "
                        "see docs/IMAGES.md", rule=DATASET)
    # Optimisation (the lecture's values).
    epochs: Optional[int] = flag(None, "passes over the training split "
                                 "(default: the model's recipe; best: 28, others: 15)", rule=AT_LEAST_1)
    batch_size: Optional[int] = flag(None, f"per replica; a step trains on batch_size x replicas images (default: "
                                     f"{BATCH}; fewer for a training split under {BATCH * MIN_STEPS:,} images a "
                                     f"replica, so that an epoch has {MIN_STEPS} steps, at least {MIN_BATCH})",
                                     rule=AT_LEAST_1)
    lr: float = flag(1e-3, "Adam's initial learning rate", rule=POSITIVE)
    lr_period: int = flag(5, "epochs between rate cuts", rule=AT_LEAST_1)
    lr_factor: float = flag(0.5, "rate multiplier per cut", rule=Rule("a number in (0, 1]", lambda v: 0 < v <= 1))
    # Model shape; None means "the model's own default".
    members: Optional[int] = flag(None, "ensemble members (ensemble: 3, best: 2)", rule=AT_LEAST_1)
    filters: Optional[int] = flag(None, "first stage's filters, doubled per stage (default: the model's, 32)",
                                  rule=AT_LEAST_1)
    kernel_size: Optional[int] = flag(None, "conv kernel size (default: the model's, 3)", rule=AT_LEAST_1)
    dense_units: Optional[int] = flag(None, "hidden dense units (default: the model's, 256)", rule=AT_LEAST_1)
    dropout: Optional[float] = flag(None, "dropout before the classifier (default: the model's, 0.4)", rule=FRACTION)
    batchnorm: Optional[bool] = flag(None, "true or false: batch-norm blocks (default: the model's)")
    residual: Optional[bool] = flag(None, "functional model: residual stages", switch=True)
    augment: str = flag("auto", "augmentation policy: digits, photos or none; auto: digits for MNIST and written "
                        "marks, photos for other pictures, none for models that do not augment (docs/IMAGES.md)",
                        choices=AUGMENTS)
    rotation: Optional[float] = flag(None, "augmentation: max rotation, degrees (default: the policy's; digits: 15, "
                                     "photos: 0)", rule=NOT_NEGATIVE)
    shift: Optional[float] = flag(None, "augmentation: max shift, pixels (default: the policy's share of the side; "
                                  "digits: 1/14, 2 px at 28; photos: 1/10)", rule=NOT_NEGATIVE)
    zoom: Optional[float] = flag(None, "augmentation: max zoom, a fraction, e.g. 0.1 for 90-110% "
                                 "(default: the policy's: 0)", rule=FRACTION)
    flip: Optional[bool] = flag(None, "augmentation: true or false, random horizontal flips (default: the policy's; "
                                "photos: true)")
    brightness: Optional[float] = flag(None, "augmentation: max brightness change, a fraction, colour pictures "
                                       "(default: the policy's: 0)", rule=FRACTION)
    contrast: Optional[float] = flag(None, "augmentation: max contrast change, a fraction, colour pictures "
                                     "(default: the policy's: 0)", rule=FRACTION)
    elastic: Optional[float] = flag(None, "augmentation: elastic distortion, its strength alpha in pixels at sigma 4 "
                                    "(Simard 2003: 34; default: the model's, 0: off)", rule=NOT_NEGATIVE)
    member: Optional[str] = flag(None, "best: the member design; lecture when not given", choices=MEMBERS)
    tta: Optional[int] = flag(None, "best, ensemble: test-time augmentation, predictions averaged over the image and "
                              "its copies shifted N pixels up, down, left and right (default: 0, off)",
                              rule=Rule("an integer number of pixels >= 0", lambda v: v >= 0))
    # Regularisation (None: the model's recipe, see `kerascnn.models.resolve_recipe`; so is `epochs`).
    ema: Optional[float] = flag(None, "validate and save an average of the weights with this momentum, e.g. 0.999 "
                                "(default: the model's, 0: off)", rule=FRACTION)
    label_smoothing: Optional[float] = flag(None, "cross-entropy against labels smoothed by this much, e.g. 0.1 "
                                            "(default: the model's recipe; best: 0.1, others: 0)", rule=FRACTION)
    checkpoint: Optional[str] = flag(None, "the epoch best.keras keeps: accuracy (highest validation accuracy), nll "
                                     "(lowest validation cross-entropy) or last (default: the model's recipe)",
                                     choices=CHECKPOINTS)
    # Data.
    val_size: int = flag(5000, "validation images carved from the training set", rule=AT_LEAST_1)
    subset: Optional[int] = flag(None, "train on the first N training images", rule=AT_LEAST_1)
    data_dir: Optional[str] = flag(None, "dataset directory (default: $KERASCNN_DATA_DIR, then caches)")
    image_size: Optional[int] = flag(None, "your own images: the side N (N x N) the model works at (default: the "
                                     "data's most common size, scaled down to 128 px on the longer side)", rule=AT_LEAST_1)
    color_mode: Optional[str] = flag(None, "your own images; when not given, grayscale if every picture is grey",
                                     choices=COLOR_MODES)
    stream: str = flag("auto", "your own images: on: decode from disk as needed; off: into memory; auto: on when "
                       "they would take over a quarter of the memory", choices=STREAMS)
    cache_dir: Optional[str] = flag(None, "streamed images: cache them here, decoded, on the first epoch "
                                    "(docs/IMAGES.md)")
    # Run.
    seed: int = flag(777, "seeds weights, shuffling, dropout and augmentation", rule=SEED)
    split_seed: int = flag(777, "seeds the validation split, apart from --seed, so seeds compare on one split",
                           rule=SEED)
    precision: str = flag("auto", "auto: bf16 on CPUs with AVX512_BF16/AMX, else float32",
                          choices=PRECISIONS)
    strategy: str = flag("auto", "auto: mirrored on 2+ GPUs; multiworker: several processes or machines, "
                         "see docs/DISTRIBUTED.md", choices=STRATEGIES)
    logdir: str = flag("logs", "where run directories go")
    image_every: int = flag(0, "also write TensorBoard images every N epochs (0: at the end only)", rule=AT_LEAST_0)

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raises `ConfigError` naming the first field whose value is not allowed."""
        validate_fields(self)

    def model_kwargs(self):
        """The builder arguments this config sets (None = the model's default)."""
        return {n: getattr(self, n) for n in MODEL_FIELDS if getattr(self, n) is not None}

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
        return cls(**values)

    @classmethod
    def from_json(cls, path):
        """Reads a config (or a tuner's best hyperparameters) from a JSON file."""
        return cls.from_dict(read_json_file(path))


def resolve(config, spec=None, images=None, replicas=1):
    """The config a run of `config` trains with: every "the model's default" filled in.

    The one place a run's recipe is decided; a run resolves its config once
    and passes the result on (data, model, compile, callbacks, `fit()`,
    `config.json`, TensorBoard's text summary). Filled in, where `config`
    leaves them None:

    * `epochs`, `ema`, `label_smoothing`: the model's recipe
      (`kerascnn.models.resolve_recipe`);
    * the model's arguments (`MODEL_FIELDS`) that the model's builder takes:
      the builder's defaults (`kerascnn.models.model_defaults`). A field the
      model does not take (`members` of `sequential`) stays None;
    * `augment` and its amounts (`AUGMENT_FIELDS`): the policy `auto`
      chooses from the data (`augmentation`). For your own folder that
      needs the pictures: until `spec` and `images` are given, those
      fields stay as they are and the config is resolved again when they
      are (`kerascnn.assemble` does so once the data is read);
    * `batch_size`: `batch_for` the training split's size and the
      replicas, known once `images` are given (`kerascnn.assemble`
      resolves again with them);
    * `precision`: `auto` becomes the policy this machine runs
      (`kerascnn.precision.resolve_precision`).

    Resolving a resolved config hands it back as it is. Imports Keras (the
    model's module).

    Example:

    >>> resolved = resolve(TrainConfig(model="sequential", dropout=0.2, precision="float32"))
    >>> resolved.epochs, resolved.label_smoothing, resolved.filters, resolved.dropout, resolved.members
    (15, 0.0, 32, 0.2, None)
    >>> resolved.batch_size is None  # until the training pictures are given
    True
    >>> import numpy as np
    >>> resolved = resolve(resolved, images=np.zeros((2592, 28, 28, 1), "uint8"))
    >>> resolved.batch_size, resolve(resolved) is resolved
    (25, True)

    Args:
        config: `TrainConfig`.
        spec: `kerascnn.data.DataSpec` of its data, or None (a built-in
            dataset's own, a folder's unknown).
        images: its uint8 training pictures, or None.
        replicas: int, the model replicas a step is spread over
            (`kerascnn.distribute.Plan.replicas`), for the batch size.
            Defaults to 1.

    Returns:
        A new `TrainConfig`, `config` itself if it was resolved already.

    Raises:
        ModelError: `config.model` is not a registered model.
        ConfigError: a policy for a model that has no augmentation layers.
    """
    if getattr(config, "_resolved", False):
        return config
    from kerascnn.models.registry import model_defaults, resolve_recipe
    from kerascnn.precision import resolve_precision

    values = resolve_recipe(config.model, **{name: getattr(config, name) for name in RECIPE_FIELDS})
    defaults = model_defaults(config.model)
    for name in MODEL_FIELDS:
        if getattr(config, name) is None and name in defaults and name not in AUGMENT_FIELDS:
            values[name] = defaults[name]
    why = getattr(config, "_augment_why", None)  # resolved before, waiting only for the batch size's data
    augment, why = ({}, why) if why is not None else augmentation(config, defaults, spec, images)
    if config.batch_size is None and images is not None:
        values["batch_size"] = batch_for(len(images), replicas)
    resolved = dataclasses.replace(config, **values, **augment, precision=resolve_precision(config.precision))
    # Not fields: a copy made by dataclasses.replace is resolved again. A config whose policy or batch size needs
    # the data (`auto` on a folder, before it is read) is resolved again, with the data, by `kerascnn.assemble`.
    resolved._resolved = why is not None and resolved.batch_size is not None
    resolved._augment_why = why
    return resolved


def batch_for(train_images, replicas=1):
    """The batch size per replica of a run that does not set `--batch-size`, for `train_images` training pictures.

    `BATCH` (100, the lecture's), or fewer for a split under 10,000 pictures
    a replica so that an epoch still has `MIN_STEPS` (100) steps: `best`'s
    schedule (28 epochs, the rate halved every 5) is counted in epochs, and
    a small folder's few steps an epoch left it half-trained. Never under
    `MIN_BATCH` (16) a replica.

    Example:

    >>> batch_for(55000), batch_for(2592), batch_for(500), batch_for(20000, replicas=4)
    (100, 25, 16, 50)
    """
    return max(MIN_BATCH, min(BATCH, train_images // (MIN_STEPS * replicas)))


def augmentation(config, defaults, spec=None, images=None):
    """The augmentation policy `config` trains with, its amounts and why: the part of `resolve` that reads the data.

    A model whose builder takes no augmentation amounts (`ensemble`) gets
    "none". `auto` is "none" for a model that does not augment by default
    (the lecture's three single CNNs), else the policy
    `kerascnn.layers.policy.choose` picks from the data. Amounts the config
    sets (`--rotation`, `--flip`, ...) are kept; the others come from the
    policy, at the size the model works at.

    Args:
        config: `TrainConfig`.
        defaults: dict, the model builder's defaults (`model_defaults`).
        spec: `kerascnn.data.DataSpec` of the data, or None. Without it, a
            built-in dataset's is used; a folder's size and colours are known
            only from `--image-size` and `--color-mode`.
        images: uint8 training pictures, or None (`kerascnn.layers.policy.choose`).

    Returns:
        (values, why): the fields to set (`augment` and the policy's amounts),
        and why the policy was chosen; ({}, None) while it needs the data.

    Raises:
        ConfigError: a policy other than none for a model with no augmentation.
    """
    from kerascnn.layers import policy

    takes = [name for name in AUGMENT_FIELDS if name in defaults]
    if not takes:
        if config.augment not in ("auto", "none"):
            raise ConfigError(f"`augment` must be auto or none for model {config.model}: it has no augmentation "
                              f"layers. Received: augment={config.augment!r}")
        return {"augment": "none"}, f"{config.model} has no augmentation layers"
    size, channels = _picture(config, spec)
    name, why = config.augment, "as asked (--augment)"
    if name == "auto" and not any(defaults.get(field) for field in ("rotation", "shift", "zoom", "flip")):
        set_by_flags = any(getattr(config, field) for field in takes)
        name, why = "none", f"{config.model} does not augment by default" + ("; amounts as set" * set_by_flags)
    elif name == "auto":
        name, why = policy.choose(config.dataset, channels, images) if channels else (None, None)
    if name is None or size is None or channels is None:
        return {}, None
    amounts = policy.amounts(name, size, channels)
    return {"augment": name, **{f: amounts[f] for f in takes if getattr(config, f) is None}}, why


def _picture(config, spec):
    """(side, channels) of the pictures as the model sees them, each None while unknown (a folder not yet read)."""
    from kerascnn import data as data_lib

    if spec is None and config.dataset in DATASETS:
        spec = data_lib.dataset_spec(config.dataset)
    if spec is not None:
        return (spec.image_size or spec.image_shape[:2])[0], spec.image_shape[-1]
    channels = {"rgb": 3, "grayscale": 1}.get(config.color_mode)
    return config.image_size, channels


def read_json_file(path, error=ConfigError):
    """The JSON value in the config file `path`; `error` names the file when it cannot be read or parsed."""
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise error(f"Cannot read config file {path}: {e.strerror}.") from None
    except json.JSONDecodeError as e:
        raise error(f"Config file {path} is not valid JSON: {e}.") from None


def field_type(field):
    """The type a field's values have: its annotation, without `Optional`.

    >>> field_type(dataclasses.fields(TrainConfig)[2]).__name__  # epochs: int
    'int'
    """
    kinds = [t for t in typing.get_args(field.type) if t is not type(None)] or [field.type]
    return kinds[0]


def is_of_type(value, kind):
    """Whether `value` is a `kind` (int, float, bool or str); a float field takes an int, no field takes a bool
    but a bool one."""
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, numbers.Real)
    if kind is int:
        return isinstance(value, numbers.Integral)
    return isinstance(value, kind)


def choices_of(field):
    """The values `field` allows (its metadata's `choices`, called if a function), or None if any of its type."""
    choices = field.metadata.get("choices")
    return choices() if callable(choices) else choices


def refusal(field, value):
    """Why `value` is not allowed in `field`: None when it is, else `(expected, why)` in words.

    >>> refusal(dataclasses.fields(TrainConfig)[2], 0)  # epochs
    ('an integer >= 1', None)
    """
    if value is None and field.default is None:
        return None  # "the model's own default"
    kind = field_type(field)
    if not is_of_type(value, kind):
        return f"of type {kind.__name__}", None
    choices = choices_of(field)
    if choices is not None and value not in choices:
        return f"one of {choices}", None
    rule = field.metadata.get("rule")
    if rule is not None and not rule.ok(value):
        return rule.expected, rule.why(value) if rule.why else None
    return None


def validate_fields(config, error=ConfigError):
    """Checks every field of the dataclass `config` against its `flag` metadata; raises `error` naming the first
    whose value is not allowed, what was expected and what was received."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        refused = refusal(field, value)
        if refused is not None:
            expected, why = refused
            check_value(False, field.name, expected + (f" ({why})" if why else ""), value, error=error)


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
