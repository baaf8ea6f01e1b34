"""`python -m kerascnn export`: each format loaded by its own runtime predicts what the Keras model does."""

import os
import shutil
import sys

import keras
import numpy as np
import pytest

from kerascnn.commands.results import main
from kerascnn.export import ExportError, export_model, float32_copy
from kerascnn.loading import load
from kerascnn.models import create_model

FORMATS = ("saved_model", "onnx", "tflite")


def run_saved_model(path, x):
    import tensorflow as tf

    artifact = tf.saved_model.load(path)  # kept referenced: `serve` needs its variables alive
    return artifact.serve(tf.constant(x)).numpy()


def run_onnx(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def run_tflite(path, x):
    from ai_edge_litert.interpreter import Interpreter  # the TFLite runtime, without TensorFlow

    interpreter = Interpreter(model_path=path)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, x.shape)  # the batch size is free
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


RUNTIMES = {"saved_model": run_saved_model, "onnx": run_onnx, "tflite": run_tflite}


@pytest.fixture(scope="module")
def models(small_run, tmp_path_factory):
    """The trained ensemble's run directory (a copy) and a freshly built, small Sequential model."""
    root = tmp_path_factory.mktemp("export_models")
    run = shutil.copytree(small_run, root / "run")
    keras.utils.set_random_seed(1)
    create_model("sequential", filters=8, dense_units=32).save(root / "sequential.keras")
    return {"ensemble": str(run), "sequential": str(root / "sequential.keras")}


@pytest.fixture(scope="module")
def keras_predictions(models, test_batch):
    x = test_batch[0][:100]
    return x, {which: load(path).model.predict(x, verbose=0) for which, path in models.items()}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("which", ["ensemble", "sequential"])
def test_exported_artifact_predicts_like_keras(models, keras_predictions, tmp_path, capsys, which, fmt):
    if which == "ensemble":  # the default --out: beside the run's best.keras
        argv, out = [], os.path.join(models["ensemble"], {"saved_model": "best_saved_model"}.get(fmt, f"best.{fmt}"))
    else:
        out = str(tmp_path / {"saved_model": "model", "onnx": "model.onnx", "tflite": "model.tflite"}[fmt])
        argv = ["--out", out]
    before = set(os.listdir(os.path.dirname(out)))
    assert main(["export", models[which], "--format", fmt, *argv]) == 0
    assert capsys.readouterr().out.strip() == f"exported {fmt}: {out}"
    assert set(os.listdir(os.path.dirname(out))) - before == {os.path.basename(out)}  # no temporary left behind

    x, expected = keras_predictions[0], keras_predictions[1][which]
    got = RUNTIMES[fmt](out, x)
    assert got.shape == (100, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_existing_out_is_never_written_over(models, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    out.write_text("someone's file")
    with pytest.raises(SystemExit) as e:
        main(["export", models["sequential"], "--format", "onnx", "--out", str(out)])
    assert e.value.code == 2
    assert f"{out} already exists; it was left as it is" in capsys.readouterr().err
    assert out.read_text() == "someone's file"


@pytest.mark.parametrize("argv,message", [
    (["--format", "tflite", "--out", "model.bin"], "--out for tflite must end with .tflite"),
    (["--format", "onnx", "--out", "no/such/dir/m.onnx"], "the directory"),
    (["--format", "pmml"], "argument --format: invalid choice: 'pmml'"),
])
def test_bad_export_arguments(models, tmp_path, capsys, argv, message):
    argv = [a if not a.endswith((".bin", ".onnx")) else str(tmp_path / a) for a in argv]
    with pytest.raises(SystemExit) as e:
        main(["export", models["sequential"], *argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_unknown_format_in_the_library(models):
    with pytest.raises(ExportError, match=r"expected one of \['onnx', 'saved_model', 'tflite'\]. Received: format='pb'"):
        export_model(load(models["sequential"]).model, "x.pb", "pb")


def test_mixed_bfloat16_model_exports_as_float32(tmp_path, test_batch):
    """bfloat16 convolutions would need TFLite's Flex delegate and have no ONNX Runtime kernel."""
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(2)
    create_model("functional", filters=8, dense_units=32, batchnorm=True).save(tmp_path / "bf16.keras")
    keras.mixed_precision.set_dtype_policy("float32")
    model = load(str(tmp_path / "bf16.keras")).model
    assert any(layer.dtype_policy.name == "mixed_bfloat16" for layer in model.layers)

    copy = float32_copy(model)
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    x = test_batch[0][:100]
    float32, bfloat16 = copy.predict(x, verbose=0), model.predict(x, verbose=0)
    for fmt in ("onnx", "tflite"):
        got = RUNTIMES[fmt](export_model(model, str(tmp_path / f"m.{fmt}"), fmt), x)
        np.testing.assert_allclose(got, float32, atol=1e-5)
        np.testing.assert_allclose(got, bfloat16, atol=2e-2)  # bfloat16 keeps ~3 significant digits


def test_onnx_without_its_converter_says_how_to_install_it(models, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if not installed: `import tf2onnx` fails
    with pytest.raises(SystemExit) as e:
        main(["export", models["sequential"], "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "ONNX export needs tf2onnx and onnx" in err and "pip install 'kerascnn[export]'" in err
    assert os.listdir(tmp_path) == []
