"""Integrators of :mod:`assignflow.integrators`: settings, inputs and small systems.

The flows' use of the integrators (convergence orders, substeps, the nonlinear flow)
is tested in ``test_flows.py``; the Krylov kernel itself in ``test_krylov.py``.
Bad input raises a ``ValueError``/``TypeError`` naming the argument (see
``tests/helpers.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
from helpers import BAD, INF, NAN, case, complex_array, nan_array
from scipy.sparse.linalg import LinearOperator, aslinearoperator, expm_multiply

import assignflow as af
from assignflow import Euler, ExponentialKrylov, GeometricEuler, LinearizedSequence


def relerr(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


# --------------------------------------------------------------------------- linear systems
def test_linear_system_with_integrators_directly():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((30, 30)) / 4
    b = rng.standard_normal(30)
    x0 = rng.standard_normal(30)
    b_copy, x0_copy = b.copy(), x0.copy()
    aug = sp.bmat([[sp.csr_matrix(M), b[:, None]], [None, sp.csr_matrix((1, 1))]]).tocsr()
    ref = expm_multiply(2.0 * aug, np.append(x0, 1.0))[:30]
    op = aslinearoperator(M)
    x, _stats = ExponentialKrylov(tol=1e-13).integrate(op, b, 2.0, x0)
    assert relerr(x, ref) < 1e-10
    xe, _ = Euler(step_size=1e-4).integrate(M, b, 2.0, x0)  # a matrix works too
    assert relerr(xe, ref) < 1e-3
    with pytest.warns(DeprecationWarning, match="LinearOperator"):
        xc, _ = ExponentialKrylov(tol=1e-13).integrate(lambda v: M @ v, b, 2.0, x0)
    assert relerr(xc, ref) < 1e-10
    np.testing.assert_array_equal(b, b_copy)
    np.testing.assert_array_equal(x0, x0_copy)


@pytest.mark.parametrize(
    ("integ", "n"),
    [
        pytest.param(Euler(step_size=1e-4), 1, id="euler-n1"),
        pytest.param(Euler(step_size=1e-4), 5, id="euler-n5"),
        pytest.param(ExponentialKrylov(krylov_dim=1), 1, id="krylov-m1-n1"),
        pytest.param(ExponentialKrylov(krylov_dim=3), 5, id="krylov-m3-n5"),
        pytest.param(ExponentialKrylov(krylov_dim=10), 5, id="krylov-m10-n5"),
    ],
)
def test_integrate_small_systems_against_expm(integ, n):
    rng = np.random.default_rng(n)
    A = -np.eye(n) + 0.3 * rng.standard_normal((n, n))
    b = rng.standard_normal(n)
    x0 = rng.standard_normal(n)
    bc, x0c = b.copy(), x0.copy()
    x, stats = integ.integrate(A, b, 0.7, x0)
    aug = np.zeros((n + 1, n + 1))
    aug[:n, :n], aug[:n, n] = A, b
    ref = (sla.expm(0.7 * aug) @ np.append(x0, 1.0))[:n]
    np.testing.assert_allclose(x, ref, atol=1e-3 if isinstance(integ, Euler) else 1e-7)
    np.testing.assert_array_equal(b, bc)
    np.testing.assert_array_equal(x0, x0c)
    assert stats.n_matvecs >= 1


def test_integrators_are_registered():
    for name, cls in [
        ("euler", Euler),
        ("exponential_krylov", ExponentialKrylov),
        ("geometric_euler", GeometricEuler),
        ("linearized_sequence", LinearizedSequence),
    ]:
        assert af.registry.integrators.get(name) is cls
        assert af.registry.integrators.origin(name) == "assignflow"
    assert af.registry.graphs.get("grid") is af.GridGraph


# --------------------------------------------------------------------------- bad settings
@pytest.mark.parametrize(
    "make",
    [
        lambda: Euler(step_size=0),
        lambda: Euler(step_size=-0.1),
        lambda: Euler(step_size=np.nan),
        lambda: ExponentialKrylov(krylov_dim=0),
        lambda: ExponentialKrylov(tol=0),
        lambda: ExponentialKrylov(max_substeps=0),
        lambda: ExponentialKrylov(reorthogonalize="sometimes"),
        lambda: GeometricEuler(step_size=0),
        lambda: GeometricEuler(tol=-1),
        lambda: GeometricEuler(max_steps=0),
        lambda: LinearizedSequence(inner=GeometricEuler()),
    ],
)
def test_bad_integrator_settings(make):
    with pytest.raises((ValueError, TypeError)):
        make()


def test_bad_integrator_settings_messages():
    with pytest.raises(ValueError, match="step_size"):
        Euler(step_size=-1)
    with pytest.raises(ValueError, match="krylov_dim"):
        ExponentialKrylov(krylov_dim=0)
    with pytest.raises(BAD, match="krylov_dim"):
        ExponentialKrylov(krylov_dim=2.5)


# ===== bad input (moved from test_bad_input_*.py)
INTEG_CTOR_CASES = [
    case("Euler-h-zero", lambda: Euler(step_size=0), ValueError, "step_size"),
    case("Euler-h-negative", lambda: Euler(step_size=-0.1), ValueError, "step_size"),
    case("Euler-h-nan", lambda: Euler(step_size=NAN), ValueError, "step_size"),
    case("Euler-h-inf", lambda: Euler(step_size=INF), ValueError, "step_size"),
    case("Euler-h-str", lambda: Euler(step_size="0.1"), BAD, "step_size"),
    case("Euler-h-bool", lambda: Euler(step_size=True), BAD, "step_size"),
    case("Euler-h-None", lambda: Euler(step_size=None), BAD, "step_size"),
    case("EK-m-zero", lambda: ExponentialKrylov(krylov_dim=0), ValueError, "krylov_dim"),
    case("EK-m-negative", lambda: ExponentialKrylov(krylov_dim=-3), ValueError, "krylov_dim"),
    case("EK-m-float", lambda: ExponentialKrylov(krylov_dim=2.5), BAD, "krylov_dim"),
    case("EK-m-bool", lambda: ExponentialKrylov(krylov_dim=True), BAD, "krylov_dim"),
    case("EK-m-str", lambda: ExponentialKrylov(krylov_dim="10"), BAD, "krylov_dim"),
    case("EK-m-None", lambda: ExponentialKrylov(krylov_dim=None), BAD, "krylov_dim"),
    case("EK-tol-zero", lambda: ExponentialKrylov(tol=0.0), ValueError, "tol"),
    case("EK-tol-negative", lambda: ExponentialKrylov(tol=-1e-8), ValueError, "tol"),
    case("EK-tol-nan", lambda: ExponentialKrylov(tol=NAN), ValueError, "tol"),
    case("EK-tol-str", lambda: ExponentialKrylov(tol="x"), BAD, "tol"),
    case("EK-substeps-zero", lambda: ExponentialKrylov(max_substeps=0), ValueError, "max_substeps"),
    case("EK-substeps-bool", lambda: ExponentialKrylov(max_substeps=False), BAD, "max_substeps"),
    case(
        "EK-reorth-bad",
        lambda: ExponentialKrylov(reorthogonalize="x"),
        ValueError,
        "reorthogonalize",
    ),
    case(
        "EK-reorth-None",
        lambda: ExponentialKrylov(reorthogonalize=None),
        BAD,
        "reorthogonalize",
    ),
    case("GE-h-zero", lambda: GeometricEuler(step_size=0.0), ValueError, "step_size"),
    case("GE-h-nan", lambda: GeometricEuler(step_size=NAN), ValueError, "step_size"),
    case("GE-h-str", lambda: GeometricEuler(step_size="a"), BAD, "step_size"),
    case("GE-tol-zero", lambda: GeometricEuler(tol=0.0), ValueError, "tol"),
    case("GE-tol-neg", lambda: GeometricEuler(tol=-1.0), ValueError, "tol"),
    case("GE-steps-zero", lambda: GeometricEuler(max_steps=0), ValueError, "max_steps"),
    case("GE-steps-float", lambda: GeometricEuler(max_steps=10.0), BAD, "max_steps"),
    case("GE-steps-bool", lambda: GeometricEuler(max_steps=True), BAD, "max_steps"),
    case("LS-h-negative", lambda: LinearizedSequence(step_size=-1), ValueError, "step_size"),
    case("LS-steps-zero", lambda: LinearizedSequence(max_steps=0), ValueError, "max_steps"),
    case("LS-inner-str", lambda: LinearizedSequence(inner="euler"), BAD, "inner"),
    case("LS-inner-class", lambda: LinearizedSequence(inner=Euler), BAD, "inner"),
    case("LS-inner-flow", lambda: LinearizedSequence(inner=GeometricEuler()), BAD, "inner"),
    case("LS-inner-None", lambda: LinearizedSequence(inner=None), BAD, "inner"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), INTEG_CTOR_CASES)
def test_integrator_settings_rejected(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


_ZERO_OP = LinearOperator((4, 4), matvec=np.zeros_like, rmatvec=np.zeros_like)
_B4 = np.ones(4)
_LINEAR = [("Euler", Euler(0.1)), ("EK", ExponentialKrylov())]

INTEGRATE_CASES = []
for _name, _integ in _LINEAR:
    INTEGRATE_CASES += [
        case(f"{_name}-T-zero", lambda i=_integ: i.integrate(_ZERO_OP, _B4, 0.0), ValueError, "T"),
        case(f"{_name}-T-neg", lambda i=_integ: i.integrate(_ZERO_OP, _B4, -1.0), ValueError, "T"),
        case(f"{_name}-T-nan", lambda i=_integ: i.integrate(_ZERO_OP, _B4, NAN), ValueError, "T"),
        case(f"{_name}-T-str", lambda i=_integ: i.integrate(_ZERO_OP, _B4, "1"), BAD, "T"),
        case(f"{_name}-T-bool", lambda i=_integ: i.integrate(_ZERO_OP, _B4, True), BAD, "T"),
        case(
            f"{_name}-b-2d",
            lambda i=_integ: i.integrate(_ZERO_OP, np.ones((2, 2)), 1.0),
            ValueError,
            "b",
        ),
        case(
            f"{_name}-b-nan",
            lambda i=_integ: i.integrate(_ZERO_OP, nan_array(4), 1.0),
            ValueError,
            "b",
        ),
        case(f"{_name}-b-str", lambda i=_integ: i.integrate(_ZERO_OP, "abc", 1.0), BAD, "b"),
        case(
            f"{_name}-b-complex",
            lambda i=_integ: i.integrate(_ZERO_OP, complex_array(4), 1.0),
            BAD,
            "b",
        ),
        case(
            f"{_name}-x0-shape",
            lambda i=_integ: i.integrate(_ZERO_OP, _B4, 1.0, np.ones(3)),
            ValueError,
            "x0",
        ),
        case(
            f"{_name}-x0-nan",
            lambda i=_integ: i.integrate(_ZERO_OP, _B4, 1.0, nan_array(4)),
            ValueError,
            "x0",
        ),
        case(
            f"{_name}-operator-not-an-operator",
            lambda i=_integ: i.integrate(5, _B4, 1.0),
            BAD,
            "operator",
        ),
    ]


@pytest.mark.parametrize(("fn", "exc", "match"), INTEGRATE_CASES)
def test_integrate_rejects(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.parametrize(
    "b", [pytest.param([1.0] * 4, id="list"), pytest.param(np.ones(4, dtype=int), id="int")]
)
@pytest.mark.parametrize(("name", "integ"), _LINEAR, ids=[n for n, _ in _LINEAR])
def test_integrate_accepts_list_and_int_b(name, integ, b):
    # legitimate input: for A = 0, x(1) = b
    x, _ = integ.integrate(_ZERO_OP, b, 1.0)
    np.testing.assert_allclose(x, np.ones(4), rtol=1e-12)
