"""Tests of the assignflow-extras plugin.

Install it first: ``pip install -e plugins/assignflow-extras``.
"""

from __future__ import annotations

import subprocess
import sys

import attrs
import numpy as np
import pytest
import scipy.linalg as sla
from assignflow_extras import SPSA, BalancedKLLoss, ExpmMultiply, RadiusGraph, distance_weights
from assignflow_extras.integrators import augmented_operator
from scipy.sparse.linalg import LinearOperator

import assignflow as af

DIST = "assignflow-extras"
ENTRIES = [
    ("graphs", "radius", RadiusGraph),
    ("integrators", "expm_multiply", ExpmMultiply),
    ("losses", "balanced_kl", BalancedKLLoss),
    ("gradient_estimators", "spsa", SPSA),
]


def _grid_flow(shape=(6, 7), J=3, T=4.0, rho=0.3, seed=0):
    rng = np.random.default_rng(seed)
    g = af.GridGraph(shape)
    w = af.Weights.normalized(g, rng.uniform(0.5, 1.5, g.nnz))
    sim = af.SimilarityOperator(w, rng.random((g.n_nodes, J)), rho=rho)
    return af.LinearizedAssignmentFlow(sim, T=T)


def _rel(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b)


# --------------------------------------------------------------------------- discovery
@pytest.mark.parametrize(("registry", "name", "obj"), ENTRIES)
def test_entry_points_are_discovered(registry, name, obj):
    reg = getattr(af.registry, registry)
    assert name in reg.names()
    assert reg.get(name) is obj
    assert reg.origin(name) == DIST
    assert reg.name_of(obj) == name


def test_registry_resolve_builds_instances():
    assert isinstance(af.registry.integrators.resolve("expm_multiply"), ExpmMultiply)
    assert af.registry.gradient_estimators.resolve("spsa", n_samples=3).n_samples == 3
    loss = af.registry.losses.resolve("balanced_kl", labels=[0, 1, 1])
    assert isinstance(loss, af.Loss) and loss.labels.tolist() == [0, 1, 1]
    X = np.random.default_rng(0).random((20, 2))
    g = af.registry.graphs.resolve("radius", X=X, radius=0.3)
    assert isinstance(g, af.Graph) and g == RadiusGraph(X, 0.3)


def test_cli_lists_the_plugins():
    out = subprocess.run(
        [sys.executable, "-m", "assignflow", "plugins"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    lines = out.splitlines()
    for _, name, obj in ENTRIES:
        hits = [ln for ln in lines if ln.split() and ln.split()[0] == name]
        assert len(hits) == 1, out
        assert f"[{DIST}]" in hits[0]
        assert f"{obj.__module__}.{obj.__qualname__}" in hits[0]


# --------------------------------------------------------------------------- integrator
def test_expm_multiply_matches_krylov_on_laf():
    flow = _grid_flow()
    ref = flow.solve(af.ExponentialKrylov(tol=1e-12))
    res = flow.solve("expm_multiply")
    assert _rel(res.V, ref.V) < 1e-8
    assert np.array_equal(res.labels, ref.labels)
    assert res.stats.integrator == "expm_multiply"
    assert res.stats.t == flow.T
    assert res.stats.n_matvecs > 0


@pytest.mark.parametrize("tol", [None, 1e-13])
def test_expm_multiply_with_initial_value(tol):
    flow = _grid_flow(shape=(5, 5), T=2.5, seed=1)
    op, b = flow.aslinearoperator(), flow.B.ravel()
    x0 = np.random.default_rng(2).normal(size=flow.size) * 0.1
    b_copy, x0_copy = b.copy(), x0.copy()
    ref, _ = af.ExponentialKrylov(tol=1e-12).integrate(op, b, 2.5, x0)
    seen = []
    x, stats = ExpmMultiply(tol=tol).integrate(op, b, 2.5, x0, progress=seen.append)
    assert _rel(x, ref) < 1e-8
    assert stats.n_steps >= 1 and stats.n_matvecs > 0 and stats.trajectory is None
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert np.array_equal(b, b_copy) and np.array_equal(x0, x0_copy)


def test_augmented_operator_matches_the_flows_builder():
    flow = _grid_flow(shape=(4, 3), T=1.7)
    mine = augmented_operator(flow.aslinearoperator(), flow.B.ravel(), flow.T)
    ref = flow.augmented_operator()
    z = np.random.default_rng(12).normal(size=flow.size + 1)
    np.testing.assert_allclose(mine.matvec(z), ref.matvec(z), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(mine.rmatvec(z), ref.rmatvec(z), rtol=1e-13, atol=1e-15)


def test_expm_multiply_counts_products_and_handles_zero_rhs():
    rng = np.random.default_rng(3)
    A = -np.eye(4) + 0.1 * rng.normal(size=(4, 4))
    calls = [0]

    def counted(f):
        def g(v):
            calls[0] += 1
            return f(v)

        return g

    op = LinearOperator(
        (4, 4), matvec=counted(lambda v: A @ v), rmatvec=counted(lambda v: A.T @ v), dtype=float
    )
    x, stats = ExpmMultiply().integrate(op, np.zeros(4), 1.0)
    assert not np.any(x) and stats.n_matvecs == 0 and calls[0] == 0
    b = rng.normal(size=4)
    x, stats = ExpmMultiply().integrate(op, b, 1.5)
    assert stats.n_matvecs == calls[0]  # products with A and Aᵀ
    aug = np.zeros((5, 5))
    aug[:4, :4], aug[:4, 4] = 1.5 * A, 1.5 * b
    np.testing.assert_allclose(x, sla.expm(aug)[:4, 4], rtol=1e-12)
    # a dense matrix is accepted as the operator
    np.testing.assert_allclose(ExpmMultiply().integrate(A, b, 1.5)[0], x, rtol=1e-13)


def test_expm_multiply_keeps_float32():
    flow = _grid_flow(shape=(4, 4)).astype(np.float32)
    x, _ = ExpmMultiply().integrate(flow.aslinearoperator(), flow.B.ravel(), flow.T)
    assert x.dtype == np.float32
    ref = _grid_flow(shape=(4, 4)).solve(af.ExponentialKrylov(tol=1e-12)).V.ravel()
    assert _rel(x, ref) < 1e-5


def test_expm_multiply_inside_linearized_sequence():
    flow = _grid_flow(shape=(5, 5), T=1.0)
    nonlin = af.AssignmentFlow(flow.similarity, T=1.0)
    ref = nonlin.solve(af.LinearizedSequence(step_size=0.25, inner=af.ExponentialKrylov(tol=1e-12)))
    res = nonlin.solve(af.LinearizedSequence(step_size=0.25, inner=ExpmMultiply()))
    np.testing.assert_allclose(res.W, ref.W, rtol=1e-8, atol=1e-12)


def test_expm_multiply_validates():
    op = af.GridGraph((2, 2)).to_adjacency() * -1.0
    with pytest.raises(ValueError, match="tol"):
        ExpmMultiply(tol=0.0)
    with pytest.raises(ValueError, match="T"):
        ExpmMultiply().integrate(op, np.ones(4), -1.0)
    with pytest.raises(ValueError, match="x0"):
        ExpmMultiply().integrate(op, np.ones(4), 1.0, np.ones(2))
    with pytest.raises(ValueError, match="operator"):
        ExpmMultiply().integrate(op, np.ones(3), 1.0)
    with pytest.raises(TypeError, match="operator"):
        ExpmMultiply().integrate(lambda v: v, np.ones(4), 1.0)  # a bare callable
    no_transpose = LinearOperator((4, 4), matvec=lambda v: -v)
    with pytest.raises(TypeError, match="rmatvec"):
        ExpmMultiply().integrate(no_transpose, np.ones(4), 1.0)
    with pytest.raises(TypeError, match="progress"):
        ExpmMultiply().integrate(op, np.ones(4), 1.0, progress=3)
    with pytest.raises(ValueError, match="T"):  # unbounded work is refused up front
        ExpmMultiply().integrate(op, np.ones(4), 1e12)


# --------------------------------------------------------------------------- graph
def test_radius_graph_matches_brute_force():
    rng = np.random.default_rng(4)
    X = np.vstack([rng.random((60, 2)), [[5.0, 5.0]]])  # the last point is isolated
    r = 0.2
    g = RadiusGraph(X, r)
    dist = np.linalg.norm(X[:, None] - X[None], axis=-1)
    expected = dist <= r
    np.testing.assert_array_equal(g.to_adjacency().toarray() != 0, expected)
    assert g.is_symmetric
    assert g.radius == r and g.n_nodes == 61
    last = g.indices[g.indptr[-2] : g.indptr[-1]]
    assert last.tolist() == [60]
    assert isinstance(g, af.Graph)
    assert RadiusGraph(X, r) == g and RadiusGraph(X, 0.3) != g
    # inherited constructors fall back to plain graphs
    assert type(RadiusGraph.knn(X, 3)) is af.Graph


@pytest.mark.parametrize("shape", [(30, 3), (5, 6, 3), (2, 3, 4, 2), (7, 1)])
def test_radius_graph_follows_the_graph_factory_contract(shape):
    """``resolve(name, X=X, **graph_params)``: nodes = leading axes of X in C order."""
    X = np.random.default_rng(9).random(shape)
    g = af.registry.graphs.resolve("radius", X=X, radius=0.4)
    assert isinstance(g, af.Graph) and g.n_nodes == int(np.prod(shape[:-1]))
    rows = X.reshape(-1, shape[-1])
    assert g == RadiusGraph(rows, radius=0.4)
    dist = np.linalg.norm(rows[:, None] - rows[None], axis=-1)
    np.testing.assert_array_equal(g.to_adjacency().toarray() != 0, dist <= 0.4)


def test_radius_graph_default_radius_gives_about_eight_neighbours():
    rng = np.random.default_rng(10)
    X = rng.random((400, 2))
    g = af.registry.graphs.resolve("radius", X=X)
    dist = np.sort(np.linalg.norm(X[:, None] - X[None], axis=-1), axis=1)
    assert g.radius == pytest.approx(np.median(dist[:, 8]))
    assert 6 <= np.median(g.degrees - 1) <= 10
    assert RadiusGraph(np.zeros((4, 2))).radius == 1.0  # all points equal: radius 1
    assert RadiusGraph([[0.0, 1.0]]).n_nodes == 1


def test_radius_graph_validates():
    with pytest.raises(ValueError, match="radius"):
        RadiusGraph(np.zeros((3, 2)), 0.0)
    with pytest.raises(ValueError, match="radius"):
        RadiusGraph(np.zeros((3, 2)), np.inf)
    with pytest.raises(ValueError, match="finite"):
        RadiusGraph([[np.nan, 0.0]], 1.0)
    with pytest.raises(ValueError, match="X"):
        RadiusGraph([0.0, 0.5, 3.0], 1.0)  # no feature axis
    with pytest.raises(ValueError, match="X"):
        RadiusGraph(np.zeros((0, 2)), 1.0)
    with pytest.raises(ValueError, match="max_nnz"):
        RadiusGraph(np.zeros((3, 2)), 1.0, max_nnz=0)
    assert RadiusGraph([[0.0], [0.5], [3.0]], 1.0).indices.tolist() == [0, 1, 0, 1, 2]


def test_radius_graph_is_bounded_before_it_is_built():
    X = np.random.default_rng(11).random((2000, 2))
    with pytest.raises(ValueError, match="radius"):
        RadiusGraph(X, radius=10.0, max_nnz=10**5)  # 4e6 entries: refused, not built
    assert RadiusGraph(X, radius=0.01, max_nnz=10**5).nnz <= 10**5


def test_distance_weights():
    rng = np.random.default_rng(5)
    X = rng.random((40, 3))
    g = RadiusGraph(X, 0.4)
    scale = 0.15
    w = distance_weights(g, X, scale)
    assert isinstance(w, af.Weights)
    np.testing.assert_allclose(np.add.reduceat(w.values, g.indptr[:-1]), 1.0, atol=1e-12)
    d2 = ((X[g.rows] - X[g.indices]) ** 2).sum(axis=1)
    raw = np.exp(-d2 / (2 * scale**2))
    sums = np.add.reduceat(raw, g.indptr[:-1])
    np.testing.assert_allclose(w.values, raw / np.repeat(sums, g.degrees), rtol=1e-12)
    # tiny scales: no underflow to zero, default scale works on any Graph
    assert np.all(distance_weights(g, X, 1e-6).values > 0)
    knn = af.Graph.knn(X, 4)
    np.testing.assert_allclose(
        np.add.reduceat(distance_weights(knn, X).values, knn.indptr[:-1]), 1.0
    )


# --------------------------------------------------------------------------- loss
def test_balanced_kl_value_by_hand():
    rng = np.random.default_rng(6)
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    V = rng.normal(size=(y.size, 3))
    loss = BalancedKLLoss(y)
    J = 3
    z = J * V
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    nll = -logp[np.arange(y.size), y]
    expected = np.mean([nll[y == c].mean() for c in range(3)])
    assert loss.data_value(V) == pytest.approx(expected, rel=1e-12)
    assert isinstance(loss, af.Loss) and loss.has_data_term
    # inverse class frequency: each class gets the same total weight
    w = loss.sample_weight
    np.testing.assert_allclose([w[y == c].sum() for c in range(3)], y.size / 3)
    # with one class it is the plain KL loss
    y1 = np.zeros(5, int)
    assert BalancedKLLoss(y1).data_value(V[:5]) == pytest.approx(af.KLLoss(y1).data_value(V[:5]))


def test_balanced_kl_gradient_matches_finite_differences():
    rng = np.random.default_rng(7)
    y = np.array([0, 0, 0, 0, 1, 2, 2])
    V = rng.normal(size=(y.size, 3))
    loss = BalancedKLLoss(y, n_labels=3)
    G = loss.data_gradient(V)
    h = 1e-6
    fd = np.zeros_like(V)
    for idx in np.ndindex(V.shape):
        e = np.zeros_like(V)
        e[idx] = h
        fd[idx] = (loss.data_value(V + e) - loss.data_value(V - e)) / (2 * h)
    np.testing.assert_allclose(G, fd, rtol=1e-6, atol=1e-9)


def test_balanced_kl_is_rebuilt_from_its_fields():
    """Every attrs field is a constructor argument (what persistence relies on)."""
    loss = BalancedKLLoss([0, 1, 1, 2], n_labels=4)
    fields = {f.name: getattr(loss, f.name) for f in attrs.fields(BalancedKLLoss)}
    again = BalancedKLLoss(**fields)
    V = np.random.default_rng(13).normal(size=(4, 4))
    assert again.data_value(V) == loss.data_value(V)
    assert af.registry.losses.name_of(again) == "balanced_kl"


def test_history_error_with_a_loss_that_has_labels():
    flow = _grid_flow(shape=(4, 4), J=2)
    y = (np.arange(16) % 3 == 0).astype(int)
    fit = af.riemannian_gradient_descent(flow, BalancedKLLoss(y), max_iter=2)
    assert np.all(np.isfinite(fit.history["error"]))


def test_balanced_kl_checks():
    flow = _grid_flow(shape=(3, 3), J=3)
    y = np.arange(9) % 3
    BalancedKLLoss(y).check(flow)
    BalancedKLLoss(y, n_labels=3).check(flow)
    with pytest.raises(ValueError, match="n_labels"):
        BalancedKLLoss(y % 2, n_labels=2).check(flow)
    with pytest.raises(ValueError, match="labels must lie"):
        BalancedKLLoss(y, n_labels=2)
    with pytest.raises(ValueError, match="one entry per node"):
        BalancedKLLoss(y[:5]).check(flow)
    with pytest.raises(TypeError):
        BalancedKLLoss([0.5, 1.0])


# --------------------------------------------------------------------------- SPSA
def test_spsa_points_along_the_adjoint_gradient():
    flow = _grid_flow(shape=(3, 4), J=3, T=2.0, rho=0.2, seed=8)
    y = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 0])
    loss = BalancedKLLoss(y) + af.TangentSpaceRegularizer(0.05)
    ref = af.AdjointQuadrature().estimate(flow, loss)
    nnz = flow.weights.graph.nnz
    # expected cosine ≈ 1/sqrt(1 + nnz/n_samples) ≈ 0.8 (observed 0.83–0.85 over seeds)
    est = SPSA(n_samples=2 * nnz, eps=1e-4).estimate(flow, loss)
    g, r = est.gradient, ref.gradient
    cos = g @ r / (np.linalg.norm(g) * np.linalg.norm(r))
    assert cos > 0.5
    assert est.value == pytest.approx(ref.value, rel=1e-8)
    assert est.n_matvecs == 2 * 2 * nnz + 1
    forward = flow.solve(af.ExponentialKrylov(krylov_dim=30, tol=1e-12))
    reused = SPSA(n_samples=4).estimate(flow, loss, forward=forward)
    assert reused.n_matvecs == 8 and reused.forward is forward
    # deterministic with an int seed; resolved by name
    first = SPSA(n_samples=5, random_state=3).gradient(flow, loss)
    again = af.registry.gradient_estimators.resolve("spsa", n_samples=5, random_state=3)
    np.testing.assert_array_equal(again.gradient(flow, loss), first)


def test_spsa_validates():
    with pytest.raises(ValueError):
        SPSA(n_samples=0)
    with pytest.raises(ValueError):
        SPSA(eps=-1.0)


# --------------------------------------------------------------------------- end to end
def test_end_to_end_point_cloud_labeling_with_the_plugin():
    rng = np.random.default_rng(1)
    n0, n1 = 120, 30  # imbalanced clusters
    X = np.vstack([rng.normal([0, 0], 0.5, (n0, 2)), rng.normal([2.5, 0], 0.4, (n1, 2))])
    y = np.r_[np.zeros(n0, int), np.ones(n1, int)]
    f = y + rng.normal(0, 0.9, y.size)  # noisy 1-D observations
    D = (f[:, None] - np.array([0.0, 1.0])[None]) ** 2
    pixelwise = np.mean(D.argmin(axis=1) == y)
    assert pixelwise < 0.8

    graph = af.registry.graphs.resolve("radius", X=X, radius=0.45)
    weights = distance_weights(graph, X, scale=0.5)
    flow = af.LinearizedAssignmentFlow(af.SimilarityOperator(weights, D, rho=1.0), T=1.0)
    loss = af.registry.losses.resolve("balanced_kl", labels=y, n_labels=2)
    fit = af.riemannian_gradient_descent(flow, loss, max_iter=5)
    assert fit.history["loss"][-1] < fit.history["loss"][0]

    pred = fit.flow.solve("expm_multiply")
    assert pred.stats.integrator == "expm_multiply"
    acc = np.mean(pred.labels == y)
    per_class = [np.mean(pred.labels[y == c] == c) for c in (0, 1)]
    assert acc >= 0.95 and min(per_class) >= 0.9
    ref = fit.flow.solve(af.ExponentialKrylov(tol=1e-12))
    assert _rel(pred.V, ref.V) < 1e-8


def test_estimators_use_the_plugin_graph_and_loss_by_name():
    """The plugin's components are usable by their registered names in both estimators."""
    import warnings

    X, Y = af.datasets.make_voronoi("lines", 3, (16, 16), 0.3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = af.ImageLabeler(
            graph="radius", loss="balanced_kl", n_layers=1, max_iter=3, random_state=0
        ).fit(X, Y)
    assert lab.score(X, Y) > 0.5
    assert not isinstance(lab.predict_weights(X[:1])[0].graph, af.GridGraph)
    rng = np.random.default_rng(0)
    pts = np.r_[rng.normal(0, 0.5, (40, 2)), rng.normal(3, 0.5, (40, 2))]
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    clf = af.AssignmentFlowClassifier(graph="radius", loss="balanced_kl").fit(pts, y)
    assert clf.score(pts, y) > 0.9
