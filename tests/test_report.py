"""kerascnn.report: the block a run prints first says what was found, for a built-in dataset and your own folder."""

import os

import numpy as np
from PIL import Image

from conftest import MNIST_DIR
from kerascnn.assemble import assemble
from kerascnn.config import TrainConfig, resolve
from kerascnn.report import end_block, start_block


def test_the_start_block_names_your_folder_its_classes_sizes_and_model(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("circle", "square", "triangle"):
        os.makedirs(tmp_path / "shapes" / name)
        for i in range(30):
            Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(tmp_path / "shapes" / name / f"{i}.png")
    config = resolve(TrainConfig(dataset=str(tmp_path / "shapes"), model="best", members=2, image_size=32,
                                 val_size=10, precision="float32", logdir=str(tmp_path / "logs")))
    run = assemble(config)
    lines = start_block(run.config, run, "logs/best-1", resumed=False).splitlines()
    assert lines[0] == f"data: your images, {tmp_path / 'shapes'}: 3 classes, 32x32 RGB"  # --image-size 32
    test, val = len(run.splits.y_test), len(run.splits.y_val)  # a stratified 20%, then a tenth of the rest
    assert (test, val) == (18, 7) and lines[1] == f"images: {90 - test - val} train, {val} validation, {test} test"
    assert lines[2] == (f"model: best, 2 members, {run.model.count_params():,} parameters; float32; "
                        f"28 epochs of {-(-(90 - test - val) // 16)} steps (batch 16)")  # a small split: batch_for
    # The policy auto chose once the pictures were read, why, and its amounts at 32 px.
    assert lines[3] == "augmentation: photos (colour pictures): flip, shift 3.2 px"
    assert lines[4] == "run directory: logs/best-1 (new)"


def test_the_end_block_says_which_epoch_was_kept_and_why():
    metrics = {"best_epoch": 3, "epochs": 5, "best_val_accuracy": 0.91234, "test_accuracy": 0.9, "test_loss": 0.31,
               "test_images": 18, "wall_seconds": 3725.2, "sittings": 2}
    assert end_block(metrics, "logs/x").splitlines() == [
        "kept: epoch 3 of 5, the highest validation accuracy (91.23%)",
        "test: accuracy 90.00% (loss 0.3100) on 18 images, scored once",
        "time: 1:02:05 of training in 2 sittings; results in logs/x",
    ]


def test_a_built_in_dataset_is_named_with_the_folder_it_was_read_from():
    config = resolve(TrainConfig(subset=300, val_size=100, precision="float32", data_dir=MNIST_DIR))
    run = assemble(config)
    assert start_block(run.config, run, "r", True).splitlines()[0] == (
        f"data: mnist from {os.path.abspath(MNIST_DIR)}: 10 classes, 28x28 grey")
