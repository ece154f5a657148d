r"""Learning: the optimisation loop, and Riemannian gradient descent on the weights.

:class:`Learner` is the one training loop of the package: it minimises an
objective ``params -> (loss, gradients, info)`` over a dict of arrays with Adam or a
custom step, keeps a history, stops early on a validation function, calls a
callback every iteration and restores the best parameters. The estimators
(:class:`~assignflow.ImageLabeler`, :class:`~assignflow.AssignmentFlowClassifier`)
build their objectives from a gradient estimator and hand them to it.

:func:`riemannian_gradient_descent` learns the weights :math:`\Omega` of one flow
(the paper's eqs. 3.7–3.8). Every row :math:`\omega_i = \Omega_i|_{\mathcal{N}_i}`
lives on the open simplex of its neighbourhood with the Fisher–Rao metric, and the
Riemannian gradient step
:math:`\Omega \leftarrow \operatorname{Exp}_\Omega(-h\,R_\Omega\,\partial\mathcal{L})`
is, row by row, the multiplicative update

.. math::
    \omega_i \leftarrow \frac{\omega_i \odot e^{-h\,\partial_i\mathcal{L}}}
                             {\sum_{k\in\mathcal{N}_i}\omega_{ik}e^{-h\,\partial_{ik}\mathcal{L}}},

so the weights stay positive and row-stochastic by construction. Any registered
gradient estimator and any loss can be used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from . import registry
from ._krylov import reuse_workspace
from ._parallel import row_blocks, run_chunks
from ._validation import (
    as_float_array,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    nonnegative_float_converter,
    positive_float_converter,
    positive_int_validator,
)
from .flows import LinearizedAssignmentFlow
from .gradients import GradientEstimator
from .losses import CompositeLoss, Loss
from .weights import Weights

__all__ = [
    "DescentResult",
    "LearnResult",
    "Learner",
    "multiplicative_update",
    "riemannian_gradient_descent",
]

Params = dict[str, np.ndarray]
Objective = Callable[[Params], tuple[float, Params, dict[str, float]]]


# --------------------------------------------------------------------------- the loop
class _Adam:
    """Adam (Kingma & Ba 2015) on a dict of arrays."""

    def __init__(self, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m: Params = {}
        self.v: Params = {}
        self.t = 0

    def __call__(self, params: Params, grads: Params, lr_scale: dict[str, float]) -> Params:
        self.t += 1
        out = dict(params)
        for k, g in grads.items():
            if k not in params:
                continue
            g = np.asarray(g, dtype=float)
            m = self.m.get(k, np.zeros_like(g)) * self.b1 + (1 - self.b1) * g
            v = self.v.get(k, np.zeros_like(g)) * self.b2 + (1 - self.b2) * g * g
            self.m[k], self.v[k] = m, v
            mh = m / (1 - self.b1**self.t)
            vh = v / (1 - self.b2**self.t)
            lr = self.lr * lr_scale.get(k, 1.0)
            out[k] = np.asarray(params[k]) - lr * mh / (np.sqrt(vh) + self.eps)
        return out


@attrs.frozen(eq=False)
class LearnResult:
    """Outcome of :meth:`Learner.run`.

    The fields are the constructor's arguments and the record's attributes.

    Parameters
    ----------
    params : dict of str -> ndarray
        The selected parameters: those with the lowest validation error (or loss).
    history : dict of str -> ndarray
        Per iteration: ``"loss"``, ``"time"`` (seconds since the start),
        ``"val_error"`` if a validation function was given, and every entry of the
        objective's ``info`` (e.g. ``"error"``).
    n_iter : int
        Iterations run (objective evaluations).
    best_iter : int
        The iteration (1-based) of the selected parameters.
    stop_reason : {"max_iter", "no_change", "tol", "callback"}
        What ended the run: ``max_iter`` reached, no improvement for
        ``n_iter_no_change`` iterations (early stopping), the relative loss change
        below ``tol``, or the callback.
    """

    params: Params
    history: dict[str, np.ndarray]
    n_iter: int
    best_iter: int
    stop_reason: str

    @property
    def stopped_early(self) -> bool:
        """Whether something other than ``max_iter`` ended the run."""
        return self.stop_reason != "max_iter"


@attrs.frozen
class Learner:
    r"""The training loop: gradient steps on a dict of parameters with early stopping.

    Parameters
    ----------
    max_iter : int, default=100
        Objective evaluations at most (1 to 10⁶).
    learning_rate : float, default=0.05
        Step of Adam (per parameter scaled by ``lr_scale`` in :meth:`run`).
    n_iter_no_change : int, default=15
        Stop when the selection criterion (validation error, else the loss) has not
        improved for this many iterations.
    tol : float, default=0.0
        Stop when the relative change of the loss falls below ``tol`` (0: never).
    verbose : int, default=0
        Print one line per iteration.
    average : float in [0, 1), default=0.0
        With a validation function: the candidates that it scores (and that
        :meth:`run` returns) are the bias-corrected exponential average of the
        iterates with this decay, ``a_t = (Σ_s average^(t-s) (1 - average) x_s) /
        (1 - average^t)``, instead of the iterates (0). The steps still start from
        the iterates.
    """

    max_iter: int = attrs.field(default=100, validator=positive_int_validator)
    learning_rate: float = attrs.field(default=0.05, converter=positive_float_converter)
    n_iter_no_change: int = attrs.field(default=15, validator=positive_int_validator)
    tol: float = attrs.field(default=0.0, converter=nonnegative_float_converter)
    verbose: int = attrs.field(default=0)
    average: float = attrs.field(default=0.0)

    @average.validator
    def _check_average(self, attribute: Any, value: float) -> None:
        if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
            raise ValueError(f"average must be a number in [0, 1), got {value!r}")

    @max_iter.validator
    def _check_max_iter(self, attribute: Any, value: int) -> None:
        if value > 10**6:
            raise ValueError(f"max_iter must be <= 1e6, got {value}")

    def run(
        self,
        objective: Objective,
        params: Params,
        *,
        validate: Callable[[Params], float] | None = None,
        step: Callable[[Params, Params, int], Params] | None = None,
        lr_scale: dict[str, float] | None = None,
        callback: Callable[[int, dict[str, float]], Any] | None = None,
        name: str = "learn",
        select: str = "val_error",
    ) -> LearnResult:
        """Minimise ``objective`` from ``params``.

        Parameters
        ----------
        objective : callable
            ``objective(params) -> (loss, gradients, info)``: the loss, its gradient
            with respect to every entry of ``params`` and a dict of further numbers
            to record (e.g. the training error).
        params : dict of str -> ndarray
            Starting point (not modified).
        validate : callable, optional
            ``validate(params) -> error`` on held-out data, or a dict of such numbers
            (all are recorded): the parameters with the lowest validation figure
            ``select`` are returned, and early stopping watches it. Without it the
            training loss plays that role.
        step : callable, optional
            ``step(params, gradients, iteration) -> params`` instead of Adam (e.g. the
            multiplicative Riemannian update).
        lr_scale : dict of str -> float, optional
            Per-parameter factors of Adam's learning rate.
        callback : callable, optional
            ``callback(iteration, record)`` after every evaluation, with the
            iteration's entries of the history and ``"max_iter"``; return ``True``
            to stop.
        name : str, default="learn"
            Prefix of the verbose lines.
        select : str, default="val_error"
            The entry of ``validate``'s dict that selects the parameters.

        Returns
        -------
        LearnResult

        Notes
        -----
        The Krylov bases of one evaluation are reused by the next (the run's work
        space, released when it returns), so the loop does not take fresh memory
        from the OS at every step.
        """
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        with reuse_workspace():
            return self._run(objective, params, validate, step, lr_scale, callback, name, select)

    def _run(self, objective, params, validate, step, lr_scale, callback, name, select):
        adam = _Adam(self.learning_rate)
        lr_scale = dict(lr_scale or {})
        history: dict[str, list[float]] = {}
        t0 = time.perf_counter()
        cur = {k: np.array(v, dtype=float) for k, v in params.items()}
        best = (np.inf, cur, 0)
        since_best = 0
        reason = "max_iter"
        it = 0
        # with validation and `average`: the candidates are the (bias-corrected)
        # exponential average of the iterates, whose noise the single steps carry
        averaging = validate is not None and self.average > 0
        acc = {k: np.zeros_like(v) for k, v in cur.items()} if averaging else None
        for it in range(1, self.max_iter + 1):
            loss, grads, info = objective(cur)
            rec = {"loss": float(loss), **{k: float(v) for k, v in info.items()}}
            crit = float(loss)
            cand = cur
            if averaging:
                a = self.average
                for k in acc:
                    acc[k] = a * acc[k] + (1.0 - a) * cur[k]
                cand = {k: acc[k] / (1.0 - a**it) for k in acc}
            if validate is not None:
                v = validate(cand)
                if isinstance(v, dict):
                    rec.update({k: float(x) for k, x in v.items()})
                    crit = float(v[select])
                else:
                    rec["val_error"] = crit = float(v)
            rec["time"] = time.perf_counter() - t0
            for k, v in rec.items():
                history.setdefault(k, []).append(v)
            if self.verbose:
                parts = "  ".join(
                    f"{k} {100 * v:.2f} %" if "error" in k else f"{k} {v:.5g}"
                    for k, v in rec.items()
                    if k != "time"
                )
                print(f"[{name}] iter {it:3d}  {parts}  {rec['time']:.1f} s", flush=True)
            if not np.isfinite(crit):
                raise FloatingPointError(
                    f"the objective became non-finite at iteration {it}; lower the learning rate"
                )
            if crit < best[0] - 1e-12:
                best, since_best = (crit, cand, it), 0
            else:
                since_best += 1
            if callback is not None and callback(it, {**rec, "max_iter": self.max_iter}) is True:
                reason = "callback"
                break
            if since_best >= self.n_iter_no_change:
                reason = "no_change"
                break
            losses = history["loss"]
            if self.tol > 0 and len(losses) > 1:
                if abs(losses[-2] - losses[-1]) <= self.tol * max(abs(losses[-2]), 1e-300):
                    reason = "tol"
                    break
            if it == self.max_iter:
                break
            cur = step(cur, grads, it) if step is not None else adam(cur, grads, lr_scale)
        return LearnResult(
            params=best[1],
            history={k: np.asarray(v) for k, v in history.items()},
            n_iter=it,
            best_iter=best[2],
            stop_reason=reason,
        )


# --------------------------------------------------------------------------- weights
def multiplicative_update(
    weights: Weights, gradient: np.ndarray, step_size: float, max_log_step: float | None = None
) -> Weights:
    r""":math:`\operatorname{Exp}_\Omega(-h R_\Omega \partial\mathcal{L})`: one Riemannian step.

    Row by row :math:`\omega_i \leftarrow \omega_i\odot e^{-h\,\partial_i\mathcal{L}}/\Sigma`.
    Evaluated in the log domain with a max shift per neighbourhood, so large steps
    saturate a patch towards its best neighbour instead of overflowing.

    Parameters
    ----------
    weights : Weights
        The current :math:`\Omega` (not modified).
    gradient : ndarray, shape (graph.nnz,)
        The Euclidean gradient :math:`\partial\mathcal{L}/\partial\omega_{ik}`,
        aligned with ``weights.graph.indices``; finite.
    step_size : float
        Step :math:`h \ge 0` (0 returns the same weights, up to rounding).
    max_log_step : float, optional
        Bound on the change of :math:`\log\omega_{ik}` (after removing the row's
        mean): rows whose step would exceed it take a proportionally shorter step.
        A positive rescaling per row keeps a descent direction, and it prevents the
        oscillation that the :math:`1/\omega` factor of the e-exponential map
        causes when a weight gets close to 0.

    Returns
    -------
    Weights
        The updated :math:`\Omega` on the same graph: positive, rows summing to 1.
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
    indptr, degrees = g.indptr, g.degrees
    vals = np.empty(g.nnz)
    blocks = row_blocks(g.n_nodes, max(1, g.nnz // max(1, g.n_nodes)))

    def work(k: int) -> None:
        # a block of rows (neighbourhoods) at a time: its passes stay in cache
        for a, c in blocks[k]:
            lo, hi = indptr[a], indptr[c]
            starts, deg = indptr[a:c] - lo, degrees[a:c]
            step = step_size * grad[lo:hi]
            z = np.log(weights.values[lo:hi])
            if max_log_step is not None:
                # a row constant cancels in the normalisation: step by the centred
                # gradient, whose bounded size (|step| <= max_log_step, and the largest
                # log ω of a row >= -log deg) keeps exp in range without a max shift
                step -= np.repeat(np.add.reduceat(step, starts) / deg, deg)
                row_max = np.maximum.reduceat(np.abs(step), starts)
                step *= np.repeat(np.minimum(1.0, max_log_step / np.maximum(row_max, 1e-300)), deg)
                z -= step
            else:
                z -= step
                z -= np.repeat(np.maximum.reduceat(z, starts), deg)
            e = np.exp(z, out=z)
            # floor keeps the weights strictly positive (on the open simplex) after saturation
            np.maximum(e, 1e-300, out=e)
            np.divide(e, np.repeat(np.add.reduceat(e, starts), deg), out=vals[lo:hi])

    run_chunks(work, len(blocks))
    # positive rows that sum to 1 by construction: no second check of the whole array
    return Weights._unchecked(g, vals)


def _labels_of(loss: Loss) -> np.ndarray | None:
    """The labels a loss compares with (any loss with a ``labels`` attribute), else None."""
    if isinstance(loss, CompositeLoss):
        for t in loss.terms:
            y = _labels_of(t)
            if y is not None:
                return y
        return None
    y = getattr(loss, "labels", None)
    return None if y is None else np.asarray(y).ravel()


def _resolve_loss(loss: Any, loss_params: dict | None) -> Loss:
    """A loss instance from an instance, a class or a registered name (with ``loss_params``)."""
    out = registry.losses.resolve(loss, **(loss_params or {}))
    if not isinstance(out, Loss):
        raise TypeError(f"loss must be an assignflow Loss, got {type(out).__name__}")
    return out


@attrs.frozen(eq=False)
class DescentResult:
    """Outcome of :func:`riemannian_gradient_descent`.

    The fields are the constructor's arguments and the record's attributes.

    Parameters
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
        Gradient evaluations run (at most ``max_iter``).
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
    loss: Any,
    estimator: Any = "closed_form_low_rank",
    *,
    loss_params: dict[str, Any] | None = None,
    integrator: Any = None,
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
    loss : Loss, str or class
        E.g. ``KLLoss(labels) + TangentSpaceRegularizer(tau)``, or a registered
        loss name (``"kl"``) built with ``loss_params`` (e.g. ``{"labels": y}``).
    estimator : GradientEstimator, str or class, default="closed_form_low_rank"
        Any registered gradient estimator.
    loss_params : dict, optional
        Options of a loss given by name or class.
    integrator : LinearIntegrator or str, optional
        The forward integrator (the estimator's default if omitted).
    step_size : float, default=1.0
        Step :math:`h` of the multiplicative update.
    max_iter : int, default=20
        Gradient evaluations at most.
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
        The learned weights, the flow with them, the per-iteration history and
        whether ``tol`` was reached.
    """
    if not isinstance(flow, LinearizedAssignmentFlow):
        raise TypeError(f"flow must be a LinearizedAssignmentFlow, got {type(flow).__name__}")
    loss = _resolve_loss(loss, loss_params)
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
    graph = flow.weights.graph
    state: dict[str, Any] = {}

    def objective(params: Params) -> tuple[float, Params, dict[str, float]]:
        weights = Weights._unchecked(graph, params["omega"])
        r = est.estimate(
            flow.with_weights(weights), loss, integrator=integrator, hypergradients=False
        )
        err = float(np.mean(np.argmax(r.V, axis=1) != y)) if y is not None else np.nan
        # Riemannian gradient R_ω ∂L = ω ⊙ (∂L - m_i), m_i = <ω_i, ∂L_i>; its squared
        # Fisher–Rao norm Σ (R_ω ∂L)²/ω = Σ ω (∂L - m_i)²
        wv = weights.values
        m = np.add.reduceat(wv * r.gradient, graph.indptr[:-1])
        dev = r.gradient - np.repeat(m, graph.degrees)
        gnorm = math.sqrt(max(0.0, float(np.einsum("i,i,i->", wv, dev, dev))))
        state["last"] = weights
        return r.value, {"omega": r.gradient}, {"error": err, "grad_norm": gnorm}

    def step(params: Params, grads: Params, it: int) -> Params:
        w = Weights._unchecked(graph, params["omega"])
        return {"omega": multiplicative_update(w, grads["omega"], h, max_log_step).values}

    def relay(it: int, rec: dict[str, float]) -> Any:
        if callback is not None:
            return callback(it, {k: rec[k] for k in ("loss", "error", "grad_norm", "time")},
                            state["last"])  # fmt: skip
        return None

    learner = Learner(max_iter=max_iter, n_iter_no_change=max_iter + 1, tol=tol, verbose=verbose)
    res = learner.run(
        objective,
        {"omega": np.array(flow.weights.values)},
        step=step,
        callback=relay,
        name="descent",
    )
    final = Weights(graph, res.params["omega"]) if keep_best else state["last"]
    converged = res.stop_reason == "tol"
    hist = {k: res.history[k] for k in ("loss", "error", "grad_norm", "time")}
    return DescentResult(
        weights=final,
        flow=flow.with_weights(final),
        history=hist,
        n_iter=res.n_iter,
        converged=converged,
    )
