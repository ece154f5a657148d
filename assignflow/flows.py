r"""The assignment flow and the linearized assignment flow (LAF).

**Assignment flow** (the paper's eq. 2.9, :ref:`§3 <math-flow>`):
:math:`\dot W = R_W S(W)`, :math:`W(0) = \mathbb{1}_\mathcal{W}`. It converges to
integral assignments; solve it with :class:`~assignflow.GeometricEuler` or
:class:`~assignflow.LinearizedSequence`.

**Linearized assignment flow** (eqs. 1.1–1.3, 2.22; :ref:`§4 <math-laf>`): linearise at a point
:math:`W_0` (the barycenter by default), :math:`S_0 = S(W_0)`, and parametrise
:math:`W(t) = \operatorname{Exp}_{W_0}(V(t))` with :math:`V(t)\in T_0`:

.. math::
    \dot V = A(\Omega) V + B,\qquad V(0) = 0,\qquad
    A(\Omega)V = R_{W_0}\big(R_{S_0}(\Omega (V / W_0))\big),\quad B = R_{W_0} S_0 .

At the barycenter :math:`A V = R_{S_0}(\Omega V)` and :math:`B = \Pi_0 S_0 / J`, with
:math:`S_0 = \operatorname{softmax}(-\Omega D/\rho)` — so :math:`\Omega` enters both
:math:`A` and :math:`B`. :math:`A` is never formed: one application is a sparse
product plus a row-wise replicator, fused block by block. Solve with
:class:`~assignflow.ExponentialKrylov` (the paper's eqs. 2.27–2.29) or
:class:`~assignflow.Euler`.

Vectors of length ``n = I·J`` are the row-stacked :math:`\operatorname{vec}_r(V)`
(``V.ravel()`` in C order), as in the paper's :math:`A^J(\Omega) =
\operatorname{Diag}(R_{S_0})(\Omega\otimes I_J)`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import attrs
import numpy as np
from scipy.sparse.linalg import LinearOperator

from . import registry
from ._cache import peek_cached
from ._parallel import n_chunks_for, row_chunks, run_chunks
from ._simplex import exp, project_tangent, replicator, replicator_inplace, softmax_scaled
from ._validation import as_float_array, check_positive_float
from .integrators import (
    ExponentialKrylov,
    FlowIntegrator,
    FlowResult,
    GeometricEuler,
    IntegrationStats,
    LinearIntegrator,
)
from .similarity import SimilarityOperator

__all__ = [
    "AssignmentFlow",
    "DeepLinearizedAssignmentFlow",
    "LinearizedAssignmentFlow",
    "augmented_operator",
]


def augmented_operator(operator: Any, b: Any, scale: float = 1.0) -> LinearOperator:
    r"""The augmented operator :math:`s\,[[A, b], [0, 0]]` of :math:`\dot x = Ax + b`.

    :math:`x(T)` is the first ``n`` entries of :math:`e^{T[[A, b], [0, 0]]}[x_0; 1]` (the
    paper's eq. 2.24). Matrix-free: :math:`s[[A, b],[0, 0]][x;\xi] = s[Ax + b\xi; 0]`
    and the transpose :math:`s[A^\top x; \langle b, x\rangle]`. This is the one builder
    of the augmented operator (flows, gradient estimators and integrator plugins use
    it).

    Parameters
    ----------
    operator : scipy.sparse.linalg.LinearOperator
        :math:`A`, shape ``(n, n)``, with ``matvec`` and ``rmatvec``.
    b : array (n,)
        The inhomogeneity.
    scale : float, default=1.0
        The factor :math:`s` (e.g. the horizon :math:`T`).

    Returns
    -------
    scipy.sparse.linalg.LinearOperator
        Shape ``(n + 1, n + 1)``, in ``b``'s precision (float32 or float64).
    """
    b = np.asarray(b).ravel()
    n = b.size
    if getattr(operator, "shape", None) != (n, n):
        raise ValueError(f"operator must have shape ({n}, {n}) to match b")
    s = float(scale)
    dt = np.float32 if b.dtype == np.float32 else np.float64

    def mv(z: np.ndarray) -> np.ndarray:
        z = np.asarray(z).ravel()
        out = np.empty(n + 1, dtype=dt)
        if z[n] != 0.0 and not z[:n].any():
            np.multiply(b, z[n], out=out[:n])  # 𝒜 e_k: no A application needed
        else:
            out[:n] = operator.matvec(z[:n]).ravel()
            if z[n] != 0.0:
                out[:n] += z[n] * b
        out[:n] *= s
        out[n] = 0.0
        return out

    def rmv(z: np.ndarray) -> np.ndarray:
        z = np.asarray(z).ravel()
        out = np.empty(n + 1, dtype=dt)
        out[:n] = operator.rmatvec(z[:n]).ravel()
        out[:n] *= s
        # accumulate in double: in float32 a long dot product loses digits
        out[n] = s * float(np.einsum("i,i->", b, z[:n], dtype=np.float64))
        return out

    return LinearOperator((n + 1, n + 1), matvec=mv, rmatvec=rmv, dtype=dt)


def _check_similarity(s: Any) -> SimilarityOperator:
    if not isinstance(s, SimilarityOperator):
        raise TypeError(f"similarity must be a SimilarityOperator, got {type(s).__name__}")
    return s


def _check_integrator(integrator: Any, kind: type, flow_name: str, default: Any) -> Any:
    if integrator is None:
        return default
    if isinstance(integrator, (str, type)):
        integrator = registry.integrators.resolve(integrator)
    if not isinstance(integrator, kind):
        raise TypeError(
            f"integrator {integrator!r} cannot solve the {flow_name}; expected a "
            f"{kind.__name__} (e.g. {default!r})"
        )
    return integrator


def _replicator_rows(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``R_p x`` row block by row block on the thread pool (a fresh array)."""
    out = np.empty_like(x)
    chunks = row_chunks(x.shape[0], n_chunks_for(x.size))

    def work(k: int) -> None:
        a, c = chunks[k]
        blk = out[a:c]
        blk[...] = x[a:c]
        replicator_inplace(p[a:c], blk)

    run_chunks(work, len(chunks))
    return out


def _check_point(similarity: SimilarityOperator, W0: Any) -> np.ndarray:
    """A read-only copy of ``W0`` after checking it is a point of the manifold."""
    M = similarity.manifold
    w0 = as_float_array(W0, "W0", shape=M.shape, copy=True)
    if not M.belongs(w0, atol=1e-8):
        raise ValueError(
            "W0 must be a point of the assignment manifold: entries > 0, rows summing to 1"
        )
    w0.flags.writeable = False
    return w0


class _FlowOperator(LinearOperator):
    """:math:`A^J` of a flow as a LinearOperator, with ``matvec_into`` for the integrators.

    ``matvec_into(x, out)`` writes :math:`A^J x` into ``out`` (never aliasing ``x``),
    so that an Arnoldi run takes each product straight into its basis.
    """

    def __init__(self, flow: LinearizedAssignmentFlow) -> None:
        self.flow = flow
        super().__init__(dtype=flow.dtype, shape=(flow.size, flow.size))

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self.flow.matvec(np.ravel(x))

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self.flow.rmatvec(np.ravel(x))

    def matvec_into(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """:math:`A^J x` for a flat ``x`` of the flow's dtype, into ``out`` if given."""
        flow = self.flow
        dest = None if out is None else out.reshape(flow.shape)
        return flow._matvec2d(x.reshape(flow.shape), out=dest).reshape(-1)


@attrs.frozen(eq=False, repr=False)
class LinearizedAssignmentFlow:
    r"""The linearized assignment flow :math:`\dot V = A(\Omega)V + B` on :math:`[0, T]`.

    Parameters
    ----------
    similarity : SimilarityOperator
        Weights :math:`\Omega`, distances :math:`D` and scale :math:`\rho`.
    T : float, default=1.0
        Time horizon :math:`T > 0`.
    W0 : array (I, J), optional
        Linearisation point; the barycenter :math:`\mathbb{1}_\mathcal{W}` if omitted.

    Notes
    -----
    The working precision is the similarity operator's ``dtype``: with ``float32``
    (e.g. ``SimilarityOperator(om, D.astype(np.float32), rho)``) :math:`S_0`,
    :math:`B`, the operator's diagonals, the Krylov basis and the solution are
    single precision, which halves the memory of labeling very large images.

    Examples
    --------
    >>> import assignflow as af
    >>> g = af.GridGraph((8, 8))
    >>> S = af.SimilarityOperator(af.Weights.uniform(g), np.random.rand(64, 3), rho=0.1)
    >>> res = af.LinearizedAssignmentFlow(S, T=2.0).solve(af.ExponentialKrylov())
    >>> res.labels.shape
    (64,)
    """

    similarity: SimilarityOperator = attrs.field(converter=_check_similarity)
    T: float = attrs.field(default=1.0)
    W0: np.ndarray | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "T", check_positive_float(self.T, "T"))
        if self.W0 is not None:
            object.__setattr__(self, "W0", _check_point(self.similarity, self.W0))

    def __repr__(self) -> str:
        at = "barycenter" if self.W0 is None else "W0"
        return f"LinearizedAssignmentFlow({self.similarity!r}, T={self.T:g}, at={at})"

    # ------------------------------------------------------------------ basics
    @property
    def n_nodes(self) -> int:
        """Number of nodes ``I`` (rows of :math:`V` and :math:`W`)."""
        return self.similarity.n_nodes

    @property
    def n_labels(self) -> int:
        """Number of labels ``J`` (columns of :math:`V` and :math:`W`)."""
        return self.similarity.n_labels

    @property
    def shape(self) -> tuple[int, int]:
        """``(I, J)``."""
        return (self.n_nodes, self.n_labels)

    @property
    def size(self) -> int:
        """``n = I·J``, the dimension of the vectorised system."""
        return self.n_nodes * self.n_labels

    @property
    def weights(self):
        r"""The weights :math:`\Omega` of the similarity operator (:class:`~assignflow.Weights`)."""
        return self.similarity.weights

    @property
    def at_barycenter(self) -> bool:
        r"""Whether the linearisation point is the barycenter :math:`\mathbb{1}_\mathcal{W}`."""
        return self.W0 is None

    @property
    def dtype(self) -> np.dtype:
        """Working precision (the similarity operator's ``dtype``)."""
        return self.similarity.dtype

    def astype(self, dtype: Any) -> LinearizedAssignmentFlow:
        """The same flow in another working precision (``self`` if it already has it).

        Parameters
        ----------
        dtype : str or numpy.dtype
            ``"float64"`` or ``"float32"``.

        Returns
        -------
        LinearizedAssignmentFlow
            The flow with its similarity operator in that precision (same ``T``
            and ``W0``).
        """
        sim = self.similarity.astype(dtype)
        return self if sim is self.similarity else attrs.evolve(self, similarity=sim)

    def _is_cached(self, name: str) -> bool:
        """Whether the cached property ``name`` is computed (without computing it)."""
        return peek_cached(self, name) is not None

    def _drop_cached(self, name: str) -> None:
        """Forget the cached property ``name`` (recomputed, identically, when next read)."""
        if self._is_cached(name):
            object.__delattr__(self, name)

    @cached_property
    def base_point(self) -> np.ndarray:
        """The linearisation point :math:`W_0`."""
        return self.similarity.manifold.barycenter() if self.W0 is None else self.W0

    @cached_property
    def _w0(self) -> np.ndarray:
        """:math:`W_0` in the working precision (only used away from the barycenter)."""
        return self.base_point.astype(self.dtype, copy=False)

    def _exp0(self, V: np.ndarray) -> np.ndarray:
        r""":math:`\operatorname{Exp}_{W_0}(V)` (the barycenter: :math:`\mathrm{softmax}(JV)`)."""
        if self.W0 is None:
            # no (I, J) array of 1/J: for large images every full-size array counts
            return softmax_scaled(V, self.n_labels)
        return exp(self._w0, V)

    @cached_property
    def S0(self) -> np.ndarray:
        """:math:`S_0 = S(W_0)`."""
        if self.W0 is None:
            return self.similarity.S0
        out = self.similarity.similarity(self.W0).astype(self.dtype, copy=False)
        out.flags.writeable = False
        return out

    @cached_property
    def B(self) -> np.ndarray:
        r""":math:`B = R_{W_0} S_0` (at the barycenter :math:`\Pi_0 S_0 / J`)."""
        if self.W0 is None:
            out = project_tangent(self.S0)
            out /= self.n_labels
        else:
            out = replicator(self._w0, self.S0)
        out.flags.writeable = False
        return out

    def with_weights(self, weights) -> LinearizedAssignmentFlow:
        """The same flow with other weights :math:`\\Omega`.

        Parameters
        ----------
        weights : Weights
            The new :math:`\\Omega`, on a graph with the flow's ``n_nodes`` nodes.

        Returns
        -------
        LinearizedAssignmentFlow
            A new flow with the same distances, :math:`\\rho`, ``T`` and ``W0``
            (so :math:`S_0`, :math:`B` and :math:`A` change with :math:`\\Omega`);
            ``self`` is unchanged.
        """
        return attrs.evolve(self, similarity=self.similarity.with_weights(weights))

    # ------------------------------------------------------------------ operators
    def _matvec2d(self, V: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        s0 = self.S0
        if self.W0 is None:

            def post(block: np.ndarray, a: int, c: int) -> None:
                replicator_inplace(s0[a:c], block)

            return self.weights.operator.apply(V, rowwise=post, out=out)
        w0 = self._w0

        def post_w0(block: np.ndarray, a: int, c: int) -> None:
            replicator_inplace(s0[a:c], block)
            replicator_inplace(w0[a:c], block)

        return self.weights.operator.apply(V / w0, rowwise=post_w0, out=out)

    def _rmatvec2d(self, U: np.ndarray) -> np.ndarray:
        if self.W0 is None:
            return self.weights.operator.apply_transpose(_replicator_rows(self.S0, U))
        w0 = self._w0
        r = _replicator_rows(self.S0, _replicator_rows(w0, U))

        def post(block: np.ndarray, a: int, c: int) -> None:
            block /= w0[a:c]

        return self.weights.operator.apply_transpose(r, rowwise=post)

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """``A^J x`` on flat vectors of length ``n`` (unchecked; for integrators).

        Parameters
        ----------
        x : ndarray, shape (n,)
            :math:`\\operatorname{vec}_r(V)` with ``n = I·J``, in the working
            precision; neither shape nor values are checked.

        Returns
        -------
        ndarray, shape (n,)
            :math:`A^J x`, a new array.
        """
        return self._matvec2d(x.reshape(self.shape)).ravel()

    def rmatvec(self, x: np.ndarray) -> np.ndarray:
        """``(A^J)ᵀ x`` on flat vectors of length ``n`` (unchecked).

        Parameters
        ----------
        x : ndarray, shape (n,)
            A flat vector of length ``n = I·J`` in the working precision; neither
            shape nor values are checked.

        Returns
        -------
        ndarray, shape (n,)
            :math:`(A^J)^\\top x`, a new array.
        """
        return self._rmatvec2d(x.reshape(self.shape)).ravel()

    def _tangent_arg(self, V: Any, name: str) -> np.ndarray:
        arr = as_float_array(V, name)
        if arr.shape == (self.size,):
            arr = arr.reshape(self.shape)
        if arr.shape != self.shape:
            raise ValueError(
                f"{name} must have shape {self.shape} (or ({self.size},)), got {arr.shape}"
            )
        return arr

    def A(self, V: Any) -> np.ndarray:
        r""":math:`A(\Omega)V = R_{W_0}(R_{S_0}(\Omega(V/W_0)))`.

        Maps :math:`T_0` into :math:`T_0`.

        Parameters
        ----------
        V : array_like, shape (n_nodes, n_labels) or (n_nodes * n_labels,)
            A tangent vector in :math:`T_0` (rows summing to 0; not checked), or
            its row-stacked vector.

        Returns
        -------
        ndarray
            :math:`A(\Omega)V`, of the shape of ``V``.
        """
        shape_in = np.shape(V)
        out = self._matvec2d(self._tangent_arg(V, "V"))
        return out.reshape(shape_in)

    def AT(self, U: Any) -> np.ndarray:
        r"""Transpose: :math:`A^\top U = \Omega^\top(R_{S_0}(R_{W_0}U)) / W_0`.

        Parameters
        ----------
        U : array_like, shape (n_nodes, n_labels) or (n_nodes * n_labels,)
            The matrix (or its row-stacked vector) to apply the transpose to.

        Returns
        -------
        ndarray
            :math:`A^\top U`, of the shape of ``U``.
        """
        shape_in = np.shape(U)
        out = self._rmatvec2d(self._tangent_arg(U, "U"))
        return out.reshape(shape_in)

    def aslinearoperator(self) -> LinearOperator:
        """:math:`A^J` as a ``scipy.sparse.linalg.LinearOperator`` of shape ``(n, n)``.

        ``matvec`` is :math:`A^J x`, ``rmatvec`` is :math:`(A^J)^\\top x`, both on flat
        vectors of length ``n = I·J`` in the flow's working precision. Integrators
        receive this operator.

        Returns
        -------
        scipy.sparse.linalg.LinearOperator
            Shape ``(n, n)``, ``dtype`` the flow's working precision; it applies
            :meth:`matvec` and :meth:`rmatvec` (nothing is formed).
        """
        return _FlowOperator(self)

    def augmented_operator(self, scale: float | None = None) -> LinearOperator:
        r"""The augmented operator :math:`\mathcal{A} = s\,[[A^J, b], [0, 0]]` of size ``k = n+1``.

        With the default ``scale`` :math:`s = T`, :math:`v(T)` is the first ``n``
        entries of :math:`e^{\mathcal{A}} e_k` (the paper's eq. 2.24); see
        :func:`augmented_operator`.

        Parameters
        ----------
        scale : float, optional
            The factor :math:`s`; ``T`` if omitted, ``1`` for the generator of the
            augmented flow :math:`\dot z = [[A, b], [0, 0]] z`.

        Returns
        -------
        scipy.sparse.linalg.LinearOperator
            Shape ``(n + 1, n + 1)``, in the flow's working precision.
        """
        return augmented_operator(
            self.aslinearoperator(), self.B.ravel(), self.T if scale is None else scale
        )

    # ------------------------------------------------------------------ solving
    def solve(
        self, integrator: Any = None, *, progress: Any = None, record: bool = False
    ) -> FlowResult:
        """Integrate to time ``T`` and return :math:`V(T)`, :math:`W(T)` and the labels.

        Parameters
        ----------
        integrator : LinearIntegrator, str or class, default=ExponentialKrylov()
            :class:`~assignflow.ExponentialKrylov` or :class:`~assignflow.Euler`, an
            instance, a class, or a registered name.
        progress : callable, optional
            Called as ``progress(fraction)`` with the fraction of ``[0, T]`` done.
        record : bool, default=False
            Keep the forward computation (``result.trajectory``) so that a gradient
            estimator can differentiate exactly this solve
            (``estimator.estimate(flow, loss, forward=result)``).

        Returns
        -------
        FlowResult
            ``V`` :math:`= V(T)`, ``W`` :math:`= \\operatorname{Exp}_{W_0}(V(T))`, ``T``
            and the integrator's ``stats`` (with the trajectory if ``record``).
        """
        integ = _check_integrator(
            integrator, LinearIntegrator, "linearized assignment flow", ExponentialKrylov()
        )
        options: dict[str, Any] = {}
        if progress is not None:
            options["progress"] = progress
        if record:
            options["record"] = True
        x, stats = integ.integrate(self.aslinearoperator(), self.B.ravel(), self.T, **options)
        V = x.reshape(self.shape)
        W = self._exp0(V)
        return FlowResult(V=V, W=W, T=self.T, stats=stats)


@attrs.frozen(eq=False, repr=False)
class AssignmentFlow:
    r"""The (nonlinear) assignment flow :math:`\dot W = R_W S(W)`, :math:`W(0) = W_0`.

    Parameters
    ----------
    similarity : SimilarityOperator
        Weights :math:`\Omega`, distances :math:`D` and scale :math:`\rho` of the
        similarity map :math:`S(W)` (eq. 2.17).
    T : float, optional
        Time horizon. If omitted, integrate until the mean row entropy falls below
        the integrator's tolerance (the flow converges to integral assignments).
    W0 : array (I, J), optional
        Initial point; the barycenter if omitted.
    """

    similarity: SimilarityOperator = attrs.field(converter=_check_similarity)
    T: float | None = attrs.field(default=None)
    W0: np.ndarray | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        if self.T is not None:
            object.__setattr__(self, "T", check_positive_float(self.T, "T"))
        if self.W0 is not None:
            object.__setattr__(self, "W0", _check_point(self.similarity, self.W0))

    def __repr__(self) -> str:
        return f"AssignmentFlow({self.similarity!r}, T={self.T})"

    @property
    def shape(self) -> tuple[int, int]:
        """``(I, J)``: nodes and labels."""
        return (self.similarity.n_nodes, self.similarity.n_labels)

    def initial_log_point(self) -> np.ndarray:
        """``log W(0)`` (the integrators work in the log domain: no underflow to 0).

        Returns
        -------
        ndarray, shape (n_nodes, n_labels)
            :math:`\\log W_0`, or :math:`-\\log J` everywhere at the barycenter.
        """
        if self.W0 is None:
            return np.full(self.shape, -np.log(self.shape[1]))
        return np.log(self.W0)

    def vector_field(self, W: Any) -> np.ndarray:
        """:math:`R_W S(W)`, the right-hand side of the assignment flow (eq. 2.9).

        Parameters
        ----------
        W : array_like, shape (n_nodes, n_labels)
            A point of the assignment manifold (entries > 0).

        Returns
        -------
        ndarray, shape (n_nodes, n_labels)
            The tangent vector :math:`R_W S(W)` (rows summing to 0).
        """
        w = self.similarity.manifold._point(W)
        return replicator(w, self.similarity.similarity(w))

    def solve(self, integrator: Any = None) -> FlowResult:
        """Integrate the flow; returns a :class:`~assignflow.FlowResult`.

        Parameters
        ----------
        integrator : FlowIntegrator, str or class, default=GeometricEuler()
            :class:`~assignflow.GeometricEuler` or :class:`~assignflow.LinearizedSequence`,
            an instance, a class, or a registered name.

        Returns
        -------
        FlowResult
            ``W`` the assignment reached, ``V`` :math:`= \\Pi_0 \\log W / J`, ``T``
            the time reached (with ``T=None``: where the mean row entropy fell below
            the integrator's ``tol``), and ``stats``.
        """
        integ = _check_integrator(integrator, FlowIntegrator, "assignment flow", GeometricEuler())
        return integ.solve(self)


def _as_layers(layers: Any) -> tuple[SimilarityOperator, ...]:
    if isinstance(layers, SimilarityOperator):
        return (layers,)
    try:
        out = tuple(layers)
    except TypeError:
        raise TypeError(
            f"layers must be a sequence of SimilarityOperator, got {type(layers).__name__}"
        ) from None
    if not out:
        raise ValueError("layers must hold at least one SimilarityOperator")
    for k, s in enumerate(out):
        if not isinstance(s, SimilarityOperator):
            raise TypeError(f"layers[{k}] must be a SimilarityOperator, got {type(s).__name__}")
        if s.distances.shape != out[0].distances.shape:
            raise ValueError(
                f"layers[{k}] has distances of shape {s.distances.shape}, layers[0] "
                f"{out[0].distances.shape}: every layer labels the same nodes with the same labels"
            )
    return out


@attrs.frozen(eq=False, repr=False)
class DeepLinearizedAssignmentFlow:
    r"""A deep linearized assignment flow: ``K`` LAF layers, each relinearised at the last output.

    The sequence of linearized flows (the paper's eq. 1.6) and its compositions
    (Sect. 5.2) with weights of their own per layer: layer :math:`\ell` linearises
    the assignment flow at the previous output :math:`W_{\ell-1}` (the barycenter
    for :math:`\ell = 1`) with its weights :math:`\Omega_\ell`, scale
    :math:`\rho_\ell` and horizon :math:`h_\ell`, and maps it to
    :math:`W_\ell = \operatorname{Exp}_{W_{\ell-1}}(V_\ell(h_\ell))`.

    A layer is computed as a LAF at the barycenter: in lifted coordinates
    (:math:`V = R_{W_0}U`) the LAF at :math:`W_0` reads :math:`\dot U =
    R_{S_0}(\Omega U) + \Pi_0 S_0` with :math:`S_0 = \operatorname{softmax}(\Omega(\log
    W_0 - D/\rho))`, and :math:`W^+ = \operatorname{softmax}(\log W_0 + U(h))`. That
    is the LAF at the barycenter (with :math:`U = JV`) of the *shifted distances*

    .. math::
        D'_\ell = D - \rho_\ell \log W_{\ell-1},\qquad
        \log W_\ell = \log W_{\ell-1} + J V_\ell \pmod{\text{row constants}} .

    So :math:`W_K = \operatorname{softmax}(J\sum_\ell V_\ell)`, the stack's
    tangent vector is :math:`V = \sum_\ell V_\ell`, every loss of one flow applies
    unchanged, and every gradient estimator differentiates a stack layer by layer
    (the chain through the base points runs through :math:`D'_\ell`, see
    :meth:`~assignflow.GradientEstimator.estimate`). With the same weights in every
    layer this is :class:`~assignflow.LinearizedSequence`.

    Parameters
    ----------
    layers : sequence of SimilarityOperator
        Weights, distances and scale of every layer (same nodes and labels).
    T : float or sequence of float
        The horizon :math:`h_\ell` of every layer (one value: the same for all).

    Examples
    --------
    >>> import assignflow as af
    >>> g = af.GridGraph((8, 8))
    >>> S = af.SimilarityOperator(af.Weights.uniform(g), np.random.rand(64, 3), rho=0.2)
    >>> deep = af.DeepLinearizedAssignmentFlow([S, S], T=1.0)
    >>> deep.solve().W.shape
    (64, 3)
    """

    layers: tuple[SimilarityOperator, ...] = attrs.field(converter=_as_layers)
    T: tuple[float, ...] = attrs.field(default=1.0)

    def __attrs_post_init__(self) -> None:
        T = self.T
        if np.ndim(T) == 0:
            T = (T,) * len(self.layers)
        T = tuple(check_positive_float(t, "T") for t in T)
        if len(T) != len(self.layers):
            raise ValueError(
                f"T must hold one horizon per layer ({len(self.layers)}), got {len(T)}"
            )
        object.__setattr__(self, "T", T)

    def __repr__(self) -> str:
        return f"DeepLinearizedAssignmentFlow(n_layers={self.n_layers}, T={self.T})"

    @property
    def n_layers(self) -> int:
        """Number of layers ``K``."""
        return len(self.layers)

    @property
    def shape(self) -> tuple[int, int]:
        """``(I, J)``."""
        return self.layers[0].distances.shape

    def layer_flow(self, layer: int, V_before: np.ndarray | None) -> LinearizedAssignmentFlow:
        r"""The LAF of ``layer`` given :math:`\sum_{m<\ell}V_m` (``None``: the first layer).

        Parameters
        ----------
        layer : int
            Index :math:`\ell - 1` of the layer, ``0 <= layer < n_layers``.
        V_before : ndarray, shape (n_nodes, n_labels), or None
            The sum :math:`\sum_{m<\ell}V_m` of the tangent vectors of the layers
            before it; ``None`` for the first layer (linearised at the barycenter).

        Returns
        -------
        LinearizedAssignmentFlow
            The LAF at the barycenter with the shifted distances
            :math:`D'_\ell = D - \rho_\ell J \sum_{m<\ell}V_m` and horizon
            :math:`h_\ell`.
        """
        sim = self.layers[layer]
        if V_before is not None:
            shift = (sim.rho * self.shape[1]) * np.asarray(V_before, dtype=np.float64)
            sim = attrs.evolve(sim, distances=sim.distances - shift.astype(sim.dtype))
        return LinearizedAssignmentFlow(sim, T=self.T[layer])

    def solve(
        self, integrator: Any = None, *, progress: Any = None, record: bool = False
    ) -> FlowResult:
        r"""Solve every layer in turn; ``result.layers`` holds the layers' results.

        Parameters
        ----------
        integrator : LinearIntegrator, str or class, default=ExponentialKrylov()
            Solver of every layer.
        progress : callable, optional
            Called as ``progress(fraction)`` with the fraction of the layers done.
        record : bool, default=False
            Record every layer's forward computation (for gradient estimators).

        Returns
        -------
        FlowResult
            ``V`` :math:`= \sum_\ell V_\ell`, ``W`` :math:`= W_K`, ``T`` the total
            horizon, ``layers`` the per-layer results.
        """
        K = self.n_layers
        results = []
        V = None
        for layer in range(K):

            def part(x: float, layer: int = layer) -> None:
                progress((layer + x) / K)

            res = self.layer_flow(layer, V).solve(
                integrator, progress=None if progress is None else part, record=record
            )
            V = res.V.copy() if V is None else V + res.V
            results.append(res)
        stats = IntegrationStats(
            results[0].stats.integrator,
            n_steps=sum(r.stats.n_steps for r in results),
            n_matvecs=sum(r.stats.n_matvecs for r in results),
            t=float(sum(self.T)),
            error_estimate=float(sum(r.stats.error_estimate for r in results)),
            n_rejected=sum(r.stats.n_rejected for r in results),
        )
        W = softmax_scaled(V, self.shape[1])
        return FlowResult(V=V, W=W, T=float(sum(self.T)), stats=stats, layers=tuple(results))
