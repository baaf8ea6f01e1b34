"""What a search is: `SearchConfig` (`tune.py`'s flags), its constants and its errors.

`SearchConfig` validates itself on creation and raises `TuningError`, naming
the field, what was expected and what was received; `SearchFailed` is the
search that ran but could not produce a result.

Example:

>>> config = SearchConfig(dataset="mnist", max_trials=5)
>>> config.project_name, config.kind()["members"]
('mnist-best', 1)
"""

import dataclasses
import os
from typing import Optional

from kerascnn.config import AT_LEAST_1, POSITIVE, Rule, TrainConfig, flag, validate_fields
from kerascnn.images import dataset_label
from kerascnn.errors import RunFailed, UsageError

TUNERS = ("hyperband", "random", "bayesian")
OBJECTIVE = "val_accuracy"  # on the validation split carved from the training set
MEMBERS = 1  # ensemble members per trial; train.py's `best` trains its recipe's number (2) of the member found
SEARCH_FILE = "search.json"
PROGRESS_FILE = "progress.jsonl"
BEST_HPARAMS = "best_hparams.json"
# The flags a resumed search must share with the one that began it (`SearchConfig.kind`, beside the model and
# members); best's recipe and what a training process finds complete a search's identity (`tuning.project`).
KIND_KEYS = ("tuner", "dataset", "subset", "val_size", "split_seed", "max_epochs", "seed", "image_size", "color_mode")


class TuningError(UsageError, ValueError):
    """Bad usage: the search cannot start as asked. Nothing has been written over."""


class SearchFailed(RunFailed, RuntimeError):
    """The search ran but could not produce a result (every trial failed, say)."""


def is_folder_name(name):
    """Whether `name` names a folder inside another (not ".", "..", nor a path)."""
    return bool(name) and name not in (".", "..") and "/" not in name and os.sep not in name


def as_in_train(name, help=None):
    """`TrainConfig`'s field `name` (default, help, checks) as a search-config field: a setting `tune.py` shares
    with `train.py`. `help`, when given, is the search's own."""
    field = TrainConfig.__dataclass_fields__[name]
    return dataclasses.field(default=field.default, metadata={**field.metadata, "help": help or field.metadata["help"]})


@dataclasses.dataclass
class SearchConfig:
    """What to search and where; `tune.py`'s flags, one per field (`kerascnn.config.flag`)."""

    tuner: str = flag("hyperband", "search algorithm", choices=TUNERS)
    max_trials: int = flag(30, "trials in all (Hyperband at max_epochs=10: one full set of brackets)", rule=AT_LEAST_1)
    max_epochs: int = flag(10, "epochs per trial, at most (Hyperband: the most any trial gets)", rule=AT_LEAST_1)
    # The data, as train.py reads it.
    dataset: str = as_in_train("dataset")
    subset: Optional[int] = as_in_train("subset", help="search on the first N training images; train.py then uses "
                                        "all (default: all)")
    val_size: int = as_in_train("val_size", help="validation images carved from the training set: the objective")
    data_dir: Optional[str] = as_in_train("data_dir")
    image_size: Optional[int] = as_in_train("image_size")
    color_mode: Optional[str] = as_in_train("color_mode")
    stream: str = as_in_train("stream")
    cache_dir: Optional[str] = as_in_train("cache_dir")
    split_seed: int = as_in_train("split_seed", help="seeds the test share of a folder without test/ and the "
                                  "validation split, as train.py's --split-seed: the final run tests on what the "
                                  "search never saw")
    # Where the search lives.
    directory: str = flag(os.path.join("logs", "tune"), "where searches live")
    project_name: Optional[str] = flag(None, "this search's folder in --directory (default: <dataset>-best)",
                                       rule=Rule("a folder name (no path separators)", is_folder_name))
    overwrite: bool = flag(False, "start afresh instead of resuming", switch=True)
    # How trials run.
    seed: int = as_in_train("seed", help="seeds the oracle's sampling, and every trial's weights and shuffling "
                            "(not the split: --split-seed)")
    precision: str = as_in_train("precision")
    worker_timeout: float = flag(60.0, "distributed: seconds of silence after which a worker is lost and its trial "
                                 "goes to another, and after which a worker gives its chief up", rule=POSITIVE)

    def __post_init__(self):
        if self.project_name is None:
            self.project_name = f"{dataset_label(self.dataset)}-best"
        self.validate()

    def validate(self):
        """Raises `TuningError` naming the first field whose value is not allowed."""
        validate_fields(self, TuningError)

    @property
    def project_dir(self):
        return os.path.join(self.directory, self.project_name)

    def data_values(self):
        """What `train.py` needs to read and split the data as the search did: the dataset, the split's seed,
        and the image size and colour mode when they were set."""
        values = {"dataset": self.dataset, "split_seed": self.split_seed, "image_size": self.image_size,
                  "color_mode": self.color_mode}
        return {k: v for k, v in values.items() if v is not None}

    def train_config(self):
        """The `TrainConfig` of what every trial shares: `best` with `MEMBERS` member, this search's data, its
        split (`kerascnn.assemble.load_splits` reads it, as `train.py` does), seed and precision."""
        return TrainConfig(
            model="best", members=MEMBERS, dataset=self.dataset, subset=self.subset, val_size=self.val_size,
            data_dir=self.data_dir, image_size=self.image_size, color_mode=self.color_mode, stream=self.stream,
            cache_dir=self.cache_dir, split_seed=self.split_seed, seed=self.seed, precision=self.precision,
        )

    def kind(self):
        """The settings of this config that a resumed search must share with the one that started it.

        A search's whole identity adds best's recipe (`tuning.hypermodel.trial_recipe`), the precision
        policy and the data's digest (`tuning.project`).
        """
        return {"model": "best", "members": MEMBERS, **{k: getattr(self, k) for k in KIND_KEYS}}
