"""Every registered model: builds, predicts probabilities, round-trips through .keras."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerascnn.layers import augmentation, shift_images
from kerascnn.models import Ensemble, ModelError, create_model, list_models, register_model
from kerascnn.models.ensemble import MemberPredictor
from kerascnn.loading import load_model_file
from kerascnn.assemble import compile_model
from kerascnn.config import TrainConfig


def test_registry_lists_the_lecture_models():
    assert list_models() == ["best", "ensemble", "functional", "sequential", "subclass"]


def test_the_static_model_names_are_the_ones_their_modules_register():
    """`--help` lists `BUILTIN_MODELS` without importing Keras; importing the modules must register exactly those."""
    from kerascnn.models import registry

    registry.load_builtin_models()
    registered = {name: builder.__module__ for name, builder in registry._REGISTRY.items()
                  if builder.__module__.startswith("kerascnn.models.")}
    assert registered == registry.BUILTIN_MODELS


def test_registry_errors_name_the_choices():
    with pytest.raises(ModelError, match=r"Unknown model 'resnet'; expected one of \['best', 'ensemble'"):
        create_model("resnet")
    with pytest.raises(ModelError, match=r"'sequential' does not take \['members'\]; it takes \["):
        create_model("sequential", members=3)
    with pytest.raises(ModelError, match="already registered"):
        register_model("best")(lambda: None)


@pytest.mark.parametrize("name", ["sequential", "functional", "subclass"])
def test_lecture_cnn_has_619786_parameters_and_feature_map_sizes(name):
    model = create_model(name)
    assert model.count_params() == 619786
    pools = [l for l in model._flatten_layers() if isinstance(l, keras.layers.MaxPool2D)]
    shape = (None, 28, 28, 1)
    sizes = []
    for stage, layer in enumerate(pools):
        shape = layer.compute_output_shape((None, shape[1], shape[2], 32 * 2**stage))
        sizes.append(shape[1])
    assert sizes == [14, 7, 4]


@pytest.mark.parametrize("name", list_models())
def test_round_trip_through_keras_file(name, test_batch, tmp_path):
    x = test_batch[0][:64]
    model = compile_model(create_model(name), TrainConfig())
    before = model.predict(x, verbose=0)
    assert before.shape == (64, 10) and before.dtype == np.float32
    np.testing.assert_allclose(before.sum(axis=1), 1.0, rtol=1e-5)
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = load_model_file(path)
    assert type(loaded) is type(model) and loaded.count_params() == model.count_params()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), before)


def test_functional_residual_option_adds_skip_connections(test_batch):
    model = create_model("functional", residual=True)
    assert len([l for l in model.layers if isinstance(l, keras.layers.Add)]) == 3
    assert model.predict(test_batch[0][:4], verbose=0).shape == (4, 10)


def test_ensemble_output_is_the_mean_of_member_softmax(test_batch):
    x = test_batch[0][:32]
    model = create_model("ensemble", members=3)
    members = np.stack([m.predict(x, verbose=0) for m in model.members])
    np.testing.assert_allclose(model.predict(x, verbose=0), members.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(members[0], members[1])  # members are distinct models


def test_each_member_learns_from_its_own_loss(test_batch):
    """The training loss's gradient for a member is that member's own loss gradient / members."""
    x, y = test_batch[0][:16], test_batch[1][:16]
    model = compile_model(create_model("ensemble", members=2, dropout=0.0), TrainConfig())
    ce = keras.losses.SparseCategoricalCrossentropy()
    member = model.members[0]
    with tf.GradientTape(persistent=True) as tape:
        loss = model.compute_loss(x, y, model(x, training=True), training=True)
        alone = ce(y, member(x, training=True))
    got = tape.gradient(loss, member.trainable_variables)
    want = tape.gradient(alone, member.trainable_variables)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy() / 2, rtol=1e-4, atol=1e-7)
    # Evaluation scores the ensemble's own (averaged) prediction.
    avg = model(x, training=False)
    np.testing.assert_allclose(model.compute_loss(x, y, avg, training=False), ce(y, avg), rtol=1e-6)


class CountingMember(keras.Model):
    """A small classifier that counts its calls in training mode."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.flatten = keras.layers.Flatten()
        self.dense = keras.layers.Dense(10, activation="softmax")
        self.training_calls = 0

    def call(self, inputs, training=None):
        if training:
            self.training_calls += 1
        return self.dense(self.flatten(inputs))


def test_a_training_step_runs_each_member_once_and_its_loss_is_the_mean_of_the_members(test_batch):
    x, y = test_batch[0][:60], test_batch[1][:60]
    members = [CountingMember(name=f"member_{i}") for i in range(3)]
    for member in members:
        member(x[:1])  # built by a call in inference mode, not counted
    model = Ensemble(members)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], run_eagerly=True)  # eager: Python runs every step, so calls are counted
    history = model.fit(x, y, batch_size=20, epochs=1, verbose=0, shuffle=False)  # 3 steps; SGD(0): weights stay
    assert [m.training_calls for m in members] == [3, 3, 3]  # one forward pass per member per step
    probabilities = [m.predict(x, verbose=0) for m in members]
    ce = lambda p: float(np.mean(-np.log(p[np.arange(len(y)), y])))
    assert history.history["loss"][0] == pytest.approx(np.mean([ce(p) for p in probabilities]), rel=1e-5)
    # The training accuracy scores the ensemble's averaged prediction, as evaluation does.
    accuracy = (np.mean(probabilities, axis=0).argmax(axis=1) == y).mean()
    assert history.history["accuracy"][0] == pytest.approx(accuracy)
    assert model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] == pytest.approx(accuracy)


def test_tta_averages_shifted_copies_at_inference_and_is_off_in_training(test_batch):
    x = test_batch[0][:32]
    members = [keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                 keras.layers.Dense(10, activation="softmax")]) for _ in range(2)]
    plain, tta = Ensemble(members), Ensemble(members, tta=2)

    def mean_over(views):
        return np.mean([m.predict(keras.ops.convert_to_numpy(shift_images(x, dy, dx)), verbose=0)
                        for dy, dx in views for m in members], axis=0)

    want = mean_over([(0, 0), (2, 0), (-2, 0), (0, 2), (0, -2)])
    np.testing.assert_allclose(tta.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    assert np.abs(want - plain.predict(x, verbose=0)).max() > 1e-3  # the shifts change the prediction
    # Training: the members on the unshifted images, exactly as without TTA, each member's output for its loss.
    trained = np.stack([keras.ops.convert_to_numpy(out) for out in tta(x, training=True)])
    assert trained.shape == (2, 32, 10)  # one output a member
    for out, m in zip(trained, members):
        np.testing.assert_allclose(out, m.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(trained.mean(axis=0), mean_over([(0, 0)]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(trained, np.stack(plain(x, training=True)), rtol=1e-6)
    # Each member's output over the same views, as `serve` and the sweep read members, averages to the model's.
    np.testing.assert_allclose(MemberPredictor(tta)(x).mean(axis=0), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(MemberPredictor(tta, tta=0)(x).mean(axis=0), plain.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)


def test_tta_is_saved_with_the_model_and_refused_where_it_has_no_meaning(test_batch, tmp_path):
    model = create_model("best", **TrainConfig(model="best", members=2, tta=1).model_kwargs())  # as train.py builds it
    path = str(tmp_path / "tta.keras")
    model.save(path)
    loaded = load_model_file(path)
    assert loaded.tta == 1
    np.testing.assert_array_equal(loaded.predict(test_batch[0][:8], verbose=0), model.predict(test_batch[0][:8], verbose=0))
    with pytest.raises(ModelError, match=r"Model 'sequential' does not take \['tta'\]"):
        create_model("sequential", tta=1)
    # Refused when the model is built (before any run directory), not at the first validation.
    with pytest.raises(ModelError, match=r"`tta` must be less than the image's side \(28x28\). Received: tta=28"):
        create_model("best", members=1, tta=28)
    with pytest.raises(ValueError, match=r"`tta` must be an integer number of pixels >= 0. Received: tta=-1"):
        TrainConfig(model="best", tta=-1)


def test_ensemble_needs_members():
    with pytest.raises(ValueError, match="`members` must be a non-empty list"):
        Ensemble([])


def test_augmentation_changes_inputs_in_training_only(test_batch):
    x = test_batch[0][:32]
    layers = augmentation(15, 2)
    train, infer = x, x
    for layer in layers:
        train = layer(train, training=True)
        infer = layer(infer, training=False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(infer), x)
    changed = np.abs(keras.ops.convert_to_numpy(train) - x).reshape(32, -1).max(axis=1) > 0.1
    assert changed.mean() > 0.8
    # Ink is moved, not created: total brightness stays roughly the same.
    assert abs(float(keras.ops.sum(train)) / float(x.sum()) - 1) < 0.1


def test_best_model_is_deterministic_at_inference_and_random_in_training(test_batch):
    x = test_batch[0][:16]
    model = create_model("best", members=2)
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    assert not np.allclose(model(x, training=True), model(x, training=True))


def test_subclass_passes_training_to_dropout(test_batch):
    x = test_batch[0][:16]
    model = create_model("subclass", dropout=0.5)
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    assert not np.allclose(model(x, training=True), model(x, training=True))


def _small(name):
    return {"members": 2} if name in ("best", "ensemble") else {}


@pytest.mark.parametrize("name", list_models())
def test_any_input_shape_and_class_count_with_raw_pixels_inside(name, tmp_path):
    """Shape and classes are builder arguments; Resizing and Rescaling inside take raw pixels of any size."""
    from kerascnn.layers import model_input_shape, takes_raw_pixels

    model = create_model(
        name, input_shape=(32, 32, 3), num_classes=4, image_size=(24, 24), rescale=1 / 255, **_small(name)
    )
    assert takes_raw_pixels(model) and not takes_raw_pixels(create_model("sequential"))
    assert model_input_shape(model) == (None, None, 3)
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (3, 40, 50, 3)).astype("float32")
    out = model.predict(raw, verbose=0)
    assert out.shape == (3, 4)
    # The model's own Resizing, then [0, 1]: the same as feeding it pixels already resized.
    resized = keras.ops.convert_to_numpy(keras.layers.Resizing(24, 24)(raw))
    np.testing.assert_allclose(model.predict(resized, verbose=0), out, rtol=1e-4, atol=1e-5)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = load_model_file(path)
    np.testing.assert_allclose(loaded.predict(raw, verbose=0), out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 4, 1), (28, 3, 1)])
def test_a_shape_too_small_for_three_pooling_stages_is_refused(shape):
    with pytest.raises(ModelError, match=r"too small for 3 pooling stages: the feature maps would be .*Received: "
                                          r"input_shape=\(" + str(shape[0])):
        create_model("sequential", input_shape=shape)
    assert create_model("sequential", input_shape=(5, 5, 1)).output_shape == (None, 10)


def test_the_strided_member_needs_13_pixels():
    with pytest.raises(ModelError, match=r"smallest side must be at least 13. Received: image_size=\(12, 12\)"):
        create_model("best", member="strided", members=1, input_shape=(12, 12, 1))
    model = create_model("best", member="strided", members=1, input_shape=(13, 13, 1), num_classes=3)
    assert model.predict(np.zeros((1, 13, 13, 1), "float32"), verbose=0).shape == (1, 3)


def test_the_residual_member_keeps_its_width_through_three_stages_and_learns(mnist, tmp_path):
    """32-64-128 channels at 28, 14 and 7 pixels, a skip connection per stage, no dense layer; 24 steps halve its loss."""
    model = create_model("best", member="residual", members=2, rotation=0.0, shift=0.0)
    member = model.members[0]
    adds = [layer for layer in member.layers if isinstance(layer, keras.layers.Add)]
    assert [tuple(layer.output.shape[1:]) for layer in adds] == [(28, 28, 32), (14, 14, 64), (7, 7, 128)]
    assert not any(isinstance(layer, (keras.layers.Dropout, keras.layers.Flatten)) for layer in member.layers)
    assert member.count_params() == 483498 and model.count_params() == 2 * 483498

    x = mnist.x_train[:512].astype("float32")[..., None] / 255.0
    y = mnist.y_train[:512]
    model = compile_model(create_model("best", member="residual", members=1, rotation=0.0, shift=0.0),
                          TrainConfig(model="best"))
    losses = model.fit(x, y, batch_size=64, epochs=3, verbose=0).history["loss"]
    assert losses[-1] < 0.5 * losses[0]

    path = str(tmp_path / "residual.keras")
    model.save(path)
    np.testing.assert_array_equal(load_model_file(path).predict(x[:32], verbose=0), model.predict(x[:32], verbose=0))


def test_the_member_names_are_one_list():
    from kerascnn.config import MEMBERS

    for member in MEMBERS:
        model = create_model("best", member=member, members=1)
        assert tuple(model(np.zeros((2, 28, 28, 1), "float32"), training=False).shape) == (2, 10)
    with pytest.raises(ModelError, match=r"`member` must be one of \['lecture', 'strided', 'residual'\]. "
                                          r"Received: member='wide'"):
        create_model("best", member="wide", members=1)


def test_builders_take_keywords_only():
    """Every argument of a builder is named where it is called: `LectureCNN(32, 3, 256, ...)` needed the signature
    beside it to be read."""
    import inspect

    from kerascnn.models import best, ensemble, lecture

    for fn in (lecture.sequential, lecture.functional, lecture.subclass, ensemble.ensemble, lecture.LectureCNN,
               best.best, best.strided_cnn, best.residual_cnn):
        kinds = {p.kind for name, p in inspect.signature(fn).parameters.items() if name != "kwargs"}
        assert kinds == {inspect.Parameter.KEYWORD_ONLY}, fn.__name__
    assert [p.kind for p in inspect.signature(lecture.front).parameters.values()][:2] == [
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY]
    with pytest.raises(TypeError, match="positional"):
        lecture.LectureCNN(32)
