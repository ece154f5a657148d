"""Property tests for :mod:`assignflow.geometry` (docs/math.md §2)."""

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
    inf_array,
    nan_array,
    object_none_array,
    str_array,
)
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import softmax as sp_softmax
from strategies import (
    PROPERTY,
    bounded_arrays,
    manifold_shapes,
    points,
    ref_softmax,
    tangent_vectors,
)

from assignflow import AssignmentManifold


@st.composite
def manifolds(draw, **kw):
    n, j = draw(manifold_shapes(**kw))
    return AssignmentManifold(n, j)


@st.composite
def point_and_tangents(draw, n_tangent: int = 1, bound: float = 20.0, tbound: float = 20.0):
    M = draw(manifolds())
    W = draw(points(M.shape, bound=bound))
    Vs = [draw(tangent_vectors(M.shape, bound=tbound)) for _ in range(n_tangent)]
    return (M, W, *Vs)


@st.composite
def point_and_arrays(draw, n_arrays: int = 1, bound: float = 20.0, abound: float = 20.0):
    M = draw(manifolds())
    W = draw(points(M.shape, bound=bound))
    Xs = [draw(bounded_arrays(M.shape, abound)) for _ in range(n_arrays)]
    return (M, W, *Xs)


def _dot(a, b) -> float:
    return float(np.sum(a * b))


# --------------------------------------------------------------------------- membership
@PROPERTY
@given(point_and_arrays())
def test_lift_returns_points(args):
    M, W, V = args
    assert M.belongs(M.lift(W, V))


@PROPERTY
@given(point_and_tangents(bound=2.0, tbound=1.0))
def test_exp_returns_points(args):
    M, W, V = args
    V = V * (10.0 * W.min())  # |V / W| <= 10: nothing underflows
    Q = M.exp(W, V)
    assert Q.shape == M.shape
    assert M.belongs(Q)


@PROPERTY
@given(manifolds(), st.integers(0, 2**32 - 1), st.floats(0.05, 5.0))
def test_random_point_and_barycenter_belong(M, seed, concentration):
    assert M.belongs(M.random_point(seed, concentration=concentration))
    B = M.barycenter()
    assert M.belongs(B)
    np.testing.assert_array_equal(B, np.full(M.shape, 1.0 / M.n_labels))


@PROPERTY
@given(manifolds(), st.integers(0, 2**32 - 1), st.floats(0.01, 100.0))
def test_random_tangent_is_tangent(M, seed, scale):
    V = M.random_tangent(seed, scale=scale)
    assert V.shape == M.shape
    assert M.is_tangent(V)
    if M.n_labels > 1:
        assert np.any(V != 0)


@PROPERTY
@given(point_and_arrays())
def test_tangent_results_are_tangent(args):
    M, W, X = args
    assert M.is_tangent(M.project_tangent(X))
    assert M.is_tangent(M.replicator(W, X))
    Q = M.lift(W, X)
    assert M.is_tangent(M.lift_inverse(W, Q))


def test_belongs_and_is_tangent_reject():
    M = AssignmentManifold(2, 3)
    B = M.barycenter()
    assert not M.belongs(B + 0.1)  # rows do not sum to 1
    assert not M.belongs(np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]]))  # a zero entry
    assert not M.belongs(np.array([[1.2, -0.2, 0.0], [0.2, 0.3, 0.5]]))
    assert not M.belongs(np.full((3, 2), 0.5))  # wrong shape
    assert not M.belongs(np.array([[np.nan, 0.5, 0.5], [0.2, 0.3, 0.5]]))
    assert not M.is_tangent(np.ones((2, 3)))
    assert not M.is_tangent(np.zeros((3, 2)))
    assert M.is_tangent(np.zeros((2, 3)))


# --------------------------------------------------------------------------- Π0
@PROPERTY
@given(point_and_arrays(n_arrays=2))
def test_projection_idempotent_symmetric_orthogonal(args):
    M, _, X, Y = args
    P = M.project_tangent(X)
    scale = 1.0 + np.abs(X).max() * X.size
    np.testing.assert_allclose(M.project_tangent(P), P, atol=1e-12 * scale)
    assert _dot(P, Y) == pytest.approx(_dot(X, M.project_tangent(Y)), abs=1e-11 * scale**2)
    # x − Π0 x is constant on each row (the complement of T0 is span{1} per row)
    R = X - P
    assert np.all(np.ptp(R, axis=-1) <= 1e-12 * scale)
    np.testing.assert_allclose(R[:, 0], X.mean(axis=-1), atol=1e-12 * scale)


@PROPERTY
@given(point_and_tangents())
def test_projection_fixes_tangent_vectors(args):
    M, _, V = args
    np.testing.assert_allclose(M.project_tangent(V), V, atol=1e-12 * (1 + np.abs(V).max()))


# --------------------------------------------------------------------------- R_W
@PROPERTY
@given(point_and_arrays(n_arrays=2))
def test_replicator_symmetric_psd_kernel_image(args):
    M, W, X, Y = args
    RX, RY = M.replicator(W, X), M.replicator(W, Y)
    scale = 1.0 + float(np.sum(np.abs(X) * np.abs(Y)))
    assert _dot(RX, Y) == pytest.approx(_dot(X, RY), abs=1e-12 * scale)
    xx = _dot(X, RX)
    assert xx >= -1e-12 * (1.0 + float(np.sum(W * X * X)))
    np.testing.assert_allclose(M.replicator(W, np.ones(M.shape)), 0.0, atol=1e-14)
    assert M.is_tangent(RX)


@PROPERTY
@given(point_and_arrays())
def test_replicator_matches_explicit_matrix(args):
    M, W, X = args
    RX = M.replicator(W, X)
    for i in range(M.n_nodes):
        p = W[i]
        R = np.diag(p) - np.outer(p, p)
        np.testing.assert_allclose(RX[i], R @ X[i], rtol=1e-12, atol=1e-12 * (1 + np.abs(X).max()))


def test_replicator_example():
    M = AssignmentManifold(1, 2)
    W = np.array([[0.25, 0.75]])
    X = np.array([[1.0, 0.0]])
    # R_p x = p ⊙ x − <p, x> p = [0.25, 0] − 0.25 [0.25, 0.75]
    np.testing.assert_allclose(M.replicator(W, X), [[0.1875, -0.1875]])


# --------------------------------------------------------------------------- lift
@PROPERTY
@given(point_and_arrays(n_arrays=2, abound=10.0))
def test_lift_zero_and_composition(args):
    M, W, U, V = args
    np.testing.assert_allclose(M.lift(W, np.zeros(M.shape)), W, rtol=1e-12, atol=1e-300)
    lhs = M.lift(M.lift(W, U), V)
    rhs = M.lift(W, U + V)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-9, atol=1e-14)


@PROPERTY
@given(point_and_arrays(), bounded_arrays((12,), 50.0))
def test_lift_invariant_under_row_constants(args, c):
    M, W, V = args
    shifted = V + c[: M.n_nodes, None]
    np.testing.assert_allclose(M.lift(W, shifted), M.lift(W, V), rtol=1e-9, atol=1e-14)


@PROPERTY
@given(point_and_tangents())
def test_lift_inverse_inverts_lift(args):
    M, W, V = args
    np.testing.assert_allclose(M.lift_inverse(W, M.lift(W, V)), V, rtol=1e-9, atol=1e-9)


@PROPERTY
@given(st.data())
def test_lift_inverts_lift_inverse(data):
    M = data.draw(manifolds())
    W = data.draw(points(M.shape))
    Q = data.draw(points(M.shape))
    V = M.lift_inverse(W, Q)
    assert M.is_tangent(V)
    np.testing.assert_allclose(M.lift(W, V), Q, rtol=1e-9, atol=1e-15)


def test_lift_example():
    M = AssignmentManifold(1, 2)
    W = np.array([[0.5, 0.5]])
    V = np.array([[np.log(3.0), 0.0]])
    np.testing.assert_allclose(M.lift(W, V), [[0.75, 0.25]])
    W = np.array([[0.2, 0.8]])
    # exp_p(v) = p ⊙ e^v / <p, e^v>: [0.2·2, 0.8·1] / 1.2
    np.testing.assert_allclose(M.lift(W, [[np.log(2.0), 0.0]]), [[1 / 3, 2 / 3]])


@PROPERTY
@given(point_and_arrays(abound=10.0))
def test_lift_equals_exp_of_replicator(args):
    """exp_W = Exp_W ∘ R_W."""
    M, W, V = args
    np.testing.assert_allclose(M.lift(W, V), M.exp(W, M.replicator(W, V)), rtol=1e-8, atol=1e-14)


@PROPERTY
@given(point_and_arrays(n_arrays=2, bound=5.0, abound=3.0))
def test_differential_of_lift(args):
    """d/dt lift(W, U + tV)|_0 = R_{lift(W, U)} V (central differences)."""
    M, W, U, V = args
    h = 1e-5
    fd = (M.lift(W, U + h * V) - M.lift(W, U - h * V)) / (2 * h)
    exact = M.replicator(M.lift(W, U), V)
    np.testing.assert_allclose(fd, exact, rtol=1e-6, atol=1e-8 * (1 + np.abs(V).max()))


# --------------------------------------------------------------------------- barycenter
@PROPERTY
@given(st.data())
def test_barycenter_identities(data):
    M = data.draw(manifolds())
    V = data.draw(bounded_arrays(M.shape, 20.0))
    B = M.barycenter()
    np.testing.assert_allclose(M.lift(B, V), sp_softmax(V, axis=-1), rtol=1e-10, atol=1e-15)
    T = V / 20.0  # bounded so J·V/B stays moderate
    np.testing.assert_allclose(
        M.exp(B, T), sp_softmax(M.n_labels * T, axis=-1), rtol=1e-10, atol=1e-15
    )


def test_exp_example():
    M = AssignmentManifold(1, 2)
    W = np.array([[0.25, 0.75]])
    V = np.array([[0.25, -0.25]])
    # Exp_p(v) = p ⊙ e^{v/p} / <p, e^{v/p}>
    e = W * np.exp(V / W)
    np.testing.assert_allclose(M.exp(W, V), e / e.sum())


# --------------------------------------------------------------------------- Fisher–Rao
@PROPERTY
@given(point_and_tangents(n_tangent=2, tbound=5.0))
def test_inner_symmetric_positive_explicit(args):
    M, W, U, V = args
    assert M.inner(W, U, V) == pytest.approx(M.inner(W, V, U), rel=1e-12, abs=1e-12)
    assert M.inner(W, U, V) == pytest.approx(float(np.sum(U * V / W)), rel=1e-12, abs=1e-9)
    if np.any(U != 0):
        assert M.inner(W, U, U) > 0
        assert M.norm(W, U) == pytest.approx(np.sqrt(np.sum(U * U / W)), rel=1e-12)
    else:
        assert M.norm(W, U) == 0.0


def test_inner_example():
    M = AssignmentManifold(1, 2)
    W = np.array([[0.25, 0.75]])
    U = np.array([[1.0, -1.0]])
    assert M.inner(W, U, U) == pytest.approx(4.0 + 4.0 / 3.0)


# --------------------------------------------------------------------------- stability
@PROPERTY
@given(st.data(), st.sampled_from([1e3, 1e5, 1e6, 1e12]))
def test_lift_huge_inputs_are_finite(data, magnitude):
    M = data.draw(manifolds())
    W = data.draw(points(M.shape))
    V = data.draw(bounded_arrays(M.shape, 1.0)) * magnitude
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Q = M.lift(W, V)
    assert np.all(np.isfinite(Q))
    assert np.all(Q >= 0)
    np.testing.assert_allclose(Q.sum(axis=-1), 1.0, atol=1e-12)


@pytest.mark.parametrize("value", [1e6, -1e6, 1e300, -1e300])
def test_lift_of_huge_equal_values_at_barycenter(value):
    M = AssignmentManifold(3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        B = M.lift(M.barycenter(), np.full(M.shape, value))
    np.testing.assert_allclose(B, 0.25, rtol=1e-15)


@pytest.mark.parametrize("value", [1e6, -1e6, 1e12])
def test_lift_of_huge_equal_values_is_base_point(value):
    M = AssignmentManifold(3, 4)
    W = M.random_point(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Q = M.lift(W, np.full(M.shape, value))
    # log W is added to V before the max shift, so about |V|·eps of log W is lost
    np.testing.assert_allclose(Q, W, rtol=10 * abs(value) * np.finfo(float).eps)


@pytest.mark.parametrize("value", [1e20, -1e300])
def test_lift_of_astronomic_row_constant_is_base_point(value):
    M = AssignmentManifold(3, 4)
    W = M.random_point(0)
    np.testing.assert_allclose(M.lift(W, np.full(M.shape, value)), W, rtol=1e-6)


def test_lift_huge_spread_gives_vertex():
    M = AssignmentManifold(2, 3)
    V = np.array([[1e6, 0.0, -1e6], [-1e6, 2e6, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Q = M.lift(M.barycenter(), V)
    np.testing.assert_array_equal(Q, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


# --------------------------------------------------------------------------- entropy, round
@given(manifolds())
@PROPERTY
def test_entropy_barycenter_and_integral(M):
    assert M.entropy(M.barycenter()) == pytest.approx(np.log(M.n_labels), abs=1e-12)
    labels = np.arange(M.n_nodes) % M.n_labels
    W = ref_softmax(50.0 * np.eye(M.n_labels)[labels])
    assert M.belongs(W)
    assert 0.0 <= M.entropy(W) < 1e-15
    np.testing.assert_array_equal(M.round(W), labels)


@PROPERTY
@given(st.data())
def test_entropy_between_zero_and_log_j(data):
    M = data.draw(manifolds())
    W = data.draw(points(M.shape))
    rows = -(W * np.log(W)).sum(axis=-1)
    assert M.entropy(W) == pytest.approx(rows.mean(), rel=1e-12, abs=1e-15)
    assert -1e-15 <= M.entropy(W) <= np.log(M.n_labels) + 1e-12


@PROPERTY
@given(st.data())
def test_round_is_label_of_lifted_one_hot(data):
    M = data.draw(manifolds())
    labels = data.draw(
        st.lists(st.integers(0, M.n_labels - 1), min_size=M.n_nodes, max_size=M.n_nodes)
    )
    W = data.draw(points(M.shape, bound=1.0))
    Q = M.lift(W, 10.0 * np.eye(M.n_labels)[labels])  # +10 beats any ratio below e^10
    np.testing.assert_array_equal(M.round(Q), labels)


def test_round_ties_go_to_smallest_label():
    M = AssignmentManifold(2, 3)
    np.testing.assert_array_equal(M.round(M.barycenter()), [0, 0])


# --------------------------------------------------------------------------- batches
def test_batched_inputs_act_per_item():
    M = AssignmentManifold(3, 4)
    rng = np.random.default_rng(1)
    W = np.stack([M.random_point(rng) for _ in range(2)])
    V = rng.standard_normal((2, 3, 4))
    out = M.lift(W, V)
    for b in range(2):
        np.testing.assert_allclose(out[b], M.lift(W[b], V[b]))
    assert M.belongs(out)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("n", [0, -1, -5])
@pytest.mark.parametrize("field", ["n_nodes", "n_labels"])
def test_nonpositive_sizes_rejected(field, n):
    args = {"n_nodes": 3, "n_labels": 2, field: n}
    with pytest.raises(ValueError, match=field):
        AssignmentManifold(**args)


@pytest.mark.parametrize("n", [2.5, "3", True])
def test_non_integer_sizes_rejected(n):
    with pytest.raises((TypeError, ValueError)):
        AssignmentManifold(n, 3)


M23 = AssignmentManifold(2, 3)
_B = M23.barycenter()
_X = np.arange(6.0).reshape(2, 3)


def _calls():
    """(method, args, index of the argument to spoil, its name)."""
    return [
        ("project_tangent", [_X], 0, "V"),
        ("replicator", [_B, _X], 0, "W"),
        ("replicator", [_B, _X], 1, "X"),
        ("lift", [_B, _X], 0, "W"),
        ("lift", [_B, _X], 1, "V"),
        ("lift_inverse", [_B, _B], 0, "W"),
        ("lift_inverse", [_B, _B], 1, "Q"),
        ("exp", [_B, _X], 0, "W"),
        ("exp", [_B, _X], 1, "V"),
        ("inner", [_B, _X, _X], 0, "W"),
        ("inner", [_B, _X, _X], 1, "U"),
        ("inner", [_B, _X, _X], 2, "V"),
        ("entropy", [_B], 0, "W"),
        ("round", [_B], 0, "W"),
    ]


@pytest.mark.parametrize(("method", "args", "pos", "name"), _calls())
@pytest.mark.parametrize(
    "bad", [np.full((3, 2), 0.5), np.full((2, 4), 0.25), np.full(6, 1 / 3), np.float64(0.5)]
)
def test_wrong_shape_names_argument(method, args, pos, name, bad):
    args = list(args)
    args[pos] = bad
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        getattr(M23, method)(*args)


@pytest.mark.parametrize(("method", "args", "pos", "name"), _calls())
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_rejected(method, args, pos, name, value):
    args = [np.array(a, dtype=float) for a in args]
    args[pos][1, 2] = value
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        getattr(M23, method)(*args)


@pytest.mark.parametrize(("method", "args", "pos", "name"), _calls())
@pytest.mark.parametrize("bad", ["abc", None, [["a", "b", "c"], ["d", "e", "f"]]])
def test_non_numeric_is_type_error(method, args, pos, name, bad):
    args = list(args)
    args[pos] = bad
    with pytest.raises(TypeError, match=rf"\b{name}\b"):
        getattr(M23, method)(*args)


@pytest.mark.parametrize(
    ("method", "args", "pos", "name"),
    [c for c in _calls() if c[3] in ("W", "Q") and c[0] not in ("entropy", "round")],
)
@pytest.mark.parametrize("entry", [0.0, -0.1])
def test_non_positive_points_rejected(method, args, pos, name, entry):
    args = [np.array(a, dtype=float) for a in args]
    args[pos][0] = [1.0 - entry, entry, 0.0] if entry < 0 else [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        getattr(M23, method)(*args)


@pytest.mark.parametrize(("method", "args", "pos", "name"), _calls())
def test_inputs_not_modified(method, args, pos, name):
    rng = np.random.default_rng(7)
    W = M23.random_point(rng)
    X = rng.standard_normal((2, 3))
    arrays = [W if a is _B else X.copy() for a in args]
    before = [a.copy() for a in arrays]
    getattr(M23, method)(*arrays)
    for a, b in zip(arrays, before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_results_do_not_alias_inputs():
    W = M23.random_point(3)
    V = np.zeros((2, 3))
    Q = M23.lift(W, V)
    Q[...] = 0.0
    assert M23.belongs(W)
    P = M23.project_tangent(V)
    P[...] = 1.0
    np.testing.assert_array_equal(V, 0.0)


def test_shape_and_dim():
    M = AssignmentManifold(5, 3)
    assert M.shape == (5, 3)
    assert M.dim == 10
    assert AssignmentManifold(4, 1).dim == 0


def test_single_label_is_legal():
    M = AssignmentManifold(3, 1)
    W = M.barycenter()
    np.testing.assert_array_equal(W, 1.0)
    np.testing.assert_array_equal(M.lift(W, [[5.0], [-3.0], [0.0]]), 1.0)
    np.testing.assert_array_equal(M.project_tangent([[5.0], [-3.0], [0.0]]), 0.0)
    assert M.entropy(W) == 0.0


# ===== bad input (moved from test_bad_input_*.py)
# Errors name the argument (a whole word); a wrong type may be either kind (BAD).
_M9 = AssignmentManifold(9, 3)
_WB = _M9.barycenter()
_Z93 = np.zeros((9, 3))

GEOM_CASES = [
    case("n_nodes-zero", lambda: AssignmentManifold(0, 3), ValueError, "n_nodes"),
    case("n_labels-zero", lambda: AssignmentManifold(3, 0), ValueError, "n_labels"),
    case("n_nodes-negative", lambda: AssignmentManifold(-1, 3), ValueError, "n_nodes"),
    case("n_nodes-float", lambda: AssignmentManifold(2.5, 3), BAD, "n_nodes"),
    case("n_labels-float64", lambda: AssignmentManifold(3, np.float64(2)), BAD, "n_labels"),
    case("n_nodes-bool", lambda: AssignmentManifold(True, 3), BAD, "n_nodes"),
    case("n_labels-bool", lambda: AssignmentManifold(3, False), BAD, "n_labels"),
    case("n_nodes-str", lambda: AssignmentManifold("3", 3), BAD, "n_nodes"),
    case("n_labels-None", lambda: AssignmentManifold(3, None), BAD, "n_labels"),
    case("lift-W-shape", lambda: _M9.lift(np.full((9, 2), 0.5), _Z93), ValueError, "W"),
    case("lift-W-zero", lambda: _M9.lift(np.eye(9, 3), _Z93), ValueError, "W"),
    case("lift-W-negative", lambda: _M9.lift(-_WB, _Z93), ValueError, "W"),
    case("lift-W-nan", lambda: _M9.lift(nan_array((9, 3)), _Z93), ValueError, "W"),
    case("lift-W-str", lambda: _M9.lift(str_array((9, 3)), _Z93), BAD, "W"),
    case("lift-W-1d", lambda: _M9.lift(np.full(3, 1 / 3), _Z93), ValueError, "W"),
    case("lift-V-nan", lambda: _M9.lift(_WB, nan_array((9, 3))), ValueError, "V"),
    case("lift-V-inf", lambda: _M9.lift(_WB, inf_array((9, 3))), ValueError, "V"),
    case("lift-V-shape", lambda: _M9.lift(_WB, np.zeros((3, 9))), ValueError, "V"),
    case("lift-V-complex", lambda: _M9.lift(_WB, complex_array((9, 3))), BAD, "V"),
    case("lift-V-bool", lambda: _M9.lift(_WB, bool_array((9, 3))), BAD, "V"),
    case("lift-V-None", lambda: _M9.lift(_WB, None), BAD, "V"),
    case("exp-W-zero", lambda: _M9.exp(np.eye(9, 3), _Z93), ValueError, "W"),
    case("exp-V-str", lambda: _M9.exp(_WB, str_array((9, 3))), BAD, "V"),
    case("exp-V-nan", lambda: _M9.exp(_WB, nan_array((9, 3))), ValueError, "V"),
    case("replicator-X-shape", lambda: _M9.replicator(_WB, np.ones(9)), ValueError, "X"),
    case("replicator-X-nan", lambda: _M9.replicator(_WB, nan_array((9, 3))), ValueError, "X"),
    case("replicator-W-neg", lambda: _M9.replicator(-_WB, _Z93), ValueError, "W"),
    case("lift_inverse-Q-zero", lambda: _M9.lift_inverse(_WB, np.eye(9, 3)), ValueError, "Q"),
    case("lift_inverse-Q-str", lambda: _M9.lift_inverse(_WB, "Q"), BAD, "Q"),
    case("inner-U-shape", lambda: _M9.inner(_WB, np.ones((9, 2)), _Z93), ValueError, "U"),
    case("inner-V-nan", lambda: _M9.inner(_WB, _Z93, nan_array((9, 3))), ValueError, "V"),
    case("inner-W-zero", lambda: _M9.inner(np.eye(9, 3), _Z93, _Z93), ValueError, "W"),
    case("norm-V-complex", lambda: _M9.norm(_WB, complex_array((9, 3))), BAD, "V"),
    case("project-V-str", lambda: _M9.project_tangent("abc"), BAD, "V"),
    case("project-V-shape", lambda: _M9.project_tangent(np.ones((9,))), ValueError, "V"),
    case("entropy-W-nan", lambda: _M9.entropy(nan_array((9, 3))), ValueError, "W"),
    case("round-W-shape", lambda: _M9.round(np.ones((9, 4))), ValueError, "W"),
    case("random_point-conc-zero", lambda: _M9.random_point(0, 0.0), ValueError, "concentration"),
    case("random_point-conc-neg", lambda: _M9.random_point(0, -1.0), ValueError, "concentration"),
    case("random_point-conc-nan", lambda: _M9.random_point(0, NAN), ValueError, "concentration"),
    case("random_point-conc-str", lambda: _M9.random_point(0, "a"), BAD, "concentration"),
    # sklearn's check_random_state would say "... cannot be used to seed ...": also fine
    case("random_point-rng-str", lambda: _M9.random_point("seed"), BAD, "rng|seed"),
    case("random_tangent-rng-float", lambda: _M9.random_tangent(1.5), BAD, "rng|seed"),
    case("random_tangent-scale-nan", lambda: _M9.random_tangent(0, NAN), ValueError, "scale"),
    case("random_tangent-scale-inf", lambda: _M9.random_tangent(0, INF), ValueError, "scale"),
    case("random_tangent-scale-str", lambda: _M9.random_tangent(0, "1"), BAD, "scale"),
    case("belongs-atol-neg", lambda: _M9.belongs(_WB, atol=-1.0), ValueError, "atol"),
    case("is_tangent-atol-nan", lambda: _M9.is_tangent(_Z93, atol=NAN), ValueError, "atol"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), GEOM_CASES)
def test_manifold_rejects(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.parametrize(
    "bad",
    ["abc", None, complex_array((9, 3)), object_none_array((9, 3)), nan_array((9, 3))],
)
def test_manifold_predicates_answer_false_for_garbage(bad):
    assert _M9.belongs(bad) is False
    assert _M9.is_tangent(bad) is False


@pytest.mark.parametrize(("I", "J"), [(1, 1), (1, 4), (5, 1), (2, 3)], ids=lambda v: str(v))
def test_manifold_degenerate_sizes(I, J):
    Mf = AssignmentManifold(I, J)
    rng = np.random.default_rng(7)
    W = Mf.random_point(rng)
    V = rng.standard_normal((I, J))
    Wc, Vc = W.copy(), V.copy()
    assert Mf.belongs(W)
    lifted = Mf.lift(W, V)
    np.testing.assert_allclose(lifted, ref_softmax(np.log(W) + V), rtol=1e-12)
    np.testing.assert_allclose(Mf.exp(W, V), ref_softmax(np.log(W) + V / W), rtol=1e-12)
    P = Mf.project_tangent(V)
    np.testing.assert_allclose(P, V - V.mean(axis=1, keepdims=True), atol=1e-15)
    R = Mf.replicator(W, V)
    np.testing.assert_allclose(R, W * V - (W * V).sum(axis=1, keepdims=True) * W, atol=1e-14)
    np.testing.assert_allclose(Mf.lift_inverse(W, lifted), P, atol=1e-10)
    assert np.isfinite(Mf.inner(W, P, P)) and Mf.inner(W, P, P) >= 0
    assert np.isfinite(Mf.entropy(W))
    assert Mf.is_tangent(Mf.random_tangent(rng))
    np.testing.assert_array_equal(W, Wc)
    np.testing.assert_array_equal(V, Vc)
    if J == 1:
        np.testing.assert_array_equal(Mf.barycenter(), 1.0)
        np.testing.assert_array_equal(lifted, 1.0)
        assert Mf.entropy(W) == 0.0 and Mf.dim == 0


@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.integers(0, 2**32 - 1),
    st.sampled_from([np.float32, np.float64]),
)
def test_row_kernels_match_numpy_reductions(n, J, seed, dtype):
    from assignflow._simplex import log_softmax, project_tangent, row_max, row_sum, softmax

    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, J)) * rng.choice([1e-3, 1.0, 30.0])).astype(dtype)
    np.testing.assert_array_equal(row_max(x), x.max(axis=1))
    # a row's spread enters the exponentials' rounding: exp(z (1 + eps)) = exp(z) (1 + z eps)
    tol = 8 * float(np.finfo(dtype).eps) * (J + float(np.ptp(x)))
    np.testing.assert_allclose(row_sum(x), x.sum(axis=1), rtol=tol, atol=tol * np.abs(x).max())
    np.testing.assert_allclose(
        row_sum(x, np.float64), x.astype(np.float64).sum(axis=1), rtol=1e-12, atol=1e-300
    )
    ref = sp_softmax(x.astype(np.float64), axis=1)
    tiny = 10 * float(np.finfo(dtype).tiny)  # entries below it underflow in dtype
    np.testing.assert_allclose(softmax(x), ref, rtol=tol, atol=tiny)
    np.testing.assert_allclose(np.exp(log_softmax(x)), ref, rtol=tol, atol=tiny)
    p = project_tangent(x)
    np.testing.assert_allclose(p, x - x.mean(axis=1, keepdims=True), atol=tol * np.abs(x).max())


def test_row_max_propagates_nan_like_max():
    from assignflow._simplex import row_max

    x = np.arange(12.0).reshape(3, 4)
    x[1, 2] = np.nan
    x[2, 0] = np.nan
    r = row_max(x)
    assert r[0] == 3.0 and np.isnan(r[1]) and np.isnan(r[2])
