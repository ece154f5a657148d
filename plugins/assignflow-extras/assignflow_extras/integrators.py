r"""An integrator for the linearized assignment flow based on ``scipy``'s ``expm_multiply``.

The affine ODE :math:`\dot x = Ax + b`, :math:`x(0) = x_0` is solved exactly (up to
round-off) through the augmented operator (the paper's eq. 2.24)

.. math::
    \mathcal{A} = \begin{pmatrix} TA & Tb \\ 0 & 0 \end{pmatrix}, \qquad
    \begin{pmatrix} x(T) \\ 1 \end{pmatrix}
        = e^{\mathcal{A}} \begin{pmatrix} x_0 \\ 1 \end{pmatrix} .

:func:`scipy.sparse.linalg.expm_multiply` (Al-Mohy & Higham 2011) chooses its
Taylor degree ``m`` and number of scaling steps ``s`` from the 1-norm of the
operator, which it estimates with :func:`~scipy.sparse.linalg.onenormest`; that
estimator (Higham–Tisseur block 1-norm estimation) applies the *transpose* as
well. A :class:`~assignflow.LinearIntegrator` receives ``A`` as a
:class:`~scipy.sparse.linalg.LinearOperator` with ``matvec`` and ``rmatvec``
(``flow.solve`` passes ``flow.aslinearoperator()``), so both products of
:math:`\mathcal{A}` are available: :math:`\mathcal{A}[x;\xi] = T[Ax + b\xi; 0]`
and :math:`\mathcal{A}^\top[x;\xi] = T[A^\top x; \langle b, x\rangle]`.

With ``tol=None`` the computation is plain
``scipy.sparse.linalg.expm_multiply(𝒜, [x0; 1], traceA=0.0)``. ``traceA=0`` is
exact as a *hint*: scipy only uses the trace for the shift :math:`\mu =
\operatorname{tr}/n` of the scaling and squaring, and a zero shift is always
correct (it skips scipy's stochastic trace estimate and its warning). With a
``tol`` (the public scipy function has no tolerance argument) the same
truncated-Taylor scaling algorithm (Al-Mohy & Higham 2011, Algorithm 3.2 with
:math:`\mu = 0`) runs in this module, with ``(m, s)`` minimising ``m·s``
subject to ``s ≥ ‖𝒜‖₁ / θ_m`` (their eq. 3.11 with ``p = 1``) and the 1-norm
from :func:`~scipy.sparse.linalg.onenormest`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
from scipy.sparse.linalg import LinearOperator, aslinearoperator, expm_multiply, onenormest

import assignflow as af

__all__ = ["ExpmMultiply", "augmented_operator"]

#: Largest number of scaling steps ``s`` (each one costs up to 55 operator products).
MAX_STEPS = 100_000

#: θ_m of Al-Mohy & Higham (2011), table 3.1, for double precision: the Taylor
#: polynomial of degree m approximates exp(hA) to unit roundoff when ‖hA‖₁ ≤ θ_m.
_THETA = {
    5: 2.40e-3, 10: 1.44e-1, 15: 6.41e-1, 20: 1.44, 25: 2.43, 30: 3.54,
    35: 4.7, 40: 6.0, 45: 7.2, 50: 8.5, 55: 9.9,
}  # fmt: skip


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
    mv: Callable[[np.ndarray], np.ndarray],
    z: np.ndarray,
    m: int,
    s: int,
    tol: float,
    progress: Callable[[float], Any] | None = None,
) -> np.ndarray:
    """``exp(𝒜) z`` by ``s`` steps of a degree-``m`` Taylor polynomial (Algorithm 3.2)."""
    F = z.copy()
    B = z.copy()
    for step in range(s):
        c1 = float(np.abs(B).max(initial=0.0))
        for j in range(m):
            B = mv(B) * (1.0 / (s * (j + 1)))
            c2 = float(np.abs(B).max(initial=0.0))
            F = F + B
            if c1 + c2 <= tol * float(np.abs(F).max(initial=0.0)):
                break
            c1 = c2
        B = F
        if progress is not None:
            progress((step + 1) / s)
    return F


def augmented_operator(operator: LinearOperator, b: np.ndarray, scale: float) -> LinearOperator:
    r"""The augmented operator :math:`\mathcal{A} = s\,[[A, b], [0, 0]]` of size ``n + 1``.

    Matrix-free, in double precision: :math:`\mathcal{A}[x;\xi] = s[Ax + b\xi; 0]`,
    :math:`\mathcal{A}^\top[x;\xi] = s[A^\top x; \langle b, x\rangle]`.

    Parameters
    ----------
    operator : scipy.sparse.linalg.LinearOperator
        :math:`A`, shape ``(n, n)``, with ``matvec`` and ``rmatvec``.
    b : ndarray, shape (n,)
        The inhomogeneity.
    scale : float
        The factor :math:`s` (the horizon ``T``).

    Returns
    -------
    scipy.sparse.linalg.LinearOperator
        Shape ``(n + 1, n + 1)``, float64.
    """
    n = b.size

    def mv(z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=float).ravel()
        out = np.empty(n + 1)
        out[:n] = operator.matvec(z[:n])
        if z[n] != 0.0:
            out[:n] += z[n] * b
        out[:n] *= scale
        out[n] = 0.0
        return out

    def rmv(z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=float).ravel()
        out = np.empty(n + 1)
        out[:n] = operator.rmatvec(z[:n])
        out[:n] *= scale
        out[n] = scale * float(b @ z[:n])
        return out

    return LinearOperator((n + 1, n + 1), matvec=mv, rmatvec=rmv, dtype=np.float64)


class _Counted(LinearOperator):
    """``operator`` that counts its products (both directions)."""

    def __init__(self, operator: LinearOperator) -> None:
        super().__init__(np.float64, operator.shape)
        self.operator, self.count = operator, 0

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        self.count += 1
        return self.operator.matvec(x)

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        self.count += 1
        return self.operator.rmatvec(x)


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
        double precision, by scipy's ``expm_multiply`` itself. A ``tol`` selects
        the module's own implementation of the same algorithm.

    Notes
    -----
    The operator must provide ``rmatvec`` (scipy's norm estimate applies the
    transpose); every operator assignflow passes does. The returned
    :class:`~assignflow.IntegrationStats` counts in ``n_matvecs`` every
    application of ``A`` *and* ``Aᵀ`` (the norm estimate included); ``n_steps``
    is the number ``s`` of scaling steps of the built-in path and 1 for the
    scipy call (scipy does not report its ``s``). The computation runs in
    double precision; the result has the dtype of ``b`` (float32 stays
    float32). It records no trajectory (``record=True`` leaves
    ``stats.trajectory`` at ``None``): gradient estimators then differentiate
    the flow itself rather than this computation.

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
        operator: LinearOperator,
        b: np.ndarray,
        T: float,
        x0: np.ndarray | None = None,
        *,
        progress: Callable[[float], Any] | None = None,
        record: bool = False,
    ) -> tuple[np.ndarray, af.IntegrationStats]:
        """Return :math:`x(T)` and statistics.

        Parameters
        ----------
        operator : scipy.sparse.linalg.LinearOperator
            :math:`A`, shape ``(n, n)``, with ``matvec`` and ``rmatvec`` (a
            sparse or dense matrix is accepted too).
        b : ndarray, shape (n,)
            The inhomogeneity.
        T : float
            Horizon ``> 0``.
        x0 : ndarray, shape (n,), optional
            Initial value (zero if omitted). ``b`` and ``x0`` are not modified.
        progress : callable, optional
            Called as ``progress(fraction)``: after each scaling step of the
            built-in path, once with 1.0 after the scipy call.
        record : bool, default=False
            Accepted for the interface; nothing is recorded.

        Returns
        -------
        x : ndarray, shape (n,)
            :math:`x(T)`, with the dtype of ``b``.
        stats : assignflow.IntegrationStats
            ``integrator="expm_multiply"``.
        """
        out_dtype = np.float32 if getattr(b, "dtype", None) == np.float32 else np.float64
        b, T, x0 = _check_inputs(b, T, x0)
        n = b.size
        if not isinstance(operator, LinearOperator):
            try:
                operator = aslinearoperator(operator)
            except TypeError:
                raise TypeError(
                    f"operator must be a scipy.sparse.linalg.LinearOperator with rmatvec, "
                    f"got {type(operator).__name__}"
                ) from None
        if operator.shape != (n, n):
            raise ValueError(
                f"operator must have shape ({n}, {n}) to match b, got {operator.shape}"
            )
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be callable (fraction -> None), got {progress!r}")
        if x0 is None and not np.any(b):
            return np.zeros(n, out_dtype), af.IntegrationStats("expm_multiply", 0, 0, t=T)
        op = _Counted(augmented_operator(operator, b, T))
        z0 = np.zeros(n + 1)
        if x0 is not None:
            z0[:n] = x0
        z0[n] = 1.0
        try:
            norm = float(onenormest(op))
            m, n_steps = _select_params(norm)
            if n_steps > MAX_STEPS:
                raise ValueError(
                    f"T={T:g} gives ||T A||_1 ~ {norm:.3g}, {n_steps} scaling steps (more than "
                    f"{MAX_STEPS}): use a smaller T, or ExponentialKrylov"
                )
            if self.tol is None:
                z, n_steps = expm_multiply(op, z0, traceA=0.0), 1
                if progress is not None:
                    progress(1.0)
            else:
                z = _taylor_action(op.matvec, z0, m, n_steps, self.tol, progress)
        except NotImplementedError:  # scipy: "rmatvec is not defined"
            raise TypeError(
                "operator must provide rmatvec: ExpmMultiply estimates the 1-norm of the "
                "augmented operator with scipy's onenormest, which applies the transpose"
            ) from None
        x = np.asarray(z, dtype=float)[:n]
        if not np.all(np.isfinite(x)):
            raise FloatingPointError("ExpmMultiply produced non-finite values")
        stats = af.IntegrationStats("expm_multiply", n_steps=n_steps, n_matvecs=op.count, t=T)
        return x.astype(out_dtype), stats
