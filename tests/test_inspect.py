"""kerascnn.inspect: every registered model, trained and saved, read the same way on TensorFlow and JAX.

The defects this guards against: Grad-CAM all zeros for a loaded Sequential
model (a gradient of None silently turned into zeros), a layer view that
dropped the dense layer before the softmax, and a JAX run that lost its
result because the end-of-training pictures used a TensorFlow-only pass.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import MNIST_DIR, ROOT, run_cli
from kerascnn import load_model
from kerascnn.inspect import compile_pass
from kerascnn.inspect import Answer, Explainer, GradientError, InspectError, explain, trace
from kerascnn.models import list_models

DIGITS = 16  # correctly classified test digits each model's Grad-CAM is checked on


def on_the_digit(cam, digit, margin=3):
    """Whether Grad-CAM's hottest pixel lies on the digit's ink, grown by `margin` pixels on each side."""
    ink = digit[..., 0] > 0.2
    row, col = np.unravel_index(np.argmax(cam), cam.shape)
    window = ink[max(row - margin, 0):row + margin + 1, max(col - margin, 0):col + margin + 1]
    return bool(window.any())


def reference_gradcam(member, explanation):
    """Grad-CAM as its paper defines it, computed apart from kerascnn.inspect: the layers after the last conv stage
    re-applied to its maps under a GradientTape, the logit's gradient averaged over each map (TensorFlow)."""
    import tensorflow as tf

    last = max(i for i, s in enumerate(explanation.stages) if s.kind == "conv")
    layers = [step.layer for step in trace(member, keras.Input(explanation.image.shape))[0]]
    maps = tf.constant(explanation.stages[last].activations[None])
    with tf.GradientTape() as tape:
        tape.watch(maps)
        x = maps
        for layer in layers[layers.index(explanation.stages[last].layer) + 1:-1]:  # up to the logits
            x = layer(x, training=False)
        score = x[0, explanation.predicted]
    weights = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2))[0].numpy()
    cam = np.maximum((explanation.stages[last].activations * weights).sum(axis=-1), 0)
    cam = tf.image.resize(cam[..., None], explanation.image.shape[:2], method="bilinear")[..., 0].numpy()
    return cam / cam.max() if cam.max() > 0 else cam


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """Each registered model trained by `kerascnn.train` on 4,000 real MNIST digits for one epoch, and saved."""
    from kerascnn.config import TrainConfig
    from kerascnn.training import train

    logdir = str(tmp_path_factory.mktemp("inspect_runs"))
    runs = {}
    for name in list_models():
        config = TrainConfig(model=name, epochs=1, subset=4000, val_size=500, filters=16, dense_units=64,
                             members=2 if name in ("ensemble", "best") else None, precision="float32",
                             data_dir=MNIST_DIR, logdir=logdir)
        runs[name] = train(config, verbose=0).run_dir
        keras.mixed_precision.set_dtype_policy("float32")
    return runs


def right_digits(model, test_batch):
    x, y = test_batch
    right = np.flatnonzero(np.argmax(model.predict(x[:300], verbose=0), axis=1) == y[:300])[:DIGITS]
    assert len(right) == DIGITS, "the short run should classify most of 300 test digits"
    return x[right]


@pytest.mark.parametrize("name", list_models())
def test_every_saved_model_and_member_has_the_gradcam_its_definition_gives(trained_runs, test_batch, name):
    """Loaded from its run directory (the blank Grad-CAM was a loaded Sequential's), every member of every model."""
    model = load_model(trained_runs[name])
    members = getattr(model, "members", [model])
    for number, member in enumerate(members, start=1):
        explainer = Explainer(model, member=number)
        blank = 0
        for digit in right_digits(model, test_batch)[:6]:
            e = explainer(digit)
            np.testing.assert_allclose(e.gradcam, reference_gradcam(member, e), atol=1e-4)
            np.testing.assert_allclose(e.probabilities, model.predict(digit[None], verbose=0)[0], atol=1e-5)
            blank += e.gradcam.max() == 0  # ReLU of the weighted maps can be all zero; it must not always be
            assert e.saliency.max() == pytest.approx(1.0)
        assert blank <= 1, f"member {number}: Grad-CAM blank on {blank} of 6 digits"
        assert [s.text for s in e.stages][-2:] == ["dense 10", "softmax 10"]


@pytest.mark.parametrize("name", ["sequential", "functional", "subclass", "ensemble"])
def test_gradcam_peaks_on_the_digit(trained_runs, test_batch, name):
    """The hottest pixel lies on the digit's ink (grown by 3 pixels), for most digits: measured 20 of 24 for the
    lecture CNN after this short run. `best`'s augmented batch-norm members are left out: after one epoch their
    Grad-CAM peaks on the digit for only 14 of 24 (about what a random pixel gives), a property of so short a
    run, not of the reading, which the test above checks against Grad-CAM's definition for them too."""
    model = load_model(trained_runs[name])
    explainer = Explainer(model, member=1)
    digits = right_digits(model, test_batch)
    on = sum(on_the_digit(explainer(digit).gradcam, digit) for digit in digits)
    assert on >= 0.6 * DIGITS, f"Grad-CAM peaked on the digit for only {on} of {DIGITS} digits"


def test_saliency_is_the_gradient_of_the_winning_probability(trained_runs, test_batch):
    model = load_model(trained_runs["ensemble"])
    digit = test_batch[0][3]
    members, saliency = Answer(model)(digit)
    assert members.shape == (2, 10)
    winner = int(np.argmax(members.mean(axis=0)))
    # A finite difference at the most salient pixel: the probability moves there, as the gradient says.
    row, col = np.unravel_index(np.argmax(saliency), saliency.shape)
    step = np.zeros_like(digit)
    step[row, col] = 1e-2
    p = lambda image: model.predict(image[None], verbose=0)[0][winner]  # noqa: E731
    assert abs(p(digit + step) - p(digit - step)) > 0


def test_a_score_that_does_not_depend_on_a_variable_is_refused_not_zero():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    unused = keras.Variable(np.zeros(1, "float32"), trainable=True)
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the refusal is made when TensorFlow traces the pass")
    run = compile_pass(model, lambda out: [keras.ops.sum(out[0])], [unused])
    with pytest.raises(GradientError, match="does not depend on"):
        run(np.ones((1, 2), "float32"))


def test_an_unreadable_subclass_is_refused(test_batch):
    class Opaque(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)
            self.head = keras.layers.Dense(10, activation="softmax")

        def call(self, x):
            return self.head(keras.ops.mean(self.conv(x), axis=(1, 2)))

    model = Opaque()
    model(test_batch[0][:1])
    with pytest.raises(InspectError, match="layer_sequence"):
        Explainer(model)


JAX_CHECK = r"""
import json, sys
import numpy as np
import keras
import kerascnn
from kerascnn.data import load_dataset
from kerascnn.inspect import explain
assert keras.backend.backend() == "jax", keras.backend.backend()
model = kerascnn.load_model(sys.argv[1])
digits = load_dataset("mnist", sys.argv[2], download=False)
e = explain(model, digits.x_test[0].reshape(28, 28, 1).astype("float32") / 255.0)
print(json.dumps({"cam_max": float(e.gradcam.max()), "cam_sum": float(e.gradcam.sum()),
                  "saliency_max": float(e.saliency.max()), "stages": [s.text for s in e.stages]}))
"""


def test_a_jax_run_as_a_command_keeps_its_result_and_its_gradcam(tmp_path):
    pytest.importorskip("jax")
    env = {"KERAS_BACKEND": "jax"}
    result = run_cli("train.py", "--model", "sequential", "--epochs", "1", "--subset", "4000", "--val-size", "500",
                     "--batch-size", "100", "--filters", "16", "--dense-units", "64", "--precision", "float32", "--logdir", str(tmp_path),
                     env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (run_dir,) = [os.path.join(tmp_path, d) for d in os.listdir(tmp_path)]
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["test_accuracy"] > 0.7  # 0.8 to 0.9 after this short run
    events = [f for _, _, files in os.walk(os.path.join(run_dir, "validation")) for f in files]
    assert events, "the end-of-training pictures were not written"
    check = subprocess.run([sys.executable, "-c", JAX_CHECK, run_dir, MNIST_DIR], cwd=ROOT, capture_output=True,
                           text=True, timeout=300, env={**os.environ, **env})
    assert check.returncode == 0, check.stderr[-3000:]
    seen = json.loads(check.stdout.strip().splitlines()[-1])
    assert seen["cam_max"] == pytest.approx(1.0) and seen["cam_sum"] > 1.0 and seen["saliency_max"] == pytest.approx(1.0)
    assert seen["stages"][-2:] == ["dense 10", "softmax 10"]


def test_a_bf16_model_saved_and_loaded_has_its_gradcam(tmp_path, test_batch):
    """Mixed bfloat16 (what --precision auto picks on AVX-512 BF16 CPUs): the loaded Sequential was blank there too."""
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(3)
    from kerascnn.models import create_model

    model = create_model("sequential", filters=8, dense_units=32)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = test_batch
    model.fit(x[:600], y[:600], epochs=1, batch_size=50, verbose=0)
    model.save(tmp_path / "bf16.keras")
    keras.mixed_precision.set_dtype_policy("float32")  # as a later process that loads it
    loaded = load_model(str(tmp_path / "bf16.keras"))
    e = explain(loaded, x[700])
    assert e.gradcam.max() == pytest.approx(1.0) and e.saliency.max() == pytest.approx(1.0)
    np.testing.assert_allclose(e.gradcam, reference_gradcam(loaded, e), atol=0.05)  # bf16 sums, rounded
