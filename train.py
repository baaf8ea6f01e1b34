"""Train a CNN on MNIST (or Fashion-MNIST) the lecture's way, with Keras.

    python train.py --model best                  # the recipe: 2 augmented BN CNNs, 28 epochs
    kerascnn train --model best                   # the same, as an installed command
    python train.py --model sequential --epochs 1 --subset 5000   # a quick look
    tensorboard --logdir logs --host 127.0.0.1    # watch the curves

Each run writes logs/<model>-<timestamp>/ (config, TensorBoard events,
best.keras, history.csv, metrics.json); `python train.py --help` lists the
options. The command lives in `kerascnn.commands.train`.
"""

import sys

from kerascnn.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
