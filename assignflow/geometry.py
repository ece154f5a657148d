r"""Geometry of the assignment manifold.

The assignment manifold :math:`\mathcal{W}` is the set of ``(I, J)`` matrices whose
rows lie in the relative interior of the probability simplex
:math:`\mathcal{S} = \operatorname{rint}\Delta_J`, each row carrying the Fisher–Rao
metric. Its tangent space is :math:`T_0 = \{V : V\mathbb{1} = 0\}` (rows sum to
zero). This module implements the maps of :ref:`§2 <math-geometry>` (the paper's Sect. 2.1):

=====================  ====================================================
``project_tangent``    :math:`\Pi_0 x = x - \operatorname{mean}(x)\mathbb{1}`
``replicator``         :math:`R_p x = p\odot x - \langle p, x\rangle p`
``lift``               :math:`\exp_p(v) = p\odot e^v / \langle p, e^v\rangle`
``lift_inverse``       :math:`\exp_p^{-1}(q) = \Pi_0 \log(q/p)`
``exp``                :math:`\operatorname{Exp}_p(v) = \exp_p(v/p)`, so
                       :math:`\exp_p = \operatorname{Exp}_p\circ R_p`
``inner``              :math:`g_p(u, v) = \sum_j u_j v_j / p_j`
=====================  ====================================================

All maps act row by row. The lifting map is evaluated in the log domain with a
max shift, so inputs of magnitude up to ``1e6`` (and beyond) never overflow.

The unchecked row-wise kernels live in :mod:`assignflow._simplex`, shared with the
flows; :class:`AssignmentManifold` validates its inputs and calls them.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from . import _simplex as K
from ._validation import (
    as_float_array,
    check_finite_float,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
)

__all__ = ["AssignmentManifold"]


def _rng(rng: Any) -> np.random.Generator:
    """``np.random.default_rng(rng)`` with an error that names the argument."""
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"rng must be None, an int seed, a SeedSequence or a numpy Generator, got {rng!r} "
            f"({exc})"
        ) from None


# --------------------------------------------------------------------------- class
@attrs.frozen
class AssignmentManifold:
    r"""The assignment manifold :math:`\mathcal{W}` of ``n_nodes × n_labels`` matrices.

    Point-first API in the style of pymanopt: every method takes the base point
    first (``replicator(W, X)``, ``lift(W, V)``, ``exp(W, V)``). Arrays have shape
    ``(n_nodes, n_labels)``; leading batch axes are allowed, the last two axes
    must match.

    Parameters
    ----------
    n_nodes : int
        Number of nodes (pixels) :math:`I`.
    n_labels : int
        Number of labels :math:`J` (at least 1).

    Examples
    --------
    >>> M = AssignmentManifold(4, 3)
    >>> W = M.barycenter()
    >>> bool(M.belongs(M.lift(W, np.ones((4, 3)))))
    True
    """

    n_nodes: int = attrs.field(converter=lambda v: check_positive_int(v, "n_nodes"))
    n_labels: int = attrs.field(converter=lambda v: check_positive_int(v, "n_labels"))

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_nodes, n_labels)``."""
        return (self.n_nodes, self.n_labels)

    @property
    def dim(self) -> int:
        """Manifold dimension :math:`I (J - 1)`."""
        return self.n_nodes * (self.n_labels - 1)

    # ------------------------------------------------------------------ checks
    def _arr(self, x: Any, name: str) -> np.ndarray:
        arr = as_float_array(x, name)
        if arr.ndim < 2 or arr.shape[-2:] != self.shape:
            raise ValueError(
                f"{name} must have shape (..., {self.n_nodes}, {self.n_labels}), got {arr.shape}"
            )
        return arr

    def _point(self, w: Any, name: str = "W") -> np.ndarray:
        arr = self._arr(w, name)
        if np.any(arr <= 0):
            raise ValueError(f"{name} must be a point of the assignment manifold (entries > 0)")
        return arr

    def _maybe_array(self, x: Any) -> np.ndarray | None:
        """``x`` as a float array, or ``None`` if it is no array of real numbers."""
        try:
            return as_float_array(x, "x", finite=False)
        except TypeError:
            return None

    def _finite_of_shape(self, x: Any) -> np.ndarray | None:
        """``x`` as a finite real array with trailing shape ``(I, J)``, else ``None``."""
        arr = self._maybe_array(x)
        if arr is None or arr.ndim < 2 or arr.shape[-2:] != self.shape:
            return None
        return arr if np.all(np.isfinite(arr)) else None

    def belongs(self, W: Any, atol: float = 1e-10) -> bool:
        """Whether ``W`` is a point: finite, entries ``> 0``, rows summing to 1.

        Anything that is not an array of real numbers is no point (``False``).

        Parameters
        ----------
        W : array_like, shape (..., n_nodes, n_labels)
            The candidate point.
        atol : float, default 1e-10
            Absolute tolerance of the row sums.

        Returns
        -------
        bool
            True if ``W`` lies on the manifold.
        """
        atol = check_nonnegative_float(atol, "atol")
        arr = self._finite_of_shape(W)
        if arr is None:
            return False
        return bool(np.all(arr > 0) and np.allclose(arr.sum(axis=-1), 1.0, rtol=0, atol=atol))

    def is_tangent(self, V: Any, atol: float = 1e-10) -> bool:
        """Whether ``V`` lies in :math:`T_0` (finite, rows summing to 0 within ``atol``).

        The tolerance is relative to the largest row magnitude.

        Parameters
        ----------
        V : array_like, shape (..., n_nodes, n_labels)
            The candidate tangent vector.
        atol : float, default 1e-10
            Tolerance of the row sums, relative to ``max(1, max |V|)`` and ``J``.

        Returns
        -------
        bool
            True if ``V`` is a tangent vector.
        """
        atol = check_nonnegative_float(atol, "atol")
        arr = self._finite_of_shape(V)
        if arr is None:
            return False
        scale = max(1.0, float(np.abs(arr).max(initial=0.0)))
        return bool(np.all(np.abs(arr.sum(axis=-1)) <= atol * scale * self.n_labels))

    # ------------------------------------------------------------------ points
    def barycenter(self) -> np.ndarray:
        r"""The barycenter :math:`\mathbb{1}_{\mathcal{W}} = \mathbb{1}\mathbb{1}^\top / J`.

        Returns
        -------
        ndarray, shape (n_nodes, n_labels)
            Every entry ``1 / J``.
        """
        return np.full(self.shape, 1.0 / self.n_labels)

    def random_point(self, rng: Any = None, concentration: float = 1.0) -> np.ndarray:
        """A random point: rows drawn from a symmetric Dirichlet distribution.

        Entries are floored at ``1e-12`` (and rows renormalised) so the point lies
        strictly inside the simplex.

        Parameters
        ----------
        rng : int, numpy.random.Generator or None, default None
            Seed or generator.
        concentration : float, default 1.0
            Dirichlet parameter (``> 0``): large values give points near the
            barycenter, small values points near the vertices.

        Returns
        -------
        ndarray, shape (n_nodes, n_labels)
            A point of the manifold.
        """
        concentration = check_positive_float(concentration, "concentration")
        rng = _rng(rng)
        w = rng.dirichlet(np.full(self.n_labels, concentration), size=self.n_nodes)
        w = np.maximum(w, 1e-12)
        return w / w.sum(axis=-1, keepdims=True)

    def random_tangent(self, rng: Any = None, scale: float = 1.0) -> np.ndarray:
        """A random tangent vector in :math:`T_0` (projected Gaussian).

        Parameters
        ----------
        rng : int, numpy.random.Generator or None, default None
            Seed or generator.
        scale : float, default 1.0
            Standard deviation of the Gaussian before the projection.

        Returns
        -------
        ndarray, shape (n_nodes, n_labels)
            A tangent vector (rows summing to 0).
        """
        scale = check_finite_float(scale, "scale")
        rng = _rng(rng)
        return K.project_tangent(scale * rng.standard_normal(self.shape))

    # ------------------------------------------------------------------ maps
    def project_tangent(self, V: Any) -> np.ndarray:
        r"""Orthogonal projection :math:`\Pi_0` onto :math:`T_0`: subtract row means.

        Parameters
        ----------
        V : array_like, shape (..., n_nodes, n_labels)
            Any matrix.

        Returns
        -------
        ndarray, shape (..., n_nodes, n_labels)
            :math:`\Pi_0 V`, rows summing to 0.
        """
        return K.project_tangent(self._arr(V, "V"))

    def replicator(self, W: Any, X: Any) -> np.ndarray:
        r"""Replicator operator :math:`R_W X = W\odot X - \langle W, X\rangle_{\text{row}} W`.

        Symmetric positive semidefinite on each row, kernel contains
        :math:`\mathbb{1}`, image in :math:`T_0`; it is the inverse metric tensor
        mapping Euclidean gradients to Riemannian ones.

        Parameters
        ----------
        W : array_like, shape (..., n_nodes, n_labels)
            The base point.
        X : array_like, shape (..., n_nodes, n_labels)
            The matrix to map.

        Returns
        -------
        ndarray, shape (..., n_nodes, n_labels)
            :math:`R_W X`, a tangent vector.
        """
        return K.replicator(self._point(W), self._arr(X, "X"))

    def lift(self, W: Any, V: Any) -> np.ndarray:
        r"""Lifting map :math:`\exp_W(V) = W\odot e^V / \langle W, e^V\rangle` (row-wise).

        Invariant under adding a constant to a row of ``V``; ``lift(W, 0) = W``.
        Entries can underflow to 0 for rows with a spread of more than about 745
        (the result is then a limit point on the boundary, never NaN).

        Parameters
        ----------
        W : array_like, shape (..., n_nodes, n_labels)
            The base point.
        V : array_like, shape (..., n_nodes, n_labels)
            Any matrix (only its tangent part matters).

        Returns
        -------
        ndarray, shape (..., n_nodes, n_labels)
            The point :math:`\exp_W(V)`.
        """
        return K.lift(self._point(W), self._arr(V, "V"))

    def lift_inverse(self, W: Any, Q: Any) -> np.ndarray:
        r"""Inverse of the lifting map on :math:`T_0`: :math:`\Pi_0 \log(Q / W)`.

        Parameters
        ----------
        W : array_like, shape (..., n_nodes, n_labels)
            The base point.
        Q : array_like, shape (..., n_nodes, n_labels)
            The point to map back.

        Returns
        -------
        ndarray, shape (..., n_nodes, n_labels)
            The tangent vector ``V`` with ``lift(W, V) = Q``.
        """
        return K.lift_inverse(self._point(W), self._point(Q, "Q"))

    def exp(self, W: Any, V: Any) -> np.ndarray:
        r"""e-exponential map :math:`\operatorname{Exp}_W(V) = \exp_W(V / W)`.

        Satisfies :math:`\exp_W = \operatorname{Exp}_W \circ R_W`; at the barycenter
        :math:`\operatorname{Exp}_{\mathbb{1}_\mathcal{W}}(V) = \operatorname{softmax}(J V)`.

        Parameters
        ----------
        W : array_like, shape (..., n_nodes, n_labels)
            The base point.
        V : array_like, shape (..., n_nodes, n_labels)
            The tangent vector.

        Returns
        -------
        ndarray, shape (..., n_nodes, n_labels)
            The point :math:`\operatorname{Exp}_W(V)`.
        """
        return K.exp(self._point(W), self._arr(V, "V"))

    def inner(self, W: Any, U: Any, V: Any) -> float:
        r"""Fisher–Rao inner product :math:`g_W(U, V) = \sum_{ij} U_{ij} V_{ij} / W_{ij}`.

        Parameters
        ----------
        W : array_like, shape (..., n_nodes, n_labels)
            The base point.
        U, V : array_like, shape (..., n_nodes, n_labels)
            Tangent vectors at ``W``.

        Returns
        -------
        float
            :math:`g_W(U, V)`, summed over all rows (and batch axes).
        """
        w = self._point(W)
        return float(np.sum(self._arr(U, "U") * self._arr(V, "V") / w))

    def norm(self, W: Any, V: Any) -> float:
        r"""Fisher–Rao norm of the tangent vector ``V`` at ``W``.

        Parameters
        ----------
        W : array_like, shape (..., n_nodes, n_labels)
            The base point.
        V : array_like, shape (..., n_nodes, n_labels)
            A tangent vector at ``W``.

        Returns
        -------
        float
            :math:`\sqrt{g_W(V, V)}`.
        """
        v = self._arr(V, "V")
        return float(np.sqrt(self.inner(W, v, v)))

    def entropy(self, W: Any) -> float:
        r"""Mean row entropy of ``W`` (0 for integral assignments, ``log J`` at the barycenter).

        Parameters
        ----------
        W : array_like, shape (..., n_nodes, n_labels)
            Row-stochastic matrix.

        Returns
        -------
        float
            The mean over all rows of :math:`-\sum_j W_{ij} \log W_{ij}`.
        """
        return float(K.entropy(self._arr(W, "W")).mean())

    def round(self, W: Any) -> np.ndarray:
        """Labels by row-wise ``argmax`` (ties go to the smallest label).

        Parameters
        ----------
        W : array_like, shape (..., n_nodes, n_labels)
            Assignments.

        Returns
        -------
        ndarray of int, shape (..., n_nodes)
            The label of each node.
        """
        return np.argmax(self._arr(W, "W"), axis=-1)
