r"""Graphs: the neighbourhoods :math:`\mathcal{N}_i` on which the weights live.

A :class:`Graph` stores the neighbourhoods :math:`\mathcal{N}_i = \{k : ik \in E\}
\cup \{i\}` in CSR form: the neighbours of node ``i`` are
``indices[indptr[i]:indptr[i+1]]``, sorted, and always include ``i`` itself. Any
graph works — grids, kNN graphs of point clouds, meshes, superpixel adjacencies;
:class:`GridGraph` is the grid case (images ``(h, w)``, volumes ``(d, h, w)``, any
number of axes) with a ``(2r+1)^ndim`` window clipped at the border, and gets faster
kernels (shifted multiply–adds instead of gathers).

A graph also owns the kernels that act on edge-aligned values: the product with
the weight matrix (:meth:`Graph.weight_operator`) and the edge-wise inner
products used by gradients (:meth:`Graph.edge_dot`). A plugin graph can override
them with faster ones for its structure.

**Graphs by name.** ``af.registry.graphs`` maps names to graph factories. A factory is called as
``registry.graphs.resolve(name, X=X, **graph_params)``, where ``X`` is the array of
node features whose *last* axis holds the features and whose leading axes index the
nodes in C order (``(n, d)`` tabular data, ``(h, w, c)`` an image, ``(d, h, w, c)``
a volume); it returns a :class:`Graph` with ``prod(X.shape[:-1])`` nodes. Built in:

* ``"grid"`` — :class:`GridGraph` of the grid ``X.shape[:-1]`` (parameter ``radius``);
* ``"knn"`` — :func:`knn_graph`, the kNN graph of the feature vectors (parameters
  ``n_neighbors``, ``metric``);
* ``"graph"`` — the base class :class:`Graph` itself, listed for lookups
  (``get("graph") is Graph``); it is built from a CSR pattern, not from ``X``: pass a
  ready :class:`Graph` instance where an explicit graph is meant.

**Resource bounds.** A grid is refused (``ValueError``) when its window positions
``n_nodes × window_size`` exceed :data:`MAX_GRID_WINDOW_POSITIONS` (about 2.1·10⁹:
the size of its full window mask and weight patches; the per-edge arrays of such a
grid would take more than 17 GB each). A radius beyond the grid's extent costs
nothing: only window offsets that are inside the grid for some node are ever stored
or visited (``GridGraph((2, 2), radius=1500)`` has 16 edges and is built at once).
:meth:`Graph.knn` clips ``n_neighbors >= n_samples`` to ``n_samples - 1`` with a
``UserWarning``.
"""

from __future__ import annotations

import math
import warnings
from functools import cached_property
from typing import Any

import attrs
import numpy as np
import scipy.sparse as sp

from . import persistence, registry
from ._operators import CSROperator, DiagonalOperator
from ._parallel import n_chunks_for, row_chunks, run_chunks
from ._validation import as_float_array, check_positive_int

__all__ = ["MAX_GRID_WINDOW_POSITIONS", "Graph", "GridGraph", "knn_graph"]

#: Upper bound on ``n_nodes × window_size`` of a :class:`GridGraph` (the size of its
#: window mask and weight patches; it bounds the nodes and edges too). Beyond it the
#: column indices alone (8 bytes per edge) would exceed 17 GB.
MAX_GRID_WINDOW_POSITIONS = 2**31 - 1

#: Most grid axes supported (numpy arrays have at most 64 axes; the window mask is
#: built on ``2·ndim`` of them).
MAX_GRID_NDIM = 32

_CHUNK = 1 << 18  # entries (rows × columns) per chunk of the chunked kernels


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


def _edge_dtype(X: np.ndarray, Y: np.ndarray) -> np.dtype:
    """float32 when both inputs are float32 (large problems stay single precision)."""
    both32 = X.dtype == np.float32 and Y.dtype == np.float32
    return np.dtype(np.float32 if both32 else np.float64)


def _run_row_blocks(n_rows: int, row_cost: int, work) -> None:
    """Call ``work(a, c)`` over row blocks of about ``_CHUNK`` entries, threaded if large."""
    per = max(1, _CHUNK // max(1, row_cost))
    blocks = row_chunks(n_rows, -(-n_rows // per))
    if n_chunks_for(n_rows * row_cost) == 1:
        for a, c in blocks:
            work(a, c)
    else:
        run_chunks(lambda k: work(*blocks[k]), len(blocks))


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
        """The 0/1 pattern as a CSR matrix (self-loops included).

        Returns
        -------
        scipy.sparse.csr_matrix
            Shape ``(n_nodes, n_nodes)``, float64, with a 1 at every ``(i, k)``,
            :math:`k \\in \\mathcal{N}_i`, and 0 elsewhere.
        """
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

        Parameters
        ----------
        values : ndarray, shape (nnz,)
            :math:`\\omega_{ik}` for every stored ``(i, k)``, aligned with
            :attr:`indices`. Not validated here (callers such as
            :class:`~assignflow.Weights` do).

        Returns
        -------
        CSROperator
            An object with ``apply(V)`` (``Ω V``) and ``apply_transpose(U)``
            (``Ωᵀ U``) for ``V``, ``U`` of shape ``(n_nodes,)`` or
            ``(n_nodes, J)``: a CSR product, chunked over row blocks.
        """
        return CSROperator(self.indptr, self.indices, values)

    def edge_dot(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Edge-wise inner products ``e_ik = <X_i, Y_k>`` for all stored ``(i, k)``.

        Parameters
        ----------
        X : ndarray, shape (n_nodes, J)
            Rows :math:`X_i`, indexed by the first node ``i`` of an entry.
        Y : ndarray, shape (n_nodes, J)
            Rows :math:`Y_k`, indexed by the neighbour ``k``.

        Returns
        -------
        ndarray, shape (nnz,)
            Aligned with :attr:`indices`. This is the "sampled" product
            :math:`(X Y^\\top)_{ik}` on the sparsity pattern used by the weight
            gradient; it costs ``O(nnz · J)``. float32 when both ``X`` and ``Y``
            are float32, else float64. Computed in row blocks (no ``nnz``-sized
            index temporaries).
        """
        out = np.empty(self.nnz, dtype=_edge_dtype(X, Y))
        indptr, indices, deg = self.indptr, self.indices, self.degrees

        def work(a: int, c: int) -> None:
            s, e = indptr[a], indptr[c]
            rows = np.repeat(np.arange(a, c), deg[a:c])
            out[s:e] = np.einsum("ij,ij->i", X[rows], Y[indices[s:e]])

        cost = max(1, self.nnz // max(1, self.n_nodes)) * X.shape[1]
        _run_row_blocks(self.n_nodes, cost, work)
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

        Returns
        -------
        Graph
            The pattern with a self-loop added at every node, rows sorted.
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

        Parameters
        ----------
        graph : networkx.Graph
            Any networkx graph (directed graphs are symmetrised).
        nodelist : sequence, optional
            Node ``i`` of the result is ``nodelist[i]`` (default: ``list(graph)``).

        Returns
        -------
        Graph
            The symmetrised edges of ``graph`` with a self-loop at every node.
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

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features) or (n_samples,)
            The points (a 1-D array is a set of points on the line).
        n_neighbors : int, default=8
            Neighbours per point, ``>= 1``. A point has only ``n_samples - 1``
            others: ``n_neighbors >= n_samples`` is clipped to ``n_samples - 1``
            (every point linked to all others) with a ``UserWarning``.
        metric : str or callable, default="euclidean"
            Any metric of :class:`sklearn.neighbors.NearestNeighbors`.

        Returns
        -------
        Graph
            ``n_samples`` nodes, symmetric, with a self-loop at every node.
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
        n = x.shape[0]
        if k >= n:
            warnings.warn(
                f"n_neighbors={k} >= n_samples={n}: clipped to n_samples - 1 = {n - 1} "
                "(every point is linked to all others)",
                UserWarning,
                stacklevel=2,
            )
            k = n - 1
        if k == 0:
            return cls.from_adjacency(sp.csr_matrix((n, n)))
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
    # row blocks of about _CHUNK entries: no nnz-sized temporaries
    per = max(1, int(_CHUNK * n // max(1, len(indices))))
    for a in range(0, n, per):
        c = min(n, a + per)
        seg = indices[indptr[a] : indptr[c]]
        rows = np.repeat(np.arange(a, c), deg[a:c])
        if np.any(np.diff(seg)[rows[1:] == rows[:-1]] <= 0):
            raise ValueError("indices must be strictly increasing within each row (sorted, unique)")
        has_self = np.zeros(c - a, dtype=bool)
        has_self[rows[seg == rows] - a] = True
        if not has_self.all():
            missing = a + int(np.flatnonzero(~has_self)[0])
            raise ValueError(
                f"every neighbourhood must contain its own node (N_i ∋ i); node {missing} does not"
            )


# --------------------------------------------------------------------------- grids
def _check_shape(shape: Any) -> tuple[int, ...]:
    what = "a tuple of axis lengths, e.g. (h, w) or (d, h, w)"
    if isinstance(shape, (int, np.integer)):
        raise ValueError(f"shape must be {what}, got the integer {shape!r}; use ({shape},)")
    if not hasattr(shape, "__len__"):
        raise TypeError(f"shape must be {what}, got {shape!r}")
    if not 1 <= len(shape) <= MAX_GRID_NDIM:
        raise ValueError(f"shape must have 1 to {MAX_GRID_NDIM} axes, got {shape!r}")
    return tuple(check_positive_int(s, f"shape[{a}]") for a, s in enumerate(shape))


def _window_offsets(radii: tuple[int, ...]) -> np.ndarray:
    """All offsets in ``[-r_0, r_0] × … × [-r_{D-1}, r_{D-1}]``, shape ``(K, D)``, lexicographic."""
    grids = np.meshgrid(*[np.arange(-r, r + 1) for r in radii], indexing="ij")
    return np.stack(grids, axis=-1).reshape(-1, len(radii)).astype(np.int64)


def _axis_masks(shape: tuple[int, ...], radii: tuple[int, ...]) -> list[np.ndarray]:
    """Per axis, ``m[x, d + r] = 0 <= x + d < s``: shape ``(s, 2r+1)``."""
    out = []
    for s, r in zip(shape, radii, strict=True):
        t = np.arange(s)[:, None] + np.arange(-r, r + 1)[None, :]
        out.append((t >= 0) & (t < s))
    return out


def _window_mask(shape: tuple[int, ...], radii: tuple[int, ...]) -> np.ndarray:
    """``valid[i, o]``: window offset ``o`` of node ``i`` lies inside the grid.

    The mask is separable (a product of the per-axis masks), so it is built by
    broadcasting, without index arrays: ``(n_nodes, K)`` booleans and nothing larger.
    """
    ndim = len(shape)
    out = np.ones((1,) * (2 * ndim), dtype=bool)
    for a, m in enumerate(_axis_masks(shape, radii)):
        view = [1] * (2 * ndim)
        view[a], view[ndim + a] = m.shape
        out = out & m.reshape(view)
    return out.reshape(math.prod(shape), -1)


def _grid_csr(
    shape: tuple[int, ...], radii: tuple[int, ...], valid: np.ndarray, flat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n, K = valid.shape
    deg = np.ones((), dtype=np.int64)  # separable too: the product of per-axis counts
    for m in _axis_masks(shape, radii):
        deg = np.multiply.outer(deg, m.sum(axis=1).astype(np.int64))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(deg.ravel(), out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=np.int64)
    # lexicographic offsets are increasing linear indices among the valid ones, so
    # each row comes out sorted; row blocks keep the (rows × K) temporary small
    per = max(1, _CHUNK // K)
    for a in range(0, n, per):
        c = min(n, a + per)
        idx = np.arange(a, c, dtype=np.int64)[:, None] + flat[None, :]
        indices[indptr[a] : indptr[c]] = idx[valid[a:c]]
    return indptr, indices


def _check_grid_size(shape: tuple[int, ...], radius: int) -> None:
    n = math.prod(shape)
    K = (2 * radius + 1) ** len(shape)
    if n * K > MAX_GRID_WINDOW_POSITIONS:
        raise ValueError(
            f"a grid of shape {shape} with radius {radius} has {n} nodes × {K} window "
            f"offsets = {n * K} window positions, more than the supported "
            f"{MAX_GRID_WINDOW_POSITIONS} (MAX_GRID_WINDOW_POSITIONS); use a smaller "
            "shape or radius"
        )


@attrs.frozen(eq=False)
class _Support:
    """The window offsets that are inside the grid for some node (per axis ``|d| < s``).

    ``columns`` are their positions in the full window (``None``: all of them),
    ``flat`` their linear offsets, ``valid`` the ``(n_nodes, len(flat))`` mask.
    Kernels and storage only ever visit these: a radius beyond the grid's extent
    costs nothing.
    """

    columns: np.ndarray | None
    flat: np.ndarray
    valid: np.ndarray


def _strides(shape: tuple[int, ...]) -> np.ndarray:
    return np.array([math.prod(shape[a + 1 :]) for a in range(len(shape))], dtype=np.int64)


def _grid_support(shape: tuple[int, ...], radius: int) -> _Support:
    radii = tuple(min(radius, s - 1) for s in shape)
    offsets = _window_offsets(radii)
    valid = _window_mask(shape, radii)
    columns = None
    if radii != (radius,) * len(shape):
        # position of each offset d in the full window: Σ_a (d_a + r)(2r+1)^(D-1-a)
        side = 2 * radius + 1
        weights = np.array([side ** (len(shape) - 1 - a) for a in range(len(shape))])
        columns = (offsets + radius) @ weights
    for arr in (offsets, valid, columns):
        if arr is not None:
            arr.flags.writeable = False
    return _Support(columns, offsets @ _strides(shape), valid)


@persistence.persistable(
    "GridGraph",
    fields=("shape", "radius"),
    nbytes=lambda shape, radius: 32 * (2 * radius + 1) ** len(shape) * np.prod(shape, dtype=object),
)
@registry.graphs.register("grid")
@attrs.frozen(eq=False, init=False, repr=False)
class GridGraph(Graph):
    """Grid graph of an image, a volume or any n-D grid, with a ``(2r+1)^ndim`` window.

    Node ``i`` is the grid point with C-order (row-major) linear index ``i``
    (``i = y·w + x`` for an image, ``i = (z·h + y)·w + x`` for a volume), so node
    arrays of shape ``(n_nodes, J)`` are arrays of shape ``(*shape, J)`` flattened in
    C order. The neighbourhood of a node is the window of all grid points within
    Chebyshev distance ``r``, clipped at the border.

    Parameters
    ----------
    shape : tuple of int
        The grid: ``(h, w)`` for an image, ``(d, h, w)`` for a volume, ``(n,)`` for a
        signal; 1 to 32 axes, each ``>= 1``.
    radius : int, default=1
        Window radius ``r >= 0``; ``r = 1`` gives the 3×3 neighbourhood of the paper
        (3×3×3 for volumes).
    X : array-like, optional, keyword only
        Instead of ``shape``: node features of shape ``(*shape, n_features)``, whose
        leading axes give the grid (the registry's factory form,
        ``af.registry.graphs.resolve("grid", X=X, radius=r)``). Only its shape is used.

    Raises
    ------
    ValueError
        If an axis is not ``>= 1``, or if the window positions
        ``n_nodes × (2r+1)^ndim`` exceed :data:`MAX_GRID_WINDOW_POSITIONS`.

    Notes
    -----
    Weight patches have shape ``(*shape, K)`` with the ``K = (2r+1)^ndim`` window
    offsets in lexicographic order (:attr:`offsets`); entries outside the grid are
    zero. The radius is kept as given (it fixes the patch layout, e.g. of a learned
    weight predictor applied to a small image), but the graph, its weights and its
    kernels only store and visit the offsets that are inside the grid for some node
    (``|d_a| < shape[a]`` on every axis): a radius beyond the grid's extent costs
    nothing (``GridGraph((2, 2), radius=1500)`` has 16 edges and builds in
    microseconds). Only the full-window views :attr:`valid`, :attr:`offsets` and the
    patches are ``n_nodes × K``, built when asked for.

    On a grid the weights are applied by shifted multiply–adds over the window
    offsets (Ω stored as diagonals), and edge-wise products by shifted row-wise
    dot products: no index gathers.

    Examples
    --------
    >>> GridGraph((2, 3, 4)).window_size
    27
    >>> GridGraph((2, 2), radius=1500).nnz
    16
    """

    shape: tuple[int, ...] = attrs.field(default=(1, 1))
    radius: int = attrs.field(default=1)

    def __init__(self, shape: Any = None, radius: int = 1, *, X: Any = None) -> None:
        if X is not None:
            if shape is not None:
                raise TypeError("pass either shape or X (node features), not both")
            xshape = np.shape(X)
            if len(xshape) < 2:
                raise ValueError(
                    "X must have shape (*grid_shape, n_features): the last axis holds the "
                    f"features, the leading axes are the grid; got shape {xshape}"
                )
            shape = xshape[:-1]
        elif shape is None:
            raise TypeError("shape must be a tuple of axis lengths, e.g. (h, w), got None")
        shape = _check_shape(shape)
        r = check_positive_int(radius, "radius", minimum=0)
        _check_grid_size(shape, r)
        support = _grid_support(shape, r)
        radii = tuple(min(r, s - 1) for s in shape)
        indptr, indices = _grid_csr(shape, radii, support.valid, support.flat)
        indptr.flags.writeable = False
        indices.flags.writeable = False
        # correct by construction: skip Graph's checks and private copies (which would
        # cost several nnz-sized temporaries on large volumes)
        for name, value in [
            ("indptr", indptr),
            ("indices", indices),
            ("shape", shape),
            ("radius", r),
            ("_support", support),
        ]:
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"GridGraph(shape={self.shape}, radius={self.radius})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.shape == other.shape and self.radius == other.radius

    def __hash__(self) -> int:
        return hash(("GridGraph", self.shape, self.radius))

    @cached_property
    def _support(self) -> _Support:
        return _grid_support(self.shape, self.radius)

    @property
    def ndim(self) -> int:
        """Number of grid axes (2 for images, 3 for volumes)."""
        return len(self.shape)

    @property
    def window_size(self) -> int:
        """Number of window offsets ``K = (2r+1)^ndim``."""
        return (2 * self.radius + 1) ** self.ndim

    @cached_property
    def offsets(self) -> np.ndarray:
        """Window offsets, shape ``(K, ndim)`` (``(dy, dx)`` for images), lexicographic."""
        return _window_offsets((self.radius,) * self.ndim)

    @cached_property
    def flat_offsets(self) -> np.ndarray:
        """Offsets in linear node index (``dy·w + dx`` for images), shape ``(K,)``."""
        return self.offsets @ _strides(self.shape)

    @cached_property
    def valid(self) -> np.ndarray:
        """Mask ``(n_nodes, K)`` of window positions inside the grid (read-only)."""
        if self._support.columns is None:
            return self._support.valid
        out = _window_mask(self.shape, (self.radius,) * self.ndim)
        out.flags.writeable = False
        return out

    def patches_to_values(self, patches: np.ndarray) -> np.ndarray:
        """Per-node patches ``(*shape, K)`` → edge values aligned with :attr:`indices`.

        Parameters
        ----------
        patches : ndarray, shape (\\*shape, K)
            One value per node and window offset (offsets in the order of
            :attr:`offsets`); the entries at offsets outside the grid are ignored.

        Returns
        -------
        ndarray, shape (nnz,)
            The values at the offsets inside the grid, aligned with :attr:`indices`.
        """
        sup = self._support
        p = patches.reshape(self.n_nodes, self.window_size)
        if sup.columns is not None:
            p = p[:, sup.columns]
        return p[sup.valid]

    def values_to_patches(self, values: np.ndarray) -> np.ndarray:
        """Edge values → per-node patches ``(*shape, K)``, zero outside the grid.

        Parameters
        ----------
        values : ndarray, shape (nnz,)
            One value per stored edge, aligned with :attr:`indices` (e.g. the
            weights :math:`\\omega_{ik}` or an edge gradient).

        Returns
        -------
        ndarray, shape (\\*shape, K)
            Offsets in the order of :attr:`offsets`; float32 for float32 values,
            else float64.
        """
        sup = self._support
        dtype = np.float32 if values.dtype == np.float32 else np.float64
        out = np.zeros((self.n_nodes, self.window_size), dtype=dtype)
        if sup.columns is None:
            out[sup.valid] = values
        else:
            part = np.zeros(sup.valid.shape, dtype=dtype)
            part[sup.valid] = values
            out[:, sup.columns] = part
        return out.reshape(*self.shape, self.window_size)

    def weight_operator(self, values: np.ndarray) -> DiagonalOperator:
        """``Ω`` as diagonals, one per window offset (see :meth:`Graph.weight_operator`).

        Parameters
        ----------
        values : ndarray, shape (nnz,)
            :math:`\\omega_{ik}` for every stored ``(i, k)``, aligned with
            :attr:`indices`; not validated here.

        Returns
        -------
        DiagonalOperator
            ``apply(V)`` (``Ω V``) and ``apply_transpose(U)`` (``Ωᵀ U``) by shifted
            multiply–adds over the window offsets inside the grid (no gathers).
        """
        sup = self._support
        return DiagonalOperator.from_window(values, self.indptr, sup.valid, sup.flat)

    def edge_dot(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Edge-wise inner products by shifted row-wise products (see :meth:`Graph.edge_dot`).

        Parameters
        ----------
        X : ndarray, shape (n_nodes, J)
            Rows :math:`X_i`, indexed by the first node ``i`` of an entry.
        Y : ndarray, shape (n_nodes, J)
            Rows :math:`Y_k`, indexed by the neighbour ``k``.

        Returns
        -------
        ndarray, shape (nnz,)
            :math:`\\langle X_i, Y_k\\rangle` for every stored ``(i, k)``, aligned with
            :attr:`indices`; float32 when both inputs are float32, else float64.
        """
        sup = self._support
        n, K = self.n_nodes, len(sup.flat)
        dtype = _edge_dtype(X, Y)
        out = np.empty(self.nnz, dtype=dtype)
        flat, valid, indptr = sup.flat, sup.valid, self.indptr

        def work(a: int, c: int) -> None:
            block = np.zeros((c - a, K), dtype=dtype)
            for o, off in enumerate(flat):
                lo, hi = max(a, -off), min(c, n - off)
                if hi > lo:
                    # pairs wrapped around a border are masked out below
                    np.einsum(
                        "ij,ij->i", X[lo:hi], Y[lo + off : hi + off], out=block[lo - a : hi - a, o]
                    )
            out[indptr[a] : indptr[c]] = block[valid[a:c]]

        _run_row_blocks(n, K * X.shape[1], work)
        return out


@registry.graphs.register("knn")
def knn_graph(X: Any, n_neighbors: int = 8, metric: str = "euclidean") -> Graph:
    """The registry's ``"knn"`` factory: the kNN graph of the nodes' feature vectors.

    Parameters
    ----------
    X : array-like, shape (..., n_features)
        Node features: the last axis holds the features, the leading axes index the
        nodes in C order (``(n, d)`` tabular data, ``(h, w, c)`` an image, ...).
    n_neighbors : int, default=8
        See :meth:`Graph.knn` (clipped to ``n_nodes - 1`` with a warning).
    metric : str or callable, default="euclidean"
        Any metric of :class:`sklearn.neighbors.NearestNeighbors`.

    Returns
    -------
    Graph
        With ``prod(X.shape[:-1])`` nodes.
    """
    x = as_float_array(X, "X")
    if x.ndim < 2:
        raise ValueError(
            "X must have shape (n_nodes, n_features) or (..., n_features): the last axis "
            f"holds the features; got shape {x.shape} (use X[:, None] for one feature)"
        )
    return Graph.knn(x.reshape(-1, x.shape[-1]), n_neighbors, metric=metric)
