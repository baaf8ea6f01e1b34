"""kerascnn.explain: stage activations, the shape arithmetic, probabilities and Grad-CAM, on real MNIST digits."""

import keras
import numpy as np
import pytest
from PIL import Image

from kerascnn import basics
from kerascnn.explain import ExplainError, explain, explain_figure, neuron
from kerascnn.models import create_model

LECTURE_SHAPES = [(28, 28, 32), (14, 14, 32), (14, 14, 64), (7, 7, 64), (7, 7, 128), (4, 4, 128), (256,), (10,), (10,)]
LECTURE_KINDS = ["conv", "pool"] * 3 + ["dense", "dense", "softmax"]


@pytest.fixture(scope="module")
def sequential():
    keras.utils.set_random_seed(1)
    return create_model("sequential")


@pytest.fixture
def digit(test_batch):
    return test_batch[0][0]  # (28, 28, 1) in [0, 1]


def test_sequential_stages_are_the_layers_outputs(sequential, digit):
    e = explain(sequential, digit)
    assert [s.kind for s in e.stages] == LECTURE_KINDS
    assert [s.shape for s in e.stages] == LECTURE_SHAPES
    assert e.stages[0].text == "conv 3x3/1 SAME, 32 filters, ReLU" and e.stages[1].text == "pool 2x2/2 SAME"
    layers = {layer.name: layer for layer in sequential.layers}
    for stage in e.stages:
        alone = keras.Model(sequential.inputs, layers[stage.name].output)(digit[None])
        np.testing.assert_allclose(stage.activations, np.asarray(alone)[0], atol=1e-5)
    # The lecture's arithmetic, step by step: 28 -> 28 (conv SAME) -> 14 (pool 2/2 SAME) ... -> 4.
    side, expected = 28, []
    for filters in (32, 64, 128):
        side = basics.output_size(side, 3, 1, "same")
        expected.append((side, side, filters))
        side = basics.output_size(side, 2, 2, "same")
        expected.append((side, side, filters))
    assert [s.expected_shape for s in e.stages[:6]] == expected == LECTURE_SHAPES[:6]
    assert all(s.expected_shape is None for s in e.stages[6:])


def test_probabilities_and_gradcam(sequential, digit):
    e = explain(sequential, digit[..., 0])  # (H, W) is taken as one channel
    np.testing.assert_allclose(e.probabilities, sequential.predict(digit[None], verbose=0)[0], atol=1e-5)
    assert e.predicted == int(np.argmax(e.probabilities))
    assert e.gradcam.shape == (28, 28) and 0.0 <= e.gradcam.min() and e.gradcam.max() <= 1.0


def test_subclass_has_the_same_stages_and_with_the_same_weights_the_same_activations(sequential, digit):
    sub = create_model("subclass")
    e = explain(sub, digit)
    assert [s.kind for s in e.stages] == LECTURE_KINDS and [s.shape for s in e.stages] == LECTURE_SHAPES
    ours, theirs = sub.get_weights(), sequential.get_weights()
    if [w.shape for w in ours] != [w.shape for w in theirs]:
        pytest.skip("the subclassed model's variables do not line up with the Sequential's")
    sub.set_weights(theirs)
    same = explain(sub, digit)
    for a, b in zip(same.stages, explain(sequential, digit).stages):
        np.testing.assert_allclose(a.activations, b.activations, atol=1e-5)


def test_best_member_two_and_a_member_out_of_range(digit):
    model = create_model("best", members=2)
    e = explain(model, digit, member=2)
    assert (e.member, e.members) == (2, 2)
    own = model.members[1].convs[0](digit[None], training=False)
    np.testing.assert_allclose(e.stages[0].activations, np.asarray(own)[0], atol=1e-5)
    np.testing.assert_allclose(e.probabilities, model.predict(digit[None], verbose=0)[0], atol=1e-5)
    with pytest.raises(ExplainError, match=r"`member` must be an integer from 1 to 2.*Received: member=3"):
        explain(model, digit, member=3)


def test_residual_member_and_own_rgb_images(digit):
    residual = create_model("best", member="residual", members=2)
    e = explain(residual, digit, member=2)
    assert "add" in [s.kind for s in e.stages]
    assert all(s.shape == s.expected_shape for s in e.stages if s.expected_shape is not None)
    assert e.gradcam.shape == (28, 28) and 0.0 <= e.gradcam.min() and e.gradcam.max() <= 1.0
    rgb = create_model("sequential", input_shape=(32, 32, 3), num_classes=4, image_size=(32, 32), rescale=1 / 255)
    picture = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype("float32")
    e = explain(rgb, picture)
    assert e.gradcam.shape == (32, 32) and 0.0 <= e.gradcam.min() and e.gradcam.max() <= 1.0
    np.testing.assert_allclose(e.probabilities, rgb.predict(picture[None], verbose=0)[0], atol=1e-5)


def every_neuron_matches(stage, places):
    for channel, row, col in places:
        n = neuron(stage, channel, row, col)
        assert n.steps[0][1] == pytest.approx(float((n.window * n.kernel).sum()) + n.bias, abs=1e-4)
        assert n.steps[-1][1] == pytest.approx(n.value, abs=1e-4), (stage.name, channel, row, col, n.steps)
    return n


def test_a_value_recomputed_as_window_times_kernel(sequential, digit):
    e = explain(sequential, digit)
    n = every_neuron_matches(e.stages[2], [(0, 0, 0), (5, 13, 13), (63, 7, 3)])  # the second conv: 32 inputs
    assert n.window.shape == n.kernel.shape == (3, 3, 32) and [s for s, _ in n.steps] == ["dot product + bias", "ReLU"]
    np.testing.assert_allclose(n.window, e.stages[1].activations[6:9, 2:5], atol=1e-6)  # the pool's output under it
    layer = {layer.name: layer for layer in sequential.layers}[e.stages[2].name]
    np.testing.assert_allclose(n.kernel, np.asarray(layer.kernel)[..., 63])
    # Batch norm in the step list, and stride 2 with SAME padding (residual member, its second stage).
    model = create_model("best", member="residual", members=1)
    model(digit[None], training=True)  # batch statistics move once, so the moving ones are not the identity
    e = explain(model, digit)
    strided = next(s for s in e.stages if s.kind == "conv" and s.text.startswith("conv 3x3/2"))
    assert strided.input.shape[0] == 2 * strided.shape[0]
    n = every_neuron_matches(strided, [(0, 0, 0), (3, 13, 13), (7, 6, 9)])
    assert [s for s, _ in n.steps] == ["dot product + bias", "batch norm", "ReLU"]
    assert n.origin == (12, 18)  # 28 -> 14 with a 3x3 kernel: SAME pads 0 before and 1 after
    with pytest.raises(ExplainError, match=r"`row` must be an integer from 0 to 13 .*Received: row=14"):
        neuron(strided, 0, 14, 0)
    with pytest.raises(ExplainError, match="must be a conv stage"):
        neuron(e.stages[-1], 0, 0, 0)


def conv_less():
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])


def test_a_model_without_conv_is_refused(digit):
    with pytest.raises(ExplainError, match="no convolution layer to show"):
        explain(conv_less(), digit)


def write_digit(path, digit):
    Image.fromarray(np.rint(digit[..., 0] * 255).astype(np.uint8)).save(path)
    return str(path)


def test_command_exits_2_on_a_model_without_conv(tmp_path, digit, capsys):
    from kerascnn.commands import results

    model_path = tmp_path / "flat.keras"
    conv_less().save(model_path)
    with pytest.raises(SystemExit) as exit_info:
        results.main(["explain", str(model_path), write_digit(tmp_path / "seven.png", digit)])
    assert exit_info.value.code == 2
    assert "no convolution layer to show" in capsys.readouterr().err


def test_command_writes_the_page(tmp_path, sequential, digit, capsys, monkeypatch):
    from kerascnn.commands import results

    model_path = tmp_path / "sequential.keras"
    sequential.save(model_path)
    picture = write_digit(tmp_path / "seven.png", digit)
    monkeypatch.chdir(tmp_path)
    assert results.main(["explain", str(model_path), picture]) == 0
    out = capsys.readouterr().out.strip()
    assert out == "explain-seven.png"
    with Image.open(tmp_path / out) as page:
        assert page.format == "PNG" and page.width > 0

    e = explain(sequential, digit)
    figure = explain_figure(e)
    head, *groups = figure.subfigs
    assert len(groups) == len(e.stages)
    assert [len(g.axes) for g in groups] == [16] * 6 + [1, 1, 1]
    assert groups[0].get_suptitle().endswith("conv 3x3/1 SAME, 32 filters, ReLU   28x28x32")


def test_command_leaves_an_existing_page_as_it_is(tmp_path, sequential, digit, capsys):
    """As `export`: a second explain to the same --out exits 2 naming the file, and the first page is untouched."""
    from kerascnn.commands import results

    model_path = tmp_path / "sequential.keras"
    sequential.save(model_path)
    picture, out = write_digit(tmp_path / "seven.png", digit), tmp_path / "page.png"
    out.write_bytes(b"an earlier page")
    with pytest.raises(SystemExit) as exit_info:
        results.main(["explain", str(model_path), picture, "--out", str(out)])
    assert exit_info.value.code == 2
    assert f"{out} already exists; it was left as it is" in capsys.readouterr().err
    assert out.read_bytes() == b"an earlier page"
