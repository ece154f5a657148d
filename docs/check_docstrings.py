"""Check the docstrings of assignflow's public API with ``numpydoc.validate``.

Run from the repository root::

    python docs/check_docstrings.py            # violations per object, summary per module
    python docs/check_docstrings.py --summary  # the summary per module only

It exits with status 1 if any public object violates one of :data:`CHECKS`. The same
set is the documentation build's ``numpydoc_validation_checks`` (``docs/conf.py``
imports it from here), and ``tests/test_docs.py`` runs this check for the modules in
:data:`CLEAN_MODULES`.

The public API is every name in ``assignflow.__all__``, ``assignflow.datasets``,
``assignflow.registry`` and ``assignflow.plotting``, and the public methods and
properties that assignflow's classes define themselves (inherited scikit-learn
methods are scikit-learn's business).
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

# the checkout's package, not an installed copy, when run as a script from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: numpydoc checks required of every public object (codes of ``numpydoc.validate``):
#: a docstring with a one-line-or-more summary ending with a period, no unknown
#: sections, Parameters that match the signature (names, order, a type and a
#: description each), a Returns section where something is returned and a Yields
#: section for generators.
CHECKS: frozenset[str] = frozenset(
    {
        "GL06",  # unknown section
        "GL08",  # no docstring
        "SS01",  # no summary
        "SS03",  # summary does not end with a period
        "PR01",  # parameters not documented
        "PR02",  # unknown (documented but absent) parameters
        "PR03",  # parameters in the wrong order
        "PR04",  # parameter without a type
        "PR07",  # parameter without a description
        "PR10",  # missing space before the colon
        "RT01",  # no Returns section
        "YD01",  # no Yields section
    }
)

#: modules whose public objects pass every check; the test keeps them clean
CLEAN_MODULES: tuple[str, ...] = (
    "assignflow._parallel",
    "assignflow.classifier",
    "assignflow.datasets",
    "assignflow.estimators",
    "assignflow.features",
    "assignflow.flows",
    "assignflow.geometry",
    "assignflow.gradients",
    "assignflow.graphs",
    "assignflow.integrators",
    "assignflow.labeling",
    "assignflow.learning",
    "assignflow.losses",
    "assignflow.persistence",
    "assignflow.plotting",
    "assignflow.predictors",
    "assignflow.registry",
    "assignflow.similarity",
    "assignflow.weights",
)

_SUBMODULES = ("datasets", "registry", "plotting")


def unchecked_patterns() -> set[str]:
    """Return the documented names that the build does not validate yet.

    The public objects (and their members) defined in modules outside
    :data:`CLEAN_MODULES`, as regular expressions on the names the API reference
    documents them under (``assignflow.Name``, ``assignflow.registry.Name``); the
    documentation build passes them to ``numpydoc_validation_exclude``.

    Returns
    -------
    set of str
        One pattern per public object of a module that is not clean yet.
    """
    import assignflow

    patterns = set()
    sources = [(assignflow, "", assignflow.__all__)]
    sources += [
        (getattr(assignflow, m), f"{m}.", getattr(getattr(assignflow, m), "__all__", []))
        for m in _SUBMODULES
    ]
    for mod, prefix, names in sources:
        for name in names:
            obj = getattr(mod, name, None)
            module = getattr(obj, "__module__", None) or ""
            if isinstance(obj, ModuleType) or not module.startswith("assignflow"):
                continue
            if module not in CLEAN_MODULES:
                patterns.add(rf"^assignflow\.{re.escape(prefix + name)}(\.|$)")
    return patterns


def _defined_in_assignflow(obj: object) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "assignflow" or module.startswith("assignflow.")


def public_objects() -> Iterator[tuple[str, str]]:
    """Yield ``(import path, defining module)`` for every public object.

    Returns
    -------
    iterator of tuple of (str, str)
        The path ``numpydoc.validate.validate`` imports (e.g.
        ``"assignflow.flows.LinearizedAssignmentFlow.solve"``) and the module that
        defines the object.
    """
    import assignflow

    seen: set[str] = set()
    sources: list[tuple[ModuleType, list[str]]] = [
        (assignflow, [n for n in assignflow.__all__ if n not in (*_SUBMODULES, "__version__")])
    ]
    for name in _SUBMODULES:
        mod = getattr(assignflow, name)
        names = getattr(mod, "__all__", None) or [
            n
            for n, o in vars(mod).items()
            if not n.startswith("_") and getattr(o, "__module__", None) == mod.__name__
        ]
        sources.append((mod, list(names)))
    for mod, names in sources:
        for name in names:
            obj = getattr(mod, name)
            if not _defined_in_assignflow(obj) or isinstance(obj, ModuleType):
                continue
            path = f"{obj.__module__}.{obj.__qualname__}" if hasattr(obj, "__qualname__") else ""
            if not path or path in seen:
                continue
            seen.add(path)
            yield path, obj.__module__
            if inspect.isclass(obj):
                for member, value in vars(obj).items():
                    if member.startswith("_") or (
                        member.startswith("set_") and member.endswith("_request")
                    ):
                        continue
                    func = (
                        value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
                    )
                    if isinstance(value, property) or inspect.isfunction(func):
                        yield f"{path}.{member}", obj.__module__


def violations(checks: frozenset[str] = CHECKS) -> dict[str, list[tuple[str, str, str]]]:
    """Validate every public object and collect the violations per module.

    Parameters
    ----------
    checks : frozenset of str, default CHECKS
        The numpydoc error codes that count.

    Returns
    -------
    dict of str to list of tuple of (str, str, str)
        For each defining module, the ``(object path, code, message)`` of every
        violation, in the order of the public API.
    """
    from numpydoc.validate import validate

    found: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for path, module in public_objects():
        for code, message in validate(path)["errors"]:
            if code in checks:
                found[module].append((path, code, message))
    return dict(found)


def main(argv: list[str] | None = None) -> int:
    """Print the violations and return the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (``sys.argv[1:]`` if None).

    Returns
    -------
    int
        0 if no public object violates a check, 1 otherwise.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summary", action="store_true", help="counts per module only")
    args = parser.parse_args(argv)
    found = violations()
    n_objects = defaultdict(int)
    for _, module in public_objects():
        n_objects[module] += 1
    for module in sorted(n_objects):
        errs = found.get(module, [])
        bad = len({p for p, _, _ in errs})
        print(f"{module}: {len(errs)} violations in {bad} of {n_objects[module]} objects")
        if not args.summary:
            for path, code, message in errs:
                print(f"    {path.removeprefix(module + '.')}: {code} {message}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
