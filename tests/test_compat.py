"""Each reach-in of `kerascnn.compat` on the installed Keras, keras-tuner and TensorFlow.

One test per reach-in: after an upgrade, a failure here names the internal
that moved before any long run trips over it.
"""

import configparser
import os
import shutil
import warnings

import keras
import keras_tuner
import numpy as np
import pytest
from packaging.version import Version

from conftest import ROOT, free_port
from kerascnn import compat


def test_the_installed_versions_are_in_the_supported_ranges():
    for name, version in compat.installed_versions().items():
        if version is not None:
            low, high = compat.SUPPORTED[name]
            assert Version(low) <= Version(version) < Version(high), name


def test_a_version_below_the_range_is_refused_and_one_above_warns():
    with pytest.raises(ImportError, match=r"needs keras-tuner>=1\.4\.7,<1\.5\. Received: keras-tuner==1\.3\.5"):
        compat.check_versions({"keras-tuner": "1.3.5"})
    with pytest.warns(UserWarning, match=r"tested with tensorflow>=2\.16,<2\.22.*Received: tensorflow==2\.22\.0rc1"):
        compat.check_versions({"tensorflow": "2.22.0rc1"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compat.check_versions({"keras": "3.15.1", "tensorflow": None})  # in range, or absent: silent


def test_setup_cfg_pins_the_same_ranges():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    requires = parser["options"]["install_requires"]
    for name, (low, high) in compat.SUPPORTED.items():
        extra = "[bayesian]" if name == "keras-tuner" else ""
        assert f"{name}{extra}>={low},<{high}" in requires, name


def nested_model():
    member = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.RandomRotation(0.1),
                               keras.layers.Flatten(), keras.layers.Dropout(0.5), keras.layers.Dense(10)])
    inputs = keras.Input((28, 28, 1))
    return keras.Model(inputs, keras.layers.Average()([member(inputs), member(inputs)])), member


def test_flatten_layers_reaches_layers_inside_a_model_inside_a_model():
    model, member = nested_model()
    found = compat.flatten_layers(model)
    assert model in found and member in found
    assert any(isinstance(layer, keras.layers.RandomRotation) for layer in found)


def test_seed_states_are_the_seed_generators_of_nested_layers_and_reseeding_repeats_draws():
    model, _ = nested_model()
    states = compat.seed_states(model)
    assert len(states) == 2 and all(tuple(s.shape) == (2,) for s in states)  # rotation and dropout
    x = np.ones((4, 28, 28, 1), "float32")

    def draw(seed, stream):
        for i, state in enumerate(states):
            compat.set_seed_state(state, seed + i, stream)
        return keras.ops.convert_to_numpy(model(x, training=True))

    np.testing.assert_array_equal(draw(7, 3), draw(7, 3))  # the state alone decides the draws
    assert not np.array_equal(draw(7, 3), draw(7, 4))
    assert keras.ops.convert_to_numpy(states[0])[-1] >= 3 * compat.STREAM_STRIDE  # the counter word moved on


def test_keras_still_marks_the_augmentation_layers_unjittable_and_the_mark_can_be_cleared():
    layer = keras.layers.RandomRotation(0.1)
    assert layer.supports_jit is False  # what layers.allow_jit works around; if True, drop the workaround
    assert compat.mark_jittable(layer).supports_jit is True


def test_the_backup_copies_are_where_keras_writes_them_newest_first(tmp_path):
    """Two epochs with `BackupAndRestore(double_checkpoint=True)`, as every run makes it: the newest copy holds
    epoch 2, the previous one epoch 1, and each copy's weights load into the model."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    backup = str(tmp_path / "backup")
    model.fit(np.zeros((4, 3)), np.zeros((4, 2)), epochs=2, verbose=0, callbacks=[
        keras.callbacks.BackupAndRestore(backup, double_checkpoint=True, delete_checkpoint=False)])
    copies = compat.backup_copies(backup)
    assert [compat.backup_epoch(metadata) for _, metadata in copies] == [2, 1]
    for weights, _ in copies:  # Keras loads a copy by its name's ending, as it does the previous one: copied
        shutil.copyfile(weights, tmp_path / "copy.weights.h5")
        model.load_weights(tmp_path / "copy.weights.h5")
    with open(copies[0][1], "w") as f:
        f.write('{"batch": 0}')
    with pytest.raises(ValueError, match="no epoch count"):
        compat.backup_epoch(copies[0][1])


def test_the_tensorflow_gradient_registry_is_the_dict_of_registered_gradients():
    pytest.importorskip("tensorflow")
    registry = compat.tf_gradient_registry()
    assert isinstance(registry, dict) and "MatMul" in registry


def test_the_free_heap_is_returned_on_glibc():
    import platform

    assert compat.release_free_heap() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


def tiny_tuner(tmp_path):
    def build(hp):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(hp.Choice("units", [1, 2]))])
        model.compile(loss="mse")
        return model

    return keras_tuner.RandomSearch(build, objective="loss", max_trials=1, directory=str(tmp_path), project_name="p")


def test_the_oracle_state_paths_retry_queue_and_save_hook(tmp_path):
    oracle = tiny_tuner(tmp_path).oracle
    assert compat.oracle_state_path(oracle) == str(tmp_path / "p" / "oracle.json")
    assert compat.trial_state_path(oracle, "00") == str(tmp_path / "p" / "trial_00" / "trial.json")
    assert compat.retry_queue(oracle) == [] and compat.retry_queue(oracle) is compat.retry_queue(oracle)
    trial = oracle.create_trial("tuner0")
    compat.save_trial(oracle, trial)
    assert os.path.isfile(compat.trial_state_path(oracle, trial.trial_id))


def test_the_grpc_client_wraps_the_local_oracle_and_the_servicer_registers(tmp_path, monkeypatch):
    grpc = pytest.importorskip("grpc")
    from concurrent import futures

    oracle = tiny_tuner(tmp_path).oracle
    for name, value in {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_port()),
                        "KERASTUNER_TUNER_ID": "tuner0"}.items():
        monkeypatch.setenv(name, value)  # the client reads the chief's address (it connects lazily)
    client_class = compat.oracle_client_class()
    assert compat.local_oracle(client_class(oracle)) is oracle
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    try:
        servicer = compat.add_oracle_servicer(oracle, server)
        assert servicer.oracle is oracle and hasattr(servicer, "stop_triggered")
    finally:
        server.stop(0)


def test_trial_files_name_every_trial_folder_with_or_without_its_file(tmp_path):
    oracle = tiny_tuner(tmp_path).oracle
    trial = oracle.create_trial("tuner0")
    compat.save_trial(oracle, trial)
    (tmp_path / "p" / "trial_7").mkdir()  # a folder whose trial.json is gone
    (tmp_path / "p" / "trial_notes.txt").write_text("not a folder")
    files = compat.trial_files(oracle)
    assert files == {trial.trial_id: compat.trial_state_path(oracle, trial.trial_id),
                     "7": str(tmp_path / "p" / "trial_7" / "trial.json")}


def test_every_call_of_the_grpc_client_goes_through_the_route(tmp_path, monkeypatch):
    oracle = tiny_tuner(tmp_path).oracle
    for name, value in {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_port()),
                        "KERASTUNER_TUNER_ID": "tuner0"}.items():
        monkeypatch.setenv(name, value)
    client = compat.oracle_client_class()(oracle)
    calls = []

    def route(method, request, **kwargs):
        calls.append((method, kwargs))
        raise RuntimeError("routed")

    compat.route_client_calls(client, route)
    for call in (lambda: client.get_space(), lambda: client.create_trial("tuner0"), lambda: client.get_trial("0")):
        with pytest.raises(RuntimeError, match="routed"):
            call()
    assert len(calls) == 3 and all(kwargs.get("wait_for_ready") and kwargs.get("timeout") for _, kwargs in calls)


def test_an_exception_is_raised_in_another_thread():
    import threading
    import time

    class Stop(BaseException):
        pass

    started, caught = threading.Event(), []

    def work():
        started.set()
        try:
            while True:
                time.sleep(0.01)
        except Stop:
            caught.append(True)

    thread = threading.Thread(target=work)
    thread.start()
    started.wait()
    assert compat.raise_in_thread(thread.ident, Stop)
    thread.join(60)
    assert caught == [True]


def test_a_hyperband_subclass_can_run_the_base_tuner_constructor_on_its_own_oracle(tmp_path):
    class OwnOracleHyperband(keras_tuner.Hyperband):
        def __init__(self, oracle, **kwargs):
            compat.init_base_tuner(self, oracle=oracle, **kwargs)

    oracle = keras_tuner.oracles.HyperbandOracle(keras_tuner.Objective("loss", "min"), max_epochs=2)
    tuner = OwnOracleHyperband(oracle, hypermodel=lambda hp: None, directory=str(tmp_path), project_name="p")
    assert tuner.oracle is oracle
