"""Tests for :mod:`assignflow._krylov` against independent dense references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

import assignflow as af
from assignflow._krylov import (
    ArnoldiResult,
    KrylovInfo,
    arnoldi,
    expm_krylov,
    phi_krylov_small,
    solve_linear_ode,
)

MODES = ("always", "auto", "never")


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_blas():
    # The kernels call LAPACK on tiny matrices once per trial step; on a busy
    # machine multithreaded OpenBLAS turns each such call into milliseconds
    # of thread wake-ups, which would dominate this file's runtime.
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional speed-up only
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _matvec(M: np.ndarray):
    return lambda x: M @ x


def _random_matrix(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """Matrix with O(1) norm whose spectrum stays near the left half-plane."""
    G = rng.standard_normal((n, n)) / math.sqrt(n)
    if kind == "symmetric":
        return 0.5 * (G + G.T) - 1.0 * np.eye(n)
    if kind == "nonsymmetric":
        return G - 1.2 * np.eye(n)
    if kind == "nonnormal":
        return np.triu(G, 1) * 2.0 + np.diag(-rng.uniform(0.1, 2.0, n))
    raise AssertionError(kind)


def _dense_ode_reference(M: np.ndarray, b: np.ndarray, T: float) -> np.ndarray:
    """x(T) for x' = M x + b, x(0) = 0, from the augmented-matrix exponential."""
    n = M.shape[0]
    aug = np.zeros((n + 1, n + 1))
    aug[:n, :n] = T * M
    aug[:n, n] = T * b
    return scipy.linalg.expm(aug)[:n, n]


def _expm_multiply_reference(M: np.ndarray, b: np.ndarray, x0: np.ndarray, T: float) -> np.ndarray:
    """x(T) with nonzero x0 from scipy's expm_multiply on [[M, b], [0, 0]]."""
    n = M.shape[0]
    aug = scipy.sparse.csr_array(np.block([[M, b[:, None]], [np.zeros((1, n + 1))]]))
    y0 = np.append(x0, 1.0)
    return scipy.sparse.linalg.expm_multiply(T * aug, y0)[:n]


def _relerr(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


class _CountingMatvec:
    def __init__(self, M: np.ndarray) -> None:
        self.M = M
        self.calls = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.M @ x


def _forbidden_matvec(x: np.ndarray) -> np.ndarray:
    raise AssertionError("matvec must not be called")


# --------------------------------------------------------------------------
# arnoldi
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("n", "m", "seed"), [(20, 8, 0), (60, 15, 1), (150, 25, 2)])
def test_arnoldi_orthonormal_and_arnoldi_relation(mode, n, m, seed):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    v = rng.standard_normal(n)
    res = arnoldi(_matvec(M), v, m, reorthogonalize=mode)

    assert isinstance(res, ArnoldiResult)
    assert res.k == m and not res.breakdown and res.n_matvecs == m
    assert res.Q.shape == (m + 1, n) and res.H.shape == (m + 1, m)
    assert res.Q.flags.c_contiguous
    assert res.beta == pytest.approx(np.linalg.norm(v), rel=1e-14)
    np.testing.assert_allclose(res.Q[0], v / np.linalg.norm(v), rtol=0, atol=1e-15)

    Q, H = res.Q, res.H
    assert np.linalg.norm(Q @ Q.T - np.eye(m + 1)) < 1e-12
    assert np.array_equal(np.tril(H, -2), np.zeros_like(H)), "H must be upper Hessenberg"
    assert np.all(np.diag(H, -1) > 0)
    lhs = M @ Q[:m].T
    assert np.linalg.norm(lhs - Q.T @ H) <= 1e-13 * np.linalg.norm(M)


@pytest.mark.parametrize("mode", ["always", "auto"])
def test_arnoldi_reorthogonalization_on_graded_spectrum(mode):
    # Widely spread eigenvalues make single CGS cancel heavily; the second
    # pass (always or DGKS-triggered) must keep the basis orthonormal.
    n = 300
    d = np.logspace(0, 10, n)
    res = arnoldi(lambda x: d * x, np.ones(n), 25, reorthogonalize=mode)
    Q = res.Q
    assert np.linalg.norm(Q @ Q.T - np.eye(Q.shape[0])) < 1e-12
    lhs = d[:, None] * Q[: res.k].T
    assert np.linalg.norm(lhs - Q.T @ res.H) <= 1e-13 * d.max()


@pytest.mark.parametrize("mode", MODES)
def test_arnoldi_happy_breakdown_invariant_subspace(mode):
    rng = np.random.default_rng(3)
    n = 40
    d = np.linspace(-3.0, 2.0, n)
    v = np.zeros(n)
    idx = [4, 17, 31]
    v[idx] = rng.standard_normal(3)
    res = arnoldi(lambda x: d * x, v, 10, reorthogonalize=mode)

    assert res.breakdown and res.k == 3 and res.n_matvecs == 3
    assert res.Q.shape == (3, n)
    assert res.H.shape == (4, 3)
    assert np.all(res.H[3] == 0.0)
    Q = res.Q
    assert np.linalg.norm(Q @ Q.T - np.eye(3)) < 1e-12
    assert np.linalg.norm(d[:, None] * Q.T - Q.T @ res.H[:3]) < 1e-13
    ritz = np.sort(np.linalg.eigvals(res.H[:3]).real)
    np.testing.assert_allclose(ritz, np.sort(d[idx]), atol=1e-12)


def test_arnoldi_m_larger_than_n_spans_whole_space():
    rng = np.random.default_rng(4)
    n = 6
    M = rng.standard_normal((n, n))
    res = arnoldi(_matvec(M), rng.standard_normal(n), 10)
    assert res.breakdown and res.k == n
    assert res.Q.shape == (n, n) and res.H.shape == (n + 1, n)
    np.testing.assert_allclose(res.Q @ res.Q.T, np.eye(n), atol=1e-13)
    np.testing.assert_allclose(res.Q.T @ res.H[:n] @ res.Q, M, atol=1e-12)


def test_arnoldi_zero_operator_and_identity_alias():
    v = np.arange(1.0, 6.0)
    res = arnoldi(lambda x: np.zeros_like(x), v, 4)
    assert res.breakdown and res.k == 1
    assert np.all(res.H == 0.0) and res.H.shape == (2, 1)

    # A matvec returning its (basis-row) argument must not corrupt the basis.
    res = arnoldi(lambda x: x, v, 4)
    assert res.breakdown and res.k == 1
    np.testing.assert_allclose(res.H, [[1.0], [0.0]], atol=1e-15)
    np.testing.assert_allclose(res.Q[0], v / np.linalg.norm(v))


def test_arnoldi_matvec_reusing_its_output_buffer():
    rng = np.random.default_rng(5)
    n = 30
    M = rng.standard_normal((n, n))
    v = rng.standard_normal(n)
    buf = np.empty(n)

    def matvec_inplace(x):
        np.matmul(M, x, out=buf)
        return buf

    res_buf = arnoldi(matvec_inplace, v, 8)
    res_ref = arnoldi(_matvec(M), v, 8)
    np.testing.assert_allclose(res_buf.Q, res_ref.Q, atol=1e-14)
    np.testing.assert_allclose(res_buf.H, res_ref.H, atol=1e-13)


def test_arnoldi_explicit_breakdown_tol():
    rng = np.random.default_rng(6)
    M = rng.standard_normal((10, 10))
    v = rng.standard_normal(10)
    res = arnoldi(_matvec(M), v, 5, breakdown_tol=1e6)
    assert res.breakdown and res.k == 1 and res.Q.shape == (1, 10)
    assert res.H[1, 0] == 0.0
    res = arnoldi(_matvec(M), v, 5, breakdown_tol=0.0)
    assert not res.breakdown and res.k == 5


def test_arnoldi_does_not_modify_start_vector():
    rng = np.random.default_rng(7)
    M = rng.standard_normal((12, 12))
    v = rng.standard_normal(12)
    v_copy = v.copy()
    res = arnoldi(_matvec(M), v, 4)
    np.testing.assert_array_equal(v, v_copy)
    assert not np.shares_memory(res.Q, v)


@pytest.mark.parametrize("scale", [1e-250, 1e-160, 1e160, 1e250])
def test_arnoldi_start_vector_whose_sum_of_squares_leaves_float64(scale):
    # the squares of 1e-250 underflow to zero, those of 1e250 overflow: the basis is
    # the same as for the unit-scaled vector (the adjoint of a long horizon gets there)
    rng = np.random.default_rng(3)
    M = rng.standard_normal((10, 10))
    v = rng.standard_normal(10)
    ref = arnoldi(_matvec(M), v, 4)
    res = arnoldi(_matvec(M), v * scale, 4)
    np.testing.assert_allclose(res.Q, ref.Q, rtol=1e-12, atol=1e-12)
    assert math.isclose(res.beta, ref.beta * scale, rel_tol=1e-12)


@pytest.mark.parametrize(
    ("v", "m", "kwargs", "match"),
    [
        (np.zeros(5), 3, {}, "zero"),
        (np.ones((2, 3)), 3, {}, r"1-D.*\(2, 3\)"),
        (np.array([1.0, np.nan, 2.0]), 3, {}, "non-finite"),
        (np.array([1.0, np.inf]), 3, {}, "non-finite"),
        (np.array([1.0 + 1j, 2.0]), 3, {}, "real"),
        (np.array([], dtype=float), 3, {}, "zero"),
    ],
)
def test_arnoldi_bad_inputs(v, m, kwargs, match):
    with pytest.raises(ValueError, match=match):
        arnoldi(lambda x: 2.0 * x, v, m, **kwargs)


def test_arnoldi_stop_ends_the_run_where_it_says():
    rng = np.random.default_rng(41)
    M = _random_matrix(rng, 40, "nonsymmetric")
    v = rng.standard_normal(40)
    seen = []

    def stop(H):
        seen.append(H.shape)
        return H.shape[1] == 4

    res = arnoldi(_matvec(M), v, 12, stop=stop)
    # called after steps 1..4 with the (j + 1, j) Hessenberg matrix, never at j = m
    assert seen == [(2, 1), (3, 2), (4, 3), (5, 4)]
    assert res.k == 4 and not res.breakdown and res.n_matvecs == 4
    ref = arnoldi(_matvec(M), v, 4)
    np.testing.assert_array_equal(res.Q, ref.Q)
    np.testing.assert_array_equal(res.H, ref.H)
    never = arnoldi(_matvec(M), v, 6, stop=lambda H: False)
    assert never.k == 6 and never.Q.shape == (7, 40)
    with pytest.raises(TypeError, match="stop"):
        arnoldi(_matvec(M), v, 6, stop=3)


@pytest.mark.parametrize("stop_at", [None, 4])
def test_arnoldi_without_last_vector_and_with_matvec_out(stop_at):
    # keep_last=False drops only q_{k+1} (H keeps its row); matvec_out writes A x into
    # the basis: both give the basis of the plain run
    rng = np.random.default_rng(43)
    M = _random_matrix(rng, 40, "nonsymmetric")
    v = rng.standard_normal(40)
    stop = None if stop_at is None else (lambda H: H.shape[1] == stop_at)
    ref = arnoldi(_matvec(M), v, 6, stop=stop)
    seen = []

    def into(x, out):
        seen.append(out)
        assert not np.shares_memory(x, out)
        np.matmul(M, x, out=out)

    for kwargs in (
        {"keep_last": False},
        {"matvec_out": True},
        {"keep_last": False, "matvec_out": True},
    ):
        mv = into if kwargs.get("matvec_out") else _matvec(M)
        res = arnoldi(mv, v, 6, stop=stop, **kwargs)
        assert res.k == ref.k and res.n_matvecs == ref.n_matvecs and not res.breakdown
        rows = ref.k if kwargs.get("keep_last", True) is False else ref.k + 1
        assert res.Q.shape == (rows, 40)
        np.testing.assert_array_equal(res.Q, ref.Q[:rows])
        np.testing.assert_array_equal(res.H, ref.H)
    assert len(seen) == 2 * ref.k
    # on breakdown there is no last vector either way
    e = np.zeros(40)
    e[0] = 1.0
    brk = arnoldi(lambda x: 2.0 * x, e, 5, keep_last=False)
    assert brk.breakdown and brk.k == 1 and brk.Q.shape == (1, 40)


@pytest.mark.parametrize("kind", ["symmetric", "nonsymmetric", "nonnormal"])
def test_solve_linear_ode_ends_arnoldi_at_the_needed_dimension(kind):
    # m is the largest dimension: a short step needs fewer vectors, a tighter tolerance
    # more, and the result meets the tolerance either way
    rng = np.random.default_rng(7)
    M = _random_matrix(rng, 80, kind)
    b = rng.standard_normal(80)
    ref = _dense_ode_reference(M, b, 0.5)
    dims = []
    for tol in (1e-4, 1e-8, 1e-12):
        counter = _CountingMatvec(M)
        x, info = solve_linear_ode(counter, b, 0.5, m=40, tol=tol)
        assert info.n_substeps == 1 and info.krylov_dim < 40
        assert info.n_matvecs == counter.calls == info.krylov_dim
        assert _relerr(x, ref) <= 10 * tol
        dims.append(info.krylov_dim)
    assert dims[0] < dims[1] < dims[2]


def test_arnoldi_bad_matvec_outputs():
    v = np.ones(4)
    with pytest.raises(ValueError, match=r"shape \(3,\).*\(4,\)"):
        arnoldi(lambda x: x[:3], v, 2)
    with pytest.raises(ValueError, match="shape"):
        arnoldi(lambda x: np.float64(1.0), v, 2)
    with pytest.raises(ValueError, match="real"):
        arnoldi(lambda x: x.astype(complex), v, 2)
    with pytest.raises(FloatingPointError, match="non-finite"):
        arnoldi(lambda x: np.full_like(x, np.nan), v, 2)
    with pytest.raises(FloatingPointError, match="non-finite"):
        arnoldi(lambda x: np.where(x > 0, np.inf, x), v, 2)


# --------------------------------------------------------------------------
# phi_krylov_small
# --------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 5, 12])
@pytest.mark.parametrize("t", [0.01, 0.7, 3.0])
def test_phi_krylov_small_invertible(k, t):
    rng = np.random.default_rng(10 + k)
    H = np.triu(rng.standard_normal((k, k)), -1) + 2.0 * np.eye(k)
    tH = t * H
    ref = scipy.linalg.solve(tH, scipy.linalg.expm(tH) - np.eye(k))[:, 0]
    # normwise: the small entries of a badly scaled vector are fixed only to a few
    # digits by any double-precision evaluation (both sides agree with a 40-digit
    # reference to 1e-13 of the largest entry at t = 3, k = 12, but to 1e-9 entrywise)
    err = np.abs(phi_krylov_small(H, t) - ref).max()
    assert err <= 1e-12 * np.abs(ref).max() + 1e-15


def test_phi_krylov_small_scalar_formula():
    for z in [-30.0, -1.0, 1e-9, 0.5, 4.0]:
        (val,) = phi_krylov_small(np.array([[z]]), 1.0)
        assert val == pytest.approx(math.expm1(z) / z, rel=1e-11)


def test_phi_krylov_small_singular():
    np.testing.assert_array_equal(phi_krylov_small(np.zeros((4, 4)), 2.5), np.eye(4)[0])
    # Singular, non-nilpotent Hessenberg matrix: compare with the Taylor
    # series phi(tH) = sum_j (tH)^j / (j+1)!, which converges fast here.
    H = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.3], [0.0, 0.4, 0.0]])
    H[:, 2] = H[:, 0] + H[:, 1]
    assert abs(np.linalg.det(H)) < 1e-14
    t = 0.8
    term = np.eye(3)[0]
    ref = np.zeros(3)
    for j in range(40):
        ref += term / math.factorial(j + 1)
        term = t * H @ term
    np.testing.assert_allclose(phi_krylov_small(H, t), ref, rtol=1e-13)


def test_phi_krylov_small_t_zero_and_bad_inputs():
    np.testing.assert_array_equal(phi_krylov_small(np.ones((3, 3)), 0.0), [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"square.*\(3, 2\)"):
        phi_krylov_small(np.ones((3, 2)), 1.0)
    with pytest.raises(ValueError, match="square"):
        phi_krylov_small(np.ones(3), 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        phi_krylov_small(np.array([[np.nan]]), 1.0)


# --------------------------------------------------------------------------
# solve_linear_ode
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["symmetric", "nonsymmetric", "nonnormal"])
@pytest.mark.parametrize(("n", "T", "seed"), [(20, 0.5, 0), (77, 2.0, 1), (200, 1.0, 2)])
def test_solve_linear_ode_matches_dense_expm(kind, n, T, seed):
    rng = np.random.default_rng(100 + seed)
    M = _random_matrix(rng, n, kind)
    b = rng.standard_normal(n)
    x, info = solve_linear_ode(_matvec(M), b, T, tol=1e-12)
    assert isinstance(info, KrylovInfo)
    assert _relerr(x, _dense_ode_reference(M, b, T)) <= 1e-10
    assert info.n_substeps >= 1 and 1 <= info.krylov_dim <= 10
    assert info.error_estimate >= 0.0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("kind", "n", "seed"), [("nonsymmetric", 50, 0), ("nonnormal", 120, 1)])
def test_solve_linear_ode_with_x0_matches_expm_multiply(mode, kind, n, seed):
    rng = np.random.default_rng(200 + seed)
    M = _random_matrix(rng, n, kind)
    b = rng.standard_normal(n)
    x0 = rng.standard_normal(n)
    T = 1.5
    counter = _CountingMatvec(M)
    x, info = solve_linear_ode(counter, b, T, x0, tol=1e-12, reorthogonalize=mode)
    assert _relerr(x, _expm_multiply_reference(M, b, x0, T)) <= 1e-10
    assert info.n_matvecs == counter.calls


@pytest.mark.parametrize("kind", ["symmetric", "nonsymmetric"])
def test_solve_linear_ode_long_horizon_substeps(kind):
    rng = np.random.default_rng(300)
    n = 100
    M = 3.0 * _random_matrix(rng, n, kind)
    T = 50.0 / np.linalg.norm(M, 2)
    b = rng.standard_normal(n)
    x0 = rng.standard_normal(n)
    x, info = solve_linear_ode(_matvec(M), b, T, x0, m=10, tol=1e-12)
    assert info.n_substeps > 1
    assert info.n_matvecs <= info.n_substeps * 11
    assert _relerr(x, _expm_multiply_reference(M, b, x0, T)) <= 1e-10
    x_zero, _ = solve_linear_ode(_matvec(M), b, T, tol=1e-12)
    assert _relerr(x_zero, _dense_ode_reference(M, b, T)) <= 1e-10


@pytest.mark.parametrize(("m", "tol"), [(1, 1e-2), (2, 1e-4), (3, 1e-6)])
def test_solve_linear_ode_small_krylov_dim_many_substeps(m, tol):
    # Starting from x0 = 0 with a tiny Krylov space exercises the error-test
    # floor: without it, the relative test against ||x_new|| ~ h ||b|| can
    # never be met for m = 1.
    rng = np.random.default_rng(301)
    n = 40
    M = _random_matrix(rng, n, "nonsymmetric")
    b = rng.standard_normal(n)
    x, info = solve_linear_ode(_matvec(M), b, 2.0, m=m, tol=tol, max_substeps=5000)
    assert info.n_substeps > 5 and info.krylov_dim == m
    assert _relerr(x, _dense_ode_reference(M, b, 2.0)) <= 10 * tol


def test_solve_linear_ode_tolerance_is_respected_roughly():
    rng = np.random.default_rng(302)
    n = 80
    M = 2.0 * _random_matrix(rng, n, "nonsymmetric")
    b = rng.standard_normal(n)
    ref = _dense_ode_reference(M, b, 4.0)
    errors = []
    for tol in (1e-4, 1e-7, 1e-10):
        x, _ = solve_linear_ode(_matvec(M), b, 4.0, m=6, tol=tol)
        errors.append(_relerr(x, ref))
        assert errors[-1] <= 10 * tol
    assert errors[0] > errors[2]


def test_solve_linear_ode_zero_data_returns_zeros_without_matvecs():
    b = np.zeros(7)
    x, info = solve_linear_ode(_forbidden_matvec, b, 3.0)
    np.testing.assert_array_equal(x, np.zeros(7))
    assert info.n_matvecs == 0 and info.n_substeps == 0 and info.krylov_dim == 0
    x, info = solve_linear_ode(_forbidden_matvec, b, 3.0, np.zeros(7))
    np.testing.assert_array_equal(x, np.zeros(7))
    assert info.n_matvecs == 0


def test_solve_linear_ode_zero_x0_saves_residual_matvec():
    rng = np.random.default_rng(303)
    M = _random_matrix(rng, 30, "nonsymmetric")
    b = rng.standard_normal(30)
    counter = _CountingMatvec(M)
    x, info = solve_linear_ode(counter, b, 0.1, tol=1e-6)
    # one sub-step, no residual matvec: the calls are the Arnoldi steps alone
    assert info.n_substeps == 1 and info.n_matvecs == counter.calls == info.krylov_dim <= 10
    assert _relerr(x, _dense_ode_reference(M, b, 0.1)) <= 1e-6


def test_solve_linear_ode_T_zero_returns_copy_of_x0():
    x0 = np.arange(4.0)
    x, info = solve_linear_ode(_forbidden_matvec, np.ones(4), 0.0, x0)
    np.testing.assert_array_equal(x, x0)
    assert not np.shares_memory(x, x0)
    assert info == KrylovInfo(0, 0, 0, 0.0, False, 0)
    x, _ = solve_linear_ode(_forbidden_matvec, np.ones(4), 0)
    np.testing.assert_array_equal(x, np.zeros(4))


def test_solve_linear_ode_exact_on_breakdown():
    n = 50
    lam = -np.linspace(0.5, 20.0, n)
    b = np.zeros(n)
    b[[3, 20, 41]] = [1.0, -2.0, 0.5]
    T = 30.0  # T * ||A|| = 600: only the breakdown makes one step enough
    x, info = solve_linear_ode(lambda x: lam * x, b, T, tol=1e-12)
    exact = np.expm1(T * lam) / lam * b
    np.testing.assert_allclose(x, exact, rtol=1e-12, atol=1e-15)
    assert info.breakdown and info.n_substeps == 1 and info.n_rejected == 0
    assert info.n_matvecs == 3 and info.krylov_dim == 3
    assert info.error_estimate == 0.0


def test_solve_linear_ode_scalar_problem():
    x, info = solve_linear_ode(lambda x: -2.0 * x, np.array([3.0]), 1.7, np.array([0.5]))
    exact = math.exp(-3.4) * 0.5 + 3.0 * (1 - math.exp(-3.4)) / 2.0
    assert x[0] == pytest.approx(exact, rel=1e-13)
    assert info.breakdown and info.n_substeps == 1


def test_solve_linear_ode_stationary_state():
    a = np.array([2.0, 4.0, 0.5])
    b = np.array([2.0, -4.0, 1.0])
    x0 = -b / a  # A x0 + b == 0 exactly
    x, info = solve_linear_ode(lambda x: a * x, b, 10.0, x0)
    np.testing.assert_array_equal(x, x0)
    assert info.n_matvecs == 1 and info.n_substeps == 0


def test_solve_linear_ode_does_not_modify_inputs():
    rng = np.random.default_rng(304)
    M = _random_matrix(rng, 25, "nonsymmetric")
    b = rng.standard_normal(25)
    x0 = rng.standard_normal(25)
    b_copy, x0_copy = b.copy(), x0.copy()
    x, _ = solve_linear_ode(_matvec(M), b, 3.0, x0, m=6, tol=1e-10)
    np.testing.assert_array_equal(b, b_copy)
    np.testing.assert_array_equal(x0, x0_copy)
    assert not np.shares_memory(x, x0) and not np.shares_memory(x, b)
    # Read-only inputs must work, which also proves nothing writes to them.
    b.setflags(write=False)
    x0.setflags(write=False)
    solve_linear_ode(_matvec(M), b, 3.0, x0, m=6)
    solve_linear_ode(_matvec(M), b, 3.0, m=6)
    y, _ = expm_krylov(_matvec(M), x0, 3.0, m=6)
    assert not np.shares_memory(y, x0)


def test_solve_linear_ode_error_estimate_tracks_true_error():
    rng = np.random.default_rng(305)
    n = 60
    for kind, m, T in [("symmetric", 4, 0.5), ("nonsymmetric", 5, 0.8), ("nonnormal", 3, 0.3)]:
        M = _random_matrix(rng, n, kind)
        b = rng.standard_normal(n)
        x, info = solve_linear_ode(_matvec(M), b, T, m=m, tol=1e-2)
        assert info.n_substeps == 1 and info.n_rejected == 0
        true_err = np.linalg.norm(x - _dense_ode_reference(M, b, T))
        assert true_err > 0
        # The phi_2 leading-term estimate is sharp for one step (ratio ~ 1).
        assert 0.3 <= info.error_estimate / true_err <= 3.0


def test_solve_linear_ode_rejection_reuses_basis():
    rng = np.random.default_rng(306)
    n = 60
    M = 4.0 * _random_matrix(rng, n, "nonsymmetric")
    b = rng.standard_normal(n)
    counter = _CountingMatvec(M)
    x, info = solve_linear_ode(counter, b, 5.0, m=8, tol=1e-10)
    assert info.n_rejected >= 1
    # first step: at most 8 Arnoldi matvecs; later steps: 1 residual + at most 8 Arnoldi
    # (a rejected step reuses its basis: no matvecs of its own)
    assert counter.calls == info.n_matvecs <= 8 + 9 * (info.n_substeps - 1)
    assert _relerr(x, _dense_ode_reference(M, b, 5.0)) <= 1e-8


def test_solve_linear_ode_max_substeps_exceeded():
    rng = np.random.default_rng(307)
    M = 5.0 * _random_matrix(rng, 30, "nonsymmetric")
    b = rng.standard_normal(30)
    with pytest.raises(RuntimeError, match="max_substeps=3"):
        solve_linear_ode(_matvec(M), b, 20.0, m=3, tol=1e-10, max_substeps=3)


def test_solve_linear_ode_step_collapse_raises():
    # With m = 2 the local error is O(h^3): tol = 1e-200 would need h ~ 1e-100.
    rng = np.random.default_rng(308)
    M = _random_matrix(rng, 30, "nonsymmetric")
    b = rng.standard_normal(30)
    with pytest.raises(RuntimeError, match="step size collapsed"):
        solve_linear_ode(_matvec(M), b, 1.0, m=2, tol=1e-200)


def test_solve_linear_ode_overflow_raises_instead_of_nan():
    with pytest.raises((FloatingPointError, RuntimeError)):
        solve_linear_ode(lambda x: 1000.0 * x, np.ones(3), 10.0)
    with pytest.raises((FloatingPointError, RuntimeError)):
        expm_krylov(lambda x: 1000.0 * x[::-1], np.arange(4.0), 10.0)


@pytest.mark.parametrize("bad_call", [1, 3])
def test_solve_linear_ode_nonfinite_matvec_raises(bad_call):
    rng = np.random.default_rng(309)
    M = _random_matrix(rng, 6, "nonsymmetric")
    calls = {"n": 0}

    def bad(x):
        calls["n"] += 1
        return np.full_like(x, np.nan) if calls["n"] >= bad_call else M @ x

    with pytest.raises(FloatingPointError, match="non-finite"):
        solve_linear_ode(bad, np.ones(6), 1.0, np.arange(6.0))


def test_solve_linear_ode_wrong_matvec_shape_raises():
    with pytest.raises(ValueError, match=r"shape \(5, 1\)"):
        solve_linear_ode(lambda x: x[:, None], np.ones(5), 1.0, np.ones(5))


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((np.ones(3), -1.0), {}, "`T`"),
        ((np.ones(3), np.nan), {}, "`T`"),
        ((np.ones(3), np.inf), {}, "`T`"),
        ((np.ones((3, 1)), 1.0), {}, r"`b`.*\(3, 1\)"),
        ((np.array([1.0, np.nan, 0.0]), 1.0), {}, "`b`.*non-finite"),
        ((np.ones(3), 1.0, np.ones(4)), {}, r"`x0`.*\(4,\).*\(3,\)"),
        ((np.ones(3), 1.0, np.array([0.0, np.inf, 1.0])), {}, "`x0`.*non-finite"),
    ],
)
def test_solve_linear_ode_validation(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        solve_linear_ode(_forbidden_matvec, *args, **kwargs)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 12),
    m=st.integers(4, 8),
    T=st.floats(0.05, 3.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_solve_linear_ode_property_small_dense(n, m, T, seed):
    rng = np.random.default_rng(seed)
    M = _random_matrix(rng, n, "nonsymmetric")
    b = rng.standard_normal(n)
    x0 = rng.standard_normal(n)
    x, info = solve_linear_ode(_matvec(M), b, T, x0, m=m, tol=1e-11)
    ref = _expm_multiply_reference(M, b, x0, T)
    assert np.all(np.isfinite(x))
    assert np.linalg.norm(x - ref) <= 1e-8 * max(np.linalg.norm(ref), 1e-300)
    assert info.krylov_dim <= min(m, n)


# --------------------------------------------------------------------------
# expm_krylov
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["symmetric", "nonsymmetric", "nonnormal"])
@pytest.mark.parametrize("t", [0.3, 2.0, -0.7])
def test_expm_krylov_matches_dense(kind, t):
    rng = np.random.default_rng(400)
    n = 90
    M = 2.0 * _random_matrix(rng, n, kind)
    v = rng.standard_normal(n)
    y, info = expm_krylov(_matvec(M), v, t, tol=1e-12)
    assert _relerr(y, scipy.linalg.expm(t * M) @ v) <= 1e-10
    assert info.n_matvecs >= 1


def test_expm_krylov_trivial_cases():
    v = np.array([1.0, -2.0, 3.0])
    y, info = expm_krylov(_forbidden_matvec, v, 0.0)
    np.testing.assert_array_equal(y, v)
    assert not np.shares_memory(y, v)
    y, info = expm_krylov(_forbidden_matvec, np.zeros(3), 5.0)
    np.testing.assert_array_equal(y, np.zeros(3))
    assert info.n_matvecs == 0
    d = np.array([-1.0, 0.5, 2.0])
    y, info = expm_krylov(lambda x: d * x, v, 1.3)
    np.testing.assert_allclose(y, np.exp(1.3 * d) * v, rtol=1e-13)
    with pytest.raises(ValueError, match="`t`"):
        expm_krylov(_forbidden_matvec, v, np.nan)
    with pytest.raises(ValueError, match="`v`"):
        expm_krylov(_forbidden_matvec, v[None], 1.0)


@pytest.mark.parametrize("mode", ["always", "auto", "never"])
def test_arnoldi_blocked_threaded_gram_schmidt(mode):
    """Large n: the column-blocked, threaded CGS path keeps Q orthonormal and A Q = Q H."""
    import scipy.sparse as sp

    import assignflow as af

    n, m = 120_000, 8
    rng = np.random.default_rng(7)
    d = rng.uniform(-1, 1, (4, n))
    M = sp.diags(d, [0, 1, -37, 500], shape=(n, n), format="csr")
    v = rng.standard_normal(n)
    old = af.get_num_threads()
    try:
        af.set_num_threads(2)
        res = arnoldi(lambda x: M @ x, v, m, reorthogonalize=mode)
    finally:
        af.set_num_threads(old)
    Q, H, k = res.Q, res.H, res.k
    gram = Q @ Q.T
    tol = 1e-8 if mode == "never" else 1e-13
    assert np.abs(gram - np.eye(gram.shape[0])).max() < tol
    AQ = np.column_stack([M @ Q[i] for i in range(k)])
    np.testing.assert_allclose(AQ, Q.T @ H, atol=1e-11)


def test_reuse_workspace_serves_freed_bases_and_keeps_live_ones():
    from assignflow._krylov import _empty, reuse_workspace

    shape = (4, 1 << 18)  # 4 MiB of float32: above the work space's minimum
    outside = _empty(shape, np.float32)
    assert outside.base is None  # no work space: a plain array
    with reuse_workspace():
        a = _empty(shape, np.float32)
        a_buf = id(a.base)  # an id: a reference would keep the buffer in use
        b = _empty(shape, np.float32)
        assert id(b.base) != a_buf  # a is alive: not handed out twice
        del a
        c = _empty(shape, np.float32)
        assert id(c.base) == a_buf  # freed: reused
        view = c[1:]
        del c
        d = _empty(shape, np.float32)
        assert id(d.base) != a_buf  # a view keeps it alive
        with reuse_workspace():  # nested blocks share the outer one's buffers
            del view, d
            e = _empty((2, 1 << 18), np.float64)  # same bytes, another dtype and shape
            assert id(e.base) == a_buf and e.shape == (2, 1 << 18) and e.dtype == np.float64
        del b, e
    f = _empty(shape, np.float32)
    assert f.base is None


def test_solve_linear_ode_with_matvec_into_matches_plain_matvec():
    rng = np.random.default_rng(4)
    n = 60
    A = rng.standard_normal((n, n)) / np.sqrt(n)
    b = rng.standard_normal(n)
    calls = []

    def into(x, out=None):
        calls.append(out is not None)
        y = A @ x
        if out is None:
            return y
        out[...] = y
        return out

    ref, info_ref = solve_linear_ode(lambda x: A @ x, b, 1.5, m=8)
    x, info = solve_linear_ode(lambda x: A @ x, b, 1.5, m=8, matvec_into=into)
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-14 * np.abs(ref).max())
    assert info.n_matvecs == info_ref.n_matvecs and any(calls)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_flow_operator_writes_its_products_into_out(dtype):
    rng = np.random.default_rng(1)
    g = af.GridGraph((5, 6))
    om = af.Weights.normalized(g, rng.uniform(0.1, 1, g.nnz))
    sim = af.SimilarityOperator(om, rng.uniform(0, 1, (g.n_nodes, 4)), rho=0.3, dtype=dtype)
    flow = af.LinearizedAssignmentFlow(sim, T=2.0)
    op = flow.aslinearoperator()
    x = rng.standard_normal(flow.size).astype(dtype)
    out = np.empty_like(x)
    r = op.matvec_into(x, out=out)
    assert np.shares_memory(r, out)
    np.testing.assert_array_equal(out, flow.matvec(x))
    np.testing.assert_array_equal(op.matvec(x), flow.matvec(x))
    np.testing.assert_array_equal(op.rmatvec(x), flow.rmatvec(x))
    assert op.dtype == np.dtype(dtype) and op.shape == (flow.size, flow.size)


def test_reuse_workspace_is_not_shared_with_other_threads():
    import contextvars
    import threading

    from assignflow._krylov import _empty, reuse_workspace

    shape = (1 << 20,)
    seen = []
    with reuse_workspace():
        a = _empty(shape, np.float32)
        a_id = id(a.base)
        del a
        ctx = contextvars.copy_context()  # the work space's variable included
        t = threading.Thread(target=lambda: seen.append(ctx.run(_empty, shape, np.float32)))
        t.start()
        t.join()
        assert seen[0].base is None  # a plain array in the other thread
        assert id(_empty(shape, np.float32).base) == a_id  # still this thread's
