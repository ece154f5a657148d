"""Point-cloud graphs: :class:`RadiusGraph` and Gaussian :func:`distance_weights`."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

import assignflow as af

__all__ = ["RadiusGraph", "distance_weights"]

#: Lower bound of the log-weights relative to the self-loop (``exp(-700) > 0``),
#: so that far neighbours keep a tiny but strictly positive weight.
_MIN_LOGIT = -700.0


def _as_points(X: Any) -> np.ndarray:
    x = np.asarray(X, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(
            f"X must have shape (n_points, n_features) with n_points >= 1, got {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("X must contain only finite values")
    return x


def _radius_pattern(x: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """CSR pattern of ``{(i, k) : ||x_i - x_k|| <= radius}`` (symmetric, with self loops)."""
    n = x.shape[0]
    pairs = cKDTree(x).query_pairs(radius, p=2.0, output_type="ndarray")
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    diag = np.arange(n, dtype=np.int64)
    rows = np.concatenate([pairs[:, 0], pairs[:, 1], diag])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0], diag])
    a = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    a.sum_duplicates()
    a.sort_indices()
    return a.indptr, a.indices


@attrs.frozen(eq=False, init=False, repr=False)
class RadiusGraph(af.Graph):
    """Radius (ε-ball) graph of a point cloud.

    Node ``i`` is the point ``X[i]``; its neighbourhood is every point within
    Euclidean distance ``radius`` (``||x_i - x_k|| <= radius``), itself
    included. The pattern is symmetric; an isolated point keeps only itself.

    Parameters
    ----------
    X : array-like, shape (n_points, n_features) or (n_points,)
        The points (a 1-D array is a set of points on the line).
    radius : float
        Neighbourhood radius ``> 0``.

    Attributes
    ----------
    radius : float
        The radius used to build the graph.

    Notes
    -----
    Built with :meth:`scipy.spatial.cKDTree.query_pairs`: ``O(n log n + nnz)``.
    The points themselves are not stored (pass them to
    :func:`distance_weights`). Registered as ``"radius"`` in
    ``af.registry.graphs``; ``af.registry.graphs.get("radius")`` returns this
    class and ``af.registry.graphs.resolve("radius", X=X, radius=0.5)`` an
    instance. :meth:`from_points` is an alias of the constructor.
    ``RadiusGraph.from_adjacency`` (and hence ``knn``, ``from_networkx``)
    return a plain :class:`assignflow.Graph`.

    Examples
    --------
    >>> g = RadiusGraph([[0.0], [0.5], [3.0]], radius=1.0)
    >>> g.indices.tolist()
    [0, 1, 0, 1, 2]
    """

    radius: float = attrs.field(default=1.0)

    def __init__(self, X: Any, radius: float) -> None:
        r = float(radius)
        if not np.isfinite(r) or r <= 0:
            raise ValueError(f"radius must be a finite number > 0, got {radius!r}")
        indptr, indices = _radius_pattern(_as_points(X), r)
        self.__attrs_init__(indptr=indptr, indices=indices, radius=r)

    @classmethod
    def from_points(cls, X: Any, radius: float) -> RadiusGraph:
        """The radius graph of the rows of ``X`` (same as ``RadiusGraph(X, radius)``).

        Parameters
        ----------
        X : array-like, shape (n_points, n_features) or (n_points,)
        radius : float

        Returns
        -------
        RadiusGraph
        """
        return cls(X, radius)

    @classmethod
    def from_adjacency(cls, adjacency: Any, *, symmetrize: bool = True) -> af.Graph:
        """A plain :class:`assignflow.Graph` (the inherited constructors build no radius graph)."""
        return af.Graph.from_adjacency(adjacency, symmetrize=symmetrize)

    def __repr__(self) -> str:
        return f"RadiusGraph(n_nodes={self.n_nodes}, nnz={self.nnz}, radius={self.radius:g})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.radius == other.radius and af.Graph.__eq__(self, other) is True

    def __hash__(self) -> int:
        return hash((af.Graph.__hash__(self), self.radius))


def distance_weights(graph: af.Graph, X: Any, scale: float | None = None) -> af.Weights:
    r"""Gaussian distance weights on the neighbourhoods of a point-cloud graph.

    .. math::
        \omega_{ik} \propto \exp\Big(-\frac{\|x_i - x_k\|^2}{2\,\mathrm{scale}^2}\Big),
        \qquad \sum_{k\in\mathcal{N}_i}\omega_{ik} = 1 .

    Parameters
    ----------
    graph : assignflow.Graph
        Any graph whose nodes are the rows of ``X`` (e.g. :class:`RadiusGraph`
        or ``af.Graph.knn(X)``).
    X : array-like, shape (n_nodes, n_features) or (n_nodes,)
        The points.
    scale : float, optional
        Bandwidth ``> 0``. Default: the median length of the graph's non-loop
        edges (1 if it has none).

    Returns
    -------
    assignflow.Weights
        Row-stochastic, strictly positive weights (computed as a softmax of the
        log-weights; log-weights below ``-700`` relative to the self loop are
        clipped so that no weight underflows to 0).
    """
    if not isinstance(graph, af.Graph):
        raise TypeError(f"graph must be an assignflow Graph, got {type(graph).__name__}")
    x = _as_points(X)
    if x.shape[0] != graph.n_nodes:
        raise ValueError(f"X must have one row per node ({graph.n_nodes}), got {x.shape[0]}")
    diff = x[graph.rows] - x[graph.indices]
    d2 = np.einsum("ij,ij->i", diff, diff)
    if scale is None:
        off = d2[graph.rows != graph.indices]
        scale = float(np.sqrt(np.median(off))) if off.size else 1.0
        if scale <= 0:
            scale = 1.0
    s = float(scale)
    if not np.isfinite(s) or s <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    logits = np.maximum(-d2 / (2.0 * s * s), _MIN_LOGIT)
    return af.Weights.from_logits(graph, logits)
