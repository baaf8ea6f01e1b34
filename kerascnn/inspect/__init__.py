"""The one way to look inside a model: its stages, their activations, Grad-CAM, saliency, one value's arithmetic.

Every kind of model the registry builds is read, freshly built or loaded
from a `.keras` file, on the TensorFlow and the JAX backend: Sequential,
Functional (residual too), a subclass with `layer_sequence`
(`kerascnn.models.LectureCNN`), an `Ensemble` of those (one member's
stages, the whole model's answer), and models trained on your own images.
`python -m kerascnn explain`, the page (`kerascnn.serve`) and the
TensorBoard pictures (`kerascnn.summaries`) all read models through here,
and nothing else reads a model's internals.

* `stages`: `trace` (a model's layer calls in order) and `describe` (which
  are stages);
* `gradients`: one compiled pass with gradients, per backend;
* `explainer`: `explain`, `Explainer`, `Answer` (members and saliency);
* `neuron`: one value of a conv stage as window . kernel + bias.
"""

from kerascnn.inspect.explainer import (
    Answer, Explainer, Explanation, GradientProbe, Stage, check_member, conv_weights, explain, gradcam, saliency,
)
from kerascnn.inspect.gradients import GradientError, compile_pass
from kerascnn.inspect.neuron import Neuron, neuron
from kerascnn.inspect.stages import InspectError, Step, describe, trace

__all__ = [
    "Answer", "Explainer", "Explanation", "GradientError", "GradientProbe", "InspectError", "Neuron", "Stage", "Step",
    "check_member", "compile_pass", "conv_weights", "describe", "explain", "gradcam", "neuron", "saliency", "trace",
]
