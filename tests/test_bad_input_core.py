"""Bad-input suite for the core objects (issue 6).

Every public entry point of the core -- weights, the assignment manifold,
the similarity operator, the flows, the integrators, the losses, the gradient
estimators and learning -- is fed wrong types (strings, ``None``,
object/complex/bool arrays, ``bool`` for ``int``), wrong shapes, NaN and inf,
empty inputs, out-of-range labels and non-positive settings. (The graph cases live
in ``test_graphs.py``.)

Each bad case must raise a ``ValueError``/``TypeError`` whose message names the
argument (checked with ``match=``), raised by assignflow itself rather than from
deep inside numpy/scipy/scikit-learn/networkx (checked on the traceback).
Legitimate degenerate input -- one node, one label, isolated nodes, disconnected
graphs -- must work and give finite results, which are compared with dense
numpy/scipy references. Arrays passed in are compared with copies afterwards:
nothing may be modified in place.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from assignflow import (
    AdjointQuadrature,
    AssignmentFlow,
    AssignmentManifold,
    ClosedFormLowRank,
    CompositeLoss,
    DenseFrechet,
    Euler,
    ExponentialKrylov,
    FiniteDiff,
    GeometricEuler,
    Graph,
    GridGraph,
    KLLoss,
    LinearizedAssignmentFlow,
    LinearizedSequence,
    SimilarityOperator,
    TangentSpaceRegularizer,
    Weights,
    distance_matrix,
    multiplicative_update,
    riemannian_gradient_descent,
)
from assignflow.gradients import weight_gradient

# --------------------------------------------------------------------------- helpers
_FOREIGN = tuple(
    os.sep + name + os.sep for name in ("numpy", "scipy", "sklearn", "networkx", "pandas")
)


def _assert_raises(fn, exc, match):
    """``fn()`` raises ``exc`` matching ``match``, and not from inside a third-party library."""
    with pytest.raises(exc, match=match) as info:
        fn()
    where = str(info.traceback[-1].path)
    assert not any(f in where for f in _FOREIGN), f"raised from inside {where}"


def case(id_, fn, exc, match):
    return pytest.param(fn, exc, match, id=id_)


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _disconnected_graph():
    """Path 0-1-2, edge 3-4, isolated nodes 5 and 6: three components plus two singletons."""
    a = np.zeros((7, 7))
    a[0, 1] = a[1, 2] = a[3, 4] = 1.0
    return Graph.from_adjacency(a)


def _weights(g, seed=0):
    rng = np.random.default_rng(seed)
    return Weights.normalized(g, rng.uniform(0.5, 1.5, g.nnz))


def _flow(g=None, J=3, rho=0.5, T=1.0, seed=0, W0=None):
    g = GridGraph((3, 3)) if g is None else g
    rng = np.random.default_rng(seed)
    D = rng.uniform(0.0, 1.0, (g.n_nodes, J))
    return LinearizedAssignmentFlow(SimilarityOperator(_weights(g, seed), D, rho=rho), T=T, W0=W0)


def _dense_system(om, D, rho):
    """Dense ``A^J``, ``b`` and ``S0`` of the LAF at the barycenter, from the definitions."""
    J = D.shape[1]
    S0 = _softmax(-om @ D / rho)
    R = sla.block_diag(*[np.diag(s) - np.outer(s, s) for s in S0])
    A = R @ np.kron(om, np.eye(J))
    b = ((S0 - S0.mean(axis=1, keepdims=True)) / J).ravel()
    return A, b, S0


def _dense_A_b(flow):
    sim = flow.similarity
    return _dense_system(flow.weights.to_csr().toarray(), sim.distances, sim.rho)


def _dense_VT(A, b, T):
    n = len(b)
    aug = np.zeros((n + 1, n + 1))
    aug[:n, :n] = T * A
    aug[:n, n] = T * b
    return sla.expm(aug)[:n, n]


def _dense_loss(flow, labels, values):
    """KL loss of the LAF for free weight values (dense expm; the reference for gradients)."""
    g = flow.weights.graph
    om = sp.csr_matrix((values, g.indices, g.indptr), shape=(g.n_nodes,) * 2).toarray()
    A, b, _ = _dense_system(om, flow.similarity.distances, flow.similarity.rho)
    I, J = flow.shape
    V = _dense_VT(A, b, flow.T).reshape(I, J)
    logp = np.log(_softmax(J * V))
    return -logp[np.arange(I), labels].mean()


def _dense_gradient(flow, labels, h=1e-6):
    vals = flow.weights.values.copy()
    grad = np.empty_like(vals)
    for e in range(vals.size):
        up, dn = vals.copy(), vals.copy()
        up[e] += h
        dn[e] -= h
        grad[e] = (_dense_loss(flow, labels, up) - _dense_loss(flow, labels, dn)) / (2 * h)
    return grad


# small shared objects (cheap to build)
G = GridGraph((3, 3))
OM = Weights.uniform(G)
D3 = np.random.default_rng(1).uniform(0.0, 1.0, (9, 3))
SIM = SimilarityOperator(OM, D3, rho=0.5)
FLOW = LinearizedAssignmentFlow(SIM, T=1.0)
M = AssignmentManifold(9, 3)
WB = M.barycenter()
Y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
KL = KLLoss(Y)
NAN = float("nan")
INF = float("inf")


def _nan(shape):
    x = np.zeros(shape)
    x.flat[0] = np.nan
    return x


def _inf(shape):
    x = np.zeros(shape)
    x.flat[-1] = np.inf
    return x


def _str(shape):
    return np.full(shape, "1")


def _cplx(shape):
    return np.ones(shape) + 0j


def _bool(shape):
    return np.ones(shape, dtype=bool)


def _objnone(shape):
    x = np.ones(shape, dtype=object)
    x.flat[0] = None
    return x


# graphs (Graph, GridGraph, from_adjacency, from_networkx, knn): tests/test_graphs.py


# =========================================================================== weights
V9 = np.linspace(0.0, 1.0, G.nnz) + 0.1
WEIGHTS_CASES = [
    case("graph-str", lambda: Weights("g", OM.values), TypeError, "graph must be an assignflow"),
    case("graph-None", lambda: Weights(None, OM.values), TypeError, "graph must be"),
    case("graph-scipy", lambda: Weights(sp.eye(9), OM.values), TypeError, "graph must be"),
    case("values-short", lambda: Weights(G, OM.values[:-1]), ValueError, "values must have shape"),
    case("values-2d", lambda: Weights(G, OM.values[None]), ValueError, "values must have shape"),
    case("values-scalar", lambda: Weights(G, 1.0), ValueError, "values must have shape"),
    case("values-nan", lambda: Weights(G, _nan(G.nnz)), ValueError, "values must contain only"),
    case("values-inf", lambda: Weights(G, _inf(G.nnz)), ValueError, "values must contain only"),
    case("values-negative", lambda: Weights(G, -OM.values), ValueError, "values must be > 0"),
    case("values-zero", lambda: Weights(G, np.zeros(G.nnz)), ValueError, "values must be > 0"),
    case("values-not-stochastic", lambda: Weights(G, 2 * OM.values), ValueError, "row-stochastic"),
    case("values-str", lambda: Weights(G, _str(G.nnz)), TypeError, "values"),
    case("values-complex", lambda: Weights(G, OM.values + 0j), TypeError, "values"),
    case("values-bool", lambda: Weights(G, _bool(G.nnz)), TypeError, "values"),
    case("values-None", lambda: Weights(G, None), TypeError, "values"),
    case("values-object-None", lambda: Weights(G, _objnone(G.nnz)), TypeError, "values"),
    case("uniform-str", lambda: Weights.uniform("g"), TypeError, "graph must be"),
    case("uniform-None", lambda: Weights.uniform(None), TypeError, "graph must be"),
    case("normalized-zero", lambda: Weights.normalized(G, np.zeros(G.nnz)), ValueError, "> 0"),
    case("normalized-neg", lambda: Weights.normalized(G, -V9), ValueError, "values must be > 0"),
    case("normalized-nan", lambda: Weights.normalized(G, _nan(G.nnz)), ValueError, "values"),
    case("normalized-shape", lambda: Weights.normalized(G, V9[:3]), ValueError, "values must"),
    case("normalized-str", lambda: Weights.normalized(G, _str(G.nnz)), TypeError, "values"),
    case("normalized-graph", lambda: Weights.normalized(3, V9), TypeError, "graph must be"),
    case("logits-nan", lambda: Weights.from_logits(G, _nan(G.nnz)), ValueError, "logits"),
    case("logits-inf", lambda: Weights.from_logits(G, -_inf(G.nnz)), ValueError, "logits"),
    case("logits-shape", lambda: Weights.from_logits(G, V9[:-2]), ValueError, "logits must have"),
    case("logits-str", lambda: Weights.from_logits(G, _str(G.nnz)), TypeError, "logits"),
    case("logits-complex", lambda: Weights.from_logits(G, _cplx(G.nnz)), TypeError, "logits"),
    case(
        "patches-not-grid",
        lambda: Weights.from_patches(Graph.from_adjacency(np.eye(9)), np.ones((3, 3, 9))),
        TypeError,
        "graph must be a GridGraph",
    ),
    case(
        "patches-shape", lambda: Weights.from_patches(G, np.ones((3, 3, 8))), ValueError, "patches"
    ),
    case("patches-nan", lambda: Weights.from_patches(G, _nan((3, 3, 9))), ValueError, "patches"),
    case("patches-str", lambda: Weights.from_patches(G, _str((3, 3, 9))), TypeError, "patches"),
    case(
        "patches-negative-normalize",
        lambda: Weights.from_patches(G, -np.ones((3, 3, 9)), normalize=True),
        ValueError,
        "> 0",
    ),
    case(
        "patches-not-stochastic",
        lambda: Weights.from_patches(G, np.ones((3, 3, 9))),
        ValueError,
        "row-stochastic",
    ),
    case(
        "matrix-off-pattern",
        lambda: Weights.from_matrix(Graph.from_adjacency(np.zeros((3, 3))), np.full((3, 3), 1 / 3)),
        ValueError,
        "not an edge of the graph",
    ),
    case(
        "matrix-sparse-off-pattern",
        lambda: Weights.from_matrix(G, sp.csr_matrix(np.full((9, 9), 1 / 9))),
        ValueError,
        "not an edge",
    ),
    case("matrix-shape", lambda: Weights.from_matrix(G, np.eye(8)), ValueError, "matrix must have"),
    case("matrix-1d", lambda: Weights.from_matrix(G, np.ones(9)), ValueError, "matrix must have"),
    case("matrix-nan", lambda: Weights.from_matrix(G, _nan((9, 9))), ValueError, "matrix.*finite"),
    case(
        "matrix-sparse-inf",
        lambda: Weights.from_matrix(G, sp.csr_matrix(_inf((9, 9)))),
        ValueError,
        "matrix.*finite",
    ),
    case("matrix-str", lambda: Weights.from_matrix(G, _str((9, 9))), TypeError, "matrix"),
    case(
        "matrix-complex",
        lambda: Weights.from_matrix(G, OM.to_csr() * (1 + 0j)),
        TypeError,
        "matrix",
    ),
    case("matrix-None", lambda: Weights.from_matrix(G, None), TypeError, "matrix"),
    case("matrix-zero-on-edge", lambda: Weights.from_matrix(G, np.eye(9)), ValueError, "> 0"),
    case(
        "matrix-not-stochastic",
        lambda: Weights.from_matrix(G, 2 * OM.to_csr()),
        ValueError,
        "row-stochastic",
    ),
    case("matrix-graph", lambda: Weights.from_matrix("g", np.eye(9)), TypeError, "graph must be"),
]

APPLY_CASES = [
    case("V-rows", lambda: OM.apply(np.ones((8, 2))), ValueError, "V must have 9 rows"),
    case("V-3d", lambda: OM.apply(np.ones((9, 2, 1))), ValueError, "V must have 1 or 2"),
    case("V-0d", lambda: OM.apply(1.0), ValueError, "V must have 1 or 2"),
    case("V-nan", lambda: OM.apply(_nan((9, 2))), ValueError, "V must contain only finite"),
    case("V-inf", lambda: OM.apply(_inf((9, 2))), ValueError, "V must contain only finite"),
    case("V-str", lambda: OM.apply(_str((9, 2))), TypeError, "V"),
    case("V-complex", lambda: OM.apply(_cplx((9, 2))), TypeError, "V"),
    case("V-bool", lambda: OM.apply(_bool((9, 2))), TypeError, "V"),
    case("V-None", lambda: OM.apply(None), TypeError, "V"),
    case("matmul-rows", lambda: OM @ np.ones(4), ValueError, "V must have 9 rows"),
    case("U-rows", lambda: OM.apply_transpose(np.ones((10, 2))), ValueError, "U must have 9 rows"),
    case("U-nan", lambda: OM.apply_transpose(_nan((9, 2))), ValueError, "U must contain only"),
    case("U-str", lambda: OM.apply_transpose(_str((9,))), TypeError, "U"),
    case("U-complex", lambda: OM.apply_transpose(_cplx((9,))), TypeError, "U"),
    case("U-3d", lambda: OM.apply_transpose(np.ones((9, 1, 1))), ValueError, "U must have 1 or 2"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), WEIGHTS_CASES)
def test_weights_constructors_reject(fn, exc, match):
    _assert_raises(fn, exc, match)


@pytest.mark.parametrize(("fn", "exc", "match"), APPLY_CASES)
def test_weights_apply_rejects(fn, exc, match):
    _assert_raises(fn, exc, match)


@pytest.mark.parametrize(
    "graph",
    [
        pytest.param(_disconnected_graph(), id="disconnected+isolated"),
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
    logits = np.zeros(G.nnz)
    logits[G.self_loop_positions] = 2000.0
    lc = logits.copy()
    om = Weights.from_logits(G, logits)
    np.testing.assert_array_equal(logits, lc)
    assert np.all(om.values > 0) and np.all(np.isfinite(om.values))
    np.testing.assert_allclose(om.values[G.self_loop_positions], 1.0, rtol=1e-12)


def test_weights_values_copied_not_frozen_in_place():
    vals = OM.values.copy()
    om = Weights(G, vals)
    assert vals.flags.writeable
    vals[0] = 99.0
    assert om.values[0] == OM.values[0]


# =========================================================================== manifold
V93 = np.zeros((9, 3))
GEOM_CASES = [
    case("n_nodes-zero", lambda: AssignmentManifold(0, 3), ValueError, "n_nodes must be >= 1"),
    case("n_labels-zero", lambda: AssignmentManifold(3, 0), ValueError, "n_labels must be >= 1"),
    case("n_nodes-negative", lambda: AssignmentManifold(-1, 3), ValueError, "n_nodes"),
    case("n_nodes-float", lambda: AssignmentManifold(2.5, 3), TypeError, "n_nodes must be an int"),
    case("n_labels-float64", lambda: AssignmentManifold(3, np.float64(2)), TypeError, "n_labels"),
    case("n_nodes-bool", lambda: AssignmentManifold(True, 3), TypeError, "n_nodes"),
    case("n_labels-bool", lambda: AssignmentManifold(3, False), TypeError, "n_labels"),
    case("n_nodes-str", lambda: AssignmentManifold("3", 3), TypeError, "n_nodes"),
    case("n_labels-None", lambda: AssignmentManifold(3, None), TypeError, "n_labels"),
    case(
        "lift-W-shape", lambda: M.lift(np.full((9, 2), 0.5), V93), ValueError, "W must have shape"
    ),
    case("lift-W-zero", lambda: M.lift(np.eye(9, 3), V93), ValueError, "W must be a point"),
    case("lift-W-negative", lambda: M.lift(-WB, V93), ValueError, "W must be a point"),
    case("lift-W-nan", lambda: M.lift(_nan((9, 3)), V93), ValueError, "W must contain only"),
    case("lift-W-str", lambda: M.lift(_str((9, 3)), V93), TypeError, "W"),
    case("lift-W-1d", lambda: M.lift(np.full(3, 1 / 3), V93), ValueError, "W must have shape"),
    case("lift-V-nan", lambda: M.lift(WB, _nan((9, 3))), ValueError, "V must contain only"),
    case("lift-V-inf", lambda: M.lift(WB, _inf((9, 3))), ValueError, "V must contain only"),
    case("lift-V-shape", lambda: M.lift(WB, np.zeros((3, 9))), ValueError, "V must have shape"),
    case("lift-V-complex", lambda: M.lift(WB, _cplx((9, 3))), TypeError, "V"),
    case("lift-V-bool", lambda: M.lift(WB, _bool((9, 3))), TypeError, "V"),
    case("lift-V-None", lambda: M.lift(WB, None), TypeError, "V"),
    case("exp-W-zero", lambda: M.exp(np.eye(9, 3), V93), ValueError, "W must be a point"),
    case("exp-V-str", lambda: M.exp(WB, _str((9, 3))), TypeError, "V"),
    case("exp-V-nan", lambda: M.exp(WB, _nan((9, 3))), ValueError, "V must contain only"),
    case("replicator-X-shape", lambda: M.replicator(WB, np.ones(9)), ValueError, "X must have"),
    case("replicator-X-nan", lambda: M.replicator(WB, _nan((9, 3))), ValueError, "X must contain"),
    case("replicator-W-neg", lambda: M.replicator(-WB, V93), ValueError, "W must be a point"),
    case("lift_inverse-Q-zero", lambda: M.lift_inverse(WB, np.eye(9, 3)), ValueError, "Q must be"),
    case("lift_inverse-Q-str", lambda: M.lift_inverse(WB, "Q"), TypeError, "Q"),
    case("inner-U-shape", lambda: M.inner(WB, np.ones((9, 2)), V93), ValueError, "U must have"),
    case("inner-V-nan", lambda: M.inner(WB, V93, _nan((9, 3))), ValueError, "V must contain"),
    case("inner-W-zero", lambda: M.inner(np.eye(9, 3), V93, V93), ValueError, "W must be a point"),
    case("norm-V-complex", lambda: M.norm(WB, _cplx((9, 3))), TypeError, "V"),
    case("project-V-str", lambda: M.project_tangent("abc"), TypeError, "V"),
    case("project-V-shape", lambda: M.project_tangent(np.ones((9,))), ValueError, "V must have"),
    case("entropy-W-nan", lambda: M.entropy(_nan((9, 3))), ValueError, "W must contain"),
    case("round-W-shape", lambda: M.round(np.ones((9, 4))), ValueError, "W must have shape"),
    case("random_point-conc-zero", lambda: M.random_point(0, 0.0), ValueError, "concentration"),
    case("random_point-conc-neg", lambda: M.random_point(0, -1.0), ValueError, "concentration"),
    case("random_point-conc-nan", lambda: M.random_point(0, NAN), ValueError, "concentration"),
    case("random_point-conc-str", lambda: M.random_point(0, "a"), TypeError, "concentration"),
    case("random_point-rng-str", lambda: M.random_point("seed"), TypeError, "rng"),
    case("random_tangent-rng-float", lambda: M.random_tangent(1.5), TypeError, "rng"),
    case("random_tangent-scale-nan", lambda: M.random_tangent(0, NAN), ValueError, "scale"),
    case("random_tangent-scale-inf", lambda: M.random_tangent(0, INF), ValueError, "scale"),
    case("random_tangent-scale-str", lambda: M.random_tangent(0, "1"), TypeError, "scale"),
    case("belongs-atol-neg", lambda: M.belongs(WB, atol=-1.0), ValueError, "atol"),
    case("is_tangent-atol-nan", lambda: M.is_tangent(V93, atol=NAN), ValueError, "atol"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), GEOM_CASES)
def test_manifold_rejects(fn, exc, match):
    _assert_raises(fn, exc, match)


@pytest.mark.parametrize("bad", ["abc", None, _cplx((9, 3)), _objnone((9, 3)), _nan((9, 3))])
def test_manifold_predicates_answer_false_for_garbage(bad):
    assert M.belongs(bad) is False
    assert M.is_tangent(bad) is False


@pytest.mark.parametrize(("I", "J"), [(1, 1), (1, 4), (5, 1), (2, 3)], ids=lambda v: str(v))
def test_manifold_degenerate_sizes(I, J):
    Mf = AssignmentManifold(I, J)
    rng = np.random.default_rng(7)
    W = Mf.random_point(rng)
    V = rng.standard_normal((I, J))
    Wc, Vc = W.copy(), V.copy()
    assert Mf.belongs(W)
    lifted = Mf.lift(W, V)
    np.testing.assert_allclose(lifted, _softmax(np.log(W) + V), rtol=1e-12)
    np.testing.assert_allclose(Mf.exp(W, V), _softmax(np.log(W) + V / W), rtol=1e-12)
    P = Mf.project_tangent(V)
    np.testing.assert_allclose(P, V - V.mean(axis=1, keepdims=True), atol=1e-15)
    R = Mf.replicator(W, V)
    np.testing.assert_allclose(R, W * V - (W * V).sum(axis=1, keepdims=True) * W, atol=1e-14)
    np.testing.assert_allclose(Mf.lift_inverse(W, lifted), P, atol=1e-10)
    assert np.isfinite(Mf.inner(W, P, P)) and Mf.inner(W, P, P) >= 0
    assert np.isfinite(Mf.entropy(W))
    assert Mf.is_tangent(Mf.random_tangent(rng))
    np.testing.assert_array_equal(W, Wc)
    np.testing.assert_array_equal(V, Vc)
    if J == 1:
        np.testing.assert_array_equal(Mf.barycenter(), 1.0)
        np.testing.assert_array_equal(lifted, 1.0)
        assert Mf.entropy(W) == 0.0 and Mf.dim == 0


# =========================================================================== similarity
SIM_CASES = [
    case("weights-str", lambda: SimilarityOperator("om", D3), TypeError, "weights must be"),
    case("weights-array", lambda: SimilarityOperator(np.eye(9), D3), TypeError, "weights must"),
    case("weights-graph", lambda: SimilarityOperator(G, D3), TypeError, "weights must"),
    case(
        "D-rows", lambda: SimilarityOperator(OM, D3[:8]), ValueError, r"distances must have shape"
    ),
    case("D-1d", lambda: SimilarityOperator(OM, D3[:, 0]), ValueError, "distances must have 2"),
    case("D-3d", lambda: SimilarityOperator(OM, D3[None]), ValueError, "distances must have 2"),
    case(
        "D-zero-labels", lambda: SimilarityOperator(OM, np.zeros((9, 0))), ValueError, "distances"
    ),
    case(
        "D-nan", lambda: SimilarityOperator(OM, _nan((9, 3))), ValueError, "distances must contain"
    ),
    case(
        "D-inf", lambda: SimilarityOperator(OM, _inf((9, 3))), ValueError, "distances must contain"
    ),
    case("D-str", lambda: SimilarityOperator(OM, _str((9, 3))), TypeError, "distances"),
    case("D-complex", lambda: SimilarityOperator(OM, _cplx((9, 3))), TypeError, "distances"),
    case("D-bool", lambda: SimilarityOperator(OM, _bool((9, 3))), TypeError, "distances"),
    case("D-None", lambda: SimilarityOperator(OM, None), TypeError, "distances"),
    case("D-object-None", lambda: SimilarityOperator(OM, _objnone((9, 3))), TypeError, "distances"),
    case("rho-zero", lambda: SimilarityOperator(OM, D3, 0.0), ValueError, "rho must be > 0"),
    case("rho-negative", lambda: SimilarityOperator(OM, D3, -1.0), ValueError, "rho must be > 0"),
    case("rho-nan", lambda: SimilarityOperator(OM, D3, NAN), ValueError, "rho must be finite"),
    case("rho-inf", lambda: SimilarityOperator(OM, D3, INF), ValueError, "rho must be finite"),
    case("rho-str", lambda: SimilarityOperator(OM, D3, "1"), TypeError, "rho must be a real"),
    case("rho-bool", lambda: SimilarityOperator(OM, D3, True), TypeError, "rho"),
    case("rho-None", lambda: SimilarityOperator(OM, D3, None), TypeError, "rho"),
    case("rho-complex", lambda: SimilarityOperator(OM, D3, 1j), TypeError, "rho"),
    case(
        "likelihood-W-zero", lambda: SIM.likelihood(np.eye(9, 3)), ValueError, "W must be a point"
    ),
    case("similarity-W-shape", lambda: SIM(np.full((9, 2), 0.5)), ValueError, "W must have shape"),
    case("similarity-W-nan", lambda: SIM.similarity(_nan((9, 3))), ValueError, "W must contain"),
    case("differential-X-shape", lambda: SIM.differential(WB, np.ones(9)), ValueError, "X must"),
    case("differential-X-str", lambda: SIM.differential(WB, _str((9, 3))), TypeError, "X"),
]

PROTOS = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
FEATS = np.random.default_rng(2).uniform(size=(5, 2))
DIST_CASES = [
    case(
        "protos-empty", lambda: distance_matrix(FEATS, np.zeros((0, 2))), ValueError, "prototypes"
    ),
    case("protos-empty-1d", lambda: distance_matrix(FEATS[:, 0], []), ValueError, "prototypes"),
    case(
        "protos-3d", lambda: distance_matrix(FEATS, np.zeros((1, 1, 2))), ValueError, "prototypes"
    ),
    case("protos-nan", lambda: distance_matrix(FEATS, _nan((3, 2))), ValueError, "prototypes must"),
    case("protos-str", lambda: distance_matrix(FEATS, _str((3, 2))), TypeError, "prototypes"),
    case("protos-complex", lambda: distance_matrix(FEATS, _cplx((3, 2))), TypeError, "prototypes"),
    case("feats-nan", lambda: distance_matrix(_nan((5, 2)), PROTOS), ValueError, "features must"),
    case("feats-inf", lambda: distance_matrix(_inf((5, 2)), PROTOS), ValueError, "features must"),
    case("feats-str", lambda: distance_matrix("abc", PROTOS), TypeError, "features"),
    case("feats-bool", lambda: distance_matrix(_bool((5, 2)), PROTOS), TypeError, "features"),
    case("feats-channels", lambda: distance_matrix(np.ones((5, 3)), PROTOS), ValueError, "channel"),
    case("feats-1d-vs-2ch", lambda: distance_matrix(np.ones(5), PROTOS), ValueError, "channel"),
    case(
        "feats-rgb-vs-grey",
        lambda: distance_matrix(np.ones((2, 2, 3)), [0.0, 1.0]),
        ValueError,
        "channels",
    ),
    case(
        "metric-unknown",
        lambda: distance_matrix(FEATS, PROTOS, metric="nope"),
        ValueError,
        "metric",
    ),
    case(
        "metric-int",
        lambda: distance_matrix(FEATS, PROTOS, metric=5),
        TypeError,
        "metric",
    ),
]


@pytest.mark.parametrize(("fn", "exc", "match"), SIM_CASES)
def test_similarity_rejects(fn, exc, match):
    _assert_raises(fn, exc, match)


@pytest.mark.parametrize(("fn", "exc", "match"), DIST_CASES)
def test_distance_matrix_rejects(fn, exc, match):
    _assert_raises(fn, exc, match)


def test_distance_matrix_degenerate():
    D = distance_matrix(FEATS[:1], PROTOS[:1])
    np.testing.assert_allclose(D, [[np.linalg.norm(FEATS[0] - PROTOS[0])]], rtol=1e-15)
    fc, pc = FEATS.copy(), PROTOS.copy()
    D = distance_matrix(FEATS, PROTOS, metric="sqeuclidean")
    ref = ((FEATS[:, None, :] - PROTOS[None]) ** 2).sum(-1)
    np.testing.assert_allclose(D, ref, rtol=1e-13)
    np.testing.assert_array_equal(FEATS, fc)
    np.testing.assert_array_equal(PROTOS, pc)
    # zero nodes: an empty (0, J) distance matrix, not an error
    assert distance_matrix(np.zeros((0, 2)), PROTOS).shape == (0, 3)


@pytest.mark.parametrize(
    ("graph", "J"),
    [
        pytest.param(_disconnected_graph(), 3, id="disconnected-J3"),
        pytest.param(_disconnected_graph(), 1, id="disconnected-J1"),
        pytest.param(Graph.from_adjacency(np.zeros((1, 1))), 3, id="one-node"),
        pytest.param(GridGraph((1, 1)), 1, id="one-node-one-label"),
    ],
)
def test_similarity_on_degenerate_problems(graph, J):
    rng = np.random.default_rng(4)
    om = _weights(graph)
    D = rng.uniform(0, 2, (graph.n_nodes, J))
    Dc = D.copy()
    S = SimilarityOperator(om, D, rho=0.3)
    dense = om.to_csr().toarray()
    np.testing.assert_allclose(S.S0, _softmax(-dense @ D / 0.3), rtol=1e-12)
    W = AssignmentManifold(graph.n_nodes, J).random_point(rng)
    np.testing.assert_allclose(S(W), _softmax(dense @ (np.log(W) - D / 0.3)), rtol=1e-12)
    np.testing.assert_array_equal(D, Dc)
    iso = np.flatnonzero(graph.degrees == 1)
    # an isolated node only sees its own data
    np.testing.assert_allclose(S.S0[iso], _softmax(-D[iso] / 0.3), rtol=1e-12)


# =========================================================================== flows
W0_OK = np.full((9, 3), 1 / 3)
FLOW_CASES = [
    case("similarity-str", lambda: LinearizedAssignmentFlow("S"), TypeError, "similarity must be"),
    case("similarity-weights", lambda: LinearizedAssignmentFlow(OM), TypeError, "similarity"),
    case("T-zero", lambda: LinearizedAssignmentFlow(SIM, T=0.0), ValueError, "T must be > 0"),
    case("T-negative", lambda: LinearizedAssignmentFlow(SIM, T=-1), ValueError, "T must be > 0"),
    case("T-nan", lambda: LinearizedAssignmentFlow(SIM, T=NAN), ValueError, "T must be finite"),
    case("T-inf", lambda: LinearizedAssignmentFlow(SIM, T=INF), ValueError, "T must be finite"),
    case("T-str", lambda: LinearizedAssignmentFlow(SIM, T="1"), TypeError, "T must be a real"),
    case("T-bool", lambda: LinearizedAssignmentFlow(SIM, T=True), TypeError, "T must be a real"),
    case("T-None", lambda: LinearizedAssignmentFlow(SIM, T=None), TypeError, "T must be a real"),
    case("T-array", lambda: LinearizedAssignmentFlow(SIM, T=np.ones(2)), TypeError, "T"),
    case(
        "W0-shape", lambda: LinearizedAssignmentFlow(SIM, W0=W0_OK[:8]), ValueError, "W0 must have"
    ),
    case(
        "W0-not-point",
        lambda: LinearizedAssignmentFlow(SIM, W0=2 * W0_OK),
        ValueError,
        "W0 must be",
    ),
    case(
        "W0-zero", lambda: LinearizedAssignmentFlow(SIM, W0=np.eye(9, 3)), ValueError, "W0 must be"
    ),
    case("W0-nan", lambda: LinearizedAssignmentFlow(SIM, W0=_nan((9, 3))), ValueError, "W0 must"),
    case("W0-str", lambda: LinearizedAssignmentFlow(SIM, W0=_str((9, 3))), TypeError, "W0"),
    case("W0-complex", lambda: LinearizedAssignmentFlow(SIM, W0=W0_OK + 0j), TypeError, "W0"),
    case("A-V-shape", lambda: FLOW.A(np.zeros((9, 2))), ValueError, r"V must have shape \(9, 3\)"),
    case("A-V-flat-wrong", lambda: FLOW.A(np.zeros(26)), ValueError, "V must have shape"),
    case("A-V-nan", lambda: FLOW.A(_nan((9, 3))), ValueError, "V must contain only finite"),
    case("A-V-inf", lambda: FLOW.A(_inf(27)), ValueError, "V must contain only finite"),
    case("A-V-str", lambda: FLOW.A(_str((9, 3))), TypeError, "V"),
    case("A-V-complex", lambda: FLOW.A(_cplx((9, 3))), TypeError, "V"),
    case("A-V-None", lambda: FLOW.A(None), TypeError, "V"),
    case("AT-U-shape", lambda: FLOW.AT(np.zeros((3, 9))), ValueError, "U must have shape"),
    case("AT-U-nan", lambda: FLOW.AT(_nan(27)), ValueError, "U must contain only finite"),
    case("AT-U-bool", lambda: FLOW.AT(_bool((9, 3))), TypeError, "U"),
    case("solve-unknown", lambda: FLOW.solve("nope"), ValueError, "Unknown integrator 'nope'"),
    case("solve-typo", lambda: FLOW.solve("exponential_krylv"), ValueError, "exponential_krylov"),
    case(
        "solve-nonlinear", lambda: FLOW.solve(GeometricEuler()), TypeError, "cannot solve the lin"
    ),
    case("solve-nonlinear-cls", lambda: FLOW.solve(LinearizedSequence), TypeError, "LinearInteg"),
    case("solve-int", lambda: FLOW.solve(5), TypeError, "integrator"),
    case("solve-by-name-bad-kind", lambda: FLOW.solve("geometric_euler"), TypeError, "integrator"),
    case("AF-similarity", lambda: AssignmentFlow(None), TypeError, "similarity must be"),
    case("AF-T-zero", lambda: AssignmentFlow(SIM, T=0), ValueError, "T must be > 0"),
    case("AF-T-str", lambda: AssignmentFlow(SIM, T="2"), TypeError, "T must be a real"),
    case("AF-W0-shape", lambda: AssignmentFlow(SIM, W0=np.ones(3) / 3), ValueError, "W0 must have"),
    case("AF-W0-not-point", lambda: AssignmentFlow(SIM, W0=-W0_OK), ValueError, "W0 must be"),
    case("AF-solve-linear", lambda: AssignmentFlow(SIM).solve(Euler()), TypeError, "cannot solve"),
    case("AF-solve-unknown", lambda: AssignmentFlow(SIM).solve("eulr"), ValueError, "Did you mean"),
    case("AF-solve-obj", lambda: AssignmentFlow(SIM).solve(object()), TypeError, "integrator"),
    case(
        "AF-too-many-steps",
        lambda: AssignmentFlow(SIM, T=10.0).solve(GeometricEuler(step_size=0.1, max_steps=5)),
        ValueError,
        "max_steps",
    ),
]


@pytest.mark.parametrize(("fn", "exc", "match"), FLOW_CASES)
def test_flows_reject(fn, exc, match):
    _assert_raises(fn, exc, match)


@pytest.mark.parametrize(
    ("graph", "J"),
    [
        pytest.param(_disconnected_graph(), 3, id="disconnected"),
        pytest.param(Graph.from_adjacency(np.zeros((4, 4))), 2, id="all-isolated"),
        pytest.param(Graph.from_adjacency(np.zeros((1, 1))), 4, id="one-node"),
        pytest.param(_disconnected_graph(), 1, id="one-label"),
        pytest.param(GridGraph((1, 1)), 1, id="one-node-one-label"),
    ],
)
def test_laf_on_degenerate_problems_matches_dense_reference(graph, J):
    flow = _flow(graph, J=J, rho=0.4, T=2.0)
    A, b, _ = _dense_A_b(flow)
    rng = np.random.default_rng(5)
    V = rng.standard_normal(flow.shape)
    Vc = V.copy()
    np.testing.assert_allclose(flow.A(V).ravel(), A @ V.ravel(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(flow.AT(V).ravel(), A.T @ V.ravel(), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(V, Vc)
    np.testing.assert_allclose(flow.B.ravel(), b, atol=1e-15)
    ref = _dense_VT(A, b, flow.T).reshape(flow.shape)
    for integ in (ExponentialKrylov(krylov_dim=5, tol=1e-12), Euler(step_size=1e-3)):
        res = flow.solve(integ)
        assert np.all(np.isfinite(res.V)) and np.all(np.isfinite(res.W))
        tol = 1e-9 if isinstance(integ, ExponentialKrylov) else 2e-3
        np.testing.assert_allclose(res.V, ref, atol=tol * max(1.0, np.abs(ref).max()))
        np.testing.assert_allclose(res.W.sum(axis=1), 1.0, rtol=1e-12)
        assert res.labels.shape == (graph.n_nodes,)
    if J == 1:
        np.testing.assert_array_equal(res.V, 0.0)
        np.testing.assert_array_equal(res.W, 1.0)
        np.testing.assert_array_equal(res.labels, 0)


def test_laf_W0_is_copied_not_frozen():
    W0 = np.full((9, 3), 1 / 3)
    flow = LinearizedAssignmentFlow(SIM, W0=W0)
    assert W0.flags.writeable
    W0[0, 0] = 5.0
    assert flow.W0[0, 0] == 1 / 3


def _nonlinear_reference(flow_sim, T, h):
    om = flow_sim.weights.to_csr().toarray()
    D, rho = flow_sim.distances, flow_sim.rho
    I, J = D.shape
    log_w = np.full((I, J), -np.log(J))
    for _ in range(round(T / h)):
        S = _softmax(om @ (log_w - D / rho))
        z = log_w + h * S
        log_w = z - z.max(axis=1, keepdims=True)
        log_w -= np.log(np.exp(log_w).sum(axis=1, keepdims=True))
    return np.exp(log_w)


@pytest.mark.parametrize(
    ("graph", "J"),
    [
        pytest.param(_disconnected_graph(), 3, id="disconnected"),
        pytest.param(Graph.from_adjacency(np.zeros((1, 1))), 2, id="one-node"),
        pytest.param(_disconnected_graph(), 1, id="one-label"),
    ],
)
def test_nonlinear_flow_on_degenerate_problems(graph, J):
    sim = _flow(graph, J=J).similarity
    res = AssignmentFlow(sim, T=1.0).solve(GeometricEuler(step_size=0.1))
    np.testing.assert_allclose(res.W, _nonlinear_reference(sim, 1.0, 0.1), rtol=1e-12)
    seq = AssignmentFlow(sim, T=1.0).solve(LinearizedSequence(step_size=0.25))
    assert np.all(np.isfinite(seq.W)) and np.all(seq.W >= 0)
    np.testing.assert_allclose(seq.W.sum(axis=1), 1.0, rtol=1e-12)
    # both approximate the same flow
    np.testing.assert_allclose(seq.W, res.W, atol=0.05)


# =========================================================================== integrators
INTEG_CTOR_CASES = [
    case("Euler-h-zero", lambda: Euler(step_size=0), ValueError, "step_size must be > 0"),
    case("Euler-h-negative", lambda: Euler(step_size=-0.1), ValueError, "step_size must be > 0"),
    case("Euler-h-nan", lambda: Euler(step_size=NAN), ValueError, "step_size must be finite"),
    case("Euler-h-inf", lambda: Euler(step_size=INF), ValueError, "step_size must be finite"),
    case(
        "Euler-h-str",
        lambda: Euler(step_size="0.1"),
        TypeError,
        "step_size",
    ),
    case(
        "Euler-h-bool",
        lambda: Euler(step_size=True),
        TypeError,
        "step_size",
    ),
    case(
        "Euler-h-None",
        lambda: Euler(step_size=None),
        TypeError,
        "step_size",
    ),
    case(
        "EK-m-zero", lambda: ExponentialKrylov(krylov_dim=0), ValueError, "krylov_dim must be >= 1"
    ),
    case("EK-m-negative", lambda: ExponentialKrylov(krylov_dim=-3), ValueError, "krylov_dim"),
    case(
        "EK-m-float", lambda: ExponentialKrylov(krylov_dim=2.5), TypeError, "krylov_dim must be an"
    ),
    case("EK-m-bool", lambda: ExponentialKrylov(krylov_dim=True), TypeError, "krylov_dim"),
    case("EK-m-str", lambda: ExponentialKrylov(krylov_dim="10"), TypeError, "krylov_dim"),
    case("EK-m-None", lambda: ExponentialKrylov(krylov_dim=None), TypeError, "krylov_dim"),
    case("EK-tol-zero", lambda: ExponentialKrylov(tol=0.0), ValueError, "tol must be > 0"),
    case("EK-tol-negative", lambda: ExponentialKrylov(tol=-1e-8), ValueError, "tol must be > 0"),
    case("EK-tol-nan", lambda: ExponentialKrylov(tol=NAN), ValueError, "tol must be finite"),
    case("EK-tol-str", lambda: ExponentialKrylov(tol="x"), TypeError, "tol"),
    case("EK-substeps-zero", lambda: ExponentialKrylov(max_substeps=0), ValueError, "max_substeps"),
    case("EK-substeps-bool", lambda: ExponentialKrylov(max_substeps=False), TypeError, "max_subst"),
    case("EK-reorth-bad", lambda: ExponentialKrylov(reorthogonalize="x"), ValueError, "reorthog"),
    case("EK-reorth-None", lambda: ExponentialKrylov(reorthogonalize=None), ValueError, "reorthog"),
    case("GE-h-zero", lambda: GeometricEuler(step_size=0.0), ValueError, "step_size must be > 0"),
    case("GE-h-nan", lambda: GeometricEuler(step_size=NAN), ValueError, "step_size"),
    case(
        "GE-h-str",
        lambda: GeometricEuler(step_size="a"),
        TypeError,
        "step_size",
    ),
    case("GE-tol-zero", lambda: GeometricEuler(tol=0.0), ValueError, "tol must be > 0"),
    case("GE-tol-neg", lambda: GeometricEuler(tol=-1.0), ValueError, "tol must be > 0"),
    case(
        "GE-steps-zero", lambda: GeometricEuler(max_steps=0), ValueError, "max_steps must be >= 1"
    ),
    case("GE-steps-float", lambda: GeometricEuler(max_steps=10.0), TypeError, "max_steps"),
    case("GE-steps-bool", lambda: GeometricEuler(max_steps=True), TypeError, "max_steps"),
    case("LS-h-negative", lambda: LinearizedSequence(step_size=-1), ValueError, "step_size"),
    case("LS-steps-zero", lambda: LinearizedSequence(max_steps=0), ValueError, "max_steps"),
    case("LS-inner-str", lambda: LinearizedSequence(inner="euler"), TypeError, "inner must be"),
    case("LS-inner-class", lambda: LinearizedSequence(inner=Euler), TypeError, "inner must be"),
    case("LS-inner-flow", lambda: LinearizedSequence(inner=GeometricEuler()), TypeError, "inner"),
    case("LS-inner-None", lambda: LinearizedSequence(inner=None), TypeError, "inner must be"),
]


_zero_mv = LinearOperator((4, 4), matvec=np.zeros_like, rmatvec=np.zeros_like)


_B = np.ones(4)
INTEGRATE_CASES = []
for _name, _integ in [("Euler", Euler(0.1)), ("EK", ExponentialKrylov())]:
    INTEGRATE_CASES += [
        case(
            f"{_name}-T-zero", lambda i=_integ: i.integrate(_zero_mv, _B, 0.0), ValueError, "T must"
        ),
        case(
            f"{_name}-T-neg", lambda i=_integ: i.integrate(_zero_mv, _B, -1.0), ValueError, "T must"
        ),
        case(
            f"{_name}-T-nan", lambda i=_integ: i.integrate(_zero_mv, _B, NAN), ValueError, "T must"
        ),
        case(
            f"{_name}-T-str", lambda i=_integ: i.integrate(_zero_mv, _B, "1"), TypeError, "T must"
        ),
        case(
            f"{_name}-T-bool", lambda i=_integ: i.integrate(_zero_mv, _B, True), TypeError, "T must"
        ),
        case(
            f"{_name}-b-2d",
            lambda i=_integ: i.integrate(_zero_mv, np.ones((2, 2)), 1.0),
            ValueError,
            "b",
        ),
        case(
            f"{_name}-b-nan",
            lambda i=_integ: i.integrate(_zero_mv, _nan(4), 1.0),
            ValueError,
            "b must",
        ),
        case(
            f"{_name}-b-list",
            lambda i=_integ: i.integrate(_zero_mv, [1.0] * 4, 1.0),
            None,
            None,
        ),
        case(
            f"{_name}-b-str",
            lambda i=_integ: i.integrate(_zero_mv, "abc", 1.0),
            TypeError,
            "b",
        ),
        case(
            f"{_name}-b-int",
            lambda i=_integ: i.integrate(_zero_mv, np.ones(4, dtype=int), 1.0),
            None,
            None,
        ),
        case(
            f"{_name}-b-complex",
            lambda i=_integ: i.integrate(_zero_mv, _cplx(4), 1.0),
            TypeError,
            "b",
        ),
        case(
            f"{_name}-x0-shape",
            lambda i=_integ: i.integrate(_zero_mv, _B, 1.0, np.ones(3)),
            ValueError,
            "x0",
        ),
        case(
            f"{_name}-x0-nan",
            lambda i=_integ: i.integrate(_zero_mv, _B, 1.0, _nan(4)),
            ValueError,
            "x0",
        ),
        case(
            f"{_name}-operator-not-an-operator",
            lambda i=_integ: i.integrate(5, _B, 1.0),
            TypeError,
            "operator",
        ),
    ]


@pytest.mark.parametrize(("fn", "exc", "match"), INTEG_CTOR_CASES)
def test_integrator_settings_rejected(fn, exc, match):
    _assert_raises(fn, exc, match)


@pytest.mark.parametrize(("fn", "exc", "match"), INTEGRATE_CASES)
def test_integrate_inputs(fn, exc, match):
    if exc is None:  # legitimate input (a list or an int vector b): x(1) = b for A = 0
        x, _ = fn()
        np.testing.assert_allclose(x, np.ones(4), rtol=1e-12)
        return
    _assert_raises(fn, exc, match)


@pytest.mark.parametrize(
    ("integ", "n"),
    [
        pytest.param(Euler(step_size=1e-4), 1, id="euler-n1"),
        pytest.param(Euler(step_size=1e-4), 5, id="euler-n5"),
        pytest.param(ExponentialKrylov(krylov_dim=1), 1, id="krylov-m1-n1"),
        pytest.param(ExponentialKrylov(krylov_dim=3), 5, id="krylov-m3-n5"),
        pytest.param(ExponentialKrylov(krylov_dim=10), 5, id="krylov-m10-n5"),
    ],
)
def test_integrate_small_systems_against_expm(integ, n):
    rng = np.random.default_rng(n)
    A = -np.eye(n) + 0.3 * rng.standard_normal((n, n))
    b = rng.standard_normal(n)
    x0 = rng.standard_normal(n)
    bc, x0c = b.copy(), x0.copy()
    x, stats = integ.integrate(A, b, 0.7, x0)
    aug = np.zeros((n + 1, n + 1))
    aug[:n, :n], aug[:n, n] = A, b
    ref = (sla.expm(0.7 * aug) @ np.append(x0, 1.0))[:n]
    np.testing.assert_allclose(x, ref, atol=1e-3 if isinstance(integ, Euler) else 1e-7)
    np.testing.assert_array_equal(b, bc)
    np.testing.assert_array_equal(x0, x0c)
    assert stats.n_matvecs >= 1


# =========================================================================== losses
def _kl_flow_check(labels, J=3):
    return KLLoss(labels).check(_flow(J=J))


LOSS_CASES = [
    case("labels-negative", lambda: KLLoss([-1, 0, 1]), ValueError, "labels must be >= 0"),
    case("labels-float", lambda: KLLoss([0.5, 1.0]), TypeError, "labels must be integers"),
    case("labels-nan", lambda: KLLoss([NAN, 1.0]), TypeError, "labels must be integers"),
    case("labels-inf", lambda: KLLoss([INF, 1.0]), TypeError, "labels must be integers"),
    case("labels-str", lambda: KLLoss(["a", "b"]), TypeError, "labels must be integers"),
    case("labels-numeric-str", lambda: KLLoss(["0", "1"]), TypeError, "labels must be integers"),
    case("labels-bool", lambda: KLLoss([True, False]), TypeError, "labels must be integers"),
    case("labels-complex", lambda: KLLoss([1 + 0j]), TypeError, "labels must be integers"),
    case("labels-None", lambda: KLLoss(None), TypeError, "labels"),
    case("labels-object", lambda: KLLoss(np.array([1, None], dtype=object)), TypeError, "labels"),
    case("labels-empty", lambda: KLLoss([]), ValueError, "labels must not be empty"),
    case("labels-empty-int", lambda: KLLoss(np.zeros(0, int)), ValueError, "must not be empty"),
    case("labels-too-large", lambda: _kl_flow_check(np.full(9, 3)), ValueError, r"\[0, 3\)"),
    case(
        "labels-count", lambda: _kl_flow_check(np.zeros(8, int)), ValueError, "one entry per node"
    ),
    case(
        "labels-one-label", lambda: _kl_flow_check(np.arange(9) % 2, J=1), ValueError, r"\[0, 1\)"
    ),
    case("sw-negative", lambda: KLLoss(Y, sample_weight=-np.ones(9)), ValueError, "sample_weight"),
    case("sw-nan", lambda: KLLoss(Y, sample_weight=_nan(9)), ValueError, "sample_weight"),
    case("sw-inf", lambda: KLLoss(Y, sample_weight=_inf(9)), ValueError, "sample_weight"),
    case("sw-shape", lambda: KLLoss(Y, sample_weight=np.ones(8)), ValueError, "sample_weight"),
    case("sw-zero-sum", lambda: KLLoss(Y, sample_weight=np.zeros(9)), ValueError, "positive sum"),
    case("sw-str", lambda: KLLoss(Y, sample_weight=_str(9)), TypeError, "sample_weight"),
    case("sw-words", lambda: KLLoss(Y, sample_weight="heavy"), TypeError, "sample_weight"),
    case("sw-complex", lambda: KLLoss(Y, sample_weight=_cplx(9)), TypeError, "sample_weight"),
    case("sw-bool", lambda: KLLoss(Y, sample_weight=_bool(9)), TypeError, "sample_weight"),
    case("data_value-V-shape", lambda: KL.data_value(np.zeros((8, 3))), ValueError, "V must have"),
    case("data_value-V-1d", lambda: KL.data_value(np.zeros(27)), ValueError, "V must have"),
    case("data_value-labels>=J", lambda: KL.data_value(np.zeros((9, 2))), ValueError, "labels"),
    case("data_grad-V-shape", lambda: KL.data_gradient(np.zeros((9, 3, 1))), ValueError, "V must"),
    case("data_grad-V-nan", lambda: KL.data_gradient(_nan((9, 3))), ValueError, "V must contain"),
    case("data_value-V-str", lambda: KL.data_value(_str((9, 3))), TypeError, "V"),
    case("tau-negative", lambda: TangentSpaceRegularizer(tau=-1.0), ValueError, "tau must be >= 0"),
    case("tau-nan", lambda: TangentSpaceRegularizer(tau=NAN), ValueError, "tau must be finite"),
    case("tau-inf", lambda: TangentSpaceRegularizer(tau=INF), ValueError, "tau must be finite"),
    case("tau-str", lambda: TangentSpaceRegularizer(tau="0.1"), TypeError, "tau must be a real"),
    case("tau-bool", lambda: TangentSpaceRegularizer(tau=True), TypeError, "tau"),
    case("tau-None", lambda: TangentSpaceRegularizer(tau=None), TypeError, "tau"),
    case("reg-weights-str", lambda: TangentSpaceRegularizer().reg_value("w"), TypeError, "weights"),
    case(
        "reg-grad-array",
        lambda: TangentSpaceRegularizer().reg_gradient(OM.values),
        TypeError,
        "weights",
    ),
    case("composite-term", lambda: CompositeLoss([KL, 5]), TypeError, "terms must be Loss"),
    case("composite-int", lambda: CompositeLoss(5), TypeError, "terms"),
    case("composite-str", lambda: CompositeLoss("kl"), TypeError, "terms"),
    case("add-int", lambda: KL + 5, TypeError, "unsupported operand"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), LOSS_CASES)
def test_losses_reject(fn, exc, match):
    _assert_raises(fn, exc, match)


def test_kl_loss_legit_variants():
    y = np.array([0.0, 1.0, 2.0] * 3)
    yc = y.copy()
    assert KLLoss(y).labels.tolist() == Y.tolist()  # integral floats are fine
    np.testing.assert_array_equal(y, yc)
    img = Y.reshape(3, 3)
    assert KLLoss(img).labels.tolist() == Y.tolist()  # label images are flattened
    sw = np.arange(1.0, 10.0)
    swc = sw.copy()
    loss = KLLoss(Y, sample_weight=sw)
    np.testing.assert_array_equal(sw, swc)
    V = np.random.default_rng(0).standard_normal((9, 3))
    Vc = V.copy()
    p = _softmax(3 * V)
    ref = -(sw * np.log(p[np.arange(9), Y])).sum() / sw.sum()
    np.testing.assert_allclose(loss.data_value(V), ref, rtol=1e-13)
    np.testing.assert_array_equal(V, Vc)


@pytest.mark.parametrize(("I", "J"), [(1, 1), (1, 3), (4, 1)], ids=lambda v: str(v))
def test_kl_loss_degenerate_sizes(I, J):
    y = np.arange(I) % J
    loss = KLLoss(y)
    V = np.random.default_rng(1).standard_normal((I, J))
    V -= V.mean(axis=1, keepdims=True)
    p = _softmax(J * V)
    np.testing.assert_allclose(loss.data_value(V), -np.log(p[np.arange(I), y]).mean(), rtol=1e-13)
    onehot = np.eye(J)[y]
    np.testing.assert_allclose(loss.data_gradient(V), J * (p - onehot) / I, atol=1e-15)
    if J == 1:
        assert loss.data_value(V) == 0.0


def test_tangent_regularizer_isolated_nodes():
    g = _disconnected_graph()
    om = _weights(g)
    reg = TangentSpaceRegularizer(tau=0.3)
    ref_val, ref_grad = 0.0, np.zeros(g.nnz)
    for i in range(g.n_nodes):
        sl = slice(g.indptr[i], g.indptr[i + 1])
        c = np.log(om.values[sl]) - np.log(om.values[sl]).mean()
        ref_val += 0.15 * c @ c
        ref_grad[sl] = 0.3 * c / om.values[sl]
    np.testing.assert_allclose(reg.reg_value(om), ref_val, rtol=1e-13)
    np.testing.assert_allclose(reg.reg_gradient(om), ref_grad, rtol=1e-13, atol=1e-15)
    iso = g.indptr[np.flatnonzero(g.degrees == 1)]
    np.testing.assert_array_equal(reg.reg_gradient(om)[iso], 0.0)


# =========================================================================== gradient estimators
ESTIMATORS = {
    "low_rank": ClosedFormLowRank(krylov_dim=8, rank=2),
    "quadrature": AdjointQuadrature(n_nodes=8),
    "dense": DenseFrechet(),
    "finite_diff": FiniteDiff(),
}

EST_CTOR_CASES = [
    case("CFLR-m-zero", lambda: ClosedFormLowRank(krylov_dim=0), ValueError, "krylov_dim must be"),
    case("CFLR-m-neg", lambda: ClosedFormLowRank(krylov_dim=-1), ValueError, "krylov_dim"),
    case("CFLR-m-float", lambda: ClosedFormLowRank(krylov_dim=2.5), TypeError, "krylov_dim"),
    case("CFLR-m-bool", lambda: ClosedFormLowRank(krylov_dim=True), TypeError, "krylov_dim"),
    case("CFLR-m-str", lambda: ClosedFormLowRank(krylov_dim="10"), TypeError, "krylov_dim"),
    case("CFLR-rank-zero", lambda: ClosedFormLowRank(rank=0), ValueError, "rank must be >= 1"),
    case("CFLR-rank-bool", lambda: ClosedFormLowRank(rank=True), TypeError, "rank"),
    case("CFLR-rank-None", lambda: ClosedFormLowRank(rank=None), TypeError, "rank"),
    case("CFLR-reorth", lambda: ClosedFormLowRank(reorthogonalize="x"), ValueError, "reorthog"),
    case("CFLR-factors-str", lambda: ClosedFormLowRank(return_factors="no"), TypeError, "return_f"),
    case("CFLR-lowmem-int", lambda: ClosedFormLowRank(low_memory=2), TypeError, "low_memory"),
    case("AQ-nodes-zero", lambda: AdjointQuadrature(n_nodes=0), ValueError, "n_nodes must be"),
    case("AQ-nodes-float", lambda: AdjointQuadrature(n_nodes=4.0), TypeError, "n_nodes"),
    case("AQ-tol-zero", lambda: AdjointQuadrature(tol=0.0), ValueError, "tol must be > 0"),
    case("AQ-tol-nan", lambda: AdjointQuadrature(tol=NAN), ValueError, "tol must be finite"),
    case("AQ-tol-str", lambda: AdjointQuadrature(tol="1e-3"), TypeError, "tol must be a real"),
    case("AQ-tol-bool", lambda: AdjointQuadrature(tol=True), TypeError, "tol"),
    case("AQ-m-neg", lambda: AdjointQuadrature(krylov_dim=-2), ValueError, "krylov_dim"),
    case("FD-eps-zero", lambda: FiniteDiff(eps=0.0), ValueError, "eps must be > 0"),
    case("FD-eps-neg", lambda: FiniteDiff(eps=-1e-6), ValueError, "eps must be > 0"),
    case("FD-eps-nan", lambda: FiniteDiff(eps=NAN), ValueError, "eps must be finite"),
    case("FD-eps-str", lambda: FiniteDiff(eps="1e-6"), TypeError, "eps must be a real"),
    case("FD-eps-bool", lambda: FiniteDiff(eps=True), TypeError, "eps"),
    case("FD-eps-None", lambda: FiniteDiff(eps=None), TypeError, "eps"),
    case("FD-tol-zero", lambda: FiniteDiff(tol=0), ValueError, "tol must be > 0"),
    case("FD-edges-zero", lambda: FiniteDiff(max_edges=0), ValueError, "max_edges must be"),
    case("FD-edges-bool", lambda: FiniteDiff(max_edges=True), TypeError, "max_edges"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), EST_CTOR_CASES)
def test_estimator_settings_rejected(fn, exc, match):
    _assert_raises(fn, exc, match)


def _w0_flow():
    return _flow(W0=np.full((9, 3), 1 / 3))


EST_CALL_CASES = []
for _ename, _est in ESTIMATORS.items():
    EST_CALL_CASES += [
        case(f"{_ename}-flow-str", lambda e=_est: e.gradient("f", KL), TypeError, "flow must be a"),
        case(
            f"{_ename}-flow-AF",
            lambda e=_est: e.gradient(AssignmentFlow(SIM), KL),
            TypeError,
            "flow",
        ),
        case(
            f"{_ename}-flow-W0", lambda e=_est: e.gradient(_w0_flow(), KL), ValueError, "barycenter"
        ),
        case(
            f"{_ename}-loss-str", lambda e=_est: e.gradient(FLOW, "kl"), TypeError, "loss must be"
        ),
        case(
            f"{_ename}-loss-cls", lambda e=_est: e.gradient(FLOW, KLLoss), TypeError, "loss must be"
        ),
        case(
            f"{_ename}-labels>=J",
            lambda e=_est: e.value_and_gradient(FLOW, KLLoss(np.full(9, 5))),
            ValueError,
            r"labels must lie in \[0, 3\)",
        ),
        case(
            f"{_ename}-labels-count",
            lambda e=_est: e.estimate(FLOW, KLLoss(np.zeros(4, int))),
            ValueError,
            "one entry per node",
        ),
    ]
EST_CALL_CASES += [
    case(
        "finite_diff-max_edges",
        lambda: FiniteDiff(max_edges=5).gradient(FLOW, KL),
        ValueError,
        "max_edges",
    ),
    case(
        "dense-too-large",
        lambda: DenseFrechet().gradient(
            _flow(GridGraph((40, 40)), J=2), KLLoss(np.zeros(1600, int))
        ),
        ValueError,
        "DenseFrechet forms",
    ),
]

_U = np.zeros((9, 3))
WG_CASES = [
    case("flow-str", lambda: weight_gradient("f", [_U], [_U], None), TypeError, "flow must be"),
    case(
        "Us-Ws-length", lambda: weight_gradient(FLOW, [_U, _U], [_U], None), ValueError, "Us and Ws"
    ),
    case(
        "Us-shape", lambda: weight_gradient(FLOW, [np.zeros((9, 2))], [_U], None), ValueError, "Us"
    ),
    case("Ws-shape", lambda: weight_gradient(FLOW, [_U], [np.zeros(27)], None), ValueError, "Ws"),
    case("Us-nan", lambda: weight_gradient(FLOW, [_nan((9, 3))], [_U], None), ValueError, "Us"),
    case("G12-shape", lambda: weight_gradient(FLOW, [_U], [_U], np.zeros(9)), ValueError, "G12"),
    case("G12-str", lambda: weight_gradient(FLOW, [_U], [_U], "g"), TypeError, "G12"),
    case("Us-not-list", lambda: weight_gradient(FLOW, 5, [_U], None), TypeError, "Us"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), EST_CALL_CASES)
def test_estimator_calls_rejected(fn, exc, match):
    _assert_raises(fn, exc, match)


@pytest.mark.parametrize(("fn", "exc", "match"), WG_CASES)
def test_weight_gradient_rejects(fn, exc, match):
    _assert_raises(fn, exc, match)


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize(
    ("graph", "J"),
    [
        pytest.param(_disconnected_graph(), 2, id="disconnected"),
        pytest.param(Graph.from_adjacency(np.zeros((1, 1))), 3, id="one-node"),
        pytest.param(Graph.from_adjacency(np.zeros((3, 3))), 2, id="all-isolated"),
    ],
)
def test_gradients_on_degenerate_graphs_match_dense_fd(name, graph, J):
    flow = _flow(graph, J=J, rho=0.7, T=1.5, seed=2)
    y = np.arange(graph.n_nodes) % J
    ref = _dense_gradient(flow, y)
    est = ESTIMATORS[name]
    if name == "low_rank":  # full rank: exact up to the Krylov error
        est = ClosedFormLowRank(krylov_dim=flow.size + 1, rank=flow.size)
    value, grad = est.value_and_gradient(flow, KLLoss(y))
    assert np.all(np.isfinite(grad)) and grad.shape == (graph.nnz,)
    np.testing.assert_allclose(value, _dense_loss(flow, y, flow.weights.values), rtol=1e-8)
    np.testing.assert_allclose(grad, ref, atol=1e-7 * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_gradients_with_one_label_are_zero(name):
    flow = _flow(_disconnected_graph(), J=1)
    value, grad = ESTIMATORS[name].value_and_gradient(flow, KLLoss(np.zeros(7, int)))
    assert value == 0.0
    np.testing.assert_array_equal(grad, 0.0)


# =========================================================================== learning
LEARN_CASES = [
    case("flow-str", lambda: riemannian_gradient_descent("f", KL), TypeError, "flow must be"),
    case("loss-int", lambda: riemannian_gradient_descent(FLOW, 5), TypeError, "loss must be"),
    case(
        "estimator-unknown",
        lambda: riemannian_gradient_descent(FLOW, KL, "nope"),
        ValueError,
        "Unknown gradient_estimator 'nope'",
    ),
    case(
        "estimator-typo",
        lambda: riemannian_gradient_descent(FLOW, KL, "closed_form_lowrank"),
        ValueError,
        "Did you mean 'closed_form_low_rank'",
    ),
    case("estimator-int", lambda: riemannian_gradient_descent(FLOW, KL, 5), TypeError, "estimator"),
    case(
        "estimator-None", lambda: riemannian_gradient_descent(FLOW, KL, None), TypeError, "gradient"
    ),
    case(
        "estimator-integrator",
        lambda: riemannian_gradient_descent(FLOW, KL, Euler()),
        TypeError,
        "estimator",
    ),
    case(
        "step-zero",
        lambda: riemannian_gradient_descent(FLOW, KL, step_size=0),
        ValueError,
        "step_size",
    ),
    case(
        "step-neg",
        lambda: riemannian_gradient_descent(FLOW, KL, step_size=-1),
        ValueError,
        "step_size",
    ),
    case(
        "step-nan",
        lambda: riemannian_gradient_descent(FLOW, KL, step_size=NAN),
        ValueError,
        "step_size",
    ),
    case(
        "step-bool",
        lambda: riemannian_gradient_descent(FLOW, KL, step_size=True),
        TypeError,
        "step_size",
    ),
    case(
        "iter-zero",
        lambda: riemannian_gradient_descent(FLOW, KL, max_iter=0),
        ValueError,
        "max_iter",
    ),
    case(
        "iter-float",
        lambda: riemannian_gradient_descent(FLOW, KL, max_iter=2.0),
        TypeError,
        "max_iter",
    ),
    case(
        "iter-bool",
        lambda: riemannian_gradient_descent(FLOW, KL, max_iter=True),
        TypeError,
        "max_iter",
    ),
    case(
        "tol-neg",
        lambda: riemannian_gradient_descent(FLOW, KL, tol=-1.0),
        ValueError,
        "tol must be",
    ),
    case(
        "tol-nan", lambda: riemannian_gradient_descent(FLOW, KL, tol=NAN), ValueError, "tol must be"
    ),
    case(
        "maxlog-zero",
        lambda: riemannian_gradient_descent(FLOW, KL, max_log_step=0),
        ValueError,
        "max_log_step",
    ),
    case(
        "maxlog-neg",
        lambda: riemannian_gradient_descent(FLOW, KL, max_log_step=-1),
        ValueError,
        "max_log_step",
    ),
    case(
        "maxlog-nan",
        lambda: riemannian_gradient_descent(FLOW, KL, max_log_step=NAN),
        ValueError,
        "max_log_step",
    ),
    case(
        "maxlog-str",
        lambda: riemannian_gradient_descent(FLOW, KL, max_log_step="5"),
        TypeError,
        "max_log_step",
    ),
    case(
        "callback-int",
        lambda: riemannian_gradient_descent(FLOW, KL, callback=5),
        TypeError,
        "callback",
    ),
    case(
        "labels>=J",
        lambda: riemannian_gradient_descent(FLOW, KLLoss(np.full(9, 3))),
        ValueError,
        r"labels must lie in \[0, 3\)",
    ),
    case(
        "mu-weights-str",
        lambda: multiplicative_update("w", np.zeros(G.nnz), 1.0),
        TypeError,
        "weights",
    ),
    case(
        "mu-grad-shape", lambda: multiplicative_update(OM, np.zeros(3), 1.0), ValueError, "gradient"
    ),
    case(
        "mu-grad-nan", lambda: multiplicative_update(OM, _nan(G.nnz), 1.0), ValueError, "gradient"
    ),
    case("mu-grad-str", lambda: multiplicative_update(OM, _str(G.nnz), 1.0), TypeError, "gradient"),
    case(
        "mu-grad-complex",
        lambda: multiplicative_update(OM, _cplx(G.nnz), 1.0),
        TypeError,
        "gradient",
    ),
    case("mu-grad-None", lambda: multiplicative_update(OM, None, 1.0), TypeError, "gradient"),
    case(
        "mu-step-nan",
        lambda: multiplicative_update(OM, np.zeros(G.nnz), NAN),
        ValueError,
        "step_size",
    ),
    case(
        "mu-step-neg",
        lambda: multiplicative_update(OM, np.zeros(G.nnz), -1.0),
        ValueError,
        "step_size",
    ),
    case(
        "mu-step-str",
        lambda: multiplicative_update(OM, np.zeros(G.nnz), "1"),
        TypeError,
        "step_size",
    ),
    case(
        "mu-step-inf",
        lambda: multiplicative_update(OM, np.ones(G.nnz), INF),
        ValueError,
        "step_size",
    ),
    case(
        "mu-maxlog-zero",
        lambda: multiplicative_update(OM, np.zeros(G.nnz), 1.0, 0.0),
        ValueError,
        "max_log_step",
    ),
    case(
        "mu-maxlog-nan",
        lambda: multiplicative_update(OM, np.zeros(G.nnz), 1.0, NAN),
        ValueError,
        "max_log_step",
    ),
]


@pytest.mark.parametrize(("fn", "exc", "match"), LEARN_CASES)
def test_learning_rejects(fn, exc, match):
    _assert_raises(fn, exc, match)


@pytest.mark.parametrize("max_log_step", [None, 0.5])
def test_multiplicative_update_on_isolated_nodes(max_log_step):
    g = _disconnected_graph()
    om = _weights(g)
    grad = np.random.default_rng(0).standard_normal(g.nnz)
    gc = grad.copy()
    new = multiplicative_update(om, grad, 0.3, max_log_step)
    np.testing.assert_array_equal(grad, gc)
    step = 0.3 * grad
    ref = np.empty(g.nnz)
    for i in range(g.n_nodes):
        sl = slice(g.indptr[i], g.indptr[i + 1])
        s = step[sl]
        if max_log_step is not None:
            c = np.abs(s - s.mean()).max()
            s = s * min(1.0, max_log_step / max(c, 1e-300))
        z = om.values[sl] * np.exp(-s)
        ref[sl] = z / z.sum()
    np.testing.assert_allclose(new.values, ref, rtol=1e-12)
    np.testing.assert_array_equal(new.values[g.indptr[np.flatnonzero(g.degrees == 1)]], 1.0)
    # a zero step changes nothing
    np.testing.assert_allclose(multiplicative_update(om, grad, 0.0).values, om.values, rtol=1e-15)


def test_descent_on_disconnected_graph_runs_and_stays_valid():
    g = _disconnected_graph()
    flow = _flow(g, J=2, rho=0.5, T=1.0)
    y = np.array([0, 0, 1, 1, 0, 1, 0])
    res = riemannian_gradient_descent(
        flow, KLLoss(y) + TangentSpaceRegularizer(1e-3), "dense_frechet", max_iter=3
    )
    assert res.n_iter == 3
    for key in ("loss", "grad_norm"):
        assert np.all(np.isfinite(res.history[key]))
    assert res.history["loss"].min() <= res.history["loss"][0]
    np.testing.assert_allclose(np.add.reduceat(res.weights.values, g.indptr[:-1]), 1.0)
    np.testing.assert_array_equal(res.weights.values[g.indptr[[5, 6]]], 1.0)
