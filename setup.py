# All metadata lives in setup.cfg; this shim lets older pips install in editable mode.
from setuptools import setup

setup()
