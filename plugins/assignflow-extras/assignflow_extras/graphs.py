"""Feature-space graphs: :class:`RadiusGraph` and Gaussian :func:`distance_weights`."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

import assignflow as af

__all__ = ["MAX_NNZ", "RadiusGraph", "distance_weights"]

#: Lower bound of the log-weights relative to the self-loop (``exp(-700) > 0``),
#: so that far neighbours keep a tiny but strictly positive weight.
_MIN_LOGIT = -700.0


#: Default bound of the number of stored entries (neighbourhood sizes summed):
#: about 0.5 GB of peak memory while building.
MAX_NNZ = 10_000_000

#: The default radius gives a typical node this many neighbours besides itself.
_DEFAULT_NEIGHBORS = 8


def _as_points(X: Any) -> np.ndarray:
    """The nodes' features as rows: ``X`` of shape ``(..., d)`` reshaped to ``(n, d)``."""
    x = np.asarray(X, dtype=float)
    if x.ndim < 2 or x.shape[-1] < 1 or x.size == 0:
        raise ValueError(
            f"X must have shape (..., n_features): nodes on the leading axes, features on "
            f"the last (use X[:, None] for points on a line), got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("X must contain only finite values")
    return x.reshape(-1, x.shape[-1])


def _default_radius(tree: cKDTree) -> float:
    """Median distance of a point to its 8th nearest other point (1 if that is 0)."""
    k = min(_DEFAULT_NEIGHBORS + 1, tree.n)
    if k < 2:
        return 1.0
    dist, _ = tree.query(tree.data, k=k)
    r = float(np.median(dist[:, -1]))
    return r if np.isfinite(r) and r > 0 else 1.0


def _radius_pattern(tree: cKDTree, radius: float, max_nnz: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR pattern of ``{(i, k) : ||x_i - x_k|| <= radius}`` (symmetric, with self loops)."""
    n = tree.n
    nnz = int(tree.count_neighbors(tree, radius))  # ordered pairs, self pairs included
    if nnz > max_nnz:
        raise ValueError(
            f"radius={radius:g} gives {nnz} graph entries, more than max_nnz={max_nnz}: "
            f"choose a smaller radius (or raise max_nnz)"
        )
    pairs = tree.query_pairs(radius, p=2.0, output_type="ndarray")
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
    """Radius (ε-ball) graph of the nodes' feature vectors.

    A graph factory in the sense of ``af.registry.graphs``: called as
    ``RadiusGraph(X=X, **graph_params)``. The nodes are the entries of the
    leading axes of ``X`` in C order (the rows of an ``(n, d)`` table, the
    pixels of an ``(h, w, c)`` image, the voxels of a ``(d, h, w, c)``
    volume), with the last axis as feature vector; node ``i``'s neighbourhood
    is every node within Euclidean distance ``radius`` of it in feature space
    (``||x_i - x_k|| <= radius``), itself included. The pattern is symmetric;
    an isolated node keeps only itself.

    Parameters
    ----------
    X : array-like, shape (..., n_features)
        The nodes' features; the graph has ``prod(X.shape[:-1])`` nodes.
    radius : float, optional
        Neighbourhood radius ``> 0``. Default: the median over the nodes of
        the distance to their 8th nearest other node (so that a typical node
        has about 8 neighbours), or 1 if that median is 0.
    max_nnz : int, default=10_000_000
        Bound of the number of stored entries (the neighbourhood sizes
        summed, counted before anything is built): a larger graph is a
        ``ValueError`` naming ``radius``.

    Attributes
    ----------
    radius : float
        The radius used to build the graph.

    Notes
    -----
    Built with :class:`scipy.spatial.cKDTree` (``count_neighbors`` for the
    bound, then ``query_pairs``): ``O(n log n + nnz)``. The features
    themselves are not stored (pass them to :func:`distance_weights`).
    ``RadiusGraph.from_adjacency`` (and hence ``knn``, ``from_networkx``)
    return a plain :class:`assignflow.Graph`.

    Examples
    --------
    >>> g = RadiusGraph([[0.0], [0.5], [3.0]], radius=1.0)
    >>> g.indices.tolist()
    [0, 1, 0, 1, 2]
    """

    radius: float = attrs.field(default=1.0)

    def __init__(self, X: Any, radius: float | None = None, *, max_nnz: int = MAX_NNZ) -> None:
        tree = cKDTree(_as_points(X))
        r = _default_radius(tree) if radius is None else float(radius)
        if not np.isfinite(r) or r <= 0:
            raise ValueError(f"radius must be a finite number > 0, got {radius!r}")
        if isinstance(max_nnz, bool) or not isinstance(max_nnz, (int, np.integer)) or max_nnz < 1:
            raise ValueError(f"max_nnz must be a positive integer, got {max_nnz!r}")
        indptr, indices = _radius_pattern(tree, r, int(max_nnz))
        self.__attrs_init__(indptr=indptr, indices=indices, radius=r)

    @classmethod
    def from_adjacency(cls, adjacency: Any, *, symmetrize: bool = True) -> af.Graph:
        """A plain :class:`assignflow.Graph` (the inherited constructors build no radius graph).

        Parameters
        ----------
        adjacency : sparse matrix or array-like, shape (n, n)
            See :meth:`assignflow.Graph.from_adjacency`.
        symmetrize : bool, default=True
            See :meth:`assignflow.Graph.from_adjacency`.

        Returns
        -------
        assignflow.Graph
        """
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
        Any graph on the nodes of ``X`` (e.g. :class:`RadiusGraph` or
        ``af.Graph.knn(X)``).
    X : array-like, shape (..., n_features)
        The nodes' features, nodes on the leading axes in C order (as for
        :class:`RadiusGraph`).
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
        raise ValueError(
            f"X must have one feature vector per node ({graph.n_nodes}), got {x.shape[0]}"
        )
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
