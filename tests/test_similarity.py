"""Tests for :mod:`assignflow.similarity` (docs/math.md §3)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import (
    BAD,
    INF,
    NAN,
    bool_array,
    case,
    complex_array,
    disconnected_graph,
    inf_array,
    nan_array,
    object_none_array,
    random_weights,
    str_array,
)
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.distance import cdist
from strategies import (
    PROPERTY,
    bounded_arrays,
    graphs_and_weights,
    points,
    positive_arrays,
    ref_softmax,
    tangent_vectors,
)

import assignflow as af
from assignflow import AssignmentManifold, Graph, GridGraph, SimilarityOperator, Weights
from assignflow import distance_matrix as dm


@st.composite
def problems(
    draw, point_bound: float = 5.0, lo: float = 1e-3, max_labels: int = 5, kind: str | None = None
):
    """(weights, distances, rho, W) on a random graph."""
    g, om = draw(graphs_and_weights())
    J = draw(st.integers(1, max_labels))
    D = draw(positive_arrays((g.n_nodes, J), lo=0.0, hi=3.0))
    rho = draw(st.sampled_from([0.1, 0.5, 1.0, 4.0]))
    W = draw(points((g.n_nodes, J), bound=point_bound, lo=lo, kind=kind))
    return om, D, rho, W


def literal_similarity(om: Weights, D: np.ndarray, rho: float, W: np.ndarray) -> np.ndarray:
    """eq. 2.17 as written: S_i = exp_{W_i}(Σ_k ω_ik exp_{W_i}^{-1}(L_k(W_k)))."""
    n, J = W.shape
    M = AssignmentManifold(n, J)
    row = AssignmentManifold(1, J)
    L = M.lift(W, -D / rho)
    g = om.graph
    S = np.empty_like(W)
    for i in range(n):
        Wi = W[i : i + 1]
        acc = np.zeros((1, J))
        for p in range(g.indptr[i], g.indptr[i + 1]):
            k = g.indices[p]
            acc += om.values[p] * row.lift_inverse(Wi, L[k : k + 1])
        S[i] = row.lift(Wi, acc)[0]
    return S


# --------------------------------------------------------------------------- S(W)
@PROPERTY
@given(problems())
def test_similarity_matches_literal_eq_2_17(prob):
    om, D, rho, W = prob
    S = SimilarityOperator(om, D, rho)
    out = S.similarity(W)
    np.testing.assert_allclose(out, literal_similarity(om, D, rho, W), rtol=1e-9, atol=1e-14)
    np.testing.assert_array_equal(S(W), out)


@PROPERTY
@given(problems(point_bound=20.0))
def test_similarity_on_manifold_and_simplified_form(prob):
    om, D, rho, W = prob
    S = SimilarityOperator(om, D, rho)
    out = S.similarity(W)
    assert S.manifold.belongs(out)
    dense = om.to_csr().toarray()
    np.testing.assert_allclose(
        out, ref_softmax(dense @ (np.log(W) - D / rho)), rtol=1e-9, atol=1e-15
    )


@PROPERTY
@given(problems())
def test_S0(prob):
    om, D, rho, _ = prob
    S = SimilarityOperator(om, D, rho)
    dense = om.to_csr().toarray()
    expected = ref_softmax(-(dense @ D) / rho)
    np.testing.assert_allclose(S.S0, expected, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(S.similarity(S.manifold.barycenter()), S.S0, rtol=1e-10, atol=1e-15)
    assert not S.S0.flags.writeable
    assert S.manifold.belongs(S.S0)


@PROPERTY
@given(problems())
def test_likelihood(prob):
    om, D, rho, W = prob
    S = SimilarityOperator(om, D, rho)
    L = S.likelihood(W)
    np.testing.assert_allclose(L, ref_softmax(np.log(W) - D / rho), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(L, S.manifold.lift(W, -D / rho), rtol=1e-12, atol=1e-15)
    assert S.manifold.belongs(L)


@PROPERTY
@given(problems(), bounded_arrays(10, 50.0), st.floats(-100, 100))
def test_invariant_to_row_constants_of_D(prob, c, const):
    """Adding c_i to row i of D shifts Ω D by (Ω c) 1ᵀ, constant on every row."""
    om, D, rho, W = prob
    S = SimilarityOperator(om, D, rho)
    c = np.resize(c, om.n_nodes)[:, None]
    for D2 in (D + const, D + c):
        S2 = SimilarityOperator(om, D2, rho)
        np.testing.assert_allclose(S2.similarity(W), S.similarity(W), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(S2.S0, S.S0, rtol=1e-8, atol=1e-12)


def test_not_invariant_to_label_constants():
    """…but a constant per label (a column of D) does change S."""
    g = GridGraph((2, 2))
    S = SimilarityOperator(Weights.uniform(g), np.zeros((4, 2)), 1.0)
    S2 = SimilarityOperator(Weights.uniform(g), np.array([[0.0, 1.0]] * 4), 1.0)
    np.testing.assert_allclose(S.S0, 0.5)
    np.testing.assert_allclose(S2.S0[:, 0], 1 / (1 + np.exp(-1.0)))


def test_similarity_example():
    """Two nodes joined by an edge, uniform weights, J = 2, by hand."""
    g = Graph.from_adjacency(np.array([[0, 1], [1, 0]]))
    D = np.array([[0.0, 2.0], [1.0, 0.0]])
    S = SimilarityOperator(Weights.uniform(g), D, rho=0.5)
    # Ω D / ρ = [[0.5, 1.0], [0.5, 1.0]] / 0.5 = [[1, 2], [1, 2]]
    p = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(S.S0, [[p, 1 - p], [p, 1 - p]])
    W = np.array([[0.2, 0.8], [0.5, 0.5]])
    z = 0.5 * (np.log(W[0]) + np.log(W[1])) - np.array([1.0, 2.0])
    np.testing.assert_allclose(S.similarity(W), [np.exp(z) / np.exp(z).sum()] * 2)


# --------------------------------------------------------------------------- differential
@PROPERTY
@given(st.data())
def test_differential_matches_finite_differences(data):
    om, D, rho, W = data.draw(problems(lo=0.05, kind="normalized"))  # min(W) >= 0.01
    S = SimilarityOperator(om, D, rho)
    X = data.draw(tangent_vectors(W.shape, bound=1.0))
    h = 1e-3 * W.min() / max(1.0, np.abs(X).max())
    fd = (S.similarity(W + h * X) - S.similarity(W - h * X)) / (2 * h)
    exact = S.differential(W, X)
    assert S.manifold.is_tangent(exact)
    np.testing.assert_allclose(exact, fd, rtol=1e-5, atol=1e-7 * (1 + np.abs(exact).max()))


def test_differential_is_linear_and_zero_at_zero():
    g = GridGraph((3, 4))
    rng = np.random.default_rng(0)
    om = Weights.normalized(g, rng.uniform(0.1, 1, g.nnz))
    S = SimilarityOperator(om, rng.uniform(0, 2, (12, 3)), 0.7)
    W = S.manifold.random_point(rng)
    X, Y = S.manifold.random_tangent(rng), S.manifold.random_tangent(rng)
    np.testing.assert_allclose(S.differential(W, np.zeros((12, 3))), 0.0)
    np.testing.assert_allclose(
        S.differential(W, 2 * X - 3 * Y),
        2 * S.differential(W, X) - 3 * S.differential(W, Y),
        atol=1e-13,
    )


# --------------------------------------------------------------------------- extremes
@pytest.mark.parametrize(("scale", "rho"), [(1e8, 1.0), (1.0, 1e-6), (1e8, 1e-6)])
def test_huge_distances_tiny_rho_finite(scale, rho):
    g = GridGraph((4, 5))
    rng = np.random.default_rng(3)
    om = Weights.normalized(g, rng.uniform(0.1, 1, g.nnz))
    D = scale * rng.uniform(0, 1, (g.n_nodes, 4))
    S = SimilarityOperator(om, D, rho)
    W = S.manifold.random_point(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outs = [S.S0, S.similarity(W), S.likelihood(W)]
    for out in outs:
        assert np.all(np.isfinite(out))
        assert np.all(out >= 0)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
    # the exponent is dominated by −Ω D / ρ: S is (numerically) one-hot at its argmin
    winner = np.argmin(om.apply(D), axis=1)
    np.testing.assert_array_equal(np.argmax(outs[0], axis=1), winner)
    np.testing.assert_array_equal(np.argmax(outs[1], axis=1), winner)
    np.testing.assert_allclose(outs[0][np.arange(g.n_nodes), winner], 1.0)


def test_single_label():
    g = GridGraph((2, 3))
    S = SimilarityOperator(Weights.uniform(g), np.arange(6.0)[:, None], 2.0)
    np.testing.assert_array_equal(S.S0, 1.0)
    np.testing.assert_array_equal(S.similarity(np.ones((6, 1))), 1.0)
    assert S.n_labels == 1
    assert S.n_nodes == 6


# --------------------------------------------------------------------------- attributes
def test_attributes_and_with_weights():
    g = GridGraph((3, 3))
    rng = np.random.default_rng(5)
    D = rng.uniform(0, 1, (9, 3))
    D_user = D.copy()
    S = SimilarityOperator(Weights.uniform(g), D_user, rho=0.25)
    D_user[:] = 99.0  # the operator keeps its own copy
    np.testing.assert_array_equal(S.distances, D)
    assert not S.distances.flags.writeable
    np.testing.assert_allclose(S.scaled_distances, D / 0.25)
    assert S.rho == 0.25 and isinstance(S.rho, float)
    assert S.graph is g
    assert S.manifold == AssignmentManifold(9, 3)
    om = Weights.normalized(g, rng.uniform(0.1, 1, g.nnz))
    S2 = S.with_weights(om)
    assert S2.weights is om
    np.testing.assert_allclose(S2.S0, ref_softmax(-(om.to_csr() @ D) / 0.25), rtol=1e-12)
    assert not np.allclose(S2.S0, S.S0)
    assert "SimilarityOperator" in repr(S)


def test_inputs_not_modified():
    g = GridGraph((3, 3))
    rng = np.random.default_rng(6)
    S = SimilarityOperator(Weights.uniform(g), rng.uniform(0, 1, (9, 2)), 1.0)
    W = S.manifold.random_point(rng)
    X = S.manifold.random_tangent(rng)
    W0, X0 = W.copy(), X.copy()
    S.similarity(W)
    S.likelihood(W)
    S.differential(W, X)
    np.testing.assert_array_equal(W, W0)
    np.testing.assert_array_equal(X, X0)


# --------------------------------------------------------------------------- bad input
_G = GridGraph((2, 3))
_OM = Weights.uniform(_G)
_D = np.ones((6, 2))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"rho": 0.0}, ValueError, "rho"),
        ({"rho": -1.0}, ValueError, "rho"),
        ({"rho": np.nan}, ValueError, "rho"),
        ({"rho": np.inf}, ValueError, "rho"),
        ({"rho": "1"}, TypeError, "rho"),
        ({"rho": None}, TypeError, "rho"),
        ({"distances": np.where(np.eye(6, 2) > 0, np.nan, _D)}, ValueError, "distances"),
        ({"distances": np.full((6, 2), np.inf)}, ValueError, "distances"),
        ({"distances": np.ones((5, 2))}, ValueError, "distances"),
        ({"distances": np.ones((7, 2))}, ValueError, "distances"),
        ({"distances": np.ones(6)}, ValueError, "distances"),
        ({"distances": np.ones((6, 0))}, ValueError, "distances"),
        ({"distances": np.ones((6, 2, 1))}, ValueError, "distances"),
        ({"distances": "abc"}, TypeError, "distances"),
        ({"weights": _G}, TypeError, "weights"),
        ({"weights": _OM.to_csr()}, TypeError, "weights"),
        ({"weights": _OM.to_csr().toarray()}, TypeError, "weights"),
    ],
)
def test_constructor_bad_input(kwargs, exc, match):
    args = {"weights": _OM, "distances": _D, "rho": 1.0, **kwargs}
    with pytest.raises(exc, match=match):
        SimilarityOperator(**args)


@pytest.mark.parametrize("method", ["similarity", "likelihood"])
@pytest.mark.parametrize(
    ("W", "exc", "match"),
    [
        (np.full((6, 3), 1 / 3), ValueError, "W"),
        (np.full((5, 2), 0.5), ValueError, "W"),
        (np.array([[1.0, 0.0]] + [[0.5, 0.5]] * 5), ValueError, "W"),
        (np.array([[np.nan, 0.5]] + [[0.5, 0.5]] * 5), ValueError, "W"),
        ("abc", TypeError, "W"),
    ],
)
def test_methods_bad_input(method, W, exc, match):
    S = SimilarityOperator(_OM, _D, 1.0)
    with pytest.raises(exc, match=rf"\b{match}\b"):
        getattr(S, method)(W)


def test_differential_bad_input():
    S = SimilarityOperator(_OM, _D, 1.0)
    B = S.manifold.barycenter()
    with pytest.raises(ValueError, match=r"\bX\b"):
        S.differential(B, np.zeros((6, 3)))
    with pytest.raises(ValueError, match=r"\bW\b"):
        S.differential(np.zeros((6, 2)), np.zeros((6, 2)))


# --------------------------------------------------------------------------- distance_matrix
@PROPERTY
@given(
    st.integers(1, 12),
    st.integers(1, 5),
    st.integers(1, 4),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["euclidean", "sqeuclidean", "cityblock"]),
)
def test_distance_matrix_features(n, J, c, seed, metric):
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n, c))
    P = rng.standard_normal((J, c))
    D = dm(F, P, metric=metric)
    assert D.shape == (n, J)
    np.testing.assert_allclose(D, cdist(F, P, metric=metric), rtol=1e-12)


@PROPERTY
@given(
    st.integers(1, 6),
    st.integers(1, 6),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(0, 2**32 - 1),
)
def test_distance_matrix_images(h, w, c, J, seed):
    rng = np.random.default_rng(seed)
    img = rng.uniform(size=(h, w, c))
    P = rng.uniform(size=(J, c))
    D = dm(img, P)
    assert D.shape == (h * w, J)
    for y in range(h):
        for x in range(w):
            np.testing.assert_allclose(
                D[y * w + x], np.linalg.norm(img[y, x] - P, axis=1), rtol=1e-12
            )
    np.testing.assert_allclose(D, cdist(img.reshape(-1, c), P), rtol=1e-12)


def test_distance_matrix_grey():
    f = np.array([0.0, 0.3, 1.0])
    protos = np.array([0.0, 0.5])
    expected = np.abs(f[:, None] - protos[None, :])
    np.testing.assert_allclose(dm(f, protos), expected)
    np.testing.assert_allclose(dm(f[:, None], protos[:, None]), expected)
    np.testing.assert_allclose(dm(f, protos[:, None]), expected)
    img = np.arange(6.0).reshape(2, 3) / 5
    np.testing.assert_allclose(dm(img, protos), np.abs(img.reshape(-1, 1) - protos))
    np.testing.assert_allclose(dm(img[..., None], protos), np.abs(img.reshape(-1, 1) - protos))
    np.testing.assert_allclose(dm(f.tolist(), protos.tolist()), expected)


@pytest.mark.parametrize(
    ("features", "prototypes", "exc", "match"),
    [
        (np.ones((4, 3)), np.ones((2, 2)), ValueError, "features"),
        (np.ones(4), np.ones((2, 2)), ValueError, "features"),
        (np.ones((4, 2)), np.ones((0, 2)), ValueError, "prototypes"),
        (np.ones((4, 2)), np.ones((2, 2, 2)), ValueError, "prototypes"),
        (np.ones((4, 2)), np.array([[np.nan, 0.0]]), ValueError, "prototypes"),
        (np.array([[np.nan, 0.0]]), np.ones((2, 2)), ValueError, "features"),
        ("abc", np.ones((2, 2)), TypeError, "features"),
        (np.ones((4, 2)), None, TypeError, "prototypes"),
    ],
)
def test_distance_matrix_bad_input(features, prototypes, exc, match):
    with pytest.raises(exc, match=match):
        dm(features, prototypes)


def test_distance_matrix_rgb_image_with_grey_prototypes_rejected():
    with pytest.raises(ValueError, match="features"):
        dm(np.ones((2, 4, 3)), np.array([0.0, 0.5, 1.0]))


# --------------------------------------------------------------------------- estimate_rho
def test_estimate_rho_is_the_median_gap_between_the_two_nearest_labels():
    D = np.array([[0.1, 0.5, 2.0], [0.2, 0.4, 1.0], [3.0, 1.0, 1.5]])
    assert af.estimate_rho(D) == pytest.approx(np.median([0.4, 0.2, 0.5]))
    # invariant to row constants, scales with D
    assert af.estimate_rho(D + np.array([[1.0], [2.0], [0.5]])) == pytest.approx(af.estimate_rho(D))
    assert af.estimate_rho(3.0 * D) == pytest.approx(3.0 * af.estimate_rho(D))


def test_estimate_rho_degenerate_cases():
    assert af.estimate_rho([[2.0], [4.0], [0.0]]) == pytest.approx(3.0)  # one label
    assert af.estimate_rho([[1.0, 1.0], [2.0, 2.0]]) == pytest.approx(1.5)  # no gap
    assert af.estimate_rho(np.zeros((3, 2))) == 1.0
    with pytest.raises(ValueError, match="distances"):
        af.estimate_rho(np.zeros((0, 2)))


# ===== bad input (moved from test_bad_input_*.py)
# Errors name the argument (a whole word); a wrong type may be either kind (BAD).
_G9 = GridGraph((3, 3))
_OM9 = Weights.uniform(_G9)
_D93 = np.random.default_rng(1).uniform(0.0, 1.0, (9, 3))
_SIM9 = SimilarityOperator(_OM9, _D93, rho=0.5)
_WB9 = _SIM9.manifold.barycenter()

SIM_CASES = [
    case("weights-str", lambda: SimilarityOperator("om", _D93), BAD, "weights"),
    case("weights-array", lambda: SimilarityOperator(np.eye(9), _D93), BAD, "weights"),
    case("weights-graph", lambda: SimilarityOperator(_G9, _D93), BAD, "weights"),
    case("D-rows", lambda: SimilarityOperator(_OM9, _D93[:8]), ValueError, "distances"),
    case("D-1d", lambda: SimilarityOperator(_OM9, _D93[:, 0]), ValueError, "distances"),
    case("D-3d", lambda: SimilarityOperator(_OM9, _D93[None]), ValueError, "distances"),
    case(
        "D-zero-labels",
        lambda: SimilarityOperator(_OM9, np.zeros((9, 0))),
        ValueError,
        "distances",
    ),
    case("D-nan", lambda: SimilarityOperator(_OM9, nan_array((9, 3))), ValueError, "distances"),
    case("D-inf", lambda: SimilarityOperator(_OM9, inf_array((9, 3))), ValueError, "distances"),
    case("D-str", lambda: SimilarityOperator(_OM9, str_array((9, 3))), BAD, "distances"),
    case("D-complex", lambda: SimilarityOperator(_OM9, complex_array((9, 3))), BAD, "distances"),
    case("D-bool", lambda: SimilarityOperator(_OM9, bool_array((9, 3))), BAD, "distances"),
    case("D-None", lambda: SimilarityOperator(_OM9, None), BAD, "distances"),
    case(
        "D-object-None",
        lambda: SimilarityOperator(_OM9, object_none_array((9, 3))),
        BAD,
        "distances",
    ),
    case("rho-zero", lambda: SimilarityOperator(_OM9, _D93, 0.0), ValueError, "rho"),
    case("rho-negative", lambda: SimilarityOperator(_OM9, _D93, -1.0), ValueError, "rho"),
    case("rho-nan", lambda: SimilarityOperator(_OM9, _D93, NAN), ValueError, "rho"),
    case("rho-inf", lambda: SimilarityOperator(_OM9, _D93, INF), ValueError, "rho"),
    case("rho-str", lambda: SimilarityOperator(_OM9, _D93, "1"), BAD, "rho"),
    case("rho-bool", lambda: SimilarityOperator(_OM9, _D93, True), BAD, "rho"),
    case("rho-None", lambda: SimilarityOperator(_OM9, _D93, None), BAD, "rho"),
    case("rho-complex", lambda: SimilarityOperator(_OM9, _D93, 1j), BAD, "rho"),
    case("likelihood-W-zero", lambda: _SIM9.likelihood(np.eye(9, 3)), ValueError, "W"),
    case("similarity-W-shape", lambda: _SIM9(np.full((9, 2), 0.5)), ValueError, "W"),
    case("similarity-W-nan", lambda: _SIM9.similarity(nan_array((9, 3))), ValueError, "W"),
    case("differential-X-shape", lambda: _SIM9.differential(_WB9, np.ones(9)), ValueError, "X"),
    case("differential-X-str", lambda: _SIM9.differential(_WB9, str_array((9, 3))), BAD, "X"),
]

_PROTOS = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
_FEATS = np.random.default_rng(2).uniform(size=(5, 2))
DIST_CASES = [
    case("protos-empty", lambda: dm(_FEATS, np.zeros((0, 2))), ValueError, "prototypes"),
    case("protos-empty-1d", lambda: dm(_FEATS[:, 0], []), ValueError, "prototypes"),
    case("protos-3d", lambda: dm(_FEATS, np.zeros((1, 1, 2))), ValueError, "prototypes"),
    case("protos-nan", lambda: dm(_FEATS, nan_array((3, 2))), ValueError, "prototypes"),
    case("protos-str", lambda: dm(_FEATS, str_array((3, 2))), BAD, "prototypes"),
    case("protos-complex", lambda: dm(_FEATS, complex_array((3, 2))), BAD, "prototypes"),
    case("feats-nan", lambda: dm(nan_array((5, 2)), _PROTOS), ValueError, "features"),
    case("feats-inf", lambda: dm(inf_array((5, 2)), _PROTOS), ValueError, "features"),
    case("feats-str", lambda: dm("abc", _PROTOS), BAD, "features"),
    case("feats-bool", lambda: dm(bool_array((5, 2)), _PROTOS), BAD, "features"),
    case("feats-channels", lambda: dm(np.ones((5, 3)), _PROTOS), ValueError, "features"),
    case("feats-1d-vs-2ch", lambda: dm(np.ones(5), _PROTOS), ValueError, "features"),
    case(
        "feats-rgb-vs-grey",
        lambda: dm(np.ones((2, 2, 3)), [0.0, 1.0]),
        ValueError,
        "features|prototypes",
    ),
    case("metric-unknown", lambda: dm(_FEATS, _PROTOS, metric="nope"), ValueError, "metric"),
    case("metric-int", lambda: dm(_FEATS, _PROTOS, metric=5), BAD, "metric"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), SIM_CASES)
def test_similarity_rejects(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.parametrize(("fn", "exc", "match"), DIST_CASES)
def test_distance_matrix_rejects(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def test_distance_matrix_degenerate():
    D = dm(_FEATS[:1], _PROTOS[:1])
    np.testing.assert_allclose(D, [[np.linalg.norm(_FEATS[0] - _PROTOS[0])]], rtol=1e-15)
    fc, pc = _FEATS.copy(), _PROTOS.copy()
    D = dm(_FEATS, _PROTOS, metric="sqeuclidean")
    ref = ((_FEATS[:, None, :] - _PROTOS[None]) ** 2).sum(-1)
    np.testing.assert_allclose(D, ref, rtol=1e-13)
    np.testing.assert_array_equal(_FEATS, fc)
    np.testing.assert_array_equal(_PROTOS, pc)
    # zero nodes: an empty (0, J) distance matrix, not an error
    assert dm(np.zeros((0, 2)), _PROTOS).shape == (0, 3)


@pytest.mark.parametrize(
    ("graph", "J"),
    [
        pytest.param(disconnected_graph(), 3, id="disconnected-J3"),
        pytest.param(disconnected_graph(), 1, id="disconnected-J1"),
        pytest.param(Graph.from_adjacency(np.zeros((1, 1))), 3, id="one-node"),
        pytest.param(GridGraph((1, 1)), 1, id="one-node-one-label"),
    ],
)
def test_similarity_on_degenerate_problems(graph, J):
    rng = np.random.default_rng(4)
    om = random_weights(graph)
    D = rng.uniform(0, 2, (graph.n_nodes, J))
    Dc = D.copy()
    S = SimilarityOperator(om, D, rho=0.3)
    dense = om.to_csr().toarray()
    np.testing.assert_allclose(S.S0, ref_softmax(-dense @ D / 0.3), rtol=1e-12)
    W = AssignmentManifold(graph.n_nodes, J).random_point(rng)
    np.testing.assert_allclose(S(W), ref_softmax(dense @ (np.log(W) - D / 0.3)), rtol=1e-12)
    np.testing.assert_array_equal(D, Dc)
    iso = np.flatnonzero(graph.degrees == 1)
    # an isolated node only sees its own data
    np.testing.assert_allclose(S.S0[iso], ref_softmax(-D[iso] / 0.3), rtol=1e-12)
