"""Shoal's compiled modules; setuptools reads everything else from pyproject.toml.

Each extension is optional: when it cannot be built (no C compiler, no Python headers) the
install still succeeds and Shoal runs on its pure-Python engine, which stays the reference.
"""

from setuptools import Extension, setup

EXTENSIONS: list[Extension] = []

setup(ext_modules=EXTENSIONS)
