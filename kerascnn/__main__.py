"""`python -m kerascnn`: train, tune, evaluate, predict, explain, export or serve (`kerascnn.commands.results`)."""

import sys

from kerascnn.commands.results import main

if __name__ == "__main__":
    sys.exit(main())
