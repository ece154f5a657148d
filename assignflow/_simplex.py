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
    "softmax",
    "softmax_scaled",
]


def project_tangent(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=-1, keepdims=True)


def row_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise inner products ``<a_i, b_i>`` without a temporary of full size."""
    if a.ndim == 2:
        return np.einsum("ij,ij->i", a, b)
    return (a * b).sum(axis=-1)


def replicator(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    out = p * x
    out -= out.sum(axis=-1, keepdims=True) * p
    return out


def replicator_inplace(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Overwrite ``x`` with ``R_p x = p ⊙ (x − <p, x> 1)`` (two passes, no temporary)."""
    s = row_dot(p, x)
    x -= s[..., None]
    x *= p
    return x


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax with a max shift (no overflow for any finite input)."""
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
            b -= b.max(axis=1, keepdims=True)
            np.exp(b, out=b)
            b /= b.sum(axis=1, keepdims=True)

    run_chunks(work, len(blocks))
    return out


def log_softmax(z: np.ndarray) -> np.ndarray:
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
