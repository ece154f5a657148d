r"""Automatic-differentiation baselines for the LAF weight gradient (the paper's Sect. 3.4).

The paper compares its closed-form low-rank gradient (``af.ClosedFormLowRank``)
with PyTorch autodiff through two forward solvers of the linearized assignment
flow at the barycenter (docs/math.md §4):

.. math::
    S_0 = \operatorname{softmax}(-\Omega D/\rho),\quad
    A V = S_0\odot\big(\Omega V - \langle S_0, \Omega V\rangle_{\rm row}\mathbb 1\big),\quad
    B = (S_0 - \operatorname{rowmean}(S_0))/J,

:math:`\dot V = AV + B`, :math:`V(0) = 0`, and the KL loss
:math:`f_L(V_T) = -\frac1I\sum_i\log\operatorname{softmax}(JV_{T,i})_{y_i}`:

* :func:`torch_value_and_grad_euler` — explicit Euler
  :math:`V_{k+1} = V_k + h(AV_k + B)` with ``ceil(T/h)`` equal steps
  (as :class:`assignflow.Euler`);
* :func:`torch_value_and_grad_krylov` — the exponential Krylov integrator with a
  single step: Arnoldi (classical Gram–Schmidt applied twice, as the library) on
  :math:`A` from :math:`B`, :math:`V_T = T\beta Q_m\varphi(TH_m)e_1` with
  :math:`\varphi(TH_m)e_1` the top-right column of
  ``matrix_exp([[T H_m, e1], [0, 0]])``.

Both differentiate through everything (including the dependence of :math:`A` and
:math:`B` on :math:`\Omega` through :math:`S_0`) with ``loss.backward()``. The
weights are a leaf tensor of per-pixel patches ``(h, w, K)`` (``K = 9`` for the
3×3 window), multiplied by a constant 0/1 mask so that the window entries outside
the image are zero and receive no gradient; :math:`\Omega X` is ``K`` shifted
multiply–adds on the zero-padded ``X`` of shape ``(h + 2r, w + 2r, J)``.

**Memory.** Reverse-mode autodiff keeps every intermediate state that the
backward pass needs: each Euler step saves a few ``I×J`` tensors (the padded state,
:math:`\Omega V`, the replicator's factors), so memory grows linearly with the
number of steps ``ceil(T/h)``; the Krylov baseline saves every basis vector and
every intermediate vector of the two Gram–Schmidt passes and the ``m`` operator
applications, so it grows linearly with the Krylov dimension ``m``. The paper's
closed form needs only the two Krylov bases (or one at a time with
``low_memory=True``) — that is the point of the comparison
(``benchmarks/bench_gradient.py``).

Usage::

    import sys; sys.path.insert(0, "benchmarks")
    from autodiff_torch import make_problem, torch_value_and_grad_krylov
    p = make_problem((64, 64), 10)
    value, grad = torch_value_and_grad_krylov(p, krylov_dim=10)   # grad: (nnz,)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import assignflow as af

# torch is imported on first use (``_require_torch``): ``make_problem`` is shared
# with the numpy side of benchmarks/bench_gradient.py, which must run (and measure
# its memory) without loading torch, or without torch installed at all.
torch: Any = None
F: Any = None

__all__ = [
    "make_problem",
    "torch_forward_euler",
    "torch_forward_krylov",
    "torch_value_and_grad_euler",
    "torch_value_and_grad_krylov",
]


def _require_torch() -> Any:
    global torch, F
    if torch is None:
        try:
            import torch as _torch
            import torch.nn.functional as _F
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the autodiff baselines need PyTorch (CPU): pip install torch"
            ) from exc
        torch, F = _torch, _F
    return torch


def make_problem(
    shape: tuple[int, int],
    n_labels: int,
    *,
    rho: float = 0.1,
    T: float = 2.0,
    seed: int = 0,
) -> dict[str, Any]:
    """A random LAF learning problem on an ``h × w`` grid (3×3 window) with ``J`` labels.

    Distances ``D`` uniform in ``[0, 1)``, strictly positive random row-stochastic
    weights, uniformly random labels ``y``.

    Returns
    -------
    dict
        numpy arrays ``D (I, J)``, ``y (I,)``, ``values (nnz,)``, ``patches (h, w, K)``,
        ``mask (h, w, K)`` (1 inside the image), scalars ``shape``, ``n_labels``,
        ``rho``, ``T``, and the assignflow objects ``graph``, ``weights``, ``flow``
        (a :class:`~assignflow.LinearizedAssignmentFlow`) and ``loss``
        (a :class:`~assignflow.KLLoss`).
    """
    h, w = int(shape[0]), int(shape[1])
    rng = np.random.default_rng(seed)
    graph = af.GridGraph((h, w), radius=1)
    weights = af.Weights.normalized(graph, rng.uniform(0.1, 1.0, graph.nnz))
    D = rng.random((graph.n_nodes, n_labels))
    y = rng.integers(0, n_labels, graph.n_nodes)
    flow = af.LinearizedAssignmentFlow(af.SimilarityOperator(weights, D, rho=rho), T=T)
    loss = af.KLLoss(labels=y)
    mask = graph.valid.reshape(h, w, graph.window_size).astype(np.float64)
    return {
        "shape": (h, w),
        "n_labels": int(n_labels),
        "rho": float(rho),
        "T": float(T),
        "D": D,
        "y": y,
        "values": np.array(weights.values),
        "patches": graph.values_to_patches(weights.values),
        "mask": mask,
        "graph": graph,
        "weights": weights,
        "flow": flow,
        "loss": loss,
    }


# --------------------------------------------------------------------------- model
class _LAF:
    """The LAF at the barycenter as a differentiable function of the weight patches."""

    def __init__(self, problem: dict[str, Any], patches: torch.Tensor) -> None:
        graph = problem["graph"]
        self.h, self.w = problem["shape"]
        self.J = problem["n_labels"]
        self.r = graph.radius
        self.offsets = [(int(dy), int(dx)) for dy, dx in graph.offsets]
        mask = torch.as_tensor(problem["mask"], dtype=torch.float64)
        P = patches * mask  # out-of-image entries: exactly 0, no gradient
        # one contiguous (h, w, 1) plane per window offset, split once: autograd then
        # runs a single unbind-backward at the end instead of a slice-backward (which
        # allocates a full (h, w, K) buffer) for every use of every plane
        self.planes = P.permute(2, 0, 1).unsqueeze(-1).contiguous().unbind(0)
        D = torch.as_tensor(problem["D"], dtype=torch.float64).reshape(self.h, self.w, self.J)
        self.S0 = torch.softmax(-self.omega(D) / problem["rho"], dim=-1)
        self.B = (self.S0 - self.S0.mean(dim=-1, keepdim=True)) / self.J

    def omega(self, X: torch.Tensor) -> torch.Tensor:
        """``Ω X`` for ``X`` of shape ``(h, w, J)``: shifted multiply–adds on the padded ``X``."""
        r, h, w = self.r, self.h, self.w
        Xp = F.pad(X, (0, 0, r, r, r, r))
        out = None
        for o, (dy, dx) in enumerate(self.offsets):
            term = self.planes[o] * Xp[r + dy : r + dy + h, r + dx : r + dx + w]
            out = term if out is None else out + term
        return out

    def A(self, V: torch.Tensor) -> torch.Tensor:
        """``A V = R_{S0}(Ω V)``."""
        Z = self.omega(V)
        return self.S0 * (Z - (self.S0 * Z).sum(dim=-1, keepdim=True))


def _loss(V: torch.Tensor, y: torch.Tensor, J: int) -> torch.Tensor:
    logp = torch.log_softmax(J * V.reshape(-1, J), dim=-1)
    return -logp.gather(1, y[:, None]).mean()


def _euler(model: _LAF, T: float, step_size: float) -> torch.Tensor:
    n = max(1, math.ceil(T / float(step_size) - 1e-9))  # as af.Euler
    h = T / n
    V = torch.zeros_like(model.B)
    for _ in range(n):
        V = V + h * (model.A(V) + model.B)
    return V


def _krylov(model: _LAF, T: float, m: int) -> torch.Tensor:
    b = model.B
    n = b.numel()
    m = min(int(m), n)
    beta = torch.linalg.vector_norm(b)
    if float(beta.detach()) == 0.0:  # B = 0: V ≡ 0
        return torch.zeros_like(b)
    Q = [b / beta]
    cols: list[list[torch.Tensor]] = []  # cols[j]: the nonzero entries h_{0..j+1, j} of H
    rtol = max(1e-12, 8.0 * math.sqrt(n) * float(np.finfo(np.float64).eps))
    anorm = 0.0
    k = m
    for j in range(m):
        w = model.A(Q[j])
        anorm = max(anorm, float(torch.linalg.vector_norm(w.detach())))
        hcol = [torch.zeros((), dtype=torch.float64) for _ in range(j + 1)]
        for _ in range(2):  # classical Gram–Schmidt, twice (CGS2)
            hs = [(q * w).sum() for q in Q]
            w = w - sum(hi * q for hi, q in zip(hs, Q, strict=True))
            hcol = [a + c for a, c in zip(hcol, hs, strict=True)]
        if j == m - 1:  # h_{m+1,m} and q_{m+1} are not needed for H_m
            cols.append(hcol)
            break
        nrm = torch.linalg.vector_norm(w)
        if float(nrm.detach()) <= rtol * anorm:  # happy breakdown: the Krylov space is invariant
            cols.append(hcol)
            k = j + 1
            break
        cols.append([*hcol, nrm])
        Q.append(w / nrm)
    zero = torch.zeros((), dtype=torch.float64)
    # H_k (k×k, upper Hessenberg): cols[j] cut to k rows and zero-padded below
    H = torch.stack([torch.stack((c + [zero] * k)[:k]) for c in cols[:k]], dim=1)
    e1 = torch.zeros((k, 1), dtype=torch.float64)
    e1[0, 0] = 1.0
    aug = torch.cat([torch.cat([T * H, e1], dim=1), torch.zeros((1, k + 1), dtype=torch.float64)])
    phi = torch.linalg.matrix_exp(aug)[:k, k]  # φ(T H_k) e1
    V = sum(phi[i] * Q[i] for i in range(k))
    return (T * beta) * V


def _leaf(problem: dict[str, Any]) -> torch.Tensor:
    return torch.tensor(problem["patches"], dtype=torch.float64, requires_grad=True)


def _value_and_grad(problem: dict[str, Any], solver) -> tuple[float, np.ndarray]:
    _require_torch()
    P = _leaf(problem)
    model = _LAF(problem, P)
    V = solver(model)
    y = torch.as_tensor(np.asarray(problem["y"]), dtype=torch.int64)
    loss = _loss(V, y, problem["n_labels"])
    del V, model
    loss.backward()
    grad = problem["graph"].patches_to_values(P.grad.numpy())
    return float(loss.detach()), np.array(grad)


def torch_value_and_grad_euler(
    problem: dict[str, Any], step_size: float = 0.1
) -> tuple[float, np.ndarray]:
    """KL loss and its gradient w.r.t. the weights, by autodiff through explicit Euler.

    ``ceil(T/h)`` equal steps of size ``T/ceil(T/h)`` (as :class:`assignflow.Euler`).
    The gradient has shape ``(nnz,)``, aligned with ``weights.values``. Memory grows
    linearly with the number of steps (every state is kept for the backward pass).
    """
    T = problem["T"]
    return _value_and_grad(problem, lambda model: _euler(model, T, step_size))


def torch_value_and_grad_krylov(
    problem: dict[str, Any], krylov_dim: int = 10
) -> tuple[float, np.ndarray]:
    """KL loss and its gradient by autodiff through one exponential Krylov step.

    Arnoldi with ``krylov_dim`` steps (CGS2) on ``A`` from ``B``, then
    ``V_T = T β Q_m φ(T H_m) e1``. The gradient has shape ``(nnz,)``. Memory grows
    linearly with ``krylov_dim`` (basis and Gram–Schmidt intermediates are kept).
    """
    T = problem["T"]
    return _value_and_grad(problem, lambda model: _krylov(model, T, krylov_dim))


def torch_forward_euler(problem: dict[str, Any], step_size: float = 0.1) -> np.ndarray:
    """``V_T`` of shape ``(I, J)`` from the torch Euler model (no gradient; for checks)."""
    _require_torch()
    with torch.no_grad():
        model = _LAF(problem, torch.as_tensor(problem["patches"], dtype=torch.float64))
        V = _euler(model, problem["T"], step_size)
    return V.reshape(-1, problem["n_labels"]).numpy().copy()


def torch_forward_krylov(problem: dict[str, Any], krylov_dim: int = 10) -> np.ndarray:
    """``V_T`` of shape ``(I, J)`` from the torch Krylov model (no gradient; for checks)."""
    _require_torch()
    with torch.no_grad():
        model = _LAF(problem, torch.as_tensor(problem["patches"], dtype=torch.float64))
        V = _krylov(model, problem["T"], krylov_dim)
    return V.reshape(-1, problem["n_labels"]).numpy().copy()
