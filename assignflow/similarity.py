r"""The similarity map :math:`S(W)` of the assignment flow.

Given distances :math:`D \in \mathbb{R}^{I\times J}` between the data and the labels,
a scale :math:`\rho > 0` and weights :math:`\Omega`, the likelihood is
:math:`L(W) = \exp_W(-D/\rho)` and the similarity (the paper's eq. 2.17)

.. math::
    S_i(W) = \exp_{W_i}\Big(\sum_{k\in\mathcal{N}_i}\omega_{ik}\,
             \exp_{W_i}^{-1}\big(L_k(W_k)\big)\Big)
           = \operatorname{softmax}\big(\Omega(\log W - D/\rho)\big)_i ,

where the second form (:ref:`§3 <math-flow>`) follows because the rows of :math:`\Omega` sum
to 1. It is evaluated with a max-shifted softmax. At the barycenter
:math:`S_0 = S(\mathbb{1}_\mathcal{W}) = \operatorname{softmax}(-\Omega D/\rho)`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import attrs
import numpy as np

from ._cache import peek_cached
from ._simplex import lift, replicator, softmax, softmax_scaled
from ._validation import as_float_array, check_positive_float
from .geometry import AssignmentManifold
from .weights import Weights

__all__ = ["SimilarityOperator", "distance_matrix", "estimate_rho"]


def distance_matrix(features: Any, prototypes: Any, metric: str = "euclidean") -> np.ndarray:
    """Distances :math:`D_{ij} = d(f_i, l_j)` between features and label prototypes.

    Parameters
    ----------
    features : array, shape (I,) or (I, c) or (..., c)
        One feature vector per node (images may be passed as ``(h, w, c)``; the
        leading axes are flattened row by row).
    prototypes : array, shape (J,) or (J, c)
        The labels :math:`l_j`.
    metric : {"euclidean", "sqeuclidean", "cityblock"} or any scipy ``cdist`` metric

    Returns
    -------
    ndarray, shape (I, J)
    """
    from scipy.spatial.distance import cdist

    protos = as_float_array(prototypes, "prototypes", ndim=(1, 2))
    if protos.ndim == 1:
        protos = protos[:, None]
    if protos.shape[0] < 1:
        raise ValueError("prototypes must hold at least one label")
    f = as_float_array(features, "features")
    c = protos.shape[1]
    if c == 1 and f.ndim >= 3 and f.shape[-1] != 1:
        raise ValueError(
            f"features of shape {f.shape} have {f.shape[-1]} channels but the prototypes are "
            "scalar (grey values); pass prototypes of shape (J, c)"
        )
    if c == 1 and (f.ndim == 1 or f.shape[-1] != 1):
        # grey data: (I,), or a grey image (h, w) — every entry is one node
        f = f.reshape(-1, 1)
    elif f.ndim < 2 or f.shape[-1] != c:
        raise ValueError(
            f"features must have {c} channel(s) in the last axis to match prototypes "
            f"of shape {protos.shape}, got {f.shape}"
        )
    if not (isinstance(metric, str) or callable(metric)):
        raise TypeError(f"metric must be a string or a callable, got {type(metric).__name__}")
    try:
        return cdist(f.reshape(-1, c), protos, metric=metric)
    except ValueError as exc:  # scipy: "Unknown Distance Metric: ..."
        raise ValueError(f"metric {metric!r} is not supported by cdist: {exc}") from None


def estimate_rho(distances: Any) -> float:
    r"""The default scale :math:`\rho` of the distances: the typical gap between the best labels.

    :math:`\rho = \operatorname{median}_i\,(d_{i,(2)} - d_{i,(1)})`, the median over the
    nodes of the gap between the smallest and the second smallest distance
    :math:`D_{ij}` (over the nodes with a positive gap). With this scale the
    likelihood :math:`\exp_{\mathbb{1}}(-D_i/\rho)` of a typical node prefers its
    nearest label by a factor :math:`e` over the runner-up: informative, but not yet
    saturated, so the weights :math:`\Omega` still shape the result. The rule is
    invariant to adding a constant to a row of :math:`D` and scales with :math:`D`.

    This is the one rule behind ``rho="auto"`` (or ``None``) in
    :func:`~assignflow.label_graph`, :class:`~assignflow.AssignmentFlowClassifier` and
    :class:`~assignflow.ImageLabeler`; the estimators that learn :math:`\rho` start
    from it.

    Parameters
    ----------
    distances : array of shape (n_nodes, n_labels)
        Finite distances :math:`D_{ij} \ge 0`.

    Returns
    -------
    float
        :math:`\rho > 0`. With a single label, or when no node has a positive gap,
        the median of the positive distances; ``1.0`` when all distances are 0.

    Examples
    --------
    >>> round(estimate_rho([[0.1, 0.5, 2.0], [0.2, 0.4, 1.0]]), 12)
    0.3
    """
    D = as_float_array(distances, "distances", ndim=2)
    if D.shape[0] < 1 or D.shape[1] < 1:
        raise ValueError(f"distances must have at least one node and one label, got {D.shape}")
    if D.shape[1] >= 2:
        two = np.partition(D, 1, axis=1)[:, :2]
        gaps = two[:, 1] - two[:, 0]
        gaps = gaps[gaps > 0]
        if gaps.size:
            return float(np.median(gaps))
    pos = D[D > 0]
    return float(np.median(pos)) if pos.size else 1.0


_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_dtype(dtype: Any, distances: Any) -> np.dtype:
    """The working precision: explicit, or float32 exactly when the distances are."""
    if dtype is None:
        if getattr(distances, "dtype", None) == np.float32:
            return np.dtype(np.float32)
        return np.dtype(np.float64)
    try:
        dt = np.dtype(dtype)
        ok = dt in _DTYPES
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}")
    return dt


def _check_weights(w: Any) -> Weights:
    if not isinstance(w, Weights):
        raise TypeError(f"weights must be an assignflow Weights object, got {type(w).__name__}")
    return w


@attrs.frozen(eq=False, repr=False)
class SimilarityOperator:
    r"""The similarity map :math:`S(W) = \operatorname{softmax}(\Omega(\log W - D/\rho))`.

    Parameters
    ----------
    weights : Weights
        :math:`\Omega` on a graph with ``I`` nodes.
    distances : array, shape (I, J)
        :math:`D_{ij} = d(f_i, l_j)`, finite (see :func:`distance_matrix`).
    rho : float, default=1.0
        Scale :math:`\rho > 0` of the distances.
    dtype : {None, "float64", "float32"}, default=None
        Working precision of the LAF built on this operator (:math:`D`, :math:`S_0`,
        :math:`B`, the Krylov basis and the solution). ``None`` keeps ``float32``
        distances in single precision and uses ``float64`` otherwise. Single
        precision halves the memory of labeling very large images (relative
        accuracy about ``1e-6`` instead of ``1e-12``); gradients are always
        computed in ``float64``.

    Examples
    --------
    >>> from assignflow import GridGraph, Weights
    >>> g = GridGraph((3, 3))
    >>> S = SimilarityOperator(Weights.uniform(g), np.random.rand(9, 2), rho=0.5)
    >>> S.S0.shape
    (9, 2)
    """

    weights: Weights = attrs.field(converter=_check_weights)
    distances: np.ndarray = attrs.field()
    rho: float = attrs.field(default=1.0)
    dtype: np.dtype | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        n = self.weights.n_nodes
        dtype = _check_dtype(self.dtype, self.distances)
        object.__setattr__(self, "dtype", dtype)
        if dtype == np.float32 and getattr(self.distances, "dtype", None) != np.float32:
            # check in double precision first: a cast would turn huge values into inf
            d = as_float_array(self.distances, "distances", ndim=2)
            if d.size and np.abs(d).max() > np.finfo(np.float32).max:
                raise ValueError(
                    "distances must fit the float32 range (|D| < 3.4e38) for dtype=float32"
                )
            d = d.astype(np.float32)
        else:
            d = as_float_array(self.distances, "distances", ndim=2, copy=True, dtype=dtype)
        if d.shape[0] != n or d.shape[1] < 1:
            raise ValueError(
                f"distances must have shape ({n}, n_labels) to match the graph's {n} nodes, "
                f"got {d.shape}"
            )
        d.flags.writeable = False
        object.__setattr__(self, "distances", d)
        rho = check_positive_float(self.rho, "rho")
        big = float(np.abs(d).max(initial=0.0))
        limit = float(np.finfo(d.dtype).max)
        if rho < np.finfo(np.float64).tiny or big / rho > limit:
            # a subnormal rho (or one far below the distances) makes D/rho overflow
            raise ValueError(
                f"rho={rho:g} is too small for distances up to {big:g} in {d.dtype.name}: "
                f"D/rho overflows; use rho >= {max(big / limit, np.finfo(np.float64).tiny):.3g}"
            )
        object.__setattr__(self, "rho", rho)

    def __repr__(self) -> str:
        prec = "" if self.dtype == np.float64 else f", dtype={self.dtype.name}"
        return (
            f"SimilarityOperator(n_nodes={self.n_nodes}, n_labels={self.n_labels}, "
            f"rho={self.rho:g}{prec})"
        )

    @property
    def n_nodes(self) -> int:
        """Number of nodes :math:`I`."""
        return self.distances.shape[0]

    @property
    def n_labels(self) -> int:
        """Number of labels :math:`J`."""
        return self.distances.shape[1]

    @property
    def graph(self):
        """The graph of the weights."""
        return self.weights.graph

    @cached_property
    def manifold(self) -> AssignmentManifold:
        """The assignment manifold :math:`\\mathcal{W}` of shape ``(I, J)``."""
        return AssignmentManifold(self.n_nodes, self.n_labels)

    @cached_property
    def scaled_distances(self) -> np.ndarray:
        """:math:`D/\\rho`."""
        out = self.distances / self.rho
        out.flags.writeable = False
        return out

    def with_weights(self, weights: Weights) -> SimilarityOperator:
        r"""The same data term with other weights (on a graph with as many nodes).

        Parameters
        ----------
        weights : Weights
            The new :math:`\Omega`.

        Returns
        -------
        SimilarityOperator
            A new operator; ``self`` is unchanged.
        """
        return attrs.evolve(self, weights=weights)

    def astype(self, dtype: Any) -> SimilarityOperator:
        """The same operator in another working precision (``self`` if it already has it).

        Parameters
        ----------
        dtype : str or numpy.dtype
            ``"float64"`` or ``"float32"``.

        Returns
        -------
        SimilarityOperator
            The operator in that precision.
        """
        dtype = _check_dtype(dtype, None)
        if dtype == self.dtype:
            return self
        return attrs.evolve(self, distances=self.distances, dtype=dtype)

    # ------------------------------------------------------------------ maps
    def likelihood(self, W: Any) -> np.ndarray:
        r"""Likelihood :math:`L(W) = \exp_W(-D/\rho)`.

        Parameters
        ----------
        W : array_like, shape (n_nodes, n_labels)
            A point of the assignment manifold.

        Returns
        -------
        ndarray, shape (n_nodes, n_labels)
            :math:`L(W)`, a point of the manifold.
        """
        w = self.manifold._point(W)
        return lift(w, -self.scaled_distances)

    def __call__(self, W: Any) -> np.ndarray:
        """:math:`S(W)`; see :meth:`similarity`."""
        return self.similarity(W)

    def similarity(self, W: Any) -> np.ndarray:
        r"""Similarity :math:`S(W) = \operatorname{softmax}(\Omega(\log W - D/\rho))` (eq. 2.17).

        Parameters
        ----------
        W : array_like, shape (n_nodes, n_labels)
            A point of the assignment manifold.

        Returns
        -------
        ndarray, shape (n_nodes, n_labels)
            :math:`S(W)`, a point of the manifold.
        """
        w = self.manifold._point(W)
        return self._from_log(np.log(w))

    def _from_log(self, log_w: np.ndarray) -> np.ndarray:
        """``S`` from ``log W`` (any row-wise additive constant cancels in the softmax)."""
        return softmax(self.weights.operator.apply(log_w - self.scaled_distances))

    @cached_property
    def S0(self) -> np.ndarray:
        r""":math:`S_0 = S(\mathbb{1}_\mathcal{W}) = \operatorname{softmax}(-\Omega D/\rho)`."""
        # D/ρ as a temporary unless cached: the LAF needs S0 only, and a cached copy
        # would stay as large as D for the flow's lifetime
        scaled = peek_cached(self, "scaled_distances")
        if scaled is None:
            scaled = self.distances / self.rho
        out = self.weights.operator.apply(scaled)
        del scaled
        softmax_scaled(out, -1.0, out=out)
        out.flags.writeable = False
        return out

    def differential(self, W: Any, X: Any) -> np.ndarray:
        r"""Differential :math:`dS(W)[X] = R_{S(W)}\big(\Omega(X / W)\big)`.

        Parameters
        ----------
        W : array_like, shape (n_nodes, n_labels)
            A point of the assignment manifold.
        X : array_like, shape (n_nodes, n_labels)
            The direction (a tangent vector).

        Returns
        -------
        ndarray, shape (n_nodes, n_labels)
            :math:`dS(W)[X]`, a tangent vector.
        """
        w = self.manifold._point(W)
        x = self.manifold._arr(X, "X")
        return replicator(self._from_log(np.log(w)), self.weights.operator.apply(x / w))
