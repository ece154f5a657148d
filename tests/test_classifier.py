"""Tests of AssignmentFlowClassifier and label_graph (assignflow/classifier.py)."""

from __future__ import annotations

import pickle

import networkx as nx
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs, make_moons
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

import assignflow as af
from assignflow.classifier import AssignmentFlowClassifier, label_graph


# --------------------------------------------------------------------------- sklearn checks
@parametrize_with_checks(
    [AssignmentFlowClassifier(), AssignmentFlowClassifier(learn_weights=True, max_iter=2)]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------- accuracy
def test_well_separated_blobs():
    X, y = make_blobs(300, centers=3, cluster_std=1.0, random_state=0)
    Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0)
    clf = AssignmentFlowClassifier().fit(Xtr, ytr)
    assert clf.score(Xte, yte) >= 0.9


def test_moons_beats_one_nn_on_average():
    ours, base = [], []
    for seed in range(4):
        X, y = make_moons(300, noise=0.25, random_state=seed)
        Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=seed)
        base.append(KNeighborsClassifier(1).fit(Xtr, ytr).score(Xte, yte))
        ours.append(AssignmentFlowClassifier().fit(Xtr, ytr).score(Xte, yte))
    assert np.mean(ours) > np.mean(base)


def test_moons_learned_weights_accurate():
    X, y = make_moons(300, noise=0.25, random_state=0)
    Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0)
    clf = AssignmentFlowClassifier(learn_weights=True, max_iter=5).fit(Xtr, ytr)
    assert clf.score(Xte, yte) >= 0.9


def test_overlapping_blobs_beat_one_nn():
    X, y = make_blobs(400, centers=3, cluster_std=2.0, random_state=0)
    Xtr, Xte, ytr, yte = train_test_split(X, y, random_state=0)
    base = KNeighborsClassifier(1).fit(Xtr, ytr).score(Xte, yte)
    assert AssignmentFlowClassifier().fit(Xtr, ytr).score(Xte, yte) > base


# --------------------------------------------------------------------------- probabilities
@pytest.mark.parametrize("learn", [False, True])
def test_predict_proba_rows_sum_to_one(learn):
    X, y = make_blobs(120, centers=4, random_state=1)
    clf = AssignmentFlowClassifier(learn_weights=learn, max_iter=3).fit(X, y)
    P = clf.predict_proba(X + 0.1)
    assert P.shape == (120, 4)
    assert np.all(P > 0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(X + 0.1), clf.classes_[P.argmax(axis=1)])


def test_string_labels_and_one_class():
    X, y = make_blobs(60, centers=2, random_state=2)
    labels = np.array(["cat", "dog"])[y]
    clf = AssignmentFlowClassifier().fit(X, labels)
    assert set(clf.predict(X)) <= {"cat", "dog"}
    one = AssignmentFlowClassifier(learn_weights=True).fit(X, np.full(60, "cat"))
    np.testing.assert_array_equal(one.predict(X[:5]), ["cat"] * 5)
    np.testing.assert_array_equal(one.predict_proba(X[:5]), np.ones((5, 1)))


def test_rho_default_and_given():
    X, y = make_blobs(80, centers=2, random_state=3)
    clf = AssignmentFlowClassifier().fit(X, y)
    own = np.linalg.norm(X - clf.prototypes_[clf.y_], axis=1)
    assert clf.rho_ == pytest.approx(np.median(own))
    assert AssignmentFlowClassifier(rho=0.3).fit(X, y).rho_ == 0.3
    np.testing.assert_allclose(clf.prototypes_, [X[y == j].mean(axis=0) for j in range(2)])


# --------------------------------------------------------------------------- invariances
@pytest.mark.parametrize("integrator", ["exponential_krylov", af.Euler(step_size=0.05)])
def test_subset_and_order_invariance(integrator):
    X, y = make_moons(150, noise=0.3, random_state=4)
    clf = AssignmentFlowClassifier(integrator=integrator, learn_weights=True, max_iter=3)
    clf.fit(X[:100], y[:100])
    Xq = X[100:]
    full = clf.predict_proba(Xq)
    parts = np.concatenate([clf.predict_proba(Xq[i : i + 7]) for i in range(0, 50, 7)])
    np.testing.assert_allclose(parts, full, atol=1e-10)
    one = np.concatenate([clf.predict_proba(Xq[i : i + 1]) for i in range(50)])
    np.testing.assert_allclose(one, full, atol=1e-10)
    perm = np.random.default_rng(0).permutation(50)
    np.testing.assert_allclose(clf.predict_proba(Xq[perm]), full[perm], atol=1e-10)


def test_random_state_reproducible_with_learning():
    X, y = make_moons(120, noise=0.3, random_state=5)
    a = AssignmentFlowClassifier(learn_weights=True, max_iter=4, random_state=0).fit(X, y)
    b = AssignmentFlowClassifier(learn_weights=True, max_iter=4, random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.n_iter_ == 4
    assert set(a.history_) >= {"loss", "error"}
    assert a.history_["loss"].min() <= a.history_["loss"][0]
    # learned weights are row-stochastic on the training graph
    af.Weights(a.graph_, a.weights_)
    assert not np.allclose(a.trust_, 1.0)


def test_no_learning_is_uniform():
    X, y = make_moons(50, noise=0.1, random_state=6)
    clf = AssignmentFlowClassifier().fit(X, y)
    np.testing.assert_allclose(clf.weights_, af.Weights.uniform(clf.graph_).values)
    np.testing.assert_array_equal(clf.trust_, 1.0)
    assert clf.n_iter_ == 1 and clf.history_ is None


# --------------------------------------------------------------------------- estimator API
def test_pickle_round_trip():
    X, y = make_blobs(60, centers=3, random_state=7)
    clf = AssignmentFlowClassifier(learn_weights=True, max_iter=2).fit(X, y)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))


def test_params_clone():
    clf = AssignmentFlowClassifier(n_neighbors=5, T=1.5)
    params = clf.get_params()
    assert params["n_neighbors"] == 5 and params["T"] == 1.5 and params["rho"] is None
    clf.set_params(rho=0.2, learn_weights=True)
    assert clf.rho == 0.2 and clf.learn_weights is True
    c2 = clone(clf)
    assert c2.get_params() == clf.get_params()
    assert c2 is not clf


def test_not_fitted_and_bad_params():
    with pytest.raises(NotFittedError):
        AssignmentFlowClassifier().predict(np.zeros((2, 2)))
    X, y = make_blobs(20, centers=2, random_state=8)
    with pytest.raises(ValueError, match="n_neighbors"):
        AssignmentFlowClassifier(n_neighbors=0).fit(X, y)
    with pytest.raises(ValueError, match="T"):
        AssignmentFlowClassifier(T=-1.0).fit(X, y)
    with pytest.raises(ValueError):
        AssignmentFlowClassifier(integrator="no-such-integrator").fit(X, y).predict(X)


def test_tiny_inputs():
    clf = AssignmentFlowClassifier().fit([[0.0], [1.0]], [0, 1])
    np.testing.assert_array_equal(clf.predict([[0.1], [0.9]]), [0, 1])
    one = AssignmentFlowClassifier(learn_weights=True).fit([[0.0, 1.0]], ["a"])
    np.testing.assert_array_equal(one.predict([[3.0, 3.0]]), ["a"])


# --------------------------------------------------------------------------- label_graph
def _two_cluster():
    G = nx.disjoint_union(nx.complete_graph(5), nx.complete_graph(5))
    G.add_edge(4, 5)
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1], 5)
    protos = np.array([[0.0, 0.0], [1.0, 1.0]])
    feats = protos[truth] + 0.35 * rng.standard_normal((10, 2))
    feats[2] = [0.8, 0.8]  # one node whose own data points to the wrong label
    return G, feats, protos, truth


@pytest.mark.parametrize("kind", ["graph", "sparse", "networkx"])
def test_label_graph_inputs(kind):
    G, feats, protos, truth = _two_cluster()
    A = nx.to_scipy_sparse_array(G, format="csr")
    graph = {"graph": af.Graph.from_adjacency(A), "sparse": A, "networkx": G}[kind]
    res = label_graph(graph, feats, protos, rho=0.5, T=3.0)
    assert isinstance(res, af.FlowResult)
    np.testing.assert_array_equal(res.labels, truth)
    np.testing.assert_allclose(res.W.sum(axis=1), 1.0)


def test_label_graph_weights_and_integrator():
    G, feats, protos, _ = _two_cluster()
    g = af.Graph.from_networkx(G)
    om = af.Weights.uniform(g)
    r1 = label_graph(g, feats, protos, rho=0.5, weights=om)
    r2 = label_graph(g, feats, protos, rho=0.5, weights=om.values)
    r3 = label_graph(g, feats, protos, rho=0.5, integrator=af.Euler(step_size=0.01))
    np.testing.assert_allclose(r1.W, r2.W)
    np.testing.assert_allclose(r1.W, r3.W, atol=1e-2)
    # grey features (n,) with scalar prototypes (J,)
    r4 = label_graph(g, feats[:, 0], protos[:, 0], rho=0.5)
    assert r4.W.shape == (10, 2)


def test_label_graph_errors():
    G, feats, protos, _ = _two_cluster()
    g = af.Graph.from_networkx(G)
    with pytest.raises(ValueError, match="features"):
        label_graph(g, feats[:7], protos)
    with pytest.raises(ValueError, match="prototypes"):
        label_graph(g, feats, np.ones((2, 3)))
    with pytest.raises(ValueError, match="weights"):
        label_graph(g, feats, protos, weights=np.ones(3))
    with pytest.raises(ValueError, match="weights"):
        label_graph(g, feats, protos, weights=af.Weights.uniform(af.GridGraph((2, 5))))
    with pytest.raises(ValueError, match="rho"):
        label_graph(g, feats, protos, rho=0.0)
    with pytest.raises(TypeError, match="graph"):
        label_graph([[0, 1], [1, 0]], feats[:2], protos)
    with pytest.raises(ValueError, match="features"):
        label_graph(g, np.full((10, 2), np.nan), protos)
