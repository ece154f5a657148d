"""Tests for :mod:`assignflow.graphs` and the weight kernels of :mod:`assignflow._operators`."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    PROPERTY,
    bounded_arrays,
    graphs_and_weights,
    grid_graphs,
    random_graphs,
    weights_on,
)

import assignflow
from assignflow import Graph, GridGraph, Weights
from assignflow import registry as af_registry
from assignflow._operators import CSROperator, DiagonalOperator
from assignflow._parallel import get_num_threads, n_chunks_for
from assignflow.graphs import knn_graph


# --------------------------------------------------------------------------- references
def window_adjacency(h: int, w: int, r: int) -> np.ndarray:
    """Dense 0/1 matrix of the clipped (2r+1)×(2r+1) window (self loops included)."""
    ys, xs = np.divmod(np.arange(h * w), w)
    return (np.abs(ys[:, None] - ys[None, :]) <= r) & (np.abs(xs[:, None] - xs[None, :]) <= r)


def window_count(h: int, w: int, r: int) -> int:
    """Number of window positions inside the image, by brute force."""
    count = 0
    for y in range(h):
        for x in range(w):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    count += 0 <= y + dy < h and 0 <= x + dx < w
    return count


def dense_pattern(g: Graph) -> np.ndarray:
    out = np.zeros((g.n_nodes, g.n_nodes), dtype=bool)
    for i in range(g.n_nodes):
        out[i, g.indices[g.indptr[i] : g.indptr[i + 1]]] = True
    return out


def assert_same_pattern(g: Graph, h: Graph) -> None:
    np.testing.assert_array_equal(g.indptr, h.indptr)
    np.testing.assert_array_equal(g.indices, h.indices)


# --------------------------------------------------------------------------- GridGraph
@PROPERTY
@given(grid_graphs())
def test_grid_nnz_counts_window_positions(g):
    h, w = g.shape
    assert g.n_nodes == h * w
    assert g.nnz == window_count(h, w, g.radius)
    assert g.valid.shape == (h * w, g.window_size)
    assert int(g.valid.sum()) == g.nnz
    assert g.window_size == (2 * g.radius + 1) ** 2


@PROPERTY
@given(grid_graphs())
def test_grid_indices_sorted_with_self(g):
    for i in range(g.n_nodes):
        row = g.indices[g.indptr[i] : g.indptr[i + 1]]
        assert np.all(np.diff(row) > 0)
        assert i in row
    np.testing.assert_array_equal(g.indices[g.self_loop_positions], np.arange(g.n_nodes))
    assert g.is_symmetric


@PROPERTY
@given(grid_graphs())
def test_grid_equals_window_adjacency(g):
    A = window_adjacency(*g.shape, g.radius)
    assert_same_pattern(g, Graph.from_adjacency(A))
    np.testing.assert_array_equal(dense_pattern(g), A)
    np.testing.assert_array_equal(g.to_adjacency().toarray(), A.astype(float))


@PROPERTY
@given(grid_graphs(), st.integers(0, 2**32 - 1))
def test_grid_patches_round_trip(g, seed):
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.1, 1.0, g.nnz)
    patches = g.values_to_patches(values)
    assert patches.shape == (*g.shape, g.window_size)
    np.testing.assert_array_equal(g.patches_to_values(patches), values)
    # the patch of pixel (y, x) at window offset (dy, dx) is the value on edge (i, k)
    dense = sp.csr_matrix((values, g.indices, g.indptr), shape=(g.n_nodes,) * 2).toarray()
    h, w = g.shape
    for o, (dy, dx) in enumerate(g.offsets):
        for y in range(h):
            for x in range(w):
                inside = 0 <= y + dy < h and 0 <= x + dx < w
                expected = dense[y * w + x, (y + dy) * w + x + dx] if inside else 0.0
                assert patches[y, x, o] == expected
    # and arbitrary patches survive patches → values → patches on the valid entries
    junk = rng.uniform(size=patches.shape)
    back = g.values_to_patches(g.patches_to_values(junk))
    mask = g.valid.reshape(patches.shape)
    np.testing.assert_array_equal(back[mask], junk[mask])
    np.testing.assert_array_equal(back[~mask], 0.0)


def test_grid_offsets_lexicographic():
    g = GridGraph((4, 5), 1)
    assert g.offsets.tolist() == [[dy, dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    np.testing.assert_array_equal(g.flat_offsets, [-6, -5, -4, -1, 0, 1, 4, 5, 6])


@PROPERTY
@given(grid_graphs(), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_grid_edge_dot(g, J, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((g.n_nodes, J))
    Y = rng.standard_normal((g.n_nodes, J))
    fast = g.edge_dot(X, Y)
    generic = Graph.edge_dot(g, X, Y)
    dense = (X @ Y.T)[g.rows, g.indices]
    assert fast.shape == (g.nnz,)
    np.testing.assert_allclose(fast, generic, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fast, dense, rtol=1e-12, atol=1e-12)


@PROPERTY
@given(random_graphs(), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_graph_edge_dot(g, J, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((g.n_nodes, J))
    Y = rng.standard_normal((g.n_nodes, J))
    np.testing.assert_allclose(
        g.edge_dot(X, Y), (X @ Y.T)[g.rows, g.indices], rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("shape", [(1, 1), (3, 4), (1, 7), (6, 1)])
def test_grid_radius_zero_is_self_loops(shape):
    g = GridGraph(shape, radius=0)
    n = shape[0] * shape[1]
    np.testing.assert_array_equal(g.indptr, np.arange(n + 1))
    np.testing.assert_array_equal(g.indices, np.arange(n))
    om = Weights.uniform(g)
    V = np.arange(2.0 * n).reshape(n, 2)
    np.testing.assert_array_equal(om.apply(V), V)
    np.testing.assert_array_equal(om.apply_transpose(V), V)


@pytest.mark.parametrize(
    ("shape", "radius"), [((1, 5), 1), ((6, 1), 1), ((1, 1), 1), ((2, 2), 2), ((3, 2), 5)]
)
def test_grid_thin_or_small_images(shape, radius):
    g = GridGraph(shape, radius)
    A = window_adjacency(*shape, radius)
    assert_same_pattern(g, Graph.from_adjacency(A))
    if max(shape) <= radius:  # the window covers the whole image: complete graph
        assert g.nnz == g.n_nodes**2
    if shape[0] == 1:  # a single row: a path graph widened to radius r
        assert g.degrees.tolist() == [
            min(i + radius, shape[1] - 1) - max(i - radius, 0) + 1 for i in range(shape[1])
        ]


def test_grid_equality_and_hash():
    assert GridGraph((3, 4)) == GridGraph((3, 4), 1)
    assert GridGraph((3, 4)) != GridGraph((4, 3))
    assert GridGraph((3, 4)) != GridGraph((3, 4), 2)
    assert hash(GridGraph((3, 4))) == hash(GridGraph([3, 4]))
    assert GridGraph(np.array([2, 3])).shape == (2, 3)
    g = GridGraph((3, 4))
    assert Graph(g.indptr, g.indices) == Graph(g.indptr.copy(), g.indices.copy())
    assert Graph(g.indptr, g.indices) != g  # same pattern, other type
    assert "GridGraph" in repr(g)


def test_graph_arrays_read_only():
    g = Graph.from_adjacency(np.ones((3, 3)))
    with pytest.raises(ValueError):
        g.indices[0] = 1
    with pytest.raises(ValueError):
        g.indptr[0] = 1


# --------------------------------------------------------------------------- from_adjacency
@PROPERTY
@given(st.integers(1, 9), st.integers(0, 2**32 - 1), st.booleans())
def test_from_adjacency_dense_and_sparse(n, seed, symmetrize):
    rng = np.random.default_rng(seed)
    A = rng.integers(-2, 3, (n, n)) * (rng.random((n, n)) < 0.3)
    expected = A != 0
    if symmetrize:
        expected = expected | expected.T
    expected = expected | np.eye(n, dtype=bool)
    g = Graph.from_adjacency(A, symmetrize=symmetrize)
    np.testing.assert_array_equal(dense_pattern(g), expected)
    assert g.is_symmetric == bool(np.array_equal(expected, expected.T))
    for conv in (sp.csr_matrix, sp.coo_matrix, sp.csc_matrix, sp.lil_matrix, sp.csr_array):
        assert_same_pattern(Graph.from_adjacency(conv(A), symmetrize=symmetrize), g)
    assert_same_pattern(Graph.from_adjacency(A.tolist(), symmetrize=symmetrize), g)


def test_from_adjacency_symmetrises_and_adds_self_loops():
    g = Graph.from_adjacency(sp.eye(3, k=1))
    assert g.indices.tolist() == [0, 1, 0, 1, 2, 1, 2]
    assert g.indptr.tolist() == [0, 2, 5, 7]
    d = Graph.from_adjacency(sp.eye(3, k=1), symmetrize=False)
    assert d.indices.tolist() == [0, 1, 1, 2, 2]
    assert not d.is_symmetric
    assert g.is_symmetric


def test_from_adjacency_duplicates_and_explicit_zeros():
    # COO with duplicated entries: one edge each
    coo = sp.coo_matrix(
        (np.array([1.0, 1.0, 2.0]), (np.array([0, 0, 2]), np.array([1, 1, 0]))), shape=(3, 3)
    )
    g = Graph.from_adjacency(coo)
    assert dense_pattern(g).tolist() == [
        [True, True, True],
        [True, True, False],
        [True, False, True],
    ]
    # explicit zeros stored in a CSR matrix are not edges
    csr = sp.csr_matrix(
        (np.array([0.0, 0.0, 3.0]), np.array([1, 2, 0]), np.array([0, 2, 2, 3])), shape=(3, 3)
    )
    assert csr.nnz == 3
    g = Graph.from_adjacency(csr)
    assert dense_pattern(g).tolist() == [
        [True, False, True],
        [False, True, False],
        [True, False, True],
    ]
    # a zero dense matrix: self loops only
    g = Graph.from_adjacency(np.zeros((4, 4)))
    assert g.indices.tolist() == [0, 1, 2, 3]
    # values (weights, signs, booleans) are ignored
    assert_same_pattern(
        Graph.from_adjacency(np.array([[0, -5.0], [0, 0]])),
        Graph.from_adjacency(np.array([[False, True], [False, False]])),
    )


def test_from_adjacency_input_not_modified():
    A = sp.csr_matrix(np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))
    before = A.toarray().copy()
    Graph.from_adjacency(A)
    np.testing.assert_array_equal(A.toarray(), before)
    D = before.copy()
    Graph.from_adjacency(D)
    np.testing.assert_array_equal(D, before)


def test_from_adjacency_cancelling_duplicates_are_no_edge():
    a = sp.csr_matrix((np.array([1.0, -1.0]), np.array([1, 1]), np.array([0, 2, 2])), shape=(2, 2))
    assert a.toarray().tolist() == [[0.0, 0.0], [0.0, 0.0]]
    g = Graph.from_adjacency(a)
    assert g.indices.tolist() == [0, 1]


# --------------------------------------------------------------------------- networkx, knn
def _count_components(A: np.ndarray) -> int:
    """Connected components of a dense symmetric pattern by breadth-first search."""
    n = A.shape[0]
    seen = np.zeros(n, dtype=bool)
    count = 0
    for s in range(n):
        if seen[s]:
            continue
        count += 1
        stack = [s]
        seen[s] = True
        while stack:
            i = stack.pop()
            for k in np.flatnonzero(A[i] | A[:, i]):
                if not seen[k]:
                    seen[k] = True
                    stack.append(k)
    return count


def test_from_networkx_path_graph():
    nx = pytest.importorskip("networkx")
    g = Graph.from_networkx(nx.path_graph(5))
    assert g.n_nodes == 5
    assert g.indices.tolist() == [0, 1, 0, 1, 2, 1, 2, 3, 2, 3, 4, 3, 4]
    assert g.degrees.tolist() == [2, 3, 3, 3, 2]


def test_from_networkx_string_nodes_and_nodelist():
    nx = pytest.importorskip("networkx")
    G = nx.Graph()
    G.add_edges_from([("a", "b"), ("b", "c")])
    G.add_node("d")
    g = Graph.from_networkx(G, nodelist=["d", "c", "b", "a"])
    # d=0 (isolated), c=1, b=2, a=3: edges 1-2, 2-3
    assert dense_pattern(g).astype(int).tolist() == [
        [1, 0, 0, 0],
        [0, 1, 1, 0],
        [0, 1, 1, 1],
        [0, 0, 1, 1],
    ]
    assert g.n_components == 2
    default = Graph.from_networkx(G)  # node order of list(G): a, b, c, d
    assert default.indices.tolist() == [0, 1, 0, 1, 2, 1, 2, 3]


def test_from_networkx_bad_input():
    nx = pytest.importorskip("networkx")
    with pytest.raises(TypeError, match="graph"):
        Graph.from_networkx(np.eye(3))
    with pytest.raises(ValueError, match="graph"):
        Graph.from_networkx(nx.Graph())


@PROPERTY
@given(st.integers(1, 25), st.integers(1, 6), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_knn(n, k, dim, seed):
    X = np.random.default_rng(seed).standard_normal((n, dim))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if k >= n else "error")
        g = Graph.knn(X, n_neighbors=k)
    kk = min(k, n - 1)
    assert g.n_nodes == n
    assert g.is_symmetric
    assert np.all(g.degrees >= kk + 1)
    pattern = dense_pattern(g)
    d = np.linalg.norm(X[:, None] - X[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :kk]
    expected = np.eye(n, dtype=bool)
    expected[np.repeat(np.arange(n), kk), nearest.ravel()] = True
    expected |= expected.T
    np.testing.assert_array_equal(pattern, expected)


def test_knn_clamps_with_a_warning_and_1d():
    X = np.array([0.0, 1.0, 3.0, 7.0])
    with pytest.warns(UserWarning, match="n_neighbors"):
        g = Graph.knn(X, n_neighbors=100)
    assert g.nnz == 16  # complete graph
    with pytest.warns(UserWarning, match="n_neighbors"):
        assert_same_pattern(Graph.knn(X, n_neighbors=4), g)  # n_neighbors = n_samples
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_pattern(Graph.knn(X, n_neighbors=3), g)  # n - 1: no warning
    g1 = Graph.knn(X, n_neighbors=1)
    assert_same_pattern(g1, Graph.knn(X[:, None], n_neighbors=1))
    # nearest neighbours on the line: 0↔1, 1↔0, 3↔1, 7↔3
    assert dense_pattern(g1).astype(int).tolist() == [
        [1, 1, 0, 0],
        [1, 1, 1, 0],
        [0, 1, 1, 1],
        [0, 0, 1, 1],
    ]
    with pytest.warns(UserWarning, match="n_neighbors"):
        single = Graph.knn(np.zeros((1, 2)), n_neighbors=3)
    assert single.indices.tolist() == [0]


def test_knn_bad_input():
    with pytest.raises(ValueError, match="n_neighbors"):
        Graph.knn(np.zeros((3, 2)), n_neighbors=0)
    with pytest.raises(ValueError, match="X"):
        Graph.knn(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="X"):
        Graph.knn(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="X"):
        Graph.knn([[0.0, np.nan], [1.0, 1.0]])


# --------------------------------------------------------------------------- properties
@PROPERTY
@given(random_graphs())
def test_graph_properties_match_dense_pattern(g):
    A = dense_pattern(g)
    assert g.nnz == int(A.sum())
    np.testing.assert_array_equal(g.degrees, A.sum(axis=1))
    np.testing.assert_array_equal(g.rows, np.nonzero(A)[0])
    np.testing.assert_array_equal(g.indices, np.nonzero(A)[1])
    pos = g.self_loop_positions
    assert pos.shape == (g.n_nodes,)
    np.testing.assert_array_equal(g.indices[pos], np.arange(g.n_nodes))
    np.testing.assert_array_equal(g.rows[pos], np.arange(g.n_nodes))
    assert g.is_symmetric
    assert g.n_components == _count_components(A)


def test_n_components_and_asymmetric_pattern():
    A = np.zeros((6, 6))
    A[0, 1] = A[2, 3] = A[3, 4] = 1
    g = Graph.from_adjacency(A)
    assert g.n_components == 3  # {0, 1}, {2, 3, 4}, {5}
    directed = Graph([0, 2, 3], [0, 1, 1])
    assert not directed.is_symmetric
    assert directed.n_components == 1
    assert Graph([0, 1, 2], [0, 1]).n_components == 2


# --------------------------------------------------------------------------- operators
@PROPERTY
@given(graphs_and_weights(), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_weight_operator_matches_dense(gw, J, seed):
    g, om = gw
    rng = np.random.default_rng(seed)
    dense = om.to_csr().toarray()
    expected_type = DiagonalOperator if isinstance(g, GridGraph) else CSROperator
    assert isinstance(om.operator, expected_type)
    for shape in [(g.n_nodes,), (g.n_nodes, J)]:
        V = rng.standard_normal(shape)
        out = om.apply(V)
        assert out.shape == shape
        np.testing.assert_allclose(out, dense @ V, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(om @ V, dense @ V, rtol=1e-12, atol=1e-12)
        outT = om.apply_transpose(V)
        assert outT.shape == shape
        np.testing.assert_allclose(outT, dense.T @ V, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(om.operator.to_csr().toarray(), dense, rtol=1e-15)


@PROPERTY
@given(graphs_and_weights(), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_rowwise_callback(gw, J, seed):
    g, om = gw
    V = np.random.default_rng(seed).standard_normal((g.n_nodes, J))
    seen = []

    def double(block, start, stop):
        assert block.shape == (stop - start, J)
        seen.append((start, stop))
        block *= 2.0

    dense = om.to_csr().toarray()
    np.testing.assert_allclose(
        om.operator.apply(V, rowwise=double), 2 * dense @ V, rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(
        om.operator.apply_transpose(V, rowwise=double), 2 * dense.T @ V, rtol=1e-12, atol=1e-12
    )
    covered = np.zeros(g.n_nodes, dtype=int)
    for a, c in seen:
        covered[a:c] += 1
    np.testing.assert_array_equal(covered, 2)


def test_rowwise_callback_sees_row_range():
    """The callback's (start, stop) locate the block: add the row index."""
    g = GridGraph((5, 6))
    om = Weights.uniform(g)
    V = np.zeros((g.n_nodes, 2))

    def add_row(block, start, stop):
        block += np.arange(start, stop)[:, None]

    out = om.operator.apply(V, rowwise=add_row)
    np.testing.assert_array_equal(out, np.repeat(np.arange(g.n_nodes)[:, None], 2, axis=1))


@pytest.fixture
def two_threads():
    old = get_num_threads()
    assignflow.set_num_threads(2)
    yield
    assignflow.set_num_threads(old)


@pytest.mark.parametrize("kind", ["grid", "csr"])
def test_threaded_chunked_operator(two_threads, kind):
    grid = GridGraph((300, 300))
    g = grid if kind == "grid" else Graph(grid.indptr, grid.indices)
    rng = np.random.default_rng(0)
    om = Weights.normalized(g, rng.uniform(0.01, 1.0, g.nnz))
    V = rng.standard_normal((g.n_nodes, 3))
    assert n_chunks_for(V.size) > 1
    A = om.to_csr()
    np.testing.assert_allclose(om.apply(V), A @ V, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(om.apply_transpose(V), A.T @ V, rtol=1e-12, atol=1e-12)
    seen = []

    def double(block, start, stop):
        seen.append((start, stop))
        block *= 2.0

    np.testing.assert_allclose(
        om.operator.apply(V, rowwise=double), 2 * (A @ V), rtol=1e-12, atol=1e-12
    )
    assert len(seen) > 1
    assert sorted(seen)[0][0] == 0
    assert sorted(seen)[-1][1] == g.n_nodes


_NARROW = [
    ((1, 1), 1),
    ((2, 2), 1),
    ((5, 1), 1),
    ((7, 2), 1),
    ((3, 3), 2),
    ((7, 4), 2),
    ((1, 2), 2),
    ((1, 2), 1),
]
_TRANSPOSE_OVERFLOW = [((1, 3), 1), ((1, 7), 1), ((2, 5), 2), ((1, 6), 2), ((3, 1), 2)]


@pytest.mark.parametrize(("shape", "radius"), _NARROW)
def test_grid_operator_narrow_images(shape, radius):
    """Images narrower than the window: distinct (dy, dx) share a flat offset dy·w+dx."""
    g = GridGraph(shape, radius)
    om = Weights.normalized(g, np.random.default_rng(0).uniform(0.1, 1.0, g.nnz))
    V = np.arange(2.0 * g.n_nodes).reshape(-1, 2)
    A = om.to_csr()
    np.testing.assert_allclose(om.apply(V), A @ V, rtol=1e-12)
    np.testing.assert_allclose(om.apply_transpose(V), A.T @ V, rtol=1e-12)
    np.testing.assert_allclose(om.operator.to_csr().toarray(), A.toarray(), rtol=1e-15)


@pytest.mark.parametrize(("shape", "radius"), _TRANSPOSE_OVERFLOW)
def test_grid_operator_transpose_short_images(shape, radius):
    g = GridGraph(shape, radius)
    om = Weights.uniform(g)
    V = np.arange(2.0 * g.n_nodes).reshape(-1, 2)
    np.testing.assert_allclose(om.apply(V), om.to_csr() @ V)  # Ω V itself works
    np.testing.assert_allclose(om.apply_transpose(V), om.to_csr().T @ V)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("indptr", "indices", "exc", "match"),
    [
        ([1, 2, 3], [0, 1], ValueError, "indptr"),  # does not start at 0
        ([0, 2, 1, 3], [0, 1, 1], ValueError, "indptr"),  # decreasing
        ([0, 1, 1, 2], [0, 2], ValueError, "indptr"),  # an empty neighbourhood
        ([0, 1, 3], [0, 1], ValueError, "indptr"),  # does not end at len(indices)
        ([0, 2, 4], [1, 0, 0, 1], ValueError, "indices"),  # unsorted
        ([0, 2, 4], [0, 0, 0, 1], ValueError, "indices"),  # duplicates
        ([0, 1, 2], [1, 0], ValueError, "own node"),  # missing self loops
        ([0, 1, 3], [0, 1, 2], ValueError, "indices"),  # out of range
        ([0, 1, 3], [0, -1, 1], ValueError, "indices"),  # negative index
        ([0, 1, 2], [0.0, 1.0], TypeError, "indices"),  # non-integer
        ([0.0, 1.0, 2.0], [0, 1], TypeError, "indptr"),
        ([0], [], ValueError, "indptr"),  # empty graph
        ([], [], ValueError, "indptr"),
        ([[0, 1]], [0], ValueError, "indptr"),  # 2-D
        ([0, 1, 2], [[0, 1]], ValueError, "indices"),
    ],
)
def test_graph_validation(indptr, indices, exc, match):
    with pytest.raises(exc, match=match):
        Graph(np.asarray(indptr), np.asarray(indices))


@pytest.mark.parametrize(
    ("adjacency", "match"),
    [
        (np.zeros((2, 3)), "square"),
        (sp.csr_matrix((2, 3)), "square"),
        (np.zeros(4), "square"),
        (np.zeros((0, 0)), "at least one node"),
        (np.array([[0.0, np.nan], [0.0, 0.0]]), "finite"),
        (sp.csr_matrix(np.array([[0.0, np.inf], [0.0, 0.0]])), "finite"),
    ],
)
def test_from_adjacency_bad_input(adjacency, match):
    with pytest.raises(ValueError, match=match):
        Graph.from_adjacency(adjacency)


@given(grid_graphs())
@PROPERTY
def test_grid_operator_on_every_shape(g):
    """Ω and Ωᵀ work on every grid shape and radius, including windows larger than the image."""
    om = Weights.uniform(g)
    ones = np.ones(g.n_nodes)
    np.testing.assert_allclose(om.apply(ones), 1.0)
    np.testing.assert_allclose(om.apply_transpose(ones), om.to_csr().T @ ones)


@PROPERTY
@given(st.data())
def test_weights_on_general_graph_apply(data):
    """Ω V for V of one column equals the weighted neighbourhood sums."""
    g = data.draw(random_graphs())
    om = data.draw(weights_on(g))
    v = data.draw(bounded_arrays(g.n_nodes, 5.0))
    expected = np.array(
        [
            sum(om.values[p] * v[g.indices[p]] for p in range(g.indptr[i], g.indptr[i + 1]))
            for i in range(g.n_nodes)
        ]
    )
    np.testing.assert_allclose(om.apply(v), expected, rtol=1e-12, atol=1e-12)


# =========================================================================== n-D grids
def nd_window_adjacency(shape, r) -> np.ndarray:
    """Dense 0/1 matrix of the clipped (2r+1)^ndim window on a grid of any dimension."""
    coords = np.stack(np.unravel_index(np.arange(math.prod(shape)), shape), axis=-1)
    return np.all(np.abs(coords[:, None, :] - coords[None, :, :]) <= r, axis=-1)


def nd_patches_reference(g: GridGraph, values: np.ndarray) -> np.ndarray:
    """Patches by brute force: entry (node, offset) is the value on edge (i, i + offset)."""
    dense = sp.csr_matrix((values, g.indices, g.indptr), shape=(g.n_nodes,) * 2).toarray()
    out = np.zeros((g.n_nodes, g.window_size))
    offsets = [
        d for d in np.ndindex(*([2 * g.radius + 1] * len(g.shape)))
    ]  # lexicographic, shifted by r
    for i in range(g.n_nodes):
        x = np.unravel_index(i, g.shape)
        for o, d in enumerate(offsets):
            y = tuple(xa + da - g.radius for xa, da in zip(x, d, strict=True))
            if all(0 <= ya < s for ya, s in zip(y, g.shape, strict=True)):
                out[i, o] = dense[i, np.ravel_multi_index(y, g.shape)]
    return out.reshape(*g.shape, g.window_size)


@st.composite
def nd_grid_graphs(draw, max_ndim: int = 3, max_side: int = 5, max_radius: int = 2):
    """Grids with 1..max_ndim axes of length 1..max_side; radius 0..max_radius, sometimes
    far beyond the grid's extent."""
    ndim = draw(st.integers(1, max_ndim))
    shape = tuple(draw(st.integers(1, max_side)) for _ in range(ndim))
    r = draw(st.one_of(st.integers(0, max_radius), st.sampled_from([6, 40])))
    if ndim == 3 and r > max_radius:
        r = max_radius + 1  # keep the full window (7³) small
    return GridGraph(shape, r)


@PROPERTY
@given(nd_grid_graphs())
def test_nd_grid_pattern_matches_dense_window(g):
    A = nd_window_adjacency(g.shape, g.radius)
    assert g.n_nodes == math.prod(g.shape) and g.ndim == len(g.shape)
    assert_same_pattern(g, Graph.from_adjacency(A))
    assert g.window_size == (2 * g.radius + 1) ** g.ndim
    assert g.valid.shape == (g.n_nodes, g.window_size)
    assert int(g.valid.sum()) == g.nnz
    np.testing.assert_array_equal(g.valid.sum(axis=1), g.degrees)
    assert g.offsets.shape == (g.window_size, g.ndim)
    # offsets: lexicographic; flat offsets: C-order linear index of the offset
    np.testing.assert_array_equal(
        g.offsets, np.array(list(np.ndindex(*[2 * g.radius + 1] * g.ndim))) - g.radius
    )
    strides = [math.prod(g.shape[a + 1 :]) for a in range(g.ndim)]
    np.testing.assert_array_equal(g.flat_offsets, g.offsets @ np.array(strides))
    # valid[i, o]: the offset stays inside the grid
    coords = np.stack(np.unravel_index(np.arange(g.n_nodes), g.shape), axis=-1)
    tgt = coords[:, None, :] + g.offsets[None, :, :]
    np.testing.assert_array_equal(g.valid, np.all((tgt >= 0) & (tgt < np.array(g.shape)), axis=-1))
    # the graph's own arrays are read-only
    for arr in (g.indptr, g.indices, g.valid):
        assert not arr.flags.writeable


@PROPERTY
@given(nd_grid_graphs(), st.integers(0, 2**32 - 1))
def test_nd_grid_patches(g, seed):
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.1, 1.0, g.nnz)
    patches = g.values_to_patches(values)
    assert patches.shape == (*g.shape, g.window_size)
    np.testing.assert_array_equal(patches, nd_patches_reference(g, values))
    np.testing.assert_array_equal(g.patches_to_values(patches), values)
    assert g.values_to_patches(values.astype(np.float32)).dtype == np.float32
    # Weights.from_patches works unchanged on any grid
    om = Weights.from_patches(g, patches, normalize=True)
    np.testing.assert_allclose(om.patches.sum(axis=-1), 1.0)


def test_2d_grid_csr_unchanged():
    """The 2-D node order, CSR, offsets and mask are those of the row-major window."""
    g = GridGraph((3, 4), 1)
    rows = []
    for y in range(3):
        for x in range(4):
            rows.append(
                [
                    (y + dy) * 4 + x + dx
                    for dy in (-1, 0, 1)
                    for dx in (-1, 0, 1)
                    if 0 <= y + dy < 3 and 0 <= x + dx < 4
                ]
            )
    np.testing.assert_array_equal(g.indices, np.concatenate(rows))
    np.testing.assert_array_equal(g.indptr, np.cumsum([0] + [len(r) for r in rows]))


def test_volume_offsets_and_degrees():
    g = GridGraph((3, 4, 5))
    assert g.window_size == 27 and g.n_nodes == 60
    assert g.offsets[0].tolist() == [-1, -1, -1] and g.offsets[13].tolist() == [0, 0, 0]
    np.testing.assert_array_equal(g.flat_offsets[[0, 13, 26]], [-26, 0, 26])
    deg = g.degrees.reshape(3, 4, 5)
    assert deg[1, 1, 1] == 27 and deg[0, 0, 0] == 8 and deg[0, 1, 1] == 18
    assert g.nnz == (3 + 2 * 2) * (4 + 2 * 3) * (5 + 2 * 4)  # per-axis counts multiply
    assert repr(g) == "GridGraph(shape=(3, 4, 5), radius=1)"


@pytest.mark.parametrize("n", [1, 2, 7])
def test_1d_grid_is_a_widened_path(n):
    g = GridGraph((n,), radius=2)
    assert g.window_size == 5
    assert g.degrees.tolist() == [min(i + 2, n - 1) - max(i - 2, 0) + 1 for i in range(n)]
    assert_same_pattern(g, Graph.from_adjacency(nd_window_adjacency((n,), 2)))


@pytest.mark.parametrize(
    ("shape", "radius"),
    [((2, 2), 1500), ((1, 1), 10**4), ((3, 1, 2), 300), ((1, 40), 25), ((5,), 10**6)],
)
def test_radius_beyond_the_grid_costs_nothing(shape, radius):
    """The radius is kept (it fixes the patch layout) but only in-grid offsets are visited."""
    t0 = time.perf_counter()
    g = GridGraph(shape, radius)
    om = Weights.uniform(g)
    V = np.arange(2.0 * g.n_nodes).reshape(-1, 2)
    out = om.apply(V)
    elapsed = time.perf_counter() - t0
    assert g.radius == radius and g.window_size == (2 * radius + 1) ** len(shape)
    r_eff = min(radius, max(shape) - 1)
    assert_same_pattern(g, Graph.from_adjacency(nd_window_adjacency(shape, r_eff)))
    # the kernels store one diagonal per in-grid offset, not (2r+1)^ndim
    assert len(om.operator.window_offsets) == math.prod(2 * min(radius, s - 1) + 1 for s in shape)
    np.testing.assert_allclose(out, om.to_csr() @ V)
    np.testing.assert_allclose(om.apply_transpose(V), om.to_csr().T @ V)
    np.testing.assert_allclose(g.edge_dot(V, V), Graph.edge_dot(g, V, V))
    assert elapsed < 30  # generous: it takes milliseconds (it took 1.3 GB and seconds)


def test_radius_beyond_grid_patches_when_asked():
    g = GridGraph((2, 3), radius=4)
    vals = np.random.default_rng(0).uniform(0.1, 1, g.nnz)
    p = g.values_to_patches(vals)
    assert p.shape == (2, 3, 81)
    np.testing.assert_array_equal(p, nd_patches_reference(g, vals))
    np.testing.assert_array_equal(g.patches_to_values(p), vals)
    assert g.valid.shape == (6, 81) and int(g.valid.sum()) == g.nnz


def test_grid_size_bound():
    from assignflow.graphs import MAX_GRID_WINDOW_POSITIONS

    assert MAX_GRID_WINDOW_POSITIONS == 2**31 - 1
    with pytest.raises(ValueError, match="shape or radius"):
        GridGraph((30000, 30000))  # 8.1e9 window positions: refused before any work
    with pytest.raises(ValueError, match="radius"):
        GridGraph((2, 2), radius=30000)
    with pytest.raises(ValueError, match="shape"):
        GridGraph((2,) * 32)
    # just below the bound works (and is cheap: one node)
    assert GridGraph((1, 1), radius=23000).nnz == 1


def test_grid_from_node_features():
    X = np.zeros((3, 4, 5, 2))
    assert GridGraph(X=X) == GridGraph((3, 4, 5))
    assert GridGraph(X=X[0], radius=2) == GridGraph((4, 5), 2)
    assert GridGraph(X=[[1.0], [2.0]]).shape == (2,)
    with pytest.raises(ValueError, match="X"):
        GridGraph(X=np.zeros(5))
    with pytest.raises(TypeError, match="shape or X"):
        GridGraph((3, 4), X=X)


# --------------------------------------------------------------------------- n-D kernels
def _random_weights(g, seed=0):
    return Weights.normalized(g, np.random.default_rng(seed).uniform(0.05, 1.0, g.nnz))


@PROPERTY
@given(nd_grid_graphs(), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_nd_kernels_match_csr(g, J, seed):
    rng = np.random.default_rng(seed)
    om = _random_weights(g, seed)
    A = om.to_csr()
    assert isinstance(om.operator, DiagonalOperator)
    np.testing.assert_allclose(om.operator.to_csr().toarray(), A.toarray(), rtol=1e-15)
    for shape in [(g.n_nodes,), (g.n_nodes, J)]:
        V = rng.standard_normal(shape)
        np.testing.assert_allclose(om.apply(V), A @ V, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(om.apply_transpose(V), A.T @ V, rtol=1e-12, atol=1e-12)
    X, Y = rng.standard_normal((2, g.n_nodes, J))
    ref = (X @ Y.T)[g.rows, g.indices]
    np.testing.assert_allclose(g.edge_dot(X, Y), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Graph.edge_dot(g, X, Y), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(50,), (9, 11), (4, 5, 6), (1, 7, 3), (2, 1, 1)])
@pytest.mark.parametrize("radius", [1, 2])
def test_kernels_float32_stay_float32(shape, radius):
    g = GridGraph(shape, radius)
    om = _random_weights(g, 1)
    A = om.to_csr()
    rng = np.random.default_rng(2)
    V = rng.standard_normal((g.n_nodes, 3)).astype(np.float32)
    U = rng.standard_normal((g.n_nodes, 3)).astype(np.float32)
    for got, want in [
        (om.operator.apply(V), A @ V.astype(float)),
        (om.operator.apply_transpose(V), A.T @ V.astype(float)),
        (g.edge_dot(V, U), (V.astype(float) @ U.T.astype(float))[g.rows, g.indices]),
        (Graph.edge_dot(g, V, U), (V.astype(float) @ U.T.astype(float))[g.rows, g.indices]),
    ]:
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    # mixed precision is computed in float64
    assert g.edge_dot(V, U.astype(float)).dtype == np.float64


def test_threaded_volume_kernels(two_threads):
    g = GridGraph((30, 40, 50))
    om = _random_weights(g, 3)
    V = np.random.default_rng(4).standard_normal((g.n_nodes, 4))
    assert n_chunks_for(V.size) > 1
    A = om.to_csr()
    np.testing.assert_allclose(om.apply(V), A @ V, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(om.apply_transpose(V), A.T @ V, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g.edge_dot(V, V), Graph.edge_dot(g, V, V), rtol=1e-12, atol=1e-12)
    V32 = V.astype(np.float32)
    np.testing.assert_allclose(om.apply(V32), A @ V, rtol=1e-4, atol=1e-4)


def test_diagonal_operator_from_planes_merges_shared_offsets():
    """The explicit constructor: row-indexed diagonals, duplicate flat offsets summed."""
    rng = np.random.default_rng(0)
    n = 6
    planes = rng.uniform(size=(3, n))
    planes[0, :1] = 0.0  # offset -1 leaves the grid at node 0
    planes[2, -1:] = 0.0  # offset +1 at node n - 1
    op = DiagonalOperator(planes, [-1, 0, 1])
    dense = np.diag(planes[1]) + np.diag(planes[0, 1:], -1) + np.diag(planes[2, :-1], 1)
    np.testing.assert_allclose(op.to_csr().toarray(), dense)
    x = rng.standard_normal((n, 2))
    np.testing.assert_allclose(op.apply(x), dense @ x)
    np.testing.assert_allclose(op.apply_transpose(x), dense.T @ x)
    half = DiagonalOperator(np.vstack([planes[1] / 2, planes[1] / 2]), [0, 0])
    np.testing.assert_allclose(half.apply(x), planes[1][:, None] * x)


# =========================================================================== registry
def test_graph_factories_registered_by_name():
    names = af_registry.graphs.names()
    assert {"graph", "grid", "knn"} <= set(names)
    assert af_registry.graphs.get("grid") is GridGraph
    assert af_registry.graphs.get("graph") is Graph
    assert af_registry.graphs.get("knn") is knn_graph
    assert af_registry.graphs.name_of(GridGraph((3, 3))) == "grid"


@pytest.mark.parametrize(
    "shape", [(12, 3), (4, 5, 2), (2, 3, 4, 1)], ids=["tabular", "image", "volume"]
)
def test_factories_follow_the_X_contract(shape):
    X = np.random.default_rng(0).standard_normal(shape)
    n = math.prod(shape[:-1])
    grid = af_registry.graphs.resolve("grid", X=X, radius=1)
    assert grid == GridGraph(shape[:-1], 1) and grid.n_nodes == n
    knn = af_registry.graphs.resolve("knn", X=X, n_neighbors=3)
    assert type(knn) is Graph and knn.n_nodes == n
    assert_same_pattern(knn, Graph.knn(X.reshape(n, -1), 3))
    cityblock = af_registry.graphs.resolve("knn", X=X, n_neighbors=2, metric="cityblock")
    assert cityblock.n_nodes == n
    assert af_registry.graphs.resolve("grid", X=X) == GridGraph(shape[:-1])  # default radius


def test_knn_factory_bad_input():
    with pytest.raises(ValueError, match="X"):
        knn_graph(np.zeros(5))
    with pytest.raises(ValueError, match="X"):
        knn_graph(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="n_neighbors"):
        knn_graph(np.zeros((3, 2)), n_neighbors=0)
    with pytest.warns(UserWarning, match="n_neighbors"):
        assert knn_graph(np.zeros((2, 2, 1)), n_neighbors=8).nnz == 16


# =========================================================================== bad input
# (moved from the core bad-input suite; each error names the argument)
def _nan(shape):
    x = np.zeros(shape)
    x.flat[0] = np.nan
    return x


def _inf(shape):
    x = np.zeros(shape)
    x.flat[-1] = np.inf
    return x


def _objnone(shape):
    x = np.ones(shape, dtype=object)
    x.flat[0] = None
    return x


def case(id_, fn, exc, match):
    return pytest.param(fn, exc, match, id=id_)


GRAPH_CASES = [
    case("indptr-str", lambda: Graph("abc", [0]), ValueError, "indptr"),
    case("indptr-None", lambda: Graph(None, [0]), ValueError, "indptr"),
    case("indptr-float", lambda: Graph([0.0, 1.0], [0]), TypeError, "indptr"),
    case("indptr-bool", lambda: Graph([False, True], [0]), TypeError, "indptr"),
    case("indptr-complex", lambda: Graph([0j, 1 + 0j], [0]), TypeError, "indptr"),
    case("indptr-2d", lambda: Graph([[0, 1]], [0]), ValueError, "indptr"),
    case("indices-float", lambda: Graph([0, 1], [0.5]), TypeError, "indices"),
    case("indices-str", lambda: Graph([0, 1], ["0"]), TypeError, "indices"),
    case("indices-object", lambda: Graph([0, 1], np.array([None])), TypeError, "indices"),
    case("zero-nodes", lambda: Graph([0], []), ValueError, "indptr"),
    case("empty-indptr", lambda: Graph([], []), ValueError, "indptr"),
    case("indptr-not-from-0", lambda: Graph([1, 2], [0]), ValueError, "indptr"),
    case("indptr-wrong-end", lambda: Graph([0, 2], [0]), ValueError, "indptr"),
    case("empty-row", lambda: Graph([0, 1, 1], [0]), ValueError, "indptr"),
    case("decreasing-indptr", lambda: Graph([0, 2, 1, 3], [0, 1, 1]), ValueError, "indptr"),
    case("index-too-large", lambda: Graph([0, 1], [1]), ValueError, "indices"),
    case("index-negative", lambda: Graph([0, 1], [-1]), ValueError, "indices"),
    case("index-huge", lambda: Graph([0, 1], [2**40]), ValueError, "indices"),
    case("unsorted-row", lambda: Graph([0, 2, 3], [1, 0, 1]), ValueError, "indices"),
    case("duplicate-index", lambda: Graph([0, 2, 3], [0, 0, 1]), ValueError, "indices"),
    case("no-self-loop", lambda: Graph([0, 1, 2], [1, 0]), ValueError, "node 0"),
    case("unsorted", lambda: Graph([0, 2, 4], [1, 0, 0, 1]), ValueError, "indices"),
    case("no-self-loop-late", lambda: Graph([0, 1, 2], [0, 0]), ValueError, "node 1"),
]

GRID_CASES = [
    case("shape-zero-h", lambda: GridGraph((0, 3)), ValueError, r"shape\[0\]"),
    case("shape-zero-w", lambda: GridGraph((3, 0)), ValueError, r"shape\[1\]"),
    case("shape-zero-d", lambda: GridGraph((2, 3, 0)), ValueError, r"shape\[2\]"),
    case("shape-negative", lambda: GridGraph((-2, 3)), ValueError, r"shape\[0\]"),
    case("shape-float", lambda: GridGraph((2.5, 3)), TypeError, r"shape\[0\]"),
    case("shape-bool", lambda: GridGraph((True, 3)), TypeError, r"shape\[0\]"),
    case("shape-str", lambda: GridGraph("ab"), TypeError, r"shape\[0\]"),
    case("shape-int", lambda: GridGraph(3), ValueError, "shape"),
    case("shape-empty", lambda: GridGraph(()), ValueError, "shape"),
    case("shape-33-axes", lambda: GridGraph((1,) * 33), ValueError, "shape"),
    case("shape-None", lambda: GridGraph(None), TypeError, "shape"),
    case("shape-float-scalar", lambda: GridGraph(3.0), TypeError, "shape"),
    case("shape-too-large", lambda: GridGraph((10**6, 10**6)), ValueError, "shape"),
    case("radius-negative", lambda: GridGraph((3, 3), -1), ValueError, "radius"),
    case("radius-float", lambda: GridGraph((3, 3), 1.5), TypeError, "radius"),
    case("radius-bool", lambda: GridGraph((3, 3), True), TypeError, "radius"),
    case("radius-str", lambda: GridGraph((3, 3), "1"), TypeError, "radius"),
    case("radius-None", lambda: GridGraph((3, 3), None), TypeError, "radius"),
    case("radius-too-large", lambda: GridGraph((4, 4), 10**5), ValueError, "radius"),
    case("X-1d", lambda: GridGraph(X=np.zeros(4)), ValueError, "X"),
    case("X-and-shape", lambda: GridGraph((2, 2), X=np.zeros((2, 2, 1))), TypeError, "X"),
]

ADJ_CASES = [
    case("1d", lambda: Graph.from_adjacency([0, 1]), ValueError, "adjacency"),
    case("3d", lambda: Graph.from_adjacency(np.zeros((2, 2, 2))), ValueError, "adjacency"),
    case("non-square", lambda: Graph.from_adjacency(np.zeros((2, 3))), ValueError, "adjacency"),
    case("sparse-non-square", lambda: Graph.from_adjacency(sp.eye(2, 3)), ValueError, "adjacency"),
    case("zero-nodes", lambda: Graph.from_adjacency(np.zeros((0, 0))), ValueError, "adjacency"),
    case("sparse-zero", lambda: Graph.from_adjacency(sp.csr_matrix((0, 0))), ValueError, "adj"),
    case("nan", lambda: Graph.from_adjacency(_nan((3, 3))), ValueError, "adjacency"),
    case("inf", lambda: Graph.from_adjacency(_inf((3, 3))), ValueError, "adjacency"),
    case(
        "sparse-nan", lambda: Graph.from_adjacency(sp.csr_matrix(_nan((3, 3)))), ValueError, "adj"
    ),
    case("scalar-str", lambda: Graph.from_adjacency("abc"), (TypeError, ValueError), "adjacency"),
    case("str-array", lambda: Graph.from_adjacency(np.full((2, 2), "1")), TypeError, "adjacency"),
    case("complex", lambda: Graph.from_adjacency(np.ones((2, 2)) + 0j), TypeError, "adjacency"),
    case(
        "sparse-complex",
        lambda: Graph.from_adjacency(sp.csr_matrix(np.ones((2, 2)) + 0j)),
        TypeError,
        "adjacency",
    ),
    case("object-None", lambda: Graph.from_adjacency(_objnone((2, 2))), TypeError, "adjacency"),
    case("None", lambda: Graph.from_adjacency(None), (TypeError, ValueError), "adjacency"),
]


def _nx_path():
    return pytest.importorskip("networkx").path_graph(3)


NX_CASES = [
    case("dict", lambda: Graph.from_networkx({0: [1]}), TypeError, "graph"),
    case("array", lambda: Graph.from_networkx(np.eye(2)), TypeError, "graph"),
    case("None", lambda: Graph.from_networkx(None), TypeError, "graph"),
    case(
        "empty",
        lambda: Graph.from_networkx(pytest.importorskip("networkx").Graph()),
        ValueError,
        "graph",
    ),
    case(
        "nodelist-unknown",
        lambda: Graph.from_networkx(_nx_path(), nodelist=[0, 1, 7]),
        ValueError,
        "nodelist",
    ),
    case(
        "nodelist-duplicates",
        lambda: Graph.from_networkx(_nx_path(), nodelist=[0, 0, 1]),
        ValueError,
        "nodelist",
    ),
    case(
        "nodelist-empty", lambda: Graph.from_networkx(_nx_path(), nodelist=[]), ValueError, "node"
    ),
    case("nodelist-int", lambda: Graph.from_networkx(_nx_path(), nodelist=3), TypeError, "node"),
]

KNN_X = np.random.default_rng(0).standard_normal((6, 2))
KNN_CASES = [
    case("X-str", lambda: Graph.knn("abc"), TypeError, "X"),
    case("X-str-array", lambda: Graph.knn(np.full((4, 2), "1")), TypeError, "X"),
    case("X-complex", lambda: Graph.knn(np.ones((4, 2)) + 0j), TypeError, "X"),
    case("X-bool", lambda: Graph.knn(np.ones((4, 2), dtype=bool)), TypeError, "X"),
    case("X-object-None", lambda: Graph.knn(_objnone((4, 2))), TypeError, "X"),
    case("X-None", lambda: Graph.knn(None), TypeError, "X"),
    case("X-ragged", lambda: Graph.knn([[1.0, 2.0], [3.0]]), TypeError, "X"),
    case("X-nan", lambda: Graph.knn(_nan((4, 2))), ValueError, "X"),
    case("X-inf", lambda: Graph.knn(_inf((4, 2))), ValueError, "X"),
    case("X-3d", lambda: Graph.knn(np.zeros((2, 2, 2))), ValueError, "X"),
    case("X-0d", lambda: Graph.knn(1.0), ValueError, "X"),
    case("X-empty-2d", lambda: Graph.knn(np.zeros((0, 2))), ValueError, "X"),
    case("X-empty-1d", lambda: Graph.knn([]), ValueError, "X"),
    case("k-zero", lambda: Graph.knn(KNN_X, 0), ValueError, "n_neighbors"),
    case("k-negative", lambda: Graph.knn(KNN_X, -3), ValueError, "n_neighbors"),
    case("k-float", lambda: Graph.knn(KNN_X, 2.5), TypeError, "n_neighbors"),
    case("k-bool", lambda: Graph.knn(KNN_X, True), TypeError, "n_neighbors"),
    case("k-str", lambda: Graph.knn(KNN_X, "8"), TypeError, "n_neighbors"),
    case("k-None", lambda: Graph.knn(KNN_X, None), TypeError, "n_neighbors"),
    case("metric-unknown", lambda: Graph.knn(KNN_X, 2, metric="nope"), ValueError, "metric"),
    case("metric-int", lambda: Graph.knn(KNN_X, 2, metric=5), TypeError, "metric"),
]


@pytest.mark.parametrize(
    ("fn", "exc", "match"), GRAPH_CASES + GRID_CASES + ADJ_CASES + NX_CASES + KNN_CASES
)
def test_constructors_reject_bad_input(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def test_graph_constructor_does_not_touch_caller_arrays():
    indptr = np.array([0, 2, 4], dtype=np.int64)
    indices = np.array([0, 1, 0, 1], dtype=np.int64)
    g = Graph(indptr, indices)
    # the graph's arrays are read-only; the caller's stay as they were
    assert not g.indptr.flags.writeable and not g.indices.flags.writeable
    assert indptr.flags.writeable and indices.flags.writeable
    assert indptr.tolist() == [0, 2, 4] and indices.tolist() == [0, 1, 0, 1]
    # and the graph is a value: changing the caller's arrays later does not reach it
    indices[:] = [1, 0, 1, 0]
    assert g.indices.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize(
    "adjacency",
    [
        pytest.param(np.zeros((4, 4)), id="all-isolated"),
        pytest.param(np.zeros((1, 1)), id="one-node"),
        pytest.param(np.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=bool), id="bool"),
        pytest.param(np.array([[0, -2.0, 0], [0, 0, 0], [0, 0, 0]]), id="negative-values"),
        pytest.param(sp.coo_matrix(([1.0, -1.0], ([0, 0], [1, 1])), shape=(3, 3)), id="cancel"),
        pytest.param([[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], id="two-components"),
    ],
)
def test_from_adjacency_degenerate_patterns(adjacency):
    from scipy.sparse.csgraph import connected_components

    before = adjacency.copy() if not isinstance(adjacency, list) else None
    g = Graph.from_adjacency(adjacency)
    dense = adjacency.toarray() if sp.issparse(adjacency) else np.asarray(adjacency, dtype=float)
    want = (dense != 0) | (dense.T != 0) | np.eye(len(dense), dtype=bool)
    np.testing.assert_array_equal(dense_pattern(g), want)
    assert g.n_components == connected_components(want, directed=False)[0]
    if before is not None:
        b = before.toarray() if sp.issparse(before) else before
        a = adjacency.toarray() if sp.issparse(adjacency) else adjacency
        np.testing.assert_array_equal(a, b)


def test_from_networkx_isolated_and_directed():
    nx = pytest.importorskip("networkx")
    G1 = nx.DiGraph()
    G1.add_nodes_from(range(5))
    G1.add_edge(0, 1)
    g = Graph.from_networkx(G1)
    want = np.eye(5, dtype=bool)
    want[0, 1] = want[1, 0] = True
    np.testing.assert_array_equal(dense_pattern(g), want)
    assert g.n_components == 4


def test_knn_degenerate_point_sets():
    with pytest.warns(UserWarning, match="n_neighbors"):
        one = Graph.knn([[1.0, 2.0]], n_neighbors=8)
    assert one.n_nodes == 1 and one.indices.tolist() == [0]
    # two far clusters with k=1: a disconnected graph
    X = np.array([[0.0], [0.1], [100.0], [100.1]])
    Xc = X.copy()
    g = Graph.knn(X, n_neighbors=1)
    assert g.n_components == 2
    np.testing.assert_array_equal(X, Xc)
    with pytest.warns(UserWarning, match="n_neighbors"):
        full = Graph.knn(X, n_neighbors=50)
    assert full.nnz == 16


@pytest.mark.parametrize(
    "shape, radius",
    [((7, 9), 1), ((2, 9), 1), ((1, 12), 2), ((3, 4, 5), 1), ((5, 6), 2), ((2, 2), 2)],
)
@pytest.mark.parametrize("first", [False, True])
def test_diagonals_derived_from_the_other_orientation_equal_a_fresh_build(shape, radius, first):
    # Ωᵀ's diagonals are shifted copies of Ω's (and back), merged offsets included
    rng = np.random.default_rng(0)
    g = GridGraph(shape, radius)
    values = Weights.normalized(g, rng.uniform(0.1, 1, g.nnz)).values
    for dt in (np.dtype(np.float64), np.dtype(np.float32)):
        op = Weights(g, values).operator
        op._data(first, dt)
        derived = op._data(not first, dt)
        fresh = Weights(g, values).operator._data(not first, dt)
        np.testing.assert_array_equal(derived, fresh)
    # Ω applied first, then Ωᵀ from its shifted diagonals: against the CSR transpose
    x = rng.standard_normal((g.n_nodes, 3))
    op = Weights(g, values).operator
    np.testing.assert_allclose(op.apply(x), op.to_csr() @ x, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(op.apply_transpose(x), op.to_csr().T @ x, rtol=1e-13, atol=1e-15)
