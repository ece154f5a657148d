"""Write the offline intersphinx inventories of the documentation.

The documentation links to numpy, scipy, scikit-learn, matplotlib and Python through
intersphinx, but its build never touches the network: ``docs/conf.py`` points
``intersphinx_mapping`` at the ``*.inv`` files in this folder, which this script
writes from the table :data:`INVENTORIES` below (Sphinx's inventory format version 2:
a four-line header and zlib-compressed lines ``name domain:role priority uri
dispname``).

The table holds only the names that assignflow's documentation refers to (docstring
types through ``numpydoc_xref_aliases``, explicit roles such as
``:class:`scipy.sparse.linalg.LinearOperator```, and names in the gallery code).
Each URI was checked against the project's published documentation. To link another
name, add a row, run ::

    python docs/_inventories/make_inventories.py

from the repository root and commit the changed ``.inv`` files;
``tests/test_docs.py`` fails while they are out of date.
"""

from __future__ import annotations

import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: project key -> (project name, version, base URL, rows of (name, domain:role, uri, dispname));
#: a uri ending in ``$`` stands for the uri followed by the name, dispname ``-`` for the name
INVENTORIES: dict[str, tuple[str, str, str, list[tuple[str, str, str, str]]]] = {
    "python": (
        "Python",
        "3",
        "https://docs.python.org/3/",
        [
            ("None", "py:data", "library/constants.html#$", "-"),
            ("True", "py:data", "library/constants.html#$", "-"),
            ("False", "py:data", "library/constants.html#$", "-"),
            ("bltin-boolean-values", "std:label", "library/stdtypes.html#$", "Boolean Type - bool"),
            ("callable", "py:function", "library/functions.html#$", "-"),
            ("object", "py:class", "library/functions.html#$", "-"),
            ("float", "py:class", "library/functions.html#$", "-"),
            ("int", "py:class", "library/functions.html#$", "-"),
            ("dict", "py:class", "library/stdtypes.html#$", "-"),
            ("list", "py:class", "library/stdtypes.html#$", "-"),
            ("str", "py:class", "library/stdtypes.html#$", "-"),
            ("tuple", "py:class", "library/stdtypes.html#$", "-"),
            ("iterable", "std:term", "glossary.html#term-iterable", "iterable"),
            ("sequence", "std:term", "glossary.html#term-sequence", "sequence"),
            ("mapping", "std:term", "glossary.html#term-mapping", "mapping"),
            ("generator", "std:term", "glossary.html#term-generator", "generator"),
            ("contextlib.contextmanager", "py:function", "library/contextlib.html#$", "-"),
            ("collections.namedtuple", "py:function", "library/collections.html#$", "-"),
            ("os.PathLike", "py:class", "library/os.html#$", "-"),
        ],
    ),
    "numpy": (
        "NumPy",
        "2",
        "https://numpy.org/doc/stable/",
        [
            ("numpy.ndarray", "py:class", "reference/generated/numpy.ndarray.html#$", "-"),
            ("numpy.dtype", "py:class", "reference/generated/numpy.dtype.html#$", "-"),
            ("numpy.memmap", "py:class", "reference/generated/numpy.memmap.html#$", "-"),
            ("numpy.load", "py:function", "reference/generated/numpy.load.html#$", "-"),
            ("numpy.random.Generator", "py:class", "reference/random/generator.html#$", "-"),
            ("numpy.random.default_rng", "py:function", "reference/random/generator.html#$", "-"),
            ("numpy.random.RandomState", "py:class", "reference/random/legacy.html#$", "-"),
            ("numpy.inf", "py:data", "reference/constants.html#$", "-"),
            ("numpy.nan", "py:data", "reference/constants.html#$", "-"),
            ("array_like", "std:term", "glossary.html#term-array_like", "array_like"),
            ("arrays.scalars", "std:label", "reference/arrays.scalars.html", "Scalars"),
        ],
    ),
    "scipy": (
        "SciPy",
        "1",
        "https://docs.scipy.org/doc/scipy/",
        [
            ("scipy.sparse", "py:module", "reference/sparse.html#module-scipy.sparse", "-"),
            ("scipy.sparse.csr_array", "py:class", "reference/generated/$.html#$", "-"),
            ("scipy.sparse.csr_matrix", "py:class", "reference/generated/$.html#$", "-"),
            ("scipy.sparse.linalg.LinearOperator", "py:class", "reference/generated/$.html#$", "-"),
            (
                "scipy.sparse.linalg.aslinearoperator",
                "py:function",
                "reference/generated/$.html#$",
                "-",
            ),
            (
                "scipy.sparse.linalg.expm_multiply",
                "py:function",
                "reference/generated/$.html#$",
                "-",
            ),
            ("scipy.linalg.expm", "py:function", "reference/generated/$.html#$", "-"),
            ("scipy.linalg.expm_frechet", "py:function", "reference/generated/$.html#$", "-"),
            ("scipy.spatial.distance.cdist", "py:function", "reference/generated/$.html#$", "-"),
        ],
    ),
    "sklearn": (
        "scikit-learn",
        "1",
        "https://scikit-learn.org/stable/",
        [
            ("sklearn.base.BaseEstimator", "py:class", "modules/generated/$.html#$", "-"),
            ("sklearn.base.ClassifierMixin", "py:class", "modules/generated/$.html#$", "-"),
            ("sklearn.cluster.KMeans", "py:class", "modules/generated/$.html#$", "-"),
            ("sklearn.neighbors.NearestNeighbors", "py:class", "modules/generated/$.html#$", "-"),
            (
                "sklearn.semi_supervised.LabelPropagation",
                "py:class",
                "modules/generated/$.html#$",
                "-",
            ),
            ("sklearn.utils.check_array", "py:function", "modules/generated/$.html#$", "-"),
            ("sklearn.utils.check_random_state", "py:function", "modules/generated/$.html#$", "-"),
            (
                "sklearn.utils.estimator_checks.parametrize_with_checks",
                "py:function",
                "modules/generated/$.html#$",
                "-",
            ),
            (
                "sklearn.exceptions.ConvergenceWarning",
                "py:class",
                "modules/generated/$.html#$",
                "-",
            ),
        ],
    ),
    "matplotlib": (
        "Matplotlib",
        "3",
        "https://matplotlib.org/stable/",
        [
            ("matplotlib.axes.Axes", "py:class", "api/_as_gen/$.html#$", "-"),
            ("matplotlib.figure.Figure", "py:class", "api/_as_gen/$.html#$", "-"),
        ],
    ),
}


def render(key: str) -> bytes:
    """Return the bytes of one inventory file.

    Parameters
    ----------
    key : str
        A key of :data:`INVENTORIES`.

    Returns
    -------
    bytes
        The file: the plain header followed by the zlib-compressed entries.
    """
    project, version, _, rows = INVENTORIES[key]
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    lines = []
    for name, role, uri, dispname in rows:
        # a "$" in the middle of a uri is this table's shorthand for the name; a final
        # "$" is kept (Sphinx itself expands it when it reads the inventory)
        body, final = (uri[:-1], "$") if uri.endswith("$") else (uri, "")
        lines.append(f"{name} {role} 1 {body.replace('$', name)}{final} {dispname}\n")
    return header.encode() + zlib.compress("".join(lines).encode(), 9)


def main() -> None:
    """Write every inventory of :data:`INVENTORIES` next to this script."""
    for key in INVENTORIES:
        path = HERE / f"{key}.inv"
        path.write_bytes(render(key))
        print(f"wrote {path.relative_to(HERE.parent.parent)} ({len(INVENTORIES[key][3])} names)")


if __name__ == "__main__":
    main()
