"""Tests for :mod:`assignflow.weights`."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import (
    BAD,
    bool_array,
    case,
    complex_array,
    disconnected_graph,
    inf_array,
    nan_array,
    object_none_array,
    str_array,
)
from hypothesis import given
from hypothesis import strategies as st
from strategies import PROPERTY, bounded_arrays, graphs, graphs_and_weights, grid_graphs

from assignflow import Graph, GridGraph, Weights


def _rows(g: Graph):
    return [slice(g.indptr[i], g.indptr[i + 1]) for i in range(g.n_nodes)]


# --------------------------------------------------------------------------- constructors
@PROPERTY
@given(graphs())
def test_uniform(g):
    om = Weights.uniform(g)
    for i, sl in enumerate(_rows(g)):
        np.testing.assert_allclose(om.values[sl], 1.0 / g.degrees[i], rtol=1e-15)
    np.testing.assert_allclose(np.asarray(om.to_csr().sum(axis=1)).ravel(), 1.0, atol=1e-14)


@PROPERTY
@given(st.data())
def test_normalized_divides_rows(data):
    g = data.draw(graphs())
    raw = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).uniform(0.01, 5, g.nnz)
    om = Weights.normalized(g, raw)
    for sl in _rows(g):
        np.testing.assert_allclose(om.values[sl], raw[sl] / raw[sl].sum(), rtol=1e-14)
    # normalising weights that are already row-stochastic changes nothing
    np.testing.assert_allclose(Weights.normalized(g, om.values).values, om.values, rtol=1e-14)
    # a row-wise rescaling of the input does not matter
    scale = np.repeat(np.arange(1.0, g.n_nodes + 1), g.degrees)
    np.testing.assert_allclose(Weights.normalized(g, raw * scale).values, om.values, rtol=1e-13)


@pytest.mark.parametrize("scale", [1e-300, 1e300, 1.7e308])
def test_normalized_values_whose_row_sums_leave_float64(scale):
    # a row of values near the largest float sums to inf; near the smallest, the
    # ratios lose digits: both give the weights of the unit-scaled values
    g = GridGraph((3, 4))
    raw = np.random.default_rng(0).uniform(0.5, 1.0, g.nnz)
    ref = Weights.normalized(g, raw).values
    np.testing.assert_allclose(Weights.normalized(g, raw * scale).values, ref, rtol=1e-13)


@PROPERTY
@given(st.data())
def test_from_logits_is_neighbourhood_softmax(data):
    g = data.draw(graphs())
    z = data.draw(bounded_arrays(g.nnz, 30.0))
    om = Weights.from_logits(g, z)
    for sl in _rows(g):
        e = np.exp(z[sl] - z[sl].max())
        np.testing.assert_allclose(om.values[sl], e / e.sum(), rtol=1e-12)
    # softmax is invariant to a constant per neighbourhood
    shift = np.repeat(np.linspace(-100, 100, g.n_nodes), g.degrees)
    np.testing.assert_allclose(Weights.from_logits(g, z + shift).values, om.values, rtol=1e-10)


def test_from_logits_huge_and_zero():
    g = GridGraph((3, 3))
    z = np.zeros(g.nnz)
    assert Weights.from_logits(g, z) == Weights.uniform(g)
    big = np.full(g.nnz, 1e300)
    np.testing.assert_allclose(Weights.from_logits(g, big).values, Weights.uniform(g).values)


@PROPERTY
@given(grid_graphs(), st.integers(0, 2**32 - 1))
def test_from_patches_round_trip(g, seed):
    rng = np.random.default_rng(seed)
    om = Weights.normalized(g, rng.uniform(0.01, 1.0, g.nnz))
    P = om.patches
    assert P.shape == (*g.shape, g.window_size)
    assert Weights.from_patches(g, P) == om
    # window entries outside the image are ignored, with or without normalisation
    junk = P + (~g.valid.reshape(P.shape)) * rng.uniform(1, 2, P.shape)
    assert Weights.from_patches(g, junk) == om
    np.testing.assert_allclose(
        Weights.from_patches(g, junk, normalize=True).values, om.values, rtol=1e-14
    )
    # normalize=True: patches of any positive scale
    scaled = P * rng.uniform(0.5, 3.0, (*g.shape, 1))
    np.testing.assert_allclose(
        Weights.from_patches(g, scaled, normalize=True).values, om.values, rtol=1e-13
    )
    if np.any(np.abs(scaled - P) > 1e-6):
        with pytest.raises(ValueError, match="row-stochastic"):
            Weights.from_patches(g, scaled)


def test_from_patches_explicit():
    g = GridGraph((1, 2), radius=1)
    P = np.zeros((1, 2, 9))
    P[0, 0, 4], P[0, 0, 5] = 0.25, 0.75  # pixel 0: self, right neighbour
    P[0, 1, 3], P[0, 1, 4] = 0.6, 0.4  # pixel 1: left neighbour, self
    om = Weights.from_patches(g, P)
    np.testing.assert_allclose(om.to_csr().toarray(), [[0.25, 0.75], [0.6, 0.4]])


def test_from_patches_bad_input():
    g = GridGraph((2, 3))
    with pytest.raises(TypeError, match="GridGraph"):
        Weights.from_patches(Graph(g.indptr, g.indices), np.ones((2, 3, 9)))
    with pytest.raises(ValueError, match="patches"):
        Weights.from_patches(g, np.ones((3, 2, 9)))
    with pytest.raises(ValueError, match="patches"):
        Weights.from_patches(g, np.ones((2, 3, 8)))
    with pytest.raises(ValueError, match="> 0"):
        Weights.from_patches(g, np.zeros((2, 3, 9)), normalize=True)
    with pytest.raises(TypeError, match="GridGraph"):
        Weights.uniform(Graph(g.indptr, g.indices)).patches  # noqa: B018


@PROPERTY
@given(graphs_and_weights())
def test_from_matrix_round_trip(gw):
    g, om = gw
    A = om.to_csr()
    assert Weights.from_matrix(g, A) == om
    assert Weights.from_matrix(g, A.toarray()) == om
    assert Weights.from_matrix(g, sp.coo_matrix(A)) == om
    assert Weights.from_matrix(g, sp.csr_array(A)) == om


def test_from_matrix_rejects_off_pattern():
    g = Graph.from_adjacency(sp.eye(3, k=1))  # path 0 - 1 - 2
    M = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.0, 0.5, 0.5]])
    assert np.array_equal(Weights.from_matrix(g, M).to_csr().toarray(), M)
    bad = M.copy()
    bad[0] = [0.4, 0.4, 0.2]  # (0, 2) is not an edge
    with pytest.raises(ValueError, match="pattern"):
        Weights.from_matrix(g, bad)
    with pytest.raises(ValueError, match="pattern"):
        Weights.from_matrix(g, sp.csr_matrix(bad))
    with pytest.raises(ValueError, match="matrix"):
        Weights.from_matrix(g, np.eye(4))
    # a zero on an edge of the graph violates positivity
    zero_edge = M.copy()
    zero_edge[1] = [0.0, 0.5, 0.5]
    with pytest.raises(ValueError, match="> 0"):
        Weights.from_matrix(g, zero_edge)


def test_from_matrix_explicit_zero_outside_pattern_is_fine():
    g = Graph.from_adjacency(np.zeros((2, 2)))  # self loops only
    A = sp.csr_matrix(
        (np.array([1.0, 0.0, 1.0]), np.array([0, 1, 1]), np.array([0, 2, 3])), shape=(2, 2)
    )
    assert A.nnz == 3  # the (0, 1) zero is stored
    np.testing.assert_array_equal(Weights.from_matrix(g, A).values, [1.0, 1.0])


# --------------------------------------------------------------------------- views
@PROPERTY
@given(graphs_and_weights())
def test_to_csr(gw):
    g, om = gw
    A = om.to_csr()
    assert sp.issparse(A)
    assert A.shape == (g.n_nodes, g.n_nodes)
    np.testing.assert_allclose(np.asarray(A.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    pattern = A.toarray() != 0
    np.testing.assert_array_equal(pattern, g.to_adjacency().toarray() != 0)
    A.data[:] = 7.0  # the returned matrix is a copy
    assert np.all(om.values <= 1.0)


def test_values_read_only_and_not_aliased():
    g = GridGraph((3, 4))
    user = Weights.uniform(g).values.copy()
    om = Weights(g, user)
    assert not om.values.flags.writeable
    with pytest.raises(ValueError):
        om.values[0] = 0.5
    user[:] = 123.0
    np.testing.assert_allclose(om.values, Weights.uniform(g).values)
    raw = np.ones(g.nnz)
    before = raw.copy()
    om2 = Weights.normalized(g, raw)
    np.testing.assert_array_equal(raw, before)
    raw[:] = 5.0
    assert om2 == om


def test_values_list_input_and_n_nodes():
    g = Graph.from_adjacency(np.zeros((3, 3)))
    om = Weights(g, [1, 1, 1])
    assert om.values.dtype == np.float64
    assert om.n_nodes == 3
    assert "Weights" in repr(om)


def test_equality():
    g = GridGraph((3, 3))
    a = Weights.uniform(g)
    assert a == Weights(g, a.values.copy())
    assert a == Weights.uniform(GridGraph((3, 3)))
    assert a != Weights.normalized(g, np.arange(1.0, g.nnz + 1))
    assert a != Weights.uniform(GridGraph((3, 3), radius=0))
    assert a != Weights(Graph(g.indptr, g.indices), a.values)  # other graph type
    assert a != "weights"
    with pytest.raises(TypeError):
        hash(a)


# --------------------------------------------------------------------------- products
@PROPERTY
@given(graphs_and_weights(), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_apply_matches_csr(gw, J, seed):
    g, om = gw
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((g.n_nodes, J))
    A = om.to_csr()
    np.testing.assert_allclose(om.apply(V), A @ V, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(om.apply_transpose(V), A.T @ V, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(om.apply(V[:, 0]), A @ V[:, 0], rtol=1e-12, atol=1e-12)
    # constants are fixed points (rows sum to 1)
    np.testing.assert_allclose(om.apply(np.full(g.n_nodes, 3.0)), 3.0, rtol=1e-12)
    # the input is not modified
    before = V.copy()
    om.apply(V)
    om.apply_transpose(V)
    np.testing.assert_array_equal(V, before)
    # list input
    np.testing.assert_allclose(om.apply(V.tolist()), A @ V, rtol=1e-12, atol=1e-12)


def test_apply_non_contiguous_input():
    g = GridGraph((4, 5))
    om = Weights.normalized(g, np.random.default_rng(0).uniform(0.1, 1, g.nnz))
    V = np.asfortranarray(np.random.default_rng(1).standard_normal((g.n_nodes, 3)))
    np.testing.assert_allclose(om.apply(V), om.to_csr() @ V, rtol=1e-12)
    W = np.random.default_rng(2).standard_normal((g.n_nodes, 6))[:, ::2]
    np.testing.assert_allclose(om.apply_transpose(W), om.to_csr().T @ W, rtol=1e-12)


# --------------------------------------------------------------------------- bad input
G = GridGraph((2, 3))
U = Weights.uniform(G).values


@pytest.mark.parametrize(
    ("values", "exc", "match"),
    [
        (U[:-1], ValueError, "values"),
        (np.append(U, 0.1), ValueError, "values"),
        (U.reshape(1, -1), ValueError, "values"),
        (np.where(np.arange(G.nnz) == 3, np.nan, U), ValueError, "finite"),
        (np.where(np.arange(G.nnz) == 3, np.inf, U), ValueError, "finite"),
        (np.where(np.arange(G.nnz) == 0, 0.0, U), ValueError, "> 0"),
        (np.where(np.arange(G.nnz) == 0, -0.1, U), ValueError, "> 0"),
        (U * 1.01, ValueError, "row-stochastic"),
        (U * 0.5, ValueError, "row-stochastic"),
        ("abc", TypeError, "values"),
        (None, TypeError, "values"),
    ],
)
def test_weights_bad_values(values, exc, match):
    with pytest.raises(exc, match=match):
        Weights(G, values)


def test_row_sum_tolerance():
    v = U.copy()
    v[0] += 1e-10  # well within the documented 1e-8
    Weights(G, v)
    v[0] += 1e-6
    with pytest.raises(ValueError, match="row-stochastic"):
        Weights(G, v)


@pytest.mark.parametrize(
    ("ctor", "arg"),
    [
        (Weights, U),
        (Weights.uniform, None),
        (Weights.normalized, U),
        (Weights.from_logits, U),
        (Weights.from_matrix, np.eye(6)),
    ],
)
@pytest.mark.parametrize("graph", [None, "grid", np.eye(6), sp.eye(6)])
def test_non_graph_is_type_error(ctor, arg, graph):
    args = [graph] if arg is None else [graph, arg]
    with pytest.raises(TypeError, match="graph"):
        ctor(*args)


@pytest.mark.parametrize(
    ("ctor", "values", "match"),
    [
        (Weights.normalized, np.zeros(G.nnz), "> 0"),
        (Weights.normalized, -np.ones(G.nnz), "> 0"),
        (Weights.normalized, np.full(G.nnz, np.nan), "finite"),
        (Weights.normalized, np.ones(G.nnz + 1), "values"),
        (Weights.from_logits, np.ones(G.nnz - 1), "logits"),
        (Weights.from_logits, np.full(G.nnz, np.inf), "logits"),
    ],
)
def test_constructors_bad_values(ctor, values, match):
    with pytest.raises(ValueError, match=match):
        ctor(G, values)


@pytest.mark.parametrize(("method", "name"), [("apply", "V"), ("apply_transpose", "U")])
@pytest.mark.parametrize(
    ("bad", "exc"),
    [
        (np.ones(5), ValueError),
        (np.ones((7, 2)), ValueError),
        (np.ones((6, 2, 2)), ValueError),
        (np.ones(()), ValueError),
        (np.full((6, 2), np.nan), ValueError),
        ("abc", TypeError),
    ],
)
def test_apply_bad_input(method, name, bad, exc):
    om = Weights.uniform(G)
    with pytest.raises(exc, match=rf"\b{name}\b"):
        getattr(om, method)(bad)


# ===== bad input (moved from test_bad_input_*.py)
# Errors name the argument (a whole word); a wrong type may be either kind (BAD).
_G9 = GridGraph((3, 3))
_OM9 = Weights.uniform(_G9)
_V49 = np.linspace(0.0, 1.0, _G9.nnz) + 0.1
_N = _G9.nnz

WEIGHTS_CASES = [
    case("graph-str", lambda: Weights("g", _OM9.values), BAD, "graph"),
    case("graph-None", lambda: Weights(None, _OM9.values), BAD, "graph"),
    case("graph-scipy", lambda: Weights(sp.eye(9), _OM9.values), BAD, "graph"),
    case("values-short", lambda: Weights(_G9, _OM9.values[:-1]), ValueError, "values"),
    case("values-2d", lambda: Weights(_G9, _OM9.values[None]), ValueError, "values"),
    case("values-scalar", lambda: Weights(_G9, 1.0), ValueError, "values"),
    case("values-nan", lambda: Weights(_G9, nan_array(_N)), ValueError, "values"),
    case("values-inf", lambda: Weights(_G9, inf_array(_N)), ValueError, "values"),
    case("values-negative", lambda: Weights(_G9, -_OM9.values), ValueError, "values"),
    case("values-zero", lambda: Weights(_G9, np.zeros(_N)), ValueError, "values"),
    case("values-not-stochastic", lambda: Weights(_G9, 2 * _OM9.values), ValueError, "values"),
    case("values-str", lambda: Weights(_G9, str_array(_N)), BAD, "values"),
    case("values-complex", lambda: Weights(_G9, _OM9.values + 0j), BAD, "values"),
    case("values-bool", lambda: Weights(_G9, bool_array(_N)), BAD, "values"),
    case("values-None", lambda: Weights(_G9, None), BAD, "values"),
    case("values-object-None", lambda: Weights(_G9, object_none_array(_N)), BAD, "values"),
    case("uniform-str", lambda: Weights.uniform("g"), BAD, "graph"),
    case("uniform-None", lambda: Weights.uniform(None), BAD, "graph"),
    case("normalized-zero", lambda: Weights.normalized(_G9, np.zeros(_N)), ValueError, "values"),
    case("normalized-neg", lambda: Weights.normalized(_G9, -_V49), ValueError, "values"),
    case("normalized-nan", lambda: Weights.normalized(_G9, nan_array(_N)), ValueError, "values"),
    case("normalized-shape", lambda: Weights.normalized(_G9, _V49[:3]), ValueError, "values"),
    case("normalized-str", lambda: Weights.normalized(_G9, str_array(_N)), BAD, "values"),
    case("normalized-graph", lambda: Weights.normalized(3, _V49), BAD, "graph"),
    case("logits-nan", lambda: Weights.from_logits(_G9, nan_array(_N)), ValueError, "logits"),
    case("logits-inf", lambda: Weights.from_logits(_G9, -inf_array(_N)), ValueError, "logits"),
    case("logits-shape", lambda: Weights.from_logits(_G9, _V49[:-2]), ValueError, "logits"),
    case("logits-str", lambda: Weights.from_logits(_G9, str_array(_N)), BAD, "logits"),
    case("logits-complex", lambda: Weights.from_logits(_G9, complex_array(_N)), BAD, "logits"),
    case(
        "patches-not-grid",
        lambda: Weights.from_patches(Graph.from_adjacency(np.eye(9)), np.ones((3, 3, 9))),
        BAD,
        "graph",
    ),
    case(
        "patches-shape",
        lambda: Weights.from_patches(_G9, np.ones((3, 3, 8))),
        ValueError,
        "patches",
    ),
    case(
        "patches-nan",
        lambda: Weights.from_patches(_G9, nan_array((3, 3, 9))),
        ValueError,
        "patches",
    ),
    case("patches-str", lambda: Weights.from_patches(_G9, str_array((3, 3, 9))), BAD, "patches"),
    # the patches become the weight values: either name is right
    case(
        "patches-negative-normalize",
        lambda: Weights.from_patches(_G9, -np.ones((3, 3, 9)), normalize=True),
        ValueError,
        "patches|values",
    ),
    case(
        "patches-not-stochastic",
        lambda: Weights.from_patches(_G9, np.ones((3, 3, 9))),
        ValueError,
        "patches|values",
    ),
    case(
        "matrix-off-pattern",
        lambda: Weights.from_matrix(Graph.from_adjacency(np.zeros((3, 3))), np.full((3, 3), 1 / 3)),
        ValueError,
        "matrix",
    ),
    case(
        "matrix-sparse-off-pattern",
        lambda: Weights.from_matrix(_G9, sp.csr_matrix(np.full((9, 9), 1 / 9))),
        ValueError,
        "matrix",
    ),
    case("matrix-shape", lambda: Weights.from_matrix(_G9, np.eye(8)), ValueError, "matrix"),
    case("matrix-1d", lambda: Weights.from_matrix(_G9, np.ones(9)), ValueError, "matrix"),
    case("matrix-nan", lambda: Weights.from_matrix(_G9, nan_array((9, 9))), ValueError, "matrix"),
    case(
        "matrix-sparse-inf",
        lambda: Weights.from_matrix(_G9, sp.csr_matrix(inf_array((9, 9)))),
        ValueError,
        "matrix",
    ),
    case("matrix-str", lambda: Weights.from_matrix(_G9, str_array((9, 9))), BAD, "matrix"),
    case(
        "matrix-complex",
        lambda: Weights.from_matrix(_G9, _OM9.to_csr() * (1 + 0j)),
        BAD,
        "matrix",
    ),
    case("matrix-None", lambda: Weights.from_matrix(_G9, None), BAD, "matrix"),
    # the matrix entries on the edges become the weight values: either name is right
    case(
        "matrix-zero-on-edge",
        lambda: Weights.from_matrix(_G9, np.eye(9)),
        ValueError,
        "matrix|values",
    ),
    case(
        "matrix-not-stochastic",
        lambda: Weights.from_matrix(_G9, 2 * _OM9.to_csr()),
        ValueError,
        "matrix|values",
    ),
    case("matrix-graph", lambda: Weights.from_matrix("g", np.eye(9)), BAD, "graph"),
]

APPLY_CASES = [
    case("V-rows", lambda: _OM9.apply(np.ones((8, 2))), ValueError, "V"),
    case("V-3d", lambda: _OM9.apply(np.ones((9, 2, 1))), ValueError, "V"),
    case("V-0d", lambda: _OM9.apply(1.0), ValueError, "V"),
    case("V-nan", lambda: _OM9.apply(nan_array((9, 2))), ValueError, "V"),
    case("V-inf", lambda: _OM9.apply(inf_array((9, 2))), ValueError, "V"),
    case("V-str", lambda: _OM9.apply(str_array((9, 2))), BAD, "V"),
    case("V-complex", lambda: _OM9.apply(complex_array((9, 2))), BAD, "V"),
    case("V-bool", lambda: _OM9.apply(bool_array((9, 2))), BAD, "V"),
    case("V-None", lambda: _OM9.apply(None), BAD, "V"),
    case("matmul-rows", lambda: _OM9 @ np.ones(4), ValueError, "V"),
    case("U-rows", lambda: _OM9.apply_transpose(np.ones((10, 2))), ValueError, "U"),
    case("U-nan", lambda: _OM9.apply_transpose(nan_array((9, 2))), ValueError, "U"),
    case("U-str", lambda: _OM9.apply_transpose(str_array((9,))), BAD, "U"),
    case("U-complex", lambda: _OM9.apply_transpose(complex_array((9,))), BAD, "U"),
    case("U-3d", lambda: _OM9.apply_transpose(np.ones((9, 1, 1))), ValueError, "U"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), WEIGHTS_CASES)
def test_weights_constructors_reject(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.parametrize(("fn", "exc", "match"), APPLY_CASES)
def test_weights_apply_rejects(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.parametrize(
    "graph",
    [
        pytest.param(disconnected_graph(), id="disconnected+isolated"),
        pytest.param(Graph.from_adjacency(np.zeros((1, 1))), id="one-node"),
        pytest.param(Graph.from_adjacency(np.zeros((4, 4))), id="all-isolated"),
        pytest.param(GridGraph((1, 1)), id="grid-1x1"),
        pytest.param(GridGraph((1, 5), radius=2), id="grid-1x5-r2"),
    ],
)
def test_weights_on_degenerate_graphs(graph):
    rng = np.random.default_rng(3)
    raw = rng.uniform(0.5, 2.0, graph.nnz)
    raw_copy = raw.copy()
    om = Weights.normalized(graph, raw)
    np.testing.assert_array_equal(raw, raw_copy)
    dense = sp.csr_matrix((raw, graph.indices, graph.indptr), shape=(graph.n_nodes,) * 2).toarray()
    dense /= dense.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(om.to_csr().toarray(), dense, rtol=1e-14)
    # isolated nodes keep their own value: weight 1 on the self-loop
    iso = np.flatnonzero(graph.degrees == 1)
    np.testing.assert_array_equal(om.values[graph.indptr[iso]], 1.0)
    for J in (1, 3):
        V = rng.standard_normal((graph.n_nodes, J))
        Vc = V.copy()
        np.testing.assert_allclose(om.apply(V), dense @ V, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(om.apply_transpose(V), dense.T @ V, rtol=1e-13, atol=1e-14)
        np.testing.assert_array_equal(V, Vc)
    v = rng.standard_normal(graph.n_nodes)
    np.testing.assert_allclose(om.apply(v), dense @ v, rtol=1e-13, atol=1e-14)
    # zero labels: an empty product, not an error
    assert om.apply(np.zeros((graph.n_nodes, 0))).shape == (graph.n_nodes, 0)
    # round trips through the matrix and the logits
    np.testing.assert_allclose(Weights.from_matrix(graph, dense).values, om.values, rtol=1e-14)
    logits = np.log(om.values) + 5.0
    np.testing.assert_allclose(Weights.from_logits(graph, logits).values, om.values, rtol=1e-12)


def test_weights_from_logits_with_huge_spread_stays_positive():
    # softmax of a spread of 2000 underflows to 0 in float64; weights must stay valid
    logits = np.zeros(_G9.nnz)
    logits[_G9.self_loop_positions] = 2000.0
    lc = logits.copy()
    om = Weights.from_logits(_G9, logits)
    np.testing.assert_array_equal(logits, lc)
    assert np.all(om.values > 0) and np.all(np.isfinite(om.values))
    np.testing.assert_allclose(om.values[_G9.self_loop_positions], 1.0, rtol=1e-12)


def test_weights_values_copied_not_frozen_in_place():
    vals = _OM9.values.copy()
    om = Weights(_G9, vals)
    assert vals.flags.writeable
    vals[0] = 99.0
    assert om.values[0] == _OM9.values[0]
