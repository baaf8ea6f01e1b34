"""Search the `best` CNN's hyperparameters with keras-tuner, on one machine or many.

    python tune.py                                    # Hyperband: 30 trials of up to 10 epochs
    python tune.py --tuner random --max-trials 10 --subset 10000    # a quicker look
    python train.py --hparams logs/tune/mnist-best/best_hparams.json        # the final model
    kerascnn tune ...                                 # the same, as an installed command

`python tune.py --help` lists the options. The command lives in `kerascnn.commands.tune`.
"""

import sys

from kerascnn.commands.tune import main

if __name__ == "__main__":
    sys.exit(main())
