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

from kerascnn import calibration, data as data_lib, figures, loading


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
        class_names: list of str, a name per class (the model's).
        png_path: str or None, the confusion matrix PNG written.
        png_error: str or None, why the PNG could not be written.
        temperature: float, the model's saved temperature (1.0: none).
        calibration: dict, `kerascnn.calibration.calibration_scores` of the
            model's probabilities ("calibrated") and of the same with the
            temperature undone ("uncalibrated"; equal when it is 1.0).
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
    class_names: list = None
    temperature: float = 1.0
    calibration: dict = None


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
        dataset: str or None, dataset name; None means the run's dataset
            (its config.json, in the run directory or beside the `.keras`
            file), or "mnist" when there is none. Defaults to None.
        data_dir: str or None, where the dataset files are (see
            `kerascnn.pipeline.load_dataset`). Defaults to None.
        batch_size: int, prediction batch size. Defaults to 500.
        write_png: bool, save the confusion matrix PNG beside the model.
            Defaults to True.

    Returns:
        An `Evaluation`.

    Raises:
        ModelFileError: the model cannot be found or loaded safely.
        DataError: the dataset cannot be found or read.
    """
    loaded = loading.load(path)
    if dataset is None:
        dataset = (loaded.run_config or {}).get("dataset", "mnist")
        source = (loaded.data or {}).get("source")
        if source and not os.path.exists(dataset) and dataset not in data_lib.DATASETS:
            dataset = source  # the run's folder, named relative to where it was trained: data.json has it whole
    test = _test_set(loaded, dataset, data_dir)
    probabilities = loaded.model.predict(_model_input(loaded.model, test), batch_size=batch_size, verbose=0)
    scores = score_predictions(test.y_test, probabilities, len(loaded.class_names))
    temperature = calibration.temperature_of(loaded.model)
    result = Evaluation(
        model_path=loaded.path,
        dataset=dataset,
        images=len(test.y_test),
        accuracy=scores["accuracy"],
        loss=scores["loss"],
        per_class_accuracy=scores["per_class_accuracy"],
        confusion_matrix=scores["confusion_matrix"],
        class_names=loaded.class_names,
        temperature=temperature,
        calibration=dict(zip(("uncalibrated", "calibrated"),
                             calibration.without_and_with(probabilities, test.y_test, temperature))),
    )
    if write_png:
        from kerascnn.images import dataset_label

        dataset = dataset_label(dataset)
        title = f"{os.path.basename(loaded.path)} on {dataset} test: accuracy {result.accuracy:.4f}"
        picture = figures.draw_confusion_matrix(result.confusion_matrix, title, class_names=result.class_names)
        target = png_path_for(loaded.path, dataset)
        try:
            result.png_path = figures.save_png(picture, target)
        except OSError as e:  # a read-only model directory: the scores still stand
            result.png_error = f"cannot write the confusion matrix PNG {target}: {e.strerror or e}"
    return result


def _test_set(loaded, dataset, data_dir):
    """The test part of `dataset` in the model's size and colours; its classes must be the model's.

    Your own images: a folder's `test/` part, or the test share carved with
    the run's split seed (the same files the run was scored on).

    Raises:
        DataError: the data cannot be read, or its classes differ from the model's (the message names them).
    """
    from kerascnn import data as data_lib
    from kerascnn.images import check_classes, is_image_dataset
    from kerascnn.pipeline import load_dataset
    from kerascnn.layers import model_input_shape, takes_raw_pixels

    if dataset in data_lib.list_datasets() or not is_image_dataset(dataset):
        return load_dataset(dataset, data_dir)
    if not takes_raw_pixels(loaded.model):
        raise data_lib.DataError(
            f"{loaded.path} is a digit model (it takes MNIST-style [0, 1] images, not raw pixels); evaluate it on "
            f"{' or '.join(data_lib.list_datasets())}. Received: dataset={dataset!r}"
        )
    record = loaded.data or {}
    size = record.get("image_size") or [_resized_to(loaded.model)] * 2
    color_mode = "rgb" if model_input_shape(loaded.model)[-1] == 3 else "grayscale"
    seed = (loaded.run_config or {}).get("split_seed", 777)
    test = load_dataset(dataset, image_size=tuple(size), color_mode=color_mode, seed=seed)
    check_classes(dataset, test.spec.class_names, loaded.class_names, f"the model {loaded.path}")
    return test


def _resized_to(model):
    from kerascnn.predict import _resizing_layers

    return _resizing_layers(model)[0].height


def _model_input(model, test):
    from kerascnn.data import model_input
    from kerascnn.layers import takes_raw_pixels

    return model_input(test.x_test, takes_raw_pixels(model))


def _calibration_lines(result):
    if not result.calibration:
        return []
    before, after = result.calibration["uncalibrated"], result.calibration["calibrated"]
    if result.temperature == 1.0:
        return [f"calibration: no temperature saved; ECE {after['ece']:.4f} NLL {after['nll']:.4f} "
                f"Brier {after['brier']:.4f}"]
    return [f"calibration: temperature {result.temperature:.3f} (fitted on validation); "
            f"ECE {before['ece']:.4f} -> {after['ece']:.4f}, NLL {before['nll']:.4f} -> {after['nll']:.4f}, "
            f"Brier {before['brier']:.4f} -> {after['brier']:.4f} (without -> with it)"]


def format_report(result):
    """The evaluation as the text `python -m kerascnn evaluate` prints."""
    lines = [
        f"model: {result.model_path}",
        f"dataset: {result.dataset} test ({result.images} images)",
        f"test_accuracy={result.accuracy:.4f} test_loss={result.loss:.4f}",
        *_calibration_lines(result),
        "",
        "per-class accuracy:",
    ]
    names = result.class_names or [str(c) for c in range(len(result.per_class_accuracy))]
    width = max(len(name) for name in names)
    for c, accuracy in enumerate(result.per_class_accuracy):
        errors = int(result.confusion_matrix[c].sum() - result.confusion_matrix[c, c])
        lines.append(f"  {names[c]:<{width}}: {accuracy:.4f}  ({errors} wrong of {int(result.confusion_matrix[c].sum())})")
    lines += ["", "confusion matrix (rows: true class, columns: predicted):"]
    lines += figures.format_confusion_table(result.confusion_matrix).splitlines()
    if result.png_path:
        lines += ["", f"confusion matrix PNG: {result.png_path}"]
    return "\n".join(lines)
