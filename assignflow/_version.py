"""The version of assignflow: the one place it is written.

setuptools reads it for the package metadata (``[tool.setuptools.dynamic]`` in
``pyproject.toml``); ``af.__version__``, ``assignflow --version``, model files, the
documentation's ``release`` and ``CITATION.cff`` (checked by ``tests/test_docs.py``)
all agree with it.
"""

__version__ = "0.1.0"
