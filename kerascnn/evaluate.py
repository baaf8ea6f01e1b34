"""Evaluates a trained model on a test set: `python -m kerascnn evaluate RUN_DIR_OR_MODEL`.

Prints the test accuracy and loss, each class's accuracy, and the
confusion matrix as a table, and saves the confusion matrix as a PNG beside
the model (`best.keras` -> `best_confusion_mnist.png`). A run directory's
own dataset is the default; `--dataset` evaluates on another.

Loss and accuracy are computed from one pass of predictions, so a model
saved without its compile settings evaluates the same way: sparse
categorical cross-entropy on the probabilities (Keras' formula, with its
clipping) and the share of argmax hits.

Example:

>>> import numpy as np
>>> scores = score_predictions([0, 1, 1], np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), num_classes=2)
>>> round(scores["accuracy"], 4), scores["per_class_accuracy"]
(0.6667, [1.0, 0.5])
>>> scores["confusion_matrix"].tolist()
[[1, 0], [1, 1]]
"""

import dataclasses
import os

import numpy as np

from kerascnn import figures, loading


@dataclasses.dataclass
class Evaluation:
    """The result of `evaluate`.

    Attributes:
        model_path: str, the `.keras` file evaluated.
        dataset: str, the dataset's name.
        images: int, the number of test images.
        accuracy: float.
        loss: float, mean sparse categorical cross-entropy.
        per_class_accuracy: list of float, one per class (NaN: no images).
        confusion_matrix: int array (C, C), rows true, columns predicted.
        png_path: str or None, the confusion matrix PNG written.
        png_error: str or None, why the PNG could not be written.
    """

    model_path: str
    dataset: str
    images: int
    accuracy: float
    loss: float
    per_class_accuracy: list
    confusion_matrix: np.ndarray
    png_path: object = None
    png_error: object = None


def score_predictions(y_true, probabilities, num_classes=10):
    """Accuracy, loss, per-class accuracy and confusion matrix from probabilities.

    Args:
        y_true: int array-like (N,), the labels.
        probabilities: float array (N, C), softmax outputs.
        num_classes: int. Defaults to 10.

    Returns:
        dict with `accuracy`, `loss`, `per_class_accuracy`, `confusion_matrix`.
    """
    import keras

    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    probabilities = np.asarray(probabilities, np.float32)
    if probabilities.shape != (len(y_true), num_classes):
        raise ValueError(
            f"`probabilities` must have shape (N, {num_classes}) with N={len(y_true)} labels. "
            f"Received: probabilities.shape={probabilities.shape}"
        )
    cm = figures.confusion_matrix(y_true, probabilities.argmax(axis=1), num_classes)
    losses = keras.losses.sparse_categorical_crossentropy(y_true, probabilities)
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)
    return {
        "accuracy": float(np.trace(cm) / max(len(y_true), 1)),
        "loss": float(np.mean(keras.ops.convert_to_numpy(losses))),
        "per_class_accuracy": [float(v) for v in per_class],
        "confusion_matrix": cm,
    }


def png_path_for(model_path, dataset):
    """Where the confusion matrix PNG of `model_path` on `dataset` goes: beside the model."""
    stem = os.path.splitext(model_path)[0]
    return f"{stem}_confusion_{dataset}.png"


def evaluate(path, dataset=None, data_dir=None, batch_size=500, write_png=True):
    """Evaluates the model at `path` (run directory or `.keras` file) on a test set.

    Args:
        path: str, a run directory (its `best.keras`) or a `.keras` file.
        dataset: str or None, dataset name; None means the run's dataset,
            or "mnist" for a bare `.keras` file. Defaults to None.
        data_dir: str or None, where the dataset files are (see
            `kerascnn.data.load_dataset`). Defaults to None.
        batch_size: int, prediction batch size. Defaults to 500.
        write_png: bool, save the confusion matrix PNG beside the model.
            Defaults to True.

    Returns:
        An `Evaluation`.

    Raises:
        ModelFileError: the model cannot be found or loaded safely.
        DataError: the dataset cannot be found or read.
    """
    from kerascnn import data as data_lib

    loaded = loading.load(path)
    if dataset is None:
        dataset = (loaded.run_config or {}).get("dataset", "mnist")
    test = data_lib.load_dataset(dataset, data_dir)
    x = data_lib.scale_images(test.x_test)
    probabilities = loaded.model.predict(x, batch_size=batch_size, verbose=0)
    scores = score_predictions(test.y_test, probabilities)
    result = Evaluation(
        model_path=loaded.path,
        dataset=dataset,
        images=len(test.y_test),
        accuracy=scores["accuracy"],
        loss=scores["loss"],
        per_class_accuracy=scores["per_class_accuracy"],
        confusion_matrix=scores["confusion_matrix"],
    )
    if write_png:
        title = f"{os.path.basename(loaded.path)} on {dataset} test: accuracy {result.accuracy:.4f}"
        picture = figures.draw_confusion_matrix(result.confusion_matrix, title)
        target = png_path_for(loaded.path, dataset)
        try:
            result.png_path = figures.save_png(picture, target)
        except OSError as e:  # a read-only model directory: the scores still stand
            result.png_error = f"cannot write the confusion matrix PNG {target}: {e.strerror or e}"
    return result


def format_report(result):
    """The evaluation as the text `python -m kerascnn evaluate` prints."""
    lines = [
        f"model: {result.model_path}",
        f"dataset: {result.dataset} test ({result.images} images)",
        f"test_accuracy={result.accuracy:.4f} test_loss={result.loss:.4f}",
        "",
        "per-class accuracy:",
    ]
    for c, accuracy in enumerate(result.per_class_accuracy):
        errors = int(result.confusion_matrix[c].sum() - result.confusion_matrix[c, c])
        lines.append(f"  {c}: {accuracy:.4f}  ({errors} wrong of {int(result.confusion_matrix[c].sum())})")
    lines += ["", "confusion matrix (rows: true class, columns: predicted):"]
    lines += figures.format_confusion_table(result.confusion_matrix).splitlines()
    if result.png_path:
        lines += ["", f"confusion matrix PNG: {result.png_path}"]
    return "\n".join(lines)
