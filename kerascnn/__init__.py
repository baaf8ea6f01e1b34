"""kerascnn: a Keras-native trainer for convolutional image classifiers.

The lecture series "CNN with MNIST" (lab 11) as a library: convolution
basics (`kerascnn.basics`), the lecture CNN written three ways, an ensemble
and the "best" recipe (`kerascnn.models`), trained with `fit()` and Keras
callbacks (`kerascnn.training`).

`import kerascnn` registers the package's layers and models with Keras, so
`keras.saving.load_model` can rebuild a saved `.keras` file; that imports
Keras (and its backend) once. The API in two lines:

>>> import kerascnn
>>> model = kerascnn.load_model("logs/best-20250101-120000")  # doctest: +SKIP
>>> model.predict(images).argmax(axis=1)  # doctest: +SKIP
>>> result = kerascnn.train(kerascnn.TrainConfig(model="sequential", epochs=1))  # doctest: +SKIP
"""

__version__ = "0.1.0"

from kerascnn import models  # noqa: E402  (registers the serializable layers and models with Keras)
from kerascnn.config import TrainConfig  # noqa: E402
from kerascnn.models import create_model, list_models  # noqa: E402
from kerascnn.training import RunResult, train  # noqa: E402


def load_model(path, compile=False):
    """Loads a trained model from a run directory or a `.keras` file, checked and in safe mode.

    Example:

    >>> import os, tempfile, kerascnn
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> kerascnn.create_model("sequential").save(path)
    >>> kerascnn.load_model(path).count_params()
    619786

    Args:
        path: str or path-like, a run directory (its `best.keras`) or a
            `.keras` file.
        compile: bool, restore the optimizer, loss and metrics (to
            `evaluate()`). Defaults to False.

    Returns:
        The `keras.Model`.

    Raises:
        kerascnn.loading.ModelFileError: missing, corrupt, or refused by
            safe mode; the message names the file.
    """
    from kerascnn.loading import load_model_file, resolve_model_path

    model_path, _ = resolve_model_path(path)
    return load_model_file(model_path, compile=compile)


__all__ = ["RunResult", "TrainConfig", "create_model", "list_models", "load_model", "train"]
