"""Matrix-free kernels for ``Ω V``, ``Ωᵀ U`` and edge-wise inner products.

Two storage schemes, both row-chunked over the thread pool of ``_parallel``:

* :class:`CSROperator` — any graph: ``Ω`` as a CSR matrix (values aligned with the
  graph's ``indices``), and ``Ωᵀ`` as a second CSR matrix built once.
* :class:`DiagonalOperator` — grids of any dimension: ``Ω`` is stored as its
  ``(2r+1)^ndim`` diagonals, one per window offset (the per-node weight patches,
  shifted by the offset's linear index), and applied by shifted multiply–adds in
  scipy's compiled DIA kernel. No index arrays, no gathers; ``Ωᵀ`` has the same
  diagonals, row-indexed, with negated offsets. Each row chunk shares the one
  diagonal array of its dtype (float64 or float32).

Both accept an optional ``rowwise(block, start, stop)`` callback that post-processes
each output block in place while it is still in cache; the flows use it to fuse the
replicator ``R_{S0}`` into ``A V = R_{S0}(Ω V)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from ._parallel import n_chunks_for, row_chunks, run_chunks

RowFunc = Callable[[np.ndarray, int, int], None]

_BUILD_CHUNK = 1 << 18  # entries per row block when building diagonals


def _as_2d(v: np.ndarray) -> tuple[np.ndarray, bool]:
    return (v[:, None], True) if v.ndim == 1 else (v, False)


class _ChunkedOperator(ABC):
    """Shared driver: ``out[a:c] = block_k @ x[lo:hi]`` per chunk, then ``rowwise``."""

    n: int

    @abstractmethod
    def _blocks(self, transpose: bool, n_chunks: int, dtype: np.dtype) -> list:
        """Row blocks ``(matrix, a, c, lo, hi)`` with ``out[a:c] = matrix @ x[lo:hi]``."""

    def _cache(self, transpose: bool, n_chunks: int, dtype: np.dtype):
        key = (transpose, n_chunks, dtype)
        cache = self.__dict__.setdefault("_block_cache", {})
        if key not in cache:
            cache[key] = self._blocks(transpose, n_chunks, dtype)
        return cache[key]

    def _run(
        self,
        x: np.ndarray,
        transpose: bool,
        rowwise: RowFunc | None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        x2, squeeze = _as_2d(x)
        if not x2.flags.c_contiguous:
            x2 = np.ascontiguousarray(x2)
        # float32 in, float32 out (the blocks are kept in both precisions), so that
        # large problems in single precision never upcast; anything else is float64
        dtype = np.dtype(np.float32 if x2.dtype == np.float32 else np.float64)
        if out is None:
            out = np.empty((self.n, x2.shape[1]), dtype=dtype)
        else:
            out, _ = _as_2d(out)
            if out.shape != (self.n, x2.shape[1]) or out.dtype != dtype:
                raise ValueError(f"out must have shape {(self.n, x2.shape[1])}, dtype {dtype}")
        blocks = self._cache(transpose, n_chunks_for(x2.size), dtype)

        def work(k: int) -> None:
            mat, a, c, lo, hi = blocks[k]
            block = mat @ x2[lo:hi]
            if rowwise is not None:
                rowwise(block, a, c)
            out[a:c] = block

        run_chunks(work, len(blocks))
        return out[:, 0] if squeeze else out

    def apply(
        self, x: np.ndarray, rowwise: RowFunc | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """``Ω x`` for ``x`` of shape ``(n,)`` or ``(n, J)`` (into ``out`` if given)."""
        return self._run(x, False, rowwise, out)

    def apply_transpose(
        self, x: np.ndarray, rowwise: RowFunc | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """``Ωᵀ x`` for ``x`` of shape ``(n,)`` or ``(n, J)`` (into ``out`` if given)."""
        return self._run(x, True, rowwise, out)


class CSROperator(_ChunkedOperator):
    """``Ω`` for an arbitrary sparsity pattern (CSR, values aligned with ``indices``)."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray) -> None:
        self.n = len(indptr) - 1
        self.matrix = sp.csr_matrix((values, indices, indptr), shape=(self.n, self.n))

    def _blocks(self, transpose: bool, n_chunks: int, dtype: np.dtype):
        mat = self.matrix.T.tocsr() if transpose else self.matrix
        mat = mat.astype(dtype, copy=False)
        return [(mat[a:c], a, c, 0, self.n) for a, c in row_chunks(self.n, n_chunks)]

    def to_csr(self) -> sp.csr_matrix:
        return self.matrix.copy()


class DiagonalOperator(_ChunkedOperator):
    """``Ω`` on a grid as diagonals: ``(Ω x)_i = Σ_o P[o, i] · x_{i + offsets[o]}``.

    ``P`` holds the row-indexed diagonals (``P[o, i] = ω_{i, i+offsets[o]}``, zero
    where the window leaves the grid); offsets are linear (flat) node offsets, so the
    same kernel serves 1-D, 2-D and 3-D grids. Window offsets that share a flat offset
    (grids narrower than the window, where at most one of them is inside the grid at
    any node) are merged.

    Two diagonal arrays of shape ``(n_offsets, n)`` are built lazily, once per dtype:
    scipy's DIA data of ``Ω`` (column-indexed: ``data[o, j] = P[o, j - off]``) for
    ``Ω x``, and ``P`` itself, which is the DIA data of ``Ωᵀ`` with negated offsets,
    for ``Ωᵀ x``. Each row chunk ``[a, c)`` is a DIA matrix of shape ``(c - a, n)``
    that shares the whole data array, with its offsets shifted by ``a``: no copies
    per chunk, no index arrays, no gathers.

    Parameters
    ----------
    planes : ndarray, shape (K, n)
        The row-indexed diagonals ``P``.
    offsets : array of int, shape (K,)
        Flat offset of each diagonal.
    """

    def __init__(self, planes: np.ndarray, offsets: np.ndarray) -> None:
        planes = np.asarray(planes)
        self._setup(np.asarray(offsets, dtype=np.int64), planes.shape[1])
        self._row_block = lambda a, c: planes[:, a:c].T

    @classmethod
    def from_window(
        cls, values: np.ndarray, indptr: np.ndarray, valid: np.ndarray, offsets: np.ndarray
    ) -> DiagonalOperator:
        """The operator for edge values in CSR order on a grid's window.

        Parameters
        ----------
        values : ndarray, shape (nnz,)
            ``ω`` aligned with the grid's CSR ``indices``.
        indptr : ndarray, shape (n + 1,)
            The grid's row pointer.
        valid : ndarray of bool, shape (n, K)
            Window positions inside the grid (row ``i`` holds ``degree_i`` of them).
        offsets : ndarray of int, shape (K,)
            Flat offset of each window position.

        Returns
        -------
        DiagonalOperator
            Its diagonals are built from ``values`` in row blocks when first needed,
            directly in the working precision (no ``(n, K)`` float64 copy).
        """
        obj = cls.__new__(cls)
        obj._setup(np.asarray(offsets, dtype=np.int64), valid.shape[0])

        def row_block(a: int, c: int) -> np.ndarray:
            block = np.zeros((c - a, valid.shape[1]), dtype=values.dtype)
            block[valid[a:c]] = values[indptr[a] : indptr[c]]
            return block

        obj._row_block = row_block
        return obj

    def _setup(self, window_offsets: np.ndarray, n: int) -> None:
        self.n = n
        self.window_offsets = window_offsets
        self.offsets, self._merge = np.unique(window_offsets, return_inverse=True)
        self._data_cache: dict = {}

    def _data(self, transpose: bool, dtype: np.dtype) -> np.ndarray:
        """DIA data of ``Ωᵀ`` (row-indexed ``P``) or of ``Ω`` (column-indexed), in ``dtype``."""
        key = (transpose, np.dtype(dtype))
        if key in self._data_cache:
            return self._data_cache[key]
        other = self._data_cache.get((not transpose, np.dtype(dtype)))
        if other is not None:
            return self._data_cache.setdefault(key, self._shifted(other, transpose))
        n, K = self.n, len(self.window_offsets)
        out = np.zeros((len(self.offsets), n), dtype=dtype)
        merged = len(self.offsets) < K
        step = max(1, _BUILD_CHUNK // max(1, K))
        for a in range(0, n, step):
            c = min(n, a + step)
            block = self._row_block(a, c)
            for o, off in enumerate(self.window_offsets):
                u = self._merge[o]
                if transpose:
                    lo, hi, shift = a, c, 0
                else:
                    # column j = i + off; entries with j outside the grid are zero
                    lo, hi, shift = max(a, -off), min(c, n - off), off
                if hi <= lo:
                    continue
                src = block[lo - a : hi - a, o]
                if merged:
                    out[u, lo + shift : hi + shift] += src
                else:
                    out[u, lo + shift : hi + shift] = src
        return self._data_cache.setdefault(key, out)

    def _shifted(self, other: np.ndarray, transpose: bool) -> np.ndarray:
        """One DIA data array from the other: ``data[o, j] = P[o, j - off]``.

        A contiguous copy per diagonal instead of a rebuild from the edge values (the
        same numbers: ``P[o, i]`` is zero wherever ``i + off`` leaves the grid).
        """
        n = self.n
        out = np.zeros_like(other)
        for u, off in enumerate(self.offsets.tolist()):
            lo, hi = max(0, off), min(n, n + off)  # columns j with j - off in the grid
            if hi <= lo:
                continue
            if transpose:  # P[u, i] = data[u, i + off]
                out[u, lo - off : hi - off] = other[u, lo:hi]
            else:
                out[u, lo:hi] = other[u, lo - off : hi - off]
        return out

    def _blocks(self, transpose: bool, n_chunks: int, dtype: np.dtype):
        data = self._data(transpose, dtype)
        offsets = -self.offsets if transpose else self.offsets
        return [
            (sp.dia_matrix((data, offsets + a), shape=(c - a, self.n)), a, c, 0, self.n)
            for a, c in row_chunks(self.n, n_chunks)
        ]

    def to_csr(self) -> sp.csr_matrix:
        """``Ω`` as a CSR matrix (explicit zeros dropped)."""
        data = self._data(False, np.dtype(np.float64))
        return sp.dia_matrix((data, self.offsets), shape=(self.n, self.n)).tocsr()
