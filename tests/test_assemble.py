"""`assemble`: the one way a run of a config is put together, with tf.data or with arrays."""

import keras
import numpy as np
import pytest

from kerascnn.assemble import assemble, build_model
from kerascnn.config import TrainConfig
from kerascnn.data import Splits


def tiny_config(**overrides):
    values = dict(model="sequential", filters=4, dense_units=8, subset=300, val_size=100, batch_size=50,
                  precision="float32", lr=2e-3, lr_period=2)
    return TrainConfig(**{**values, **overrides})


def test_a_run_holds_a_compiled_model_scaled_batches_and_the_schedule(mnist):
    run = assemble(tiny_config())
    assert run.policy == "float32" and run.train_images == 300
    assert type(run.model.optimizer).__name__ == "Adam" and run.model.compiled
    assert float(run.model.optimizer.learning_rate) == pytest.approx(2e-3)  # the config's lr
    x, y = next(iter(run.train))
    assert tuple(x.shape) == (50, 28, 28, 1) and x.dtype == "float32"
    assert 0.0 <= float(np.min(x)) and float(np.max(x)) <= 1.0 and float(np.max(x)) > 0.9
    assert run.splits.x_train is None  # the pipeline holds the images; the run keeps one copy
    names = [type(c).__name__ for c in run.schedule]
    assert names == ["EpochSeeds", "LearningRateScheduler"]
    assert run.schedule[0].epoch_variable is run.epoch
    assert run.schedule[1].schedule(2) == pytest.approx(1e-3)  # lr halved after lr_period epochs
    history = run.model.fit(run.train, validation_data=run.val, epochs=1, callbacks=run.schedule, verbose=0,
                            shuffle=False)
    assert history.history["learning_rate"] == [pytest.approx(2e-3)]


def test_array_input_needs_no_tensorflow_pipeline_and_matches_the_pipeline(mnist):
    piped, arrays = assemble(tiny_config()), assemble(tiny_config(), arrays=True)
    x_train, y_train = arrays.train
    assert isinstance(x_train, np.ndarray) and x_train.dtype == np.float32 and len(x_train) == 300
    assert arrays.epoch is None and arrays.schedule[0].epoch_variable is None
    x_val, y_val = arrays.val
    piped_val = np.concatenate([x.numpy() for x, _ in piped.val])
    np.testing.assert_array_equal(piped_val, x_val)  # one scaling for both
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in piped.val]), y_val)
    # Same seed, same weights: the model is built after the seed is set, whichever input.
    for a, b in zip(piped.model.get_weights(), arrays.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_the_weight_average_adds_its_swap_and_compile_overrides_reach_compile(mnist):
    run = assemble(tiny_config(ema=0.99), arrays=True, steps_per_execution=3)
    assert isinstance(run.schedule[-1], keras.callbacks.SwapEMAWeights)
    assert run.model.optimizer.use_ema and run.model.steps_per_execution == 3


def test_a_built_model_is_fed_without_being_rebuilt_or_reseeded():
    config = tiny_config()
    model = build_model(config)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (120, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 120).astype(np.uint8)
    weights = model.get_weights()
    run = assemble(config, splits=Splits(x[:100], y[:100], x[100:], y[100:], None, None), model=model)
    assert run.model is model and run.train_images == 100
    for a, b in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert sum(int(x.shape[0]) for x, _ in run.train) == 100
