"""What a run says: a short block when it starts, one when it ends, and the result pictures it leaves.

At the start: the data found (a built-in dataset and the folder it was read
from, or your folder with its class count), the images in each split,
their size and colours, the model with its parameter count and members,
the precision, the epochs with their steps and batch, the augmentation
policy (and why `auto` chose it), and the run directory. At the end: the epoch kept
and why (the run's checkpoint rule), the test accuracy (scored once, on the
kept checkpoint), the temperature fitted on validation and what it did to
the test probabilities, the time, then each class's test accuracy (the weakest ones when there are
many). The start block warns in one line when the
classes are imbalanced more than `data.IMBALANCE` to 1. The pictures `python -m kerascnn evaluate` draws, the test set's
confusion matrix and its most confident mistakes, are written into the run
directory when training ends (`rundir.CONFUSION`, `rundir.MISCLASSIFIED`).

Example:

>>> print(end_block({"best_epoch": 8, "epochs": 28, "best_val_accuracy": 0.9976, "test_accuracy": 0.9957,
...                  "test_loss": 0.0152, "test_images": 10000, "wall_seconds": 621.4, "sittings": 1}, "logs/run"))
kept: epoch 8 of 28, the highest validation accuracy (99.76%)
test: accuracy 99.57% (loss 0.0152) on 10,000 images, scored once
time: 10:21 of training in 1 sitting; results in logs/run
"""

import os

import numpy as np

from kerascnn import figures, rundir
from kerascnn.data import imbalance_warning


def _shape_words(shape):
    height, width, channels = shape
    return f"{height}x{width} {'RGB' if channels == 3 else 'grey' if channels == 1 else f'{channels} channels'}"


def start_block(config, run, run_dir, resumed):
    """The lines a run prints before its first epoch (see the module docstring)."""
    spec, splits = run.splits.spec, run.splits
    source = spec.record.get("source")
    classes = len(spec.class_names)
    if spec.raw_pixels:
        found = f"your images, {source or config.dataset}: {classes} classes"
    else:
        found = f"{config.dataset}" + (f" from {source}" if source else "") + f": {classes} classes"
    size = _shape_words(tuple(spec.image_shape))
    if spec.image_size and tuple(spec.image_size) != tuple(spec.image_shape[:2]):
        size += f", resized to {spec.image_size[0]}x{spec.image_size[1]} by the model"
    members = getattr(run.model, "members", None)
    model = f"{config.model}" + (f", {len(members)} members" if members else "")
    batch = run.plan.global_batch(config.batch_size)
    steps = run.plan.steps_per_epoch(run.train_images, config.batch_size)
    epochs = (f"{config.epochs} epoch{'s' * (config.epochs != 1)} of {steps:,} step{'s' * (steps != 1)} "
              f"(batch {batch:,})")
    warning = imbalance_warning(spec)
    return "\n".join([
        f"data: {found}, {size}",
        f"images: {run.train_images:,} train, {len(splits.y_val):,} validation, {len(splits.y_test):,} test",
        f"model: {model}, {run.model.count_params():,} parameters; {run.policy}; {epochs}",
        augmentation_line(config),
        f"run directory: {run_dir} ({'resumed' if resumed else 'new'})",
    ] + ([warning] if warning else []))


def augmentation_line(config):
    """The start block's line on the augmentation: the policy, why (`auto`'s reason), and its amounts.

    >>> from kerascnn.config import TrainConfig
    >>> config = TrainConfig(model="best", augment="photos", rotation=10, shift=2.8, zoom=0.1, flip=True,
    ...                      brightness=0.0, contrast=0.0)
    >>> config._augment_why = "Fashion-MNIST is pictures of clothes"
    >>> augmentation_line(config)
    'augmentation: photos (Fashion-MNIST is pictures of clothes): flip, rotation 10 deg, shift 2.8 px, zoom 10%'
    """
    amounts = [
        "flip" if config.flip else "",
        f"rotation {config.rotation:g} deg" if config.rotation else "",
        f"shift {config.shift:g} px" if config.shift else "",
        f"zoom {config.zoom:.0%}" if config.zoom else "",
        f"elastic alpha {config.elastic:g}" if config.elastic else "",
        f"brightness {config.brightness:.0%}" if config.brightness else "",
        f"contrast {config.contrast:.0%}" if config.contrast else "",
    ]
    why = getattr(config, "_augment_why", None)
    said = ", ".join(a for a in amounts if a) or "off"
    return f"augmentation: {config.augment}" + (f" ({why})" if why else "") + f": {said}"


def _clock(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def end_block(metrics, run_dir):
    """The lines a run prints when it has been scored (see the module docstring)."""
    sittings = metrics["sittings"]
    rule = metrics.get("checkpoint", {"rule": "accuracy", "why": "the highest validation accuracy"})
    val = metrics.get("best_val_accuracy")
    score = "" if val is None else f" ({val:.2%})" if rule["rule"] == "accuracy" else f" (validation accuracy {val:.2%})"
    return "\n".join([
        f"kept: epoch {metrics['best_epoch']} of {metrics['epochs']}, {rule['why']}{score}",
        f"test: accuracy {metrics['test_accuracy']:.2%} (loss {metrics['test_loss']:.4f}) on "
        f"{metrics['test_images']:,} images, scored once",
        *calibration_lines(metrics.get("calibration")),
        f"time: {_clock(metrics['wall_seconds'])} of training in {sittings} sitting{'s' * (sittings != 1)}; "
        f"results in {run_dir}",
        *per_class_lines(metrics.get("per_class_accuracy")),
    ])


def calibration_lines(calibrated):
    """The end block's line on the temperature and what it did to the test probabilities (none without one).

    >>> calibration_lines({"temperature": 0.5, "validation_images": 5000,
    ...                    "test_uncalibrated": {"ece": 0.08, "nll": 0.1}, "test": {"ece": 0.004, "nll": 0.02}})
    ['calibration: temperature 0.500, fitted on 5,000 validation images; test ECE 8.00% -> 0.40%, NLL 0.1000 -> 0.0200']
    """
    if not calibrated:
        return []
    before, after = calibrated["test_uncalibrated"], calibrated["test"]
    return [f"calibration: temperature {calibrated['temperature']:.3f}, fitted on {calibrated['validation_images']:,} "
            f"validation images; test ECE {before['ece']:.2%} -> {after['ece']:.2%}, "
            f"NLL {before['nll']:.4f} -> {after['nll']:.4f}"]


PER_CLASS_SHOWN = 20  # classes listed one by one at the end of a run; with more, the weakest


def per_class_accuracy(y_true, predicted, class_names):
    """{class name: {"accuracy": share of its test pictures classified right, "images": how many}}, in label order."""
    y_true, predicted = np.asarray(y_true), np.asarray(predicted)
    result = {}
    for c, name in enumerate(class_names):
        mine = y_true == c
        result[name] = {"accuracy": float(np.mean(predicted[mine] == c)) if mine.any() else None,
                        "images": int(mine.sum())}
    return result


def per_class_lines(per_class):
    """The end block's lines of each class's test accuracy, the weakest first when there are many.

    >>> per_class_lines({"cat": {"accuracy": 0.95, "images": 20}, "dog": {"accuracy": 0.5, "images": 2}})
    ['test accuracy per class:', '  cat: 95.00% of 20', '  dog: 50.00% of 2']
    """
    if not per_class:
        return []
    items = [(name, v) for name, v in per_class.items() if v["accuracy"] is not None]
    head = ["test accuracy per class:"]
    if len(items) > PER_CLASS_SHOWN:
        items = sorted(items, key=lambda item: item[1]["accuracy"])[:PER_CLASS_SHOWN // 2]
        head = [f"test accuracy per class, the {len(items)} weakest of {len(per_class)} (all in metrics.json):"]
    return head + [f"  {name}: {v['accuracy']:.2%} of {v['images']:,}" for name, v in items]


def write_result_pictures(run_dir, x_test, y_test, probabilities, accuracy, class_names):
    """The test set's confusion matrix and most confident mistakes as PNGs in `run_dir`; returns their paths.

    Args:
        x_test: uint8 array (N, H, W, C) of the test images, or None where
            they are not in memory (streamed from disk): then only the matrix.
    """
    title = f"{rundir.BEST_MODEL} on the test set: accuracy {accuracy:.4f}"
    paths = [figures.save_png(figures.draw_confusion(y_test, probabilities, title, class_names),
                              os.path.join(run_dir, rundir.CONFUSION))]
    if isinstance(x_test, np.ndarray) and x_test.ndim == 4:
        grid = figures.draw_misclassified(x_test, y_test, probabilities, class_names=class_names)
        paths.append(figures.save_png(grid, os.path.join(run_dir, rundir.MISCLASSIFIED)))
    return paths
