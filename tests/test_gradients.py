"""Gradient estimators against the exact gradient from ``scipy.linalg.expm_frechet``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
from helpers import (
    BAD,
    NAN,
    case,
    dense_laf_solution,
    dense_laf_system,
    disconnected_graph,
    nan_array,
    small_laf,
)
from strategies import ref_softmax

import assignflow as af
from assignflow.gradients import weight_gradient


def problem(seed, *, grid=True, J=3, T=1.5, rho=0.6, shape=(4, 5), n_nodes=15, tau=0.0):
    rng = np.random.default_rng(seed)
    if grid:
        g = af.GridGraph(shape)
    else:
        g = af.Graph.from_adjacency(sp.random(n_nodes, n_nodes, density=0.25, random_state=seed))
    om = af.Weights.normalized(g, rng.uniform(0.05, 1.0, g.nnz))
    D = rng.uniform(0, 2, (g.n_nodes, J))
    flow = af.LinearizedAssignmentFlow(af.SimilarityOperator(om, D, rho=rho), T=T)
    y = rng.integers(0, J, g.n_nodes)
    loss = af.KLLoss(y)
    if tau:
        loss = loss + af.TangentSpaceRegularizer(tau)
    return flow, loss


def dense_exact_gradient(flow, loss):
    """Independent reference: dense 𝒜, expm, expm_frechet, and ∂𝒜/∂ω entry by entry.

    Differentiates 𝒜(Ω) = [[T A^J(Ω), T b(Ω)], [0, 0]] by central differences of the
    *matrix* (cheap, exact to rounding for this smooth map) and contracts with G.
    """
    n = flow.size
    g = flow.weights.graph

    def aug_of(values):
        w = af.Weights._unchecked(g, values)
        f = flow.with_weights(w)
        M = np.zeros((n + 1, n + 1))
        M[:n, :n] = flow.T * np.column_stack([f.matvec(e) for e in np.eye(n)])
        M[:n, n] = flow.T * f.B.ravel()
        return M

    vals = flow.weights.values
    M = aug_of(vals)
    V = sla.expm(M)[:n, n].reshape(flow.shape)
    gV = loss.data_gradient(V)
    E = np.zeros((n + 1, n + 1))
    E[:n, n] = gV.ravel()
    G = sla.expm_frechet(M.T, E, compute_expm=False)
    grad = np.empty(vals.size)
    for e in range(vals.size):
        h = 1e-6
        vp, vm = vals.copy(), vals.copy()
        vp[e] += h
        vm[e] -= h
        dM = (aug_of(vp) - aug_of(vm)) / (2 * h)
        grad[e] = np.sum(G * dM)
    return grad + loss.reg_gradient(flow.weights), loss.value(V, flow.weights)


def relerr(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


CASES = [(grid, J, seed) for grid in (True, False) for J in (2, 3, 5) for seed in (0,)]


@pytest.fixture(scope="module")
def references():
    out = {}
    for grid, J, seed in CASES:
        flow, loss = problem(seed, grid=grid, J=J, tau=0.05 if J == 3 else 0.0)
        out[(grid, J, seed)] = (flow, loss, *dense_exact_gradient(flow, loss))
    return out


@pytest.mark.parametrize("case", CASES)
def test_dense_frechet_matches_reference(references, case):
    flow, loss, ref, val = references[case]
    value, grad = af.DenseFrechet().value_and_gradient(flow, loss)
    assert relerr(grad, ref) < 1e-7
    assert np.isclose(value, val, rtol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_finite_diff(references, case):
    flow, loss, ref, val = references[case]
    value, grad = af.FiniteDiff(eps=1e-6).value_and_gradient(flow, loss)
    assert relerr(grad, ref) <= 1e-6
    assert np.isclose(value, val, rtol=1e-11)


@pytest.mark.parametrize("case", CASES)
def test_adjoint_quadrature(references, case):
    flow, loss, ref, val = references[case]
    value, grad = af.AdjointQuadrature(n_nodes=12).value_and_gradient(flow, loss)
    assert relerr(grad, ref) <= 1e-6
    assert np.isclose(value, val, rtol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_closed_form_low_rank(references, case):
    flow, loss, ref, val = references[case]
    full = af.ClosedFormLowRank(krylov_dim=10, rank=10)
    value, grad = full.value_and_gradient(flow, loss)
    # with m = 10 on a 60-dimensional problem the Krylov forward itself is the limit
    assert relerr(grad, ref) <= 1e-6
    assert np.isclose(value, val, rtol=1e-8)
    g1 = af.ClosedFormLowRank(krylov_dim=10, rank=1).gradient(flow, loss)
    assert cosine(g1, ref) >= 0.999
    g_lm = af.ClosedFormLowRank(krylov_dim=10, rank=1, low_memory=True).gradient(flow, loss)
    np.testing.assert_allclose(g_lm, g1, rtol=1e-12, atol=1e-15)


def test_low_rank_error_decreases_with_rank():
    flow, loss = problem(3, J=4, T=4.0)
    ref = af.DenseFrechet().gradient(flow, loss)
    errs = [
        relerr(af.ClosedFormLowRank(krylov_dim=12, rank=r).gradient(flow, loss), ref)
        for r in (1, 2, 4, 12)
    ]
    assert errs[0] > errs[-1]
    assert errs[-1] < 1e-8
    assert all(a >= b * 0.999 for a, b in itertools.pairwise(errs)), errs


def test_factors_and_singular_values():
    flow, loss = problem(1, J=3)
    r = af.ClosedFormLowRank(rank=2, return_factors=True).estimate(flow, loss)
    U, W = r.factors
    assert U.shape == (2, *flow.shape) and W.shape == (2, *flow.shape)
    sv = r.singular_values
    assert np.all(np.diff(sv) <= 0) and sv[0] > 0
    # the factors reproduce the data part of the gradient, with G12 from the estimator
    g_part = r.gradient - loss.reg_gradient(flow.weights)
    ex = af.DenseFrechet().gradient(flow, loss)
    assert cosine(g_part, ex) > 0.999
    # per-node gradient norms
    np.testing.assert_allclose(
        r.node_norms**2, np.add.reduceat(r.gradient**2, flow.weights.graph.indptr[:-1])
    )
    assert r.norm_map(flow.weights.graph.shape).shape == flow.weights.graph.shape
    assert r.patches(flow.weights.graph).shape == (*flow.weights.graph.shape, 9)


def test_weight_gradient_contraction_matches_dense_formula():
    # the sampled contraction of a random rank-2 G against the dense chain rule
    flow, _ = problem(4, J=3, grid=False)
    n, g = flow.size, flow.weights.graph
    rng = np.random.default_rng(0)
    Us = [rng.standard_normal(flow.shape) for _ in range(2)]
    Ws = [rng.standard_normal(flow.shape) for _ in range(2)]
    G12 = rng.standard_normal(flow.shape)
    G11 = sum(np.outer(u.ravel(), w.ravel()) for u, w in zip(Us, Ws, strict=True))
    got = weight_gradient(flow, Us, Ws, G12)

    def f(values):
        w = af.Weights._unchecked(g, values)
        fl = flow.with_weights(w)
        A = np.column_stack([fl.matvec(e) for e in np.eye(n)])
        return flow.T * (np.sum(G11 * A) + np.sum(G12.ravel() * fl.B.ravel()))

    vals = flow.weights.values
    ref = np.empty(vals.size)
    for e in range(vals.size):
        vp, vm = vals.copy(), vals.copy()
        vp[e] += 1e-6
        vm[e] -= 1e-6
        ref[e] = (f(vp) - f(vm)) / 2e-6
    assert relerr(got, ref) < 1e-7


@pytest.mark.parametrize(
    "estimator",
    [
        af.ClosedFormLowRank(rank=10),
        af.ClosedFormLowRank(rank=1),
        af.AdjointQuadrature(n_nodes=12),
        af.FiniteDiff(),
        af.DenseFrechet(),
    ],
    ids=["lowrank-full", "lowrank-1", "adjoint", "finitediff", "dense"],
)
def test_taylor_slope_two(estimator):
    """L(Ω + tδ) − L(Ω) − t<∇L, δ> = O(t²) along a tangent direction δ of the weights."""
    flow, loss = problem(5, J=3, tau=0.05)
    g = flow.weights.graph
    rng = np.random.default_rng(1)
    w = flow.weights.values
    x = rng.standard_normal(g.nnz)
    # a tangent vector R_ω x = ω ⊙ (x − <ω, x>) of each row's simplex: rows sum to 0
    d = w * (x - np.repeat(np.add.reduceat(w * x, g.indptr[:-1]), g.degrees))
    grad = estimator.gradient(flow, loss)
    exact = af.DenseFrechet()

    def L(t):
        w = af.Weights(g, flow.weights.values + t * d)
        return exact.estimate(flow.with_weights(w), loss).value

    L0 = L(0.0)
    ts = np.array([1e-1, 5e-2, 2.5e-2, 1.25e-2])
    rem = np.array([abs(L(t) - L0 - t * (grad @ d)) for t in ts])
    slopes = np.diff(np.log(rem)) / np.diff(np.log(ts))
    tol = 0.25 if isinstance(estimator, af.ClosedFormLowRank) and estimator.rank == 1 else 0.1
    assert np.all(np.abs(slopes - 2.0) < tol), slopes


def test_per_pixel_agreement_on_voronoi_image():
    """The paper's Fig. 3 criterion: ≥ 99 % of pixels with cosine ≥ 0.9 (rank 1 vs adjoint)."""
    imgs, labs, protos = af.datasets.make_voronoi(
        "colors", 1, (64, 64), noise=0.5, random_state=3, return_prototypes=True
    )
    g = af.GridGraph((64, 64))
    D = af.distance_matrix(imgs[0], protos)
    flow = af.LinearizedAssignmentFlow(
        af.SimilarityOperator(af.Weights.uniform(g), D, rho=0.1), T=3
    )
    loss = af.KLLoss(labs[0].ravel())
    a = af.ClosedFormLowRank(rank=1).gradient(flow, loss)
    b = af.AdjointQuadrature(n_nodes=8, tol=1e-8).gradient(flow, loss)
    P1 = g.values_to_patches(a).reshape(-1, 9)
    P2 = g.values_to_patches(b).reshape(-1, 9)
    cos = (P1 * P2).sum(1) / (np.linalg.norm(P1, axis=1) * np.linalg.norm(P2, axis=1))
    assert np.mean(cos >= 0.9) >= 0.99


def test_estimators_registered_and_resolvable():
    reg = af.registry.gradient_estimators
    for name, cls in [
        ("closed_form_low_rank", af.ClosedFormLowRank),
        ("adjoint_quadrature", af.AdjointQuadrature),
        ("finite_diff", af.FiniteDiff),
        ("dense_frechet", af.DenseFrechet),
    ]:
        assert reg.get(name) is cls
    assert isinstance(reg.resolve("closed_form_low_rank", rank=2), af.ClosedFormLowRank)


def test_zero_data_gradient():
    # a loss whose labels are already perfectly fit has a tiny but nonzero gradient;
    # a pure regulariser has no data term and must not need the flow's adjoint
    flow, _ = problem(0)
    r = af.ClosedFormLowRank().estimate(flow, af.TangentSpaceRegularizer(0.1))
    np.testing.assert_allclose(
        r.gradient, af.TangentSpaceRegularizer(0.1).reg_gradient(flow.weights)
    )
    assert r.value == pytest.approx(af.TangentSpaceRegularizer(0.1).reg_value(flow.weights))


def test_bad_input():
    flow, loss = problem(0)
    est = af.ClosedFormLowRank()
    with pytest.raises(TypeError, match="flow"):
        est.gradient("flow", loss)
    with pytest.raises(TypeError, match="loss"):
        est.gradient(flow, "kl")
    with pytest.raises(ValueError, match="labels"):
        est.gradient(flow, af.KLLoss(np.zeros(3, int)))
    with pytest.raises(ValueError, match="labels"):
        est.gradient(flow, af.KLLoss(np.full(flow.n_nodes, 7)))
    W0 = flow.similarity.manifold.random_point(0)
    with pytest.raises(ValueError, match="barycenter"):
        est.gradient(af.LinearizedAssignmentFlow(flow.similarity, W0=W0), loss)
    for bad in (
        lambda: af.ClosedFormLowRank(krylov_dim=0),
        lambda: af.ClosedFormLowRank(rank=0),
        lambda: af.AdjointQuadrature(n_nodes=0),
        lambda: af.FiniteDiff(eps=0),
        lambda: af.FiniteDiff(eps=-1e-6),
    ):
        with pytest.raises((ValueError, TypeError)):
            bad()
    big, big_loss = problem(0, shape=(40, 40))
    with pytest.raises(ValueError, match="max_edges"):
        af.FiniteDiff().gradient(big, big_loss)
    with pytest.raises(ValueError, match="DenseFrechet"):
        af.DenseFrechet().gradient(big, big_loss)


def test_inputs_not_modified():
    flow, loss = problem(2)
    vals = flow.weights.values.copy()
    D = flow.similarity.distances.copy()
    y = loss.labels.copy()
    af.ClosedFormLowRank().gradient(flow, loss)
    af.AdjointQuadrature(n_nodes=4).gradient(flow, loss)
    np.testing.assert_array_equal(flow.weights.values, vals)
    np.testing.assert_array_equal(flow.similarity.distances, D)
    np.testing.assert_array_equal(loss.labels, y)


def test_adjoint_runs_end_at_the_needed_dimension():
    # krylov_dim bounds the adjoint runs; each ends once its error test passes, so a
    # larger bound changes neither the work nor the gradient, and the gradient is that
    # of a tight computation to the tolerance
    flow, loss = _voronoi_flow(3.0, size=24)
    integ = af.ExponentialKrylov(krylov_dim=10)
    r10 = af.ClosedFormLowRank(krylov_dim=10, rank=4).estimate(flow, loss, integrator=integ)
    r40 = af.ClosedFormLowRank(krylov_dim=40, rank=4).estimate(flow, loss, integrator=integ)
    assert r40.n_matvecs == r10.n_matvecs < 2 * 10
    np.testing.assert_array_equal(r40.gradient, r10.gradient)
    tight = af.ExponentialKrylov(krylov_dim=40, tol=1e-13)
    ref = af.AdjointQuadrature(n_nodes=16).estimate(flow, loss, integrator=tight)
    assert relerr(r10.gradient, ref.gradient) < 1e-5


def test_result_does_not_keep_the_forward_basis_of_its_own_solve():
    # the result carries the forward; the basis the closed form recorded for itself is
    # freed once contracted, a caller's recorded forward keeps its basis
    flow, loss = _voronoi_flow(3.0, size=16)
    integ = af.ExponentialKrylov(krylov_dim=10)
    est = af.ClosedFormLowRank()
    r = est.estimate(flow, loss, integrator=integ)
    assert r.forward.trajectory.basis is None
    fwd = flow.solve(integ, record=True)
    assert fwd.trajectory.basis is not None
    r2 = est.estimate(flow, loss, integrator=integ, forward=fwd)
    assert fwd.trajectory.basis is not None
    np.testing.assert_array_equal(r2.gradient, r.gradient)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_adjoint_generator_is_the_augmented_transpose(dtype):
    # the backward's operator takes <b, z> from S0 (B is not kept): the transpose of the
    # augmented generator all the same, with or without an output buffer
    from assignflow.gradients import _adjoint_generator

    flow, _ = _voronoi_flow(3.0, size=12)
    flow = flow.astype(dtype)
    rmv, writes_out = _adjoint_generator(flow)
    assert writes_out
    ref_op = flow.augmented_operator(scale=1.0)
    z = np.random.default_rng(5).standard_normal(flow.size + 1).astype(dtype)
    ref = ref_op.rmatvec(z.astype(np.float64))
    out = np.full(flow.size + 1, np.nan, dtype=dtype)
    got = rmv(z, out=out)
    assert got is out and got.dtype == dtype
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max())
    np.testing.assert_array_equal(rmv(z), got)


def test_closed_form_leaves_the_flows_B_cache_as_it_found_it():
    # B, made for its own forward, is not held through the backward; a B the caller's
    # flow already had stays, and the gradient is the same either way
    flow, loss = _voronoi_flow(3.0, size=16)
    est = af.ClosedFormLowRank()
    assert not flow._is_cached("B")
    r = est.estimate(flow, loss)
    assert not flow._is_cached("B")
    B = flow.B
    r2 = est.estimate(flow, loss)
    assert flow._is_cached("B") and flow.B is B
    np.testing.assert_array_equal(r2.gradient, r.gradient)
    fresh = flow.with_weights(flow.weights)
    low = af.ClosedFormLowRank(low_memory=True).estimate(fresh, loss)
    assert not fresh._is_cached("B")  # nor after the rebuilt forward basis
    np.testing.assert_allclose(low.gradient, r.gradient, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- one forward path
def _voronoi_flow(T, rho=0.3, size=48, seed=0):
    X, Y, P = af.datasets.make_voronoi(
        "colors", 1, (size, size), 0.3, random_state=seed, return_prototypes=True
    )
    g = af.GridGraph((size, size))
    sim = af.SimilarityOperator(af.Weights.uniform(g), af.distance_matrix(X[0], P), rho=rho)
    return af.LinearizedAssignmentFlow(sim, T=T), af.KLLoss(Y[0].ravel())


@pytest.mark.parametrize("T", [3.0, 30.0])
def test_estimators_use_the_integrators_forward(T):
    flow, loss = _voronoi_flow(T)
    integ = af.ExponentialKrylov(krylov_dim=10)
    V = flow.solve(integ).V
    for est in (af.ClosedFormLowRank(), af.AdjointQuadrature(n_nodes=4)):
        r = est.estimate(flow, loss, integrator=integ)
        np.testing.assert_allclose(r.V, V, rtol=0, atol=1e-7 * np.abs(V).max())
        assert r.forward.stats.n_steps == flow.solve(integ).stats.n_steps
    # at T = 30 the forward needs sub-steps, and the gradient follows every one of them
    if T == 30.0:
        assert flow.solve(integ).stats.n_steps > 1
        exact = af.AdjointQuadrature(n_nodes=48, krylov_dim=30).gradient(flow, loss)
        full = af.ClosedFormLowRank(rank=4).gradient(flow, loss, integrator=integ)
        assert relerr(full, exact) < 1e-4


def test_chain_through_every_substep_matches_dense_frechet():
    flow, loss = problem(3, T=8.0)
    integ = af.ExponentialKrylov(krylov_dim=5, tol=1e-11)
    fwd = flow.solve(integ, record=True)
    assert fwd.stats.n_steps > 3
    exact = af.DenseFrechet().estimate(flow, loss, forward=fwd)
    r = af.ClosedFormLowRank(krylov_dim=8, rank=40).estimate(flow, loss, forward=fwd)
    assert relerr(r.gradient, exact.gradient) < 1e-6
    assert r.value == exact.value  # one forward, one value


def test_forward_reuse_low_memory_and_integrator_agree():
    flow, loss = _voronoi_flow(10.0, size=24)
    integ = af.ExponentialKrylov(krylov_dim=6)
    ref = af.ClosedFormLowRank(rank=2).estimate(flow, loss, integrator=integ)
    reuse = af.ClosedFormLowRank(rank=2).estimate(
        flow, loss, forward=flow.solve(integ, record=True)
    )
    low = af.ClosedFormLowRank(rank=2, low_memory=True).estimate(flow, loss, integrator=integ)
    np.testing.assert_allclose(reuse.gradient, ref.gradient, rtol=1e-12, atol=0)
    np.testing.assert_allclose(low.gradient, ref.gradient, rtol=1e-9, atol=1e-14)
    # a rebuilt basis runs to the sub-step's recorded dimension: low_memory costs the
    # last sub-step's k matvecs (+ one for its residual) more, not m
    for T in (3.0, 10.0):
        f = _voronoi_flow(T, size=24)[0]
        wide = af.ExponentialKrylov(krylov_dim=12)
        steps = f.solve(wide, record=True).trajectory.steps
        assert steps[-1].H.shape[0] < 12
        extra = steps[-1].H.shape[0] + (steps[-1].x_start is not None)
        r = af.ClosedFormLowRank(rank=2).estimate(f, loss, integrator=wide)
        r_low = af.ClosedFormLowRank(rank=2, low_memory=True).estimate(f, loss, integrator=wide)
        assert r_low.n_matvecs == r.n_matvecs + extra


def test_closed_form_needs_a_recorded_krylov_forward():
    flow, loss = problem(0)
    with pytest.raises(TypeError, match="integrator"):
        af.ClosedFormLowRank().estimate(flow, loss, integrator=af.Euler(step_size=0.1))
    with pytest.raises(ValueError, match="record"):
        af.ClosedFormLowRank().estimate(flow, loss, forward=flow.solve())
    with pytest.raises(ValueError, match="forward"):
        af.ClosedFormLowRank().estimate(flow, loss, forward=problem(1, T=2.0)[0].solve())
    # any integrator for the reference estimators: their value is its forward's
    r = af.AdjointQuadrature().estimate(flow, loss, integrator=af.Euler(step_size=1e-3))
    np.testing.assert_array_equal(r.V, flow.solve(af.Euler(step_size=1e-3)).V)


# --------------------------------------------------------------------------- rho, T, D
@pytest.mark.parametrize("grid", [True, False])
def test_hyperparameter_gradients_against_finite_differences(grid):
    flow, loss = problem(5, grid=grid, T=2.5, tau=1e-3)
    fd = af.FiniteDiff(distances=True).estimate(flow, loss)
    for est in (
        af.DenseFrechet(),
        af.AdjointQuadrature(n_nodes=24),
        af.ClosedFormLowRank(krylov_dim=12, rank=40),
    ):
        r = est.estimate(flow, loss, integrator=af.ExponentialKrylov(krylov_dim=12, tol=1e-12))
        assert r.rho_gradient == pytest.approx(fd.rho_gradient, rel=1e-6)
        assert r.T_gradient == pytest.approx(fd.T_gradient, rel=1e-6)
        assert relerr(r.distance_gradient, fd.distance_gradient) < 1e-6
        assert relerr(r.gradient, fd.gradient) < 1e-6


def test_rank_one_hyperparameter_gradients_are_close():
    flow, loss = _voronoi_flow(3.0, size=32)
    ref = af.AdjointQuadrature(n_nodes=24).estimate(flow, loss)
    r = af.ClosedFormLowRank().estimate(flow, loss)
    assert r.T_gradient == pytest.approx(ref.T_gradient, rel=1e-9)  # needs no factorisation
    assert r.rho_gradient == pytest.approx(ref.rho_gradient, rel=0.1)
    assert cosine(r.distance_gradient.ravel(), ref.distance_gradient.ravel()) > 0.99


def test_float32_gradient_path():
    flow, loss = _voronoi_flow(3.0, size=64)
    r64 = af.ClosedFormLowRank().estimate(flow, loss)
    r32 = af.ClosedFormLowRank().estimate(flow.astype("float32"), loss)
    assert r32.forward.V.dtype == np.float32
    assert cosine(r32.gradient, r64.gradient) >= 0.9999
    assert relerr(r32.gradient, r64.gradient) <= 1e-4
    assert r32.rho_gradient == pytest.approx(r64.rho_gradient, rel=1e-4)


# --------------------------------------------------------------------------- deep stacks
def _stack(seed, shape=(4, 5), J=3):
    rng = np.random.default_rng(seed)
    g = af.GridGraph(shape)
    D = rng.uniform(0, 2, (g.n_nodes, J))
    layers = [
        af.SimilarityOperator(af.Weights.normalized(g, rng.uniform(0.1, 1, g.nnz)), D, rho=rho)
        for rho in (0.5, 0.8, 0.3)
    ]
    deep = af.DeepLinearizedAssignmentFlow(layers, T=[1.0, 0.7, 1.5])
    return deep, af.KLLoss(rng.integers(0, J, g.n_nodes)) + af.TangentSpaceRegularizer(1e-3)


def test_stack_gradient_matches_finite_differences_through_dense_expm():
    deep, loss = _stack(0, shape=(3, 4))
    n = deep.shape[0] * deep.shape[1]

    def value(layers, T):
        """Independent forward: every layer by dense expm of its augmented matrix."""
        V = np.zeros(deep.shape)
        for ell in range(len(layers)):
            f = af.DeepLinearizedAssignmentFlow(layers, T=T).layer_flow(ell, V if ell else None)
            M = np.column_stack([f.augmented_operator().matvec(e) for e in np.eye(n + 1)])
            V = V + sla.expm(M)[:n, n].reshape(deep.shape)
        return loss.data_value(V) + sum(loss.reg_value(s.weights) for s in layers)

    integ = af.ExponentialKrylov(krylov_dim=20, tol=1e-13)
    for est in (af.ClosedFormLowRank(krylov_dim=20, rank=60), af.DenseFrechet()):
        res = est.estimate(deep, loss, integrator=integ)
        assert isinstance(res, af.StackGradientResult)
        assert res.value == pytest.approx(value(deep.layers, deep.T), rel=1e-12)
        for ell in (0, 2):
            S = deep.layers[ell]
            vals = S.weights.values
            edges = np.random.default_rng(ell).choice(vals.size, 12, replace=False)
            fd = np.empty(edges.size)
            for j, e in enumerate(edges):
                out = []
                for sgn in (1, -1):
                    v = vals.copy()
                    v[e] += sgn * 1e-6
                    L = list(deep.layers)
                    L[ell] = S.with_weights(af.Weights._unchecked(S.graph, v))
                    out.append(value(L, deep.T))
                fd[j] = (out[0] - out[1]) / 2e-6
            assert relerr(res.layers[ell].gradient[edges], fd) < 1e-6
            import attrs

            rho = [value([*deep.layers[:ell], attrs.evolve(S, rho=S.rho * (1 + s * 1e-6)),
                          *deep.layers[ell + 1:]], deep.T) for s in (1, -1)]  # fmt: skip
            fd_rho = (rho[0] - rho[1]) / (2e-6 * S.rho)
            assert res.layers[ell].rho_gradient == pytest.approx(fd_rho, rel=1e-5)
            T = [list(deep.T) for _ in range(2)]
            T[0][ell] *= 1 + 1e-6
            T[1][ell] *= 1 - 1e-6
            fd_T = (value(deep.layers, T[0]) - value(deep.layers, T[1])) / (2e-6 * deep.T[ell])
            assert res.layers[ell].T_gradient == pytest.approx(fd_T, rel=1e-5)


def test_stack_gradient_per_layer_against_adjoint_quadrature():
    X, Y, P = af.datasets.make_voronoi(
        "colors", 1, (32, 32), 0.3, random_state=0, return_prototypes=True
    )
    g = af.GridGraph((32, 32))
    D = af.distance_matrix(X[0], P)
    rng = np.random.default_rng(0)
    layers = [
        af.SimilarityOperator(af.Weights.normalized(g, rng.uniform(0.2, 1, g.nnz)), D, rho=0.3)
        for _ in range(2)
    ]
    deep = af.DeepLinearizedAssignmentFlow(layers, T=[2.0, 3.0])
    loss = af.KLLoss(Y[0].ravel())
    ref = af.AdjointQuadrature(n_nodes=24).estimate(deep, loss)
    r = af.ClosedFormLowRank(rank=3).estimate(deep, loss)
    for a, b in zip(r.layers, ref.layers, strict=True):
        assert relerr(a.gradient, b.gradient) < 1e-4
        assert a.rho_gradient == pytest.approx(b.rho_gradient, rel=1e-4)
    r1 = af.ClosedFormLowRank().estimate(deep, loss)
    for a, b in zip(r1.layers, ref.layers, strict=True):
        assert cosine(a.gradient, b.gradient) > 0.999


# ===== bad input (moved from test_bad_input_*.py)
# Errors name the argument (a whole word); a wrong type may be either kind (BAD).
# Degenerate graphs are compared with central differences of a dense-expm loss.
_LAF9 = af.LinearizedAssignmentFlow(
    af.SimilarityOperator(
        af.Weights.uniform(af.GridGraph((3, 3))),
        np.random.default_rng(1).uniform(0.0, 1.0, (9, 3)),
        rho=0.5,
    ),
    T=1.0,
)
_KL9 = af.KLLoss(np.array([0, 1, 2, 0, 1, 2, 0, 1, 2]))

_ESTIMATORS = {
    "low_rank": af.ClosedFormLowRank(krylov_dim=8, rank=2),
    "quadrature": af.AdjointQuadrature(n_nodes=8),
    "dense": af.DenseFrechet(),
    "finite_diff": af.FiniteDiff(),
}

_CFLR, _AQ, _FD = af.ClosedFormLowRank, af.AdjointQuadrature, af.FiniteDiff
EST_CTOR_CASES = [
    case("CFLR-m-zero", lambda: _CFLR(krylov_dim=0), ValueError, "krylov_dim"),
    case("CFLR-m-neg", lambda: _CFLR(krylov_dim=-1), ValueError, "krylov_dim"),
    case("CFLR-m-float", lambda: _CFLR(krylov_dim=2.5), BAD, "krylov_dim"),
    case("CFLR-m-bool", lambda: _CFLR(krylov_dim=True), BAD, "krylov_dim"),
    case("CFLR-m-str", lambda: _CFLR(krylov_dim="10"), BAD, "krylov_dim"),
    case("CFLR-rank-zero", lambda: _CFLR(rank=0), ValueError, "rank"),
    case("CFLR-rank-bool", lambda: _CFLR(rank=True), BAD, "rank"),
    case("CFLR-rank-None", lambda: _CFLR(rank=None), BAD, "rank"),
    case("CFLR-reorth", lambda: _CFLR(reorthogonalize="x"), ValueError, "reorthogonalize"),
    case("CFLR-factors-str", lambda: _CFLR(return_factors="no"), BAD, "return_factors"),
    case("CFLR-lowmem-int", lambda: _CFLR(low_memory=2), BAD, "low_memory"),
    case("AQ-nodes-zero", lambda: _AQ(n_nodes=0), ValueError, "n_nodes"),
    case("AQ-nodes-float", lambda: _AQ(n_nodes=4.0), BAD, "n_nodes"),
    case("AQ-tol-zero", lambda: _AQ(tol=0.0), ValueError, "tol"),
    case("AQ-tol-nan", lambda: _AQ(tol=NAN), ValueError, "tol"),
    case("AQ-tol-str", lambda: _AQ(tol="1e-3"), BAD, "tol"),
    case("AQ-tol-bool", lambda: _AQ(tol=True), BAD, "tol"),
    case("AQ-m-neg", lambda: _AQ(krylov_dim=-2), ValueError, "krylov_dim"),
    case("FD-eps-zero", lambda: _FD(eps=0.0), ValueError, "eps"),
    case("FD-eps-neg", lambda: _FD(eps=-1e-6), ValueError, "eps"),
    case("FD-eps-nan", lambda: _FD(eps=NAN), ValueError, "eps"),
    case("FD-eps-str", lambda: _FD(eps="1e-6"), BAD, "eps"),
    case("FD-eps-bool", lambda: _FD(eps=True), BAD, "eps"),
    case("FD-eps-None", lambda: _FD(eps=None), BAD, "eps"),
    case("FD-tol-zero", lambda: _FD(tol=0), ValueError, "tol"),
    case("FD-edges-zero", lambda: _FD(max_edges=0), ValueError, "max_edges"),
    case("FD-edges-bool", lambda: _FD(max_edges=True), BAD, "max_edges"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), EST_CTOR_CASES)
def test_estimator_settings_rejected(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def _w0_flow():
    return small_laf(W0=np.full((9, 3), 1 / 3))


EST_CALL_CASES = []
for _ename, _est in _ESTIMATORS.items():
    EST_CALL_CASES += [
        case(f"{_ename}-flow-str", lambda e=_est: e.gradient("f", _KL9), BAD, "flow"),
        case(
            f"{_ename}-flow-AF",
            lambda e=_est: e.gradient(af.AssignmentFlow(_LAF9.similarity), _KL9),
            BAD,
            "flow",
        ),
        # gradients are implemented at the barycenter only: the error names W0
        case(f"{_ename}-flow-W0", lambda e=_est: e.gradient(_w0_flow(), _KL9), ValueError, "W0"),
        case(f"{_ename}-loss-str", lambda e=_est: e.gradient(_LAF9, "kl"), BAD, "loss"),
        case(f"{_ename}-loss-cls", lambda e=_est: e.gradient(_LAF9, af.KLLoss), BAD, "loss"),
        case(
            f"{_ename}-labels>=J",
            lambda e=_est: e.value_and_gradient(_LAF9, af.KLLoss(np.full(9, 5))),
            ValueError,
            "labels",
        ),
        case(
            f"{_ename}-labels-count",
            lambda e=_est: e.estimate(_LAF9, af.KLLoss(np.zeros(4, int))),
            ValueError,
            "labels",
        ),
    ]
EST_CALL_CASES += [
    case(
        "finite_diff-max_edges",
        lambda: af.FiniteDiff(max_edges=5).gradient(_LAF9, _KL9),
        ValueError,
        "max_edges",
    ),
    # a size limit of the estimator, not an argument: the error names the estimator
    case(
        "dense-too-large",
        lambda: af.DenseFrechet().gradient(
            small_laf(af.GridGraph((40, 40)), J=2), af.KLLoss(np.zeros(1600, int))
        ),
        ValueError,
        "DenseFrechet",
    ),
]

_U93 = np.zeros((9, 3))
WG_CASES = [
    case("flow-str", lambda: weight_gradient("f", [_U93], [_U93], None), BAD, "flow"),
    case(
        "Us-Ws-length",
        lambda: weight_gradient(_LAF9, [_U93, _U93], [_U93], None),
        ValueError,
        "Us|Ws",
    ),
    case(
        "Us-shape",
        lambda: weight_gradient(_LAF9, [np.zeros((9, 2))], [_U93], None),
        ValueError,
        "Us",
    ),
    case(
        "Ws-shape",
        lambda: weight_gradient(_LAF9, [_U93], [np.zeros(27)], None),
        ValueError,
        "Ws",
    ),
    case(
        "Us-nan",
        lambda: weight_gradient(_LAF9, [nan_array((9, 3))], [_U93], None),
        ValueError,
        "Us",
    ),
    case(
        "G12-shape",
        lambda: weight_gradient(_LAF9, [_U93], [_U93], np.zeros(9)),
        ValueError,
        "G12",
    ),
    case("G12-str", lambda: weight_gradient(_LAF9, [_U93], [_U93], "g"), BAD, "G12"),
    case("Us-not-list", lambda: weight_gradient(_LAF9, 5, [_U93], None), BAD, "Us"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), EST_CALL_CASES)
def test_estimator_calls_rejected(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.parametrize(("fn", "exc", "match"), WG_CASES)
def test_weight_gradient_rejects(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def _dense_kl_loss(flow, labels, values):
    """KL loss of the LAF for free weight values (dense expm; the reference for gradients)."""
    g = flow.weights.graph
    om = sp.csr_matrix((values, g.indices, g.indptr), shape=(g.n_nodes,) * 2).toarray()
    A, b, _ = dense_laf_system(om, flow.similarity.distances, flow.similarity.rho)
    I, J = flow.shape
    V = dense_laf_solution(A, b, flow.T).reshape(I, J)
    logp = np.log(ref_softmax(J * V))
    return -logp[np.arange(I), labels].mean()


def _dense_kl_gradient(flow, labels, h=1e-6):
    vals = flow.weights.values.copy()
    grad = np.empty_like(vals)
    for e in range(vals.size):
        up, dn = vals.copy(), vals.copy()
        up[e] += h
        dn[e] -= h
        grad[e] = (_dense_kl_loss(flow, labels, up) - _dense_kl_loss(flow, labels, dn)) / (2 * h)
    return grad


@pytest.mark.parametrize("name", list(_ESTIMATORS))
@pytest.mark.parametrize(
    ("graph", "J"),
    [
        pytest.param(disconnected_graph(), 2, id="disconnected"),
        pytest.param(af.Graph.from_adjacency(np.zeros((1, 1))), 3, id="one-node"),
        pytest.param(af.Graph.from_adjacency(np.zeros((3, 3))), 2, id="all-isolated"),
    ],
)
def test_gradients_on_degenerate_graphs_match_dense_fd(name, graph, J):
    flow = small_laf(graph, J=J, rho=0.7, T=1.5, seed=2)
    y = np.arange(graph.n_nodes) % J
    ref = _dense_kl_gradient(flow, y)
    est = _ESTIMATORS[name]
    if name == "low_rank":  # full rank: exact up to the Krylov error
        est = af.ClosedFormLowRank(krylov_dim=flow.size + 1, rank=flow.size)
    value, grad = est.value_and_gradient(flow, af.KLLoss(y))
    assert np.all(np.isfinite(grad)) and grad.shape == (graph.nnz,)
    np.testing.assert_allclose(value, _dense_kl_loss(flow, y, flow.weights.values), rtol=1e-8)
    np.testing.assert_allclose(grad, ref, atol=1e-7 * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("name", list(_ESTIMATORS))
def test_gradients_with_one_label_are_zero(name):
    flow = small_laf(disconnected_graph(), J=1)
    value, grad = _ESTIMATORS[name].value_and_gradient(flow, af.KLLoss(np.zeros(7, int)))
    assert value == 0.0
    np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_hypergradients_false_skips_only_the_hypergradients(dtype):
    flow, loss = problem(11, tau=0.1)
    flow = af.LinearizedAssignmentFlow(flow.similarity.astype(dtype), T=flow.T)
    est = af.ClosedFormLowRank()
    full = est.estimate(flow, loss)
    lean = est.estimate(flow, loss, hypergradients=False)
    np.testing.assert_array_equal(lean.gradient, full.gradient)
    np.testing.assert_array_equal(lean.node_norms, full.node_norms)
    assert lean.value == full.value
    assert np.isnan(lean.rho_gradient) and np.isnan(lean.T_gradient)
    assert lean.distance_gradient is None
    assert np.isfinite(full.rho_gradient) and np.isfinite(full.T_gradient)
    # value_and_gradient and gradient take the lean path and agree
    value, grad = est.value_and_gradient(flow, loss)
    assert value == full.value
    np.testing.assert_array_equal(grad, full.gradient)
    np.testing.assert_array_equal(est.gradient(flow, loss), full.gradient)


def test_hypergradients_false_is_ignored_by_estimators_that_cannot_skip():
    flow, loss = problem(12)
    r = af.AdjointQuadrature().estimate(flow, loss, hypergradients=False)
    assert np.isfinite(r.rho_gradient) and r.distance_gradient is not None
    with pytest.raises(TypeError, match="hypergradients"):
        af.ClosedFormLowRank().estimate(flow, loss, hypergradients="no")


def test_node_norms_rescale_only_at_extreme_magnitudes():
    from assignflow.gradients import _node_norms

    g = af.GridGraph((3, 4))
    rng = np.random.default_rng(0)
    base = rng.standard_normal(g.nnz)
    for scale in (1.0, 1e-200, 1e200, 0.0):
        grad = base * scale
        # scaled by hand: a plain norm of 1e-200 entries underflows
        s = scale or 1.0
        ref = s * np.array(
            [np.linalg.norm(grad[g.indptr[i] : g.indptr[i + 1]] / s) for i in range(g.n_nodes)]
        )
        np.testing.assert_allclose(_node_norms(g, grad), ref, rtol=1e-14, atol=0)
    with pytest.raises(FloatingPointError, match="not finite"):
        flow, loss = problem(1)
        bad = np.full(flow.weights.graph.nnz, np.nan)
        af.GradientResult.from_gradient(flow, loss, None, bad)
