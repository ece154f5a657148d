r"""Row-wise kernels of the assignment manifold's geometry (the simplex with Fisher–Rao).

Unchecked and vectorised over rows (and leading axes): the one implementation of
:math:`\Pi_0`, :math:`R_p`, :math:`\exp_p`, :math:`\exp_p^{-1}`, :math:`\operatorname{Exp}_p`,
the softmax and the entropy, used by :class:`~assignflow.AssignmentManifold` (which
validates its inputs and calls them) and by the flows, similarity, losses,
gradients and predictors alike.
"""

from __future__ import annotations

import numpy as np

from ._parallel import row_blocks, run_chunks

__all__ = [
    "entropy",
    "exp",
    "lift",
    "lift_inverse",
    "log_softmax",
    "project_tangent",
    "replicator",
    "replicator_inplace",
    "row_dot",
    "row_max",
    "row_sum",
    "softmax",
    "softmax_scaled",
]


# numpy's reductions along a short last axis pay a set-up per row: for (n, J) arrays
# with J labels, einsum's row sums are about 3x and a loop of J column maxima about
# 5x faster than .sum(axis=1) and .max(axis=1) (measured at J = 10).
_COLUMN_LOOP_MAX = 32


def row_sum(x: np.ndarray, dtype: type | None = None) -> np.ndarray:
    """Row sums of a 2-D array (accumulated in ``dtype`` if given), shape ``(n,)``."""
    return np.einsum("ij->i", x, dtype=dtype)


def row_max(x: np.ndarray) -> np.ndarray:
    """Row maxima of a 2-D array, shape ``(n,)`` (NaN-propagating, like ``max``)."""
    J = x.shape[1]
    if J == 0 or J > _COLUMN_LOOP_MAX:
        return x.max(axis=1)
    m = x[:, 0].copy()
    for j in range(1, J):
        np.maximum(m, x[:, j], out=m)
    return m


def project_tangent(x: np.ndarray) -> np.ndarray:
    if x.ndim == 2:
        return x - (row_sum(x) / x.shape[1])[:, None]
    return x - x.mean(axis=-1, keepdims=True)


def row_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise inner products ``<a_i, b_i>`` without a temporary of full size."""
    if a.ndim == 2:
        return np.einsum("ij,ij->i", a, b)
    return (a * b).sum(axis=-1)


def replicator(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    out = p * x
    s = row_sum(out)[:, None] if out.ndim == 2 else out.sum(axis=-1, keepdims=True)
    out -= s * p
    return out


def replicator_inplace(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Overwrite ``x`` with ``R_p x = p ⊙ (x − <p, x> 1)`` (two passes, no temporary)."""
    s = row_dot(p, x)
    x -= s[..., None]
    x *= p
    return x


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax with a max shift (no overflow for any finite input)."""
    if z.ndim == 2:
        out = z - row_max(z)[:, None]
        np.exp(out, out=out)
        out /= row_sum(out)[:, None]
        return out
    out = z - z.max(axis=-1, keepdims=True)
    np.exp(out, out=out)
    out /= out.sum(axis=-1, keepdims=True)
    return out


def softmax_scaled(z: np.ndarray, scale: float, out: np.ndarray | None = None) -> np.ndarray:
    """Row-wise ``softmax(scale · z)`` of a 2-D array, in row blocks on the thread pool.

    Into ``out`` (``z`` itself is allowed) or a fresh array; each block's passes stay in
    cache. For full images: ``Exp`` at the barycenter, ``S0``.
    """
    if out is None:
        out = np.empty_like(z)
    blocks = row_blocks(*z.shape)

    def work(k: int) -> None:
        for a, c in blocks[k]:
            b = out[a:c]
            np.multiply(z[a:c], scale, out=b)
            b -= row_max(b)[:, None]
            np.exp(b, out=b)
            b /= row_sum(b)[:, None]

    run_chunks(work, len(blocks))
    return out


def log_softmax(z: np.ndarray) -> np.ndarray:
    if z.ndim == 2:
        out = z - row_max(z)[:, None]
        out -= np.log(row_sum(np.exp(out)))[:, None]
        return out
    out = z - z.max(axis=-1, keepdims=True)
    out -= np.log(np.exp(out).sum(axis=-1, keepdims=True))
    return out


def lift(p: np.ndarray, v: np.ndarray) -> np.ndarray:
    # exp_p(v) = softmax(log p + v); shifting v by its row max first keeps huge
    # row constants (exp_p(v + c1) = exp_p(v)) from swallowing log p
    # a row spread beyond the float range overflows to -inf, i.e. to the correct weight 0
    with np.errstate(divide="ignore", over="ignore"):
        return softmax(np.log(p) + (v - v.max(axis=-1, keepdims=True)))


def lift_inverse(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return project_tangent(np.log(q) - np.log(p))


def exp(p: np.ndarray, v: np.ndarray) -> np.ndarray:
    # v / p overflows for huge v or tiny p: clip to the float range so that the
    # limit point (a vertex) comes out instead of inf - inf = NaN
    with np.errstate(over="ignore"):
        z = v / p
    big = np.finfo(z.dtype).max
    return lift(p, np.clip(z, -big, big, out=z))


def entropy(w: np.ndarray) -> np.ndarray:
    """Row entropies ``−Σ_j w_j log w_j`` (with ``0 log 0 = 0``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(w > 0, w * np.log(w), 0.0)
    return -t.sum(axis=-1)
