"""`python -m kerascnn`: evaluate, predict, export or serve a trained model (`kerascnn.commands.results`)."""

import sys

from kerascnn.commands.results import main

if __name__ == "__main__":
    sys.exit(main())
