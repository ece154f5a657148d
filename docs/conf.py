"""Sphinx configuration of the assignflow documentation.

Build (offline, warnings as errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless gallery builds

import assignflow

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

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
    # intersphinx is enabled but has an empty mapping: no inventory is fetched,
    # so the build never touches the network (add entries for online builds).
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

intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
intersphinx_disabled_reftypes = ["*"]

# -- autodoc / autosummary -------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # numpydoc docstrings carry the types
autoclass_content = "class"


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
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True
numpydoc_validation_checks: set[str] = set()  # no validation: keep the build green

# -- MyST ------------------------------------------------------------------
myst_enable_extensions = ["dollarmath"]
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
