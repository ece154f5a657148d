"""Weight predictors: the registry family, gradients against finite differences, chunking."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import BAD, case

import assignflow as af
import assignflow.predictors as predictors_mod


def _fd(fun, x, eps=1e-6):
    x = np.array(x, dtype=float)
    out = np.empty(x.shape)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        out[idx] = (fun(xp) - fun(xm)) / (2 * eps)
    return out


def _edge_problem(grid=True, seed=0, hidden=0):
    rng = np.random.default_rng(seed)
    g = af.GridGraph((5, 6)) if grid else af.Graph.knn(rng.normal(size=(30, 2)), 4)
    f = rng.normal(size=(g.n_nodes, 5))
    n_cls = af.predictors.edge_offset_classes(g)[1]
    p = af.EdgePredictor(
        groups=[(0, 2), (2, 5)],
        theta=rng.uniform(0.2, 1.5, 2),
        bias=rng.normal(size=n_cls),
        scale=[1.3, 0.7],
        W1=rng.normal(size=(hidden, 2)),
        b1=rng.normal(size=hidden),
        w2=rng.normal(size=hidden),
    )
    G = rng.normal(size=g.nnz)
    return g, f, p, G


@pytest.mark.parametrize("grid", [True, False])
def test_edge_predictor_weights_are_row_stochastic(grid):
    g, f, p, _ = _edge_problem(grid)
    om = p.predict_weights(g, f)
    assert np.all(om.values > 0)
    np.testing.assert_allclose(np.add.reduceat(om.values, g.indptr[:-1]), 1.0, atol=1e-12)
    # similar neighbours get more weight (theta > 0)
    f2 = f.copy()
    f2[1] = f2[0]
    assert p.predict_weights(g, f2).to_csr()[0, 1] > om.to_csr()[0, 1]


@pytest.mark.parametrize("hidden", [0, 4])
@pytest.mark.parametrize("grid", [True, False])
def test_edge_predictor_vjp_matches_finite_differences(grid, hidden):
    g, f, p, G = _edge_problem(grid, seed=1, hidden=hidden)
    grads = p.vjp(g, f, G)
    assert set(grads) == set(p.params())
    for key in p.params():
        params = p.params()

        def fun(x, key=key, params=params):
            return p.with_params({**params, key: x}).predict_weights(g, f).values @ G

        np.testing.assert_allclose(grads[key], _fd(fun, params[key]), rtol=1e-6, atol=1e-9)
    gf = p.feature_vjp(g, f, G)
    ref = _fd(lambda x: p.predict_weights(g, x).values @ G, f)
    np.testing.assert_allclose(gf, ref, rtol=1e-5, atol=1e-9)


def test_edge_predictor_chunks_and_float32(monkeypatch):
    g, f, p, G = _edge_problem(True, seed=2, hidden=3)
    full = p.predict_weights(g, f).values
    vjp = p.vjp(g, f, G)
    monkeypatch.setattr(predictors_mod, "_CHUNK", 7)
    np.testing.assert_allclose(p.predict_weights(g, f).values, full, rtol=1e-13)
    for k, v in p.vjp(g, f, G).items():
        np.testing.assert_allclose(v, vjp[k], rtol=1e-12, atol=1e-14)
    w32 = p.predict_weights(g, f.astype(np.float32)).values
    np.testing.assert_allclose(w32, full, rtol=1e-5)


def test_edge_predictor_on_a_grid_builds_no_edge_sized_index_arrays(monkeypatch):
    # the row and class of every edge would cost 2 x 8 bytes per edge on large images
    g, f, p, G = _edge_problem(True, seed=3, hidden=2)
    ref_g = af.GridGraph(g.shape, g.radius)
    cls = af.predictors.edge_offset_classes(ref_g)[0]
    rows = ref_g.rows

    def no_rows(self):
        raise AssertionError("the edge predictor asked a grid for its nnz-sized rows")

    with monkeypatch.context() as mp:
        mp.setattr(af.GridGraph, "rows", property(no_rows))
        mp.setattr(predictors_mod, "edge_offset_classes", lambda graph: no_rows(graph))
        fresh = af.GridGraph(g.shape, g.radius)
        w = p.predict_weights(fresh, f).values
        grads = p.vjp(fresh, f, G)
    # the per-edge reference: biases indexed by the full class array
    phi = p._phi(f, rows, ref_g.indices)
    z = p.bias[cls] - phi @ p.theta + np.tanh(np.log1p(phi) @ p.W1.T + p.b1) @ p.w2
    ref = predictors_mod._segment_softmax(z, ref_g.indptr)
    np.testing.assert_allclose(w, ref, rtol=1e-12)
    gz = predictors_mod._segment_softmax_vjp(ref, G, ref_g.indptr)
    np.testing.assert_allclose(grads["bias"], np.bincount(cls, gz, minlength=p.bias.size),
                               rtol=1e-10, atol=1e-13)  # fmt: skip


def test_edge_predictor_initialization_prefers_same_label_neighbours():
    X, Y = af.datasets.make_voronoi("colors", 2, (24, 24), 0.2, random_state=0)
    graphs = [af.GridGraph((24, 24)) for _ in X]
    feats = [x.reshape(-1, 3) for x in X]
    labels = [y.ravel() for y in Y]
    p = af.EdgePredictor.initialize(graphs, feats, labels, groups=[(0, 3)], random_state=0)
    assert p.theta[0] > 0 and p.scale[0] > 0
    # with a perceptron it starts at the same (log-linear) weights
    q = af.EdgePredictor.initialize(
        graphs, feats, labels, groups=[(0, 3)], hidden=5, random_state=0
    )
    assert q.hidden == 5 and not np.any(q.w2)
    np.testing.assert_allclose(
        q.predict_weights(graphs[0], feats[0]).values,
        p.predict_weights(graphs[0], feats[0]).values,
    )
    om = p.predict_weights(graphs[0], feats[0])
    y = labels[0]
    same = y[graphs[0].rows] == y[graphs[0].indices]
    off = graphs[0].rows != graphs[0].indices
    assert om.values[same & off].mean() > 2 * om.values[~same].mean()


def test_edge_predictor_scale_of_a_feature_constant_on_most_edges():
    # the assignment of a nearly uniform first layer: differences ~1e-26 on most edges,
    # O(1) on a few; dividing by the median would blow those few up by 1e26, and the loss
    # would jump with any step of theta (seen as diverging training)
    g = af.GridGraph((12, 12))
    rng = np.random.default_rng(0)
    n = g.n_nodes
    f = np.column_stack([rng.normal(size=n), 1e-13 * rng.normal(size=n), 1e-3 * rng.normal(size=n)])
    f[[30, 100], 1:] = 1.0
    y = (np.arange(n) % 12 > 5).astype(int)
    p = af.EdgePredictor.initialize([g], [f], [y], groups=[(0, 1), (1, 2), (2, 3)], random_state=0)
    off = g.rows != g.indices
    phi = (f[g.rows[off]] - f[g.indices[off]]) ** 2
    assert p.scale[0] == pytest.approx(np.median(phi[:, 0]))  # a regular feature: the median
    assert np.median(phi[:, 1]) < predictors_mod.MIN_MEDIAN_TO_MEAN * phi[:, 1].mean()
    assert p.scale[1] == pytest.approx(phi[:, 1].mean())
    # merely sparse (median ~1e-4 of the mean, as a saturated layer's assignment): the median
    assert np.median(phi[:, 2]) < 1e-3 * phi[:, 2].mean()
    assert p.scale[2] == pytest.approx(np.median(phi[:, 2]))
    # so the loss is smooth in theta: finite differences agree with the pullback
    gw = rng.normal(size=g.nnz)

    def fun(th):
        return float(gw @ p.with_params({"theta": th}).predict_weights(g, f).values)

    th0 = np.array([0.5, 0.5, 0.5])
    grad = p.with_params({"theta": th0}).vjp(g, f, gw)["theta"]
    np.testing.assert_allclose(grad, _fd(fun, th0), rtol=1e-5, atol=1e-8)


def test_edge_predictor_bad_input():
    g, f, p, G = _edge_problem(True)
    with pytest.raises(ValueError, match="features"):
        p.predict_weights(g, f[:, :3])
    with pytest.raises(ValueError, match="bias"):
        p.predict_weights(af.Graph.knn(f, 3), f)
    with pytest.raises(ValueError, match="grad_weights"):
        p.vjp(g, f, G[:-1])
    with pytest.raises(ValueError, match="groups"):
        af.EdgePredictor(groups=[(2, 1)], theta=[1.0], bias=[0.0], scale=[1.0])
    with pytest.raises(ValueError, match="scale"):
        af.EdgePredictor(groups=[(0, 1)], theta=[1.0], bias=[0.0], scale=[0.0])


def test_prototype_predictor_gradients_match_finite_differences(monkeypatch):
    rng = np.random.default_rng(3)
    g = af.GridGraph((4, 5))
    F = rng.normal(size=(g.n_nodes, 6))
    P = af.WeightPredictor(rng.normal(size=(4, 6)), rng.normal(size=(4, 9)), 0.8)
    G = rng.normal(size=g.nnz)
    grads = P.vjp(g, F, G)
    for key in ("prototypes", "nu", "log_sigma"):
        params = P.params()

        def fun(x, key=key, params=params):
            return P.with_params({**params, key: x}).predict_weights(g, F).values @ G

        ref = _fd(fun, params[key])
        if key == "nu":  # tangent vectors: only the T0 part is a gradient
            ref -= ref.mean(axis=1, keepdims=True)
        np.testing.assert_allclose(grads[key], ref, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(
        P.feature_vjp(g, F, G),
        _fd(lambda x: P.predict_weights(g, x).values @ G, F),
        rtol=1e-6,
        atol=1e-8,
    )
    full = P.predict_weights(g, F).values
    monkeypatch.setattr(predictors_mod, "_CHUNK", 9)
    np.testing.assert_allclose(P.predict_weights(g, F).values, full, rtol=1e-13)


def test_predictors_registry_family():
    assert af.registry.predictors.get("edge") is af.EdgePredictor
    assert af.registry.predictors.get("prototype") is af.WeightPredictor
    assert "predictors" in af.registry.all_registries()
    with pytest.raises(ValueError, match="edge"):
        af.registry.predictors.get("edgy")
    p = _edge_problem()[2]
    q = p.with_params(p.params())
    np.testing.assert_array_equal(q.theta, p.theta)
    np.testing.assert_array_equal(q.bias, p.bias)


@pytest.mark.parametrize("hidden", [0, 3])
def test_vjp_both_equals_the_two_pullbacks(hidden):
    g, f, p, G = _edge_problem(True, seed=4, hidden=hidden)
    grads, gf = p.vjp_both(g, f, G)
    for k, v in p.vjp(g, f, G).items():
        np.testing.assert_allclose(grads[k], v, rtol=1e-13)
    np.testing.assert_allclose(gf, p.feature_vjp(g, f, G), rtol=1e-13)
    rng = np.random.default_rng(5)
    P = af.WeightPredictor(rng.normal(size=(3, 4)), rng.normal(size=(3, 9)), 0.5)
    F = rng.normal(size=(g.n_nodes, 4))
    grads, gf = P.vjp_both(g, F, G)
    np.testing.assert_allclose(gf, P.feature_vjp(g, F, G))
    np.testing.assert_allclose(grads["nu"], P.vjp(g, F, G)["nu"])


def test_edge_predictor_cache_gives_the_same_pullbacks():
    g, f, p, G = _edge_problem(True, seed=6, hidden=2)
    cache = {}
    w = p.predict_weights(g, f, cache=cache)
    np.testing.assert_array_equal(w.values, p.predict_weights(g, f).values)
    for k, v in p.vjp(g, f, G).items():
        np.testing.assert_allclose(p.vjp(g, f, G, cache=cache)[k], v, rtol=1e-14)
    np.testing.assert_allclose(p.vjp_both(g, f, G, cache=cache)[1], p.feature_vjp(g, f, G))


# ===== bad input (moved from test_bad_input_*.py)
# Errors name the argument (a whole word); a wrong type may be either kind (BAD).
# (window_features' bad input lives in test_features.py.)
_RNG = np.random.default_rng(0)
_G3 = af.GridGraph((3, 3))
_WP = af.WeightPredictor(_RNG.normal(size=(2, 9)), _RNG.normal(size=(2, 9)), 1.0)
_Z29 = np.zeros((2, 9))

BAD_PREDICTOR_INIT = [
    case("prototypes-1d", lambda: (np.zeros(9), _Z29, 1.0), ValueError, "prototypes"),
    case("prototypes-empty", lambda: (np.zeros((0, 9)), np.zeros((0, 9)), 1.0), ValueError,
         "prototypes"),
    case("prototypes-nan", lambda: (np.full((2, 9), np.nan), _Z29, 1.0), ValueError,
         "prototypes"),
    case("nu-rows", lambda: (_Z29, np.zeros((3, 9)), 1.0), ValueError, "nu"),
    case("nu-no-columns", lambda: (_Z29, np.zeros((2, 0)), 1.0), ValueError, "nu"),
    case("nu-str", lambda: (_Z29, "nu", 1.0), BAD, "nu"),
    case("sigma-negative", lambda: (_Z29, _Z29, -1.0), ValueError, "sigma"),
    case("sigma-zero", lambda: (_Z29, _Z29, 0.0), ValueError, "sigma"),
    case("sigma-nan", lambda: (_Z29, _Z29, np.nan), ValueError, "sigma"),
    case("sigma-str", lambda: (_Z29, _Z29, "a"), BAD, "sigma"),
    case("sigma-bool", lambda: (_Z29, _Z29, True), BAD, "sigma"),
    case("sigma-None", lambda: (_Z29, _Z29, None), BAD, "sigma"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "exc", "match"), BAD_PREDICTOR_INIT)
def test_weight_predictor_rejects_bad_parameters(args, exc, match):
    with pytest.raises(exc, match=match):
        af.WeightPredictor(*args())


def _init(feature_images, label_images, **kw):
    return af.WeightPredictor.initialize_from_images(feature_images, label_images, **kw)


_IMG4, _LAB4 = [np.zeros((4, 4))], [np.zeros((4, 4), int)]
BAD_PREDICTOR_CALLS = [
    case("graph-not-grid", lambda: _WP.predict_weights(af.Graph.knn(np.eye(9), 2),
         np.zeros((9, 9))), BAD, "graph"),
    # the graph's window does not fit the predictor's nu: either name is right
    case("graph-window", lambda: _WP.predict_weights(af.GridGraph((3, 3), 2), np.zeros((9, 9))),
         ValueError, "graph|nu"),
    case("features-shape", lambda: _WP.predict_weights(_G3, np.zeros((9, 4))), ValueError,
         "features"),
    case("features-1d", lambda: _WP.predict_weights(_G3, np.zeros(81)), ValueError, "features"),
    case("features-nan", lambda: _WP.predict_weights(_G3, np.full((9, 9), np.nan)), ValueError,
         "features"),
    case("vjp-grad-shape", lambda: _WP.vjp(_G3, np.zeros((9, 9)), np.zeros(3)), ValueError,
         "grad_weights"),
    case("vjp-grad-nan", lambda: _WP.vjp(_G3, np.zeros((9, 9)), np.full(_G3.nnz, np.nan)),
         ValueError, "grad_weights"),
    case("init-empty", lambda: _init([], []), ValueError, "feature_images"),
    case("init-count", lambda: _init(_IMG4, []), ValueError, "label_images"),
    case("init-shape", lambda: _init(_IMG4, [np.zeros((3, 3), int)]), ValueError,
         "label_images"),
    case("init-n_prototypes-0", lambda: _init(_IMG4, _LAB4, n_prototypes=0), ValueError,
         "n_prototypes"),
    case("init-radius-negative", lambda: _init(_IMG4, _LAB4, radius=-1), ValueError, "radius"),
    case("init-strength-nan", lambda: _init(_IMG4, _LAB4, strength=np.nan), ValueError,
         "strength"),
    case("init-sigma-zero", lambda: _init(_IMG4, _LAB4, sigma=0.0), ValueError, "sigma"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "exc", "match"), BAD_PREDICTOR_CALLS)
def test_weight_predictor_calls_reject_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_weight_predictor_one_pixel_and_no_mutation():
    img = np.array([[0.5]])
    F = af.window_features(img, 1)
    np.testing.assert_array_equal(F, np.full((1, 9), 0.5))  # edge replication
    wp = af.WeightPredictor.initialize_from_images([img], [np.array([[0]])], n_prototypes=4)
    assert wp.n_prototypes == 1  # clipped to the number of pixels
    om = wp.predict_weights(af.GridGraph((1, 1)), F)
    np.testing.assert_array_equal(om.values, [1.0])
    g = np.ones(_G3.nnz)
    feats = _RNG.normal(size=(9, 9))
    f0, g0 = feats.copy(), g.copy()
    _WP.vjp(_G3, feats, g)
    np.testing.assert_array_equal(feats, f0)
    np.testing.assert_array_equal(g, g0)
