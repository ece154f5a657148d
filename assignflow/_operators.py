"""Matrix-free kernels for ``Ω V``, ``Ωᵀ U`` and edge-wise inner products.

Two storage schemes, both row-chunked over the thread pool of ``_parallel``:

* :class:`CSROperator` — any graph: ``Ω`` as a CSR matrix (values aligned with the
  graph's ``indices``), and ``Ωᵀ`` as a second CSR matrix built once.
* :class:`DiagonalOperator` — grids: ``Ω`` is stored as its ``(2r+1)²`` diagonals,
  one per window offset (the per-pixel weight patches, shifted), and applied by
  shifted multiply–adds in scipy's compiled DIA kernel. No index arrays, no
  gathers; ``Ωᵀ`` has the same diagonals with negated offsets.

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

    def _run(self, x: np.ndarray, transpose: bool, rowwise: RowFunc | None) -> np.ndarray:
        x2, squeeze = _as_2d(x)
        if not x2.flags.c_contiguous:
            x2 = np.ascontiguousarray(x2)
        # float32 in, float32 out (the blocks are kept in both precisions), so that
        # large problems in single precision never upcast; anything else is float64
        dtype = np.dtype(np.float32 if x2.dtype == np.float32 else np.float64)
        out = np.empty((self.n, x2.shape[1]), dtype=dtype)
        blocks = self._cache(transpose, n_chunks_for(x2.size), dtype)

        def work(k: int) -> None:
            mat, a, c, lo, hi = blocks[k]
            block = mat @ x2[lo:hi]
            if rowwise is not None:
                rowwise(block, a, c)
            out[a:c] = block

        run_chunks(work, len(blocks))
        return out[:, 0] if squeeze else out

    def apply(self, x: np.ndarray, rowwise: RowFunc | None = None) -> np.ndarray:
        """``Ω x`` for ``x`` of shape ``(n,)`` or ``(n, J)``."""
        return self._run(x, False, rowwise)

    def apply_transpose(self, x: np.ndarray, rowwise: RowFunc | None = None) -> np.ndarray:
        """``Ωᵀ x`` for ``x`` of shape ``(n,)`` or ``(n, J)``."""
        return self._run(x, True, rowwise)


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
    """``Ω`` on a grid as diagonals: ``(Ω x)_i = Σ_o planes[o, i] · x_{i + offsets[o]}``.

    ``planes`` is row-indexed (``planes[o, i] = ω_{i, i+offsets[o]}``) and zero
    where the window leaves the image.
    """

    def __init__(self, planes: np.ndarray, offsets: np.ndarray) -> None:
        self.planes = planes
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.n = planes.shape[1]
        self.reach = int(np.abs(self.offsets).max(initial=0))

    def _shifted_planes(self) -> np.ndarray:
        """``s[o, i + off] = planes[o, i]``: the column-indexed diagonals of ``Ω``.

        They are also the row-indexed diagonals of ``Ωᵀ`` (offsets negated), since
        ``Ωᵀ[k, k - off] = Ω[k - off, k]``.
        """
        s = np.zeros_like(self.planes)
        for o, off in enumerate(self.offsets):
            if abs(off) >= self.n:
                continue  # the window offset leaves the image entirely: no entries
            if off >= 0:
                s[o, off:] = self.planes[o, : self.n - off]
            else:
                s[o, :off] = self.planes[o, -off:]
        return s

    def _blocks(self, transpose: bool, n_chunks: int, dtype: np.dtype):
        planes = self._shifted_planes() if transpose else self.planes
        offsets = -self.offsets if transpose else self.offsets
        blocks = []
        for a, c in row_chunks(self.n, n_chunks):
            lo, hi = max(0, a - self.reach), min(self.n, c + self.reach)
            loc = offsets + (a - lo)
            # scipy's DIA data is column-indexed: data[o, col] with col = row + offset
            data = np.zeros((len(offsets), hi - lo), dtype=dtype)
            for o, off in enumerate(loc):
                r0 = max(0, -off)
                r1 = min(c - a, hi - lo - off)
                if r1 > r0:
                    data[o, r0 + off : r1 + off] = planes[o, a + r0 : a + r1]
            blocks.append((sp.dia_matrix((data, loc), shape=(c - a, hi - lo)), a, c, lo, hi))
        return blocks

    def to_csr(self) -> sp.csr_matrix:
        mat = sp.dia_matrix((self._shifted_planes(), self.offsets), shape=(self.n, self.n))
        return mat.tocsr()
