"""The learning-rate schedule and the callback set."""

import keras
import pytest

from kerascnn.callbacks import StepDecay, make_callbacks
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
    assert set(kinds) == {"BackupAndRestore", "LearningRateScheduler", "TerminateOnNaN", "ModelCheckpoint",
                          "TensorBoard", "CSVLogger"}
    assert kinds["LearningRateScheduler"].schedule(3) == pytest.approx(0.005)
    assert checkpoint.monitor == "val_accuracy" and checkpoint.save_best_only
    assert checkpoint.filepath.endswith("best.keras") and isinstance(checkpoint, keras.callbacks.ModelCheckpoint)
