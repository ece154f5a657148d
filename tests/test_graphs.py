"""Tests for :mod:`assignflow.graphs` and the weight kernels of :mod:`assignflow._operators`."""

from __future__ import annotations

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
from assignflow._operators import CSROperator, DiagonalOperator
from assignflow._parallel import get_num_threads, n_chunks_for


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


def test_knn_clamps_and_1d():
    X = np.array([0.0, 1.0, 3.0, 7.0])
    g = Graph.knn(X, n_neighbors=100)
    assert g.nnz == 16  # complete graph
    g1 = Graph.knn(X, n_neighbors=1)
    assert_same_pattern(g1, Graph.knn(X[:, None], n_neighbors=1))
    # nearest neighbours on the line: 0↔1, 1↔0, 3↔1, 7↔3
    assert dense_pattern(g1).astype(int).tolist() == [
        [1, 1, 0, 0],
        [1, 1, 1, 0],
        [0, 1, 1, 1],
        [0, 0, 1, 1],
    ]
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


@pytest.mark.parametrize(
    ("shape", "radius", "exc", "match"),
    [
        ((-1, 3), 1, ValueError, r"shape\[0\]"),
        ((3, -2), 1, ValueError, r"shape\[1\]"),
        ((0, 3), 1, ValueError, r"shape\[0\]"),
        ((3, 0), 1, ValueError, r"shape\[1\]"),
        ((3, 4, 5), 1, ValueError, "shape"),
        ((3,), 1, ValueError, "shape"),
        (5, 1, ValueError, "shape"),
        ((2.5, 3), 1, TypeError, r"shape\[0\]"),
        ((3, 4), -1, ValueError, "radius"),
        ((3, 4), 1.5, TypeError, "radius"),
        ((3, 4), "1", TypeError, "radius"),
    ],
)
def test_grid_bad_input(shape, radius, exc, match):
    with pytest.raises(exc, match=match):
        GridGraph(shape, radius)


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
