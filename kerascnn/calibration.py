"""Probabilities that mean what they say: one temperature, fitted on validation, and the scores that check it.

A network's softmax is not a probability until it is checked against how
often it is right. `best` trains with label smoothing 0.1, which keeps its
outputs below about 90% even on a clean digit; an unsmoothed single CNN is
the other way, too sure. Temperature scaling (Guo et al. 2017, "On
Calibration of Modern Neural Networks") fixes both with one number `T`:
the probabilities `p` become `softmax(log(p) / T)`. `T` is fitted after
training by minimising the negative log-likelihood (NLL) on the validation
split; for an ensemble, after averaging its members (Rahaman and Thiery
2020). Dividing every log-probability by one positive number keeps their
order, so the predicted class never changes.

The temperature is saved in the model: `Ensemble(temperature=...)` after
its average, and the `TemperatureSoftmax` head of a single network
(`kerascnn.layers.classifier_head`), so `predict`, `evaluate`, the page and
`kerascnn.load_model(...).predict` all give the calibrated numbers.

The scores (`calibration_scores`): the expected calibration error (ECE, 15
equal-width confidence bins: the gap between confidence and accuracy,
weighted by each bin's share of images), the NLL and the Brier score. With
30-40 errors in 10,000 test digits ECE is small and noisy, so the NLL and
Brier score stand beside it.

Example:

>>> import numpy as np
>>> p = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]])
>>> scale(p, 0.5).round(3).tolist()  # a temperature below 1 sharpens
[[0.988, 0.012], [0.941, 0.059], [0.692, 0.308]]
>>> fit_temperature(p, np.array([0, 0, 0])) < 0.1  # always right: as sure as allowed
True
"""

import math

import numpy as np

BINS = 15  # Guo et al.'s ECE bins
T_RANGE = (0.05, 20.0)  # the search's bounds; a fit at a bound is reported as it is
EPSILON = 1e-12  # floor for log(0)


def scale(probabilities, temperature):
    """`softmax(log(p) / temperature)` row by row, float64: the probabilities at another temperature."""
    logp = np.log(np.clip(np.asarray(probabilities, np.float64), EPSILON, None)) / float(temperature)
    logp -= logp.max(axis=-1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=-1, keepdims=True)


def nll(probabilities, labels):
    """Mean negative log-likelihood of the true class (the unsmoothed cross-entropy)."""
    picked = np.asarray(probabilities, np.float64)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.mean(np.log(np.clip(picked, EPSILON, None))))


def fit_temperature(probabilities, labels, bounds=T_RANGE, steps=80):
    """The temperature minimising the NLL of `probabilities` (N, C) against `labels` (N,).

    A golden-section search over log T within `bounds` (the NLL is
    unimodal in log T); 80 steps pin T to about 1e-15 of its log-range.
    """
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5) - 1) / 2

    def loss(log_t):
        return nll(scale(probabilities, math.exp(log_t)), labels)

    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(steps):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return float(math.exp((lo + hi) / 2))


def expected_calibration_error(probabilities, labels, bins=BINS):
    """ECE: sum over equal-width confidence bins of |accuracy - confidence| x the bin's share of images."""
    probabilities = np.asarray(probabilities, np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def brier(probabilities, labels):
    """Mean over images of the squared distance between the probabilities and the one-hot label."""
    probabilities = np.asarray(probabilities, np.float64)
    onehot = np.eye(probabilities.shape[1])[np.asarray(labels)]
    return float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


def calibration_scores(probabilities, labels):
    """{"ece", "nll", "brier", "mean_confidence"} of `probabilities` against `labels`, as floats."""
    return {
        "ece": expected_calibration_error(probabilities, labels),
        "nll": nll(probabilities, labels),
        "brier": brier(probabilities, labels),
        "mean_confidence": float(np.asarray(probabilities).max(axis=1).mean()),
    }


def without_and_with(probabilities, labels, temperature):
    """(`calibration_scores` with the temperature undone, as they are) of a calibrated model's `probabilities`.

    `softmax(log(p) / T)` is undone by the inverse temperature: p ** T, renormalised, so one pass of
    predictions gives both (`evaluate`, and the test scores in metrics.json).
    """
    return (calibration_scores(scale(probabilities, 1.0 / temperature), labels),
            calibration_scores(probabilities, labels))


def answer(model, member_probabilities):
    """`model`'s probabilities from its members' (members, ..., classes): their mean at the model's temperature.

    What `Ensemble.call` returns, for code that has the members' outputs
    already (the page, `kerascnn.inspect.Explainer`). A single network counts
    as its own one member, whose softmax head applied its temperature already.
    """
    from kerascnn.models.ensemble import Ensemble

    average = np.asarray(member_probabilities, np.float32).mean(axis=0)
    if not isinstance(model, Ensemble) or model.temperature == 1.0:
        return average
    return scale(average, model.temperature).astype(np.float32)


def temperature_of(model):
    """The temperature saved in `model` (1.0 when it has none: files saved before calibration, or foreign models)."""
    holder = _holder(model)
    return 1.0 if holder is None else float(holder.temperature)


def set_temperature(model, temperature):
    """Puts `temperature` in `model` (the ensemble's average or the single network's softmax head).

    Returns whether the model can hold one: a model with neither (a file
    saved before calibration, another project's model) is left as it is.
    The model's compiled predict and test steps are traced again, as they
    read the temperature when traced.
    """
    check = temperature > 0 and math.isfinite(temperature)
    if not check:
        raise ValueError(f"`temperature` must be a finite number > 0. Received: temperature={temperature!r}")
    holder = _holder(model)
    if holder is None:
        return False
    holder.temperature = float(temperature)
    model.make_predict_function(force=True)
    if model.compiled:
        model.make_test_function(force=True)
    return True


def _holder(model):
    """What carries `model`'s temperature: an `Ensemble` itself, else its last `TemperatureSoftmax`, or None."""
    from kerascnn import compat
    from kerascnn.layers.blocks import TemperatureSoftmax
    from kerascnn.models.ensemble import Ensemble

    if isinstance(model, Ensemble):
        return model
    heads = [layer for layer in compat.flatten_layers(model) if isinstance(layer, TemperatureSoftmax)]
    return heads[-1] if heads else None
