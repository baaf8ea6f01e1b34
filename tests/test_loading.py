"""Safe model loading: every bad model file gets a clear message, exit status 2 and nothing written.

Each of `evaluate`, `predict` and `export` is run on each kind of bad input.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT
from kerascnn.commands.results import main
from kerascnn.loading import ModelFileError, load, resolve_model_path


def save_lambda_model(path, marker):
    """A .keras file whose Lambda layer creates `marker` whenever its code runs."""
    touch = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(touch), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.save(path)
    os.remove(marker)  # building the model ran the lambda once; from here on it must never run
    return path


@pytest.fixture(scope="module")
def bad_models(small_run, tmp_path_factory):
    """name -> (path, expected message); the path's directory is otherwise empty."""
    root = tmp_path_factory.mktemp("bad_models")
    good = open(os.path.join(small_run, "best.keras"), "rb").read()

    def make(name, filename, content=None):
        directory = root / name
        directory.mkdir()
        path = directory / filename
        if content is not None:
            path.write_bytes(content)
        return str(path)

    flipped = bytearray(good)
    middle = len(flipped) // 2
    flipped[middle : middle + 64] = bytes(b ^ 0xFF for b in flipped[middle : middle + 64])
    not_a_run = root / "not_a_run"
    not_a_run.mkdir()
    (not_a_run / "notes.txt").write_text("no model here")
    marker = root / "lambda_ran"
    lambda_path = save_lambda_model(make("lambda", "lambda.keras"), marker)
    return {
        "truncated": (make("truncated", "best.keras", good[: len(good) // 2]), "is truncated or corrupt"),
        "corrupt": (make("corrupt", "best.keras", bytes(flipped)), "corrupt"),
        "empty": (make("empty", "best.keras", b""), "the file is empty (0 bytes)"),
        "text": (make("text", "best.keras", b"not a zip at all"), "not a readable .keras (zip) archive"),
        "lambda": (lambda_path, "refused: the model contains a `Lambda` layer"),
        "not_a_run": (str(not_a_run), "is not a run directory: it has no best.keras"),
        "h5": (make("h5", "model.h5", b"\x89HDF\r\n\x1a\n"), "not a .keras model file"),
        "missing": (str(root / "missing" / "best.keras"), "no such file or directory"),
        "_marker": (str(marker), None),
    }


def listing(path):
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    if not os.path.isdir(directory):
        return None
    return {name: os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory)}


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "empty", "text", "lambda", "not_a_run", "h5", "missing"])
@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_bad_model_is_refused_with_exit_2_and_nothing_written(bad_models, tmp_path, capsys, command, kind):
    path, message = bad_models[kind]
    picture = tmp_path / "digit.png"
    picture.write_bytes(b"")  # never read: the model is checked first
    argv = {
        "evaluate": ["evaluate", path],
        "predict": ["predict", path, str(picture)],
        "export": ["export", path, "--format", "tflite"],
    }[command]
    before = listing(path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"usage: python -m kerascnn {command}" in err and message in err, err
    assert os.path.basename(path.rstrip("/")) in err  # the message names the file
    assert listing(path) == before  # no PNG, no artifact, nothing replaced
    assert not os.path.exists(bad_models["_marker"][0])  # the Lambda's code never ran


def test_lambda_is_refused_before_keras_deserializes_anything(bad_models):
    path, _ = bad_models["lambda"]
    with pytest.raises(ModelFileError, match=r"Lambda. layer and a serialized Python lambda \(arbitrary Python code\).*Nothing from the file was run"):
        load(path)
    # Keras' own safe mode agrees: the file carries bytecode it will not load.
    with pytest.raises(ValueError, match="safe_mode"):
        keras.saving.load_model(path, safe_mode=True)
    assert not os.path.exists(bad_models["_marker"][0])


def test_run_directory_resolves_to_its_best_checkpoint(small_run, test_batch):
    model_path, run_dir = resolve_model_path(small_run)
    assert model_path == os.path.join(small_run, "best.keras") and run_dir == small_run
    loaded = load(small_run)
    assert loaded.run_config["model"] == "ensemble" and len(loaded.model.members) == 2
    x, y = test_batch
    assert (loaded.model.predict(x[:200], verbose=0).argmax(axis=1) == y[:200]).mean() > 0.8


def test_unknown_class_in_a_keras_file_is_a_clear_error(tmp_path):
    """A .keras file naming a layer class nobody registered: Keras cannot rebuild it."""
    import json
    import zipfile

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    good = tmp_path / "good.keras"
    model.save(good)
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"][1]["class_name"] = "NoSuchLayer"
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(ModelFileError, match=r"bad.keras: cannot be loaded as a Keras model \("):
        load(str(bad))
    assert np.asarray(load(str(good)).model.predict(np.zeros((1, 28, 28, 1)), verbose=0)).shape == (1, 10)


LOAD_WITH_KERAS = """
import sys
{imports}
import keras
model = keras.saving.load_model(sys.argv[1])
print(type(model).__name__, len(model.members))
"""


@pytest.mark.parametrize("imports,expected", [
    ("import kerascnn", "Ensemble 2"),  # Keras imported after kerascnn: registered as it loads
    ("import keras\nimport kerascnn", "Ensemble 2"),  # Keras first: registered at once
    # A module the models are built from, imported first, loads Keras half-way through its own import; the
    # models import it back, so they register once it has finished (this once failed as a circular import).
    ("from kerascnn.layers import ConvBNReLU", "Ensemble 2"),
    ("from kerascnn.models.lecture import LectureCNN", "Ensemble 2"),
    ("", "Could not locate class 'Ensemble'"),  # what `import kerascnn` fixes
])
def test_import_kerascnn_is_enough_for_keras_to_load_a_saved_ensemble(tmp_path, imports, expected):
    import kerascnn

    path = str(tmp_path / "ensemble.keras")
    kerascnn.create_model("ensemble", members=2, filters=4, dense_units=8).save(path)
    done = subprocess.run([sys.executable, "-c", LOAD_WITH_KERAS.format(imports=imports), path],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert expected in done.stdout + done.stderr, done.stderr[-2000:]


LOAD_EVERY_MODEL = """
import json, sys
{imports}
found = {{}}
for name, path in json.loads(sys.argv[1]).items():
    try:
        model = keras.saving.load_model(path)  # compile=True: the loss, optimizer and metrics too
        found[name] = [type(model).__name__, type(model.loss).__name__, getattr(model.loss, "label_smoothing", 0.0)]
    except Exception as e:
        found[name] = repr(e)[:500]
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def compiled_models(tmp_path_factory):
    """Every registered model with its default recipe, compiled as a run compiles it, saved: {name: (path, expect)}."""
    import kerascnn
    from kerascnn.assemble import compile_model
    from kerascnn.config import TrainConfig, resolve

    directory = tmp_path_factory.mktemp("compiled")
    saved = {}
    for name in kerascnn.list_models():
        config = resolve(TrainConfig(model=name, precision="float32"))  # the recipe: best's label smoothing
        model = compile_model(kerascnn.create_model(name, **config.model_kwargs()), config)
        path = str(directory / f"{name}.keras")
        model.save(path)
        expected_loss = "SparseCrossentropy" if config.label_smoothing else "SparseCategoricalCrossentropy"
        saved[name] = (path, [type(model).__name__, expected_loss, config.label_smoothing])
    return saved


@pytest.fixture(scope="module")
def loaded_in_fresh_processes(compiled_models):
    """What plain `keras.saving.load_model` makes of each saved model in a fresh process, per import order."""
    paths = json.dumps({name: path for name, (path, _) in compiled_models.items()})
    found = {}
    for order, imports in (("kerascnn first", "import kerascnn\nimport keras"),
                           ("keras first", "import keras\nimport kerascnn")):
        done = subprocess.run([sys.executable, "-c", LOAD_EVERY_MODEL.format(imports=imports), paths],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        found[order] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize("order", ["kerascnn first", "keras first"])
@pytest.mark.parametrize("name", __import__("kerascnn").list_models())
def test_import_kerascnn_lets_keras_load_every_compiled_model(name, order, compiled_models, loaded_in_fresh_processes):
    """A run's best.keras keeps its compile: every class it names (best's smoothed loss too) is registered by
    `import kerascnn`, whether Keras is imported before or after it."""
    _, expected = compiled_models[name]
    assert loaded_in_fresh_processes[order][name] == expected


def test_load_model_takes_a_run_directory_and_refuses_bad_files(small_run, tmp_path, test_batch):
    import kerascnn

    model = kerascnn.load_model(small_run)
    assert type(model).__name__ == "Ensemble" and len(model.members) == 2
    assert (model.predict(test_batch[0], verbose=0).argmax(1) == test_batch[1]).mean() > 0.8
    (tmp_path / "empty.keras").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty.keras: the file is empty"):
        kerascnn.load_model(tmp_path / "empty.keras")


def test_a_bare_keras_file_reads_the_run_config_beside_it_but_not_another_tools(tmp_path):
    """A run's best.keras named alone keeps its dataset (evaluate's default, predict's preparation); a config.json
    that is no kerascnn config (an exported model's folder) is ignored rather than steering them."""
    from kerascnn.models import create_model

    path = str(tmp_path / "best.keras")
    create_model("sequential", filters=4, dense_units=8).save(path)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": "sequential", "dataset": "fashion_mnist", "split_seed": 3}))
    loaded = load(path)
    assert loaded.dataset == "fashion_mnist" and loaded.run_config["split_seed"] == 3 and loaded.run_dir is None
    config.write_text(json.dumps({"architectures": ["SomethingElse"], "dataset": "fashion_mnist"}))
    loaded = load(path)
    assert loaded.run_config is None and loaded.dataset is None
