"""ImageLabeler, the weight predictor, persistence and the fit/predict/label commands."""

from __future__ import annotations

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
