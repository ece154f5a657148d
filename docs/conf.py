"""Sphinx configuration of the assignflow documentation.

Build (offline, warnings as errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib
import sphinx.ext.autosummary

matplotlib.use("Agg")  # headless gallery builds

HERE = Path(__file__).resolve().parent
# the checkout's package (and docs/check_docstrings.py), not an installed copy
sys.path[:0] = [str(HERE.parent), str(HERE)]

from check_docstrings import CHECKS, unchecked_patterns  # noqa: E402

import assignflow  # noqa: E402

# keep the gallery small and deterministic on CI machines with 2 cores
os.environ.setdefault("ASSIGNFLOW_NUM_THREADS", "2")

# -- project ---------------------------------------------------------------
project = "assignflow"
author = "assignflow developers"
copyright = "assignflow developers"
release = assignflow.__version__
version = ".".join(release.split(".")[:2])

# -- general ---------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    # a local copy of MathJax 3 (copied into _static/mathjax and used as mathjax_path),
    # so formulas render without network access
    "sphinx-mathjax-offline",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "gallery/README.rst",  # consumed by sphinx-gallery, not a page of its own
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.json",
    "auto_examples/*.md5",
    "auto_examples/*.pickle",
]
# pages that an earlier local build generated for examples since renamed or removed
# (docs/auto_examples is not cleaned between builds; they would fail -W as orphans)
exclude_patterns += [
    f"auto_examples/{page.stem}.rst"
    for page in (HERE / "auto_examples").glob("plot_*.rst")
    if not (HERE / "gallery" / f"{page.stem}.py").exists()
]
nitpicky = False
default_role = "code"  # `x` in docstrings renders as inline code, never as a reference

# -- intersphinx: offline inventories -----------------------------------------
# The build never fetches an inventory: each mapping points at a file in
# docs/_inventories/, written by docs/_inventories/make_inventories.py from a table of
# the names these docs refer to (see that script to add one).
intersphinx_mapping = {
    key: (url, str(HERE / "_inventories" / f"{key}.inv"))
    for key, url in {
        "python": "https://docs.python.org/3/",
        "numpy": "https://numpy.org/doc/stable/",
        "scipy": "https://docs.scipy.org/doc/scipy/",
        "sklearn": "https://scikit-learn.org/stable/",
        "matplotlib": "https://matplotlib.org/stable/",
    }.items()
}
intersphinx_timeout = 1  # only local files are read; never wait on a network

# -- autodoc / autosummary -------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # numpydoc docstrings carry the types
autoclass_content = "class"

# autosummary's table shows a docstring's first sentence, cut at the first period
# followed by a space unless the text before it ends with one of these
# abbreviations; the paper's references ("eqs. 2.27-2.29", "Sect. 4.4", "Fig. 3")
# would otherwise cut summaries short.
sphinx.ext.autosummary.WELL_KNOWN_ABBREVIATIONS = (
    *sphinx.ext.autosummary.WELL_KNOWN_ABBREVIATIONS,
    *(f"{a}." for a in ("eq", "eqs", "Eq", "Eqs", "Sect", "Sects", "Fig", "Figs", "cf")),
    *(f"{a}." for a in ("Thm", "Prop", "Def", "Rem", "Remark", "resp", "approx", "no")),
)


def _skip_sklearn_request_methods(app, what, name, obj, skip, options):
    """Skip the ``set_*_request`` methods scikit-learn generates on estimators.

    Their docstrings reference scikit-learn's own glossary and labels, which do
    not exist in this project (and would fail the ``-W`` build).
    """
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_sklearn_request_methods)


# -- numpydoc --------------------------------------------------------------
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
# types in Parameters/Returns link to their documentation: only the names below
# (plus numpydoc's defaults for Python's builtins and numpy) become links
numpydoc_xref_param_type = True
numpydoc_xref_ignore = "all"
numpydoc_xref_aliases = {
    "LinearOperator": "scipy.sparse.linalg.LinearOperator",
    "Axes": "matplotlib.axes.Axes",
    "Figure": "matplotlib.figure.Figure",
    "Generator": "numpy.random.Generator",
    "mapping": ":term:`python:mapping`",
    # fully qualified names are linked only when listed here (as a role: an alias
    # equal to its name would stay plain text under numpydoc_xref_ignore = "all")
    **{
        name: f":obj:`{name}`"
        for name in (
            "numpy.random.Generator",
            "numpy.random.RandomState",
            "numpy.dtype",
            "scipy.sparse",
            "scipy.sparse.csr_array",
            "scipy.sparse.csr_matrix",
            "scipy.sparse.linalg.LinearOperator",
            "matplotlib.axes.Axes",
            "matplotlib.figure.Figure",
        )
    },
    # assignflow's own types, as the docstrings write them
    **{name: f"assignflow.{name}" for name in assignflow.__all__ if name[0].isupper()},
}
# numpydoc validation: the checks of docs/check_docstrings.py (CHECKS there) — every
# public object has a summary, Parameters matching its signature and a Returns section
# where it returns something — reported as warnings, so -W fails on a violation. The
# modules not yet clean (all but check_docstrings.CLEAN_MODULES) are exempt until
# their owners finish them; ASSIGNFLOW_DOCS_VALIDATE=all validates everything
# (`python docs/check_docstrings.py` lists the remaining violations).
numpydoc_validation_checks = set(CHECKS)
numpydoc_validation_exclude = {r"\.set_\w+_request$"}  # generated by scikit-learn
if os.environ.get("ASSIGNFLOW_DOCS_VALIDATE") != "all":
    numpydoc_validation_exclude |= unchecked_patterns()

# -- MyST ------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# -- sphinx-gallery --------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "plot_gallery": "True",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "write_computation_times": False,
    # "Examples using X" on the API pages (the minigallery in the autosummary
    # templates) and links from the examples' code to the API reference
    "doc_module": ("assignflow",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"assignflow": None},
}

# -- HTML ------------------------------------------------------------------
try:
    import pydata_sphinx_theme  # noqa: F401

    html_theme = "pydata_sphinx_theme"
    html_theme_options = {
        "navigation_with_keys": False,
        "show_toc_level": 2,
        "header_links_before_dropdown": 5,
        # nothing here is fetched at build time (no version switcher JSON,
        # no analytics, no external icon sets)
    }
except ImportError:  # pragma: no cover - fallback without the theme
    html_theme = "alabaster"
html_title = f"assignflow {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
