"""`python -m kerascnn evaluate`: scores on the real test set, the table, the PNG beside the model."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from kerascnn.commands.results import main
from kerascnn.evaluate import evaluate, png_path_for, score_predictions


@pytest.fixture
def run_copy(small_run, tmp_path):
    return shutil.copytree(small_run, tmp_path / "run")


def test_scores_from_probabilities():
    y = [0, 0, 1, 2]
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.25, 0.25, 0.5]], np.float32)
    scores = score_predictions(y, p, num_classes=3)
    assert scores["accuracy"] == 0.75
    assert scores["per_class_accuracy"] == [0.5, 1.0, 1.0]
    assert scores["confusion_matrix"].tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert scores["loss"] == pytest.approx(-np.mean(np.log([0.7, 0.1, 0.5, 0.5])), rel=1e-5)


def test_a_class_without_images_has_no_accuracy():
    scores = score_predictions([0, 0], np.array([[0.9, 0.1], [0.2, 0.8]]), num_classes=2)
    assert scores["per_class_accuracy"][0] == 0.5 and np.isnan(scores["per_class_accuracy"][1])


def test_probabilities_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"must have shape \(N, 10\) with N=2 labels. Received: probabilities.shape=\(2, 3\)"):
        score_predictions([0, 1], np.zeros((2, 3)))


def test_evaluate_a_run_directory(run_copy, mnist, capsys):
    assert main(["evaluate", str(run_copy)]) == 0
    out = capsys.readouterr().out
    metrics = json.load(open(run_copy / "metrics.json"))

    # The same checkpoint on the same 10,000 test images as at the end of training.
    line = next(l for l in out.splitlines() if l.startswith("test_accuracy="))
    accuracy, loss = (float(part.split("=")[1]) for part in line.split())
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-4)
    assert loss == pytest.approx(metrics["test_loss"], abs=1e-3)
    assert "dataset: mnist test (10000 images)" in out

    per_class = [l for l in out.splitlines() if l.startswith("  ") and "wrong of" in l]
    assert [l.split(":")[0].strip() for l in per_class] == [str(c) for c in range(10)]
    table = out.split("confusion matrix (rows: true class, columns: predicted):\n")[1].splitlines()
    assert table[0].split() == ["true\\pred", *map(str, range(10))]
    counts = np.array([[int(v) for v in row.split()[1:]] for row in table[1:11]])
    assert counts.sum() == 10000 and np.trace(counts) == round(accuracy * 10000)
    assert counts.sum(axis=1).tolist() == np.bincount(mnist.y_test, minlength=10).tolist()

    png = run_copy / "best_confusion_mnist.png"
    assert f"confusion matrix PNG: {png}" in out
    image = Image.open(png)
    assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 400
    assert np.asarray(image.convert("L")).std() > 20  # a drawing, not a blank page


def test_evaluate_a_keras_file_as_a_user_would(run_copy, tmp_path):
    model = tmp_path / "mine.keras"
    shutil.copy(run_copy / "best.keras", model)
    result = subprocess.run([sys.executable, "-m", "kerascnn", "evaluate", str(model), "--batch-size", "1000"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "test_accuracy=" in result.stdout
    assert os.path.isfile(png_path_for(str(model), "mnist"))


def test_library_call_returns_the_scores(run_copy):
    result = evaluate(str(run_copy / "best.keras"), write_png=False)
    assert result.png_path is None and not os.path.exists(png_path_for(result.model_path, "mnist"))
    assert result.confusion_matrix.shape == (10, 10) and result.images == 10000
    assert result.accuracy == pytest.approx(np.trace(result.confusion_matrix) / 10000)


def test_unwritable_png_is_an_error_after_the_scores(run_copy, capsys):
    os.mkdir(png_path_for(str(run_copy / "best.keras"), "mnist"))  # a directory where the PNG should go
    assert main(["evaluate", str(run_copy)]) == 1
    captured = capsys.readouterr()
    assert "test_accuracy=" in captured.out
    assert "error: cannot write the confusion matrix PNG" in captured.err


def test_missing_dataset_is_bad_usage(run_copy, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", str(run_copy), "--data-dir", str(tmp_path / "nowhere")])
    assert e.value.code == 2
    assert "does not exist" in capsys.readouterr().err
    assert not os.path.exists(run_copy / "best_confusion_mnist.png")
