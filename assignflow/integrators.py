r"""Integrators for the linearized and the nonlinear assignment flow.

Two families, each a frozen settings record (state is passed in and returned,
never stored), in the style of diffrax's solvers:

* :class:`LinearIntegrator` — solves :math:`\dot x = A x + b`, :math:`x(0) = x_0`
  on :math:`[0, T]` for a matrix-free ``A`` (the LAF, :ref:`§4 <math-laf>`):
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
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from . import registry
from ._krylov import KrylovRecord, solve_linear_ode
from ._parallel import blas_single_thread
from ._simplex import entropy, log_softmax, project_tangent, replicator, replicator_inplace
from ._validation import (
    as_float_array,
    check_positive_float,
    positive_float_converter,
    positive_int_validator,
)

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
Progress = Callable[[float], Any]

#: Largest Krylov dimension: the basis holds ``m + 1`` vectors of the problem's size,
#: and the paper finds ``m <= 10`` sufficient.
MAX_KRYLOV_DIM = 500
#: Largest number of (sub-)steps any integrator takes for one solve.
MAX_STEPS = 1_000_000


@attrs.frozen
class IntegrationStats:
    """What an integrator did.

    The fields are the constructor's arguments and the record's attributes.

    Parameters
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
    trajectory : KrylovRecord or None
        The accepted sub-steps of the forward computation, kept when the solve was
        asked to ``record`` them (:class:`ExponentialKrylov`): gradient estimators
        differentiate exactly this computation.
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
    trajectory: Any = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen(eq=False)
class FlowResult:
    r"""Result of solving a flow.

    The fields are the constructor's arguments and the record's attributes.

    Parameters
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
        What the integrator did (steps, operator applications, error estimate).
    layers : tuple of FlowResult or None
        For a :class:`~assignflow.DeepLinearizedAssignmentFlow`, the result of every
        layer (``V`` of a layer is its own tangent vector, at its base point).
    """

    V: np.ndarray
    W: np.ndarray
    T: float
    stats: IntegrationStats
    layers: tuple[FlowResult, ...] | None = None

    @property
    def labels(self) -> np.ndarray:
        """Labels ``argmax_j W_ij`` of shape ``(I,)``."""
        return np.argmax(self.W, axis=1)

    @property
    def trajectory(self) -> Any:
        """The recorded forward computation (``stats.trajectory``), or ``None``."""
        return self.stats.trajectory

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
        self,
        operator: LinearOperator,
        b: np.ndarray,
        T: float,
        x0: np.ndarray | None = None,
        *,
        progress: Progress | None = None,
        record: bool = False,
    ) -> tuple[np.ndarray, IntegrationStats]:
        """Return :math:`x(T)` and statistics.

        Parameters
        ----------
        operator : scipy.sparse.linalg.LinearOperator
            :math:`A`, shape ``(n, n)``, with ``matvec`` and ``rmatvec``. (A sparse or
            dense matrix is accepted too.)
        b : ndarray (n,)
            The inhomogeneity; float32 is kept, anything else becomes float64.
        T : float
            Horizon :math:`T > 0`.
        x0 : ndarray (n,), optional
            Initial state (zero if omitted). ``b`` and ``x0`` are not modified.
        progress : callable, optional
            Called as ``progress(fraction)`` with the fraction of ``[0, T]`` done.
        record : bool, default=False
            Keep what gradient estimators need to differentiate exactly this
            computation in ``stats.trajectory`` (integrators that cannot record
            leave it ``None``).

        Returns
        -------
        x : ndarray (n,)
            :math:`x(T)`.
        stats : IntegrationStats
        """


class FlowIntegrator(Integrator):
    """Solves the nonlinear assignment flow; see :class:`~assignflow.AssignmentFlow`."""

    @abstractmethod
    def solve(self, flow: Any) -> FlowResult:
        """Integrate ``flow`` and return a :class:`FlowResult`.

        Parameters
        ----------
        flow : AssignmentFlow
            The flow: its similarity map, initial point (``initial_log_point()``)
            and horizon ``T`` (``None``: until the assignments are close to integral).

        Returns
        -------
        FlowResult
            ``W`` the assignment reached, ``V`` :math:`= \\Pi_0 \\log W / J`, the time
            reached and the statistics.
        """


def as_operator(operator: Any, n: int, dtype: Any = np.float64) -> LinearOperator:
    """``operator`` as a ``(n, n)`` :class:`~scipy.sparse.linalg.LinearOperator`.

    Sparse and dense matrices are wrapped; a bare callable ``x -> A x`` still works
    but is deprecated (it has no transpose, which some integrators need).
    """
    if isinstance(operator, LinearOperator):
        op = operator
    elif sp.issparse(operator) or isinstance(operator, np.ndarray):
        op = aslinearoperator(operator)
    elif callable(operator):
        warnings.warn(
            "passing a bare matvec callable to an integrator is deprecated; pass a "
            "scipy.sparse.linalg.LinearOperator (e.g. flow.aslinearoperator())",
            DeprecationWarning,
            stacklevel=4,
        )
        op = LinearOperator((n, n), matvec=operator, dtype=dtype)
    else:
        raise TypeError(
            f"operator must be a scipy.sparse.linalg.LinearOperator, got {type(operator).__name__}"
        )
    if op.shape != (n, n):
        raise ValueError(f"operator must have shape ({n}, {n}) to match b, got {op.shape}")
    return op


def _check_inputs(
    operator: Any, b: Any, x0: Any, progress: Any
) -> tuple[LinearOperator, np.ndarray, np.ndarray | None]:
    """Validated operator, ``b`` and ``x0``: real, finite, flat; float32 is kept."""
    dtype = np.float32 if getattr(b, "dtype", None) == np.float32 else np.float64
    b = as_float_array(b, "b", ndim=1, dtype=dtype)
    if x0 is not None:
        x0 = as_float_array(x0, "x0", shape=b.shape, dtype=dtype)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable (fraction -> None), got {progress!r}")
    return as_operator(operator, b.shape[0], dtype), b, x0


def _bounded_int(name: str, maximum: int, minimum: int = 1):
    def check(instance: Any, attribute: Any, value: Any) -> None:
        positive_int_validator(instance, attribute, value)
        if value < minimum or value > maximum:
            raise ValueError(f"{name} must be in [{minimum}, {maximum}], got {value}")

    return check


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
    max_steps : int, default=100000
        Refuse horizons that need more steps (``ceil(T/h) > max_steps``), so that a
        tiny ``step_size`` cannot make a solve run for ever.
    """

    step_size: float = attrs.field(default=0.1, converter=positive_float_converter)
    max_steps: int = attrs.field(default=100_000, validator=_bounded_int("max_steps", MAX_STEPS))

    def n_steps(self, T: float) -> int:
        """Number of steps used for horizon ``T`` (``ValueError`` beyond ``max_steps``).

        Parameters
        ----------
        T : float
            Horizon :math:`T > 0`.

        Returns
        -------
        int
            ``ceil(T / step_size)``, at least 1.

        Raises
        ------
        ValueError
            If more than ``max_steps`` steps would be needed.
        """
        ratio = T / self.step_size
        if not ratio <= self.max_steps:  # also catches inf from a subnormal step_size
            raise ValueError(
                f"T / step_size = {ratio:.3g} steps exceed max_steps={self.max_steps}; "
                "increase step_size (or max_steps), or use ExponentialKrylov"
            )
        return max(1, math.ceil(ratio - 1e-9))

    def integrate(self, operator, b, T, x0=None, *, progress=None, record=False):
        """Return :math:`x(T)` after :meth:`n_steps` equal Euler steps, and statistics.

        Parameters
        ----------
        operator : scipy.sparse.linalg.LinearOperator
            :math:`A`, shape ``(n, n)`` (a sparse or dense matrix is accepted too);
            only ``matvec`` is used, once per step.
        b : ndarray (n,)
            The inhomogeneity; float32 is kept, anything else becomes float64.
        T : float
            Horizon :math:`T > 0`.
        x0 : ndarray (n,), optional
            Initial state (zero if omitted). ``b`` and ``x0`` are not modified.
        progress : callable, optional
            Called as ``progress(fraction)`` after every step.
        record : bool, default=False
            Accepted for the :class:`LinearIntegrator` interface; Euler records
            nothing (``stats.trajectory`` is ``None``).

        Returns
        -------
        x : ndarray (n,)
            The Euler approximation of :math:`x(T)`.
        stats : IntegrationStats
            ``n_steps`` and ``n_matvecs`` (both the number of steps) and ``t = T``.

        Raises
        ------
        FloatingPointError
            If the iteration diverged (``step_size`` too large for the operator).
        """
        T = check_positive_float(T, "T")
        op, b, x0 = _check_inputs(operator, b, x0, progress)
        n = self.n_steps(T)
        h = T / n
        x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=b.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            for step in range(n):
                dx = op.matvec(x)
                dx += b
                dx *= h
                x += dx
                if progress is not None:
                    progress((step + 1) / n)
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
    by sub-steps :math:`v^+ = v + h\varphi(hA)(Av + b)`. The same estimate, with
    :math:`H_j`, after every Arnoldi step :math:`j` ends the run as soon as it meets
    the tolerance for the trial step (fewer matvecs when :math:`m` is more than the
    step needs). A happy breakdown (an invariant Krylov space) gives the exact result.

    Parameters
    ----------
    krylov_dim : int, default=10
        Largest Krylov dimension :math:`m` (1 to 500, and at most the problem
        size); the paper finds ``m ≤ 10`` sufficient. Each Arnoldi run ends at the
        first dimension whose error estimate meets ``tol`` for its step, so the
        basis holds at most ``m + 1`` vectors.
    tol : float, default=1e-8
        Relative tolerance of the error estimate.
    max_substeps : int, default=1000
        At most this many accepted sub-steps (1 to 10⁶).
    reorthogonalize : {"always", "auto", "never"}, default="auto"
        Second classical Gram–Schmidt pass every step ("always", CGS2), only when
        cancellation is detected ("auto", the DGKS criterion with η = 1/√2 that
        ARPACK uses), or never. "auto" spares one of the three passes over the
        basis in most steps; on the LAF it gives the solutions and gradients of
        "always" to rounding.

    Notes
    -----
    With ``record=True`` the accepted sub-steps (their start states, step sizes
    and small Hessenberg matrices) and the last Arnoldi basis are kept, and
    :class:`~assignflow.ClosedFormLowRank` differentiates exactly this
    computation, sub-step by sub-step.
    """

    krylov_dim: int = attrs.field(default=10, validator=_bounded_int("krylov_dim", MAX_KRYLOV_DIM))
    tol: float = attrs.field(default=1e-8, converter=positive_float_converter)
    max_substeps: int = attrs.field(default=1000, validator=_bounded_int("max_substeps", MAX_STEPS))
    reorthogonalize: str = attrs.field(
        default="auto", validator=attrs.validators.in_(("always", "auto", "never"))
    )

    def integrate(self, operator, b, T, x0=None, *, progress=None, record=False, keep_basis=True):
        """Return :math:`x(T) = e^{TA}x_0 + T\\varphi(TA)b` and statistics.

        Parameters
        ----------
        operator : scipy.sparse.linalg.LinearOperator
            :math:`A`, shape ``(n, n)`` (a sparse or dense matrix is accepted too);
            only ``matvec`` is used.
        b : ndarray (n,)
            The inhomogeneity; float32 is kept, anything else becomes float64.
        T : float
            Horizon :math:`T > 0`.
        x0 : ndarray (n,), optional
            Initial state (zero if omitted). ``b`` and ``x0`` are not modified.
        progress : callable, optional
            Called as ``progress(fraction)`` with the fraction of ``[0, T]`` done.
        record : bool, default=False
            Keep the accepted sub-steps in ``stats.trajectory`` (a ``KrylovRecord``),
            for :class:`~assignflow.ClosedFormLowRank`.
        keep_basis : bool, default=True
            With ``record``: also keep the Arnoldi basis of the last sub-step
            (up to ``krylov_dim + 1`` vectors of length ``n``), so the adjoint pass need
            not recompute it; ``False`` saves that memory.

        Returns
        -------
        x : ndarray (n,)
            :math:`x(T)`.
        stats : IntegrationStats
            Sub-steps, operator applications, the error estimate and the rejected
            sub-steps (and the trajectory if ``record``).
        """
        T = check_positive_float(T, "T")
        op, b, x0 = _check_inputs(operator, b, x0, progress)
        rec = KrylovRecord(keep_basis=keep_basis) if record else None
        with blas_single_thread():
            x, info = solve_linear_ode(
                op.matvec,
                b,
                T,
                x0,
                m=self.krylov_dim,
                tol=self.tol,
                max_substeps=self.max_substeps,
                reorthogonalize=self.reorthogonalize,
                progress=progress,
                record=rec,
                matvec_into=getattr(op, "matvec_into", None),
            )
        return x, IntegrationStats(
            "exponential_krylov",
            n_steps=info.n_substeps,
            n_matvecs=info.n_matvecs,
            t=T,
            error_estimate=float(info.error_estimate),
            n_rejected=info.n_rejected,
            trajectory=rec,
        )


# --------------------------------------------------------------------------- nonlinear
def _nonlinear_result(
    flow: Any, log_w: np.ndarray, t: float, stats: IntegrationStats
) -> FlowResult:
    W = np.exp(log_w)
    V = project_tangent(log_w) / flow.shape[1]
    return FlowResult(V=V, W=W, T=t, stats=stats)


@attrs.frozen
class _FlowStepper(FlowIntegrator):
    """Shared loop: fixed steps up to ``T``, or until the mean entropy is below ``tol``."""

    step_size: float = attrs.field(default=0.1, converter=positive_float_converter)
    tol: float = attrs.field(default=1e-3, converter=positive_float_converter)
    max_steps: int = attrs.field(default=1000, validator=_bounded_int("max_steps", MAX_STEPS))

    name = "flow"

    @abstractmethod
    def _step(self, flow: Any, log_w: np.ndarray, h: float) -> tuple[np.ndarray, int]:
        """One step of size ``h`` from ``log W``; returns the new ``log W`` and matvec count."""

    def solve(self, flow):
        log_w = flow.initial_log_point()
        T = flow.T
        if T is not None:
            ratio = T / self.step_size
            if not ratio <= self.max_steps:  # also catches inf from a subnormal step_size
                raise ValueError(
                    f"T / step_size needs {ratio:.3g} steps, more than max_steps={self.max_steps}; "
                    "increase step_size or max_steps"
                )
            n_steps = max(1, math.ceil(ratio - 1e-9))
            h = T / n_steps
        else:
            n_steps, h = self.max_steps, self.step_size
        entropies, n_mv, t, converged = [], 0, 0.0, T is not None
        for _ in range(n_steps):
            log_w, mv = self._step(flow, log_w, h)
            n_mv += mv
            t += h
            entropies.append(float(entropy(np.exp(log_w)).mean()))
            if T is None and entropies[-1] < self.tol:
                converged = True
                break
        if T is None and not converged:
            import warnings

            warnings.warn(
                f"{type(self).__name__} stopped after max_steps={self.max_steps} with mean "
                f"entropy {entropies[-1]:.3g} >= tol={self.tol:g}; increase max_steps or step_size",
                RuntimeWarning,
                stacklevel=3,
            )
        stats = IntegrationStats(
            self.name,
            n_steps=len(entropies),
            n_matvecs=n_mv,
            t=t,
            converged=converged,
            entropy=np.asarray(entropies),
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
        Largest number of steps (1 to 10⁶): with a horizon, ``ceil(T/h)`` must not
        exceed it (``ValueError``); without one, the flow stops there with a
        ``RuntimeWarning`` if the entropy is still above ``tol``.
    """

    name = "geometric_euler"

    def _step(self, flow, log_w, h):
        S = flow.similarity._from_log(log_w)
        return log_softmax(log_w + h * S), 1


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
    \exp_{W^{(k)}}(U(h))` — the same flow (:ref:`§4 <math-laf>`), but with an operator
    that stays well conditioned when :math:`W^{(k)}` approaches a vertex.

    Parameters
    ----------
    step_size : float, default=0.1
        Relinearisation interval :math:`h > 0` (with a horizon ``T``: ``ceil(T/h)``
        equal intervals).
    tol : float, default=1e-3
        Without a horizon, stop when the mean row entropy drops below ``tol``.
    max_steps : int, default=1000
        Largest number of intervals, as for :class:`GeometricEuler`.
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
            replicator_inplace(S[a:c], block)

        def matvec(x):
            return op.apply(x.reshape(shape), rowwise=post).ravel()

        def rmatvec(x):
            return op.apply_transpose(replicator(S, x.reshape(shape))).ravel()

        n = S.size
        lin = LinearOperator((n, n), matvec=matvec, rmatvec=rmatvec, dtype=S.dtype)
        u, stats = self.inner.integrate(lin, project_tangent(S).ravel(), h)
        return log_softmax(log_w + u.reshape(shape)), 1 + stats.n_matvecs
