"""Shared helpers for the bad-input and degenerate-input tests of the core modules.

Bad input must raise a ``ValueError`` or ``TypeError`` that names the argument. The
tests match the argument's *name* (a whole word), never a whole message, and they
accept an error raised inside numpy/scipy/scikit-learn as long as it names the
argument (scikit-learn's ``validate_params`` does: "The 'rho' parameter of ...").
Where only the kind of a wrong *type* differs between our checks and a delegated
library (``float("abc")`` raises ``ValueError``, sklearn's ``InvalidParameterError``
is both), the cases accept :data:`BAD` = ``(ValueError, TypeError)``.

Legitimate degenerate input (one node, one label, isolated nodes, disconnected
graphs) is compared with dense numpy/scipy references built here from the
definitions, never with the library under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
from strategies import ref_softmax

from assignflow import Graph, GridGraph, LinearizedAssignmentFlow, SimilarityOperator, Weights

__all__ = [
    "BAD",
    "INF",
    "NAN",
    "bool_array",
    "case",
    "complex_array",
    "dense_laf_solution",
    "dense_laf_system",
    "disconnected_graph",
    "inf_array",
    "nan_array",
    "object_none_array",
    "random_weights",
    "small_laf",
    "str_array",
]

#: A wrong type may be reported as either kind (see the module docstring).
BAD = (ValueError, TypeError)
NAN = float("nan")
INF = float("inf")


def case(id_: str, fn, exc, name: str | None):
    """One bad-input case: ``fn()`` raises ``exc`` naming the argument ``name``.

    ``name`` is a regular expression of argument names (``"patches|values"``) matched as
    a whole word; ``None`` checks the exception kind only (for Python's own errors, such
    as an unsupported operand).
    """
    match = None if name is None else rf"\b(?:{name})\b"
    return pytest.param(fn, exc, match, id=id_)


# --------------------------------------------------------------------------- bad arrays
def nan_array(shape) -> np.ndarray:
    x = np.zeros(shape)
    x.flat[0] = np.nan
    return x


def inf_array(shape) -> np.ndarray:
    x = np.zeros(shape)
    x.flat[-1] = np.inf
    return x


def str_array(shape) -> np.ndarray:
    return np.full(shape, "1")


def complex_array(shape) -> np.ndarray:
    return np.ones(shape) + 0j


def bool_array(shape) -> np.ndarray:
    return np.ones(shape, dtype=bool)


def object_none_array(shape) -> np.ndarray:
    x = np.ones(shape, dtype=object)
    x.flat[0] = None
    return x


# --------------------------------------------------------------------------- problems
def disconnected_graph() -> Graph:
    """Path 0-1-2, edge 3-4, isolated nodes 5 and 6: three components plus two singletons."""
    a = np.zeros((7, 7))
    a[0, 1] = a[1, 2] = a[3, 4] = 1.0
    return Graph.from_adjacency(a)


def random_weights(graph: Graph, seed: int = 0) -> Weights:
    rng = np.random.default_rng(seed)
    return Weights.normalized(graph, rng.uniform(0.5, 1.5, graph.nnz))


def small_laf(graph=None, J=3, rho=0.5, T=1.0, seed=0, W0=None) -> LinearizedAssignmentFlow:
    """A LAF with random weights and distances (a 3x3 grid unless ``graph`` is given)."""
    graph = GridGraph((3, 3)) if graph is None else graph
    rng = np.random.default_rng(seed)
    D = rng.uniform(0.0, 1.0, (graph.n_nodes, J))
    sim = SimilarityOperator(random_weights(graph, seed), D, rho=rho)
    return LinearizedAssignmentFlow(sim, T=T, W0=W0)


# --------------------------------------------------------------------------- dense references
def dense_laf_system(om: np.ndarray, D: np.ndarray, rho: float):
    """Dense ``A^J``, ``b`` and ``S0`` of the LAF at the barycenter, from the definitions."""
    J = D.shape[1]
    S0 = ref_softmax(-om @ D / rho)
    R = sla.block_diag(*[np.diag(s) - np.outer(s, s) for s in S0])
    A = R @ np.kron(om, np.eye(J))
    b = ((S0 - S0.mean(axis=1, keepdims=True)) / J).ravel()
    return A, b, S0


def dense_laf_solution(A: np.ndarray, b: np.ndarray, T: float) -> np.ndarray:
    """``v(T)`` of ``v' = A v + b``, ``v(0) = 0``: the last column of an augmented ``expm``."""
    n = len(b)
    aug = np.zeros((n + 1, n + 1))
    aug[:n, :n] = T * A
    aug[:n, n] = T * b
    return sla.expm(aug)[:n, n]
