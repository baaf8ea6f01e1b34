"""Outputs and gradients of one compiled pass, on the TensorFlow or the JAX backend.

Keras 3 has no backend-neutral gradient, so this is the one place that asks
each backend for one: TensorFlow's `GradientTape` inside a `tf.function`, or
`jax.vjp` over the model's `stateless_call` inside `jax.jit`. Everything
else in `kerascnn.inspect` is backend-neutral and uses `compile_pass`.

Example:

>>> import keras, numpy as np
>>> inputs = keras.Input((2,))
>>> model = keras.Model(inputs, keras.layers.Dense(1, kernel_initializer="ones")(inputs))
>>> score = lambda out: [keras.ops.sum(out[0]), keras.ops.sum(out[0])]
>>> run = compile_pass(model, score, [INPUT, model.layers[1].kernel])
>>> outputs, grads = run(np.array([[3.0, 4.0]], "float32"))
>>> outputs[0].tolist(), grads[0].tolist(), grads[1].ravel().tolist()
([[7.0]], [[1.0, 1.0]], [3.0, 4.0])
"""

import keras
import numpy as np

from kerascnn.errors import UsageError

BACKENDS = ("tensorflow", "jax")
INPUT = "input"  # in `wrt`: the gradient for the model's input


class GradientError(UsageError, ValueError):
    """A gradient cannot be had: another backend, or a score that does not depend on what it is asked of."""


def compile_pass(model, scores, wrt):
    """One compiled call that returns a model's outputs and the gradients of some scalar scores.

    Args:
        model: `keras.Model` whose call returns a list of tensors.
        scores: callable, the model's outputs (a list of tensors) -> a list
            of scalar tensors, written with `keras.ops` so any backend traces it.
        wrt: list, one per score: `INPUT` for the gradient for the input, or
            a trainable `keras.Variable` of `model`.

    Returns:
        A callable: x (float32 array, a batch) -> (outputs, grads), numpy
        arrays: `outputs` as the model returns them (a list), `grads[i]` =
        d scores[i] / d wrt[i].

    Raises:
        GradientError: a backend other than TensorFlow or JAX, or a score that
            does not depend on `x` or a variable (its gradient would be None,
            never silently zero).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow_pass(model, scores, list(wrt))
    if backend == "jax":
        return _jax_pass(model, scores, list(wrt))
    raise GradientError(f"Looking inside a model needs the TensorFlow or JAX backend (KERAS_BACKEND), one of "
                        f"{BACKENDS}. Received: backend={backend!r}")


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _missing(model, what):
    return GradientError(f"The score of `{model.name}` does not depend on {what}, so its gradient there is "
                         "undefined: nothing would be drawn. Received: a graph with no path from it to the score")


def _tensorflow_pass(model, scores, wrt):
    import tensorflow as tf

    def run(x):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            outputs = _as_list(model(x, training=False))
            values = scores(outputs)
        grads = []
        for value, target in zip(values, wrt):
            grad = tape.gradient(value, x if target is INPUT else target.value)
            if grad is None:  # known when traced: a graph without that path
                raise _missing(model, "the input" if target is INPUT else target.path)
            grads.append(grad)
        return outputs, grads

    compiled = tf.function(run, reduce_retracing=True, autograph=False)  # traced again only for a new size

    def call(x):
        outputs, grads = compiled(tf.constant(np.asarray(x, np.float32)))
        return [o.numpy() for o in outputs], [g.numpy() for g in grads]

    return call


def _jax_pass(model, scores, wrt):
    import jax
    import jax.numpy as jnp

    trainable = model.trainable_variables
    places = {}  # a variable's id -> its place in `trainable`
    for target in wrt:
        if target is not INPUT:
            found = [i for i, v in enumerate(trainable) if v is target]
            if not found:
                raise GradientError(f"`wrt` must hold trainable variables of `{model.name}`. Received: {target.path}")
            places[id(target)] = found[0]
    chosen = sorted(set(places.values()))

    def run(x, trainable_values, non_trainable_values):
        def forward(x, values_chosen):
            values = list(trainable_values)
            for place, value in zip(chosen, values_chosen):
                values[place] = value
            outputs = _as_list(model.stateless_call(values, non_trainable_values, x, training=False)[0])
            return jnp.stack([jnp.asarray(v, jnp.float32) for v in scores(outputs)]), outputs

        value, pullback, outputs = jax.vjp(forward, x, [trainable_values[p] for p in chosen], has_aux=True)
        grads = []
        for i, target in enumerate(wrt):
            dx, dvalues = pullback(jnp.eye(value.shape[0], dtype=value.dtype)[i])
            grads.append(dx if target is INPUT else dvalues[chosen.index(places[id(target)])])
        return outputs, grads

    compiled = jax.jit(run)

    def call(x):
        outputs, grads = compiled(jnp.asarray(x, jnp.float32), [v.value for v in trainable],
                                  [v.value for v in model.non_trainable_variables])
        return [np.asarray(o) for o in outputs], [np.asarray(g) for g in grads]

    return call
