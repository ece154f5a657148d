"""Tests of AssignmentFlowClassifier (assignflow/classifier.py)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris, load_wine, make_blobs, make_moons
from sklearn.exceptions import NotFittedError
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import assignflow as af
from assignflow import labeling
from assignflow.classifier import AssignmentFlowClassifier, auto_n_neighbors

SEMI_SUPERVISED = (
    "-1 marks unlabeled rows (scikit-learn's semi-supervised convention, which the "
    "check exempts for LabelSpreading by name)"
)
GRAPH_WEIGHTS = (
    "the kNN graph depends on repeated rows, so weights are not equivalent to repetition"
)
EXPECTED_FAILURES = {
    "check_classifiers_classes": SEMI_SUPERVISED,
    "check_sample_weight_equivalence_on_dense_data": GRAPH_WEIGHTS,
}


def finite(a) -> bool:
    return bool(np.all(np.isfinite(np.asarray(a, dtype=float))))


def semi(y, fraction, seed=0):
    """``y`` with all but a random stratified ``fraction`` of rows set to -1."""
    rng = np.random.default_rng(seed)
    out = np.full(len(y), -1)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        keep = rng.choice(idx, max(1, round(fraction * len(idx))), replace=False)
        out[keep] = c
    return out


def scaled(loader):
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


# --------------------------------------------------------------------------- sklearn checks
@parametrize_with_checks(
    [AssignmentFlowClassifier(), AssignmentFlowClassifier(learn_weights=True, max_iter=2)],
    expected_failed_checks=lambda est: EXPECTED_FAILURES,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------- semi-supervised
def test_minus_one_marks_unlabeled_rows():
    X, y = scaled(load_iris)
    y_semi = semi(y, 0.1)
    clf = AssignmentFlowClassifier().fit(X, y_semi)
    assert clf.classes_.tolist() == [0, 1, 2]
    assert clf.transduction_.shape == (150,) and set(clf.transduction_) <= {0, 1, 2}
    W = clf.label_distributions_
    assert W.shape == (150, 3) and np.all(W > 0)
    np.testing.assert_allclose(W.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.transduction_, clf.classes_[W.argmax(axis=1)])
    seeds = y_semi >= 0
    np.testing.assert_array_equal(clf.transduction_[seeds], y_semi[seeds])  # clamped
    np.testing.assert_array_equal(clf.seed_weight_ > 0, seeds)
    assert np.mean(clf.transduction_[~seeds] == y[~seeds]) > 0.85
    # inductive predictions of the training rows agree with the transduction
    assert np.mean(clf.predict(X) == clf.transduction_) > 0.95


def test_string_labels_with_object_minus_one():
    X, y = make_blobs(60, centers=2, random_state=2)
    labels = np.array(["cat", "dog"], dtype=object)[y]
    labels[::3] = -1
    clf = AssignmentFlowClassifier().fit(X, labels)
    assert clf.classes_.tolist() == ["cat", "dog"]
    assert set(clf.transduction_) == {"cat", "dog"}
    np.testing.assert_array_equal(clf.transduction_, np.array(["cat", "dog"])[y])


def test_semi_supervised_beats_supervised_on_the_same_labels():
    X, y = make_moons(300, noise=0.08, random_state=0)
    y_semi = semi(y, 0.02)  # three labeled rows per moon
    seeds = y_semi >= 0
    u = ~seeds
    ssl = AssignmentFlowClassifier().fit(X, y_semi)
    sup = AssignmentFlowClassifier().fit(X[seeds], y[seeds])
    acc_ssl = np.mean(ssl.transduction_[u] == y[u])
    acc_sup = np.mean(sup.predict(X[u]) == y[u])
    assert acc_ssl >= 0.97
    assert acc_ssl > acc_sup + 0.05


@pytest.mark.parametrize("mode", ["supervised", "semi-supervised"])
def test_adaptive_defaults_never_predict_a_constant(mode):
    # the failure: wine with 9 labeled rows was labeled as one class
    X, y = scaled(load_wine)
    y_semi = semi(y, 0.05, seed=1)
    seeds = y_semi >= 0
    assert seeds.sum() == 9
    if mode == "supervised":
        clf = AssignmentFlowClassifier().fit(X[seeds], y[seeds])
        assert clf.n_neighbors_ == 1  # the smallest class has 2 labeled rows
        pred = clf.predict(X[~seeds])
    else:
        clf = AssignmentFlowClassifier().fit(X, y_semi)
        pred = clf.transduction_[~seeds]
    assert set(pred) == {0, 1, 2}
    assert np.mean(pred == y[~seeds]) > 0.8


def test_auto_n_neighbors_rule():
    assert auto_n_neighbors(1797, np.full(10, 0.1)) == 11  # ceil(log2 1797)
    assert auto_n_neighbors(150, np.full(3, 1 / 3)) == 8
    assert auto_n_neighbors(9, np.full(3, 1 / 3)) == 2  # smallest class of 3 rows
    assert auto_n_neighbors(2, np.array([0.5, 0.5])) == 1
    assert auto_n_neighbors(1, np.array([1.0])) == 1


def test_defaults_follow_the_documented_rules():
    X, y = scaled(load_iris)
    y_semi = semi(y, 0.2)
    clf = AssignmentFlowClassifier().fit(X, y_semi)
    seeds = y_semi >= 0
    D = labeling.nearest_seed_distances(X, X[seeds], y_semi[seeds], 3)
    assert clf.rho_ == pytest.approx(af.estimate_rho(D))
    assert clf.n_neighbors_ == 8
    assert clf.graph_ == af.Graph.knn(X, 8)
    om = labeling.degree_weights(clf.graph_)
    np.testing.assert_allclose(clf.weights_, om.values)
    flow = af.LinearizedAssignmentFlow(af.SimilarityOperator(om, D, rho=clf.rho_), T=1.0)
    assert clf.T_ == pytest.approx(labeling.HORIZON / labeling.growth_rate(flow))
    given = AssignmentFlowClassifier(rho=0.3, T=2.5, n_neighbors=5).fit(X, y_semi)
    assert (given.rho_, given.T_, given.n_neighbors_) == (0.3, 2.5, 5)
    np.testing.assert_allclose(clf.prototypes_, [X[y_semi == j].mean(axis=0) for j in range(3)])


# --------------------------------------------------------------------------- sample weights
def test_sample_weight_ones_scale_and_zero():
    X, y = scaled(load_iris)
    y_semi = semi(y, 0.1)
    ref = AssignmentFlowClassifier().fit(X, y_semi)
    ones = AssignmentFlowClassifier().fit(X, y_semi, sample_weight=np.full(150, 3.0))
    np.testing.assert_allclose(ones.label_distributions_, ref.label_distributions_, atol=1e-12)
    # a labeled row of weight 0 is an unlabeled row
    seed = np.flatnonzero(y_semi >= 0)[0]
    w = np.ones(150)
    w[seed] = 0.0
    zero = AssignmentFlowClassifier().fit(X, y_semi, sample_weight=w)
    y_drop = y_semi.copy()
    y_drop[seed] = -1
    dropped = AssignmentFlowClassifier().fit(X, y_drop)
    np.testing.assert_allclose(zero.label_distributions_, dropped.label_distributions_)
    assert zero.seed_weight_[seed] == 0


def test_heavier_seed_wins_the_contested_row():
    X = np.arange(5.0)[:, None]  # 0 - 1 - 2 - 3 - 4, a seed at each end
    y = np.array([0, -1, -1, -1, 1])
    params = dict(n_neighbors=1, rho=1.0, T=3.0)
    even = AssignmentFlowClassifier(**params).fit(X, y).label_distributions_[2]
    assert even[0] == pytest.approx(even[1], abs=1e-9)
    left = AssignmentFlowClassifier(**params).fit(X, y, sample_weight=[3, 1, 1, 1, 1])
    right = AssignmentFlowClassifier(**params).fit(X, y, sample_weight=[1, 1, 1, 1, 3])
    assert left.transduction_[2] == 0 and right.transduction_[2] == 1


def test_score_with_sample_weight():
    X, y = make_blobs(80, centers=2, cluster_std=3.0, random_state=3)
    clf = AssignmentFlowClassifier().fit(X[:60], y[:60])
    w = np.linspace(0.1, 2.0, 20)
    pred = clf.predict(X[60:])
    assert clf.score(X[60:], y[60:], sample_weight=w) == pytest.approx(
        np.average(pred == y[60:], weights=w)
    )


def test_class_weight_balanced_helps_the_rare_class():
    X, y = make_blobs([300, 30], centers=[[0, 0], [2.5, 0]], random_state=4)
    Xtr, Xte, ytr, yte = train_test_split(X, y, stratify=y, random_state=4)
    plain = AssignmentFlowClassifier().fit(Xtr, ytr)
    bal = AssignmentFlowClassifier(class_weight="balanced").fit(Xtr, ytr)
    np.testing.assert_allclose(bal.class_weight_, len(ytr) / (2 * np.bincount(ytr)))
    np.testing.assert_array_equal(plain.class_weight_, [1.0, 1.0])
    assert np.mean(bal.predict(Xte)[yte == 1] == 1) > np.mean(plain.predict(Xte)[yte == 1] == 1)
    assert balanced_accuracy_score(yte, bal.predict(Xte)) > balanced_accuracy_score(
        yte, plain.predict(Xte)
    )


# --------------------------------------------------------------------------- predictions
def test_decision_function_and_probabilities():
    X, y = make_blobs(120, centers=4, random_state=1)
    clf = AssignmentFlowClassifier().fit(X, y)
    P = clf.predict_proba(X + 0.1)
    assert P.shape == (120, 4) and np.all(P > 0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    F = clf.decision_function(X + 0.1)
    assert F.shape == (120, 4)
    E = np.exp(F - F.max(axis=1, keepdims=True))
    np.testing.assert_allclose(E / E.sum(axis=1, keepdims=True), P, atol=1e-10)
    np.testing.assert_array_equal(clf.predict(X + 0.1), clf.classes_[F.argmax(axis=1)])
    Xb, yb = make_blobs(60, centers=2, random_state=2)
    two = AssignmentFlowClassifier().fit(Xb, yb * 5)
    f = two.decision_function(Xb)
    Pb = two.predict_proba(Xb)
    assert f.shape == (60,)
    np.testing.assert_allclose(f, np.log(Pb[:, 1] / Pb[:, 0]), atol=1e-8)
    np.testing.assert_array_equal(two.classes_[(f > 0).astype(int)], two.predict(Xb))


def test_well_separated_blobs():
    X, y = make_blobs(300, centers=3, cluster_std=1.0, random_state=0)
    Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0)
    assert AssignmentFlowClassifier().fit(Xtr, ytr).score(Xte, yte) >= 0.9


def test_moons_beats_one_nn_on_average():
    ours, base = [], []
    for seed in range(4):
        X, y = make_moons(300, noise=0.25, random_state=seed)
        Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=seed)
        base.append(KNeighborsClassifier(1).fit(Xtr, ytr).score(Xte, yte))
        ours.append(AssignmentFlowClassifier().fit(Xtr, ytr).score(Xte, yte))
    assert np.mean(ours) > np.mean(base)


def test_string_labels_and_one_class():
    X, y = make_blobs(60, centers=2, random_state=2)
    labels = np.array(["cat", "dog"])[y]
    clf = AssignmentFlowClassifier().fit(X, labels)
    assert set(clf.predict(X)) <= {"cat", "dog"}
    one = AssignmentFlowClassifier(learn_weights=True).fit(X, np.full(60, "cat"))
    np.testing.assert_array_equal(one.predict(X[:5]), ["cat"] * 5)
    np.testing.assert_array_equal(one.predict_proba(X[:5]), np.ones((5, 1)))
    np.testing.assert_array_equal(one.transduction_, ["cat"] * 60)


@pytest.mark.parametrize("integrator", ["exponential_krylov", af.Euler(step_size=0.05)])
def test_subset_and_order_invariance(integrator):
    X, y = make_moons(150, noise=0.3, random_state=4)
    y_semi = y.copy()
    y_semi[::4] = -1
    clf = AssignmentFlowClassifier(integrator=integrator, learn_weights=True, max_iter=3)
    clf.fit(X[:100], y_semi[:100])
    Xq = X[100:]
    full = clf.predict_proba(Xq)
    parts = np.concatenate([clf.predict_proba(Xq[i : i + 7]) for i in range(0, 50, 7)])
    np.testing.assert_allclose(parts, full, atol=1e-10)
    one = np.concatenate([clf.predict_proba(Xq[i : i + 1]) for i in range(50)])
    np.testing.assert_allclose(one, full, atol=1e-10)
    perm = np.random.default_rng(0).permutation(50)
    np.testing.assert_allclose(clf.predict_proba(Xq[perm]), full[perm], atol=1e-10)


# --------------------------------------------------------------------------- graph, loss by name
def test_graph_by_name_and_precomputed():
    X, y = make_blobs(50, centers=2, random_state=5)
    clf = AssignmentFlowClassifier(graph="knn", graph_params={"n_neighbors": 3}).fit(X, y)
    assert clf.graph_ == af.Graph.knn(X, 3)
    g = af.Graph.knn(X, 4)
    pre = AssignmentFlowClassifier(graph=g).fit(X, y)
    assert pre.graph_ is g
    np.testing.assert_array_equal(pre.transduction_, y)
    with pytest.raises(ValueError, match="graph"):
        AssignmentFlowClassifier(graph=af.Graph.knn(X[:10], 3)).fit(X, y)
    with pytest.raises(ValueError, match="graph"):
        AssignmentFlowClassifier(graph="no-such-graph").fit(X, y)
    with pytest.raises(TypeError, match="graph_params"):
        AssignmentFlowClassifier(graph=g, graph_params={"n_neighbors": 3}).fit(X, y)


def test_loss_by_name_or_class():
    X, y = make_moons(80, noise=0.2, random_state=6)
    y[::3] = -1
    a = AssignmentFlowClassifier(learn_weights=True, max_iter=3, loss="kl", random_state=0)
    b = AssignmentFlowClassifier(learn_weights=True, max_iter=3, loss=af.KLLoss, random_state=0)
    np.testing.assert_array_equal(a.fit(X, y).weights_, b.fit(X, y).weights_)
    # any loss class built as loss(labels=..., **loss_params) on the held-out seeds

    class Scaled(af.Loss):
        def __init__(self, labels, factor=1.0):
            self.kl, self.factor = af.KLLoss(labels), factor

        def data_value(self, V):
            return self.factor * self.kl.data_value(V)

        def data_gradient(self, V):
            return self.factor * self.kl.data_gradient(V)

    c = AssignmentFlowClassifier(
        learn_weights=True, max_iter=3, loss=Scaled, loss_params={"factor": 1.0}, random_state=0
    )
    np.testing.assert_allclose(c.fit(X, y).weights_, a.weights_, rtol=1e-10)
    with pytest.raises(ValueError, match="loss"):
        AssignmentFlowClassifier(loss="no-such-loss").fit(X, y)
    with pytest.raises(TypeError, match="loss"):
        AssignmentFlowClassifier(loss=int).fit(X, y)


# --------------------------------------------------------------------------- learning
def test_learning_is_reproducible_and_records_history():
    X, y = make_moons(120, noise=0.3, random_state=5)
    y[1::3] = -1
    a = AssignmentFlowClassifier(learn_weights=True, max_iter=4, random_state=0).fit(X, y)
    b = AssignmentFlowClassifier(learn_weights=True, max_iter=4, random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.n_iter_ == 4
    assert set(a.history_) >= {"loss", "error"}
    assert a.history_["loss"].min() < a.history_["loss"][0]  # held-out loss decreases
    af.Weights(a.graph_, a.weights_)  # learned weights are row-stochastic
    assert not np.allclose(a.trust_, 1.0)


def test_no_learning_keeps_the_default_weights():
    X, y = make_moons(50, noise=0.1, random_state=6)
    clf = AssignmentFlowClassifier().fit(X, y)
    np.testing.assert_allclose(clf.weights_, labeling.degree_weights(clf.graph_).values)
    np.testing.assert_array_equal(clf.trust_, 1.0)
    assert clf.n_iter_ == 1 and clf.history_ is None


# --------------------------------------------------------------------------- estimator API
def test_pickle_round_trip():
    X, y = make_blobs(60, centers=3, random_state=7)
    y[::4] = -1
    clf = AssignmentFlowClassifier(learn_weights=True, max_iter=2).fit(X, y)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))


def test_save_load_semi_supervised(tmp_path):
    X, y = make_blobs(60, centers=3, random_state=8)
    y[::3] = -1
    clf = AssignmentFlowClassifier(class_weight="balanced").fit(X, y)
    af.save(clf, tmp_path / "c.afm")
    back = af.load(tmp_path / "c.afm")
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(back.transduction_, clf.transduction_)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("seed_weight_", lambda c: -c.seed_weight_),
        ("seed_weight_", lambda c: np.zeros_like(c.seed_weight_)),
        ("class_weight_", lambda c: 0 * c.class_weight_),
        ("T_", lambda c: -1.0),
        ("n_neighbors_", lambda c: 0),
        ("transduction_", lambda c: c.transduction_[:3]),
        ("label_distributions_", lambda c: np.full_like(c.label_distributions_, np.nan)),
    ],
)
def test_fitted_state_check_names_the_attribute(name, value):
    X, y = make_blobs(30, centers=2, random_state=9)
    y[::3] = -1
    clf = AssignmentFlowClassifier().fit(X, y)
    clf._check_fitted_state()
    setattr(clf, name, value(clf))
    with pytest.raises(ValueError, match=name):
        clf._check_fitted_state()


def test_params_clone():
    clf = AssignmentFlowClassifier(n_neighbors=5, T=1.5)
    params = clf.get_params()
    assert params["n_neighbors"] == 5 and params["T"] == 1.5 and params["rho"] == "auto"
    assert params["graph"] == "knn" and params["loss"] == "kl"
    clf.set_params(rho=0.2, learn_weights=True)
    assert clf.rho == 0.2 and clf.learn_weights is True
    c2 = clone(clf)
    assert c2.get_params() == clf.get_params()
    assert c2 is not clf


def test_tiny_inputs():
    clf = AssignmentFlowClassifier().fit([[0.0], [1.0]], [0, 1])
    np.testing.assert_array_equal(clf.predict([[0.1], [0.9]]), [0, 1])
    one = AssignmentFlowClassifier(learn_weights=True).fit([[0.0, 1.0]], ["a"])
    np.testing.assert_array_equal(one.predict([[3.0, 3.0]]), ["a"])


# --------------------------------------------------------------------------- bad input
RNG = np.random.default_rng(0)
TAB_X = RNG.normal(size=(24, 2))
TAB_Y = (TAB_X[:, 0] > 0).astype(int)

BAD_PARAMS = [
    ("n_neighbors-zero", {"n_neighbors": 0}, ValueError, "n_neighbors"),
    ("n_neighbors-bool", {"n_neighbors": True}, TypeError, "n_neighbors"),
    ("n_neighbors-str", {"n_neighbors": "many"}, ValueError, "n_neighbors"),
    ("rho-negative", {"rho": -1.0}, ValueError, "rho"),
    ("rho-bool", {"rho": True}, TypeError, "rho"),
    ("T-zero", {"T": 0.0}, ValueError, "T"),
    ("T-bool", {"T": True}, TypeError, "T"),
    ("T-str", {"T": "2"}, TypeError, "T"),
    ("max_iter-negative", {"max_iter": -1}, ValueError, "max_iter"),
    ("step_size-negative", {"step_size": -0.5}, ValueError, "step_size"),
    ("step_size-bool", {"step_size": True}, TypeError, "step_size"),
    ("integrator-typo", {"integrator": "exponential_krylv"}, ValueError, "exponential_krylov"),
    ("integrator-nonlinear", {"integrator": "geometric_euler"}, TypeError, "linear integrator"),
    ("gradient_estimator-typo", {"gradient_estimator": "adjoint_quadratur"}, ValueError, "adjoint"),
    ("learn_weights-str", {"learn_weights": "yes"}, ValueError, "learn_weights"),
    ("class_weight-str", {"class_weight": "even"}, ValueError, "class_weight"),
    ("class_weight-unknown-class", {"class_weight": {5: 2.0}}, ValueError, "class"),
    ("graph-int", {"graph": 3}, ValueError, "graph"),
    ("graph_params-list", {"graph_params": [3]}, ValueError, "graph_params"),
    ("loss-int", {"loss": 3}, ValueError, "loss"),
    ("loss_params-list", {"loss_params": [1]}, ValueError, "loss_params"),
]


@pytest.mark.parametrize(
    ("params", "exc", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_PARAMS]
)
def test_rejects_bad_hyper_parameters(params, exc, match):
    with pytest.raises(exc, match=match):
        AssignmentFlowClassifier(**params).fit(TAB_X, TAB_Y)


def _with(a, idx, value):
    a = np.array(a, dtype=float)
    a[idx] = value
    return a


BAD_DATA = [
    ("X-nan", _with(TAB_X, (0, 0), np.nan), TAB_Y, None, "X"),
    ("X-inf", _with(TAB_X, (1, 1), np.inf), TAB_Y, None, "X"),
    ("X-huge", TAB_X * 1e200, TAB_Y, None, "X"),
    ("X-1d", TAB_X[:, 0], TAB_Y, None, "2D|2-dimensional"),
    ("X-empty", np.zeros((0, 2)), np.zeros(0), None, "0 sample"),
    ("X-no-features", np.zeros((24, 0)), TAB_Y, None, "0 feature"),
    ("X-complex", TAB_X.astype(complex), TAB_Y, None, "Complex"),
    ("y-length", TAB_X, TAB_Y[:5], None, "inconsistent numbers of samples"),
    ("y-continuous", TAB_X, TAB_Y + 0.5, None, "label type"),
    ("y-nan", TAB_X, _with(TAB_Y, 0, np.nan), None, "y|label"),
    ("y-all-unlabeled", TAB_X, np.full(24, -1), None, "y"),
    ("sample_weight-length", TAB_X, TAB_Y, np.ones(3), "sample_weight|samples"),
    ("sample_weight-negative", TAB_X, TAB_Y, -np.ones(24), "[Ss]ample.weight|negative"),
    ("sample_weight-zero", TAB_X, TAB_Y, np.zeros(24), "[Ss]ample.weight"),
    ("sample_weight-class-zero", TAB_X, TAB_Y, TAB_Y.astype(float), "sample_weight"),
]


@pytest.mark.parametrize(
    ("X", "y", "sw", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_DATA]
)
def test_fit_rejects_bad_data(X, y, sw, match):
    with pytest.raises(ValueError, match=match):
        AssignmentFlowClassifier().fit(X, y, sample_weight=sw)


@pytest.fixture(scope="module")
def clf() -> AssignmentFlowClassifier:
    return AssignmentFlowClassifier(n_neighbors=4).fit(TAB_X, TAB_Y)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        pytest.param(np.zeros((2, 3)), "features", id="more-features"),
        pytest.param(np.zeros((2, 1)), "features", id="fewer-features"),
        pytest.param(np.zeros((0, 2)), "0 sample", id="empty"),
        pytest.param(_with(TAB_X[:2], (0, 0), np.nan), "X", id="nan"),
        pytest.param(TAB_X[:2] * 1e200, "X", id="huge"),
    ],
)
@pytest.mark.parametrize("method", ["predict", "predict_proba", "decision_function"])
def test_predict_rejects_bad_data(clf, method, X, match):
    with pytest.raises(ValueError, match=match):
        getattr(clf, method)(X)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "decision_function"])
def test_not_fitted(method):
    with pytest.raises(NotFittedError):
        getattr(AssignmentFlowClassifier(), method)(TAB_X)


@pytest.mark.parametrize("learn", [False, True], ids=["default", "learned"])
def test_single_class_and_single_sample(learn):
    one_class = AssignmentFlowClassifier(learn_weights=learn, max_iter=1).fit(TAB_X, ["a"] * 24)
    assert np.array_equal(one_class.predict_proba(TAB_X[:3]), np.ones((3, 1)))
    assert list(one_class.predict(TAB_X[:3])) == ["a"] * 3
    one_row = AssignmentFlowClassifier(learn_weights=learn, max_iter=1).fit(TAB_X[:1], [3])
    assert list(one_row.predict(TAB_X[:4])) == [3] * 4


def test_more_neighbours_than_rows():
    c = AssignmentFlowClassifier(n_neighbors=8).fit([[0.0], [1.0]], [0, 1])
    P = c.predict_proba([[0.05], [0.95]])
    assert finite(P) and np.allclose(P.sum(axis=1), 1.0)
    np.testing.assert_array_equal(c.predict([[0.05], [0.95]]), [0, 1])


def test_identical_rows_get_a_finite_rho():
    c = AssignmentFlowClassifier().fit(np.zeros((6, 2)), [0, 1] * 3)
    assert c.rho_ == 1.0  # estimate_rho's fallback when every distance is 0
    assert finite(c.predict_proba(TAB_X[:3]))


def test_does_not_modify_inputs():
    X, y, w = TAB_X.copy(), TAB_Y.copy(), np.ones(24)
    c = AssignmentFlowClassifier(learn_weights=True, max_iter=1).fit(X, y, sample_weight=w)
    c.predict_proba(X)
    np.testing.assert_array_equal(X, TAB_X)
    np.testing.assert_array_equal(y, TAB_Y)
    np.testing.assert_array_equal(w, 1.0)
