"""Tests of label_graph and the seeded LAF construction (assignflow/labeling.py)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

import assignflow as af
from assignflow import labeling
from assignflow.labeling import (
    clamp,
    degree_weights,
    growth_rate,
    label_graph,
    nearest_seed_distances,
    seed_distances,
)


def finite(a) -> bool:
    return bool(np.all(np.isfinite(np.asarray(a, dtype=float))))


def _two_cluster():
    G = nx.disjoint_union(nx.complete_graph(5), nx.complete_graph(5))
    G.add_edge(4, 5)
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1], 5)
    protos = np.array([[0.0, 0.0], [1.0, 1.0]])
    feats = protos[truth] + 0.35 * rng.standard_normal((10, 2))
    feats[2] = [0.8, 0.8]  # one node whose own data points to the wrong label
    return G, feats, protos, truth


def _karate():
    G = nx.karate_club_graph()
    y = np.array([G.nodes[v]["club"] == "Officer" for v in G], dtype=int)
    return G, y


# --------------------------------------------------------------------------- data term only
@pytest.mark.parametrize("kind", ["graph", "sparse", "networkx"])
def test_label_graph_inputs(kind):
    G, feats, protos, truth = _two_cluster()
    A = nx.to_scipy_sparse_array(G, format="csr")
    graph = {"graph": af.Graph.from_adjacency(A), "sparse": A, "networkx": G}[kind]
    res = label_graph(graph, feats, protos, rho=0.5, T=3.0)
    assert isinstance(res, af.FlowResult)
    np.testing.assert_array_equal(res.labels, truth)
    np.testing.assert_allclose(res.W.sum(axis=1), 1.0)
    # the default rules give the same labeling here
    np.testing.assert_array_equal(label_graph(graph, feats, protos).labels, truth)


def test_label_graph_weights_and_integrator():
    G, feats, protos, _ = _two_cluster()
    g = af.Graph.from_networkx(G)
    om = af.Weights.uniform(g)
    r1 = label_graph(g, feats, protos, rho=0.5, T=2.0, weights=om)
    r2 = label_graph(g, feats, protos, rho=0.5, T=2.0, weights=om.values)
    r3 = label_graph(g, feats, protos, rho=0.5, T=2.0, weights=om, integrator=af.Euler(0.01))
    np.testing.assert_allclose(r1.W, r2.W)
    np.testing.assert_allclose(r1.W, r3.W, atol=1e-2)
    # grey features (n,) with scalar prototypes (J,)
    assert label_graph(g, feats[:, 0], protos[:, 0], rho=0.5).W.shape == (10, 2)
    # against a direct construction of the same flow
    sim = af.SimilarityOperator(om, af.distance_matrix(feats, protos), rho=0.5)
    ref = af.LinearizedAssignmentFlow(sim, T=2.0).solve(af.ExponentialKrylov(tol=1e-12))
    np.testing.assert_allclose(r1.W, ref.W, atol=1e-10)


def test_label_graph_auto_rules():
    G, feats, protos, _ = _two_cluster()
    g = af.Graph.from_networkx(G)
    D = af.distance_matrix(feats, protos)
    res = label_graph(g, feats, protos)
    rho = af.estimate_rho(D)
    flow = af.LinearizedAssignmentFlow(af.SimilarityOperator(degree_weights(g), D, rho=rho), T=1)
    assert res.T == pytest.approx(labeling.HORIZON / growth_rate(flow))
    same = label_graph(g, feats, protos, rho=None, T=None)
    np.testing.assert_array_equal(same.W, res.W)
    explicit = label_graph(g, feats, protos, rho=rho, T=res.T)
    np.testing.assert_allclose(explicit.W, res.W, atol=1e-12)


# --------------------------------------------------------------------------- seeds
def test_karate_club_from_seeds_only():
    G, y = _karate()
    seeds = np.full(34, -1)
    seeds[[0, 33]] = y[[0, 33]]  # the two leaders
    res = label_graph(G, labels=seeds)
    assert res.W.shape == (34, 2) and finite(res.W)
    assert res.labels[0] == y[0] and res.labels[33] == y[33]
    assert np.mean(res.labels == y) >= 0.9
    # without node data the horizon is c J exactly (growth rate 1/J)
    assert res.T == pytest.approx(labeling.HORIZON * 2)


@pytest.mark.parametrize("T", [0.05, 3.0, 60.0])
def test_seeds_keep_their_labels(T):
    rng = np.random.default_rng(1)
    G = nx.connected_watts_strogatz_graph(60, 4, 0.3, seed=1)
    feats = rng.normal(size=(60, 3))
    y = np.full(60, -1)
    idx = rng.choice(60, 12, replace=False)
    y[idx] = rng.integers(0, 3, 12)
    y[idx[:3]] = [0, 1, 2]
    for kw in ({}, {"features": feats}):
        res = label_graph(G, labels=y, T=T, **kw)
        np.testing.assert_array_equal(res.labels[idx], y[idx])
        assert finite(res.W)


def test_seeds_spread_along_the_graph():
    # a path 0 - 1 - ... - 9 with a seed at each end: each half takes its seed's label
    G = nx.path_graph(10)
    y = np.full(10, -1)
    y[0], y[9] = 0, 1
    np.testing.assert_array_equal(label_graph(G, labels=y).labels, np.repeat([0, 1], 5))


def test_seeds_with_features_nearest_seed_data_term():
    G, feats, _, truth = _two_cluster()
    y = np.full(10, -1)
    y[[0, 9]] = truth[[0, 9]]
    res = label_graph(G, feats, labels=y)
    np.testing.assert_array_equal(res.labels, truth)
    # the data term: distances to the nearest seed of each label
    np.testing.assert_allclose(
        nearest_seed_distances(feats, feats[[0, 9]], np.array([0, 1]), 2),
        af.distance_matrix(feats, feats[[0, 9]]),
    )


def test_seeds_with_prototypes_and_no_seed():
    G, feats, protos, truth = _two_cluster()
    none = np.full(10, -1)
    np.testing.assert_array_equal(
        label_graph(G, feats, protos, labels=none).W, label_graph(G, feats, protos).W
    )
    y = none.copy()
    y[2] = 0  # the misleading node, now a seed of its true label
    res = label_graph(G, feats, protos, labels=y)
    assert res.labels[2] == 0
    np.testing.assert_array_equal(res.labels, truth)


def test_label_graph_progress():
    G, y = _karate()
    seeds = np.full(34, -1)
    seeds[[0, 33]] = y[[0, 33]]
    seen = []
    res = label_graph(G, labels=seeds, progress=seen.append)
    assert seen and seen[-1] == pytest.approx(1.0)
    assert seen == sorted(seen) and all(0.0 <= f <= 1.0 for f in seen)
    np.testing.assert_array_equal(res.W, label_graph(G, labels=seeds).W)
    with pytest.raises(ValueError, match="progress"):
        label_graph(G, labels=seeds, progress=3)


def test_label_graph_float32_with_seeds():
    G, feats, _, truth = _two_cluster()
    y = np.full(10, -1)
    y[[0, 9]] = truth[[0, 9]]
    r64 = label_graph(G, feats, labels=y)
    r32 = label_graph(G, feats, labels=y, dtype="float32")
    assert r32.W.dtype == np.float32
    np.testing.assert_allclose(r32.W, r64.W, atol=1e-4)


def test_label_graph_by_name():
    rng = np.random.default_rng(2)
    X = np.r_[rng.normal(0, 0.3, (20, 2)), rng.normal(3, 0.3, (20, 2))]
    y = np.full(40, -1)
    y[[0, 39]] = [0, 1]
    res = label_graph("knn", X, labels=y, graph_params={"n_neighbors": 4})
    np.testing.assert_array_equal(res.labels, np.repeat([0, 1], 20))
    with pytest.raises(ValueError, match="features"):
        label_graph("knn", labels=y)
    with pytest.raises(TypeError, match="graph_params"):
        label_graph(af.Graph.knn(X, 4), X, labels=y, graph_params={"n_neighbors": 4})


# --------------------------------------------------------------------------- building blocks
def test_clamp_reduces_seed_rows_only():
    g = af.Graph.knn(np.random.default_rng(3).normal(size=(12, 2)), 3)
    om = degree_weights(g)
    seeds = np.zeros(12, dtype=bool)
    seeds[[1, 7]] = True
    c = clamp(om, seeds)
    for i in range(12):
        cols = c.graph.indices[c.graph.indptr[i] : c.graph.indptr[i + 1]]
        vals = c.values[c.graph.indptr[i] : c.graph.indptr[i + 1]]
        if seeds[i]:
            assert cols.tolist() == [i] and vals.tolist() == [1.0]
        else:
            ref = slice(g.indptr[i], g.indptr[i + 1])
            np.testing.assert_array_equal(cols, g.indices[ref])
            np.testing.assert_array_equal(vals, om.values[ref])
    assert clamp(om, np.zeros(12, dtype=bool)) is om


def test_degree_weights_on_a_star():
    g = af.Graph.from_networkx(nx.star_graph(4))  # hub 0 with 4 leaves
    om = degree_weights(g)
    # leaf row: itself (degree 2) and the hub (degree 5): weights 1/2 : 1/5
    leaf = om.values[g.indptr[1] : g.indptr[2]]
    np.testing.assert_allclose(leaf, np.array([1 / 5, 1 / 2]) / (1 / 5 + 1 / 2))
    hub = om.values[g.indptr[0] : g.indptr[1]]
    np.testing.assert_allclose(hub, np.array([1 / 5, 1 / 2, 1 / 2, 1 / 2, 1 / 2]) / 2.2)


def test_seed_distances():
    D = np.arange(12.0).reshape(4, 3)
    out = seed_distances(D, np.array([-1, 2, -1, 0]), np.array([0.0, 2.0, 0.0, 1.0]), 0.5)
    np.testing.assert_array_equal(out[[0, 2]], D[[0, 2]])
    np.testing.assert_allclose(out[1], [10.0, 10.0, 0.0])  # kappa rho c = 10 * 0.5 * 2
    np.testing.assert_allclose(out[3], [0.0, 5.0, 5.0])
    np.testing.assert_array_equal(D, np.arange(12.0).reshape(4, 3))  # not modified


@pytest.mark.parametrize("path", ["brute", "tree", "blocks"])
def test_nearest_seed_distances_against_dense(monkeypatch, path):
    rng = np.random.default_rng(4)
    F, S = rng.normal(size=(50, 3)), rng.normal(size=(9, 3))
    lab = np.array([0, 1, 2, 0, 1, 2, 2, 2, 0])
    if path == "tree":
        monkeypatch.setattr(labeling, "_BRUTE_FORCE_PAIRS", 0)
    if path == "blocks":
        monkeypatch.setattr(labeling, "_BLOCK", 20)
    ref = np.stack(
        [np.linalg.norm(F[:, None] - S[None, lab == j], axis=2).min(axis=1) for j in range(3)], 1
    )
    np.testing.assert_allclose(nearest_seed_distances(F, S, lab, 3), ref, atol=1e-12)


def _dense_tangent_eigenvalues(flow):
    """Eigenvalues of A restricted to the tangent space (rows summing to 0), densely."""
    n, J = flow.shape
    A = np.column_stack([flow.matvec(e) for e in np.eye(n * J)])
    basis = np.kron(np.eye(n), np.linalg.qr(np.eye(J) - 1.0 / J)[0][:, : J - 1])
    return np.linalg.eigvals(basis.T @ A @ basis)


def test_growth_rate_against_dense_eigenvalues():
    rng = np.random.default_rng(5)
    # 5 nodes, 3 labels: the tangent space has dimension 10 = RITZ_DIM, so the Ritz
    # values are the eigenvalues
    assert labeling.RITZ_DIM >= 10
    g = af.Graph.knn(rng.normal(size=(5, 2)), 2)
    D = rng.random((5, 3))
    for rho in (0.05, 5.0):  # peaked and nearly uniform S0
        flow = af.LinearizedAssignmentFlow(af.SimilarityOperator(degree_weights(g), D, rho), T=1)
        lam = max(_dense_tangent_eigenvalues(flow).real.max(), 1 / 3)
        assert growth_rate(flow) == pytest.approx(lam, rel=1e-8)
    # no data: S0 uniform, the rate 1/J exactly
    flow = af.LinearizedAssignmentFlow(
        af.SimilarityOperator(degree_weights(g), np.zeros((5, 3))), T=1
    )
    assert growth_rate(flow) == 1 / 3
    assert _dense_tangent_eigenvalues(flow).real.max() == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- bad input
G2 = sp.csr_matrix(np.array([[0, 1], [1, 0]]))
F2 = np.array([0.9, 0.1])
P2 = np.array([0.0, 1.0])

BAD_LABEL_GRAPH = [
    ("graph-list", {"graph": [[0, 1], [1, 0]]}, TypeError, "graph"),
    ("graph-empty", {"graph": sp.csr_matrix((0, 0))}, ValueError, "node"),
    ("graph-nonsquare", {"graph": sp.csr_matrix((2, 3))}, ValueError, "square"),
    ("graph-unknown-name", {"graph": "no-such-graph"}, ValueError, "graph"),
    ("features-rows", {"features": [0.1, 0.2, 0.3]}, ValueError, "features"),
    ("features-nan", {"features": [np.nan, 0.1]}, ValueError, "features"),
    ("features-str", {"features": "ab"}, TypeError, "features"),
    ("features-huge", {"features": [1e300, 0.0]}, ValueError, "features"),
    ("prototypes-empty", {"prototypes": np.zeros((0, 1))}, ValueError, "prototypes"),
    ("prototypes-cols", {"prototypes": np.zeros((2, 3))}, ValueError, "prototypes"),
    ("prototypes-inf", {"prototypes": [0.0, np.inf]}, ValueError, "prototypes"),
    ("prototypes-no-features", {"features": None}, ValueError, "features"),
    ("no-prototypes-no-labels", {"prototypes": None}, ValueError, "prototypes"),
    ("nothing", {"features": None, "prototypes": None}, ValueError, "features"),
    ("rho-negative", {"rho": -1.0}, ValueError, "rho"),
    ("rho-bool", {"rho": True}, TypeError, "rho"),
    ("rho-str", {"rho": "big"}, ValueError, "rho"),
    ("T-zero", {"T": 0.0}, ValueError, "T"),
    ("T-nan", {"T": float("nan")}, ValueError, "T"),
    ("T-bool", {"T": False}, TypeError, "T"),
    ("weights-length", {"weights": [0.5, 0.5]}, ValueError, "weights"),
    ("weights-nan", {"weights": [np.nan, 1.0, 0.5, 0.5]}, ValueError, "weights"),
    ("weights-negative", {"weights": [-1.0, 2.0, 0.5, 0.5]}, ValueError, "> 0"),
    ("weights-not-stochastic", {"weights": [0.2, 0.2, 0.5, 0.5]}, ValueError, "row-stochastic"),
    (
        "weights-other-graph",
        {"weights": af.Weights.uniform(af.GridGraph((1, 2)))},
        ValueError,
        "weights",
    ),
    ("integrator-typo", {"integrator": "eulr"}, ValueError, "Did you mean 'euler'"),
    ("integrator-None", {"integrator": None}, TypeError, "integrator"),
    ("integrator-nonlinear", {"integrator": "geometric_euler"}, TypeError, "linear integrator"),
    ("dtype-None", {"dtype": None}, ValueError, "dtype"),
    ("dtype-float16", {"dtype": "float16"}, ValueError, "dtype"),
    ("graph_params-list", {"graph_params": [1]}, ValueError, "graph_params"),
    ("labels-length", {"labels": [0, 1, -1]}, ValueError, "labels"),
    ("labels-below", {"labels": [-2, 0]}, ValueError, "labels"),
    ("labels-too-large", {"labels": [2, 0]}, ValueError, "labels"),
    ("labels-fraction", {"labels": [0.5, 0]}, ValueError, "labels"),
    ("labels-str", {"labels": ["a", "b"]}, TypeError, "labels"),
    ("labels-bool", {"labels": [True, False]}, TypeError, "labels"),
]


@pytest.mark.parametrize(
    ("kw", "exc", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_LABEL_GRAPH]
)
def test_label_graph_rejects_bad_input(kw, exc, match):
    args = {"graph": G2, "features": F2, "prototypes": P2} | kw
    graph, features, prototypes = args.pop("graph"), args.pop("features"), args.pop("prototypes")
    with pytest.raises(exc, match=match):
        label_graph(graph, features, prototypes, **args)


@pytest.mark.parametrize(
    ("labels", "features", "match"),
    [
        pytest.param([-1, -1, -1], None, "seed", id="no-seed"),
        pytest.param([0, -1, 2], np.zeros(3), "label 1 has no seed", id="label-without-seed"),
    ],
)
def test_label_graph_rejects_bad_seeds(labels, features, match):
    with pytest.raises(ValueError, match=match):
        label_graph(nx.path_graph(3), features, labels=labels)


def test_label_graph_single_node_and_single_label():
    res = label_graph(sp.csr_matrix((1, 1)), [0.9], [0.0, 1.0])
    np.testing.assert_array_equal(res.labels, [1])
    assert finite(res.W) and np.isclose(res.W.sum(), 1.0)
    res = label_graph(sp.eye(3, format="csr"), [0.9, 0.0, 1.0], [0.0])
    np.testing.assert_array_equal(res.W, np.ones((3, 1)))
    np.testing.assert_array_equal(res.labels, [0, 0, 0])
    res = label_graph(nx.path_graph(3), labels=[0, -1, -1])
    np.testing.assert_array_equal(res.labels, [0, 0, 0])


def test_label_graph_does_not_modify_inputs():
    f, p, w, y = F2.copy(), P2.copy(), np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, -1])
    label_graph(G2, f, p, weights=w, labels=y)
    np.testing.assert_array_equal(f, F2)
    np.testing.assert_array_equal(p, P2)
    np.testing.assert_array_equal(w, 0.5)
    np.testing.assert_array_equal(y, [0, -1])
