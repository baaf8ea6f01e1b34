"""kerascnn: a Keras-native trainer for convolutional image classifiers.

The lecture series "CNN with MNIST" (lab 11) as a library: convolution
basics (`kerascnn.basics`), the lecture CNN written three ways, an ensemble
and the "best" recipe (`kerascnn.models`), trained with `fit()` and Keras
callbacks (`kerascnn.training`).
"""

__version__ = "0.1.0"
