"""The explain page: the input, Grad-CAM, the probabilities and every stage's feature maps on one figure.

What is drawn is read by `kerascnn.inspect` (the one way to look inside a
model); this module draws it, and `python -m kerascnn explain MODEL IMAGE`
saves it. The names of `kerascnn.inspect` that the explain command's users
call are here too, so `kerascnn.explain.explain(model, image)` keeps working.

Example:

>>> import numpy as np
>>> from kerascnn.models import create_model
>>> figure = explain_figure(explain(create_model("sequential"), np.zeros((28, 28), "float32")))
>>> len(figure.subfigs)
10
"""

import numpy as np

from kerascnn.figures import MAPS_PER_STAGE
from kerascnn.inspect import Explainer, Explanation, InspectError, Neuron, Stage, explain, neuron

ExplainError = InspectError  # the name this module's users know

__all__ = ["MAPS_PER_STAGE", "ExplainError", "Explainer", "Explanation", "Neuron", "Stage", "explain",
           "explain_figure", "neuron"]


def explain_figure(explanation):
    """One page: the input, Grad-CAM over it, the probabilities, then each stage's feature maps.

    The page is a `matplotlib.figure.Figure` (not known to pyplot, as in
    `kerascnn.figures`) made of subfigures: the first holds the input, the
    Grad-CAM overlay and the probability bars; then one per stage, titled
    with its `text` and shape (`28x28x32`), holding the first
    `MAPS_PER_STAGE` channels as small heat maps (a dense or softmax
    stage's vector is one heat map). Render it with `kerascnn.figures.render`.

    Args:
        explanation: an `Explanation`.

    Returns:
        `matplotlib.figure.Figure`.
    """
    from kerascnn.figures import DPI, GREY, new_figure

    columns = MAPS_PER_STAGE // 2
    heights = [2.6] + [1.6 if s.activations.ndim == 3 and s.shape[-1] > columns else 1.1 for s in explanation.stages]
    figure = new_figure(columns * 110, int(sum(heights) * DPI))
    head, *groups = figure.subfigures(len(heights), 1, height_ratios=heights)

    picture = explanation.image if explanation.image.shape[-1] in (3, 4) else explanation.image[..., 0]
    shown = picture / max(float(picture.max()), 1.0) if picture.ndim == 3 else picture  # RGB drawn in [0, 1]
    ax_in, ax_cam, ax_p = head.subplots(1, 3)
    ax_in.imshow(shown, cmap="gray")
    ax_in.set_title("input", fontsize=9)
    ax_cam.imshow(shown, cmap="gray")
    ax_cam.imshow(explanation.gradcam, cmap="jet", alpha=0.5, vmin=0, vmax=1)
    whose = f", member {explanation.member} of {explanation.members}" if explanation.members > 1 else ""
    ax_cam.set_title(f"Grad-CAM, class {explanation.predicted}{whose}", fontsize=9)
    for ax in (ax_in, ax_cam):
        ax.set_axis_off()
    classes = np.arange(len(explanation.probabilities))
    ax_p.bar(classes, explanation.probabilities, color=GREY)
    ax_p.bar([explanation.predicted], [explanation.probabilities[explanation.predicted]], color="#1f60b4")
    ax_p.set_xticks(classes)
    ax_p.set_ylim(0, 1)
    ax_p.set_title("probabilities", fontsize=9)
    ax_p.tick_params(labelsize=7)

    for stage, group in zip(explanation.stages, groups):
        group.suptitle(f"{stage.name}: {stage.text}   {'x'.join(str(d) for d in stage.shape)}", fontsize=9)
        if stage.activations.ndim == 3:
            maps = [stage.activations[..., c] for c in range(min(MAPS_PER_STAGE, stage.shape[-1]))]
        else:  # a vector: one heat map, as rows of up to 32 values
            vector = stage.activations.reshape(-1)
            width = min(32, len(vector))
            maps = [np.pad(vector, (0, -len(vector) % width)).reshape(-1, width)]
        rows = 1 if len(maps) <= columns else 2
        for k, heat in enumerate(maps):
            ax = group.add_subplot(rows, columns if len(maps) > 1 else 1, k + 1)
            ax.imshow(heat, cmap="viridis", interpolation="nearest")
            ax.set_axis_off()
    return figure
