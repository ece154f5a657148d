r"""Gradients of a loss with respect to the weights :math:`\Omega`, and to :math:`\rho, T, D`.

The data term :math:`f_L(v_T)` depends on the parameters through the LAF
:math:`\dot v = A^J v + b`, :math:`v(0) = 0` (the paper's Theorem 3.8). Write the
augmented flow :math:`z = [v; 1]`, :math:`\dot z = \mathfrak{A} z` with the
generator :math:`\mathfrak{A} = [[A^J, b], [0, 0]]`. Whatever computes
:math:`z(T) = e^{T\mathfrak{A}}e_k` in sub-steps :math:`z_{s+1} = e^{h_s\mathfrak{A}}z_s`,
the gradient of :math:`f_L` with respect to :math:`\mathfrak{A}` is the sum over the
sub-steps of adjoint Fréchet derivatives of ``expm``

.. math::
    G = \sum_s h_s\,L_{\exp}\big(h_s\mathfrak{A}^\top, \lambda_{s+1} z_s^\top\big)
      = \sum_s h_s\int_0^1 \big(e^{\sigma h_s\mathfrak{A}^\top}\lambda_{s+1}\big)
        \big(e^{(1-\sigma)h_s\mathfrak{A}} z_s\big)^\top d\sigma ,

with the adjoint :math:`\lambda_S = [\partial f_L/\partial v_T; 0]`,
:math:`\lambda_s = e^{h_s\mathfrak{A}^\top}\lambda_{s+1}`. Split
:math:`G = [[G_{11}, G_{12}], [\cdot, \cdot]]`: :math:`G_{11} = \partial f_L/\partial A^J`
(``n×n``, never formed) and :math:`G_{12} = \partial f_L/\partial b`. Given any
factorisation :math:`G_{11} \approx \sum_r u_r w_r^\top`, the gradients with respect
to every stored :math:`\omega_{ik}`, to :math:`\rho` and to :math:`D` are sampled
products over the sparsity pattern (:class:`_Contraction`), which include the
dependence of both :math:`A` and :math:`b` on :math:`\Omega` through :math:`S_0`; and
:math:`\partial f_L/\partial T = \langle g, A v_T + b\rangle`.

The estimators differ in how they factor :math:`G`:

* :class:`ClosedFormLowRank` — the paper's method (eqs. 3.38–3.47), applied to every
  sub-step of the integrator's own forward computation: the forward Krylov basis of
  the sub-step (shared with the forward solve), an Arnoldi run on
  :math:`\mathfrak{A}^\top` from :math:`\lambda_{s+1}`, the Van Loan block exponential
  for the small matrix :math:`X`, and an SVD truncated to ``rank``. Memory
  :math:`O(m\,IJ)`.
* :class:`AdjointQuadrature` — :math:`G_{11} = T\int_0^1\lambda(s)v((1-s)T)^\top ds`
  with :math:`\lambda(s) = e^{sTA^\top}g`, by Gauss–Legendre quadrature: near-exact
  at any size.
* :class:`DenseFrechet` — ``scipy.linalg.expm_frechet`` on the dense ``k×k`` matrix
  (tiny problems; a reference).
* :class:`FiniteDiff` — central differences of the integrator's forward map (tiny
  problems; a reference).

All return the Euclidean gradient aligned with ``weights.values``; it treats the
stored values as free (row sums unconstrained) — Riemannian descent removes the
normal component (:mod:`assignflow.learning`). The value and :math:`V_T` always come
from the forward solve of the integrator that is passed (by default
:class:`~assignflow.ExponentialKrylov`), so training and prediction use one forward
path.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import attrs
import numpy as np
import scipy.linalg as sla

from . import registry
from ._krylov import arnoldi, expm_krylov, solve_linear_ode
from ._operators import _ChunkedOperator
from ._parallel import blas_single_thread, row_blocks, run_chunks
from ._simplex import project_tangent, replicator_inplace, row_dot, row_sum
from ._validation import as_float_array, positive_float_converter, positive_int_validator
from .flows import DeepLinearizedAssignmentFlow, LinearizedAssignmentFlow
from .integrators import MAX_KRYLOV_DIM, ExponentialKrylov, FlowResult, LinearIntegrator
from .losses import Loss
from .weights import Weights

__all__ = [
    "AdjointQuadrature",
    "ClosedFormLowRank",
    "DenseFrechet",
    "FiniteDiff",
    "GradientEstimator",
    "GradientResult",
    "StackGradientResult",
    "weight_gradient",
]

#: Largest number of Gauss–Legendre nodes of the quadrature.
MAX_NODES = 1024


@attrs.frozen(eq=False)
class GradientResult:
    r"""Value, gradients and diagnostics of one gradient evaluation.

    The fields are the constructor's arguments and the record's attributes; estimator
    plugins build it with :meth:`from_gradient`.

    Parameters
    ----------
    value : float
        :math:`\mathcal{L}(\Omega) = f_L(V_T) + \mathcal{R}(\Omega)`.
    gradient : ndarray (nnz,)
        Euclidean :math:`\partial\mathcal{L}/\partial\omega`, aligned with ``weights.values``.
    V : ndarray (I, J) or None
        The final tangent vector :math:`V_T` of the forward solve.
    data_value : float
        The data term :math:`f_L(V_T)`.
    reg_value : float
        The regulariser :math:`\mathcal{R}(\Omega)`.
    node_norms : ndarray (I,)
        Norm of the gradient over each neighbourhood :math:`\mathcal{N}_i`
        (reshape to ``(h, w)`` on grids: :meth:`norm_map`).
    singular_values : ndarray or None, default=None
        Singular values of the small matrix :math:`X` of the last sub-step treated
        (low-rank estimator): the paper's "low-dimensional representation".
    factors : tuple (U, W) or None, default=None
        Arrays ``(r, I, J)`` with :math:`\partial f_L/\partial A^J \approx
        \sum_r \operatorname{vec}(U_r)\operatorname{vec}(W_r)^\top` (only if asked for).
    n_matvecs : int, default=0
        Applications of :math:`A` or :math:`A^\top` (or full solves for FiniteDiff).
    error_estimate : float, default=nan
        A-posteriori error estimate of the forward Krylov approximation, if any.
    rho_gradient : float, default=nan
        :math:`\partial\mathcal{L}/\partial\rho`.
    T_gradient : float, default=nan
        :math:`\partial\mathcal{L}/\partial T`.
    distance_gradient : ndarray (I, J) or None, default=None
        :math:`\partial\mathcal{L}/\partial D` (chain it through :math:`D_{ij} =
        d(f_i, l_j)` for the label prototypes).
    forward : FlowResult or None, default=None
        The forward solve the value and the gradients belong to.
    """

    value: float
    gradient: np.ndarray
    V: np.ndarray | None
    data_value: float
    reg_value: float
    node_norms: np.ndarray
    singular_values: np.ndarray | None = None
    factors: tuple[np.ndarray, np.ndarray] | None = None
    n_matvecs: int = 0
    error_estimate: float = float("nan")
    rho_gradient: float = float("nan")
    T_gradient: float = float("nan")
    distance_gradient: np.ndarray | None = None
    forward: FlowResult | None = None

    def norm_map(self, shape: tuple[int, ...] | None = None) -> np.ndarray:
        r"""Per-node gradient norms, reshaped to an image ``shape`` if given.

        Parameters
        ----------
        shape : tuple of int, optional
            The grid, e.g. ``(h, w)`` (its product must be ``I``); ``None`` keeps the
            flat per-node array.

        Returns
        -------
        ndarray
            :attr:`node_norms`, the norm of the gradient over each
            :math:`\mathcal{N}_i`: shape ``(I,)``, or ``shape``.
        """
        return self.node_norms if shape is None else self.node_norms.reshape(shape)

    def patches(self, graph: Any) -> np.ndarray:
        """The gradient as per-pixel patches ``(h, w, (2r+1)²)`` (grid graphs).

        Parameters
        ----------
        graph : GridGraph
            The graph of the flow's weights (any graph with ``values_to_patches``).

        Returns
        -------
        ndarray, shape (\\*graph.shape, K)
            ``graph.values_to_patches(gradient)``: the gradient of every window
            offset, zero at offsets outside the grid.
        """
        return graph.values_to_patches(self.gradient)

    @classmethod
    def from_gradient(
        cls,
        flow: Any,
        loss: Any,
        V: np.ndarray | None,
        gradient: np.ndarray,
        *,
        add_regularizer: bool = True,
        data_value: float | None = None,
        **diagnostics: Any,
    ) -> GradientResult:
        r"""Assemble a result from the data term's gradient (for estimator plugins).

        Evaluates :math:`f_L(V_T)` and the regulariser of ``loss`` at the flow's
        weights, adds the regulariser's gradient unless ``add_regularizer=False``
        (when ``gradient`` already is the gradient of the whole loss), checks that
        the gradient is finite and computes the per-node norms.

        Parameters
        ----------
        flow : LinearizedAssignmentFlow
            The flow the gradient belongs to.
        loss : Loss
            The loss (its regulariser is evaluated here).
        V : ndarray (I, J) or None
            The final tangent vector :math:`V_T` (``None``: data value 0).
        gradient : ndarray (nnz,)
            :math:`\partial f_L/\partial\omega`, aligned with ``flow.weights.values``.
        add_regularizer : bool, default=True
            Add the regulariser's gradient.
        data_value : float, optional
            :math:`f_L(V_T)` when the caller has it already (else it is evaluated).
        **diagnostics
            Further fields of :class:`GradientResult` (``singular_values``,
            ``factors``, ``n_matvecs``, ``error_estimate``, ``rho_gradient``,
            ``T_gradient``, ``distance_gradient``, ``forward``).

        Returns
        -------
        GradientResult

        Raises
        ------
        FloatingPointError
            If the gradient is not finite.
        """
        g = np.asarray(gradient, dtype=np.float64)
        nnz = flow.weights.graph.nnz
        if g.shape != (nnz,):
            raise ValueError(f"gradient must have shape ({nnz},) like the weights, got {g.shape}")
        weights = flow.weights
        if data_value is None:
            data_value = float(loss.data_value(V)) if V is not None else 0.0
        reg_value = float(loss.reg_value(weights))
        if add_regularizer and loss.has_regularizer:
            g = g + loss.reg_gradient(weights)
        absmax = _absmax_or_nan(g)
        if not math.isfinite(absmax):
            raise FloatingPointError(
                "the gradient is not finite; check rho and the distances for extreme values"
            )
        return cls(
            value=data_value + reg_value,
            gradient=g,
            V=V,
            data_value=data_value,
            reg_value=reg_value,
            node_norms=_node_norms(weights.graph, g, absmax),
            **diagnostics,
        )


def _bool_validator(instance: Any, attribute: Any, value: Any) -> None:
    # a converter=bool would turn "no" into True
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{attribute.name} must be True or False, got {value!r}")


def _bounded(name: str, maximum: int, minimum: int = 1):
    def check(instance: Any, attribute: Any, value: Any) -> None:
        positive_int_validator(instance, attribute, value)
        if not minimum <= value <= maximum:
            raise ValueError(f"{name} must be in [{minimum}, {maximum}], got {value}")

    return check


def _factor_list(x: Any, name: str, shape: tuple[int, int]) -> list[np.ndarray]:
    if isinstance(x, (str, bytes, np.ndarray)) or not hasattr(x, "__iter__"):
        raise TypeError(f"{name} must be a list of ({shape[0]}, {shape[1]}) arrays")
    return [as_float_array(a, f"{name}[{r}]", shape=shape) for r, a in enumerate(x)]


def _absmax_or_nan(x: np.ndarray) -> float:
    """``max |x|`` (0 for an empty array), nan if ``x`` holds a NaN: two passes, no temporary."""
    return max(float(x.max(initial=0.0)), -float(x.min(initial=0.0)))


def _node_norms(graph: Any, grad: np.ndarray, absmax: float | None = None) -> np.ndarray:
    scale = _absmax_or_nan(grad) if absmax is None else absmax
    starts = graph.indptr[:-1]
    if 1e-150 < scale < 1e150:  # squares neither overflow nor underflow
        return np.sqrt(np.add.reduceat(grad * grad, starts))
    scale = scale or 1.0
    g = grad / scale
    return scale * np.sqrt(np.add.reduceat(g * g, starts))


# --------------------------------------------------------------------------- contraction
class _Contraction:
    r"""Accumulates :math:`\partial f_L/\partial(\omega, \rho, D)` from factors of :math:`G`.

    ``add(U, W)`` takes one term :math:`u w^\top` of :math:`G_{11} = \partial f_L/\partial
    A^J` (arrays ``(I, J)``), ``add_b(G12)`` a part of :math:`\partial f_L/\partial b`.
    With :math:`A V = R_{S_0}(\Omega V)` and :math:`b = \Pi_0 S_0/J`:

    1. :math:`\partial_{\omega_{ik}} \mathrel{+}= \langle(R_{S_0}U)_i, W_k\rangle`
       (the direct dependence of :math:`A`);
    2. :math:`\partial f_L/\partial S_0 = C = \sum[U\odot Z - \langle S_0,Z\rangle U -
       \langle S_0,U\rangle Z] + \Pi_0 G_{12}/J` with :math:`Z = \Omega W`; through
       :math:`S_0 = \operatorname{softmax}(Y)`, :math:`Y = -\Omega D/\rho`:
       :math:`\hat C = R_{S_0}C = \partial f_L/\partial Y`, so
       :math:`\partial_{\omega_{ik}} \mathrel{+}= -\langle\hat C_i, D_k\rangle/\rho`,
       :math:`\partial f_L/\partial\rho = \sum\hat C\odot\Omega D/\rho^2`,
       :math:`\partial f_L/\partial D = -\Omega^\top\hat C/\rho`.

    Accumulates in double precision; each term costs ``O(nnz·J)`` (on grids shifted
    multiply–adds).
    """

    def __init__(self, flow: LinearizedAssignmentFlow) -> None:
        self.flow = flow
        self.graph = flow.weights.graph
        self.op = flow.weights.operator
        self.S0 = flow.S0
        # allocated at the first contribution: the closed form creates the contraction
        # before its adjoint runs, whose basis should not share the peak with them
        self._grad: np.ndarray | None = None
        self._C: np.ndarray | None = None
        self._blocks = row_blocks(*flow.shape)

    @property
    def grad(self) -> np.ndarray:
        """∂f/∂ω so far, ``(nnz,)`` float64."""
        if self._grad is None:
            self._grad = np.zeros(self.graph.nnz)
        return self._grad

    @property
    def C(self) -> np.ndarray:
        """∂f/∂S0 so far (the G12 part included, see ``add_b``), float64."""
        if self._C is None:
            self._C = np.zeros(self.flow.shape)
        return self._C

    def add(self, U: np.ndarray, W: np.ndarray) -> None:
        S0, C, blocks = self.S0, self.C, self._blocks
        RU = np.empty_like(U)

        def rep(k: int) -> None:
            for a, c in blocks[k]:
                blk = RU[a:c]
                blk[...] = U[a:c]
                replicator_inplace(S0[a:c], blk)

        run_chunks(rep, len(blocks))
        grad = self.grad
        grad += self.graph.edge_dot(RU, W)
        RU = None
        Z = self.op.apply(W)

        def acc(k: int) -> None:
            # C += U ⊙ (Z - <S0, Z>) - <S0, U> Z, a row block at a time (in cache)
            for a, c in blocks[k]:
                s0, u, z = S0[a:c], U[a:c], Z[a:c]
                t = z - row_dot(s0, z)[:, None]
                t *= u
                t -= row_dot(s0, u)[:, None] * z
                C[a:c] += t

        run_chunks(acc, len(blocks))

    def add_b(self, G12: np.ndarray) -> None:
        C, J, blocks = self.C, self.flow.n_labels, self._blocks

        def acc(k: int) -> None:
            for a, c in blocks[k]:
                t = project_tangent(G12[a:c])
                t /= J
                C[a:c] += t

        run_chunks(acc, len(blocks))

    def finish(self, distances: bool = True) -> tuple[np.ndarray, float, np.ndarray | None]:
        """``(∂f/∂ω, ∂f/∂ρ, ∂f/∂D)`` (``∂f/∂D`` None unless ``distances``)."""
        sim, S0, blocks = self.flow.similarity, self.S0, self._blocks
        Chat = self.C  # R_{S0} C, in place (finish is called once)

        def rep(k: int) -> None:
            for a, c in blocks[k]:
                replicator_inplace(S0[a:c], Chat[a:c])

        run_chunks(rep, len(blocks))
        D = sim.distances
        # in the flow's precision, as D is: a float64 x float32 product casts every
        # entry (2-3x slower); Ĉ itself stays accumulated in double
        Chat_w = Chat.astype(self.flow.dtype, copy=False)
        ed = self.graph.edge_dot(Chat_w, D)
        ed /= sim.rho
        # Σ_i <Ĉ_i, (ΩD)_i> / ρ² = Σ_ik ω_ik <Ĉ_i, D_k> / ρ²: from the edge products at hand
        rho_grad = float(np.dot(self.flow.weights.values, ed)) / sim.rho
        grad = self.grad
        grad -= ed
        del ed
        if not distances:
            return grad, rho_grad, None
        # Ωᵀ Ĉ in the flow's precision (a float32 flow keeps float32 kernels only)
        dist_grad = self.op.apply_transpose(Chat_w)
        dist_grad = dist_grad.astype(np.float64)
        dist_grad *= -1.0 / sim.rho
        return grad, rho_grad, dist_grad


def weight_gradient(
    flow: Any, Us: list[np.ndarray], Ws: list[np.ndarray], G12: np.ndarray | None
) -> np.ndarray:
    r"""Contract a factorisation of :math:`G = \partial f_L/\partial\mathcal{A}` to the gradient.

    Here :math:`\mathcal{A} = T[[A^J, b], [0, 0]]` is the augmented matrix of the
    single exponential :math:`v_T = [e^{\mathcal{A}}e_k]_{1:n}`, :math:`G_{11} \approx
    \sum_r u_r w_r^\top` and :math:`G_{12}` its last column (the paper's Theorem 3.8):
    for every edge ``(i, k)``

    1. :math:`T\sum_r\langle(R_{S_0}U_r)_i, (W_r)_k\rangle` (the direct dependence of
       :math:`A`);
    2. with :math:`Z_r = \Omega W_r` and :math:`C = T\sum_r[U_r\odot Z_r - \langle
       S_0,Z_r\rangle U_r - \langle S_0,U_r\rangle Z_r] + T\,\Pi_0 G_{12}/J`:
       :math:`-\langle(R_{S_0}C)_i, D_k\rangle/\rho` (through :math:`S_0`).

    Parameters
    ----------
    flow : LinearizedAssignmentFlow
        The flow (at the barycenter).
    Us, Ws : list of ndarray (I, J)
        The factors :math:`U_r, W_r`.
    G12 : ndarray (I, J) or None
        :math:`G_{12}` reshaped to ``(I, J)``.

    Returns
    -------
    ndarray (nnz,)
        :math:`\partial f_L/\partial\omega`, aligned with ``flow.weights.values``.
    """
    if not isinstance(flow, LinearizedAssignmentFlow):
        raise TypeError(f"flow must be a LinearizedAssignmentFlow, got {type(flow).__name__}")
    Us, Ws = _factor_list(Us, "Us", flow.shape), _factor_list(Ws, "Ws", flow.shape)
    if len(Us) != len(Ws):
        raise ValueError(f"Us and Ws must have the same length, got {len(Us)} and {len(Ws)}")
    acc = _Contraction(flow)
    for U, W in zip(Us, Ws, strict=True):
        acc.add(flow.T * U, W)
    if G12 is not None:
        acc.add_b(flow.T * as_float_array(G12, "G12", shape=flow.shape))
    return acc.finish()[0]


# --------------------------------------------------------------------------- base
def _check_problem(flow: Any, loss: Any) -> None:
    if isinstance(flow, DeepLinearizedAssignmentFlow):
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be an assignflow Loss, got {type(loss).__name__}")
        loss.check(flow)
        return
    if not isinstance(flow, LinearizedAssignmentFlow):
        raise TypeError(f"flow must be a LinearizedAssignmentFlow, got {type(flow).__name__}")
    if not flow.at_barycenter:
        raise ValueError(
            "gradients are implemented for the LAF at the barycenter (W0=None), as in the paper"
        )
    if not isinstance(loss, Loss):
        raise TypeError(f"loss must be an assignflow Loss, got {type(loss).__name__}")
    loss.check(flow)


def _check_forward(flow: Any, forward: Any) -> FlowResult:
    if not isinstance(forward, FlowResult):
        raise TypeError(
            f"forward must be the FlowResult of flow.solve(...), got {type(forward).__name__}"
        )
    if np.shape(forward.V) != flow.shape or forward.T != flow.T:
        raise ValueError(
            f"forward must be a solve of this flow (shape {flow.shape}, T={flow.T:g}); got "
            f"shape {np.shape(forward.V)}, T={forward.T:g}"
        )
    return forward


class GradientEstimator(ABC):
    """Computes :math:`\\mathcal{L}(\\Omega)` and its gradients.

    Independent of the integrators, as diffrax's adjoints are of its solvers:
    :meth:`estimate` receives the integrator (or the result of a forward solve) and
    differentiates that forward computation; swapping the estimator changes how
    the gradient is computed, not the model.
    """

    @abstractmethod
    def _estimate(self, flow: Any, loss: Loss, integrator: Any, forward: Any) -> GradientResult:
        """Compute the result for a validated flow, loss, integrator and forward solve."""

    def _default_integrator(self) -> LinearIntegrator:
        return ExponentialKrylov()

    #: ``_estimate`` accepts ``hypergradients=False`` and then skips ρ, T and D
    _skips_hypergradients: bool = False

    def estimate(
        self,
        flow: Any,
        loss: Loss,
        *,
        integrator: Any = None,
        forward: Any = None,
        hypergradients: bool = True,
    ) -> GradientResult:
        """Value, gradients and diagnostics (:class:`GradientResult`).

        Parameters
        ----------
        flow : LinearizedAssignmentFlow or DeepLinearizedAssignmentFlow
            The LAF at the barycenter (its working precision, float32 or float64, is
            the precision of the computation; norms, small matrices and
            accumulations are always double), or a stack of them: then every layer
            is differentiated by this estimator and the result is a
            :class:`StackGradientResult`.
        loss : Loss
            E.g. ``KLLoss(labels) + TangentSpaceRegularizer(tau)``.
        integrator : LinearIntegrator, str or None
            The forward integrator whose computation is differentiated (default:
            :class:`~assignflow.ExponentialKrylov`, with the estimator's Krylov
            settings where it has them).
        forward : FlowResult, optional
            A forward solve of ``flow`` already done (``flow.solve(integrator,
            record=True)``); then the flow is not solved again.
        hypergradients : bool, default=True
            Also compute :math:`\\partial\\mathcal{L}/\\partial\\rho`,
            :math:`\\partial\\mathcal{L}/\\partial T` and
            :math:`\\partial\\mathcal{L}/\\partial D`. ``False`` (what
            :meth:`value_and_gradient`, :meth:`gradient` and the descent on
            :math:`\\Omega` use) lets an estimator skip them: the low-rank closed
            form then spares one application of :math:`A` and one of
            :math:`\\Omega^\\top`, and reports them as nan / None. Others compute
            them anyway.

        Returns
        -------
        GradientResult or StackGradientResult
        """
        _check_problem(flow, loss)
        if forward is not None and not isinstance(flow, DeepLinearizedAssignmentFlow):
            forward = _check_forward(flow, forward)
        if integrator is None:
            integrator = self._default_integrator()
        elif isinstance(integrator, (str, type)):
            integrator = registry.integrators.resolve(integrator)
        if not isinstance(integrator, LinearIntegrator):
            raise TypeError(f"integrator must be a LinearIntegrator of the LAF, got {integrator!r}")
        if not isinstance(hypergradients, (bool, np.bool_)):
            raise TypeError(f"hypergradients must be True or False, got {hypergradients!r}")
        with blas_single_thread():
            if isinstance(flow, DeepLinearizedAssignmentFlow):
                return _estimate_stack(self, flow, loss, integrator, forward)
            if not hypergradients and self._skips_hypergradients:
                return self._estimate(flow, loss, integrator, forward, hypergradients=False)
            return self._estimate(flow, loss, integrator, forward)

    def value_and_gradient(self, flow: Any, loss: Loss, **options: Any) -> tuple[float, np.ndarray]:
        """``(L(Ω), ∂L/∂ω)``; the gradient has shape ``(nnz,)`` aligned with ``weights.values``.

        Parameters
        ----------
        flow : LinearizedAssignmentFlow or DeepLinearizedAssignmentFlow
            As for :meth:`estimate`.
        loss : Loss
            As for :meth:`estimate`.
        **options
            ``integrator``, ``forward`` and ``hypergradients`` (default False here),
            passed on to :meth:`estimate`.

        Returns
        -------
        value : float
            :math:`\\mathcal{L}(\\Omega)`.
        gradient : ndarray, shape (nnz,)
            :math:`\\partial\\mathcal{L}/\\partial\\omega` (a stack's layers concatenated).
        """
        options.setdefault("hypergradients", False)
        r = self.estimate(flow, loss, **options)
        return r.value, r.gradient

    def gradient(self, flow: Any, loss: Loss, **options: Any) -> np.ndarray:
        """:math:`\\partial\\mathcal{L}/\\partial\\omega`, shape ``(nnz,)``.

        Parameters
        ----------
        flow : LinearizedAssignmentFlow or DeepLinearizedAssignmentFlow
            As for :meth:`estimate`.
        loss : Loss
            As for :meth:`estimate`.
        **options
            ``integrator``, ``forward`` and ``hypergradients`` (default False here),
            passed on to :meth:`estimate`.

        Returns
        -------
        ndarray, shape (nnz,)
            The Euclidean gradient, aligned with ``flow.weights.values`` (a stack's
            layers concatenated).
        """
        options.setdefault("hypergradients", False)
        return self.estimate(flow, loss, **options).gradient


def _data_gradient(loss: Loss, V: np.ndarray) -> np.ndarray:
    return _data_value_and_gradient(loss, V)[1]


def _data_value_and_gradient(loss: Loss, V: np.ndarray) -> tuple[float, np.ndarray]:
    if not loss.has_data_term:
        return 0.0, np.zeros(V.shape)
    value, g = loss.data_value_and_gradient(V)
    return float(value), g


def _T_gradient(flow: Any, g: np.ndarray, V: np.ndarray) -> float:
    """:math:`\\partial f_L/\\partial T = \\langle g, A v_T + b\\rangle` (:math:`\\dot v(T)`)."""
    vdot = flow.matvec(np.ascontiguousarray(V, dtype=flow.dtype).ravel())
    vdot += flow.B.ravel()
    return float(np.einsum("i,i->", g.ravel(), vdot, dtype=np.float64))


def _finish(
    flow: Any,
    loss: Loss,
    forward: FlowResult,
    g: np.ndarray | None,
    acc: _Contraction | None,
    *,
    data_value: float | None = None,
    T_gradient: float | None = None,
    hypergradients: bool = True,
    **kw: Any,
) -> GradientResult:
    """The result from the accumulated contraction (``T_gradient`` from ``g`` unless given).

    Without ``hypergradients`` the result has ``∂L/∂ρ``, ``∂L/∂T`` nan and no ``∂L/∂D``.
    """
    V = forward.V
    if acc is None:
        grad, rho_grad = np.zeros(flow.weights.graph.nnz), 0.0
        dist_grad, T_grad = np.zeros(flow.shape), 0.0
    else:
        grad, rho_grad, dist_grad = acc.finish(distances=hypergradients)
        if hypergradients:
            T_grad = _T_gradient(flow, g, V) if T_gradient is None else T_gradient
    if not hypergradients:
        rho_grad, dist_grad, T_grad = float("nan"), None, float("nan")
    kw.setdefault("error_estimate", forward.stats.error_estimate)
    return GradientResult.from_gradient(
        flow,
        loss,
        V,
        grad,
        data_value=data_value,
        rho_gradient=rho_grad,
        T_gradient=T_grad,
        distance_gradient=dist_grad,
        forward=forward,
        **kw,
    )


# --------------------------------------------------------------------------- low rank
def _orthonormal_coordinates(x_norm2: float, coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``Y = [x, Q^T]`` with orthonormal ``Q``: ``(F, Finv)`` with ``Y F`` orthonormal-ish.

    The Gram matrix of ``Y`` is ``[[|x|², cᵀ], [c, I]]`` with ``c = Q x``; its
    eigendecomposition ``V Λ Vᵀ`` gives ``F = V Λ^{-1/2}`` (columns with ``Λ ≈ 0``
    dropped) and ``Finv = Λ^{1/2} Vᵀ``, so that ``Y = (Y F) Finv``.
    """
    k = coeffs.size
    gram = np.eye(k + 1)
    gram[0, 0] = x_norm2
    gram[0, 1:] = gram[1:, 0] = coeffs
    lam, vec = np.linalg.eigh(gram)
    keep = lam > lam.max() * 1e-12
    lam, vec = lam[keep], vec[:, keep]
    return vec / np.sqrt(lam), (vec * np.sqrt(lam)).T


def _adjoint_generator(flow: LinearizedAssignmentFlow):
    r"""``z ↦ [[A, b], [0, 0]]ᵀ z = [Aᵀ z_{1:n}; ⟨b, z_{1:n}⟩]`` for the adjoint Arnoldi runs.

    Returns ``(rmv, writes_out)``: ``rmv(z, out=None)`` writes into ``out`` (length
    ``n + 1``) when given, so an Arnoldi run takes its output straight into the basis.
    The transpose of ``flow.augmented_operator(scale=1)`` at the barycenter: the
    replicator ``R_{S0} z_{1:n}`` goes into one scratch array row block by row block
    (in cache), ``Ωᵀ`` into the output; ``⟨b, z⟩`` with ``b = Π0 S0 / J`` comes from
    the same blocks, ``Σ_i (⟨S0_i, z_i⟩ - (Σ_j S0_ij) (Σ_j z_ij) / J) / J``, so ``B``
    is not needed (nor kept) through the backward.
    """
    n, dt, shape = flow.size, flow.dtype, flow.shape
    op = flow.weights.operator
    if not isinstance(op, _ChunkedOperator):  # a plugin graph's operator
        rmatvec = flow.augmented_operator(scale=1.0).rmatvec
        return rmatvec, False
    S0, J = flow.S0, flow.n_labels
    row_sums = row_sum(S0, np.float64) / J
    scratch = np.empty(shape, dtype=dt)
    blocks = row_blocks(*shape)
    parts = np.zeros(len(blocks))

    def rmv(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty(n + 1, dtype=dt)
        U = z[:n].reshape(shape)

        def work(k: int) -> None:
            total = 0.0
            for a, c in blocks[k]:
                u, s0, blk = U[a:c], S0[a:c], scratch[a:c]
                d = row_dot(s0, u)
                # accumulated in double: in float32 a long sum loses digits
                total += float(d.sum(dtype=np.float64))
                total -= float(np.dot(row_sums[a:c], row_sum(u, np.float64)))
                np.subtract(u, d[:, None], out=blk)
                blk *= s0
            parts[k] = total

        run_chunks(work, len(blocks))
        op.apply_transpose(scratch, out=out[:n].reshape(shape))
        out[n] = parts.sum() / J
        return out

    return rmv, True


@registry.gradient_estimators.register("closed_form_low_rank")
@attrs.frozen
class ClosedFormLowRank(GradientEstimator):
    r"""The paper's closed-form gradient with a Krylov low-rank approximation (eqs. 3.38–3.47).

    Differentiates the :class:`~assignflow.ExponentialKrylov` forward solve sub-step
    by sub-step (one sub-step for the horizons of the paper). A sub-step of length
    :math:`h` from :math:`v_s` works in the integrator's Krylov space
    :math:`\mathcal{K}_k(A, r_s)`, :math:`r_s = Av_s + b` (basis :math:`Q_k`,
    Hessenberg :math:`H_k`, :math:`\beta = \|r_s\|`), so the augmented flow from
    :math:`z_s = [v_s; 1]` lives in :math:`Z = [z_s, [Q_k;0]]` with
    :math:`\mathfrak{A}Z = Z\tilde H`, :math:`\tilde H = [[0, 0], [\beta e_1, H_k]]`:
    the forward Arnoldi run of the gradient *is* the forward solve's (no second
    run). Arnoldi on :math:`\mathfrak{A}^\top` from :math:`\lambda_{s+1}` gives
    :math:`P_m, T_1, \beta_\lambda`; the small matrix
    :math:`X = \int_0^1 e^{\sigma hT_1}e_1e_1^\top e^{(1-\sigma)h\tilde H^\top}d\sigma` is
    the top-right block of :math:`\exp([[hT_1, e_1e_1^\top],[0, h\tilde H^\top]])` (Van
    Loan), and :math:`G_s \approx h\beta_\lambda P_m X Z^\top`; its top-left block
    :math:`e^{hT_1}` carries the adjoint back, :math:`\lambda_s \approx
    \beta_\lambda P_m e^{hT_1}e_1`. :math:`G_{11}` is truncated to ``rank`` terms by
    the SVD of :math:`X` in orthonormal coordinates of :math:`[v_s, Q_k^\top]`;
    :math:`G_{12} = h\beta_\lambda P_m X e_1` is used in full.

    Parameters
    ----------
    krylov_dim : int, default=10
        Largest Krylov dimension :math:`m \ge 2` of the adjoint runs; each ends at
        the first dimension whose error estimate meets the forward's tolerance for
        its piece. (The forward solve is the integrator's; by default
        ``ExponentialKrylov()``, as in ``flow.solve()``.)
    rank : int, default=1
        Singular triplets kept per sub-step; rank 1 suffices in practice.
    return_factors : bool, default=False
        Store the factors :math:`U_r, W_r` in the result.
    low_memory : bool, default=False
        Keep at most one Krylov basis in memory: the forward solve does not keep its
        basis, and each sub-step's forward basis is rebuilt after its adjoint basis
        is freed (one more Arnoldi run per sub-step, of the sub-step's recorded
        dimension; about 1.6× the time).
    reorthogonalize : {"always", "auto", "never"}, default="auto"
        Gram–Schmidt mode of the adjoint runs (and of the default integrator).
    """

    krylov_dim: int = attrs.field(default=10, validator=_bounded("krylov_dim", MAX_KRYLOV_DIM, 2))
    rank: int = attrs.field(default=1, validator=_bounded("rank", MAX_KRYLOV_DIM))
    return_factors: bool = attrs.field(default=False, validator=_bool_validator)
    low_memory: bool = attrs.field(default=False, validator=_bool_validator)
    reorthogonalize: str = attrs.field(
        default="auto", validator=attrs.validators.in_(("always", "auto", "never"))
    )

    _skips_hypergradients = True

    def _estimate(self, flow, loss, integrator, forward, hypergradients=True):
        own_record = forward is None
        had_B = flow._is_cached("B")
        if forward is None:
            if not isinstance(integrator, ExponentialKrylov):
                raise TypeError(
                    "ClosedFormLowRank differentiates the ExponentialKrylov forward solve; got "
                    f"{integrator!r} (use AdjointQuadrature or FiniteDiff for other integrators)"
                )
            x, stats = integrator.integrate(
                flow.aslinearoperator(),
                flow.B.ravel(),
                flow.T,
                record=True,
                keep_basis=not self.low_memory,
            )
            V = x.reshape(flow.shape)
        else:
            V, stats = forward.V, forward.stats
        traj = stats.trajectory
        if traj is None or not hasattr(traj, "steps"):
            raise ValueError(
                "forward must be recorded by ExponentialKrylov: flow.solve(integrator, record=True)"
            )

        def result_forward() -> FlowResult:
            # W = Exp(V) for the result only: formed after the backward, not through it
            if forward is not None:
                return forward
            return FlowResult(V=V, W=flow._exp0(V), T=flow.T, stats=stats)

        value, g = _data_value_and_gradient(loss, V)
        ctx = {"n_mv": stats.n_matvecs, "sig": np.zeros(0)}
        if not np.any(g):
            return _finish(
                flow,
                loss,
                result_forward(),
                g,
                None,
                data_value=value,
                hypergradients=hypergradients,
                n_matvecs=ctx["n_mv"],
            )
        fw_settings = (
            (integrator.reorthogonalize, integrator.tol)
            if isinstance(integrator, ExponentialKrylov)
            else (self.reorthogonalize, 1e-8)
        )
        n, dt = flow.size, flow.dtype
        acc = _Contraction(flow)
        lam = np.zeros(n + 1, dtype=dt)
        lam[:n] = g.ravel()
        # an adjoint this far below the data gradient adds nothing a float64 sum keeps;
        # stopping there also spares Arnoldi a start vector whose norm underflows
        ctx["floor"] = 1e-200 * _absmax(g)
        # ∂f/∂T needs g; taken now, g (a full-size array) is not held through the backward
        T_grad = _T_gradient(flow, g, V) if hypergradients else float("nan")
        del g
        if own_record and not had_B:
            # B was made for this forward; the backward does not need it (see
            # _adjoint_generator): a cache entry of the flow less at the peak
            flow._drop_cached("B")
        keep: list[tuple[np.ndarray, np.ndarray]] = []
        last = len(traj.steps) - 1
        for s in range(last, -1, -1):
            if not _absmax(lam) > ctx["floor"]:
                break
            # the solve's basis serves the last sub-step; taken from a record of our own,
            # it is freed as soon as the contraction is done with it (the result carries
            # the forward; a caller's record is left alone)
            basis = (traj, own_record) if s == last else None
            # λ goes in a box: the step drops it once its first Arnoldi run has copied it
            box = [lam]
            del lam
            lam = self._backward_step(
                flow, traj.steps[s], basis, box, acc, fw_settings, keep, ctx, s > 0
            )
        del lam
        factors = None
        if self.return_factors:
            factors = (np.array([u for u, _ in keep]), np.array([w for _, w in keep]))
        return _finish(
            flow,
            loss,
            result_forward(),
            None,
            acc,
            data_value=value,
            T_gradient=T_grad,
            hypergradients=hypergradients,
            singular_values=ctx["sig"],
            factors=factors,
            n_matvecs=ctx["n_mv"],
        )

    def _backward_step(self, flow, step, basis, lam_box, acc, fw_settings, keep, ctx, need_lam):
        """Accumulate the gradient of one forward sub-step and return ``λ`` at its start.

        ``lam_box``: ``[λ]`` at the end of the sub-step (emptied: λ is freed as soon as
        the first adjoint run has copied it). ``basis``: ``(record, own)`` to take the
        record's forward basis (and clear it there if ``own``), or None to rebuild it.
        ``need_lam``: False for the first sub-step, whose ``λ(0)`` is not used (None is
        returned).

        The adjoint is itself stepped (from the end of the sub-step back to its start)
        with error control, each piece ``[τ - δ, τ]`` using the forward flow in the
        coordinates of ``Z``: ``z(τ - δ) = Z e^{(τ-δ)H̃} e_1``.
        """
        n, dt = flow.size, flow.dtype
        reorth_fw, tol = fw_settings
        if basis is not None:
            record, own = basis
            basis = record.basis
            if own:
                record.basis = None
        have_basis = basis is not None
        if dt == np.float32:
            # as in the forward solve: a tolerance below float32 rounding buys nothing
            tol = max(tol, 4.0 * float(np.finfo(np.float32).eps))
        aug_T, writes_out = _adjoint_generator(flow)
        lam = lam_box.pop()
        h, k = step.h, step.H.shape[0]
        Ht = np.zeros((k + 1, k + 1))
        Ht[1, 0] = step.beta
        Ht[1:, 1:] = step.H
        if step.x_start is None:
            F = Finv = None
        else:
            xs = step.x_start
            F, Finv = _orthonormal_coordinates(
                float(np.einsum("i,i->", xs, xs, dtype=np.float64)), step.coeffs
            )

        def w_factors(wc: np.ndarray) -> np.ndarray:
            # (r, n): one stream over the forward basis, one contiguous row per factor
            if F is None:
                return wc.T.astype(dt) @ basis
            Wm = wc[1:].T.astype(dt) @ basis
            Wm += wc[0].astype(dt)[:, None] * step.x_start
            return Wm

        # (U vectors (r+1, n), W: the factors (r, n), or their coordinates in Y while
        # the forward basis is still to be rebuilt)
        pieces: list[tuple[np.ndarray, np.ndarray]] = []
        tau = h
        delta = h
        while tau > 0:
            delta = min(delta, tau)
            bw = arnoldi(
                aug_T,
                lam,
                self.krylov_dim,
                reorthogonalize=self.reorthogonalize,
                stop=_adjoint_converged(delta, tol),
                keep_last=False,
                matvec_out=writes_out,
            )
            lam = None  # copied into the basis
            ctx["n_mv"] += bw.n_matvecs
            k1, beta = bw.k, bw.beta
            T1 = bw.H[:k1, :k1]
            while True:
                y0 = _expm_e1(Ht, tau - delta)  # the forward state at τ - δ, in Z
                # X is linear in the coupling y0: a unit coupling keeps expm's matrix
                # powers in range when the state is huge
                y_norm = float(np.linalg.norm(y0))
                big = np.zeros((k1 + k + 1, k1 + k + 1))
                big[:k1, :k1] = delta * T1
                big[0, k1:] = y0 / y_norm
                big[k1:, k1:] = delta * Ht.T
                with np.errstate(over="ignore", invalid="ignore"):
                    E = sla.expm(big)
                if np.all(np.isfinite(E)) and (
                    bw.breakdown or _adjoint_piece_passes(bw.H, delta, tol)
                ):
                    break
                delta *= 0.5
                if delta < 1e-12 * h:
                    raise FloatingPointError(
                        f"the adjoint of the LAF overflows float64 at T={flow.T:g}; use a "
                        "shorter horizon T"
                    )
            X = y_norm * E[:k1, k1:]  # (k1, k + 1)
            M = X[:, 1:] if F is None else X @ Finv.T
            Yl, sig, Zt = np.linalg.svd(M, full_matrices=False)
            ctx["sig"] = sig
            r = min(self.rank, int(np.count_nonzero(sig > sig[0] * 1e-15)) if sig.size else 0)
            coef = np.empty((k1, r + 1))
            coef[:, 0] = (delta * beta) * X[:, 0]  # G12, in full
            coef[:, 1:] = (delta * beta) * Yl[:, :r] * sig[:r]
            wc = Zt[:r].T if F is None else F @ Zt[:r].T  # W in the coordinates of Y
            if basis is not None:
                # the W factors first: after the last piece the forward basis is freed
                # before the U factors take memory (the two bases are the peak)
                wc = w_factors(wc)
            # one stream over the adjoint basis: the U factors, G12 and the next λ (not
            # after the last piece of the first sub-step: λ(0) is not used)
            final = not need_lam and not tau - delta > 0
            if not tau - delta > 0:
                aug_T = None  # the last piece: free its work arrays before the output
                basis = None
            C = np.empty((r + 1 + (not final), k1))
            C[: r + 1] = coef.T
            if not final:
                C[r + 1] = beta * E[:k1, 0]
            # (r + 2, n + 1): every row is one vector, contiguous (no copies)
            out = C.astype(dt) @ bw.Q[:k1]
            pieces.append((out[: r + 1, :n], wc))
            lam = None if final else out[r + 1]
            del bw, out
            tau -= delta
            if final or not _absmax(lam) > ctx["floor"]:
                break
        aug_T = basis = None  # its two work arrays; the forward basis if still held
        if not have_basis:
            # the forward basis of the sub-step, rebuilt after the adjoint's is freed
            cached = flow._is_cached("B")
            b = flow.B.ravel()
            r_s = b if step.x_start is None else flow.matvec(step.x_start) + b
            if not cached:
                flow._drop_cached("B")  # as after the forward (see _estimate)
            # the recorded dimension, not m: the first k vectors are the same, and no more
            fw = arnoldi(flow.matvec, r_s, k, reorthogonalize=reorth_fw, keep_last=False)
            ctx["n_mv"] += fw.n_matvecs + (step.x_start is not None)
            if fw.k < k:
                raise RuntimeError("the rebuilt forward Krylov basis is shorter than recorded")
            basis = fw.Q[:k]
            del fw, b, r_s
            pieces = [(PU, w_factors(wc)) for PU, wc in pieces]
            basis = None
        for PU, Wm in pieces:
            acc.add_b(PU[0].reshape(flow.shape))
            for i in range(Wm.shape[0]):
                U, Wf = PU[1 + i].reshape(flow.shape), Wm[i].reshape(flow.shape)
                acc.add(U, Wf)
                if self.return_factors:
                    keep.append((U, Wf))
        return lam


def _absmax(x: np.ndarray) -> float:
    """``max |x|`` without a temporary of the size of ``x`` (NaN propagates)."""
    if not x.size:
        return 0.0
    hi, lo = float(x.max()), float(x.min())  # numpy's max/min propagate NaN
    return float("nan") if np.isnan(hi) else max(hi, -lo)


def _adjoint_piece_passes(H: np.ndarray, delta: float, tol: float) -> bool:
    """The error test of an adjoint piece of length ``delta`` on the Hessenberg ``H``.

    ``H`` is ``(j + 1, j)`` (Arnoldi on the first ``j`` steps): the estimate
    ``δ h_{j+1,j} |e_j^T φ_1(δT_j) e_1|`` against ``tol ‖e^{δT_j} e_1‖``, both from one
    small ``expm`` of ``[[δT_j, e_1], [0, 0]]``.
    """
    j = H.shape[1]
    Wa = np.zeros((j + 1, j + 1))
    Wa[:j, :j] = delta * H[:j, :j]
    Wa[0, j] = 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        E = sla.expm(Wa)
        if not np.all(np.isfinite(E)):
            return False
        err = delta * float(H[j, j - 1]) * abs(float(E[j - 1, j]))
        return err <= tol * max(float(np.linalg.norm(E[:j, 0])), 1e-300)


def _adjoint_converged(delta: float, tol: float):
    """Arnoldi's ``stop`` for an adjoint piece of length ``delta``: its error test passed.

    The test of the full piece (:func:`_adjoint_piece_passes`) on the first ``j >= 2``
    steps: the adjoint space needs fewer vectors than the forward one on short pieces,
    and the remaining steps would only add matvecs and Gram–Schmidt passes over a longer
    basis. The piece's own test after the run is the same, so it passes there too.
    """

    def stop(H: np.ndarray) -> bool:
        return H.shape[1] >= 2 and _adjoint_piece_passes(H, delta, tol)

    return stop


def _expm_e1(H: np.ndarray, t: float) -> np.ndarray:
    """``e^{tH} e_1`` of a small matrix (``e_1`` for ``t = 0``)."""
    if t == 0.0:
        out = np.zeros(H.shape[0])
        out[0] = 1.0
        return out
    return sla.expm(t * H)[:, 0]


# --------------------------------------------------------------------------- deep stacks
class _LinearLoss(Loss):
    """``<G, V>`` plus the regulariser of another loss: the loss seen by one layer of a stack."""

    def __init__(self, G: np.ndarray, base: Loss) -> None:
        self.G = G
        self.base = base

    def data_value(self, V):
        return float(np.sum(self.G * V))

    def data_gradient(self, V):
        return self.G

    def reg_value(self, weights):
        return self.base.reg_value(weights)

    def reg_gradient(self, weights):
        return self.base.reg_gradient(weights)


@attrs.frozen(eq=False)
class StackGradientResult:
    r"""Value and gradients of a loss of a :class:`~assignflow.DeepLinearizedAssignmentFlow`.

    The fields are the constructor's arguments and the record's attributes.

    Parameters
    ----------
    value : float
        :math:`f_L(V) + \sum_\ell\mathcal{R}(\Omega_\ell)` with :math:`V = \sum_\ell V_\ell`.
    data_value : float
        The data term :math:`f_L(V)`.
    V : ndarray (I, J)
        The stack's tangent vector (:math:`W_K = \operatorname{softmax}(JV)`).
    layers : tuple of GradientResult
        Per layer: ``gradient`` :math:`\partial\mathcal{L}/\partial\omega_\ell` (with
        its regulariser), ``rho_gradient`` :math:`\partial\mathcal{L}/\partial\rho_\ell`
        and ``distance_gradient`` :math:`\partial\mathcal{L}/\partial D_\ell` (both
        including the paths through the later layers' base points),
        ``T_gradient`` :math:`\partial\mathcal{L}/\partial h_\ell`.
    base_gradients : tuple of ndarray (I, J)
        :math:`\partial\mathcal{L}/\partial(\sum_{m<\ell}V_m)` at every layer's input
        (zero for the first layer).
    forward : FlowResult
        The stack's forward solve.
    """

    value: float
    data_value: float
    V: np.ndarray
    layers: tuple[GradientResult, ...]
    base_gradients: tuple[np.ndarray, ...]
    forward: FlowResult

    @property
    def gradient(self) -> np.ndarray:
        """All layers' weight gradients, concatenated."""
        return np.concatenate([r.gradient for r in self.layers])

    @property
    def distance_gradient(self) -> np.ndarray:
        r""":math:`\partial\mathcal{L}/\partial D` when all layers share :math:`D`."""
        return sum(r.distance_gradient for r in self.layers)


def _estimate_stack(
    est: GradientEstimator,
    stack: DeepLinearizedAssignmentFlow,
    loss: Loss,
    integrator: Any,
    forward: Any,
    feature_hook: Any = None,
) -> StackGradientResult:
    """Backward through the layers; ``feature_hook(layer, grad_weights)`` may add
    ``∂L/∂(Σ_{m<ℓ} V_m)`` for weights that depend on the layer's input."""
    with blas_single_thread():
        return _stack_backward(est, stack, loss, integrator, forward, feature_hook)


def _stack_backward(est, stack, loss, integrator, forward, feature_hook):
    K = stack.n_layers
    if forward is None:
        forward = stack.solve(integrator, record=True)
    elif not isinstance(forward, FlowResult) or forward.layers is None:
        raise TypeError("forward must be the FlowResult of stack.solve(..., record=True)")
    elif len(forward.layers) != K:
        raise ValueError(f"forward has {len(forward.layers)} layers, the stack {K}")
    J = stack.shape[1]
    V = forward.V
    g = _data_gradient(loss, V)
    before = [None]
    for r in forward.layers[:-1]:
        before.append(r.V.copy() if before[-1] is None else before[-1] + r.V)
    carry = np.zeros(stack.shape)
    out: list[GradientResult] = [None] * K  # type: ignore[list-item]
    base_grads: list[np.ndarray] = [np.zeros(stack.shape)] * K
    for layer in range(K - 1, -1, -1):
        flow = stack.layer_flow(layer, before[layer])
        g_layer = g + carry
        r = est._estimate(flow, _LinearLoss(g_layer, loss), integrator, forward.layers[layer])
        rho = stack.layers[layer].rho
        rho_grad = r.rho_gradient
        if before[layer] is not None:
            # D' = D - ρ J Σ_{m<ℓ} V_m: the base point enters through the distances
            d_before = -(rho * J) * r.distance_gradient
            rho_grad += float(np.sum(r.distance_gradient * (-J * before[layer])))
            if feature_hook is not None:
                extra = feature_hook(layer, r.gradient)
                if extra is not None:
                    d_before = d_before + extra
            base_grads[layer] = d_before
            carry = carry + d_before
        out[layer] = attrs.evolve(r, rho_gradient=rho_grad)
    reg = sum(float(loss.reg_value(s.weights)) for s in stack.layers)
    data_value = float(loss.data_value(V)) if loss.has_data_term else 0.0
    fixed = tuple(attrs.evolve(r, value=data_value + reg, data_value=data_value, V=V) for r in out)
    return StackGradientResult(
        value=data_value + reg,
        data_value=data_value,
        V=V,
        layers=fixed,
        base_gradients=tuple(base_grads),
        forward=forward,
    )


# --------------------------------------------------------------------------- quadrature
def _solve_forward(flow: Any, integrator: Any, forward: Any) -> FlowResult:
    return forward if forward is not None else flow.solve(integrator)


@registry.gradient_estimators.register("adjoint_quadrature")
@attrs.frozen
class AdjointQuadrature(GradientEstimator):
    r"""Near-exact gradient from the adjoint state and Gauss–Legendre quadrature.

    :math:`G_{11} = T\int_0^1\lambda(s)\,v((1-s)T)^\top ds` and
    :math:`G_{12} = T\int_0^1\lambda(s)\,ds` with :math:`\lambda(s) = e^{sTA^\top}g`
    and the forward state :math:`v(t)` (gradients with respect to the generator
    :math:`[[A, b], [0, 0]]`). Both are computed with adaptive Krylov integration
    (tolerance ``tol``) at the ``n_nodes`` Gauss–Legendre nodes; the integrand is an
    entire function of ``s``, so the quadrature converges exponentially — once
    ``n_nodes`` exceeds about :math:`T\|A\|`: with the default 16 nodes the relative
    error is ~1e-15 for the horizons of the paper (:math:`T \le 10`) but ~2e-3 at
    :math:`T = 10^3` (32 nodes: 3e-6, 64 nodes: 2e-11). Memory: ``n_nodes + O(1)``
    vectors of size ``I·J``. The value and :math:`V_T` are those of the given
    integrator's forward solve; the gradient is that of the exact flow.

    Parameters
    ----------
    n_nodes : int, default=16
        Gauss–Legendre nodes (1 to 1024).
    tol : float, default=1e-10
        Relative tolerance of the Krylov solves.
    krylov_dim : int, default=20
        Krylov dimension of those solves.
    return_factors : bool, default=False
        Store the factors in the result.
    """

    n_nodes: int = attrs.field(default=16, validator=_bounded("n_nodes", MAX_NODES))
    tol: float = attrs.field(default=1e-10, converter=positive_float_converter)
    krylov_dim: int = attrs.field(default=20, validator=_bounded("krylov_dim", MAX_KRYLOV_DIM))
    return_factors: bool = attrs.field(default=False, validator=_bool_validator)

    def _estimate(self, flow, loss, integrator, forward):
        forward = _solve_forward(flow, integrator, forward)
        T, m, tol = flow.T, self.krylov_dim, self.tol
        V = forward.V
        n_mv = forward.stats.n_matvecs
        g = _data_gradient(loss, V)
        if not np.any(g):
            return _finish(flow, loss, forward, g, None, n_matvecs=n_mv)
        b = flow.B.ravel()
        nodes, wts = np.polynomial.legendre.leggauss(self.n_nodes)
        s = 0.5 * (nodes + 1.0)  # ascending in (0, 1)
        c = 0.5 * wts
        # forward states at t_q = (1 - s_q) T, marching forward in time
        Ws: list[np.ndarray] = [None] * self.n_nodes  # type: ignore[list-item]
        v, t = np.zeros_like(b), 0.0
        for q in range(self.n_nodes - 1, -1, -1):
            tq = (1.0 - s[q]) * T
            if tq > t:
                v, inf = solve_linear_ode(flow.matvec, b, tq - t, v, m=m, tol=tol)
                n_mv += inf.n_matvecs
                t = tq
            Ws[q] = v.reshape(flow.shape)
        # adjoint states λ(s_q) = exp(s_q T Aᵀ) g, marching in s
        lam, s_prev = g.ravel().astype(flow.dtype), 0.0
        acc = _Contraction(flow)
        keep = []
        for q in range(self.n_nodes):
            ds = (s[q] - s_prev) * T
            if ds > 0 and np.any(lam):
                lam, inf = expm_krylov(flow.rmatvec, lam, ds, m=m, tol=tol)
                n_mv += inf.n_matvecs
            s_prev = s[q]
            U = (T * c[q]) * lam.reshape(flow.shape)
            acc.add(U, Ws[q])
            acc.add_b(U)
            if self.return_factors:
                keep.append(U)
        factors = (np.array(keep), np.array(Ws)) if self.return_factors else None
        return _finish(flow, loss, forward, g, acc, factors=factors, n_matvecs=n_mv)


# --------------------------------------------------------------------------- references
_MAX_DENSE = 3000


@registry.gradient_estimators.register("dense_frechet")
@attrs.frozen
class DenseFrechet(GradientEstimator):
    r"""Exact gradient from the dense Fréchet derivative (tiny problems only).

    Forms the ``k×k`` matrix :math:`\mathcal{A} = T[[A^J, b],[0, 0]]` (``k = I·J + 1``),
    computes :math:`G = ` ``expm_frechet(𝒜ᵀ, ĝ e_kᵀ)`` at the integrator's
    :math:`V_T` and contracts the full :math:`G_{11}` through its SVD. A reference
    for tests; refuses ``k > 3000``.
    """

    def _estimate(self, flow, loss, integrator, forward):
        n = flow.size
        if n + 1 > _MAX_DENSE:
            raise ValueError(
                f"DenseFrechet forms a dense {n + 1}x{n + 1} matrix; use it for I*J < {_MAX_DENSE} "
                "only (ClosedFormLowRank or AdjointQuadrature scale)"
            )
        forward = _solve_forward(flow, integrator, forward)
        V = forward.V
        g = _data_gradient(loss, V)
        if not np.any(g):
            return _finish(flow, loss, forward, g, None, n_matvecs=n + 1)
        f64 = flow.astype(np.float64)
        mv = f64.augmented_operator().matvec
        aug = np.column_stack([mv(e) for e in np.eye(n + 1)])
        E = np.zeros((n + 1, n + 1))
        E[:n, n] = g.ravel()
        G = flow.T * sla.expm_frechet(aug.T, E, compute_expm=False)
        Y, sig, Zt = np.linalg.svd(G[:n, :n])
        keep = sig > sig[0] * 1e-15 if sig.size and sig[0] > 0 else np.zeros(0, bool)
        acc = _Contraction(f64)
        for i in np.flatnonzero(keep):
            acc.add((sig[i] * Y[:, i]).reshape(flow.shape), Zt[i].reshape(flow.shape))
        acc.add_b(G[:n, n].reshape(flow.shape))
        return _finish(f64, loss, forward, g, acc, singular_values=sig, n_matvecs=n + 1)


@registry.gradient_estimators.register("finite_diff")
@attrs.frozen
class FiniteDiff(GradientEstimator):
    r"""Central finite differences of the integrator's forward map (tiny problems only).

    Each stored :math:`\omega_{ik}` is perturbed by :math:`\pm\varepsilon` with the
    others fixed (row sums are not renormalised: the Euclidean gradient of the
    unconstrained function), and :math:`\rho`, :math:`T` by relative steps; the flow
    is solved with the integrator each time (default: ``ExponentialKrylov`` with
    ``krylov_dim=30`` and tolerance ``tol``): ``2·nnz + 4`` solves, plus ``2·I·J``
    for the distance gradient when ``distances=True``.

    Parameters
    ----------
    eps : float, default=1e-6
        Relative step (``eps · max(1, |x|)``); at least ``1e-12``, below which the
        difference quotient is rounding noise.
    tol : float, default=1e-13
        Tolerance of the default forward integrator.
    max_edges : int, default=5000
        Refuse larger graphs (the cost is ``2·nnz`` solves).
    distances : bool, default=False
        Also difference every :math:`D_{ij}` (``distance_gradient``).
    """

    eps: float = attrs.field(default=1e-6, converter=positive_float_converter)
    tol: float = attrs.field(default=1e-13, converter=positive_float_converter)
    max_edges: int = attrs.field(default=5000, validator=_bounded("max_edges", 10**7))
    distances: bool = attrs.field(default=False, validator=_bool_validator)

    @eps.validator
    def _check_eps(self, attribute: Any, value: float) -> None:
        if value < 1e-12:
            raise ValueError(
                f"eps must be >= 1e-12 (smaller steps only difference rounding noise), got {value}"
            )

    def _default_integrator(self) -> LinearIntegrator:
        return ExponentialKrylov(krylov_dim=30, tol=self.tol)

    def _estimate(self, flow, loss, integrator, forward):
        vals = flow.weights.values
        if vals.size > self.max_edges:
            raise ValueError(
                f"FiniteDiff needs 2*nnz = {2 * vals.size} flow solves; the graph has more than "
                f"max_edges={self.max_edges} edges (raise max_edges to force it)"
            )
        forward = _solve_forward(flow, integrator, forward)
        sim = flow.similarity

        def f(values=vals, rho=sim.rho, T=flow.T, D=sim.distances) -> float:
            w = Weights._unchecked(flow.weights.graph, values)
            s2 = attrs.evolve(sim, weights=w, rho=rho, distances=D)
            V = LinearizedAssignmentFlow(s2, T=T).solve(integrator).V
            return float(loss.data_value(V)) + float(loss.reg_value(w))

        def central(x: float, fn) -> float:
            h = self.eps * max(1.0, abs(x))
            return (fn(x + h) - fn(x - h)) / (2 * h)

        grad = np.empty(vals.size)
        work = vals.copy()
        for e in range(vals.size):

            def at(x, e=e):
                work[e] = x
                out = f(values=work)
                work[e] = vals[e]
                return out

            grad[e] = central(vals[e], at)
        rho_grad = central(sim.rho, lambda x: f(rho=x))
        T_grad = central(flow.T, lambda x: f(T=x))
        dist_grad = None
        n_solves = 2 * vals.size + 5
        if self.distances:
            D = np.array(sim.distances)
            dist_grad = np.empty(D.shape)
            for idx in np.ndindex(D.shape):

                def at_d(x, idx=idx):
                    D[idx] = x
                    out = f(D=D.copy())
                    D[idx] = sim.distances[idx]
                    return out

                dist_grad[idx] = central(float(D[idx]), at_d)
            n_solves += 2 * D.size
        # the differences already contain the regulariser
        return GradientResult.from_gradient(
            flow,
            loss,
            forward.V,
            grad,
            add_regularizer=False,
            n_matvecs=n_solves,
            rho_gradient=rho_grad,
            T_gradient=T_grad,
            distance_gradient=dist_grad,
            forward=forward,
        )
