"""ImageLabeler, the weight predictor, persistence and the fit/predict/label commands."""

from __future__ import annotations

import itertools
import json
import pickle
import warnings
import zipfile

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import assignflow as af
from assignflow.cli import main
from assignflow.predictor import WeightPredictor, window_features


@pytest.fixture(scope="module")
def lines_data():
    X, Y = af.datasets.make_voronoi("lines", 4, (32, 32), noise=0.3, random_state=0)
    Xt, Yt = af.datasets.make_voronoi("lines", 2, (32, 32), noise=0.3, random_state=50)
    return X, Y, Xt, Yt


def small_model(**kw):
    params = dict(rho=0.1, T=1.0, max_iter=4, n_prototypes=6, random_state=0)
    params.update(kw)
    return af.ImageLabeler(**params)


@pytest.fixture(scope="module")
def fitted(lines_data):
    X, Y, _, _ = lines_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return small_model().fit(X, Y)


# --------------------------------------------------------------------------- predictor
def test_predictor_vjp_matches_finite_differences():
    rng = np.random.default_rng(0)
    g = af.GridGraph((5, 6))
    F = window_features(rng.random((5, 6, 3)))
    P = WeightPredictor(rng.random((4, 27)), rng.standard_normal((4, 9)), 0.7)
    G = rng.standard_normal(g.nnz)

    def L(p):
        return p.predict_weights(g, F).values @ G

    grads = P.vjp(g, F, G)
    eps = 1e-6
    for name in ("prototypes", "nu"):
        arr = getattr(P, name)
        fd = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            a, b = arr.copy(), arr.copy()
            a[idx] += eps
            b[idx] -= eps
            kw_a = {"prototypes": P.prototypes, "nu": P.nu, "sigma": P.sigma, name: a}
            kw_b = {"prototypes": P.prototypes, "nu": P.nu, "sigma": P.sigma, name: b}
            fd[idx] = (L(WeightPredictor(**kw_a)) - L(WeightPredictor(**kw_b))) / (2 * eps)
        if name == "nu":  # ν lives in T0: compare the projected gradients
            fd -= fd.mean(axis=1, keepdims=True)
        np.testing.assert_allclose(grads[name], fd, atol=1e-8)
    fs = (
        L(WeightPredictor(P.prototypes, P.nu, P.sigma + eps))
        - L(WeightPredictor(P.prototypes, P.nu, P.sigma - eps))
    ) / (2 * eps)
    assert grads["sigma"] == pytest.approx(fs, rel=1e-6)


def test_predictor_weights_are_feasible_and_chain_through_the_flow():
    rng = np.random.default_rng(1)
    g = af.GridGraph((6, 6))
    img = rng.random((6, 6))
    F = window_features(img)
    P = WeightPredictor(rng.random((3, 9)), rng.standard_normal((3, 9)), 1.3)
    om = P.predict_weights(g, F)
    np.testing.assert_allclose(np.add.reduceat(om.values, g.indptr[:-1]), 1.0)
    # chain rule: d/dσ L(Ω̂(σ)) = <∂L/∂ω, dΩ̂/dσ> with the closed-form gradient
    D = af.distance_matrix(img, [0.0, 1.0])
    y = (img.ravel() > 0.5).astype(int)
    loss = af.KLLoss(y)

    def value(p):
        flow = af.LinearizedAssignmentFlow(
            af.SimilarityOperator(p.predict_weights(g, F), D, rho=0.5), T=1.0
        )
        return af.DenseFrechet().estimate(flow, loss)

    r = value(P)
    gs = P.vjp(g, F, r.gradient)["sigma"]
    eps = 1e-6
    fd = (
        value(WeightPredictor(P.prototypes, P.nu, P.sigma + eps)).value
        - value(WeightPredictor(P.prototypes, P.nu, P.sigma - eps)).value
    ) / (2 * eps)
    assert gs == pytest.approx(fd, rel=1e-5)


def test_predictor_bad_input():
    with pytest.raises(ValueError, match="sigma"):
        WeightPredictor(np.zeros((2, 9)), np.zeros((2, 9)), 0.0)
    with pytest.raises(ValueError, match="nu"):
        WeightPredictor(np.zeros((2, 9)), np.zeros((3, 9)))
    P = WeightPredictor(np.zeros((2, 9)), np.zeros((2, 9)))
    with pytest.raises(ValueError, match="features"):
        P.predict_weights(af.GridGraph((3, 3)), np.zeros((9, 4)))
    with pytest.raises(TypeError, match="GridGraph"):
        P.predict_weights(af.Graph.from_adjacency(np.eye(9)), np.zeros((9, 9)))


# --------------------------------------------------------------------------- estimator
def test_fit_predict_shapes_and_attributes(fitted, lines_data):
    _X, _Y, Xt, _ = lines_data
    assert list(fitted.classes_) == [0, 1]
    assert fitted.prototypes_.shape == (2, 1)
    assert fitted.n_iter_ >= 1 and 1 <= fitted.best_iter_ <= fitted.n_iter_
    for key in ("loss", "error", "val_error", "time"):
        assert len(fitted.history_[key]) == fitted.n_iter_
    pred = fitted.predict(Xt)
    assert pred.shape == (2, 32, 32) and set(np.unique(pred)) <= {0, 1}
    proba = fitted.predict_proba(Xt)
    assert proba.shape == (2, 32, 32, 2)
    np.testing.assert_allclose(proba.sum(-1), 1.0)
    np.testing.assert_array_equal(pred, np.argmax(proba, -1))
    assert 0.0 <= fitted.score(Xt, lines_data[3]) <= 1.0
    w = fitted.predict_weights(Xt[:1])[0]
    assert isinstance(w, af.Weights) and w.graph.shape == (32, 32)


def test_learned_predictor_beats_uniform_weights(lines_data):
    X, Y, Xt, Yt = lines_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = small_model(max_iter=12, n_prototypes=20).fit(X, Y)
    protos = af.datasets.voronoi_prototypes("lines")
    errs = []
    for x, y in zip(Xt, Yt, strict=True):
        D = af.distance_matrix(x, protos)
        sim = af.SimilarityOperator(af.Weights.uniform(af.GridGraph(y.shape)), D, rho=0.1)
        errs.append(np.mean(af.LinearizedAssignmentFlow(sim, T=1.0).solve().labels != y.ravel()))
    assert 1 - lab.score(Xt, Yt) < 0.7 * np.mean(errs)


def _uniform_error(Xt, Yt, rho, T):
    protos = af.datasets.voronoi_prototypes("lines")
    errs = []
    for x, y in zip(Xt, Yt, strict=True):
        D = af.distance_matrix(x, protos)
        sim = af.SimilarityOperator(af.Weights.uniform(af.GridGraph(y.shape)), D, rho=rho)
        errs.append(np.mean(af.LinearizedAssignmentFlow(sim, T=T).solve().labels != y.ravel()))
    return float(np.mean(errs))


@pytest.mark.parametrize(
    "options",
    [
        {"predictor": "edge", "n_layers": 1},
        {"predictor": "edge", "n_layers": 2},
        {"predictor": "edge", "n_layers": 1, "predictor_params": {"hidden": 4}},
        {"predictor": "prototype", "n_layers": 1, "n_prototypes": 20},
    ],
    ids=["edge", "edge-2-layers", "edge-mlp", "prototype"],
)
def test_every_predictor_and_a_deep_stack_beat_uniform_weights(lines_data, options):
    X, Y, Xt, Yt = lines_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = af.ImageLabeler(max_iter=15, random_state=0, **options).fit(X, Y)
    assert len(lab.predictors_) == options["n_layers"] == len(lab.rho_) == len(lab.T_)
    # never worse than uniform weights at the learned rho and T, and better than rounding
    uniform = _uniform_error(Xt, Yt, float(lab.rho_[0]), float(lab.T_.sum()))
    assert 1 - lab.score(Xt, Yt) < uniform


def test_crops_cut_image_features_and_labels_at_one_place():
    from assignflow.estimators import _Cropper, _Image

    rng = np.random.RandomState(0)
    shape = (40, 60)
    img = np.arange(np.prod(shape), dtype=float).reshape(*shape, 1)
    y = (np.arange(np.prod(shape)) % 3).reshape(shape)
    F = np.stack([img.ravel(), -img.ravel()], axis=1)
    d = _Image(image=img, graph=af.GridGraph(shape, 2), features=F, y=y.ravel())
    crops = _Cropper([d, d], 1200, rng)  # a quarter of 2 x 2400 pixels: 32 x 32 crops
    for c in crops.sample() + crops.sample():
        assert c.image.shape == (32, 32, 1) and c.graph.shape == (32, 32)
        assert c.graph.radius == 2
        r0, c0 = divmod(int(c.image[0, 0, 0]), shape[1])
        window = (slice(r0, r0 + 32), slice(c0, c0 + 32))
        np.testing.assert_array_equal(c.image, img[window])
        np.testing.assert_array_equal(c.features[:, 0], img[window].ravel())
        np.testing.assert_array_equal(c.features[:, 1], -img[window].ravel())
        np.testing.assert_array_equal(c.y, y[window].ravel())
    # a budget above the training set's size: the whole images, as given
    assert _Cropper([d], 10**6, rng).sample()[0] is d
    assert _Cropper([d], None, rng).sample()[0] is d


def test_fit_on_crops_learns_and_is_reproducible(lines_data):
    X, Y, Xt, Yt = lines_data
    big = [x.repeat(2, 0).repeat(2, 1) for x in X]  # 64 x 64: crops of 32 x 32
    ybig = [y.repeat(2, 0).repeat(2, 1) for y in Y]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = af.ImageLabeler(n_layers=1, max_iter=8, batch_pixels=4096, random_state=0)
        a.fit(big, ybig)
        b = clone(a).fit(big, ybig)
    np.testing.assert_array_equal(a.predict(Xt), b.predict(Xt))
    uniform = _uniform_error(Xt, Yt, float(a.rho_[0]), float(a.T_.sum()))
    assert 1 - a.score(Xt, Yt) < uniform


def test_hyperparameters_given_are_kept_and_auto_ones_learned(lines_data):
    X, Y, _, _ = lines_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed = af.ImageLabeler(rho=0.2, T=2.0, n_layers=2, max_iter=4, random_state=0).fit(X, Y)
        auto = af.ImageLabeler(n_layers=1, max_iter=6, random_state=0).fit(X, Y)
    np.testing.assert_allclose(fixed.rho_, [0.2, 0.2])
    np.testing.assert_allclose(fixed.T_, [2.0, 0.2])
    assert auto.rho_[0] > 0 and auto.T_[0] > 0


def _one_layer_error(pred, data, protos, rho, T):
    errs = []
    for d in data:
        sim = af.SimilarityOperator(
            pred.predict_weights(d.graph, d.features), af.distance_matrix(d.image, protos), rho=rho
        )
        errs.append(np.mean(af.LinearizedAssignmentFlow(sim, T=T).solve().labels != d.y))
    return float(np.mean(errs))


def test_best_horizon_matches_separate_solves():
    from concurrent.futures import ThreadPoolExecutor

    from assignflow.estimators import _best_horizon

    X, Y = af.datasets.make_voronoi("colors", 3, (24, 24), noise=0.5, random_state=3)
    protos = af.datasets.voronoi_prototypes("colors")
    sims = [
        af.SimilarityOperator(
            af.Weights.uniform(af.GridGraph(y.shape)), af.distance_matrix(x, protos), rho=0.1
        )
        for x, y in zip(X, Y, strict=True)
    ]
    flows = [af.LinearizedAssignmentFlow(s) for s in sims]
    ys = [y.ravel() for y in Y]
    Ts = (0.3, 1.0, 3.0, 10.0, 30.0)  # the error falls, then rises
    ref = [
        np.mean(
            [
                np.mean(af.LinearizedAssignmentFlow(s, T=T).solve().labels != y)
                for s, y in zip(sims, ys, strict=True)
            ]
        )
        for T in Ts
    ]
    integ = af.ExponentialKrylov()
    err, T = _best_horizon(flows, ys, Ts, integ)
    assert 0 < np.argmin(ref) < len(Ts) - 1
    assert T == Ts[int(np.argmin(ref))]
    assert err == pytest.approx(min(ref), abs=1.0 / ys[0].size)
    with ThreadPoolExecutor(2) as pool:
        assert _best_horizon(flows, ys, Ts, integ, pool) == (err, T)


@pytest.mark.parametrize("given", [False, True], ids=["auto", "given"])
def test_edge_predictor_start_is_the_best_candidate_on_the_training_images(
    lines_data, monkeypatch, given
):
    from assignflow import estimators as E

    X, Y, _, _ = lines_data
    calls = []
    orig = E.ImageLabeler._select_start

    def spy(self, pred, train, protos, rho0, T0, integ):
        out = orig(self, pred, train, protos, rho0, T0, integ)
        calls.append(((pred, train, protos, rho0, T0), out))
        return out

    monkeypatch.setattr(E.ImageLabeler, "_select_start", spy)
    hyper = {"rho": 0.2, "T": 2.0} if given else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = af.ImageLabeler(n_layers=1, max_iter=1, random_state=0, **hyper).fit(X, Y)
    ((pred, train, protos, rho0, T0), (start, rho, T)) = calls[0]
    F = len(pred.groups)
    bilateral = [b * np.eye(F)[f] for f in range(F) for b in E.BILATERAL_B]
    assert any(np.array_equal(start.theta, th) for th in [pred.theta, *bilateral])
    np.testing.assert_array_equal(start.bias, pred.bias)
    if given:
        assert (rho, T) == (0.2, 2.0)
        np.testing.assert_allclose(lab.rho_, [0.2])
    else:
        scales = [rho0 * a * f for a in E.START_RHO_ANCHORS for f in E.START_RHO_FACTORS]
        assert any(rho == pytest.approx(r, rel=1e-12) for r in scales) and T in E.T_GRID
    # against fresh solves: no candidate at any of the swept scales beats the start
    Ts = [T0] if given else E.T_GRID
    anchors = [1.0] if given else E.START_RHO_ANCHORS
    best = _one_layer_error(start, train, protos, rho, T)
    for a in anchors:
        for th in [pred.theta, *bilateral]:
            cand = pred.with_params({"theta": th})
            for T_ in Ts:
                err = _one_layer_error(cand, train, protos, rho0 * a, T_)
                assert best <= err + 1.0 / train[0].y.size


def test_labeling_error_is_the_pooled_error_of_predict(fitted, lines_data):
    from assignflow.estimators import _labeling_error

    _, _, Xt, Yt = lines_data
    model, params, pcls, scales = fitted._fitted_model()
    imgs, _ = fitted._check_predict(Xt)
    data = [
        fitted._data(x, y.ravel(), pcls, scales, fitted.prototypes_)
        for x, y in zip(imgs, Yt, strict=True)
    ]
    pred = fitted.predict(Xt)
    ref = np.mean(np.concatenate([(p != y).ravel() for p, y in zip(pred, Yt, strict=True)]))
    assert _labeling_error(model, params, data) == pytest.approx(ref, abs=1e-15)


@pytest.mark.parametrize("start_better", [True, False])
def test_the_start_is_kept_unless_learning_pays_on_the_given_images(
    lines_data, monkeypatch, start_better
):
    from assignflow import estimators as E

    X, Y, Xt, _ = lines_data
    calls = []

    def fake(model, params, data, pool=None):
        calls.append((params, len(data)))
        first = len(calls) == 1  # the start is judged first
        return 0.0 if first == start_better else 1.0

    monkeypatch.setattr(E, "_labeling_error", fake)
    kw = dict(n_layers=1, max_iter=6, learning_rate=0.3, random_state=0, keep_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = af.ImageLabeler(**kw).fit(X, Y)
        start = af.ImageLabeler(**{**kw, "max_iter": 1}).fit(X, Y)
    learner_best = int(np.argmin(lab.history_["val_loss"])) + 1
    assert learner_best > 1
    assert [n for _, n in calls] == [len(X), len(X)]  # all given images, twice
    if start_better:
        assert lab.best_iter_ == 1
        for k, v in start.predictors_[0].params().items():
            np.testing.assert_array_equal(lab.predictors_[0].params()[k], v)
        np.testing.assert_array_equal(lab.predict(Xt), start.predict(Xt))
    else:
        assert lab.best_iter_ == learner_best
        assert not np.array_equal(lab.predictors_[0].theta, start.predictors_[0].theta)
    # keep_start=False: the learner's choice, without judging the start
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = af.ImageLabeler(**{**kw, "keep_start": False}).fit(X, Y)
    assert calls == [] and plain.best_iter_ == learner_best


def test_callback_progress_and_stop(lines_data):
    X, Y, Xt, _ = lines_data
    seen = []

    def callback(it, record):
        seen.append((it, record))
        return it == 3

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = af.ImageLabeler(n_layers=1, max_iter=20, callback=callback, random_state=0).fit(X, Y)
    assert [it for it, _ in seen] == [1, 2, 3] and lab.n_iter_ == 3
    assert {"loss", "error", "val_error", "time", "max_iter"} <= set(seen[0][1])
    fractions = []
    lab.predict(Xt, progress=fractions.append)
    assert fractions and fractions[-1] == pytest.approx(1.0)
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(fractions))


def test_volumes(tmp_path):
    from scipy import ndimage

    rng = np.random.default_rng(0)
    X, Y = [], []
    for _ in range(3):
        y = (ndimage.gaussian_filter(rng.normal(size=(8, 9, 10)), 2.0) > 0).astype(int)
        X.append(y + 0.6 * rng.normal(size=y.shape))
        Y.append(y)
    X, Y = np.stack(X), np.stack(Y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = af.ImageLabeler(grid_ndim=3, n_layers=1, max_iter=4, random_state=0).fit(X, Y)
    assert lab.predict(X).shape == (3, 8, 9, 10)
    assert lab.predict(X[0]).shape == (8, 9, 10)
    assert lab.predict_weights(X[:1])[0].graph.shape == (8, 9, 10)
    rounding = np.mean((X > 0.5) != Y)
    assert 1 - lab.score(X, Y) < rounding
    af.save(lab, tmp_path / "vol.afm")
    np.testing.assert_array_equal(af.load(tmp_path / "vol.afm").predict(X), lab.predict(X))


def test_not_fitted_and_sklearn_contract(lines_data):
    X = lines_data[0]
    lab = small_model()
    with pytest.raises(NotFittedError):
        lab.predict(X)
    c = clone(lab)
    assert c.get_params() == lab.get_params()
    lab.set_params(T=2.0)
    assert lab.T == 2.0
    assert "T=2.0" in repr(lab)


def test_random_state_reproducible_and_string_classes(lines_data):
    X, Y, Xt, _ = lines_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = small_model(max_iter=2).fit(X, Y).predict_proba(Xt)
        b = small_model(max_iter=2).fit(X, Y).predict_proba(Xt)
        names = np.where(Y == 0, "line", "cell")
        s = small_model(max_iter=2).fit(X, names)
    np.testing.assert_array_equal(a, b)
    assert list(s.classes_) == ["cell", "line"]
    assert set(np.unique(s.predict(Xt))) <= {"cell", "line"}


def test_convergence_warning(lines_data):
    X, Y, _, _ = lines_data
    with pytest.warns(Warning, match="max_iter"):
        small_model(max_iter=3, n_iter_no_change=1000).fit(X[:2], Y[:2])


def test_estimator_bad_input(lines_data, fitted):
    X, Y, _, _ = lines_data
    with pytest.raises(ValueError, match="label_images"):
        small_model().fit(X, Y[:2])
    with pytest.raises(ValueError, match="shape"):
        small_model().fit(X, Y[:, :10])
    with pytest.raises(ValueError, match="NaN"):
        small_model().fit(np.full_like(X, np.nan), Y)
    with pytest.raises(ValueError, match="rho"):
        small_model(rho=-1).fit(X, Y)
    with pytest.raises(TypeError, match="max_iter"):
        small_model(max_iter=1.5).fit(X, Y)
    with pytest.raises(ValueError, match="prototypes"):
        small_model(prototypes=np.zeros((2, 3))).fit(X, Y)
    with pytest.raises(ValueError, match="channel"):
        fitted.predict(np.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="channels"):
        small_model().fit([np.zeros((8, 8)), np.zeros((8, 8, 3))], [np.zeros((8, 8), int)] * 2)


# --------------------------------------------------------------------------- persistence
def test_save_load_round_trip_exact(fitted, lines_data, tmp_path):
    Xt = lines_data[2]
    path = tmp_path / "model.afm"
    af.save(fitted, path)
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["arrays.npz", "meta.json"]
        meta = json.loads(z.read("meta.json"))
    assert meta["class"] == "ImageLabeler" and meta["assignflow_version"] == af.__version__
    loaded = af.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(Xt), fitted.predict_proba(Xt))
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.history_["loss"], fitted.history_["loss"])
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict_proba(Xt), fitted.predict_proba(Xt))


def test_save_load_component_objects(tmp_path):
    lab = small_model(gradient_estimator=af.ClosedFormLowRank(rank=3), integrator=af.Euler(0.05))
    af.save(lab, tmp_path / "m.afm")
    loaded = af.load(tmp_path / "m.afm")
    assert loaded.gradient_estimator == af.ClosedFormLowRank(rank=3)
    assert loaded.integrator == af.Euler(0.05)


def test_load_rejects_bad_files(fitted, tmp_path):
    good = tmp_path / "good.afm"
    af.save(fitted, good)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.afm"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model file"):
        af.load(trunc)
    junk = tmp_path / "junk.afm"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="model file"):
        af.load(junk)
    # a pickle inside the archive is never executed: arrays load without pickle
    evil = tmp_path / "evil.afm"
    with zipfile.ZipFile(good) as z, zipfile.ZipFile(evil, "w") as out:
        out.writestr("meta.json", z.read("meta.json"))
        out.writestr("arrays.npz", pickle.dumps(object()))
    with pytest.raises(ValueError, match="corrupt"):
        af.load(evil)
    with pytest.raises(FileNotFoundError):
        af.load(tmp_path / "missing.afm")
    with pytest.raises(TypeError, match="estimator"):
        af.save(object(), tmp_path / "x.afm")


def test_version_mismatch_warns(fitted, tmp_path):
    path = tmp_path / "old.afm"
    af.save(fitted, path)
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("meta.json"))
        arrays = z.read("arrays.npz")
    meta["assignflow_version"] = "0.0.1"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("meta.json", json.dumps(meta))
        z.writestr("arrays.npz", arrays)
    with pytest.warns(UserWarning, match="0.0.1"):
        af.load(path)


# --------------------------------------------------------------------------- CLI
def test_cli_fit_predict_label(tmp_path, lines_data, capsys):
    from PIL import Image

    X, Y, Xt, _ = lines_data
    imgs, labs = [], []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        Image.fromarray((np.clip(X[i], 0, 1) * 255).astype(np.uint8)).save(p)
        lp = tmp_path / f"lab{i}.png"
        Image.fromarray(Y[i].astype(np.uint8)).save(lp)  # grey PNG of label ids
        imgs.append(str(p))
        labs.append(str(lp))
    np.save(tmp_path / "test.npy", Xt[0])
    model = str(tmp_path / "m.afm")
    fit_args = ["fit", "--images", *imgs, "--labels", *labs, "--output", model]
    with pytest.warns(Warning, match="max_iter"):  # two iterations cannot converge
        assert main([*fit_args, "--max-iter", "2", "--n-prototypes", "4"]) == 0
    assert (
        main(
            [
                "predict",
                "--model",
                model,
                str(tmp_path / "test.npy"),
                "--output-dir",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    pred = np.load(tmp_path / "out" / "test-labels.npy")
    assert pred.shape == (32, 32) and set(np.unique(pred)) <= {0, 1}
    assert (tmp_path / "out" / "test-labels.png").exists()
    assert main(["label", imgs[0], "--prototypes", "0;1", "--output", str(tmp_path / "u")]) == 0
    assert np.load(tmp_path / "u.npy").shape == (32, 32)
    assert main(["label", imgs[0], "--model", model]) == 0
    capsys.readouterr()
    # bad input: clear errors, exit code 2, no traceback
    assert main(["label", str(tmp_path / "missing.png")]) == 2
    assert main(["fit", "--images", imgs[0], "--labels", *labs, "--output", model]) == 2
    (tmp_path / "bad.png").write_bytes(b"no image")
    assert main(["label", str(tmp_path / "bad.png")]) == 2
    assert main(["label", imgs[0], "--prototypes", "0,0;1"]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err


def test_classifier_save_load_round_trip(tmp_path):
    from sklearn.datasets import make_moons

    X, y = make_moons(120, noise=0.2, random_state=0)
    for learn in (False, True):
        clf = af.AssignmentFlowClassifier(learn_weights=learn, max_iter=2).fit(X[:90], y[:90])
        af.save(clf, tmp_path / "c.afm")
        back = af.load(tmp_path / "c.afm")
        np.testing.assert_array_equal(back.predict_proba(X[90:]), clf.predict_proba(X[90:]))


# =========================================================================== bad input
# Errors name the argument; a clear error raised by scikit-learn's parameter
# validation (InvalidParameterError, a ValueError and a TypeError) is fine.
X8, Y8 = af.datasets.make_voronoi("lines", 2, (8, 8), noise=0.2, random_state=0)
RGB8, _ = af.datasets.make_voronoi("colors", 2, (8, 8), noise=0.2, random_state=1)
BAD = (ValueError, TypeError)


def tiny(**kw) -> af.ImageLabeler:
    params = dict(rho=0.1, T=1.0, n_layers=1, max_iter=1, random_state=0)
    params.update(kw)
    return af.ImageLabeler(**params)


@pytest.fixture(scope="module")
def tiny_fitted() -> af.ImageLabeler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tiny().fit(X8, Y8)


def _with(a, idx, value):
    a = np.array(a, dtype=float)
    a[idx] = value
    return a


BAD_FIT_DATA = [
    ("images-str", "abc", Y8, "images"),
    ("images-None", None, Y8, "images"),
    ("images-int", 5, Y8, "images"),
    ("images-empty-list", [], [], "images"),
    ("images-zero-images", np.zeros((0, 8, 8)), np.zeros((0, 8, 8), int), "images"),
    ("images-5d-array", np.zeros((1, 8, 8, 1, 1)), Y8[:1], "images"),
    ("images-0x0", np.zeros((1, 0, 0)), np.zeros((1, 0, 0), int), r"images\[0\]"),
    ("images-0-channels", np.zeros((2, 8, 8, 0)), Y8, r"images\[0\]"),
    ("images-nan", _with(X8, (0, 3, 3), np.nan), Y8, r"images\[0\]"),
    ("images-inf", _with(X8, (1, 0, 0), -np.inf), Y8, r"images\[1\]"),
    ("images-huge", X8 * 1e200, Y8, r"images\[0\]"),
    ("images-complex", X8.astype(complex), Y8, "images"),
    ("images-strings", np.full((2, 8, 8), "a"), Y8, "images"),
    ("images-mixed-channels", [np.zeros((8, 8)), np.zeros((8, 8, 3))], [Y8[0], Y8[1]], "images"),
    ("images-one-4d", [X8[0], np.zeros((8, 8, 1, 1))], Y8, r"images\[1\]"),
    ("labels-None", X8, None, "label_images"),
    ("labels-str", X8, "ab", "label_images"),
    ("labels-too-few", X8, Y8[:1], "label_images"),
    ("labels-too-many", X8[:1], Y8, "label_images"),
    ("labels-shape", X8, Y8[:, :5], r"label_images\[0\]"),
    ("labels-float", X8, Y8 + 0.5, r"label_images\[0\]"),
    ("labels-nan", X8, np.where(Y8 == 0, np.nan, 1.0), r"label_images\[0\]"),
    ("labels-complex", X8, Y8.astype(complex), r"label_images\[0\]"),
    ("labels-objects", X8, np.full((2, 8, 8), None, dtype=object), r"label_images\[0\]"),
    ("labels-mixed-kinds", X8, [Y8[0], np.full((8, 8), "a")], "label_images"),
    ("labels-uint64-huge", X8, Y8.astype(np.uint64) + np.uint64(2**63), r"label_images\[0\]"),
]


@pytest.mark.parametrize(
    ("images", "labels", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_FIT_DATA]
)
def test_fit_rejects_bad_data(images, labels, match):
    with pytest.raises(BAD, match=match):
        tiny().fit(images, labels)


BAD_PARAMS = [
    {"rho": -0.1},
    {"rho": 0.0},
    {"rho": float("nan")},
    {"rho": float("inf")},
    {"rho": "0.1"},
    {"rho": True},
    {"T": -1.0},
    {"T": 0},
    {"T": True},
    {"n_layers": 0},
    {"n_layers": 100},
    {"learning_rate": -0.05},
    {"learning_rate": 0.0},
    {"learning_rate": None},
    {"max_iter": -1},
    {"max_iter": 0},
    {"max_iter": 1.5},
    {"max_iter": True},
    {"max_iter": 10**9},
    {"n_prototypes": 0},
    {"n_prototypes": True},
    {"n_iter_no_change": 0},
    {"radius": -1},
    {"radius": 1.5},
    {"radius": False},
    {"radius": 500},
    {"validation_fraction": 1.0},
    {"validation_fraction": -0.1},
    {"averaging": 1.0},
    {"averaging": -0.1},
    {"averaging": True},
    {"keep_start": "yes"},
    {"validation_fraction": float("nan")},
    {"batch_pixels": 100},
    {"batch_pixels": True},
    {"batch_pixels": 5e4},
    {"validation_fraction": "a"},
    {"validation": "folds"},
    {"validation": None},
    {"random_state": "seed"},
    {"random_state": -1},
    {"n_jobs": "2"},
    {"verbose": "yes"},
    {"integrator": "exponential_krylv"},
    {"integrator": "geometric_euler"},
    {"integrator": None},
    {"gradient_estimator": "closed_form_lowrank"},
    {"predictor": "edgy"},
    {"loss": "kll"},
    {"scales": [-1.0]},
    {"scales": []},
    {"features": "pixels"},
    {"dtype": "half"},
    {"callback": 3},
    {"prototypes": np.zeros((1, 1))},
    {"prototypes": np.zeros((2, 3))},
    {"prototypes": np.zeros((2, 1, 1))},
    {"prototypes": [[np.nan], [1.0]]},
    {"prototypes": "ab"},
    {"prototypes": np.zeros((0, 1))},
]


@pytest.mark.parametrize(
    "params", BAD_PARAMS, ids=lambda p: "-".join(f"{k}={v!r}"[:30] for k, v in p.items())
)
def test_fit_rejects_bad_hyper_parameters(params):
    name = next(iter(params))
    match = "labels|label_images|prototypes" if name == "prototypes" else name
    with pytest.raises(BAD, match=match):
        tiny(**params).fit(X8, Y8)


@pytest.mark.parametrize("labels", [Y8 - 1, Y8 * 5, np.full_like(Y8, 2)], ids=["neg", "big", "out"])
def test_fit_labels_outside_prototype_range(labels):
    with pytest.raises(ValueError, match="label_images"):
        tiny(prototypes=[[0.0], [1.0]]).fit(X8, labels)


# ----------------------------------------------------------------- legitimate edge cases
def test_fit_one_image_of_one_pixel():
    lab = tiny().fit(np.array([[[0.3]]]), np.array([[[1]]]))
    np.testing.assert_array_equal(lab.classes_, [1])
    np.testing.assert_array_equal(lab.prototypes_, [[0.3]])
    np.testing.assert_array_equal(lab.predict(np.array([[[0.9]]])), [[[1]]])
    np.testing.assert_array_equal(lab.predict_proba(np.array([[[0.9]]])), np.ones((1, 1, 1, 1)))


def test_fit_single_class():
    lab = tiny().fit(X8, np.full_like(Y8, 7))
    np.testing.assert_array_equal(lab.classes_, [7])
    np.testing.assert_allclose(lab.prototypes_, [[X8.mean()]])
    P = lab.predict_proba(X8)
    assert P.shape == (2, 8, 8, 1) and np.array_equal(P, np.ones_like(P))
    assert lab.score(X8, np.full_like(Y8, 7)) == 1.0


def test_fit_negative_and_float_labels():
    lab = tiny().fit(X8, 2 * Y8 - 1)  # classes -1 and 1
    np.testing.assert_array_equal(lab.classes_, [-1, 1])
    assert set(np.unique(lab.predict(X8))) <= {-1, 1}
    ref = np.stack([X8[Y8 == k].mean() for k in (0, 1)])[:, None]
    np.testing.assert_allclose(lab.prototypes_, ref)
    lab = tiny().fit(X8, Y8.astype(float))
    assert lab.classes_.dtype.kind == "i"


def test_fit_images_of_different_sizes_and_single_images():
    imgs = [X8[0], X8[1, :6, :5]]
    labs = [Y8[0], Y8[1, :6, :5]]
    lab = tiny().fit(imgs, labs)
    pred = lab.predict(imgs)
    assert isinstance(pred, list) and pred[0].shape == (8, 8) and pred[1].shape == (6, 5)
    proba = lab.predict_proba(imgs)
    np.testing.assert_allclose(proba[1].sum(axis=-1), 1.0)
    # one image, told apart from a batch by its shape
    one = tiny().fit(X8[0], Y8[0])
    assert one.predict(X8[0]).shape == (8, 8)
    assert one.predict(X8).shape == (2, 8, 8)
    assert one.predict_proba(X8[0]).shape == (8, 8, 2)
    rgb = tiny().fit(RGB8[0], np.zeros((8, 8), int))
    assert rgb.predict(RGB8[0]).shape == (8, 8) and rgb.predict(RGB8).shape == (2, 8, 8)


def test_lean_forward_of_predict_equals_the_recorded_forward():
    # predict and validation keep only V between layers; the training forward keeps all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = tiny(n_layers=2).fit(X8, Y8)
    model, params, pcls, scales = m._fitted_model()
    params = {**params, "log_temperature": np.array(0.0)}
    img = m._check_predict(X8[0])[0][0]
    data = m._data(img, None, pcls, scales, m.prototypes_)
    stack, full, _, _ = model.forward(params, data, record=True)
    none, lean, no_feats, _ = model.forward(params, data, record=False)
    assert none is None and no_feats is None and lean.layers is None
    assert len(full.layers) == m.n_layers == len(stack.layers)
    np.testing.assert_array_equal(lean.V, full.V)
    np.testing.assert_array_equal(lean.W, full.W)
    labels = m.classes_[np.argmax(full.W, axis=1)].reshape(img.shape[:-1])
    np.testing.assert_array_equal(m.predict(X8[0]), labels)


def test_fit_and_predict_do_not_modify_inputs(tiny_fitted):
    imgs, labs = X8.copy(), Y8.copy()
    protos = np.array([[0.0], [1.0]])
    p0 = protos.copy()
    tiny(prototypes=protos).fit([imgs[0], imgs[1]], [labs[0], labs[1]])
    tiny_fitted.predict(imgs)
    tiny_fitted.score(imgs, labs)
    np.testing.assert_array_equal(imgs, X8)
    np.testing.assert_array_equal(labs, Y8)
    np.testing.assert_array_equal(protos, p0)


def test_read_only_non_contiguous_and_array_like_inputs(tiny_fitted):
    imgs = np.ascontiguousarray(X8.transpose(0, 2, 1)).transpose(0, 2, 1)
    imgs.flags.writeable = False
    labs = Y8.copy()
    labs.flags.writeable = False
    lab = tiny().fit(imgs, labs)
    assert np.array_equal(lab.predict(imgs), lab.predict(np.ascontiguousarray(imgs)))

    class ArrayLike:  # like xarray.DataArray: converted through __array__
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return np.asarray(self.a, dtype=dtype)

    np.testing.assert_array_equal(tiny_fitted.predict(ArrayLike(X8)), tiny_fitted.predict(X8))


def test_memory_mapped_images(tiny_fitted, tmp_path):
    path = tmp_path / "images.npy"
    np.save(path, X8)
    mapped = np.load(path, mmap_mode="r")  # read-only, on disk
    np.testing.assert_array_equal(tiny_fitted.predict(mapped), tiny_fitted.predict(X8))
    np.testing.assert_array_equal(np.load(path), X8)  # not written to


@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_weights", "score"])
def test_predict_before_fit(method):
    args = (X8, Y8) if method == "score" else (X8,)
    with pytest.raises(NotFittedError):
        getattr(tiny(), method)(*args)


BAD_PREDICT = [
    ("channels-3-vs-1", RGB8),
    ("nan", _with(X8, (0, 3, 3), np.nan)),
    ("empty-list", []),
    ("zero-images", np.zeros((0, 8, 8))),
    ("0x0", np.zeros((1, 0, 0))),
    ("1d", np.zeros(8)),
    ("str", "img.png"),
    ("huge", X8 * 1e300),
]


@pytest.mark.parametrize("images", [pytest.param(c[1], id=c[0]) for c in BAD_PREDICT])
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_predict_rejects_bad_images(tiny_fitted, method, images):
    with pytest.raises(BAD, match="images"):
        getattr(tiny_fitted, method)(images)


@pytest.mark.parametrize(
    ("labels", "weight", "match"),
    [
        pytest.param(Y8[:1], None, "label_images", id="count"),
        pytest.param(Y8[:, :4], None, "label_images", id="shape"),
        pytest.param(Y8 + 0.5, None, "label_images", id="float-labels"),
        pytest.param(Y8.astype(str), None, "label_images", id="strings-on-int-model"),
        pytest.param(Y8, [1.0], "sample_weight", id="sw-len"),
        pytest.param(Y8, [-1.0, 1.0], "sample_weight", id="sw-negative"),
        pytest.param(Y8, [np.nan, 1.0], "sample_weight", id="sw-nan"),
    ],
)
def test_score_rejects_bad_input(tiny_fitted, labels, weight, match):
    with pytest.raises(BAD, match=match):
        tiny_fitted.score(X8, labels, sample_weight=weight)


def test_score_sample_weight_matches_numpy(tiny_fitted):
    pred = tiny_fitted.predict(X8)
    acc = [np.mean(pred[k] == Y8[k]) for k in range(2)]
    assert tiny_fitted.score(X8, Y8, sample_weight=[1.0, 0.0]) == pytest.approx(acc[0])
    assert tiny_fitted.score(X8, Y8) == pytest.approx(np.mean(pred == Y8))


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (2, 1)], ids=["1x1", "1x5", "2x1"])
def test_predict_tiny_images(tiny_fitted, shape):
    img = np.full((1, *shape), 0.9)
    P = tiny_fitted.predict_proba(img)
    assert P.shape == (1, *shape, 2) and np.all(np.isfinite(P))
    np.testing.assert_allclose(P.sum(axis=-1), 1.0)


def test_any_registered_graph_for_images(lines_data):
    X, Y, Xt, Yt = lines_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = af.ImageLabeler(
            graph="knn", graph_params={"n_neighbors": 6}, n_layers=1, max_iter=3, random_state=0
        ).fit(X, Y)
    w = lab.predict_weights(Xt[:1])[0]
    assert not isinstance(w.graph, af.GridGraph) and w.graph.n_nodes == 32 * 32
    assert lab.predict(Xt).shape == Yt.shape
    with pytest.raises(ValueError, match="prototype"):
        af.ImageLabeler(graph="knn", predictor="prototype", max_iter=1).fit(X, Y)
    with pytest.raises(ValueError, match="graph"):
        af.ImageLabeler(graph="no-such-graph", max_iter=1).fit(X, Y)


def test_averaging_selects_an_average_of_the_iterates(lines_data):
    # averaging > 0: the selected predictor is an average of iterates, not one of them
    X, Y, _, _ = lines_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = small_model(max_iter=4, n_iter_no_change=100).fit(X, Y)
        avg = small_model(max_iter=4, n_iter_no_change=100, averaging=0.5).fit(X, Y)
    assert avg.get_params()["averaging"] == 0.5 and plain.averaging == 0.0
    assert avg.n_iter_ == plain.n_iter_ == 4
    # the iterates are the same (steps start from them); the candidates differ
    np.testing.assert_array_equal(avg.history_["loss"], plain.history_["loss"])
    assert not np.array_equal(avg.history_["val_loss"], plain.history_["val_loss"])
    assert np.all(np.isfinite(avg.predict(X[:1])))


def test_bands_split_every_image_into_a_training_rectangle_and_a_held_out_band():
    from assignflow.estimators import _bands

    rng = np.random.RandomState(0)
    shapes = [(20, 30), (4, 4), (12, 9, 10), (30, 7)] * 3
    for shape, band in zip(shapes, _bands(shapes, 0.2, rng), strict=True):
        if max(shape) < 5:  # no side to cut a band from
            assert band is None
            continue
        rest, mask = band
        mask = mask.reshape(shape)
        kept = np.zeros(shape, dtype=bool)
        kept[rest] = True
        assert not np.any(kept & mask) and np.all(kept | mask)  # a partition
        # the band: whole along all axes but one, 20 % of that side at one of its ends
        slabs = []
        for a, side in enumerate(shape):
            rows = np.moveaxis(mask, a, 0).reshape(side, -1)
            if np.all(rows.all(axis=1) | ~rows.any(axis=1)):
                idx = np.flatnonzero(rows.all(axis=1))
                slabs.append((a, idx))
        assert slabs
        a, idx = slabs[0]
        side = shape[a]
        assert len(idx) == min(max(1, round(0.2 * side)), side - 4)
        assert idx[0] == 0 or idx[-1] == side - 1
        assert np.array_equal(idx, np.arange(idx[0], idx[-1] + 1))
    assert _bands([(20, 30)], 0.0, rng) == [None]


def test_validation_regions_trains_and_validates_on_disjoint_parts_of_every_image(
    lines_data, monkeypatch
):
    from assignflow import estimators as E

    X, Y, Xt, Yt = lines_data
    trained, validated = set(), []
    objective, evaluate = E._objective_of, E._Model.evaluate

    def spy_objective(model, params, data):
        trained.add(data.image.shape[:2])
        return objective(model, params, data)

    def spy_evaluate(self, params, data, mask=None):
        validated.append((data.image.shape[:2], None if mask is None else int(mask.sum())))
        return evaluate(self, params, data, mask)

    monkeypatch.setattr(E, "_objective_of", spy_objective)
    monkeypatch.setattr(E._Model, "evaluate", spy_evaluate)
    kw = dict(n_layers=1, max_iter=3, random_state=0, batch_pixels=None, validation="regions")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = af.ImageLabeler(**kw).fit(X, Y)
    # every image validates on a band of 6 of its 32 rows or columns, whole images
    assert len(validated) == 3 * len(X)
    assert set(validated) == {((32, 32), 6 * 32)}
    # and trains on the rest of it
    assert trained <= {(26, 32), (32, 26)} and trained
    assert len(lab.history_["val_loss"]) == 3
    assert not np.allclose(lab.history_["val_loss"], lab.history_["loss"])
    assert np.mean(lab.predict(Xt) != Yt) < 0.1


def test_validation_regions_validates_a_single_training_image(lines_data):
    X, Y, _, _ = lines_data
    seen = []
    kw = dict(n_layers=1, max_iter=3, random_state=0, callback=lambda it, r: seen.append(r))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        af.ImageLabeler(validation="regions", **kw).fit(X[0], Y[0])
        af.ImageLabeler(validation="images", **kw).fit(X[0], Y[0])
    assert "val_loss" in seen[0]  # a band of the one image is held out
    assert "val_loss" not in seen[-1]  # nothing to hold out
