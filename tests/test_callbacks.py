"""The learning-rate schedule and the callback set."""

import json
import os

import keras
import numpy as np
import pytest

from kerascnn.callbacks import (
    EpochLog,
    EpochSeeds,
    SafeModelCheckpoint,
    StepDecay,
    make_callbacks,
    schedule_callbacks,
)
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
    config = TrainConfig(lr=0.01, lr_period=3)
    callbacks = make_callbacks(config, str(tmp_path), schedule_callbacks(config))
    kinds = {type(c).__name__: c for c in callbacks}
    checkpoint = kinds["SafeModelCheckpoint"]
    assert set(kinds) == {"EpochSeeds", "BackupAndRestore", "LearningRateScheduler", "TerminateOnNaN", "SafeModelCheckpoint",
                          "TensorBoard", "EpochLog"}
    assert isinstance(kinds["EpochLog"], keras.callbacks.CSVLogger)
    assert kinds["LearningRateScheduler"].schedule(3) == pytest.approx(0.005)
    assert type(callbacks[-1]).__name__ == "BackupAndRestore"  # an epoch is backed up after its checkpoint
    assert checkpoint.monitor == "val_accuracy" and checkpoint.save_best_only
    assert checkpoint.final_path == str(tmp_path / "best.keras")
    assert isinstance(checkpoint, keras.callbacks.ModelCheckpoint)


def test_a_resumed_run_keeps_its_best_checkpoint_until_an_epoch_beats_it(tmp_path):
    config = TrainConfig()
    first = make_callbacks(config, str(tmp_path), schedule_callbacks(config))
    (checkpoint,) = [c for c in first if isinstance(c, SafeModelCheckpoint)]
    checkpoint.set_model(tiny_model())
    checkpoint.on_epoch_end(0, {"loss": 0.1, "val_accuracy": 0.95})
    checkpoint.on_epoch_end(1, {"loss": 0.1, "val_accuracy": 0.97})  # the first sitting's best, then a kill
    # Epochs are numbered from 1, as Keras' log prints them ("Epoch 2/15" is Keras' epoch index 1).
    assert json.load(open(tmp_path / "best.json")) == {
        "monitor": "val_accuracy", "best": 0.97, "best_epoch": 2, "epochs_from": 1}

    # The next sitting's checkpoint starts from the record: the value to beat and its epoch.
    again = make_callbacks(config, str(tmp_path), schedule_callbacks(config))
    (checkpoint,) = [c for c in again if isinstance(c, SafeModelCheckpoint)]
    assert (checkpoint.best, checkpoint.best_epoch) == (0.97, 2)
    checkpoint.set_model(tiny_model())
    before = (tmp_path / "best.keras").read_bytes()
    checkpoint.on_epoch_end(2, {"loss": 0.1, "val_accuracy": 0.96})  # worse than an earlier sitting's best
    assert (tmp_path / "best.keras").read_bytes() == before and (checkpoint.best, checkpoint.best_epoch) == (0.97, 2)
    checkpoint.on_epoch_end(3, {"loss": 0.1, "val_accuracy": float("nan")})  # no score: never the best
    assert (checkpoint.best, checkpoint.best_epoch) == (0.97, 2)
    checkpoint.on_epoch_end(4, {"loss": 0.1, "val_accuracy": 0.98})
    assert (tmp_path / "best.keras").read_bytes() != before and (checkpoint.best, checkpoint.best_epoch) == (0.98, 5)
    assert json.load(open(tmp_path / "best.json")) == {
        "monitor": "val_accuracy", "best": 0.98, "best_epoch": 5, "epochs_from": 1}


def test_a_run_begun_with_0_based_epochs_resumes_on_its_own_numbering(tmp_path):
    """A run directory written before epochs were numbered from 1: its best.json has no "epochs_from" and
    its history.csv starts at epoch 0. Resumed, the record reads as the same epoch and the rows go on in one sequence."""
    (tmp_path / "best.json").write_text(json.dumps({"monitor": "val_accuracy", "best": 0.97, "best_epoch": 1}))
    (tmp_path / "history.csv").write_text("epoch,loss,val_accuracy\n0,0.5,0.95\n1,0.4,0.97\n")
    config = TrainConfig()
    callbacks = make_callbacks(config, str(tmp_path), schedule_callbacks(config))
    (checkpoint,) = [c for c in callbacks if isinstance(c, SafeModelCheckpoint)]
    assert (checkpoint.best, checkpoint.best_epoch) == (0.97, 2)  # its second epoch, numbered as metrics.json does
    (log,) = [c for c in callbacks if isinstance(c, EpochLog)]
    log.on_train_begin()
    log.on_epoch_end(2, {"loss": 0.3, "val_accuracy": 0.98})
    log.on_train_end()
    assert [row.split(",")[0] for row in (tmp_path / "history.csv").read_text().splitlines()] == ["epoch", "0", "1", "2"]


def test_history_numbers_epochs_from_1(tmp_path):
    log = EpochLog(str(tmp_path / "history.csv"), append=True)
    log.on_train_begin()
    for epoch in range(2):  # Keras' epoch indices
        log.on_epoch_end(epoch, {"loss": 0.5, "val_accuracy": 0.9})
    log.on_train_end()
    assert [row.split(",")[0] for row in (tmp_path / "history.csv").read_text().splitlines()] == ["epoch", "1", "2"]


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
    assert sorted(os.listdir(tmp_path)) == ["best.json", "best.keras"]  # no partial file left
    assert (cb.best, cb.best_epoch) == (0.7, 4)  # Keras' epoch index 3, the log's "Epoch 4/..."


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
    assert sorted(os.listdir(os.path.dirname(path))) == ["best.json", "best.keras"]  # the partial file removed
    assert json.load(open(cb.record_path))["best_epoch"] == 1  # the record still names the saved epoch


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


def test_weight_average_is_validated_and_saved_while_training_goes_on_from_the_trained_weights(tmp_path, mnist):
    from kerascnn.callbacks import RestoreTrainingWeights
    from kerascnn.models import create_model
    from kerascnn.assemble import compile_model

    config = TrainConfig(model="sequential", filters=4, dense_units=16, ema=0.9, lr=3e-3)
    model = compile_model(create_model(config.model, **config.model_kwargs()), config)
    x = (mnist.x_train[:1000].reshape(-1, 28, 28, 1) / 255.0).astype("float32")
    y = mnist.y_train[:1000]
    x_val, y_val = x[:200], y[:200]
    weights = {"average": [], "trained": [], "epoch_begin": [], "step": []}

    def record(key):
        return lambda *args, **kwargs: weights[key].append([w.copy() for w in model.get_weights()])

    schedule = schedule_callbacks(config)
    swap = [c for c in schedule if isinstance(c, keras.callbacks.SwapEMAWeights)]
    assert len(swap) == 1
    path = str(tmp_path / "best.keras")
    history = model.fit(x, y, batch_size=50, epochs=2, validation_data=(x_val, y_val), verbose=0, callbacks=[
        keras.callbacks.LambdaCallback(on_epoch_begin=record("epoch_begin"), on_train_batch_end=record("step")),
        *schedule,
        keras.callbacks.LambdaCallback(on_epoch_end=record("average")),
        SafeModelCheckpoint(path, monitor="val_accuracy", mode="max", save_best_only=False),
        RestoreTrainingWeights(swap[0]),
        keras.callbacks.LambdaCallback(on_epoch_end=record("trained")),
    ])
    average, trained = weights["average"][0], weights["trained"][0]
    # Validation scored the moving average of epoch 1's 20 steps (Keras' EMA: the first step's weights, then
    # 0.9 x the average + 0.1 x each step's), and training went on from the last step's weights.
    expected = weights["step"][0]
    for step in weights["step"][1:20]:
        expected = [0.9 * e + 0.1 * w for e, w in zip(expected, step)]
    for a, e, t, last in zip(average, expected, trained, weights["step"][19]):
        np.testing.assert_allclose(a, e, atol=1e-5)
        np.testing.assert_allclose(t, last, atol=1e-6)  # the swap back adds and subtracts: float rounding
    # The second epoch starts from the trained weights, not from the average.
    for begin, t in zip(weights["epoch_begin"][1], trained):
        np.testing.assert_array_equal(begin, t)
    # Validation scored the average, and the checkpoint holds it.
    model.set_weights(weights["average"][1])
    accuracy = model.evaluate(x_val, y_val, verbose=0, return_dict=True)["accuracy"]
    assert accuracy == pytest.approx(history.history["val_accuracy"][1], abs=1e-6)
    for saved, a in zip(keras.saving.load_model(path).get_weights(), weights["average"][1]):
        np.testing.assert_allclose(saved, a, atol=1e-6)


def test_callback_order_of_a_real_run_with_validation_and_a_weight_average(tmp_path):
    x, y = np.zeros((10, 28, 28, 1), "float32"), np.arange(10)
    config = TrainConfig(model="best", ema=0.999)
    callbacks = make_callbacks(config, str(tmp_path), schedule_callbacks(config), validation=(x, y))
    names = [type(c).__name__ for c in callbacks]
    assert names[-2:] == ["RestoreTrainingWeights", "BackupAndRestore"]  # the backup holds the trained weights
    assert names.index("SwapEMAWeights") < names.index("SafeModelCheckpoint")  # the checkpoint holds the average
    assert names.index("TensorBoardSummaries") < names.index("RestoreTrainingWeights")
    plain = make_callbacks(TrainConfig(model="best"), str(tmp_path), schedule_callbacks(TrainConfig(model="best")),
                           validation=(x, y))
    assert "SwapEMAWeights" not in [type(c).__name__ for c in plain]
    assert type(plain[-1]).__name__ == "BackupAndRestore"


# Made-up history: accuracy peaks early on noise (epoch 2) while the cross-entropy keeps falling to epoch 5.
MADE_UP = [
    {"loss": 0.9, "val_accuracy": 0.990, "val_nll": 0.040},
    {"loss": 0.8, "val_accuracy": 0.996, "val_nll": 0.030},
    {"loss": 0.7, "val_accuracy": 0.994, "val_nll": 0.025},
    {"loss": 0.6, "val_accuracy": 0.995, "val_nll": 0.020},
    {"loss": 0.5, "val_accuracy": 0.995, "val_nll": 0.018},
    {"loss": 0.5, "val_accuracy": 0.993, "val_nll": 0.019},
]


@pytest.mark.parametrize("rule,kept", [("accuracy", 2), ("nll", 5), ("last", 6)])
def test_checkpoint_rule_keeps_its_epoch_of_a_made_up_history(rule, kept, tmp_path):
    from kerascnn.callbacks import checkpoint_callback
    from kerascnn.config import TrainConfig

    config = TrainConfig(model="sequential", checkpoint=rule)
    model = tiny_model()
    cb = checkpoint_callback(config, str(tmp_path))
    cb.set_model(model)
    for epoch, logs in enumerate(MADE_UP):
        model.layers[0].kernel.assign(np.full((4, 2), epoch, "float32"))  # each epoch's weights tell it apart
        cb.on_epoch_end(epoch, logs)
    assert cb.best_epoch == kept
    assert saved_kernel(str(tmp_path / "best.keras"))[0, 0] == kept - 1  # the file holds that epoch's weights
    assert json.load(open(tmp_path / "best.json"))["best_epoch"] == kept


def test_a_shared_backup_cut_between_its_writes_resumes_from_the_whole_previous_copy(tmp_path):
    """SharedBackup (a run of several processes) writes each copy whole and renamed; cut where a kill -9 can cut
    it, after the newest metadata was removed and before the new one is in place, the run resumes from the
    previous copy, weights and epoch of one epoch, never a mixed pair."""
    from kerascnn import rundir
    from kerascnn.callbacks import SharedBackup
    from kerascnn.config import resolve
    from kerascnn.distribute import Plan
    from kerascnn.resuming import prepare

    run = tmp_path / "run"
    backup = run / "backup"
    run.mkdir()
    rundir.write_json(str(run / "config.json"), resolve(TrainConfig()).to_dict())
    (run / "history.csv").write_text("epoch,loss\n1,0.5\n2,0.4\n")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    callback = SharedBackup(str(backup), Plan("multiworker", replicas=1, num_processes=1))
    callback.set_model(model)
    weights = []
    for epoch in (0, 1):  # Keras' 0-based epochs: the copies of 1 and 2 finished epochs
        model.layers[0].kernel.assign(np.full((3, 2), epoch + 1.0, "float32"))
        weights.append(model.get_weights())
        callback.on_epoch_end(epoch)
    assert sorted(os.listdir(backup)) == ["latest.weights.h5", "latest.weights.h5.bkp", "training_metadata.json",
                                          "training_metadata.json.bkp"]  # no partial file left
    assert json.load(open(backup / "training_metadata.json"))["epoch"] == 2
    assert json.load(open(backup / "training_metadata.json.bkp"))["epoch"] == 1

    os.remove(backup / "training_metadata.json")  # the moment before the new weights and metadata are renamed in
    assert tuple(prepare(str(run))) == ("epoch", 1)
    model.layers[0].kernel.assign(np.zeros((3, 2), "float32"))
    callback.on_train_begin()  # Keras loads the copy prepare put first: epoch 1's weights
    np.testing.assert_array_equal(model.get_weights()[0], weights[0][0])
