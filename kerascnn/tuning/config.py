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
import functools
import os
from typing import Optional

from kerascnn import data as data_lib
from kerascnn.images import dataset_label, is_image_dataset
from kerascnn.config import COLOR_MODES, PRECISIONS, STREAMS, check_value
from kerascnn.errors import RunFailed, UsageError

TUNERS = ("hyperband", "random", "bayesian")
OBJECTIVE = "val_accuracy"  # on the validation split carved from the training set
MEMBERS = 1  # ensemble members per trial; train.py's `best` trains 5 of the member found
SEARCH_FILE = "search.json"
PROGRESS_FILE = "progress.jsonl"
BEST_HPARAMS = "best_hparams.json"


class TuningError(UsageError, ValueError):
    """Bad usage: the search cannot start as asked. Nothing has been written over."""


class SearchFailed(RunFailed, RuntimeError):
    """The search ran but could not produce a result (every trial failed, say)."""


@dataclasses.dataclass
class SearchConfig:
    """What to search and where; `tune.py`'s flags, one per field."""

    tuner: str = "hyperband"  # hyperband | random | bayesian
    max_trials: int = 30  # trials in all (Hyperband at max_epochs=10: one full set of brackets)
    max_epochs: int = 10  # epochs per trial (Hyperband: the most any trial gets)
    dataset: str = "mnist"
    subset: Optional[int] = None  # search on the first N training images; train.py then uses all
    val_size: int = 5000  # validation images carved from the training set: the objective
    data_dir: Optional[str] = None
    image_size: Optional[int] = None  # your own images: the side the model works at (default: the data's)
    color_mode: Optional[str] = None  # your own images: grayscale | rgb (default: the data's)
    stream: str = "auto"  # your own images: on (decode from disk as needed) | off (into memory) | auto (by size)
    cache_dir: Optional[str] = None  # streamed images: cache them here, decoded, after the first epoch
    directory: str = os.path.join("logs", "tune")
    project_name: Optional[str] = None  # the search's folder in `directory`; "<dataset>-best"
    overwrite: bool = False  # start afresh instead of resuming
    seed: int = 777  # the oracle's sampling, and every trial's weights and shuffling
    precision: str = "auto"  # auto | float32 | mixed_bfloat16 | mixed_float16
    worker_timeout: float = 60.0  # distributed: seconds of silence before a worker is lost

    def __post_init__(self):
        if self.project_name is None:
            self.project_name = f"{dataset_label(self.dataset)}-best"
        self.validate()

    def validate(self):
        """Raises `TuningError` naming the first field that is out of range."""
        _check(self.tuner in TUNERS, "tuner", f"one of {TUNERS}", self.tuner)
        for name in ("max_trials", "max_epochs", "val_size"):
            value = getattr(self, name)
            _check(_is_int(value) and value >= 1, name, "an integer >= 1", value)
        subset_ok = self.subset is None or (_is_int(self.subset) and self.subset >= 1)
        _check(subset_ok, "subset", "an integer >= 1", self.subset)
        datasets = data_lib.list_datasets()
        ok = self.dataset in datasets or is_image_dataset(self.dataset)
        _check(ok, "dataset", f"one of {datasets}, a folder of class subfolders or an .npz", self.dataset)
        _check(self.image_size is None or (_is_int(self.image_size) and self.image_size >= 1), "image_size",
               "an integer >= 1", self.image_size)
        _check(self.color_mode in (None, *COLOR_MODES), "color_mode", f"one of {COLOR_MODES}", self.color_mode)
        _check(self.stream in STREAMS, "stream", f"one of {STREAMS}", self.stream)
        _check(self.precision in PRECISIONS, "precision", f"one of {PRECISIONS}", self.precision)
        _check(self.worker_timeout > 0, "worker_timeout", "a number of seconds > 0", self.worker_timeout)
        name = self.project_name
        ok = bool(name) and name not in (".", "..") and "/" not in name and os.sep not in name
        _check(ok, "project_name", "a folder name (no path separators)", name)

    @property
    def project_dir(self):
        return os.path.join(self.directory, self.project_name)

    def data_values(self):
        """What `train.py` needs to read the data as the search did: the dataset, and the image size and
        colour mode when they were set."""
        values = {"dataset": self.dataset, "image_size": self.image_size, "color_mode": self.color_mode}
        return {k: v for k, v in values.items() if v is not None}

    def kind(self):
        """The settings a resumed search must share with the one that started it."""
        keys = ("tuner", "dataset", "subset", "val_size", "max_epochs", "seed")
        return {"model": "best", "members": MEMBERS, **{k: getattr(self, k) for k in keys}}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


_check = functools.partial(check_value, error=TuningError)
