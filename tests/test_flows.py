"""The linearized and nonlinear assignment flows against independent references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
from helpers import (
    BAD,
    INF,
    NAN,
    bool_array,
    case,
    complex_array,
    dense_laf_solution,
    dense_laf_system,
    disconnected_graph,
    inf_array,
    nan_array,
    small_laf,
    str_array,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import LinearOperator, expm_multiply
from strategies import ref_softmax

import assignflow as af
from assignflow._simplex import replicator as _replicator
from assignflow._simplex import softmax as _softmax


def random_problem(seed, *, grid=True, shape=(4, 5), n_nodes=17, J=3, rho=0.7):
    rng = np.random.default_rng(seed)
    if grid:
        g = af.GridGraph(shape, radius=1)
    else:
        a = sp.random(n_nodes, n_nodes, density=0.2, random_state=seed)
        g = af.Graph.from_adjacency(a)
    om = af.Weights.normalized(g, rng.uniform(0.05, 1.0, g.nnz))
    D = rng.uniform(0, 2, (g.n_nodes, J))
    return af.SimilarityOperator(om, D, rho=rho)


def dense_A(flow):
    """A^J = Diag(R_{W0}) Diag(R_{S0}) (Ω ⊗ I_J) Diag(1/W0), built densely (tiny only)."""
    Om = flow.weights.to_csr().toarray()
    J = flow.n_labels
    RS = sla.block_diag(*[np.diag(s) - np.outer(s, s) for s in flow.S0])
    W0 = flow.base_point
    RW = sla.block_diag(*[np.diag(w) - np.outer(w, w) for w in W0])
    return RW @ RS @ np.kron(Om, np.eye(J)) @ np.diag(1.0 / W0.ravel())


def dense_solution(flow):
    """v(T): last column of expm of the augmented matrix [[T A, T b], [0, 0]] (eq. 2.24)."""
    n, T = flow.size, flow.T
    aug = np.zeros((n + 1, n + 1))
    aug[:n, :n] = T * dense_A(flow)
    aug[:n, n] = T * flow.B.ravel()
    return sla.expm(aug)[:n, n].reshape(flow.shape)


def relerr(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("grid", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_operator_matches_kronecker_form(seed, grid):
    S = random_problem(seed, grid=grid)
    flow = af.LinearizedAssignmentFlow(S, T=1.0)
    A = dense_A(flow)
    E = np.eye(flow.size)
    cols = np.column_stack([flow.matvec(e) for e in E])
    np.testing.assert_allclose(cols, A, atol=1e-14)
    rows = np.column_stack([flow.rmatvec(e) for e in E])
    np.testing.assert_allclose(rows, A.T, atol=1e-14)
    # at the barycenter: A V = R_S0(Ω V), B = Π0 S0 / J
    V = np.random.default_rng(seed).standard_normal(flow.shape)
    np.testing.assert_allclose(flow.A(V), _replicator(flow.S0, S.weights.apply(V)), atol=1e-14)
    J = flow.n_labels
    np.testing.assert_allclose(flow.B, (flow.S0 - flow.S0.mean(1, keepdims=True)) / J, atol=1e-15)
    # S0 = softmax(-Ω D / ρ): Ω enters both A and B
    np.testing.assert_allclose(flow.S0, _softmax(-S.weights.apply(S.distances) / S.rho))


@pytest.mark.parametrize("seed", range(3))
def test_operator_at_general_point(seed):
    S = random_problem(seed)
    W0 = S.manifold.random_point(seed)
    flow = af.LinearizedAssignmentFlow(S, T=0.7, W0=W0)
    A = dense_A(flow)
    E = np.eye(flow.size)
    np.testing.assert_allclose(np.column_stack([flow.matvec(e) for e in E]), A, atol=1e-12)
    np.testing.assert_allclose(np.column_stack([flow.rmatvec(e) for e in E]), A.T, atol=1e-12)
    np.testing.assert_allclose(flow.B, _replicator(W0, S.similarity(W0)), atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.booleans(), st.integers(1, 5))
def test_A_maps_T0_into_T0(seed, at_bary, J):
    S = random_problem(seed, grid=seed % 2 == 0, J=J)
    W0 = None if at_bary else S.manifold.random_point(seed)
    flow = af.LinearizedAssignmentFlow(S, W0=W0)
    V = S.manifold.random_tangent(seed)
    assert S.manifold.is_tangent(flow.A(V))
    assert S.manifold.is_tangent(flow.B)
    # and Aᵀ is the adjoint: <A V, U> = <V, Aᵀ U>
    U = np.random.default_rng(seed + 1).standard_normal(flow.shape)
    assert np.isclose(np.sum(flow.A(V) * U), np.sum(V * flow.AT(U)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("grid", [True, False])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("T", [0.5, 3.0, 12.0])
def test_krylov_solution_matches_dense_expm(seed, grid, T):
    S = random_problem(seed, grid=grid, J=2 + seed % 3)
    flow = af.LinearizedAssignmentFlow(S, T=T)
    res = flow.solve(af.ExponentialKrylov(krylov_dim=10, tol=1e-13))
    ref = dense_solution(flow)
    assert relerr(res.V, ref) <= 1e-10
    assert S.manifold.is_tangent(res.V)
    # W(T) = Exp_1(V(T)) = softmax(J V); labels = argmax V
    np.testing.assert_allclose(res.W, _softmax(flow.n_labels * ref), rtol=1e-9)
    np.testing.assert_array_equal(res.labels, np.argmax(res.W, axis=1))
    assert S.manifold.belongs(res.W)


@pytest.mark.parametrize("seed", range(3))
def test_krylov_solution_matches_expm_multiply(seed):
    S = random_problem(seed, grid=False, n_nodes=30, J=4)
    flow = af.LinearizedAssignmentFlow(S, T=5.0)
    aug = flow.augmented_operator()
    n = flow.size
    e_k = np.zeros(n + 1)
    e_k[n] = 1.0
    ref = expm_multiply(aug, e_k, traceA=0.0)[:n]
    res = flow.solve(af.ExponentialKrylov(tol=1e-13))
    assert relerr(res.V.ravel(), ref) <= 1e-10


@pytest.mark.parametrize("seed", range(3))
def test_krylov_at_general_point_matches_dense(seed):
    S = random_problem(seed, J=3)
    flow = af.LinearizedAssignmentFlow(S, T=2.0, W0=S.manifold.random_point(seed + 5))
    res = flow.solve(af.ExponentialKrylov(tol=1e-13))
    ref = dense_solution(flow)
    assert relerr(res.V, ref) <= 1e-10
    np.testing.assert_allclose(res.W, S.manifold.exp(flow.W0, ref), rtol=1e-9)


def test_augmented_operator_transpose():
    flow = af.LinearizedAssignmentFlow(random_problem(1), T=1.5)
    aug = flow.augmented_operator()
    n = flow.size
    dense = np.column_stack([aug.matvec(e) for e in np.eye(n + 1)])
    dense_t = np.column_stack([aug.rmatvec(e) for e in np.eye(n + 1)])
    np.testing.assert_allclose(dense_t, dense.T, atol=1e-14)
    assert np.all(dense[n] == 0)


def test_euler_converges_with_order_one():
    flow = af.LinearizedAssignmentFlow(random_problem(2), T=2.0)
    ref = dense_solution(flow)
    hs = np.array([0.2, 0.1, 0.05, 0.025])
    errs = np.array([relerr(flow.solve(af.Euler(step_size=h)).V, ref) for h in hs])
    slopes = np.diff(np.log(errs)) / np.diff(np.log(hs))
    assert np.all(np.abs(slopes - 1.0) < 0.1), slopes
    res = flow.solve(af.Euler(step_size=0.3))
    assert res.stats.n_steps == 7 and res.stats.n_matvecs == 7


def test_long_horizon_substeps_engage():
    S = random_problem(3, grid=False, n_nodes=40, J=3, rho=0.05)
    flow = af.LinearizedAssignmentFlow(S, T=60.0)
    res = flow.solve(af.ExponentialKrylov(krylov_dim=4, tol=1e-10))
    assert res.stats.n_steps > 1
    assert relerr(res.V, dense_solution(flow)) < 1e-8


def test_zero_data_term_gives_zero_flow():
    g = af.GridGraph((3, 3))
    S = af.SimilarityOperator(af.Weights.uniform(g), np.ones((9, 3)), rho=1.0)
    res = af.LinearizedAssignmentFlow(S, T=5.0).solve()
    assert np.all(res.V == 0)
    assert res.stats.n_matvecs == 0
    np.testing.assert_allclose(res.W, 1 / 3)


def test_single_label_and_single_node():
    g = af.GridGraph((2, 2))
    S = af.SimilarityOperator(af.Weights.uniform(g), np.zeros((4, 1)))
    res = af.LinearizedAssignmentFlow(S).solve()
    np.testing.assert_array_equal(res.W, 1.0)
    g1 = af.GridGraph((1, 1))
    S1 = af.SimilarityOperator(af.Weights.uniform(g1), np.array([[0.0, 1.0]]), rho=0.5)
    r1 = af.LinearizedAssignmentFlow(S1, T=4.0).solve()
    assert r1.labels.tolist() == [0]
    nl = af.AssignmentFlow(S1).solve()
    assert nl.labels.tolist() == [0]


# --------------------------------------------------------------------------- nonlinear
def test_nonlinear_flow_converges_to_integral_assignments():
    S = random_problem(4, shape=(6, 6), J=3, rho=0.5)
    res = af.AssignmentFlow(S).solve(af.GeometricEuler(step_size=0.2, tol=1e-4))
    assert res.stats.converged
    ent = res.stats.entropy
    assert ent[-1] < 1e-4 and ent[0] > ent[-1]
    assert np.all(res.W.max(axis=1) > 0.99)
    assert np.all(np.isfinite(res.V)) and S.manifold.is_tangent(res.V)
    np.testing.assert_allclose(res.W, _softmax(3 * res.V), atol=1e-12)


def test_geometric_euler_step_is_lift_of_similarity():
    S = random_problem(5, J=4)
    h = 0.3
    res = af.AssignmentFlow(S, T=h).solve(af.GeometricEuler(step_size=h))
    W0 = S.manifold.barycenter()
    np.testing.assert_allclose(res.W, S.manifold.lift(W0, h * S.similarity(W0)), rtol=1e-12)
    assert res.stats.n_steps == 1


def test_geometric_euler_approaches_the_flow_with_order_one():
    S = random_problem(6, J=3)
    # reference by a tiny step; W(T) must converge with the step
    ref = af.AssignmentFlow(S, T=1.0).solve(af.GeometricEuler(step_size=1 / 800, max_steps=900)).W
    errs = [
        np.abs(af.AssignmentFlow(S, T=1.0).solve(af.GeometricEuler(step_size=h)).W - ref).max()
        for h in (0.1, 0.05, 0.025)
    ]
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(rates > 0.8), rates


def test_linearized_sequence_approaches_nonlinear_flow():
    S = random_problem(7, shape=(5, 5), J=3, rho=0.5)
    T = 2.0
    ref = af.AssignmentFlow(S, T=T).solve(af.GeometricEuler(step_size=T / 4000, max_steps=4000)).W
    errs = [
        np.abs(af.AssignmentFlow(S, T=T).solve(af.LinearizedSequence(step_size=h)).W - ref).max()
        for h in (1.0, 0.5, 0.25, 0.125)
    ]
    assert all(a > b for a, b in itertools.pairwise(errs)), errs
    assert errs[-1] < 0.1 * errs[0]


def test_linearized_sequence_single_step_is_the_laf():
    S = random_problem(8, J=3)
    T = 1.5
    tight = af.ExponentialKrylov(tol=1e-13)
    seq = af.AssignmentFlow(S, T=T).solve(af.LinearizedSequence(step_size=T, inner=tight))
    laf = af.LinearizedAssignmentFlow(S, T=T).solve(tight)
    np.testing.assert_allclose(seq.W, laf.W, rtol=1e-9, atol=1e-12)


def test_linearized_sequence_survives_saturation():
    # relinearising close to vertices: the lifted coordinates keep it finite
    S = random_problem(9, shape=(5, 5), J=3, rho=0.05)
    res = af.AssignmentFlow(S).solve(af.LinearizedSequence(step_size=2.0, tol=1e-8))
    assert res.stats.converged
    assert np.all(np.isfinite(res.W)) and np.all(np.isfinite(res.V))


def test_nonlinear_flow_does_not_converge_warns():
    S = random_problem(1, J=3, rho=10.0)
    with pytest.warns(RuntimeWarning, match="max_steps"):
        res = af.AssignmentFlow(S).solve(af.GeometricEuler(step_size=0.01, max_steps=3))
    assert not res.stats.converged


# --------------------------------------------------------------------------- API and errors
def test_solve_accepts_names_and_classes():
    flow = af.LinearizedAssignmentFlow(random_problem(0), T=1.0)
    a = flow.solve("exponential_krylov").V
    b = flow.solve(af.ExponentialKrylov).V
    np.testing.assert_array_equal(a, b)
    assert af.AssignmentFlow(flow.similarity, T=1.0).solve("geometric_euler").stats.n_steps == 10


def test_wrong_integrator_kind():
    S = random_problem(0)
    with pytest.raises(TypeError, match="LinearIntegrator"):
        af.LinearizedAssignmentFlow(S).solve(af.GeometricEuler())
    with pytest.raises(TypeError, match="FlowIntegrator"):
        af.AssignmentFlow(S).solve(af.Euler())
    with pytest.raises(ValueError, match="integrator"):
        af.AssignmentFlow(S).solve("eulr")


@pytest.mark.parametrize("T", [0, -1.0, np.nan, np.inf])
def test_bad_horizon(T):
    with pytest.raises(ValueError, match="T"):
        af.LinearizedAssignmentFlow(random_problem(0), T=T)
    with pytest.raises(ValueError, match="T"):
        af.AssignmentFlow(random_problem(0), T=T)


def test_bad_flow_arguments():
    S = random_problem(0)
    with pytest.raises(TypeError, match="similarity"):
        af.LinearizedAssignmentFlow("S")
    with pytest.raises(TypeError, match="T"):
        af.LinearizedAssignmentFlow(S, T="1")
    with pytest.raises(ValueError, match="W0"):
        af.LinearizedAssignmentFlow(S, W0=np.ones(S.manifold.shape))
    with pytest.raises(ValueError, match="W0"):
        af.LinearizedAssignmentFlow(S, W0=np.ones((2, 2)))
    flow = af.LinearizedAssignmentFlow(S)
    with pytest.raises(ValueError, match="V"):
        flow.A(np.ones((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        flow.A(np.full(flow.shape, np.nan))
    with pytest.raises(ValueError, match="U"):
        flow.AT(np.ones(7))


def test_euler_divergence_is_reported():
    flow = af.LinearizedAssignmentFlow(random_problem(0, rho=1.0), T=1e8)
    with pytest.raises(FloatingPointError, match="step_size"):
        flow.solve(af.Euler(step_size=1e6))


def test_inputs_not_modified_and_results_independent():
    S = random_problem(3)
    D_before = S.distances.copy()
    vals_before = S.weights.values.copy()
    flow = af.LinearizedAssignmentFlow(S, T=2.0)
    r1 = flow.solve()
    r1.V[...] = 0  # results are the caller's to modify
    r2 = flow.solve()
    assert np.any(r2.V != 0)
    np.testing.assert_array_equal(S.distances, D_before)
    np.testing.assert_array_equal(S.weights.values, vals_before)


def test_threaded_path_matches_serial():
    rng = np.random.default_rng(0)
    g = af.GridGraph((160, 150))
    om = af.Weights.normalized(g, rng.uniform(0.1, 1, g.nnz))
    S = af.SimilarityOperator(om, rng.random((g.n_nodes, 5)), rho=0.2)
    x = rng.standard_normal(g.n_nodes * 5)
    old = af.get_num_threads()
    try:
        af.set_num_threads(1)
        flow1 = af.LinearizedAssignmentFlow(af.SimilarityOperator(om, S.distances, rho=0.2))
        a1, t1 = flow1.matvec(x), flow1.rmatvec(x)
        af.set_num_threads(2)
        flow2 = af.LinearizedAssignmentFlow(
            af.SimilarityOperator(af.Weights(g, om.values), S.distances, rho=0.2)
        )
        a2, t2 = flow2.matvec(x), flow2.rmatvec(x)
    finally:
        af.set_num_threads(old)
    np.testing.assert_allclose(a1, a2, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(t1, t2, rtol=1e-13, atol=1e-15)
    csr = om.to_csr()
    np.testing.assert_allclose(
        a2.reshape(-1, 5), _replicator(flow2.S0, csr @ x.reshape(-1, 5)), atol=1e-13
    )


def test_linear_operator_view():
    flow = af.LinearizedAssignmentFlow(random_problem(1))
    op = flow.aslinearoperator()
    assert isinstance(op, LinearOperator) and op.shape == (flow.size, flow.size)
    x = np.random.default_rng(0).standard_normal(flow.size)
    np.testing.assert_allclose(op @ x, dense_A(flow) @ x, atol=1e-14)
    np.testing.assert_allclose(op.rmatvec(x), dense_A(flow).T @ x, atol=1e-14)


# --------------------------------------------------------------------------- deep stacks
def _layers(seed, K=3, J=3, shape=(4, 5)):
    rng = np.random.default_rng(seed)
    g = af.GridGraph(shape)
    D = rng.uniform(0, 2, (g.n_nodes, J))
    return [
        af.SimilarityOperator(af.Weights.normalized(g, rng.uniform(0.1, 1, g.nnz)), D, rho=rho)
        for rho in (0.5, 0.8, 0.3)[:K]
    ]


def test_deep_flow_layer_is_the_laf_at_the_previous_output():
    layers = _layers(0)
    deep = af.DeepLinearizedAssignmentFlow(layers, T=[1.0, 0.7, 1.5])
    integ = af.ExponentialKrylov(tol=1e-13)
    res = deep.solve(integ)
    assert len(res.layers) == 3 and res.T == pytest.approx(3.2)
    # reference: the library's LAF at W0 (V-form, W+ = Exp_W0(V)) layer by layer
    M = layers[0].manifold
    W = None
    for S, h in zip(layers, deep.T, strict=True):
        f = af.LinearizedAssignmentFlow(S, T=h, W0=W)
        V = f.solve(integ).V
        W = M.exp(f.base_point, V)
    np.testing.assert_allclose(res.W, W, rtol=0, atol=1e-12)
    assert M.belongs(res.W) and M.is_tangent(res.V)


def test_deep_flow_with_shared_weights_is_the_linearized_sequence():
    S = _layers(1, K=1)[0]
    deep = af.DeepLinearizedAssignmentFlow([S] * 4, T=0.5)
    seq = af.AssignmentFlow(S, T=2.0).solve(
        af.LinearizedSequence(step_size=0.5, inner=af.ExponentialKrylov(tol=1e-13))
    )
    np.testing.assert_allclose(deep.solve(af.ExponentialKrylov(tol=1e-13)).W, seq.W, atol=1e-12)
    one = af.DeepLinearizedAssignmentFlow([S], T=2.0).solve()
    np.testing.assert_array_equal(one.V, af.LinearizedAssignmentFlow(S, T=2.0).solve().V)


def test_deep_flow_bad_input():
    S = _layers(2, K=1)[0]
    with pytest.raises(ValueError, match="T"):
        af.DeepLinearizedAssignmentFlow([S, S], T=[1.0])
    with pytest.raises(ValueError, match="layers"):
        af.DeepLinearizedAssignmentFlow([])
    with pytest.raises(TypeError, match="layers"):
        af.DeepLinearizedAssignmentFlow([S, "x"])
    other = af.SimilarityOperator(af.Weights.uniform(af.GridGraph((2, 10))), np.ones((20, 2)))
    with pytest.raises(ValueError, match="layers"):
        af.DeepLinearizedAssignmentFlow([S, other])


# ===== bad input (moved from test_bad_input_*.py)
# Errors name the argument (a whole word); a wrong type may be either kind (BAD).
_SIM9 = af.SimilarityOperator(
    af.Weights.uniform(af.GridGraph((3, 3))),
    np.random.default_rng(1).uniform(0.0, 1.0, (9, 3)),
    rho=0.5,
)
_LAF9 = af.LinearizedAssignmentFlow(_SIM9, T=1.0)
_W0_OK = np.full((9, 3), 1 / 3)
_LAF = af.LinearizedAssignmentFlow
_AF = af.AssignmentFlow

FLOW_CASES = [
    case("similarity-str", lambda: _LAF("S"), BAD, "similarity"),
    case("similarity-weights", lambda: _LAF(_SIM9.weights), BAD, "similarity"),
    case("T-zero", lambda: _LAF(_SIM9, T=0.0), ValueError, "T"),
    case("T-negative", lambda: _LAF(_SIM9, T=-1), ValueError, "T"),
    case("T-nan", lambda: _LAF(_SIM9, T=NAN), ValueError, "T"),
    case("T-inf", lambda: _LAF(_SIM9, T=INF), ValueError, "T"),
    case("T-str", lambda: _LAF(_SIM9, T="1"), BAD, "T"),
    case("T-bool", lambda: _LAF(_SIM9, T=True), BAD, "T"),
    case("T-None", lambda: _LAF(_SIM9, T=None), BAD, "T"),
    case("T-array", lambda: _LAF(_SIM9, T=np.ones(2)), BAD, "T"),
    case("W0-shape", lambda: _LAF(_SIM9, W0=_W0_OK[:8]), ValueError, "W0"),
    case("W0-not-point", lambda: _LAF(_SIM9, W0=2 * _W0_OK), ValueError, "W0"),
    case("W0-zero", lambda: _LAF(_SIM9, W0=np.eye(9, 3)), ValueError, "W0"),
    case("W0-nan", lambda: _LAF(_SIM9, W0=nan_array((9, 3))), ValueError, "W0"),
    case("W0-str", lambda: _LAF(_SIM9, W0=str_array((9, 3))), BAD, "W0"),
    case("W0-complex", lambda: _LAF(_SIM9, W0=_W0_OK + 0j), BAD, "W0"),
    case("A-V-shape", lambda: _LAF9.A(np.zeros((9, 2))), ValueError, "V"),
    case("A-V-flat-wrong", lambda: _LAF9.A(np.zeros(26)), ValueError, "V"),
    case("A-V-nan", lambda: _LAF9.A(nan_array((9, 3))), ValueError, "V"),
    case("A-V-inf", lambda: _LAF9.A(inf_array(27)), ValueError, "V"),
    case("A-V-str", lambda: _LAF9.A(str_array((9, 3))), BAD, "V"),
    case("A-V-complex", lambda: _LAF9.A(complex_array((9, 3))), BAD, "V"),
    case("A-V-None", lambda: _LAF9.A(None), BAD, "V"),
    case("AT-U-shape", lambda: _LAF9.AT(np.zeros((3, 9))), ValueError, "U"),
    case("AT-U-nan", lambda: _LAF9.AT(nan_array(27)), ValueError, "U"),
    case("AT-U-bool", lambda: _LAF9.AT(bool_array((9, 3))), BAD, "U"),
    case("solve-unknown", lambda: _LAF9.solve("nope"), ValueError, "integrator"),
    # an unknown name's error lists (or suggests) the known ones
    case("solve-typo", lambda: _LAF9.solve("exponential_krylv"), ValueError, "exponential_krylov"),
    case("solve-nonlinear", lambda: _LAF9.solve(af.GeometricEuler()), BAD, "integrator"),
    case("solve-nonlinear-cls", lambda: _LAF9.solve(af.LinearizedSequence), BAD, "integrator"),
    case("solve-int", lambda: _LAF9.solve(5), BAD, "integrator"),
    case("solve-by-name-bad-kind", lambda: _LAF9.solve("geometric_euler"), BAD, "integrator"),
    case("AF-similarity", lambda: _AF(None), BAD, "similarity"),
    case("AF-T-zero", lambda: _AF(_SIM9, T=0), ValueError, "T"),
    case("AF-T-str", lambda: _AF(_SIM9, T="2"), BAD, "T"),
    case("AF-W0-shape", lambda: _AF(_SIM9, W0=np.ones(3) / 3), ValueError, "W0"),
    case("AF-W0-not-point", lambda: _AF(_SIM9, W0=-_W0_OK), ValueError, "W0"),
    case("AF-solve-linear", lambda: _AF(_SIM9).solve(af.Euler()), BAD, "integrator"),
    case("AF-solve-unknown", lambda: _AF(_SIM9).solve("eulr"), ValueError, "euler"),
    case("AF-solve-obj", lambda: _AF(_SIM9).solve(object()), BAD, "integrator"),
    case(
        "AF-too-many-steps",
        lambda: _AF(_SIM9, T=10.0).solve(af.GeometricEuler(step_size=0.1, max_steps=5)),
        ValueError,
        "max_steps",
    ),
]


@pytest.mark.parametrize(("fn", "exc", "match"), FLOW_CASES)
def test_flows_reject(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.parametrize(
    ("graph", "J"),
    [
        pytest.param(disconnected_graph(), 3, id="disconnected"),
        pytest.param(af.Graph.from_adjacency(np.zeros((4, 4))), 2, id="all-isolated"),
        pytest.param(af.Graph.from_adjacency(np.zeros((1, 1))), 4, id="one-node"),
        pytest.param(disconnected_graph(), 1, id="one-label"),
        pytest.param(af.GridGraph((1, 1)), 1, id="one-node-one-label"),
    ],
)
def test_laf_on_degenerate_problems_matches_dense_reference(graph, J):
    flow = small_laf(graph, J=J, rho=0.4, T=2.0)
    sim = flow.similarity
    A, b, _ = dense_laf_system(flow.weights.to_csr().toarray(), sim.distances, sim.rho)
    rng = np.random.default_rng(5)
    V = rng.standard_normal(flow.shape)
    Vc = V.copy()
    np.testing.assert_allclose(flow.A(V).ravel(), A @ V.ravel(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(flow.AT(V).ravel(), A.T @ V.ravel(), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(V, Vc)
    np.testing.assert_allclose(flow.B.ravel(), b, atol=1e-15)
    ref = dense_laf_solution(A, b, flow.T).reshape(flow.shape)
    for integ in (af.ExponentialKrylov(krylov_dim=5, tol=1e-12), af.Euler(step_size=1e-3)):
        res = flow.solve(integ)
        assert np.all(np.isfinite(res.V)) and np.all(np.isfinite(res.W))
        tol = 1e-9 if isinstance(integ, af.ExponentialKrylov) else 2e-3
        np.testing.assert_allclose(res.V, ref, atol=tol * max(1.0, np.abs(ref).max()))
        np.testing.assert_allclose(res.W.sum(axis=1), 1.0, rtol=1e-12)
        assert res.labels.shape == (graph.n_nodes,)
    if J == 1:
        np.testing.assert_array_equal(res.V, 0.0)
        np.testing.assert_array_equal(res.W, 1.0)
        np.testing.assert_array_equal(res.labels, 0)


def test_laf_W0_is_copied_not_frozen():
    W0 = np.full((9, 3), 1 / 3)
    flow = af.LinearizedAssignmentFlow(_SIM9, W0=W0)
    assert W0.flags.writeable
    W0[0, 0] = 5.0
    assert flow.W0[0, 0] == 1 / 3


def _nonlinear_reference(sim, T, h):
    """Geometric Euler in log coordinates, written out densely from the definitions."""
    om = sim.weights.to_csr().toarray()
    D, rho = sim.distances, sim.rho
    I, J = D.shape
    log_w = np.full((I, J), -np.log(J))
    for _ in range(round(T / h)):
        S = ref_softmax(om @ (log_w - D / rho))
        z = log_w + h * S
        log_w = z - z.max(axis=1, keepdims=True)
        log_w -= np.log(np.exp(log_w).sum(axis=1, keepdims=True))
    return np.exp(log_w)


@pytest.mark.parametrize(
    ("graph", "J"),
    [
        pytest.param(disconnected_graph(), 3, id="disconnected"),
        pytest.param(af.Graph.from_adjacency(np.zeros((1, 1))), 2, id="one-node"),
        pytest.param(disconnected_graph(), 1, id="one-label"),
    ],
)
def test_nonlinear_flow_on_degenerate_problems(graph, J):
    sim = small_laf(graph, J=J).similarity
    res = af.AssignmentFlow(sim, T=1.0).solve(af.GeometricEuler(step_size=0.1))
    np.testing.assert_allclose(res.W, _nonlinear_reference(sim, 1.0, 0.1), rtol=1e-12)
    seq = af.AssignmentFlow(sim, T=1.0).solve(af.LinearizedSequence(step_size=0.25))
    assert np.all(np.isfinite(seq.W)) and np.all(seq.W >= 0)
    np.testing.assert_allclose(seq.W.sum(axis=1), 1.0, rtol=1e-12)
    # both approximate the same flow
    np.testing.assert_allclose(seq.W, res.W, atol=0.05)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_at_the_barycenter_in_threaded_row_blocks(dtype):
    # W = Exp_1(V) = softmax(J V), computed block by block on the thread pool for large V
    from assignflow._simplex import softmax_scaled

    V = (np.random.default_rng(3).standard_normal((60_000, 7)) * 4).astype(dtype)
    W = softmax_scaled(V, 7)
    assert W.dtype == dtype and not np.shares_memory(W, V)
    ref = np.exp(7 * V.astype(np.float64) - (7 * V.astype(np.float64)).max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(W, ref, rtol=1e-12 if dtype == np.float64 else 2e-5, atol=1e-30)
    # in place, as S0 uses it: the same numbers
    Z = V.copy()
    assert softmax_scaled(Z, 7, out=Z) is Z
    np.testing.assert_array_equal(Z, W)
