"""The learning-rate schedule and the callback set."""

import os

import keras
import numpy as np
import pytest

from kerascnn.callbacks import EpochSeeds, SafeModelCheckpoint, StepDecay, make_callbacks
from kerascnn.config import TrainConfig


def test_schedule_halves_every_five_epochs():
    schedule = StepDecay(1e-3)
    # Keras passes 0-based epochs: epochs 1, 6 and 11 are indices 0, 5, 10.
    assert [schedule(e) for e in (0, 4, 5, 9, 10, 14)] == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4]
    assert StepDecay(0.1, period=2, factor=0.1)(4) == pytest.approx(1e-3)


@pytest.mark.parametrize("kwargs,message", [
    (dict(initial=0), "`initial` must be > 0"),
    (dict(initial=1e-3, period=0), "`period` must be an integer >= 1. Received: period=0"),
    (dict(initial=1e-3, factor=1.5), "`factor` must be in"),
])
def test_schedule_arguments_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StepDecay(**kwargs)


def test_callback_set(tmp_path):
    callbacks, checkpoint = make_callbacks(TrainConfig(lr=0.01, lr_period=3), str(tmp_path))
    kinds = {type(c).__name__: c for c in callbacks}
    assert set(kinds) == {"EpochSeeds", "BackupAndRestore", "LearningRateScheduler", "TerminateOnNaN", "SafeModelCheckpoint",
                          "TensorBoard", "CSVLogger"}
    assert kinds["LearningRateScheduler"].schedule(3) == pytest.approx(0.005)
    assert type(callbacks[-1]).__name__ == "BackupAndRestore"  # an epoch is backed up after its checkpoint
    assert checkpoint.monitor == "val_accuracy" and checkpoint.save_best_only
    assert checkpoint.final_path == str(tmp_path / "best.keras")
    assert isinstance(checkpoint, keras.callbacks.ModelCheckpoint)


def tiny_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    return model


def saved_kernel(path):
    return keras.saving.load_model(path).layers[0].get_weights()[0]


@pytest.fixture
def saved_once(tmp_path):
    """A checkpoint callback on a tiny model, after one saved epoch: (path, model, callback)."""
    path = str(tmp_path / "best.keras")
    model = tiny_model()
    cb = SafeModelCheckpoint(path, monitor="val_accuracy", mode="max")
    cb.set_model(model)
    cb.on_epoch_end(0, {"loss": 0.5, "val_accuracy": 0.5})
    return path, model, cb


def test_checkpoint_keeps_best_and_skips_diverged_epochs(saved_once, tmp_path):
    path, model, cb = saved_once
    first = model.layers[0].get_weights()[0].copy()
    np.testing.assert_array_equal(saved_kernel(path), first)
    model.layers[0].kernel.assign(np.full((4, 2), np.nan, "float32"))
    cb.on_epoch_end(1, {"loss": float("nan"), "val_accuracy": 0.9})  # diverged: not saved
    np.testing.assert_array_equal(saved_kernel(path), first)
    model.layers[0].kernel.assign(np.ones((4, 2), "float32"))
    cb.on_epoch_end(2, {"loss": 0.4, "val_accuracy": 0.4})  # worse: not saved
    np.testing.assert_array_equal(saved_kernel(path), first)
    cb.on_epoch_end(3, {"loss": 0.3, "val_accuracy": 0.7})
    np.testing.assert_array_equal(saved_kernel(path), np.ones((4, 2)))
    assert sorted(os.listdir(tmp_path)) == ["best.keras"]  # no partial file left


def test_checkpoint_interrupted_mid_save_leaves_previous_intact(saved_once):
    path, model, cb = saved_once
    good = saved_kernel(path)

    def save_then_die(filepath, overwrite=True):  # a save cut off half-way, as a kill would
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    model.save = save_then_die
    with pytest.raises(KeyboardInterrupt):
        cb.on_epoch_end(1, {"loss": 0.4, "val_accuracy": 0.9})
    np.testing.assert_array_equal(saved_kernel(path), good)


def test_checkpoint_path_must_be_keras():
    with pytest.raises(ValueError, match="`filepath` must end in .keras. Received: filepath='best.h5'"):
        SafeModelCheckpoint("best.h5")


def test_epoch_seeds_make_epochs_differ_and_repeat(test_batch):
    """Each epoch's dropout masks depend on (seed, epoch) only: epochs differ, a repeat matches."""
    x = test_batch[0][:32]
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dropout(0.5)])
    seeds = EpochSeeds(seed=7)
    seeds.set_model(model)

    def masks(epoch, draws=3):
        seeds.on_epoch_begin(epoch)
        return [keras.ops.convert_to_numpy(model(x, training=True)) != 0 for _ in range(draws)]

    epoch0, epoch1, again0 = masks(0), masks(1), masks(0)
    for a, b in zip(epoch0, again0):
        np.testing.assert_array_equal(a, b)
    # Epoch 1 does not replay epoch 0's stream shifted by a draw.
    assert not any(np.array_equal(a, b) for a in epoch0 for b in epoch1)
