r"""Weights :math:`\Omega` on the neighbourhoods of a graph.

:math:`\Omega \in \mathbb{R}^{I\times I}` is sparse: row ``i`` is supported on
:math:`\mathcal{N}_i`, strictly positive there, and sums to 1 (the paper's eq. 2.18).
Only the ``nnz`` values are stored, in the graph's CSR order; on a grid they are
the per-pixel *weight patches* of shape ``(h, w, (2r+1)²)`` (:ref:`§1 <math-graph>`).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import attrs
import numpy as np
import scipy.sparse as sp

from . import persistence
from ._validation import as_float_array
from .graphs import Graph, GridGraph

__all__ = ["Weights"]

ROW_SUM_ATOL = 1e-8


def _row_sums(graph: Graph, values: np.ndarray) -> np.ndarray:
    return np.add.reduceat(values, graph.indptr[:-1]) if graph.nnz else np.zeros(0)


def _check_graph(graph: Any) -> Graph:
    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be an assignflow Graph, got {type(graph).__name__}")
    return graph


@persistence.persistable("Weights")
@attrs.frozen(eq=False, repr=False)
class Weights:
    r"""Row-stochastic weights :math:`\Omega` on a graph's neighbourhoods.

    Parameters
    ----------
    graph : Graph
        The neighbourhoods :math:`\mathcal{N}_i`.
    values : array of float, shape (graph.nnz,)
        :math:`\omega_{ik}` for every stored ``(i, k)``, aligned with
        ``graph.indices``; must be finite, ``> 0``, and each row must sum to 1
        (within ``1e-8``). Use :meth:`normalized` to normalise positive values.

    Examples
    --------
    >>> from assignflow import GridGraph
    >>> om = Weights.uniform(GridGraph((4, 5)))
    >>> om.patches.shape
    (4, 5, 9)
    """

    graph: Graph = attrs.field(converter=_check_graph)
    values: np.ndarray = attrs.field()

    def __attrs_post_init__(self) -> None:
        vals = as_float_array(self.values, "values", shape=(self.graph.nnz,), copy=True)
        if np.any(vals <= 0):
            raise ValueError(
                "values must be > 0 on every edge of the graph (weights are strictly positive "
                "on each neighbourhood)"
            )
        sums = _row_sums(self.graph, vals)
        err = np.abs(sums - 1.0)
        if np.any(err > ROW_SUM_ATOL):
            i = int(np.argmax(err))
            raise ValueError(
                f"values must be row-stochastic (each neighbourhood sums to 1); row {i} sums to "
                f"{sums[i]:.12g}. "
                "Use Weights.normalized(graph, values) to normalise."
            )
        vals.flags.writeable = False
        object.__setattr__(self, "values", vals)

    def __repr__(self) -> str:
        return f"Weights({self.graph!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Weights):
            return NotImplemented
        return self.graph == other.graph and bool(np.array_equal(self.values, other.values))

    __hash__ = None  # mutable-free but array-valued: not hashable

    # ------------------------------------------------------------------ constructors
    @classmethod
    def _unchecked(cls, graph: Graph, values: np.ndarray) -> Weights:
        """Weights without the row-stochastic check (finite differences perturb single entries)."""
        obj = object.__new__(cls)
        vals = np.array(values, dtype=float)
        vals.flags.writeable = False
        object.__setattr__(obj, "graph", graph)
        object.__setattr__(obj, "values", vals)
        return obj

    @classmethod
    def uniform(cls, graph: Graph) -> Weights:
        r"""Uniform weights :math:`\omega_{ik} = 1/|\mathcal{N}_i|`.

        Parameters
        ----------
        graph : Graph
            The neighbourhoods.

        Returns
        -------
        Weights
            Row-stochastic weights on ``graph``.
        """
        graph = _check_graph(graph)
        return cls(graph, np.repeat(1.0 / graph.degrees, graph.degrees))

    @classmethod
    def normalized(cls, graph: Graph, values: Any) -> Weights:
        """Weights from positive (unnormalised) values: each row divided by its sum.

        Parameters
        ----------
        graph : Graph
            The neighbourhoods.
        values : array_like, shape (graph.nnz,)
            Positive values, one per edge in the graph's CSR order.

        Returns
        -------
        Weights
            Row-stochastic weights on ``graph``.
        """
        graph = _check_graph(graph)
        vals = as_float_array(values, "values", shape=(graph.nnz,))
        if np.any(vals <= 0):
            raise ValueError("values must be > 0 on every edge of the graph")
        if graph.nnz:
            # divide by each row's maximum first: a row of values near 1e308 sums to inf
            vals = vals / np.repeat(np.maximum.reduceat(vals, graph.indptr[:-1]), graph.degrees)
        return cls(graph, vals / np.repeat(_row_sums(graph, vals), graph.degrees))

    @classmethod
    def from_logits(cls, graph: Graph, logits: Any) -> Weights:
        r"""Weights ``softmax(logits)`` over each neighbourhood, i.e. :math:`\exp_{\mathbb{1}}`.

        Parameters
        ----------
        graph : Graph
            The neighbourhoods.
        logits : array_like, shape (graph.nnz,)
            Finite logits, one per edge in the graph's CSR order.

        Returns
        -------
        Weights
            Row-stochastic weights on ``graph``.
        """
        graph = _check_graph(graph)
        z = as_float_array(logits, "logits", shape=(graph.nnz,))
        zmax = np.maximum.reduceat(z, graph.indptr[:-1])
        e = np.exp(z - np.repeat(zmax, graph.degrees))
        # a spread of more than ~745 underflows to 0: keep the weights strictly positive
        e = np.maximum(e, np.finfo(float).tiny)
        return cls(graph, e / np.repeat(_row_sums(graph, e), graph.degrees))

    @classmethod
    def from_patches(cls, graph: GridGraph, patches: Any, *, normalize: bool = False) -> Weights:
        """Weights on a grid from per-pixel patches of shape ``(h, w, (2r+1)²)``.

        Entries of the window that fall outside the image are ignored. With
        ``normalize=True`` each patch is renormalised over its valid entries.

        Parameters
        ----------
        graph : GridGraph
            The image grid.
        patches : array_like, shape (h, w, (2r+1)**2)
            One weight patch per pixel (window in row-major order).
        normalize : bool, default False
            Renormalise each patch over its entries inside the image; otherwise the
            patches must already be row-stochastic there.

        Returns
        -------
        Weights
            Row-stochastic weights on ``graph``.
        """
        if not isinstance(graph, GridGraph):
            raise TypeError(f"graph must be a GridGraph, got {type(graph).__name__}")
        p = as_float_array(patches, "patches", shape=(*graph.shape, graph.window_size))
        vals = graph.patches_to_values(p)
        return cls.normalized(graph, vals) if normalize else cls(graph, vals)

    @classmethod
    def from_matrix(cls, graph: Graph, matrix: Any) -> Weights:
        """Weights from a matrix ``Ω`` (dense or sparse) whose support is the graph's pattern.

        Parameters
        ----------
        graph : Graph
            The neighbourhoods.
        matrix : array_like or scipy.sparse matrix, shape (n_nodes, n_nodes)
            The weights; its nonzeros must lie on the graph's pattern.

        Returns
        -------
        Weights
            Row-stochastic weights on ``graph``.

        Raises
        ------
        ValueError
            If ``matrix`` has a nonzero outside the pattern.
        """
        graph = _check_graph(graph)
        if sp.issparse(matrix):
            m = sp.csr_matrix(matrix)
            if m.dtype.kind not in "iuf":
                raise TypeError(f"matrix must hold real numbers, got dtype {m.dtype}")
            if not np.all(np.isfinite(m.data)):
                raise ValueError("matrix must contain only finite values (no NaN or inf)")
        else:
            m = sp.csr_matrix(as_float_array(matrix, "matrix", ndim=(1, 2)))
        n = graph.n_nodes
        if m.shape != (n, n):
            raise ValueError(f"matrix must have shape ({n}, {n}), got {m.shape}")
        m = m.tocoo()
        nz = m.data != 0
        pattern = graph.to_adjacency()
        off = np.asarray(pattern[m.row[nz], m.col[nz]]).ravel() == 0
        if np.any(off):
            i, k = int(m.row[nz][off][0]), int(m.col[nz][off][0])
            raise ValueError(
                f"matrix has a nonzero at ({i}, {k}), which is not an edge of the graph "
                "(weights must lie on the graph's sparsity pattern)"
            )
        vals = np.asarray(m.tocsr()[graph.rows, graph.indices], dtype=float).ravel()
        return cls(graph, vals)

    # ------------------------------------------------------------------ views
    @property
    def n_nodes(self) -> int:
        """Number of nodes :math:`I`."""
        return self.graph.n_nodes

    @property
    def patches(self) -> np.ndarray:
        """Per-pixel weight patches ``(h, w, (2r+1)²)`` (grids only), zero outside the image."""
        if not isinstance(self.graph, GridGraph):
            raise TypeError("patches are defined for GridGraph weights only")
        return self.graph.values_to_patches(self.values)

    def to_csr(self) -> sp.csr_matrix:
        """``Ω`` as a ``scipy.sparse`` CSR matrix.

        Returns
        -------
        scipy.sparse.csr_matrix, shape (n_nodes, n_nodes)
            A copy of the weights.
        """
        g = self.graph
        return sp.csr_matrix((self.values.copy(), g.indices, g.indptr), shape=(g.n_nodes,) * 2)

    @cached_property
    def operator(self):
        """The matrix-free kernel for ``Ω`` (built once, shared by all products)."""
        return self.graph.weight_operator(self.values)

    # ------------------------------------------------------------------ products
    def _node_array(self, x: Any, name: str) -> np.ndarray:
        arr = as_float_array(x, name, ndim=(1, 2))
        if arr.shape[0] != self.n_nodes:
            raise ValueError(
                f"{name} must have {self.n_nodes} rows (one per node), got shape {arr.shape}"
            )
        return arr

    def apply(self, V: Any) -> np.ndarray:
        r"""``Ω V``: :math:`(\Omega V)_i = \sum_{k\in\mathcal{N}_i}\omega_{ik} V_k`.

        Parameters
        ----------
        V : array_like, shape (n_nodes,) or (n_nodes, J)
            One value or row per node.

        Returns
        -------
        ndarray, shape of ``V``
            :math:`\Omega V`, matrix-free.
        """
        return self.operator.apply(self._node_array(V, "V"))

    def apply_transpose(self, U: Any) -> np.ndarray:
        r"""``Ωᵀ U``: :math:`(\Omega^\top U)_k = \sum_{i : k\in\mathcal{N}_i}\omega_{ik} U_i`.

        Parameters
        ----------
        U : array_like, shape (n_nodes,) or (n_nodes, J)
            One value or row per node.

        Returns
        -------
        ndarray, shape of ``U``
            :math:`\Omega^\top U`, matrix-free.
        """
        return self.operator.apply_transpose(self._node_array(U, "U"))

    def __matmul__(self, V: Any) -> np.ndarray:
        return self.apply(V)
