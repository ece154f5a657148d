"""Hypothesis fuzzing of the public API on random small graphs and parameters.

Invariants (docs/math.md §2, §4, §5): assignments stay on the manifold, ``A`` maps into
T0 (and so does ``Aᵀ`` at the barycenter, where ``Aᵀ U = Ωᵀ R_{S0} U`` is a
combination of rows summing to zero — but not at a general ``W0``, where the
result is divided by ``W0``), ``A`` and ``Aᵀ`` are adjoint, gradients are finite
with shape ``(nnz,)``, and weights stay feasible through the Riemannian descent.
Every array handed to the library is compared with a copy after the call, and
identical ``random_state`` must give identical results.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    PROPERTY,
    bounded_arrays,
    label_arrays,
    log_floats,
    points,
    positive_arrays,
    similarity_operators,
    small_graphs,
    tangent_vectors,
    weights_on,
)

import assignflow as af

SEEDS = st.integers(0, 2**32 - 1)


# --------------------------------------------------------------------------- helpers
def assert_on_manifold(W: np.ndarray, shape: tuple[int, int]) -> None:
    assert W.shape == shape
    assert np.all(np.isfinite(W))
    assert W.min() >= 0.0 and W.max() <= 1.0
    np.testing.assert_allclose(W.sum(axis=-1), 1.0, rtol=0, atol=1e-10)


def assert_tangent(V: np.ndarray, rtol: float = 1e-10) -> None:
    assert np.all(np.isfinite(V))
    scale = max(1.0, float(np.abs(V).max(initial=0.0))) * V.shape[-1]
    np.testing.assert_allclose(V.sum(axis=-1), 0.0, rtol=0, atol=rtol * scale)


def assert_feasible(weights: af.Weights, graph: af.Graph) -> None:
    """Positive, row-stochastic, on the graph's pattern."""
    assert weights.graph is graph or weights.graph == graph
    vals = weights.values
    assert vals.shape == (graph.nnz,) and np.all(np.isfinite(vals)) and np.all(vals > 0)
    np.testing.assert_allclose(np.add.reduceat(vals, graph.indptr[:-1]), 1.0, atol=1e-10)
    csr = weights.to_csr()
    np.testing.assert_array_equal(csr.indices, graph.indices)
    np.testing.assert_array_equal(csr.indptr, graph.indptr)


class Unchanged:
    """Snapshot arrays before a call; ``check()`` asserts none was modified in place."""

    def __init__(self, *arrays: np.ndarray) -> None:
        self.arrays = arrays
        self.copies = [np.array(a, copy=True) for a in arrays]

    def check(self) -> None:
        for a, c in zip(self.arrays, self.copies, strict=True):
            np.testing.assert_array_equal(a, c)


@st.composite
def raw_problem(draw, max_labels: int = 4, rho=(1e-2, 1e2)):
    """``(graph, values, D, rho)`` as plain arrays, so the test can watch them."""
    g = draw(small_graphs())
    vals = np.array(draw(weights_on(g)).values)  # a fresh writable array
    J = draw(st.integers(1, max_labels))
    D = draw(positive_arrays((g.n_nodes, J), lo=0.0, hi=10.0))
    return g, vals, D, draw(log_floats(*rho))


# --------------------------------------------------------------------------- LAF
@PROPERTY
@given(
    raw_problem(),
    log_floats(1e-2, 5.0),
    st.sampled_from(["krylov", "euler", "krylov_w0"]),
    st.data(),
)
def test_laf_solutions_on_the_manifold_inputs_untouched(problem, T, kind, data):
    g, vals, D, rho = problem
    I, J = D.shape
    W0 = data.draw(points((I, J), lo=0.05, kind="normalized")) if kind == "krylov_w0" else None
    watch = Unchanged(vals, D, *([W0] if W0 is not None else []))
    sim = af.SimilarityOperator(af.Weights(g, vals), D, rho=rho)
    flow = af.LinearizedAssignmentFlow(sim, T=T, W0=W0)
    integ = af.Euler(step_size=0.05) if kind == "euler" else af.ExponentialKrylov()
    res = flow.solve(integ)
    watch.check()
    assert_on_manifold(res.W, (I, J))
    assert_tangent(res.V)
    assert res.labels.shape == (I,)
    assert np.isfinite(res.stats.error_estimate) or kind == "euler"


@PROPERTY
@given(raw_problem(rho=(1e-1, 1e2)), log_floats(1e-2, 3.0), st.data())
def test_laf_krylov_matches_euler_and_its_own_substeps(problem, T, data):
    # a first-order Euler with a tiny step and Krylov with m = 3 (many sub-steps)
    # both approach the same v(T)
    g, vals, D, rho = problem
    flow = af.LinearizedAssignmentFlow(af.SimilarityOperator(af.Weights(g, vals), D, rho), T=T)
    ref = flow.solve(af.ExponentialKrylov(krylov_dim=30, tol=1e-12)).V
    sub = flow.solve(af.ExponentialKrylov(krylov_dim=3, tol=1e-10)).V
    scale = max(np.abs(ref).max(), 1e-12)
    assert np.abs(sub - ref).max() <= 1e-6 * scale
    eul = flow.solve(af.Euler(step_size=T / 400)).V
    assert np.abs(eul - ref).max() <= 0.05 * scale


@PROPERTY
@given(
    raw_problem(),
    log_floats(1e-1, 5.0),
    st.sampled_from([af.GeometricEuler(step_size=0.5), af.LinearizedSequence(step_size=0.5)]),
    st.booleans(),
    st.data(),
)
def test_assignment_flow_on_the_manifold_inputs_untouched(problem, T, integ, at_w0, data):
    g, vals, D, rho = problem
    I, J = D.shape
    W0 = data.draw(points((I, J))) if at_w0 else None
    watch = Unchanged(vals, D, *([W0] if W0 is not None else []))
    sim = af.SimilarityOperator(af.Weights(g, vals), D, rho=rho)
    res = af.AssignmentFlow(sim, T=T, W0=W0).solve(integ)
    watch.check()
    assert_on_manifold(res.W, (I, J))
    assert_tangent(res.V, rtol=1e-9)
    assert res.T == pytest.approx(T)


@PROPERTY
@given(similarity_operators(rho=(1e-1, 1e2)))
def test_assignment_flow_without_horizon_converges_or_warns(sim):
    # without T the flow runs until the mean entropy is below tol; ties (e.g. equal
    # distances on an isolated node) keep it at the barycenter: then a clear warning
    integ = af.GeometricEuler(step_size=2.0, max_steps=300)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = af.AssignmentFlow(sim).solve(integ)
    assert_on_manifold(res.W, (sim.n_nodes, sim.n_labels))
    msgs = [str(w.message) for w in caught]
    if res.stats.converged:
        assert res.stats.entropy[-1] < integ.tol and not msgs
    else:
        assert res.stats.n_steps == 300
        assert len(msgs) == 1 and "max_steps=300" in msgs[0]


# --------------------------------------------------------------------------- A and Aᵀ
@PROPERTY
@given(raw_problem(), st.booleans(), st.booleans(), st.data())
def test_A_and_AT_map_into_T0_and_are_adjoint(problem, at_w0, flat, data):
    g, vals, D, rho = problem
    I, J = D.shape
    W0 = data.draw(points((I, J), lo=0.05, kind="normalized")) if at_w0 else None
    sim = af.SimilarityOperator(af.Weights(g, vals), D, rho=rho)
    flow = af.LinearizedAssignmentFlow(sim, T=1.0, W0=W0)
    X = data.draw(bounded_arrays((I, J), bound=10.0))  # arbitrary, not only tangent
    U = data.draw(bounded_arrays((I, J), bound=10.0))
    V = data.draw(tangent_vectors((I, J), bound=10.0))
    watch = Unchanged(X, U, V)
    args = (X.ravel(), U.ravel()) if flat else (X, U)
    AX, ATU = flow.A(args[0]), flow.AT(args[1])
    watch.check()
    assert AX.shape == args[0].shape and ATU.shape == args[1].shape
    AX, ATU = AX.reshape(I, J), ATU.reshape(I, J)
    # A = R_{W0} R_{S0} (…): its image lies in T0 for any argument
    assert_tangent(AX, rtol=1e-12)
    assert_tangent(flow.A(V), rtol=1e-12)
    if W0 is None:
        # Aᵀ U = Ωᵀ (R_{S0} U): Ωᵀ mixes rows that sum to zero
        assert_tangent(ATU, rtol=1e-12)
    # <A X, U> = <X, Aᵀ U>
    lhs, rhs = float(np.sum(AX * U)), float(np.sum(X * ATU))
    assert lhs == pytest.approx(rhs, rel=1e-9, abs=1e-9 * (1 + np.abs(X).max() * np.abs(U).max()))


@PROPERTY
@given(similarity_operators(), st.data())
def test_A_at_the_barycenter_matches_its_formula(sim, data):
    # A V = R_{S0}(Ω V) with S0 = softmax(-Ω D / ρ), from the dense Ω
    flow = af.LinearizedAssignmentFlow(sim, T=1.0)
    I, J = flow.shape
    V = data.draw(tangent_vectors((I, J), bound=5.0))
    Om = sim.weights.to_csr().toarray()
    Z = -(Om @ np.asarray(sim.distances)) / sim.rho
    S0 = np.exp(Z - Z.max(axis=1, keepdims=True))
    S0 /= S0.sum(axis=1, keepdims=True)
    X = Om @ V
    ref = S0 * X - (S0 * X).sum(axis=1, keepdims=True) * S0
    np.testing.assert_allclose(flow.A(V), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(flow.B, (S0 - S0.mean(axis=1, keepdims=True)) / J, atol=1e-15)


# --------------------------------------------------------------------------- gradients
# krylov_dim=1 is rejected (tested below); AdjointQuadrature runs its Krylov solves at
# tol=1e-10, which small dimensions cannot meet within max_substeps (a clear RuntimeError)
ESTIMATORS = st.one_of(
    st.builds(
        af.ClosedFormLowRank,
        krylov_dim=st.integers(2, 12),
        rank=st.integers(1, 3),
        low_memory=st.booleans(),
    ),
    st.builds(af.AdjointQuadrature, n_nodes=st.integers(1, 6), krylov_dim=st.integers(10, 16)),
)


@PROPERTY
@given(similarity_operators(), log_floats(1e-2, 5.0), ESTIMATORS, st.booleans(), st.data())
def test_gradients_finite_with_shape_nnz(sim, T, est, regularize, data):
    I, J = sim.n_nodes, sim.n_labels
    y = data.draw(label_arrays(I, J))
    sw = data.draw(positive_arrays(I, lo=0.1, hi=2.0))
    watch = Unchanged(y, sw)
    loss = af.KLLoss(y, sample_weight=sw)
    if regularize:
        loss = loss + af.TangentSpaceRegularizer(tau=0.01)
    flow = af.LinearizedAssignmentFlow(sim, T=T)
    r = est.estimate(flow, loss)
    watch.check()
    assert r.gradient.shape == (sim.graph.nnz,)
    assert np.all(np.isfinite(r.gradient))
    assert np.isfinite(r.value) and r.value >= 0.0  # KL and the regulariser are >= 0
    assert r.node_norms.shape == (I,) and np.all(np.isfinite(r.node_norms))
    assert_tangent(np.asarray(r.V))
    if isinstance(est, af.AdjointQuadrature):  # its forward solve is accurate to 1e-10
        np.testing.assert_allclose(np.asarray(r.V), flow.solve().V, rtol=1e-6, atol=1e-9)


def test_closed_form_low_rank_krylov_dim_one_is_rejected():
    # the forward basis would be just {e_k}, giving V_T = 0 and a wrong gradient
    with pytest.raises(ValueError, match="krylov_dim"):
        af.ClosedFormLowRank(krylov_dim=1)


@PROPERTY
@given(
    similarity_operators(max_labels=3, graphs_strategy=small_graphs(max_nodes=5, max_side=3)),
    log_floats(1e-2, 3.0),
    st.data(),
)
def test_full_rank_low_rank_gradient_is_exact(sim, T, data):
    # m = k and rank = k: the Krylov factorisation of G is exact (docs/math.md §8)
    flow = af.LinearizedAssignmentFlow(sim, T=T)
    y = data.draw(label_arrays(sim.n_nodes, sim.n_labels))
    loss = af.KLLoss(y)
    k = flow.size + 1
    full = af.ExponentialKrylov(krylov_dim=k)  # the whole space: one exact step
    exact = af.DenseFrechet().gradient(flow, loss, integrator=full)
    grad = af.ClosedFormLowRank(krylov_dim=k, rank=k).gradient(flow, loss, integrator=full)
    # relative to the gradient, with a floor at rounding level (an all-zero gradient,
    # e.g. one node with equal distances, comes out as 0 here and 1e-15 from expm)
    assert np.abs(grad - exact).max() <= 1e-7 * np.abs(exact).max() + 1e-12


# --------------------------------------------------------------------------- learning
@PROPERTY
@given(
    small_graphs(),
    st.data(),
    log_floats(1e-3, 1e3),
    st.sampled_from([None, 0.5, 5.0]),
)
def test_multiplicative_update_keeps_weights_feasible(g, data, step, max_log_step):
    w = data.draw(weights_on(g, lo=1e-3))
    grad = data.draw(bounded_arrays(g.nnz, bound=1e3))
    watch = Unchanged(grad, w.values)
    new = af.multiplicative_update(w, grad, step, max_log_step)
    watch.check()
    assert_feasible(new, g)
    if max_log_step is not None:
        # centred log-weights move by at most max_log_step (up to the 1e-300 floor)
        d = np.log(new.values) - np.log(w.values)
        d -= np.repeat(np.add.reduceat(d, g.indptr[:-1]) / g.degrees, g.degrees)
        assert np.all(np.abs(d) <= 2 * max_log_step + 1e-9)


@PROPERTY
@given(small_graphs(), st.data())
def test_multiplicative_update_small_step_does_not_increase_a_linear_loss(g, data):
    # first-order descent: <grad, Δω> <= 0 for the Riemannian step (up to rounding)
    w = data.draw(weights_on(g))
    grad = data.draw(bounded_arrays(g.nnz, bound=10.0))
    h = 1e-6
    new = af.multiplicative_update(w, grad, h)
    step = new.values - w.values
    assert float(grad @ step) <= 1e-13 * max(1.0, np.abs(grad).max())
    # to first order the step is -h R_ω ∂L, row by row ω ⊙ (g - <ω, g>)
    om = w.values
    mean = np.repeat(np.add.reduceat(om * grad, g.indptr[:-1]), g.degrees)
    np.testing.assert_allclose(step, -h * om * (grad - mean), rtol=0, atol=1e-9)


@settings(PROPERTY, max_examples=min(PROPERTY.max_examples, 20))
@given(
    similarity_operators(max_labels=3),
    log_floats(1e-1, 3.0),
    log_floats(1e-2, 10.0),
    st.sampled_from([None, 5.0]),
    st.sampled_from(["closed_form_low_rank", af.AdjointQuadrature(n_nodes=3)]),
    st.data(),
)
def test_riemannian_descent_keeps_weights_feasible(sim, T, step, max_log_step, est, data):
    y = data.draw(label_arrays(sim.n_nodes, sim.n_labels))
    watch = Unchanged(y)
    flow = af.LinearizedAssignmentFlow(sim, T=T)
    seen: list[af.Weights] = []

    def callback(it, rec, weights):
        assert np.isfinite(rec["loss"]) and np.isfinite(rec["grad_norm"])
        seen.append(weights)

    res = af.riemannian_gradient_descent(
        flow,
        af.KLLoss(y) + af.TangentSpaceRegularizer(tau=1e-3),
        est,
        step_size=step,
        max_iter=4,
        max_log_step=max_log_step,
        callback=callback,
    )
    watch.check()
    assert len(seen) == res.n_iter == 4
    for w in [*seen, res.weights, res.flow.weights]:
        assert_feasible(w, sim.graph)
    assert res.history["loss"].shape == (4,) and np.all(np.isfinite(res.history["loss"]))
    # keep_best: the returned weights have the smallest recorded loss
    best = seen[int(np.argmin(res.history["loss"]))]
    np.testing.assert_array_equal(res.weights.values, best.values)


# --------------------------------------------------------------------------- determinism
@settings(PROPERTY, max_examples=min(PROPERTY.max_examples, 10))
@given(
    st.sampled_from(["colors", "lines"]),
    st.integers(1, 2),
    st.tuples(st.integers(4, 12), st.integers(4, 12)),
    st.floats(0.0, 1.0),
    SEEDS,
)
def test_make_voronoi_is_reproducible(scenario, n, shape, noise, seed):
    a = af.datasets.make_voronoi(scenario, n, shape, noise, random_state=seed)
    b = af.datasets.make_voronoi(scenario, n, shape, noise, random_state=seed)
    c = af.datasets.make_voronoi(
        scenario, n, shape, noise, random_state=np.random.default_rng(seed)
    )
    for x, y, z in zip(a, b, c, strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)


@PROPERTY
@given(st.integers(1, 10), st.integers(1, 6), SEEDS, log_floats(0.05, 5.0))
def test_random_point_and_tangent_are_reproducible(I, J, seed, conc):
    M = af.AssignmentManifold(I, J)
    p1, p2 = M.random_point(seed, conc), M.random_point(np.random.default_rng(seed), conc)
    np.testing.assert_array_equal(p1, p2)
    assert M.belongs(p1)
    t1, t2 = M.random_tangent(seed), M.random_tangent(np.random.default_rng(seed))
    np.testing.assert_array_equal(t1, t2)
    assert M.is_tangent(t1)


@settings(PROPERTY, max_examples=min(PROPERTY.max_examples, 2))
@given(SEEDS)
def test_image_labeler_fit_is_reproducible(seed):
    X, Y = af.datasets.make_voronoi("colors", 2, (8, 8), 0.3, random_state=seed % 1000)
    watch = Unchanged(X, Y)
    params = dict(max_iter=2, n_prototypes=3, T=1.0, random_state=seed % 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=2: ConvergenceWarning expected
        a = af.ImageLabeler(**params).fit(X, Y)
        b = af.ImageLabeler(**params).fit(X, Y)
    watch.check()
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.prototypes_, b.prototypes_)
    watch.check()


@settings(PROPERTY, max_examples=min(PROPERTY.max_examples, 8))
@given(SEEDS, st.booleans(), st.integers(2, 3))
def test_classifier_fit_is_reproducible(seed, learn, n_classes):
    rng = np.random.default_rng(seed)
    X = (
        rng.normal(size=(30, 2))
        + np.repeat(3.0 * np.arange(n_classes), 30 // n_classes + 1)[:30, None]
    )
    y = np.arange(30) % n_classes
    watch = Unchanged(X, y)
    params = dict(n_neighbors=4, learn_weights=learn, max_iter=2, random_state=seed % 1000)
    a = af.AssignmentFlowClassifier(**params).fit(X, y)
    b = af.AssignmentFlowClassifier(**params).fit(X, y)
    watch.check()
    Xq = X[::3] + 0.1
    watch_q = Unchanged(Xq)
    pa, pb = a.predict_proba(Xq), b.predict_proba(Xq)
    watch_q.check()
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    assert_on_manifold(pa, (Xq.shape[0], n_classes))
