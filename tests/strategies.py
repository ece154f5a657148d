"""Reusable hypothesis strategies for the assignflow test-suite.

Everything is kept small (a dozen nodes, a handful of labels) so that property
tests run fast, and bounded so that nothing underflows: points of the manifold
have entries far from 0, tangent vectors have entries of modest size.

The arrays are built with plain numpy (never with the library under test), so the
strategies are an independent source of valid inputs.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from assignflow import Graph, GridGraph, Weights

__all__ = [
    "PROPERTY",
    "bounded_arrays",
    "graphs",
    "graphs_and_weights",
    "grid_graphs",
    "label_arrays",
    "log_floats",
    "manifold_shapes",
    "points",
    "positive_arrays",
    "random_graphs",
    "ref_softmax",
    "similarity_operators",
    "small_graphs",
    "tangent_vectors",
    "weights_on",
]

#: Shared settings for the property tests: a moderate number of examples, no deadline
#: (derandomised by ``conftest.py``). ``AF_TEST_EXAMPLES=1000 pytest ...`` runs a longer
#: search, ``AF_TEST_RANDOM=1`` a new random one each time.
PROPERTY = settings(
    max_examples=int(os.environ.get("AF_TEST_EXAMPLES", "50")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --------------------------------------------------------------------------- helpers
def ref_softmax(z: np.ndarray) -> np.ndarray:
    """Reference row-wise softmax (independent of the library)."""
    z = np.asarray(z, dtype=float)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=64)


# --------------------------------------------------------------------------- arrays
def manifold_shapes(max_nodes: int = 12, max_labels: int = 6) -> st.SearchStrategy:
    """``(I, J)`` with ``1 <= I <= max_nodes`` and ``1 <= J <= max_labels`` (``J = 1`` is legal)."""
    return st.tuples(st.integers(1, max_nodes), st.integers(1, max_labels))


_SEEDS = st.integers(0, 2**32 - 1)
_BOUNDED_KINDS = st.sampled_from(["uniform", "normal", "extremes", "constant"])
_POSITIVE_KINDS = st.sampled_from(["uniform", "loguniform", "extremes", "constant"])


def _no_tiny(x: float) -> float:
    """Flush magnitudes below 1e-12 to 0 (products of subnormals underflow to 0)."""
    return 0.0 if abs(x) < 1e-12 else x


def _shape_tuple(shape) -> tuple[int, ...]:
    return (shape,) if isinstance(shape, int) else tuple(shape)


@st.composite
def bounded_arrays(draw, shape, bound: float = 20.0):
    """Float arrays with entries in ``[-bound, bound]``.

    The entries come from a seeded numpy generator (much faster than drawing every
    float through hypothesis); hypothesis chooses the seed and the distribution,
    which includes the extremes ``±bound``, zeros and constant arrays.
    """
    shape = _shape_tuple(shape)
    kind = draw(_BOUNDED_KINDS)
    rng = np.random.default_rng(draw(_SEEDS))
    if kind == "uniform":
        return rng.uniform(-bound, bound, shape)
    if kind == "normal":
        return np.clip(rng.normal(0.0, bound / 3, shape), -bound, bound)
    if kind == "extremes":
        return rng.choice(np.array([-bound, -1.0, 0.0, 1.0, bound]), size=shape)
    return np.full(shape, _no_tiny(draw(_floats(-bound, bound))))


@st.composite
def positive_arrays(draw, shape, lo: float = 1e-3, hi: float = 1.0):
    """Float arrays with entries in ``[lo, hi]`` (``lo >= 0``), like :func:`bounded_arrays`."""
    shape = _shape_tuple(shape)
    kind = draw(_POSITIVE_KINDS)
    rng = np.random.default_rng(draw(_SEEDS))
    if kind == "uniform":
        return rng.uniform(lo, hi, shape)
    if kind == "loguniform":
        lo_log = lo if lo > 0 else 1e-6 * hi
        return np.clip(np.exp(rng.uniform(np.log(lo_log), np.log(hi), shape)), lo, hi)
    if kind == "extremes":
        return rng.choice(np.array([lo, hi]), size=shape)
    return np.full(shape, draw(_floats(lo, hi)))


_POINT_KINDS = st.sampled_from(["normalized", "lifted"])


@st.composite
def points(draw, shape, bound: float = 20.0, lo: float = 1e-3, kind: str | None = None):
    """A point of the assignment manifold of the given shape.

    Either rows of positive floats in ``[lo, 1]`` normalised to sum 1
    (``kind="normalized"``), or the lift of the barycenter by a tangent vector with
    entries in ``[-bound, bound]`` (``kind="lifted"``; the lift of the barycenter is
    a row-wise softmax), so the smallest entry is at least ``exp(-2 bound) / J``.
    """
    kind = kind or draw(_POINT_KINDS)
    if kind == "normalized":
        a = draw(positive_arrays(shape, lo=lo))
        return a / a.sum(axis=-1, keepdims=True)
    v = draw(bounded_arrays(shape, bound))
    return ref_softmax(v)


@st.composite
def tangent_vectors(draw, shape, bound: float = 20.0):
    """``Π0 x`` (rows summing to zero) for ``x`` with entries in ``[-bound, bound]``."""
    x = draw(bounded_arrays(shape, bound))
    return x - x.mean(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- graphs
@st.composite
def random_graphs(draw, max_nodes: int = 10):
    """A general graph: ``Graph.from_adjacency`` of a random (symmetrised) boolean pattern."""
    n = draw(st.integers(1, max_nodes))
    density = draw(st.sampled_from([0.0, 0.2, 0.5, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    adj = np.random.default_rng(seed).random((n, n)) < density
    return Graph.from_adjacency(adj)


@st.composite
def grid_graphs(draw, max_side: int = 7, max_radius: int = 2):
    """``GridGraph`` of shape ``1..max_side × 1..max_side`` with radius ``0..max_radius``."""
    r = draw(st.integers(0, max_radius))
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    return GridGraph((h, w), r)


def graphs() -> st.SearchStrategy:
    """General graphs or grids."""
    return st.one_of(random_graphs(), grid_graphs())


@st.composite
def weights_on(draw, graph, lo: float = 0.01, hi: float = 1.0):
    """Random strictly positive row-stochastic weights on ``graph`` (``Weights.normalized``)."""
    vals = draw(positive_arrays(graph.nnz, lo=lo, hi=hi))
    return Weights.normalized(graph, vals)


@st.composite
def graphs_and_weights(draw):
    """A pair ``(graph, weights)``."""
    g = draw(graphs())
    return g, draw(weights_on(g))


# --------------------------------------------------------------------------- problems
def log_floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Floats log-uniform in ``[lo, hi]`` (``0 < lo < hi``), e.g. scales ``ρ`` or horizons ``T``."""
    return _floats(float(np.log10(lo)), float(np.log10(hi))).map(lambda e: float(10.0**e))


def small_graphs(max_nodes: int = 8, max_side: int = 4) -> st.SearchStrategy:
    """Small general graphs, or grids of radius 0 or 1 with sides up to ``max_side``."""
    return st.one_of(random_graphs(max_nodes), grid_graphs(max_side, max_radius=1))


@st.composite
def similarity_operators(
    draw,
    max_labels: int = 4,
    rho: tuple[float, float] = (1e-2, 1e2),
    max_distance: float = 10.0,
    graphs_strategy: st.SearchStrategy | None = None,
):
    """A ``SimilarityOperator`` on a small graph with random weights and distances.

    Distances lie in ``[0, max_distance]`` (including constant rows and exact zeros),
    ``ρ`` is log-uniform in ``rho``.
    """
    from assignflow import SimilarityOperator

    g = draw(graphs_strategy if graphs_strategy is not None else small_graphs())
    om = draw(weights_on(g))
    J = draw(st.integers(1, max_labels))
    D = draw(positive_arrays((g.n_nodes, J), lo=0.0, hi=max_distance))
    return SimilarityOperator(om, D, rho=draw(log_floats(*rho)))


@st.composite
def label_arrays(draw, n_nodes: int, n_labels: int):
    """Integer labels of shape ``(n_nodes,)`` in ``[0, n_labels)``."""
    rng = np.random.default_rng(draw(_SEEDS))
    return rng.integers(0, n_labels, n_nodes)
