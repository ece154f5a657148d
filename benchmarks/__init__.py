"""Benchmark and figure scripts (not part of the installed package).

A package only so that the documentation gallery can import the paper's figure
functions (``from benchmarks.figures import make_fig1``) with the repository root
on ``sys.path``; every script still runs as ``python benchmarks/<script>.py``.
"""
