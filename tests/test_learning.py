"""Learning the weights: multiplicative updates and Riemannian gradient descent.

The losses themselves are tested in ``test_losses.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    BAD,
    INF,
    NAN,
    case,
    complex_array,
    disconnected_graph,
    nan_array,
    random_weights,
    small_laf,
    str_array,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import assignflow as af


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
    with pytest.raises(ValueError, match="gradient_estimator"):
        af.riemannian_gradient_descent(flow, loss, "autodiff")
    with pytest.raises(TypeError, match="flow"):
        af.riemannian_gradient_descent(None, loss)
    with pytest.raises(ValueError, match="gradient"):
        af.multiplicative_update(flow.weights, np.full(flow.weights.graph.nnz, np.nan), 1.0)


# ===== bad input (moved from test_bad_input_*.py)
# Errors name the argument (a whole word); a wrong type may be either kind (BAD).
_OM9 = af.Weights.uniform(af.GridGraph((3, 3)))
_LAF9 = af.LinearizedAssignmentFlow(
    af.SimilarityOperator(_OM9, np.random.default_rng(1).uniform(0.0, 1.0, (9, 3)), rho=0.5),
    T=1.0,
)
_KL9 = af.KLLoss(np.array([0, 1, 2, 0, 1, 2, 0, 1, 2]))
_N = _OM9.graph.nnz
_rgd = af.riemannian_gradient_descent
_mu = af.multiplicative_update

LEARN_CASES = [
    case("flow-str", lambda: _rgd("f", _KL9), BAD, "flow"),
    case("loss-int", lambda: _rgd(_LAF9, 5), BAD, "loss"),
    case("estimator-unknown", lambda: _rgd(_LAF9, _KL9, "nope"), ValueError, "gradient_estimator"),
    # an unknown name's error lists (or suggests) the known ones
    case(
        "estimator-typo",
        lambda: _rgd(_LAF9, _KL9, "closed_form_lowrank"),
        ValueError,
        "closed_form_low_rank",
    ),
    case("estimator-int", lambda: _rgd(_LAF9, _KL9, 5), BAD, "gradient_estimator|estimator"),
    case("estimator-None", lambda: _rgd(_LAF9, _KL9, None), BAD, "gradient_estimator|estimator"),
    case(
        "estimator-integrator",
        lambda: _rgd(_LAF9, _KL9, af.Euler()),
        BAD,
        "gradient_estimator|estimator",
    ),
    case("step-zero", lambda: _rgd(_LAF9, _KL9, step_size=0), ValueError, "step_size"),
    case("step-neg", lambda: _rgd(_LAF9, _KL9, step_size=-1), ValueError, "step_size"),
    case("step-nan", lambda: _rgd(_LAF9, _KL9, step_size=NAN), ValueError, "step_size"),
    case("step-bool", lambda: _rgd(_LAF9, _KL9, step_size=True), BAD, "step_size"),
    case("iter-zero", lambda: _rgd(_LAF9, _KL9, max_iter=0), ValueError, "max_iter"),
    case("iter-float", lambda: _rgd(_LAF9, _KL9, max_iter=2.0), BAD, "max_iter"),
    case("iter-bool", lambda: _rgd(_LAF9, _KL9, max_iter=True), BAD, "max_iter"),
    case("tol-neg", lambda: _rgd(_LAF9, _KL9, tol=-1.0), ValueError, "tol"),
    case("tol-nan", lambda: _rgd(_LAF9, _KL9, tol=NAN), ValueError, "tol"),
    case("maxlog-zero", lambda: _rgd(_LAF9, _KL9, max_log_step=0), ValueError, "max_log_step"),
    case("maxlog-neg", lambda: _rgd(_LAF9, _KL9, max_log_step=-1), ValueError, "max_log_step"),
    case("maxlog-nan", lambda: _rgd(_LAF9, _KL9, max_log_step=NAN), ValueError, "max_log_step"),
    case("maxlog-str", lambda: _rgd(_LAF9, _KL9, max_log_step="5"), BAD, "max_log_step"),
    case("callback-int", lambda: _rgd(_LAF9, _KL9, callback=5), BAD, "callback"),
    case("labels>=J", lambda: _rgd(_LAF9, af.KLLoss(np.full(9, 3))), ValueError, "labels"),
    case("mu-weights-str", lambda: _mu("w", np.zeros(_N), 1.0), BAD, "weights"),
    case("mu-grad-shape", lambda: _mu(_OM9, np.zeros(3), 1.0), ValueError, "gradient"),
    case("mu-grad-nan", lambda: _mu(_OM9, nan_array(_N), 1.0), ValueError, "gradient"),
    case("mu-grad-str", lambda: _mu(_OM9, str_array(_N), 1.0), BAD, "gradient"),
    case("mu-grad-complex", lambda: _mu(_OM9, complex_array(_N), 1.0), BAD, "gradient"),
    case("mu-grad-None", lambda: _mu(_OM9, None, 1.0), BAD, "gradient"),
    case("mu-step-nan", lambda: _mu(_OM9, np.zeros(_N), NAN), ValueError, "step_size"),
    case("mu-step-neg", lambda: _mu(_OM9, np.zeros(_N), -1.0), ValueError, "step_size"),
    case("mu-step-str", lambda: _mu(_OM9, np.zeros(_N), "1"), BAD, "step_size"),
    case("mu-step-inf", lambda: _mu(_OM9, np.ones(_N), INF), ValueError, "step_size"),
    case("mu-maxlog-zero", lambda: _mu(_OM9, np.zeros(_N), 1.0, 0.0), ValueError, "max_log_step"),
    case("mu-maxlog-nan", lambda: _mu(_OM9, np.zeros(_N), 1.0, NAN), ValueError, "max_log_step"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), LEARN_CASES)
def test_learning_rejects(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.parametrize("max_log_step", [None, 0.5])
def test_multiplicative_update_on_isolated_nodes(max_log_step):
    g = disconnected_graph()
    om = random_weights(g)
    grad = np.random.default_rng(0).standard_normal(g.nnz)
    gc = grad.copy()
    new = af.multiplicative_update(om, grad, 0.3, max_log_step)
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
    np.testing.assert_allclose(
        af.multiplicative_update(om, grad, 0.0).values, om.values, rtol=1e-15
    )


def test_descent_on_disconnected_graph_runs_and_stays_valid():
    g = disconnected_graph()
    flow = small_laf(g, J=2, rho=0.5, T=1.0)
    y = np.array([0, 0, 1, 1, 0, 1, 0])
    res = af.riemannian_gradient_descent(
        flow, af.KLLoss(y) + af.TangentSpaceRegularizer(1e-3), "dense_frechet", max_iter=3
    )
    assert res.n_iter == 3
    for key in ("loss", "grad_norm"):
        assert np.all(np.isfinite(res.history[key]))
    assert res.history["loss"].min() <= res.history["loss"][0]
    np.testing.assert_allclose(np.add.reduceat(res.weights.values, g.indptr[:-1]), 1.0)
    np.testing.assert_array_equal(res.weights.values[g.indptr[[5, 6]]], 1.0)


def test_learner_average_scores_the_bias_corrected_average_of_the_iterates():
    # iterates x_t = t - 1 by a custom step; validation sees a_t = EMA with bias
    # correction and the best average is returned; without validation nothing changes
    from assignflow.learning import Learner

    def objective(p):
        return float(p["x"][0]), {"x": np.ones(1)}, {}

    def step(p, g, it):
        return {"x": p["x"] + 1.0}

    seen = []

    def validate(p):
        seen.append(float(p["x"][0]))
        return {"val_loss": abs(float(p["x"][0]) - 2.0)}

    a = 0.5
    res = Learner(max_iter=6, n_iter_no_change=100, average=a).run(
        objective, {"x": np.zeros(1)}, validate=validate, step=step, select="val_loss"
    )
    xs = np.arange(6.0)
    ref = [sum(a ** (t - s) * (1 - a) * xs[s] for s in range(t + 1)) / (1 - a ** (t + 1))
           for t in range(6)]  # fmt: skip
    np.testing.assert_allclose(seen, ref, rtol=1e-14)
    best = int(np.argmin(np.abs(np.array(ref) - 2.0)))
    assert res.best_iter == best + 1
    np.testing.assert_allclose(res.params["x"], ref[best], rtol=1e-14)
    plain = Learner(max_iter=6, n_iter_no_change=100).run(
        objective, {"x": np.zeros(1)}, validate=validate, step=step, select="val_loss"
    )
    np.testing.assert_array_equal(plain.params["x"], [2.0])
    no_val = Learner(max_iter=6, average=a).run(objective, {"x": np.zeros(1)}, step=step)
    np.testing.assert_array_equal(no_val.params["x"], [0.0])  # the lowest loss: x = 0
    for bad in (1.0, -0.1, "0.5"):
        with pytest.raises(ValueError, match="average"):
            Learner(average=bad)


def test_multiplicative_update_with_a_bounded_step_is_the_scaled_riemannian_exp():
    rng = np.random.default_rng(5)
    g = af.GridGraph((4, 5))
    om = af.Weights.normalized(g, rng.uniform(1e-6, 1, g.nnz))
    grad = rng.standard_normal(g.nnz) * rng.choice([1e-3, 1.0, 1e3], g.nnz)
    h, cap = 2.0, 0.5
    new = af.multiplicative_update(om, grad, h, max_log_step=cap)
    for i in range(g.n_nodes):
        s = slice(g.indptr[i], g.indptr[i + 1])
        p, step = om.values[s], h * grad[s]
        c = step - step.mean()
        scale = min(1.0, cap / np.abs(c).max()) if np.abs(c).max() > 0 else 1.0
        ref = p * np.exp(-scale * c)
        np.testing.assert_allclose(new.values[s], ref / ref.sum(), rtol=1e-12)


def test_descent_reports_the_fisher_rao_norm_of_the_riemannian_gradient():
    rng = np.random.default_rng(2)
    g = af.GridGraph((5, 6))
    D = rng.uniform(0, 1, (g.n_nodes, 3))
    om = af.Weights.normalized(g, rng.uniform(0.1, 1, g.nnz))
    flow = af.LinearizedAssignmentFlow(af.SimilarityOperator(om, D, rho=0.5), T=2.0)
    loss = af.KLLoss(rng.integers(0, 3, g.n_nodes))
    res = af.riemannian_gradient_descent(flow, loss, max_iter=1)
    grad = af.ClosedFormLowRank().gradient(flow, loss)
    total = 0.0
    for i in range(g.n_nodes):
        s = slice(g.indptr[i], g.indptr[i + 1])
        p, gr = om.values[s], grad[s]
        rg = p * gr - (p @ gr) * p  # R_ω ∂L
        total += np.sum(rg * rg / p)
    np.testing.assert_allclose(res.history["grad_norm"][0], np.sqrt(total), rtol=1e-10)
