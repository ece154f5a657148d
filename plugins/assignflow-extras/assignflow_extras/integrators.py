r"""An integrator for the linearized assignment flow based on ``scipy``'s ``expm_multiply``.

The affine ODE :math:`\dot x = Ax + b`, :math:`x(0) = x_0` is solved exactly (up to
round-off) through the augmented operator (MATH.md §4, the paper's eq. 2.24)

.. math::
    \mathcal{A} = \begin{pmatrix} TA & Tb \\ 0 & 0 \end{pmatrix}, \qquad
    \begin{pmatrix} x(T) \\ 1 \end{pmatrix}
        = e^{\mathcal{A}} \begin{pmatrix} x_0 \\ 1 \end{pmatrix} .

Why the transpose matters
-------------------------
:func:`scipy.sparse.linalg.expm_multiply` (Al-Mohy & Higham 2011) chooses its
Taylor degree ``m`` and number of scaling steps ``s`` from the 1-norm of the
operator. For a :class:`~scipy.sparse.linalg.LinearOperator` it estimates that
norm with :func:`~scipy.sparse.linalg.onenormest`, which (Higham–Tisseur block
1-norm estimation) applies the *adjoint* as well: with only ``matvec``,
``expm_multiply`` fails with ``TypeError: 'NoneType' object is not callable``
(checked with scipy 1.17; there is no fallback). A
:class:`~assignflow.LinearIntegrator` receives only ``matvec``, so
:class:`ExpmMultiply` looks for the transpose:

1. the keyword argument ``rmatvec=`` of :meth:`ExpmMultiply.integrate`;
2. an ``rmatvec`` attribute of the ``matvec`` callable;
3. if ``matvec`` is a bound method named ``matvec`` of an object with an
   ``rmatvec`` method (``LinearizedAssignmentFlow.matvec``, i.e.
   ``flow.solve("expm_multiply")``), that method.

With a transpose (and ``tol=None``) the computation is plain
``scipy.sparse.linalg.expm_multiply(𝒜, [x0; 1], traceA=0.0)``, the
reference named in MATH.md. ``traceA=0`` is exact as a *hint*: scipy only uses
the trace for the shift :math:`\mu = \operatorname{tr}/n` of the scaling and
squaring, and a zero shift is always correct (it skips scipy's stochastic trace
estimate and its warning).

Without a transpose (e.g. inside ``LinearizedSequence(inner=ExpmMultiply())``,
which passes a closure), or when a ``tol`` is requested (the public scipy
function has no tolerance argument), the same truncated-Taylor scaling
algorithm (Al-Mohy & Higham 2011, Algorithm 3.2 with :math:`\mu = 0`) runs in
this module:

* with a transpose, ``(m, s)`` minimise ``m·s`` subject to
  ``s ≥ ‖𝒜‖₁ / θ_m`` (their eq. 3.11 with ``p = 1``, a valid bound) with the
  1-norm from :func:`~scipy.sparse.linalg.onenormest`;
* without one, no upper bound of ``‖𝒜‖₁`` can be obtained from products with
  ``𝒜`` alone. A lower bound (``max(T‖b‖₁, ‖𝒜x‖₁/‖x‖₁)`` over a few
  normalised power iterates from a random ±1 vector) times a safety factor 2
  chooses ``s`` such that every sub-step has ``‖h𝒜‖ ≲ 2``; the degree is capped
  at 55 and every sub-step must pass the a-posteriori truncation test of the
  algorithm (two consecutive Taylor terms below ``tol·‖F‖∞``). If a sub-step
  does not, the norm was underestimated: ``s`` is doubled and the solve
  restarted. This is a heuristic (as is the termination test in scipy
  itself), documented as such.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
from scipy.sparse.linalg import LinearOperator, expm_multiply, onenormest

import assignflow as af

__all__ = ["ExpmMultiply"]

Matvec = Callable[[np.ndarray], np.ndarray]

#: Unit roundoff of double precision, the tolerance of scipy's expm_multiply.
_UNIT_ROUNDOFF = 2.0**-53

#: θ_m of Al-Mohy & Higham (2011), table 3.1, for double precision: the Taylor
#: polynomial of degree m approximates exp(hA) to unit roundoff when ‖hA‖₁ ≤ θ_m.
_THETA = {
    5: 2.40e-3, 10: 1.44e-1, 15: 6.41e-1, 20: 1.44, 25: 2.43, 30: 3.54,
    35: 4.7, 40: 6.0, 45: 7.2, 50: 8.5, 55: 9.9,
}  # fmt: skip

_M_MAX = 55
_MAX_DOUBLINGS = 12


def _find_rmatvec(matvec: Matvec, rmatvec: Matvec | None) -> Matvec | None:
    """The transpose product, if it can be found (see the module notes)."""
    if rmatvec is not None:
        return rmatvec
    attr = getattr(matvec, "rmatvec", None)
    if callable(attr):
        return attr
    owner = getattr(matvec, "__self__", None)
    if owner is not None and getattr(matvec, "__name__", None) == "matvec":
        attr = getattr(owner, "rmatvec", None)
        if callable(attr):
            return attr
    return None


def _check_inputs(b: Any, T: Any, x0: Any) -> tuple[np.ndarray, float, np.ndarray | None]:
    b = np.asarray(b, dtype=float)
    if b.ndim != 1 or not np.all(np.isfinite(b)):
        raise ValueError(f"b must be a finite one-dimensional vector, got shape {b.shape}")
    T = float(T)
    if not np.isfinite(T) or T <= 0:
        raise ValueError(f"T must be a finite number > 0, got {T!r}")
    if x0 is not None:
        x0 = np.asarray(x0, dtype=float)
        if x0.shape != b.shape or not np.all(np.isfinite(x0)):
            raise ValueError(f"x0 must be finite with the shape of b {b.shape}, got {x0.shape}")
    return b, T, x0


def _select_params(norm: float) -> tuple[int, int]:
    """``(m, s)`` minimising ``m·s`` with ``s = ceil(norm / θ_m)`` (eq. 3.11, p = 1)."""
    if norm == 0:
        return 0, 1
    best = min(((m, max(1, math.ceil(norm / th))) for m, th in _THETA.items()),
               key=lambda ms: (ms[0] * ms[1], ms[1]))  # fmt: skip
    return best


def _taylor_action(
    mv: Matvec, z: np.ndarray, m: int, s: int, tol: float
) -> tuple[np.ndarray, bool]:
    """``exp(𝒜) z`` by ``s`` steps of a degree-``m`` Taylor polynomial (Algorithm 3.2).

    Returns the result and whether every step passed the truncation test.
    """
    F = z.copy()
    B = z.copy()
    all_passed = True
    for _ in range(s):
        c1 = float(np.abs(B).max(initial=0.0))
        passed = False
        for j in range(m):
            B = mv(B) * (1.0 / (s * (j + 1)))
            c2 = float(np.abs(B).max(initial=0.0))
            F = F + B
            if c1 + c2 <= tol * float(np.abs(F).max(initial=0.0)):
                passed = True
                break
            c1 = c2
        all_passed = all_passed and (passed or m == 0)
        B = F
    return F, all_passed


def _norm_lower_bound(mv: Matvec, n1: int, n_iter: int = 4) -> float:
    """A lower bound of ``‖𝒜‖₁`` from products with ``𝒜`` only (never an upper bound)."""
    e_k = np.zeros(n1)
    e_k[-1] = 1.0
    est = float(np.abs(mv(e_k)).sum())  # ‖𝒜 e_k‖₁ = T‖b‖₁
    x = np.random.default_rng(0).choice(np.array([-1.0, 1.0]), size=n1)
    x[-1] = 0.0
    for _ in range(n_iter):
        nx = float(np.abs(x).sum())
        if nx == 0:
            break
        x = x / nx
        x = mv(x)
        est = max(est, float(np.abs(x).sum()))
    return est


@attrs.frozen
class ExpmMultiply(af.LinearIntegrator):
    r"""LAF integrator using :func:`scipy.sparse.linalg.expm_multiply` on the augmented operator.

    Computes :math:`x(T) = e^{TA}x_0 + T\varphi(TA)b` as the first ``n``
    entries of :math:`e^{\mathcal{A}}[x_0; 1]` with
    :math:`\mathcal{A} = [[TA, Tb], [0, 0]]` (a ``LinearOperator`` of size
    ``n + 1``). Accurate to about unit roundoff; no Krylov dimension or step
    size to tune. The cost grows linearly with :math:`T\|A\|_1`.

    Parameters
    ----------
    tol : float, optional
        Relative tolerance of the Taylor truncation test. ``None`` (default):
        double precision, using scipy's ``expm_multiply`` itself whenever the
        transpose of ``A`` is known. A ``tol`` (or a missing transpose) selects
        the module's own implementation of the same algorithm; see the module
        documentation for how the operator norm is obtained in each case.

    Notes
    -----
    :meth:`integrate` accepts the transpose product as ``rmatvec=``; when it is
    not given it is looked up on ``matvec`` (see the module notes), so
    ``flow.solve("expm_multiply")`` uses scipy directly. The returned
    :class:`~assignflow.IntegrationStats` counts in ``n_matvecs`` every
    application of ``A`` *and* ``Aᵀ`` (the norm estimate included); ``n_steps``
    is the number ``s`` of scaling steps of the built-in path and 1 for the
    scipy call (scipy does not report its ``s``).

    Examples
    --------
    >>> import numpy as np, assignflow as af
    >>> g = af.GridGraph((6, 6))
    >>> S = af.SimilarityOperator(af.Weights.uniform(g), np.random.rand(36, 3), rho=0.5)
    >>> res = af.LinearizedAssignmentFlow(S, T=2.0).solve(ExpmMultiply())
    >>> res.stats.integrator
    'expm_multiply'
    """

    tol: float | None = attrs.field(default=None)

    @tol.validator
    def _check_tol(self, attribute: Any, value: Any) -> None:
        if value is not None and (
            isinstance(value, bool) or not np.isfinite(value) or not 0 < value < 1
        ):
            raise ValueError(f"tol must be None or a number in (0, 1), got {value!r}")

    def integrate(
        self,
        matvec: Matvec,
        b: np.ndarray,
        T: float,
        x0: np.ndarray | None = None,
        *,
        rmatvec: Matvec | None = None,
    ) -> tuple[np.ndarray, af.IntegrationStats]:
        """Return :math:`x(T)` and statistics.

        Parameters
        ----------
        matvec : callable
            ``x -> A x`` on flat vectors of length ``n``.
        b : ndarray, shape (n,)
        T : float
            Horizon ``> 0``.
        x0 : ndarray, shape (n,), optional
            Initial value (zero if omitted). ``b`` and ``x0`` are not modified.
        rmatvec : callable, optional
            ``x -> Aᵀ x``; see the class notes.

        Returns
        -------
        x : ndarray, shape (n,)
        stats : assignflow.IntegrationStats
        """
        b, T, x0 = _check_inputs(b, T, x0)
        n = b.size
        if x0 is None and not np.any(b):
            return np.zeros(n), af.IntegrationStats("expm_multiply", n_steps=0, n_matvecs=0, t=T)
        rmv = _find_rmatvec(matvec, rmatvec)
        count = [0]

        def mv(z: np.ndarray) -> np.ndarray:
            z = np.asarray(z, dtype=float).ravel()
            count[0] += 1
            out = np.empty(n + 1)
            out[:n] = matvec(z[:n])
            if z[n] != 0.0:
                out[:n] += z[n] * b
            out[:n] *= T
            out[n] = 0.0
            return out

        def rmv_aug(z: np.ndarray) -> np.ndarray:
            z = np.asarray(z, dtype=float).ravel()
            count[0] += 1
            out = np.empty(n + 1)
            out[:n] = rmv(z[:n])
            out[:n] *= T
            out[n] = T * float(b @ z[:n])
            return out

        z0 = np.zeros(n + 1)
        if x0 is not None:
            z0[:n] = x0
        z0[n] = 1.0

        if rmv is not None:
            op = LinearOperator((n + 1, n + 1), matvec=mv, rmatvec=rmv_aug, dtype=np.float64)
            if self.tol is None:
                z = expm_multiply(op, z0, traceA=0.0)
                n_steps = 1
            else:
                m, s = _select_params(float(onenormest(op)))
                z, _ = _taylor_action(mv, z0, m, s, self.tol)
                n_steps = s
        else:
            tol = _UNIT_ROUNDOFF if self.tol is None else self.tol
            norm = 2.0 * _norm_lower_bound(mv, n + 1)
            s = max(1, math.ceil(norm / 2.0))
            for _ in range(_MAX_DOUBLINGS):
                z, passed = _taylor_action(mv, z0, _M_MAX, s, tol)
                if passed:
                    break
                s *= 2
            else:
                raise FloatingPointError(
                    "ExpmMultiply: the Taylor series did not converge (the operator norm is "
                    "far larger than estimated); pass rmatvec= so that the 1-norm can be "
                    "estimated, or use ExponentialKrylov"
                )
            n_steps = s
        x = np.asarray(z, dtype=float)[:n].copy()
        if not np.all(np.isfinite(x)):
            raise FloatingPointError("ExpmMultiply produced non-finite values")
        return x, af.IntegrationStats("expm_multiply", n_steps=n_steps, n_matvecs=count[0], t=T)
