"""Losses and Riemannian gradient descent on the weights."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import assignflow as af
from assignflow._simplex import log_softmax as _log_softmax


def voronoi_flow(shape=(24, 24), scenario="lines", noise=0.3, seed=1, T=3.0, rho=0.1):
    imgs, labs, protos = af.datasets.make_voronoi(
        scenario, 1, shape, noise=noise, random_state=seed, return_prototypes=True
    )
    g = af.GridGraph(shape)
    D = af.distance_matrix(imgs[0], protos)
    flow = af.LinearizedAssignmentFlow(
        af.SimilarityOperator(af.Weights.uniform(g), D, rho=rho), T=T
    )
    return flow, labs[0].ravel()


# --------------------------------------------------------------------------- losses
def test_kl_loss_value_and_gradient():
    rng = np.random.default_rng(0)
    I, J = 7, 4
    V = rng.standard_normal((I, J))
    y = rng.integers(0, J, I)
    loss = af.KLLoss(y)
    W = np.exp(_log_softmax(J * V))
    ref = -np.mean(np.log(W[np.arange(I), y]))
    assert loss.data_value(V) == pytest.approx(ref, rel=1e-13)
    # the KL form: KL(W*||W) with one-hot W* is -log W_y
    grad = loss.data_gradient(V)
    np.testing.assert_allclose(grad, J * (W - af.losses.labels_to_one_hot(y, J)) / I, atol=1e-15)
    fd = np.zeros_like(V)
    for i in range(I):
        for j in range(J):
            E = np.zeros_like(V)
            E[i, j] = 1e-6
            fd[i, j] = (loss.data_value(V + E) - loss.data_value(V - E)) / 2e-6
    np.testing.assert_allclose(grad, fd, atol=1e-8)


def test_kl_loss_sample_weights():
    rng = np.random.default_rng(1)
    V = rng.standard_normal((5, 3))
    y = np.array([0, 1, 2, 1, 0])
    w = np.array([1.0, 2.0, 0.0, 1.0, 1.0])
    loss = af.KLLoss(y, sample_weight=w)
    per = -_log_softmax(3 * V)[np.arange(5), y]
    assert loss.data_value(V) == pytest.approx(np.sum(w * per) / w.sum())
    with pytest.raises(ValueError, match="sample_weight"):
        af.KLLoss(y, sample_weight=[1.0, -1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="sample_weight"):
        af.KLLoss(y, sample_weight=[1.0, 1.0])


def test_tangent_regularizer_value_and_gradient():
    rng = np.random.default_rng(2)
    g = af.GridGraph((3, 4))
    om = af.Weights.normalized(g, rng.uniform(0.1, 1, g.nnz))
    reg = af.TangentSpaceRegularizer(tau=0.3)
    # value: (τ/2) Σ_i ||Π0 log ω_i||²
    ref = 0.0
    for i in range(g.n_nodes):
        lw = np.log(om.values[g.indptr[i] : g.indptr[i + 1]])
        ref += np.sum((lw - lw.mean()) ** 2)
    assert reg.reg_value(om) == pytest.approx(0.15 * ref)
    assert reg.reg_value(af.Weights.uniform(g)) == pytest.approx(0.0, abs=1e-25)
    grad = reg.reg_gradient(om)
    fd = np.empty(g.nnz)
    for e in range(g.nnz):
        vp, vm = om.values.copy(), om.values.copy()
        vp[e] += 1e-7
        vm[e] -= 1e-7
        fd[e] = (
            reg.reg_value(af.Weights._unchecked(g, vp))
            - reg.reg_value(af.Weights._unchecked(g, vm))
        ) / 2e-7
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="tau"):
        af.TangentSpaceRegularizer(tau=-1)


def test_composite_loss():
    y = np.array([0, 1, 1])
    loss = af.KLLoss(y) + af.TangentSpaceRegularizer(0.1) + af.TangentSpaceRegularizer(0.2)
    assert isinstance(loss, af.CompositeLoss) and len(loss.terms) == 3
    assert loss.has_data_term
    assert not af.TangentSpaceRegularizer(0.1).has_data_term
    g = af.GridGraph((1, 3))
    om = af.Weights.normalized(g, np.arange(1, g.nnz + 1.0))
    V = np.array([[0.1, -0.1], [0.0, 0.0], [-0.2, 0.2]])
    expected = af.KLLoss(y).data_value(V) + af.TangentSpaceRegularizer(0.3).reg_value(om)
    assert loss.value(V, om) == pytest.approx(expected)
    with pytest.raises(TypeError):
        af.CompositeLoss((af.KLLoss(y), "l2"))
    assert af.registry.losses.get("kl") is af.KLLoss
    assert af.registry.losses.get("tangent_space") is af.TangentSpaceRegularizer


def test_kl_loss_bad_labels():
    with pytest.raises(TypeError, match="labels"):
        af.KLLoss(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="labels"):
        af.KLLoss(np.array([-1, 0]))
    with pytest.raises(ValueError, match="labels"):
        af.KLLoss(np.array([], dtype=int))
    # float labels with integral values are accepted
    assert af.KLLoss(np.array([0.0, 2.0])).labels.tolist() == [0, 2]


# --------------------------------------------------------------------------- descent
def test_multiplicative_update_is_riemannian_exp():
    rng = np.random.default_rng(3)
    g = af.GridGraph((3, 3))
    om = af.Weights.normalized(g, rng.uniform(0.1, 1, g.nnz))
    grad = rng.standard_normal(g.nnz)
    h = 0.7
    new = af.multiplicative_update(om, grad, h)
    for i in range(g.n_nodes):
        s = slice(g.indptr[i], g.indptr[i + 1])
        p, gr = om.values[s], grad[s]
        # Exp_p(−h R_p g) = lift(p, −h R_p g / p)
        rg = p * gr - (p @ gr) * p
        v = -h * rg / p
        ref = p * np.exp(v) / np.sum(p * np.exp(v))
        np.testing.assert_allclose(new.values[s], ref, rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.floats(1e-3, 1e4), st.integers(0, 1000))
def test_multiplicative_update_keeps_weights_feasible(h, seed):
    rng = np.random.default_rng(seed)
    g = af.GridGraph((4, 4))
    om = af.Weights.normalized(g, rng.uniform(0.01, 1, g.nnz))
    new = af.multiplicative_update(om, 100 * rng.standard_normal(g.nnz), h)
    assert np.all(new.values > 0)
    np.testing.assert_allclose(np.add.reduceat(new.values, g.indptr[:-1]), 1.0, atol=1e-12)


def test_descent_decreases_loss_and_keeps_feasibility():
    flow, y = voronoi_flow()
    loss = af.KLLoss(y) + af.TangentSpaceRegularizer(1e-4)
    seen = []

    def cb(it, rec, weights):
        seen.append(weights)
        assert np.all(weights.values > 0)
        g = weights.graph
        np.testing.assert_allclose(np.add.reduceat(weights.values, g.indptr[:-1]), 1.0, atol=1e-12)

    res = af.riemannian_gradient_descent(flow, loss, step_size=0.1, max_iter=8, callback=cb)
    h = res.history
    assert len(h["loss"]) == 8 == len(seen) == res.n_iter
    assert h["loss"][-1] < h["loss"][0]
    assert np.all(np.diff(h["loss"]) < 1e-12)  # monotone for this small step
    assert h["error"][-1] <= h["error"][0]
    assert np.all(np.isfinite(h["grad_norm"])) and np.all(np.diff(h["time"]) > 0)
    # the returned flow uses the learned weights and labels better than uniform weights
    err_uniform = np.mean(flow.solve().labels != y)
    err_learned = np.mean(res.flow.solve().labels != y)
    assert err_learned < err_uniform


@pytest.mark.parametrize("estimator", ["adjoint_quadrature", af.ClosedFormLowRank(rank=2)])
def test_descent_with_other_estimators(estimator):
    flow, y = voronoi_flow(shape=(10, 10))
    res = af.riemannian_gradient_descent(flow, af.KLLoss(y), estimator, max_iter=4)
    assert res.history["loss"][-1] < res.history["loss"][0]


def test_descent_tolerance_and_callback_stop(capsys):
    flow, y = voronoi_flow(shape=(10, 10))
    res = af.riemannian_gradient_descent(flow, af.KLLoss(y), max_iter=50, tol=0.5)
    assert res.converged and res.n_iter < 50
    res = af.riemannian_gradient_descent(
        flow, af.KLLoss(y), max_iter=50, callback=lambda it, rec, w: it == 3, verbose=True
    )
    assert res.n_iter == 3
    assert "iter" in capsys.readouterr().out


def test_descent_bad_input():
    flow, y = voronoi_flow(shape=(6, 6))
    loss = af.KLLoss(y)
    with pytest.raises(ValueError, match="step_size"):
        af.riemannian_gradient_descent(flow, loss, step_size=0)
    with pytest.raises(ValueError, match="max_iter"):
        af.riemannian_gradient_descent(flow, loss, max_iter=0)
    with pytest.raises(ValueError, match="Known gradient_estimator"):
        af.riemannian_gradient_descent(flow, loss, "autodiff")
    with pytest.raises(TypeError, match="flow"):
        af.riemannian_gradient_descent(None, loss)
    with pytest.raises(ValueError, match="gradient"):
        af.multiplicative_update(flow.weights, np.full(flow.weights.graph.nnz, np.nan), 1.0)
