"""The precision switch: the policy is set, the softmax stays float32, a short run learns."""

import keras
import numpy as np
import pytest

from kerascnn.config import TrainConfig
from kerascnn.models import create_model, list_models
from kerascnn.precision import cpu_has_bf16, jit_compile_setting, resolve_precision, set_precision
from kerascnn.assemble import compile_model


def test_auto_resolves_by_hardware():
    expected = "mixed_bfloat16" if cpu_has_bf16() else "float32"  # no GPU on the CI machines
    assert resolve_precision("auto") == expected
    for name in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert resolve_precision(name) == name
    with pytest.raises(ValueError, match="`precision` must be one of"):
        resolve_precision("bf16")


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("name", list_models())
def test_mixed_policy_computes_low_and_outputs_float32(name, policy, test_batch):
    assert set_precision(policy) == policy
    model = create_model(name, **({"members": 2} if name in ("ensemble", "best") else {}))
    convs = [l for l in model._flatten_layers() if isinstance(l, keras.layers.Conv2D)]
    assert convs and all(l.compute_dtype == policy.split("_")[1] for l in convs)
    assert all(l.variable_dtype == "float32" for l in convs)  # weights stay float32
    out = model.predict(test_batch[0][:8], verbose=0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-3)


def test_short_bfloat16_fit_learns(mnist, test_batch):
    set_precision("mixed_bfloat16")
    model = compile_model(create_model("sequential"), TrainConfig())
    x = mnist.x_train[:5000].astype("float32") / 255.0
    model.fit(x, mnist.y_train[:5000], batch_size=100, epochs=1, verbose=0)
    accuracy = (model.predict(test_batch[0], verbose=0).argmax(axis=1) == test_batch[1]).mean()
    assert accuracy > 0.8  # chance is 0.1


def test_xla_off_on_tensorflow_cpu():
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            assert jit_compile_setting() is False
