"""Temperature scaling: fitted on validation, saved in the model, argmax kept; the calibration scores."""

import json

import keras
import numpy as np
import pytest

from kerascnn import calibration
from kerascnn.models import create_model


def overconfident(seed=0, n=4000, classes=10):
    """Probabilities from logits 3x too large for labels drawn from the true softmax: the best temperature is 3."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, classes))
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in true])
    sharp = np.exp(3 * logits)
    return sharp / sharp.sum(1, keepdims=True), labels


def test_fitted_temperature_recovers_the_true_one_and_keeps_every_argmax():
    probs, labels = overconfident()
    t = calibration.fit_temperature(probs, labels)
    assert 2.6 < t < 3.4
    scaled = calibration.scale(probs, t)
    np.testing.assert_array_equal(scaled.argmax(1), probs.argmax(1))
    before, after = calibration.calibration_scores(probs, labels), calibration.calibration_scores(scaled, labels)
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"] / 3 and after["brier"] < before["brier"]


def test_ece_of_hand_made_bins():
    # Two images at confidence 0.9 (one right), two at 0.6 (both right): |0.5-0.9|/2 + |1.0-0.6|/2 = 0.4.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    assert calibration.expected_calibration_error(probs, np.array([0, 1, 0, 0])) == pytest.approx(0.4)
    assert calibration.brier(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(2.0)


@pytest.mark.parametrize("name", ["sequential", "functional", "subclass", "best"])
def test_temperature_is_saved_in_the_model_and_changes_probabilities_not_classes(name, tmp_path):
    model = create_model(name, **({"members": 2, "filters": 4, "dense_units": 8} if name == "best" else {}))
    x = np.random.default_rng(1).uniform(size=(16, 28, 28, 1)).astype("float32")
    plain = model.predict(x, verbose=0)
    assert calibration.temperature_of(model) == 1.0
    assert calibration.set_temperature(model, 0.25)
    sharp = model.predict(x, verbose=0)  # the compiled predict step is traced again
    np.testing.assert_array_equal(sharp.argmax(1), plain.argmax(1))
    np.testing.assert_allclose(sharp, calibration.scale(plain, 0.25), atol=2e-4)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert calibration.temperature_of(loaded) == 0.25
    np.testing.assert_allclose(loaded.predict(x, verbose=0), sharp, atol=1e-5)
    # The page and the explainer combine members' outputs themselves: the same answer as the model's.
    from kerascnn.models.ensemble import MemberPredictor

    members = MemberPredictor(loaded)(x)
    np.testing.assert_allclose(calibration.answer(loaded, members), sharp, atol=2e-4)


def test_a_model_without_a_temperature_is_left_alone():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    assert calibration.set_temperature(model, 2.0) is False
    assert calibration.temperature_of(model) == 1.0
    with pytest.raises(ValueError, match="`temperature` must be a finite number > 0. Received: temperature=0"):
        calibration.set_temperature(model, 0)
