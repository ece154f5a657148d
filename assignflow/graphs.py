r"""Graphs: the neighbourhoods :math:`\mathcal{N}_i` on which the weights live.

A :class:`Graph` stores the neighbourhoods :math:`\mathcal{N}_i = \{k : ik \in E\}
\cup \{i\}` in CSR form: the neighbours of node ``i`` are
``indices[indptr[i]:indptr[i+1]]``, sorted, and always include ``i`` itself
(MATH.md §1). Any graph works — grids, kNN graphs of point clouds, meshes,
superpixel adjacencies; :class:`GridGraph` is the image case with a
``(2r+1)×(2r+1)`` window clipped at the border, and gets faster kernels
(shifted multiply–adds instead of gathers).

A graph also owns the kernels that act on edge-aligned values: the product with
the weight matrix (:meth:`Graph.weight_operator`) and the edge-wise inner
products used by gradients (:meth:`Graph.edge_dot`). A plugin graph can override
them with faster ones for its structure.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import attrs
import numpy as np
import scipy.sparse as sp

from . import persistence, registry
from ._operators import CSROperator, DiagonalOperator
from ._validation import as_float_array, check_positive_int

__all__ = ["Graph", "GridGraph"]

_EDGE_CHUNK = 1 << 18  # edges per chunk in gathered edge-wise products


def _index_array(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    # a private copy: the graph is an immutable value (its arrays are made read-only
    # and its operators cached), so later changes to the caller's arrays must not
    # reach it, and marking them read-only must not freeze the caller's arrays
    return np.array(arr, dtype=np.int64, copy=True)


def _array_eq(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


@persistence.persistable("Graph")
@registry.graphs.register("graph")
@attrs.frozen(eq=False)
class Graph:
    """A graph given by its neighbourhoods in CSR form.

    Parameters
    ----------
    indptr : array of int, shape (n_nodes + 1,)
        Row pointer: the neighbourhood of node ``i`` is
        ``indices[indptr[i]:indptr[i + 1]]``.
    indices : array of int, shape (nnz,)
        Column indices, strictly increasing within each row, each row containing
        its own node index (:math:`i \\in \\mathcal{N}_i`).

    Notes
    -----
    Use the constructors :meth:`from_adjacency`, :meth:`from_networkx`,
    :meth:`knn`, or :class:`GridGraph`; they symmetrise and add self-loops. The
    constructor itself only validates (a directed pattern is accepted).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> g = Graph.from_adjacency(sp.eye(3, k=1))
    >>> g.indices.tolist()
    [0, 1, 0, 1, 2, 1, 2]
    """

    indptr: np.ndarray = attrs.field(converter=lambda x: _index_array(x, "indptr"))
    indices: np.ndarray = attrs.field(converter=lambda x: _index_array(x, "indices"))

    def __attrs_post_init__(self) -> None:
        _validate_csr(self.indptr, self.indices)
        self.indptr.flags.writeable = False
        self.indices.flags.writeable = False

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return _array_eq(self.indptr, other.indptr) and _array_eq(self.indices, other.indices)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.n_nodes, self.nnz, self.indices[:64].tobytes()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_nodes={self.n_nodes}, nnz={self.nnz})"

    # ------------------------------------------------------------------ basics
    @property
    def n_nodes(self) -> int:
        """Number of nodes :math:`I`."""
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        """Number of stored entries :math:`\\sum_i |\\mathcal{N}_i|` (self-loops included)."""
        return len(self.indices)

    @cached_property
    def degrees(self) -> np.ndarray:
        """Neighbourhood sizes :math:`|\\mathcal{N}_i|` (self included)."""
        return np.diff(self.indptr)

    @cached_property
    def rows(self) -> np.ndarray:
        """Row index of every stored entry (aligned with :attr:`indices`)."""
        return np.repeat(np.arange(self.n_nodes, dtype=np.int64), self.degrees)

    @cached_property
    def self_loop_positions(self) -> np.ndarray:
        """Position of the entry ``(i, i)`` in :attr:`indices`, for every node ``i``."""
        pos = np.flatnonzero(self.rows == self.indices)
        return pos

    def to_adjacency(self) -> sp.csr_matrix:
        """The 0/1 pattern as a CSR matrix (self-loops included)."""
        data = np.ones(self.nnz)
        return sp.csr_matrix((data, self.indices, self.indptr), shape=(self.n_nodes,) * 2)

    @property
    def is_symmetric(self) -> bool:
        """Whether the pattern is symmetric (an undirected graph)."""
        a = self.to_adjacency()
        return (a != a.T).nnz == 0

    @property
    def n_components(self) -> int:
        """Number of connected components (of the symmetrised pattern)."""
        from scipy.sparse.csgraph import connected_components

        return int(connected_components(self.to_adjacency(), directed=False)[0])

    # ------------------------------------------------------------------ kernels
    def weight_operator(self, values: np.ndarray) -> CSROperator | DiagonalOperator:
        """The matrix-free operator ``Ω`` for weights aligned with :attr:`indices`.

        Returns an object with ``apply(V)`` (``Ω V``) and ``apply_transpose(U)``
        (``Ωᵀ U``). Callers validate ``values``; this builds a CSR product.
        """
        return CSROperator(self.indptr, self.indices, values)

    def edge_dot(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Edge-wise inner products ``e_ik = <X_i, Y_k>`` for all stored ``(i, k)``.

        Parameters
        ----------
        X, Y : ndarray, shape (n_nodes, J)

        Returns
        -------
        ndarray, shape (nnz,)
            Aligned with :attr:`indices`. This is the "sampled" product
            :math:`(X Y^\\top)_{ik}` on the sparsity pattern used by the weight
            gradient (MATH.md §5); it costs ``O(nnz · J)``.
        """
        out = np.empty(self.nnz)
        rows, cols = self.rows, self.indices
        for s in range(0, self.nnz, _EDGE_CHUNK):
            e = min(self.nnz, s + _EDGE_CHUNK)
            out[s:e] = np.einsum("ij,ij->i", X[rows[s:e]], Y[cols[s:e]])
        return out

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_adjacency(cls, adjacency: Any, *, symmetrize: bool = True) -> Graph:
        """Build a graph from the sparsity pattern of a (sparse or dense) square matrix.

        Parameters
        ----------
        adjacency : scipy.sparse matrix/array or array-like, shape (n, n)
            Nonzero entries define edges; their values are ignored.
        symmetrize : bool, default=True
            Use the pattern of ``A + Aᵀ`` (an undirected graph).
        """
        if sp.issparse(adjacency):
            a = sp.csr_matrix(adjacency)
            if a.dtype.kind not in "biuf":
                raise TypeError(
                    f"adjacency must hold real numbers or booleans, got dtype {a.dtype}"
                )
        else:
            try:
                arr = np.asarray(adjacency)
            except ValueError:  # ragged nested lists; reported below
                arr = None
            if arr is None or arr.dtype != np.bool_:
                # booleans are a natural adjacency; anything else must be real numbers
                arr = as_float_array(adjacency, "adjacency", finite=False)
            if arr.ndim != 2:
                raise ValueError(f"adjacency must be a square matrix, got shape {arr.shape}")
            a = sp.csr_matrix(arr)
        if a.shape[0] != a.shape[1]:
            raise ValueError(f"adjacency must be a square matrix, got shape {a.shape}")
        if a.shape[0] == 0:
            raise ValueError("adjacency must have at least one node, got shape (0, 0)")
        if a.nnz and not np.all(np.isfinite(a.data)):
            raise ValueError("adjacency must contain only finite values")
        a = a.copy()
        a.sum_duplicates()  # duplicates that cancel are no edge
        a.data = (a.data != 0).astype(np.float64)
        a.eliminate_zeros()
        if symmetrize:
            a = a + a.T
        a = (a + sp.eye(a.shape[0], format="csr")).tocsr()
        a.sum_duplicates()
        a.sort_indices()
        return cls(a.indptr, a.indices)

    @classmethod
    def from_networkx(cls, graph: Any, nodelist: Any = None) -> Graph:
        """Build a graph from a ``networkx`` graph (networkx is an optional dependency).

        Node ``i`` of the result is ``nodelist[i]`` (default: ``list(graph)``).
        """
        try:
            import networkx as nx
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "Graph.from_networkx needs networkx: pip install 'assignflow[graphs]'"
            ) from exc
        if not isinstance(graph, nx.Graph):
            raise TypeError(f"graph must be a networkx graph, got {type(graph).__name__}")
        if graph.number_of_nodes() == 0:
            raise ValueError("graph must have at least one node")
        if nodelist is not None:
            nodelist = _check_nodelist(graph, nodelist)
        adj = nx.to_scipy_sparse_array(graph, nodelist=nodelist, weight=None, format="csr")
        return cls.from_adjacency(adj)

    @classmethod
    def knn(cls, X: Any, n_neighbors: int = 8, *, metric: str = "euclidean") -> Graph:
        """Symmetrised k-nearest-neighbour graph of the rows of ``X``.

        Node ``i`` is linked to its ``n_neighbors`` nearest other points, and the
        pattern is symmetrised (``i ~ k`` if either is among the other's nearest).
        """
        from sklearn.neighbors import NearestNeighbors

        x = as_float_array(X, "X", ndim=(1, 2))
        if x.ndim == 1:
            x = x[:, None]
        if x.shape[0] < 1:
            raise ValueError("X must hold at least one point, got 0 rows")
        k = check_positive_int(n_neighbors, "n_neighbors")
        if not (isinstance(metric, str) or callable(metric)):
            raise TypeError(f"metric must be a string or a callable, got {type(metric).__name__}")
        k = min(k, x.shape[0] - 1)
        if k == 0:
            return cls.from_adjacency(sp.csr_matrix((x.shape[0], x.shape[0])))
        try:
            nn = NearestNeighbors(n_neighbors=k + 1, metric=metric).fit(x)
        except ValueError as exc:  # sklearn's message for an unknown metric
            raise ValueError(f"metric {metric!r} is not supported by kNN search: {exc}") from None
        a = nn.kneighbors_graph(x, mode="connectivity")
        return cls.from_adjacency(a)


def _check_nodelist(graph: Any, nodelist: Any) -> list:
    if isinstance(nodelist, (str, bytes)) or not hasattr(nodelist, "__iter__"):
        raise TypeError(f"nodelist must be a sequence of nodes, got {type(nodelist).__name__}")
    nodes = list(nodelist)
    if not nodes:
        raise ValueError("nodelist must not be empty")
    try:
        missing = [v for v in nodes if v not in graph]
        distinct = len(set(nodes))
    except TypeError as exc:  # unhashable entries
        raise TypeError(f"nodelist must hold nodes of the graph ({exc})") from None
    if missing:
        raise ValueError(f"nodelist contains {missing[0]!r}, which is not a node of the graph")
    if distinct != len(nodes):
        raise ValueError("nodelist must not contain duplicates")
    return nodes


def _validate_csr(indptr: np.ndarray, indices: np.ndarray) -> None:
    if len(indptr) < 2:
        raise ValueError("indptr must have length n_nodes + 1 >= 2 (a graph needs a node)")
    if indptr[0] != 0 or indptr[-1] != len(indices):
        raise ValueError(
            f"indptr must start at 0 and end at len(indices)={len(indices)}, "
            f"got {indptr[0]} and {indptr[-1]}"
        )
    deg = np.diff(indptr)
    if np.any(deg < 1):
        raise ValueError("indptr must be increasing: every node needs itself in its neighbourhood")
    n = len(indptr) - 1
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise ValueError(f"indices must lie in [0, {n}), got values outside")
    rows = np.repeat(np.arange(n), deg)
    step = np.diff(indices)
    same_row = rows[1:] == rows[:-1]
    if np.any(step[same_row] <= 0):
        raise ValueError("indices must be strictly increasing within each row (sorted, unique)")
    has_self = np.zeros(n, dtype=bool)
    has_self[rows[indices == rows]] = True
    if not has_self.all():
        missing = int(np.flatnonzero(~has_self)[0])
        raise ValueError(
            f"every neighbourhood must contain its own node (N_i ∋ i); node {missing} does not"
        )


# --------------------------------------------------------------------------- grids
def _grid_pattern(shape: tuple[int, int], radius: int):
    h, w = shape
    r = radius
    offsets = np.array([(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)])
    ys, xs = np.divmod(np.arange(h * w), w)
    ny = ys[:, None] + offsets[None, :, 0]
    nx = xs[:, None] + offsets[None, :, 1]
    valid = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
    # lexicographic (dy, dx) order is increasing linear index, so rows come out sorted
    indices = (ny * w + nx)[valid]
    indptr = np.concatenate([[0], np.cumsum(valid.sum(axis=1))])
    return offsets, valid, indptr, indices


@persistence.persistable(
    "GridGraph",
    fields=("shape", "radius"),
    nbytes=lambda shape, radius: 32 * (2 * radius + 1) ** len(shape) * np.prod(shape, dtype=object),
)
@registry.graphs.register("grid")
@attrs.frozen(eq=False, init=False, repr=False)
class GridGraph(Graph):
    """Grid graph of an ``h × w`` image with a ``(2r+1)×(2r+1)`` window.

    The window is clipped at the border. Pixels are numbered row by row
    (``i = y·w + x``), so node arrays of shape ``(h·w, J)`` are images of shape
    ``(h, w, J)`` flattened in C order.

    Parameters
    ----------
    shape : (int, int)
        Image height and width.
    radius : int, default=1
        Window radius ``r``; ``r = 1`` gives the 3×3 neighbourhood of the paper.

    Notes
    -----
    On a grid the weights are applied by shifted multiply–adds over the
    ``(2r+1)²`` window offsets (Ω stored as diagonals), and edge-wise products
    by shifted row-wise dot products: no index gathers.
    """

    shape: tuple[int, int] = attrs.field(default=(1, 1))
    radius: int = attrs.field(default=1)

    def __init__(self, shape: Any, radius: int = 1) -> None:
        if isinstance(shape, (int, np.integer)):
            raise ValueError(f"shape must be a pair (height, width), got {shape!r}")
        if not hasattr(shape, "__len__"):
            raise TypeError(f"shape must be a pair (height, width), got {shape!r}")
        if len(shape) != 2:
            raise ValueError(f"shape must be a pair (height, width), got {shape!r}")
        h = check_positive_int(shape[0], "shape[0]")
        w = check_positive_int(shape[1], "shape[1]")
        r = check_positive_int(radius, "radius", minimum=0)
        _, _, indptr, indices = _grid_pattern((h, w), r)
        self.__attrs_init__(indptr=indptr, indices=indices, shape=(h, w), radius=r)

    def __repr__(self) -> str:
        return f"GridGraph(shape={self.shape}, radius={self.radius})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.shape == other.shape and self.radius == other.radius

    def __hash__(self) -> int:
        return hash(("GridGraph", self.shape, self.radius))

    @property
    def window_size(self) -> int:
        """Number of window offsets ``K = (2r+1)²``."""
        return (2 * self.radius + 1) ** 2

    @cached_property
    def offsets(self) -> np.ndarray:
        """Window offsets ``(dy, dx)``, shape ``(K, 2)``, in lexicographic order."""
        return _grid_pattern((1, 1), self.radius)[0]

    @cached_property
    def flat_offsets(self) -> np.ndarray:
        """Offsets in linear pixel index: ``dy·w + dx``."""
        return self.offsets[:, 0] * self.shape[1] + self.offsets[:, 1]

    @cached_property
    def valid(self) -> np.ndarray:
        """Mask ``(h·w, K)`` of window positions inside the image."""
        return _grid_pattern(self.shape, self.radius)[1]

    def patches_to_values(self, patches: np.ndarray) -> np.ndarray:
        """Per-pixel patches ``(h, w, K)`` → edge values aligned with :attr:`indices`."""
        return patches.reshape(self.n_nodes, self.window_size)[self.valid]

    def values_to_patches(self, values: np.ndarray) -> np.ndarray:
        """Edge values → per-pixel patches ``(h, w, K)``, zero outside the image."""
        out = np.zeros((self.n_nodes, self.window_size), dtype=np.result_type(values, float))
        out[self.valid] = values
        return out.reshape(*self.shape, self.window_size)

    def weight_operator(self, values: np.ndarray) -> DiagonalOperator:
        planes = self.values_to_patches(values).reshape(self.n_nodes, -1).T
        offsets, inverse = np.unique(self.flat_offsets, return_inverse=True)
        if len(offsets) < len(self.flat_offsets):
            # images narrower than the window: distinct (dy, dx) can share a linear
            # offset, but at most one of them is inside the image at any pixel
            merged = np.zeros((len(offsets), self.n_nodes))
            np.add.at(merged, inverse, planes)
            return DiagonalOperator(merged, offsets)
        return DiagonalOperator(planes.copy(), self.flat_offsets)

    def edge_dot(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        n = self.n_nodes
        out = np.zeros((n, self.window_size))
        for o, off in enumerate(self.flat_offsets):
            a, c = max(0, -off), min(n, n - off)
            if c > a:
                # wrapped pairs at the left/right border are masked out below
                out[a:c, o] = np.einsum("ij,ij->i", X[a:c], Y[a + off : c + off])
        return out[self.valid]
