r"""Integrators for the linearized and the nonlinear assignment flow.

Two families, each a frozen settings record (state is passed in and returned,
never stored), in the style of diffrax's solvers:

* :class:`LinearIntegrator` — solves :math:`\dot x = A x + b`, :math:`x(0) = x_0`
  on :math:`[0, T]` for a matrix-free ``A`` (the LAF, MATH.md §4):
  :class:`ExponentialKrylov` (the paper's eqs. 2.27–2.29, with an a-posteriori
  error estimate and automatic sub-stepping) and :class:`Euler` (eq. 3.49).
* :class:`FlowIntegrator` — solves the nonlinear assignment flow
  :math:`\dot W = R_W S(W)`: :class:`GeometricEuler`
  (:math:`W^+ = \exp_W(h S(W))`) and :class:`LinearizedSequence`, the sequence of
  linearized flows of eq. 1.6 that relinearises at the current point.

Both nonlinear integrators work with :math:`\log W` (normalised row by row), so
assignments that become integral never underflow into NaN.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from . import registry
from ._krylov import solve_linear_ode
from ._parallel import blas_single_thread
from ._validation import (
    as_float_array,
    check_positive_float,
    positive_float_converter,
    positive_int_validator,
)
from .geometry import _entropy, _log_softmax, _project_tangent, _replicator_inplace

__all__ = [
    "Euler",
    "ExponentialKrylov",
    "FlowIntegrator",
    "FlowResult",
    "GeometricEuler",
    "IntegrationStats",
    "Integrator",
    "LinearIntegrator",
    "LinearizedSequence",
]

Matvec = Callable[[np.ndarray], np.ndarray]


@attrs.frozen
class IntegrationStats:
    """What an integrator did.

    Attributes
    ----------
    integrator : str
        Name of the integrator.
    n_steps : int
        Time steps (sub-steps for :class:`ExponentialKrylov`, relinearisations for
        :class:`LinearizedSequence`).
    n_matvecs : int
        Applications of the operator ``A`` (for the nonlinear flow: of ``Ω``).
    t : float
        Time reached.
    error_estimate : float
        A-posteriori error estimate (Krylov), ``nan`` where none exists.
    n_rejected : int
        Rejected (shrunk) Krylov sub-steps.
    converged : bool
        For entropy-based stopping: whether the tolerance was reached.
    entropy : ndarray
        Mean row entropy after each step (nonlinear flows), else empty.
    """

    integrator: str
    n_steps: int
    n_matvecs: int
    t: float
    error_estimate: float = float("nan")
    n_rejected: int = 0
    converged: bool = True
    entropy: np.ndarray = attrs.field(
        factory=lambda: np.zeros(0), eq=attrs.cmp_using(np.array_equal)
    )


@attrs.frozen(eq=False)
class FlowResult:
    r"""Result of solving a flow.

    Attributes
    ----------
    V : ndarray (I, J)
        Tangent vector with :math:`W = \operatorname{Exp}_{W_0}(V)`; for the
        nonlinear flow :math:`V = \Pi_0 \log W / J` (so that
        :math:`W = \operatorname{Exp}_{\mathbb{1}_\mathcal{W}}(V)`).
    W : ndarray (I, J)
        The assignment :math:`W(T)`.
    T : float
        Final time.
    stats : IntegrationStats
    """

    V: np.ndarray
    W: np.ndarray
    T: float
    stats: IntegrationStats

    @property
    def labels(self) -> np.ndarray:
        """Labels ``argmax_j W_ij`` of shape ``(I,)``."""
        return np.argmax(self.W, axis=1)

    def __repr__(self) -> str:
        return (
            f"FlowResult(shape={self.W.shape}, T={self.T:g}, integrator={self.stats.integrator!r}, "
            f"n_steps={self.stats.n_steps}, n_matvecs={self.stats.n_matvecs})"
        )


class Integrator(ABC):  # noqa: B024 - a marker base, like diffrax's capability classes
    """Base of all integrators (marker; see :class:`LinearIntegrator`, :class:`FlowIntegrator`)."""


class LinearIntegrator(Integrator):
    """Solves :math:`\\dot x = A x + b`, :math:`x(0) = x_0` for a matrix-free ``A``."""

    @abstractmethod
    def integrate(
        self, matvec: Matvec, b: np.ndarray, T: float, x0: np.ndarray | None = None
    ) -> tuple[np.ndarray, IntegrationStats]:
        """Return :math:`x(T)` and statistics. ``b`` and ``x0`` are flat and not modified."""


class FlowIntegrator(Integrator):
    """Solves the nonlinear assignment flow; see :class:`~assignflow.AssignmentFlow`."""

    @abstractmethod
    def solve(self, flow: Any) -> FlowResult:
        """Integrate ``flow`` and return a :class:`FlowResult`."""


def _check_inputs(matvec: Any, b: Any, x0: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Validated ``b`` and ``x0``: real, finite, flat; float32 is kept, the rest is float64."""
    if not callable(matvec):
        raise TypeError(f"matvec must be callable (x -> A @ x), got {type(matvec).__name__}")
    dtype = np.float32 if getattr(b, "dtype", None) == np.float32 else np.float64
    b = as_float_array(b, "b", ndim=1, dtype=dtype)
    if x0 is not None:
        x0 = as_float_array(x0, "x0", shape=b.shape, dtype=dtype)
    return b, x0


# --------------------------------------------------------------------------- linear
@registry.integrators.register("euler")
@attrs.frozen
class Euler(LinearIntegrator):
    r"""Explicit Euler for the LAF: :math:`v^+ = v + h(Av + b)` (the paper's eq. 3.49).

    Parameters
    ----------
    step_size : float, default=0.1
        Largest step :math:`h > 0`; ``ceil(T/h)`` equal steps of size ``T/ceil(T/h)``
        are taken. First-order accurate; stable for :math:`h\|A\| \lesssim 2`.
    """

    step_size: float = attrs.field(default=0.1, converter=positive_float_converter)

    def n_steps(self, T: float) -> int:
        """Number of steps used for horizon ``T``."""
        return max(1, math.ceil(T / self.step_size - 1e-9))

    def integrate(self, matvec, b, T, x0=None):
        T = check_positive_float(T, "T")
        b, x0 = _check_inputs(matvec, b, x0)
        n = self.n_steps(T)
        h = T / n
        x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=b.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(n):
                dx = matvec(x)
                dx += b
                dx *= h
                x += dx
        if not np.all(np.isfinite(x)):
            raise FloatingPointError(
                f"Euler diverged (step_size={self.step_size} is too large for this operator); "
                "use a smaller step_size or ExponentialKrylov"
            )
        return x, IntegrationStats("euler", n_steps=n, n_matvecs=n, t=T)


@registry.integrators.register("exponential_krylov")
@attrs.frozen
class ExponentialKrylov(LinearIntegrator):
    r"""Exponential Krylov integrator (the paper's eqs. 2.27–2.29).

    Computes :math:`v(T) = T\varphi(TA)b \approx T\|b\|\,Q_m\varphi(TH_m)e_1` from an
    Arnoldi basis :math:`Q_m`, :math:`H_m` of :math:`\mathcal{K}_m(A, b)`; φ of the
    small Hessenberg matrix comes from ``expm`` of the augmented matrix
    :math:`[[TH_m, e_1],[0,0]]`.

    The a-posteriori estimate :math:`T\|b\| h_{m+1,m}|e_m^\top\varphi(TH_m)e_1|`
    (Saad 1992) controls the error: when it exceeds ``tol`` relative to
    :math:`\|v\|`, the step is shrunk (reusing the basis) and the horizon is covered
    by sub-steps :math:`v^+ = v + h\varphi(hA)(Av + b)`. A happy breakdown
    (an invariant Krylov space) gives the exact result.

    Parameters
    ----------
    krylov_dim : int, default=10
        Krylov dimension :math:`m`; the paper finds ``m ≤ 10`` sufficient.
    tol : float, default=1e-8
        Relative tolerance of the error estimate.
    max_substeps : int, default=1000
    reorthogonalize : {"always", "auto", "never"}, default="always"
        Second classical Gram–Schmidt pass every step ("always", CGS2), only when
        cancellation is detected ("auto", DGKS criterion), or never.
    """

    krylov_dim: int = attrs.field(default=10, validator=positive_int_validator)
    tol: float = attrs.field(default=1e-8, converter=positive_float_converter)
    max_substeps: int = attrs.field(default=1000, validator=positive_int_validator)
    reorthogonalize: str = attrs.field(
        default="always", validator=attrs.validators.in_(("always", "auto", "never"))
    )

    def integrate(self, matvec, b, T, x0=None):
        T = check_positive_float(T, "T")
        b, x0 = _check_inputs(matvec, b, x0)
        with blas_single_thread():
            x, info = solve_linear_ode(
                matvec,
                b,
                T,
                x0,
                m=self.krylov_dim,
                tol=self.tol,
                max_substeps=self.max_substeps,
                reorthogonalize=self.reorthogonalize,
            )
        return x, IntegrationStats(
            "exponential_krylov",
            n_steps=info.n_substeps,
            n_matvecs=info.n_matvecs,
            t=T,
            error_estimate=float(info.error_estimate),
            n_rejected=info.n_rejected,
        )


# --------------------------------------------------------------------------- nonlinear
def _nonlinear_result(
    flow: Any, log_w: np.ndarray, t: float, stats: IntegrationStats
) -> FlowResult:
    W = np.exp(log_w)
    V = _project_tangent(log_w) / flow.shape[1]
    return FlowResult(V=V, W=W, T=t, stats=stats)


@attrs.frozen
class _FlowStepper(FlowIntegrator):
    """Shared loop: fixed steps up to ``T``, or until the mean entropy is below ``tol``."""

    step_size: float = attrs.field(default=0.1, converter=positive_float_converter)
    tol: float = attrs.field(default=1e-3, converter=positive_float_converter)
    max_steps: int = attrs.field(default=1000, validator=positive_int_validator)

    name = "flow"

    @abstractmethod
    def _step(self, flow: Any, log_w: np.ndarray, h: float) -> tuple[np.ndarray, int]:
        """One step of size ``h`` from ``log W``; returns the new ``log W`` and matvec count."""

    def solve(self, flow):
        log_w = flow.initial_log_point()
        T = flow.T
        if T is not None:
            n_steps = max(1, math.ceil(T / self.step_size - 1e-9))
            if n_steps > self.max_steps:
                raise ValueError(
                    f"T / step_size needs {n_steps} steps, more than max_steps={self.max_steps}"
                )
            h = T / n_steps
        else:
            n_steps, h = self.max_steps, self.step_size
        entropy, n_mv, t, converged = [], 0, 0.0, T is not None
        for _ in range(n_steps):
            log_w, mv = self._step(flow, log_w, h)
            n_mv += mv
            t += h
            entropy.append(float(_entropy(np.exp(log_w)).mean()))
            if T is None and entropy[-1] < self.tol:
                converged = True
                break
        if T is None and not converged:
            import warnings

            warnings.warn(
                f"{type(self).__name__} stopped after max_steps={self.max_steps} with mean "
                f"entropy {entropy[-1]:.3g} >= tol={self.tol:g}; increase max_steps or step_size",
                RuntimeWarning,
                stacklevel=3,
            )
        stats = IntegrationStats(
            self.name,
            n_steps=len(entropy),
            n_matvecs=n_mv,
            t=t,
            converged=converged,
            entropy=np.asarray(entropy),
        )
        return _nonlinear_result(flow, log_w, t, stats)


@registry.integrators.register("geometric_euler")
@attrs.frozen
class GeometricEuler(_FlowStepper):
    r"""Geometric explicit Euler for the assignment flow: :math:`W^+ = \exp_W(hS(W))`.

    Parameters
    ----------
    step_size : float, default=0.1
        Step :math:`h > 0` (with a horizon ``T``: ``ceil(T/h)`` equal steps).
    tol : float, default=1e-3
        Without a horizon, stop when the mean row entropy drops below ``tol``.
    max_steps : int, default=1000
    """

    name = "geometric_euler"

    def _step(self, flow, log_w, h):
        S = flow.similarity._from_log(log_w)
        return _log_softmax(log_w + h * S), 1


@registry.integrators.register("linearized_sequence")
@attrs.frozen
class LinearizedSequence(_FlowStepper):
    r"""Sequence of linearized assignment flows (the paper's eq. 1.6).

    After each interval :math:`h` the flow is relinearised at the current point:
    :math:`W^{(k+1)} = \operatorname{Exp}_{W^{(k)}}\big(V(h; \Omega, W^{(k)})\big)`.
    As :math:`h \to 0` this approaches the nonlinear flow; one interval
    :math:`h = T` is the LAF.

    Each linear problem is solved in lifted coordinates, :math:`V = R_{W^{(k)}}U`
    with :math:`\dot U = R_{S_k}(\Omega U) + \Pi_0 S_k`, :math:`W^{(k+1)} =
    \exp_{W^{(k)}}(U(h))` — the same flow (MATH.md §4), but with an operator
    that stays well conditioned when :math:`W^{(k)}` approaches a vertex.

    Parameters
    ----------
    step_size, tol, max_steps
        As for :class:`GeometricEuler`.
    inner : LinearIntegrator, default=ExponentialKrylov()
        Solver of each linearized flow.
    """

    inner: LinearIntegrator = attrs.field(factory=lambda: ExponentialKrylov())

    name = "linearized_sequence"

    @inner.validator
    def _check_inner(self, attribute, value):
        if not isinstance(value, LinearIntegrator):
            raise TypeError(
                f"inner must be a LinearIntegrator (e.g. ExponentialKrylov()), got {value!r}"
            )

    def _step(self, flow, log_w, h):
        sim = flow.similarity
        S = sim._from_log(log_w)
        op = sim.weights.operator
        shape = flow.shape

        def post(block, a, c):
            _replicator_inplace(S[a:c], block)

        def matvec(x):
            return op.apply(x.reshape(shape), rowwise=post).ravel()

        u, stats = self.inner.integrate(matvec, _project_tangent(S).ravel(), h)
        return _log_softmax(log_w + u.reshape(shape)), 1 + stats.n_matvecs
