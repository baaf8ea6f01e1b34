"""TrainConfig: defaults, validation, JSON files."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from kerascnn.config import MODEL_FIELDS, ConfigError, TrainConfig, resolve


def recipe(config):
    resolved = resolve(config)
    return {name: getattr(resolved, name) for name in ("ema", "label_smoothing", "epochs", "checkpoint")}


def test_defaults_are_the_lectures():
    c = TrainConfig()
    assert (c.model, c.epochs, c.batch_size, c.lr, c.lr_period, c.lr_factor, c.seed) == (
        "sequential", None, None, 1e-3, 5, 0.5, 777)  # batch_size None: batch_for the data
    assert recipe(c) == {"ema": 0.0, "label_smoothing": 0.0, "epochs": 15, "checkpoint": "accuracy"}  # None: the model's
    assert recipe(TrainConfig(epochs=3, ema=0.9))["epochs"] == 3
    assert c.model_kwargs() == {}
    assert TrainConfig(members=3, dropout=0.2).model_kwargs() == {"members": 3, "dropout": 0.2}


def test_best_trains_two_members_for_28_epochs_with_smoothing_unless_flags_ask_for_the_lectures_recipe():
    """The recipe the accuracy search chose (docs/ACCURACY.md): its last epoch kept; the lecture's stays one set of
    flags away (the lecture, too, reported its last epoch)."""
    from kerascnn.commands.train import build_parser, resolve_config
    from kerascnn.models import create_model

    assert recipe(TrainConfig(model="best")) == {"ema": 0.0, "label_smoothing": 0.1, "epochs": 28, "checkpoint": "last"}
    assert len(create_model("best").members) == 2
    parser = build_parser()
    flags = ["--model", "best", "--members", "5", "--epochs", "15", "--label-smoothing", "0"]
    lecture = resolve_config(parser.parse_args(flags), parser)
    assert recipe(lecture) == {"ema": 0.0, "label_smoothing": 0.0, "epochs": 15, "checkpoint": "last"}
    assert recipe(resolve_config(parser.parse_args([*flags, "--checkpoint", "accuracy"]), parser))["checkpoint"] == \
        "accuracy"
    assert len(create_model("best", **lecture.model_kwargs()).members) == 5


@pytest.mark.parametrize("name", __import__("kerascnn.models", fromlist=["list_models"]).list_models())
def test_resolve_fills_in_every_model_default_once(name):
    """What a run saves as config.json: no null for an argument the model takes, the values its builder used."""
    from kerascnn.models import model_defaults

    config = TrainConfig(model=name, dropout=0.1, precision="float32", batch_size=50)  # no data: batch given
    resolved = resolve(config)
    defaults = model_defaults(name)
    taken = [field for field in MODEL_FIELDS if field in defaults]
    assert taken and all(getattr(resolved, field) is not None for field in taken)
    assert resolved.dropout == (0.1 if "dropout" in defaults else None)
    assert all(getattr(resolved, f) == defaults[f] for f in taken if f != "dropout")
    assert all(getattr(resolved, f) is None for f in MODEL_FIELDS if f not in defaults)  # not this model's
    assert None not in (resolved.epochs, resolved.ema, resolved.label_smoothing)
    assert resolve(resolved) is resolved  # once: a resolved config comes back as it is
    assert resolve(TrainConfig.from_dict(resolved.to_dict())).to_dict() == resolved.to_dict()  # from config.json
    assert config.dropout == 0.1 and config.filters is None  # the config given is left as it was


def test_the_batch_size_follows_the_training_split_unless_given():
    """100 a step, fewer for a small split so an epoch has 100 steps (at least 16); known once the pictures are."""
    import numpy as np

    from kerascnn.config import batch_for

    assert [batch_for(n) for n in (55000, 10000, 9999, 2592, 1600, 1599, 50)] == [100, 100, 99, 25, 16, 16, 16]
    waiting = resolve(TrainConfig(model="best", precision="float32"))
    assert waiting.batch_size is None and resolve(waiting) is not waiting  # resolved again once the data is read
    pictures = np.zeros((2592, 28, 28, 1), "uint8")
    assert resolve(waiting, images=pictures).batch_size == 25
    assert resolve(TrainConfig(model="best", batch_size=100, precision="float32"), images=pictures).batch_size == 100
    mnist = resolve(TrainConfig(model="best", precision="float32"), images=np.zeros((55000, 1, 1, 1), "uint8"))
    assert mnist.batch_size == 100  # the lecture's runs are unchanged


def test_resolve_makes_auto_precision_a_policy():
    from kerascnn.precision import resolve_precision

    assert resolve(TrainConfig()).precision == resolve_precision("auto") != "auto"


@pytest.mark.parametrize("field,value,expected", [
    ("epochs", 0, "`epochs` must be an integer >= 1. Received: epochs=0"),
    ("batch_size", -1, "batch_size"),
    ("lr", 0.0, "`lr` must be a finite number > 0"),
    ("lr", float("inf"), "`lr` must be a finite number > 0. Received: lr=inf"),
    ("dropout", 1.0, r"`dropout` must be a number in \[0, 1\)"),
    ("precision", "fp8", "`precision` must be one of"),
    ("lr_factor", 2.0, "lr_factor"),
    ("seed", -1, r"`seed` must be an integer in \[0, 2\*\*32\). Received: seed=-1"),
])
def test_out_of_range_values_are_named(field, value, expected):
    with pytest.raises(ConfigError, match=expected):
        TrainConfig(**{field: value})


def test_json_round_trip_and_errors(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(TrainConfig(model="best", members=2).to_dict()))
    assert TrainConfig.from_json(path) == TrainConfig(model="best", members=2)
    path.write_text('{"model": "best", "epochs": 3, "learning_rate": 0.1}')
    with pytest.raises(ConfigError, match=r"Unknown config keys \['learning_rate'\]"):
        TrainConfig.from_json(path)
    path.write_text('{"epochs": "ten"}')
    with pytest.raises(ConfigError, match="`epochs` must be of type int. Received: epochs='ten'"):
        TrainConfig.from_json(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        TrainConfig.from_json(path)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        TrainConfig.from_json(path)
    with pytest.raises(ConfigError, match="Cannot read config file"):
        TrainConfig.from_json(tmp_path / "missing.json")


CONFIG_ALONE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("config_alone", sys.argv[1])
config = importlib.util.module_from_spec(spec)
spec.loader.exec_module(config)
config.TrainConfig(precision="mixed_bfloat16", strategy="mirrored")
for bad in ({"precision": "fp8"}, {"model": "resnet"}):
    try:
        config.TrainConfig(**bad)
    except config.ConfigError as e:
        print(e)
print(sorted(m for m in ("keras", "tensorflow", "jax", "numpy") if m in sys.modules))
print(json.dumps(sorted(m for m in sys.modules if m.startswith("kerascnn"))))
"""


def test_config_is_a_leaf_that_validates_without_keras():
    """config.py, run alone, validates every field without importing Keras, TensorFlow or NumPy: of kerascnn it needs
    only its errors (which import nothing), the model registry's names (`kerascnn.models.registry`, no Keras) and the
    dataset names (`kerascnn.data`, which imports NumPy only to read data)."""
    done = subprocess.run([sys.executable, "-c", CONFIG_ALONE, os.path.join(ROOT, "kerascnn", "config.py")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[:3] == [
        "`precision` must be one of ('auto', 'float32', 'mixed_bfloat16', 'mixed_float16'). Received: precision='fp8'",
        "`model` must be one of ('best', 'ensemble', 'functional', 'sequential', 'subclass'). Received: model='resnet'",
        "[]",
    ]
    assert set(json.loads(lines[3])) <= {"kerascnn", "kerascnn.config", "kerascnn.data", "kerascnn.errors",
                                         "kerascnn.models", "kerascnn.models.registry"}


def test_numbers_of_any_kind_are_taken_and_bools_are_not_numbers():
    import numpy as np

    assert TrainConfig(epochs=np.int64(3), lr=np.float32(0.5), dropout=0).epochs == 3
    with pytest.raises(ConfigError, match="`epochs` must be of type int. Received: epochs=True"):
        TrainConfig(epochs=True)
    with pytest.raises(ConfigError, match="`batchnorm` must be of type bool. Received: batchnorm=1"):
        TrainConfig(batchnorm=1)
    with pytest.raises(ConfigError, match="`stream` must be of type str. Received: stream=None"):
        TrainConfig(stream=None)  # None means "the model's default" only where the default is None


def test_datasets_are_data_pys_and_a_missing_one_is_refused(tmp_path):
    from kerascnn.config import DATASETS
    from kerascnn.data import list_datasets

    assert list(DATASETS) == list_datasets()
    assert TrainConfig(dataset=str(tmp_path)).dataset == str(tmp_path)  # a folder of class subfolders
    with pytest.raises(ConfigError, match=r"an \.npz file \(no such file\)\. Received: dataset='.*none\.npz'"):
        TrainConfig(dataset=str(tmp_path / "none.npz"))
    with pytest.raises(ConfigError, match=r"`dataset` must be one of \['cifar10', 'fashion_mnist', 'mnist'\]"):
        TrainConfig(dataset="cifar100")


def test_every_field_says_what_it_is_for():
    for field in dataclasses.fields(TrainConfig):
        assert len(field.metadata["help"]) >= 10, field.name
