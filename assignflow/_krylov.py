"""Krylov subspace kernels for the matrix exponential and the phi-function.

These kernels integrate the linear inhomogeneous ODE

.. math::

    x'(t) = A x(t) + b, \\qquad x(0) = x_0,

whose exact solution is :math:`x(T) = e^{TA} x_0 + T \\varphi_1(TA) b` with
:math:`\\varphi_1(z) = (e^z - 1)/z`, for operators :math:`A` that are only
available through a matrix-vector product ``matvec(x) -> A @ x`` on flat
float64 or float32 vectors (possibly millions of entries long).  Nothing of size
:math:`O(n^2)` is ever formed; the dominant storage is one Krylov basis of
``(m + 1) * n`` floats.  The vectors keep the precision of the input (float32
stays float32, which halves the basis; anything else is float64); the small
Hessenberg matrices and their exponentials are always float64.

The methods follow

* Y. Saad, "Analysis of some Krylov subspace approximations to the matrix
  exponential operator", SIAM J. Numer. Anal. 29(1):209-228, 1992
  (Arnoldi approximation and its a-posteriori error estimate),
* M. Hochbruck and C. Lubich, "On Krylov subspace approximations to the matrix
  exponential operator", SIAM J. Numer. Anal. 34(5):1911-1925, 1997
  (convergence theory, extension to :math:`\\varphi`-functions),
* R. B. Sidje, "Expokit: a software package for computing matrix
  exponentials", ACM Trans. Math. Softw. 24(1):130-156, 1998
  (time stepping with step-size control, augmented-matrix evaluation of
  :math:`\\varphi`-functions of the small Hessenberg matrix),
* A. H. Al-Mohy and N. J. Higham, "Computing the action of the matrix
  exponential, with an application to exponential integrators", SIAM J. Sci.
  Comput. 33(2):488-511, 2011 (augmented matrix for several
  :math:`\\varphi`-functions at once),
* J. W. Daniel, W. B. Gragg, L. Kaufman and G. W. Stewart,
  "Reorthogonalization and stable algorithms for updating the Gram-Schmidt
  QR factorization", Math. Comp. 30(136):772-795, 1976 (DGKS criterion).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Literal, NamedTuple

import numpy as np
import scipy.linalg

from ._parallel import n_chunks_for, row_chunks, run_chunks

__all__ = [
    "ArnoldiResult",
    "KrylovInfo",
    "KrylovRecord",
    "KrylovStep",
    "arnoldi",
    "expm_krylov",
    "phi_krylov_small",
    "solve_linear_ode",
]

MatVec = Callable[[np.ndarray], np.ndarray]
Reorthogonalize = Literal["always", "auto", "never"]

_EPS = float(np.finfo(np.float64).eps)
_TINY = float(np.finfo(np.float64).tiny)
# DGKS (Daniel, Gragg, Kaufman & Stewart 1976): a second Gram-Schmidt pass is
# only needed when the first one cancelled more than this fraction of the norm.
_DGKS_ETA = 1.0 / math.sqrt(2.0)
# Step-size controller constants (Sidje 1998, Expokit uses the same safety
# factor); the bounds keep one bad estimate from wrecking the step sequence.
_SAFETY = 0.9
_MIN_SHRINK = 0.1
_MAX_GROWTH = 5.0


class ArnoldiResult(NamedTuple):
    """Output of :func:`arnoldi`.

    Attributes
    ----------
    Q : ndarray, shape (k + 1, n), or (k, n) on breakdown
        Orthonormal Krylov basis stored row-wise (C-contiguous, one row per
        basis vector ``q_1, ..., q_{k+1}``).  On happy breakdown there is no
        ``(k+1)``-th vector and ``Q`` has ``k`` rows.  ``Q`` may be a view of a
        larger preallocated buffer.
    H : ndarray, shape (k + 1, k)
        Upper Hessenberg matrix with ``A @ Q[:k].T == Q.T @ H`` (up to
        rounding).  It always has ``k + 1`` rows; on breakdown the last row is
        exactly zero, so ``A @ Q.T == Q.T @ H[:k]``.  ``H[:k, :k]`` is the
        square projection of ``A`` and ``H[k, k-1]`` is ``h_{k+1,k}``.
    beta : float
        Euclidean norm of the start vector.
    k : int
        Number of Arnoldi steps done (``<= m``; smaller on breakdown).
    breakdown : bool
        True if an invariant subspace was found (``h_{k+1,k}`` negligible).
    n_matvecs : int
        Number of calls to ``matvec``.
    """

    Q: np.ndarray
    H: np.ndarray
    beta: float
    k: int
    breakdown: bool
    n_matvecs: int


class KrylovInfo(NamedTuple):
    """Diagnostics of :func:`solve_linear_ode` and :func:`expm_krylov`.

    Attributes
    ----------
    n_substeps : int
        Number of accepted time sub-steps.
    n_rejected : int
        Number of rejected step-size trials (these cost no matvecs, the
        Krylov basis is reused).
    n_matvecs : int
        Total number of calls to ``matvec``.
    error_estimate : float
        Sum of the accepted local a-posteriori error estimates (absolute, in
        the units of ``x``).
    breakdown : bool
        True if any sub-step ended in a happy breakdown (then that sub-step
        was exact and covered the whole remaining interval).
    krylov_dim : int
        Largest Krylov dimension actually built (``<= m``; smaller after a
        breakdown or when ``n < m``).  Zero if no Krylov space was needed.
    """

    n_substeps: int
    n_rejected: int
    n_matvecs: int
    error_estimate: float
    breakdown: bool
    krylov_dim: int


# --------------------------------------------------------------------------
# shape checks (the public integrators validate their settings; kernels only
# check what the arrays look like)
# --------------------------------------------------------------------------


def _check_vector(x: object, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.dtype.kind not in "biuf":
        raise ValueError(
            f"`{name}` must be a 1-D real array, got shape {arr.shape}, dtype {arr.dtype}."
        )
    # single precision is kept (large problems); everything else works in float64
    if arr.dtype != np.float32:
        arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"`{name}` (shape {arr.shape}) contains non-finite values.")
    return arr


def _apply(matvec: MatVec, x: np.ndarray) -> np.ndarray:
    """Call ``matvec`` and check the result's shape and dtype (not finiteness)."""
    out = np.asarray(matvec(x))
    if out.shape != x.shape:
        raise ValueError(
            f"`matvec` returned an array of shape {out.shape} for an input of shape "
            f"{x.shape}; expected shape {x.shape}."
        )
    if out.dtype.kind not in "biuf":
        raise ValueError(f"`matvec` must return a real array, got dtype {out.dtype}.")
    return out


def _norm(x: np.ndarray) -> float:
    # Overflow is reported by the callers with a specific message, so the
    # generic numpy warning would only be noise.
    with np.errstate(over="ignore", invalid="ignore"):
        if x.dtype == np.float32:
            # accumulate in double: squares of float32 entries beyond ~1e19 overflow
            return math.sqrt(float(np.einsum("i,i->", x, x, dtype=np.float64)))
        nrm = float(np.linalg.norm(x))
        if (math.isinf(nrm) and np.isfinite(x).all()) or (nrm < 1e-145 and x.any()):
            # the sum of squares overflowed (|x| > 1e154) or lost digits to underflow
            # although x is finite and nonzero: rescale, on these failure paths only
            s = float(np.abs(x).max())
            nrm = s * float(np.linalg.norm(x / s))
        return nrm


def _raise_nonfinite(w: np.ndarray, what: str) -> None:
    # Only reached when a norm came out non-finite, so the O(n) scan is
    # paid on the failure path only.
    if not np.isfinite(w).all():
        raise FloatingPointError(f"{what} contains non-finite values (NaN or inf).")
    raise FloatingPointError(f"the norm of {what} overflows float64.")


# --------------------------------------------------------------------------
# Reused work space
# --------------------------------------------------------------------------

# Freed Krylov bases kept for the next run inside ``reuse_workspace()``: an
# optimisation loop solves and differentiates the same size again and again, and a
# basis of tens of MB taken fresh from the OS pays its page faults at first touch
# (about a tenth of a gradient evaluation at 512 x 512 x 10).
_WORKSPACE: contextvars.ContextVar[tuple[int, list[np.ndarray]] | None] = contextvars.ContextVar(
    "assignflow_krylov_workspace", default=None
)
_WORKSPACE_MIN_BYTES = 1 << 20
_WORKSPACE_MAX_BUFFERS = 8


@contextlib.contextmanager
def reuse_workspace() -> Iterator[None]:
    """Within the block, Krylov bases freed by one run serve the next runs.

    The buffers are released when the block ends. Nested blocks share the outer
    block's buffers.
    """
    if _WORKSPACE.get() is not None:
        yield
        return
    # owned by this thread: a context copied into another thread does not share it
    token = _WORKSPACE.set((threading.get_ident(), []))
    try:
        yield
    finally:
        _WORKSPACE.reset(token)


def _empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``np.empty(shape, dtype)``, from the work space of ``reuse_workspace`` if active."""
    space = _WORKSPACE.get()
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if space is None or space[0] != threading.get_ident() or nbytes < _WORKSPACE_MIN_BYTES:
        return np.empty(shape, dtype=dtype)
    pool = space[1]
    for buf in pool:
        # free when nothing but the pool refers to it: every view of a buffer holds
        # a reference to it (references here: the list, the loop variable, the call)
        if nbytes <= buf.nbytes <= 2 * nbytes and sys.getrefcount(buf) <= 3:
            return buf[:nbytes].view(dtype).reshape(shape)
    buf = np.empty(nbytes, dtype=np.uint8)
    if len(pool) < _WORKSPACE_MAX_BUFFERS:
        pool.append(buf)
    return buf[:nbytes].view(dtype).reshape(shape)


# --------------------------------------------------------------------------
# Arnoldi
# --------------------------------------------------------------------------


def _default_breakdown_rtol(n: int, eps: float = _EPS) -> float:
    # Relative size below which the new Arnoldi direction is indistinguishable
    # from the rounding noise of the matvec and the Gram-Schmidt sums (whose
    # error grows like sqrt(length) * eps); the 1e-12 floor keeps small problems
    # from missing genuine invariant subspaces because of a few ulps of noise.
    # In single precision the sums are float32 only within the Gram-Schmidt blocks
    # (at most _GS_MAX_BLOCK entries; the block sums and every norm accumulate in
    # double), so the length is capped there: with sqrt(n), a 512 x 512 x 10
    # problem would call h_{j+1,j} < 1.5e-3 * ||A|| a breakdown and truncate the
    # Krylov space (seen in the adjoint runs of the float32 gradient).
    if eps > _EPS:
        n = min(n, _GS_MAX_BLOCK)
    return max(1e-12, 8.0 * math.sqrt(n) * eps)


_GS_CHUNK_BYTES = 1 << 20  # basis columns per block: about 1 MiB, to stay in L2
_GS_MAX_BLOCK = _GS_CHUNK_BYTES // 16  # the longest block (j = 1, below)


def _orthogonalize(basis: np.ndarray, w: np.ndarray, mode: str) -> tuple[np.ndarray, float, float]:
    """Classical Gram–Schmidt of ``w`` against the rows of ``basis``, in place.

    Returns the coefficients (summed over the passes), ``||w||`` before and after.
    With ``mode="always"`` this is CGS2 ("twice is enough", Giraud, Langou &
    Rozloznik 2005); ``"auto"`` does the second pass only on cancellation (DGKS).

    The passes are BLAS-2 products over column blocks that fit in cache, run on
    the thread pool. CGS2 needs four streams over the basis when done naively
    (``h1 = Bw``, ``w -= Bᵀh1``, ``h2 = Bw``, ``w -= Bᵀh2``); here the middle two
    share one stream, since each block of ``w`` is final for the first pass as
    soon as it is updated. The basis dominates memory traffic, so this saves a
    quarter of the time on large problems.
    """
    j, n = basis.shape
    n_threads = n_chunks_for(j * n)
    spans = row_chunks(n, n_threads)
    block = max(1024, _GS_CHUNK_BYTES // (8 * (j + 1)))

    def blocks(t: int):
        a, c = spans[t]
        return ((s, min(c, s + block)) for s in range(a, c, block))

    hs = np.zeros((len(spans), j))
    ns = np.zeros(len(spans))

    def first(t: int) -> None:
        for s, e in blocks(t):
            ws = w[s:e]
            hs[t] += basis[:, s:e] @ ws
            ns[t] += ws @ ws

    def update(h: np.ndarray, again: bool):
        h = h.astype(basis.dtype, copy=False)  # a float64 h would upcast the basis blocks

        def run(t: int) -> None:
            hs[t] = 0.0
            ns[t] = 0.0
            for s, e in blocks(t):
                ws = w[s:e]
                ws -= basis[:, s:e].T @ h
                if again:
                    hs[t] += basis[:, s:e] @ ws
                ns[t] += ws @ ws

        return run

    with np.errstate(over="ignore", invalid="ignore"):
        run_chunks(first, len(spans))
        h1 = hs.sum(axis=0)
        nrm0 = math.sqrt(ns.sum())
        if not math.isfinite(nrm0):
            return h1, nrm0, nrm0
        second = mode != "never"
        run_chunks(update(h1, second), len(spans))
        nrm1 = math.sqrt(ns.sum())
        if mode == "always" or (mode == "auto" and nrm1 < _DGKS_ETA * nrm0):
            h2 = hs.sum(axis=0)
            run_chunks(update(h2, False), len(spans))
            return h1 + h2, nrm0, math.sqrt(ns.sum())
    return h1, nrm0, nrm1


def _arnoldi_into(
    matvec: MatVec,
    v: np.ndarray,
    m: int,
    Q: np.ndarray,
    reorthogonalize: str,
    breakdown_tol: float | None,
    stop: Callable[[np.ndarray], bool] | None = None,
    *,
    keep_last: bool = True,
    matvec_out: bool = False,
) -> ArnoldiResult:
    """Arnoldi iteration writing the basis into the caller's buffer ``Q``.

    ``Q`` must have shape ``(m + 1, n)`` with ``m <= n`` (C-contiguous; ``m`` rows
    suffice without ``keep_last``); it is overwritten.  ``v`` is not modified.
    ``stop``, ``keep_last``, ``matvec_out``: see :func:`arnoldi`.
    """
    n = v.shape[0]
    beta = _norm(v)
    if not math.isfinite(beta):
        _raise_nonfinite(v, "the start vector")
    if beta == 0.0:
        raise ValueError(f"the start vector `v` (shape {v.shape}) is zero.")
    np.divide(v, beta, out=Q[0])

    H = np.zeros((m + 1, m))
    rtol = _default_breakdown_rtol(n, float(np.finfo(Q.dtype).eps))
    anorm = 0.0  # running max of ||A q_i||, a cheap lower bound for ||A||_2
    breakdown = False
    k = m
    # Without keep_last each new direction is formed in a one-row work array and
    # stored (normalised) only if the run goes on: the (k+1)-th vector, which a
    # truncated expansion never reads, leaves no page of the basis touched.
    work = None if keep_last else _empty((n,), Q.dtype)
    for j in range(1, m + 1):
        w = Q[j] if keep_last else work
        if matvec_out:
            matvec(Q[j - 1], out=w)
        else:
            # Writing into w copies the output, so matvecs that return a
            # buffer they own (or their input) cannot alias the basis.
            w[...] = _apply(matvec, Q[j - 1])
        h, nrm0, nrm = _orthogonalize(Q[:j], w, reorthogonalize)
        if not math.isfinite(nrm0):
            _raise_nonfinite(w, f"`matvec` output at Arnoldi step {j}")
        anorm = max(anorm, nrm0)
        H[:j, j - 1] = h

        tol_j = rtol * anorm if breakdown_tol is None else breakdown_tol
        # Once j == n the basis spans R^n, so whatever is left in w is noise.
        if nrm <= tol_j or j == n:
            breakdown = True
            k = j
            break
        H[j, j - 1] = nrm
        done = j == m or (stop is not None and stop(H[: j + 1, :j]))
        if keep_last:
            w /= nrm
        elif not done:
            np.divide(w, nrm, out=Q[j])
        if done:
            k = j
            break

    Qk = Q[:k] if breakdown or not keep_last else Q[: k + 1]
    return ArnoldiResult(
        Q=Qk, H=H[: k + 1, :k].copy(), beta=beta, k=k, breakdown=breakdown, n_matvecs=k
    )


def arnoldi(
    matvec: MatVec,
    v: np.ndarray,
    m: int,
    *,
    reorthogonalize: Reorthogonalize = "always",
    breakdown_tol: float | None = None,
    stop: Callable[[np.ndarray], bool] | None = None,
    keep_last: bool = True,
    matvec_out: bool = False,
) -> ArnoldiResult:
    """Arnoldi process: orthonormal basis of the Krylov space K_m(A, v).

    Parameters
    ----------
    matvec : callable
        ``matvec(x)`` returns ``A @ x`` for a float vector ``x`` of shape
        ``(n,)``.  It must not modify ``x`` (``x`` is a row of the basis).
    v : array_like, shape (n,)
        Nonzero, finite, real start vector.  Not modified.
    m : int
        Maximal number of Arnoldi steps (Krylov dimension), ``m >= 1``.  It is
        capped at ``n``: the Krylov space of dimension ``n`` is the whole space
        and is reported as a breakdown.
    reorthogonalize : {"always", "auto", "never"}, optional
        ``"always"``: classical Gram-Schmidt applied twice every step (CGS2),
        orthogonal to working precision.  ``"auto"``: the second pass only when
        the first reduced the norm by more than a factor ``1/sqrt(2)`` (DGKS
        criterion).  ``"never"``: single CGS, cheapest, may lose orthogonality.
        The coefficients of the second pass are added to ``H``.
    breakdown_tol : float, optional
        Absolute threshold: happy breakdown is declared at step ``j`` when
        ``h_{j+1,j} <= breakdown_tol``.  The ``h`` are those of the normalized
        basis, so they scale with ``A`` but not with ``v``.  The default
        ``None`` uses the relative criterion ``h_{j+1,j} <= rtol * max_i
        ||A q_i||`` with ``rtol = max(1e-12, 8 sqrt(n) eps)``, where the
        running maximum of ``||A q_i||`` (``i <= j``) is a free lower bound
        for ``||A||_2``.  Pass ``0.0`` to stop only on an exactly zero vector.
    stop : callable, optional
        ``stop(H)`` after every step ``j < m`` with the Hessenberg matrix of the
        first ``j`` steps, shape ``(j + 1, j)`` (a view: do not modify it); ``True``
        ends the process there with a result of dimension ``k = j`` (not a
        breakdown).  Used to end a run as soon as an error estimate of the
        quantity computed from it is small enough.
    keep_last : bool, optional
        ``False``: do not keep the ``(k+1)``-th basis vector (``Q`` has ``k``
        rows; ``H`` is unchanged).  Expansions in ``Q_k`` never read it, and its
        memory is then free for the caller.
    matvec_out : bool, optional
        ``matvec`` accepts ``out=``: ``matvec(x, out=w)`` writes ``A @ x`` into
        ``w`` (which never aliases ``x``), sparing the copy of a returned array.

    Returns
    -------
    ArnoldiResult
        ``(Q, H, beta, k, breakdown, n_matvecs)``.  Without breakdown ``Q`` has
        shape ``(k + 1, n)``; on breakdown (or without ``keep_last``) ``(k, n)``.
        ``H`` has shape ``(k + 1, k)`` in both cases, its last row being zero on breakdown,
        so ``H[:k, :k]`` and ``H[k, k - 1]`` can be used uniformly.

    Raises
    ------
    ValueError
        If ``v`` is not a 1-D finite real array or is zero, if ``m < 1``, if
        ``reorthogonalize`` is not a valid mode, or if ``matvec`` returns an
        array of the wrong shape or dtype.
    FloatingPointError
        If ``matvec`` returns NaN or inf.

    Notes
    -----
    The basis lives in one preallocated C-contiguous ``(m + 1, n)`` array and
    each step orthogonalizes with two matrix-vector products
    ``h = Q[:j] @ w``, ``w -= Q[:j].T @ h`` (Saad 1992; Sidje 1998).  Memory is
    the basis plus ``O(n)`` work space.  The relation ``A Q_k^T = Q_{k+1}^T H``
    holds up to rounding.
    """
    v = _check_vector(v, "v")
    n = v.shape[0]
    if n == 0 or not v.any():
        raise ValueError(f"the start vector `v` (shape {v.shape}) is zero.")
    m_eff = min(m, n)
    if stop is not None and not callable(stop):
        raise TypeError(f"stop must be callable, got {type(stop).__name__}")
    Q = _empty((m_eff + keep_last, n), v.dtype)
    return _arnoldi_into(
        matvec,
        v,
        m_eff,
        Q,
        reorthogonalize,
        breakdown_tol,
        stop,
        keep_last=keep_last,
        matvec_out=matvec_out,
    )


# --------------------------------------------------------------------------
# phi-functions of the small Hessenberg matrix
# --------------------------------------------------------------------------


def _phi_columns(H: np.ndarray, t: float, p: int) -> np.ndarray:
    """Return ``[phi_1(tH) e1, ..., phi_p(tH) e1]`` as a ``(k, p)`` array.

    Uses the exponential of the augmented matrix ``[[tH, e1 0..0], [0, J]]``
    with ``J`` the ``p x p`` upper shift matrix, whose top-right block holds
    exactly these columns (Sidje 1998; Al-Mohy & Higham 2011).  One small
    ``expm`` thus replaces explicit formulas such as ``(tH)^{-1} (e^{tH} - I)``,
    which are unstable for singular or nearly singular ``tH``.
    """
    k = H.shape[0]
    W = np.zeros((k + p, k + p))
    W[:k, :k] = H
    W[:k, :k] *= t
    if k:
        W[0, k] = 1.0
    idx = np.arange(k, k + p - 1)
    W[idx, idx + 1] = 1.0
    return scipy.linalg.expm(W)[:k, k:]


def phi_krylov_small(H: np.ndarray, t: float) -> np.ndarray:
    """Compute ``phi(t H) e1`` for a small square matrix, ``phi(z) = (e^z - 1)/z``.

    Parameters
    ----------
    H : array_like, shape (k, k)
        Small square real matrix, typically the square part ``H[:k, :k]`` of
        the Hessenberg matrix returned by :func:`arnoldi` (Hessenberg
        structure is not required).  May be singular.
    t : float
        Finite real scalar.

    Returns
    -------
    ndarray, shape (k,)
        ``phi(t H) e1``, the first column of ``phi(t H)``.

    Notes
    -----
    Computed as the top-right column of ``scipy.linalg.expm`` of the augmented
    ``(k+1) x (k+1)`` matrix ``[[t H, e1], [0, 0]]`` (Saad 1992, Sec. 2;
    Sidje 1998), which is accurate also when ``t H`` is singular, where the
    formula ``(tH)^{-1} (e^{tH} - I) e1`` breaks down.
    """
    H = np.asarray(H)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"`H` must be a square 2-D array, got shape {H.shape}.")
    if H.dtype.kind not in "biuf":
        raise ValueError(f"`H` must be real, got dtype {H.dtype} (shape {H.shape}).")
    H = H.astype(np.float64, copy=False)
    if not np.isfinite(H).all():
        raise ValueError(f"`H` (shape {H.shape}) contains non-finite values.")
    return _phi_columns(H, float(t), 1)[:, 0].copy()


# --------------------------------------------------------------------------
# time stepping
# --------------------------------------------------------------------------


class KrylovStep(NamedTuple):
    """One accepted sub-step of :func:`solve_linear_ode`, as recorded for its adjoint.

    The sub-step maps ``x_start`` to ``x_start + h beta Q_k^T phi(h H_k) e1`` with the
    Arnoldi basis ``Q_k`` of ``K_k(A, r)``, ``r = A x_start + b``, ``beta = ||r||``.

    Attributes
    ----------
    h : float
        Length of the sub-step.
    x_start : ndarray (n,) or None
        State at its start (``None`` for the zero state).
    H : ndarray (k, k)
        Square Hessenberg matrix of the step's Arnoldi run (float64).
    beta : float
        ``||r||``, the norm of the step's start vector.
    coeffs : ndarray (k,) or None
        ``Q_k x_start``, the coordinates of the start state in the basis (needed to
        orthonormalise ``[x_start, Q_k^T]`` without the basis); ``None`` for ``x = 0``.
    """

    h: float
    x_start: np.ndarray | None
    H: np.ndarray
    beta: float
    coeffs: np.ndarray | None


class KrylovRecord:
    """What :func:`solve_linear_ode` records for the adjoint of its forward map.

    Attributes
    ----------
    steps : list of KrylovStep
        Every accepted sub-step, in time order.
    basis : ndarray (k, n) or None
        The Arnoldi basis ``Q_k`` of the last sub-step (kept only with
        ``keep_basis=True``): the adjoint pass starts with that step and needs no
        recomputation of it.
    """

    def __init__(self, keep_basis: bool = True) -> None:
        self.keep_basis = keep_basis
        self.steps: list[KrylovStep] = []
        self.basis: np.ndarray | None = None


def solve_linear_ode(
    matvec: MatVec,
    b: np.ndarray,
    T: float,
    x0: np.ndarray | None = None,
    *,
    m: int = 10,
    tol: float = 1e-8,
    max_substeps: int = 1000,
    reorthogonalize: Reorthogonalize = "always",
    progress: Callable[[float], object] | None = None,
    record: KrylovRecord | None = None,
    matvec_into: Callable[..., np.ndarray] | None = None,
) -> tuple[np.ndarray, KrylovInfo]:
    """Solve ``x' = A x + b``, ``x(0) = x0`` on ``[0, T]`` with Krylov steps.

    Returns ``x(T) = e^{TA} x0 + T phi(TA) b`` with ``phi(z) = (e^z - 1)/z``.

    Parameters
    ----------
    matvec : callable
        ``matvec(x)`` returns ``A @ x`` for a vector of shape ``(n,)`` and the
        dtype of ``b`` (float32 or float64); it must not modify its argument.
    b : array_like, shape (n,)
        Finite real inhomogeneity.  Not modified.
    T : float
        Final time ``>= 0``.  ``T == 0`` returns a copy of ``x0`` (zeros if
        ``x0`` is None) without calling ``matvec``.
    x0 : array_like, shape (n,), optional
        Finite real initial state; ``None`` means zero.  Not modified.
    m : int, optional
        Largest Krylov dimension per sub-step (``>= 1``, capped at ``n``).  Each
        Arnoldi run ends at the first dimension ``j >= 2`` whose error estimate
        (below) meets the tolerance for the trial step, with ``||x_new||``
        bounded from below by ``| ||x|| - h beta ||phi_1(h H_j) e1|| |``, so an
        early end also passes the full test.  Each sub-step costs at most
        ``m + 1`` matvecs and ``(m + 1) * n`` floats of storage.
    tol : float, optional
        Relative accuracy target ``> 0``.  A sub-step of length ``h`` is accepted
        when its error estimate is at most ``tol * max(||x_new||, s) * h / T``,
        so the local errors sum to roughly ``tol * max_t ||x(t)||``.  The floor
        ``s = ||b|| * min(T, 1/nu)``, with ``nu`` the largest ``||A q_i||`` seen
        so far (a lower bound for ``||A||_2``), is the size of the forced
        response ``x(t) ~ t b`` for ``t <~ 1/||A||``; it only matters while
        ``x`` is still small after a start from ``x0 = 0``.  In float32,
        ``tol`` is raised to at least ``4 * eps32 ~ 4.8e-7``.
    max_substeps : int, optional
        Maximal number of accepted sub-steps.
    reorthogonalize : {"always", "auto", "never"}, optional
        Passed on to the Arnoldi process, see :func:`arnoldi`.
    progress : callable, optional
        Called as ``progress(fraction)`` with the fraction of ``[0, T]`` done,
        during each Arnoldi run (an estimate) and after each accepted sub-step.
    record : KrylovRecord, optional
        Filled with the accepted sub-steps (and the last basis), so that the
        adjoint of exactly this forward computation can be evaluated.
    matvec_into : callable, optional
        ``matvec_into(x, out=w)`` writes ``A @ x`` into ``w`` (never aliasing ``x``);
        then the Arnoldi runs use it (without ``progress``) and spare one copy of
        every product.

    Returns
    -------
    x : ndarray, shape (n,)
        Approximation of ``x(T)`` (a new array).
    info : KrylovInfo
        Step counts, matvec count, accumulated error estimate, breakdown flag
        and the Krylov dimension used.

    Raises
    ------
    ValueError
        If ``matvec`` returns an array of the wrong shape or dtype.
    FloatingPointError
        If ``matvec`` returns NaN/inf or the solution overflows.
    RuntimeError
        If ``max_substeps`` sub-steps do not reach ``T``, or the step size
        collapses.

    Notes
    -----
    Each sub-step from ``(t, x)`` with length ``h`` uses the exact identity
    ``x(t + h) = x + h phi(hA) r`` with the residual ``r = A x + b`` and the
    Arnoldi approximation ``phi(hA) r ~ beta Q_k^T phi(h H_k) e1`` (Saad 1992;
    Hochbruck & Lubich 1997).  The local error is estimated by the leading
    term of Saad's error expansion adapted to ``phi = phi_1``::

        err = h**2 * beta * h_{k+1,k} * |e_k^T phi_2(h H_k) e1|,

    with ``phi_2(z) = (e^z - 1 - z)/z**2``, obtained from the same small
    augmented ``expm`` as ``phi_1``.  The Krylov space does not depend on
    ``h``, so after a rejection only the small ``expm`` is redone with a
    smaller ``h`` (no new matvecs).  After an accepted step ``h`` may grow by
    up to ``5x``.  On happy breakdown the step is exact and covers the whole
    remaining interval.  If the residual becomes exactly zero the state is
    stationary and is returned as is.
    """
    b = _check_vector(b, "b")
    n = b.shape[0]
    T = float(T)
    if not (math.isfinite(T) and T >= 0):
        raise ValueError(f"`T` must be finite and >= 0, got {T!r}.")
    # The working precision follows b: float32 halves the basis (large images).
    dtype = b.dtype
    if x0 is None:
        x = np.zeros(n, dtype=dtype)
    else:
        x0 = _check_vector(x0, "x0")
        if x0.shape != b.shape:
            raise ValueError(f"`x0` must have the same shape as `b`, got {x0.shape} and {b.shape}.")
        x = np.array(x0, dtype=dtype, copy=True)
    m, tol, max_substeps = int(m), float(tol), int(max_substeps)
    if dtype == np.float32:
        # The default tol is below float32 rounding: there the estimate would only
        # measure noise and shrink the steps for nothing.
        tol = max(tol, 4.0 * float(np.finfo(np.float32).eps))

    x_is_zero = not x.any()
    if T == 0.0 or (x_is_zero and not b.any()):
        if progress is not None:
            progress(1.0)
        return x, KrylovInfo(0, 0, 0, 0.0, False, 0)

    m_eff = min(m, n)
    # One basis buffer for all sub-steps, so long runs do not re-fault fresh pages
    # every step (m rows: the Arnoldi runs keep no (k+1)-th vector).
    Q = _empty((m_eff, n), dtype)
    x_new = np.empty(n, dtype=dtype)  # may become the result: never from the work space

    t = 0.0
    h = T
    n_substeps = n_rejected = n_matvecs = 0
    err_sum = 0.0
    any_breakdown = False
    krylov_dim = 0
    h_min = 16.0 * _EPS * T
    b_norm = _norm(b)
    x_norm = 0.0 if x_is_zero else _norm(x)
    anorm = 0.0  # running lower bound for ||A||_2
    op = matvec
    # an operator that writes its products into a given array (the flows' operators)
    # spares Arnoldi one copy of every product
    matvec_out = progress is None and matvec_into is not None
    if matvec_out:
        op = matvec_into
    if progress is not None:
        # reported fractions never decrease (a rejected trial step shrinks the interval
        # that the Arnoldi steps were reported against)
        user_progress, done = progress, [0.0]

        def progress(x: float) -> None:
            done[0] = max(done[0], x)
            user_progress(done[0])

        # Arnoldi dominates the cost: report its steps within the trial interval
        calls = [0]

        def op(v: np.ndarray) -> np.ndarray:
            calls[0] += 1
            progress(min(1.0, (t + min(h, T - t) * calls[0] / (m_eff + 1)) / T) * 0.999)
            return matvec(v)

    while t < T:
        if n_substeps >= max_substeps:
            raise RuntimeError(
                f"solve_linear_ode reached max_substeps={max_substeps} at t={t:.6g} of "
                f"T={T:.6g}; increase the Krylov dimension m (now {m}) or max_substeps, "
                f"or loosen tol (now {tol:g})."
            )
        if progress is not None:
            calls[0] = 0
        x_start_is_zero = x_is_zero
        if x_is_zero:
            # x = 0 makes the residual equal to b: save one matvec.
            r = b
            x_is_zero = False
        else:
            out = _apply(op, x)
            n_matvecs += 1
            r = out + b
            del out
        if not r.any():
            break

        # the run ends at the first dimension that takes the trial step
        stop = _step_converged(min(h, T - t), T, tol, x_norm, anorm, b_norm, _norm(r))
        res = _arnoldi_into(
            op, r, m_eff, Q, reorthogonalize, None, stop, keep_last=False, matvec_out=matvec_out
        )
        n_matvecs += res.n_matvecs
        k, beta = res.k, res.beta
        krylov_dim = max(krylov_dim, k)
        # ||H[:, j]|| = ||A q_j|| because the basis is orthonormal.
        anorm = max(anorm, float(np.sqrt((res.H**2).sum(axis=0)).max()))
        floor = _response_floor(b_norm, anorm, T)
        Hk = res.H[:k, :k]
        h_sub = float(res.H[k, k - 1])
        basis_T = res.Q[:k].T
        remaining = T - t
        h = remaining if res.breakdown else min(h, remaining)

        while True:
            with np.errstate(over="ignore", invalid="ignore"):
                phis = _phi_columns(Hk, h, 2)
            if not np.isfinite(phis).all():
                # Ritz values can reach far into the right half-plane for
                # non-normal A, so a too-long trial step can overflow here
                # even when the true solution is harmless.
                err = math.inf
                ratio = 0.0
            else:
                err = _step_error(h, beta, h_sub, phis)
                with np.errstate(over="ignore", invalid="ignore"):
                    np.matmul(basis_T, ((h * beta) * phis[:, 0]).astype(dtype), out=x_new)
                    x_new += x
                xnorm = x_norm_new = _norm(x_new)
                if not math.isfinite(xnorm):
                    _raise_nonfinite(x_new, f"the solution at t={t + h:.6g}")
                allowed = tol * max(xnorm, floor, _TINY) * (h / T)
                if err <= allowed:
                    break
                ratio = allowed / err
            n_rejected += 1
            h *= max(_MIN_SHRINK, _SAFETY * ratio ** (1.0 / k))
            if h < h_min:
                raise RuntimeError(
                    f"solve_linear_ode: step size collapsed to {h:.3g} at t={t:.6g} of "
                    f"T={T:.6g}; increase the Krylov dimension m (now {m}) or loosen tol "
                    f"(now {tol:g})."
                )

        if record is not None:
            start = None if x_start_is_zero else x.copy()
            coeffs = None if start is None else (res.Q[:k] @ start).astype(np.float64)
            record.steps.append(KrylovStep(h, start, Hk.copy(), float(beta), coeffs))
        x, x_new = x_new, x
        x_norm = x_norm_new
        n_substeps += 1
        err_sum += err
        if res.breakdown:
            any_breakdown = True
        if h >= remaining:
            t = T
        else:
            t += h
            # err ~ h^(k+1) and the allowance ~ h, hence the exponent 1/k. A run that
            # ended before m took the step with room to spare: the next run can grow the
            # space, so the step grows as after an exact one
            stopped_early = k < m_eff and not res.breakdown
            growth = (
                _MAX_GROWTH
                if err == 0.0 or stopped_early
                else _SAFETY * (allowed / err) ** (1.0 / k)
            )
            h *= min(_MAX_GROWTH, growth)
        if progress is not None:
            progress(t / T)

    if record is not None and record.keep_basis and record.steps:
        # the buffer still holds the last accepted sub-step's basis
        record.basis = Q[: record.steps[-1].H.shape[0]]
    if progress is not None:
        progress(1.0)
    return x, KrylovInfo(n_substeps, n_rejected, n_matvecs, err_sum, any_breakdown, krylov_dim)


def _step_error(h: float, beta: float, h_next: float, phis: np.ndarray) -> float:
    """Leading term of the local error of a sub-step (see :func:`solve_linear_ode`)."""
    return h * h * beta * h_next * abs(float(phis[-1, 1]))


def _response_floor(b_norm: float, anorm: float, T: float) -> float:
    """Size of the forced response ``x(t) ~ t b``: the floor of the error allowance."""
    return b_norm * (T if anorm * T <= 1.0 else 1.0 / anorm)


def _step_converged(
    h: float, T: float, tol: float, x_norm: float, anorm: float, b_norm: float, beta: float
):
    """Arnoldi's ``stop`` for a sub-step of length ``h``: the step's error test passed.

    The test of :func:`solve_linear_ode` on the first ``j >= 2`` Arnoldi steps, with
    ``||x_new||`` replaced by its lower bound ``| ||x|| - h beta ||phi_1(hH_j) e_1|| |``
    (the basis is orthonormal): a step that passes here passes the full test, so the
    run ends with the smallest dimension that takes the step, instead of ``m``.
    """

    def stop(H: np.ndarray) -> bool:
        j = H.shape[1]
        if j < 2:
            return False
        with np.errstate(over="ignore", invalid="ignore"):
            phis = _phi_columns(H[:j], h, 2)
            if not np.isfinite(phis).all():
                return False
            a = max(anorm, float(np.sqrt((H**2).sum(axis=0)).max()))
            floor = _response_floor(b_norm, a, T)
            err = _step_error(h, beta, float(H[j, j - 1]), phis)
            x_low = abs(x_norm - h * beta * float(np.linalg.norm(phis[:, 0])))
            return err <= tol * max(x_low, floor, _TINY) * (h / T)

    return stop


def expm_krylov(
    matvec: MatVec,
    v: np.ndarray,
    t: float,
    *,
    m: int = 10,
    tol: float = 1e-8,
    max_substeps: int = 1000,
    reorthogonalize: Reorthogonalize = "always",
) -> tuple[np.ndarray, KrylovInfo]:
    """Compute ``e^{tA} v`` with the Krylov time stepper.

    Parameters
    ----------
    matvec : callable
        ``matvec(x)`` returns ``A @ x``; it must not modify its argument.
    v : array_like, shape (n,)
        Finite real vector.  Not modified.
    t : float
        Finite real time.  Negative ``t`` is handled as ``e^{|t| (-A)} v``;
        ``t == 0`` returns a copy of ``v``.
    m, tol, max_substeps, reorthogonalize
        As in :func:`solve_linear_ode`.

    Returns
    -------
    y : ndarray, shape (n,)
        Approximation of ``e^{tA} v``.
    info : KrylovInfo
        Diagnostics, see :func:`solve_linear_ode`.

    Notes
    -----
    ``e^{tA} v`` is the solution at time ``t`` of ``x' = A x``, ``x(0) = v``,
    so this is :func:`solve_linear_ode` with ``b = 0`` and ``x0 = v``.  Each
    sub-step then works in ``v + K_m(A, A v)``, a subspace of
    ``K_{m+1}(A, v)``, at the price of one extra matvec per sub-step compared
    with Saad's (1992) direct approximation; in exchange the error estimate
    and step control are shared with the inhomogeneous case (Sidje 1998).
    """
    v = _check_vector(v, "v")
    t = float(t)
    if not math.isfinite(t):
        raise ValueError(f"`t` must be finite, got {t!r}.")
    if t < 0:

        def neg_matvec(x: np.ndarray) -> np.ndarray:
            return -_apply(matvec, x)

        op, t = neg_matvec, -t
    else:
        op = matvec
    return solve_linear_ode(
        op,
        np.zeros_like(v),
        t,
        v,
        m=m,
        tol=tol,
        max_substeps=max_substeps,
        reorthogonalize=reorthogonalize,
    )
