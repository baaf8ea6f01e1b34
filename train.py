"""Train a CNN on MNIST (or Fashion-MNIST) the lecture's way, with Keras.

    python train.py --model best                  # the recipe: 5 augmented BN CNNs
    python train.py --model sequential --epochs 1 --subset 5000   # a quick look
    tensorboard --logdir logs --host 127.0.0.1    # watch the curves

Each run writes logs/<model>-<timestamp>/ (config, TensorBoard events,
best.keras, history.csv, metrics.json); `python train.py --help` lists the
options.
"""

import sys

from kerascnn.cli import train_main


def main(argv=None):
    """Parses `argv` (default: sys.argv[1:]), trains, returns the exit status."""
    return train_main(argv)


if __name__ == "__main__":
    sys.exit(main())
