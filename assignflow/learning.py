r"""Learning the weights :math:`\Omega` by Riemannian gradient descent (the paper's eqs. 3.7–3.8).

Every row :math:`\omega_i = \Omega_i|_{\mathcal{N}_i}` lives on the open simplex of
its neighbourhood with the Fisher–Rao metric. The Riemannian gradient step
:math:`\Omega \leftarrow \operatorname{Exp}_\Omega(-h\,R_\Omega\,\partial\mathcal{L})`
is, row by row, the multiplicative update (MATH.md §5)

.. math::
    \omega_i \leftarrow \frac{\omega_i \odot e^{-h\,\partial_i\mathcal{L}}}
                             {\sum_{k\in\mathcal{N}_i}\omega_{ik}e^{-h\,\partial_{ik}\mathcal{L}}},

so the weights stay positive and row-stochastic by construction. Any registered
gradient estimator and any loss can be used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from . import registry
from ._validation import (
    as_float_array,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
)
from .losses import CompositeLoss, KLLoss, Loss
from .weights import Weights

__all__ = ["DescentResult", "multiplicative_update", "riemannian_gradient_descent"]


def multiplicative_update(
    weights: Weights, gradient: np.ndarray, step_size: float, max_log_step: float | None = None
) -> Weights:
    r""":math:`\operatorname{Exp}_\Omega(-h R_\Omega \partial\mathcal{L})`: one Riemannian step.

    Row by row :math:`\omega_i \leftarrow \omega_i\odot e^{-h\,\partial_i\mathcal{L}}/\Sigma`.
    Evaluated in the log domain with a max shift per neighbourhood, so large steps
    saturate a patch towards its best neighbour instead of overflowing.

    Parameters
    ----------
    max_log_step : float, optional
        Bound on the change of :math:`\log\omega_{ik}` (after removing the row's
        mean): rows whose step would exceed it take a proportionally shorter step.
        A positive rescaling per row keeps a descent direction, and it prevents the
        oscillation that the :math:`1/\omega` factor of the e-exponential map
        causes when a weight gets close to 0.
    """
    if not isinstance(weights, Weights):
        raise TypeError(f"weights must be an assignflow Weights, got {type(weights).__name__}")
    g = weights.graph
    grad = as_float_array(gradient, "gradient", finite=False)
    if grad.shape != (g.nnz,) or not np.all(np.isfinite(grad)):
        raise ValueError(f"gradient must be finite with shape ({g.nnz},), got {grad.shape}")
    step_size = check_nonnegative_float(step_size, "step_size")
    if max_log_step is not None:
        max_log_step = check_positive_float(max_log_step, "max_log_step")
    step = step_size * grad
    if max_log_step is not None:
        centred = step - np.repeat(np.add.reduceat(step, g.indptr[:-1]) / g.degrees, g.degrees)
        row_max = np.maximum.reduceat(np.abs(centred), g.indptr[:-1])
        scale = np.minimum(1.0, max_log_step / np.maximum(row_max, 1e-300))
        step *= np.repeat(scale, g.degrees)
    z = np.log(weights.values) - step
    zmax = np.maximum.reduceat(z, g.indptr[:-1])
    e = np.exp(z - np.repeat(zmax, g.degrees))
    # floor keeps the weights strictly positive (on the open simplex) after saturation
    e = np.maximum(e, 1e-300)
    vals = e / np.repeat(np.add.reduceat(e, g.indptr[:-1]), g.degrees)
    return Weights(g, vals)


def _labels_of(loss: Loss) -> np.ndarray | None:
    if isinstance(loss, KLLoss):
        return loss.labels
    if isinstance(loss, CompositeLoss):
        for t in loss.terms:
            y = _labels_of(t)
            if y is not None:
                return y
    return None


@attrs.frozen(eq=False)
class DescentResult:
    """Outcome of :func:`riemannian_gradient_descent`.

    Attributes
    ----------
    weights : Weights
        The learned :math:`\\Omega` (the best iterate by loss if ``keep_best``).
    flow : LinearizedAssignmentFlow
        The flow with the learned weights.
    history : dict of str -> ndarray
        Per iteration (before the update): ``"loss"``, ``"error"`` (fraction of
        wrongly labeled nodes, if the loss has labels), ``"grad_norm"``
        (Riemannian gradient norm), ``"time"`` (seconds since the start).
    n_iter : int
    converged : bool
        Whether the relative loss change fell below ``tol``.
    """

    weights: Weights
    flow: Any
    history: dict[str, np.ndarray]
    n_iter: int
    converged: bool


def riemannian_gradient_descent(
    flow: Any,
    loss: Loss,
    estimator: Any = "closed_form_low_rank",
    *,
    step_size: float = 1.0,
    max_iter: int = 20,
    tol: float = 0.0,
    scale_by_nodes: bool = True,
    max_log_step: float | None = 5.0,
    keep_best: bool = True,
    callback: Callable[[int, dict[str, float], Weights], Any] | None = None,
    verbose: bool = False,
) -> DescentResult:
    r"""Learn :math:`\Omega` by Riemannian gradient descent on :math:`\mathcal{L}(\Omega)`.

    Parameters
    ----------
    flow : LinearizedAssignmentFlow
        The LAF (at the barycenter) whose weights are the starting point.
    loss : Loss
        E.g. ``KLLoss(labels) + TangentSpaceRegularizer(tau)``.
    estimator : GradientEstimator, str or class, default="closed_form_low_rank"
        Any registered gradient estimator.
    step_size : float, default=1.0
        Step :math:`h` of the multiplicative update.
    max_iter : int, default=20
    tol : float, default=0.0
        Stop when the relative decrease of the loss falls below ``tol`` (0: never).
    scale_by_nodes : bool, default=True
        Multiply the step by the number of nodes ``I``: the data term is a mean
        over nodes, so per-edge gradients scale like ``1/I`` and a size-free
        ``step_size`` is convenient.
    max_log_step : float or None, default=5.0
        Bound on the per-iteration change of any log-weight (see
        :func:`multiplicative_update`); ``None`` takes the plain step.
    keep_best : bool, default=True
        Return the iterate with the lowest loss seen (the last one otherwise).
    callback : callable(iteration, record, weights), optional
        Called after each gradient evaluation; return ``True`` to stop.
    verbose : bool, default=False
        Print one line per iteration.

    Returns
    -------
    DescentResult
    """
    from .flows import LinearizedAssignmentFlow
    from .gradients import GradientEstimator

    if not isinstance(flow, LinearizedAssignmentFlow):
        raise TypeError(f"flow must be a LinearizedAssignmentFlow, got {type(flow).__name__}")
    if not isinstance(loss, Loss):
        raise TypeError(f"loss must be an assignflow Loss, got {type(loss).__name__}")
    est = registry.gradient_estimators.resolve(estimator)
    if not isinstance(est, GradientEstimator):
        raise TypeError(f"estimator must be a GradientEstimator, got {type(est).__name__}")
    h = check_positive_float(step_size, "step_size")
    max_iter = check_positive_int(max_iter, "max_iter")
    tol = check_nonnegative_float(tol, "tol")
    if max_log_step is not None:
        max_log_step = check_positive_float(max_log_step, "max_log_step")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    loss.check(flow)
    if scale_by_nodes:
        h *= flow.n_nodes
    y = _labels_of(loss)

    hist: dict[str, list[float]] = {"loss": [], "error": [], "grad_norm": [], "time": []}
    t0 = time.perf_counter()
    best = (np.inf, flow.weights)
    weights = flow.weights
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        cur = flow.with_weights(weights)
        r = est.estimate(cur, loss)
        err = (
            float(np.mean(np.argmax(r.V, axis=1) != y))
            if (y is not None and r.V is not None)
            else np.nan
        )
        # Riemannian gradient R_ω ∂L, norm in the Fisher–Rao metric of each row
        g = weights.graph
        wg = weights.values * r.gradient
        mean = np.repeat(np.add.reduceat(wg, g.indptr[:-1]), g.degrees)
        rg = wg - weights.values * mean
        gnorm = float(np.sqrt(np.sum(rg * rg / weights.values)))
        rec = {"loss": r.value, "error": err, "grad_norm": gnorm, "time": time.perf_counter() - t0}
        for key, v in rec.items():
            hist[key].append(v)
        if verbose:
            print(
                f"iter {it:4d}  loss {r.value:.6g}  wrong {100 * err:6.2f} %  "
                f"|grad| {gnorm:.3g}  {rec['time']:.2f} s",
                flush=True,
            )
        if r.value < best[0]:
            best = (r.value, weights)
        if callback is not None and callback(it, rec, weights) is True:
            break
        if tol > 0 and len(hist["loss"]) > 1:
            prev, now = hist["loss"][-2], hist["loss"][-1]
            if abs(prev - now) <= tol * max(abs(prev), 1e-300):
                converged = True
                break
        if it < max_iter:
            weights = multiplicative_update(weights, r.gradient, h, max_log_step)
    final = best[1] if keep_best else weights
    return DescentResult(
        weights=final,
        flow=flow.with_weights(final),
        history={k: np.asarray(v) for k, v in hist.items()},
        n_iter=it,
        converged=converged,
    )
