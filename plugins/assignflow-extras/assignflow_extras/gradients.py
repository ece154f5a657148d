"""SPSA: a cheap, noisy, black-box estimate of the weight gradient."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

import assignflow as af

__all__ = ["SPSA"]


def _positive(instance: Any, attribute: Any, value: Any) -> None:
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _positive_int(instance: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


@attrs.frozen
class SPSA(af.GradientEstimator):
    r"""Simultaneous perturbation stochastic approximation of the weight gradient.

    With random directions :math:`\Delta^{(s)} \in \{-1, +1\}^{\mathrm{nnz}}`
    (Rademacher),

    .. math::
        \hat g = \frac{1}{N}\sum_{s=1}^{N}
            \frac{\mathcal{L}(\omega + \varepsilon\Delta^{(s)})
                  - \mathcal{L}(\omega - \varepsilon\Delta^{(s)})}{2\varepsilon}\,
            \Delta^{(s)} .

    Since :math:`\mathbb{E}[\Delta\Delta^\top] = I`, :math:`\hat g` is an
    unbiased estimate of the Euclidean gradient up to :math:`O(\varepsilon^2)`.

    **This is a noisy estimator.** Its variance per entry is about
    :math:`\|\nabla\mathcal{L}\|^2 / N`, so the expected cosine with the true
    gradient is roughly :math:`1/\sqrt{1 + \mathrm{nnz}/N}`: it needs
    ``n_samples`` comparable to the number of edges to point in the right
    direction. It treats the loss as a black box (only values, ``2N + 1`` flow
    solves, no ``data_gradient``), which makes it a cheap sanity check for the
    gradient code of custom losses on small problems. For learning, use
    :class:`assignflow.ClosedFormLowRank` or :class:`assignflow.AdjointQuadrature`.

    Parameters
    ----------
    n_samples : int, default=64
        Number ``N`` of random directions.
    eps : float, default=1e-4
        Perturbation size :math:`\varepsilon` (absolute, applied to every
        weight value; row sums are not renormalised, as for
        :class:`assignflow.FiniteDiff`).
    random_state : int, numpy Generator or None, default=0
        Seed of the directions. With an int, every call uses the same
        directions (deterministic); ``None`` draws fresh ones.

    Notes
    -----
    The flow is solved with the integrator given to :meth:`estimate` (default
    ``ExponentialKrylov(krylov_dim=30, tol=1e-12)``); a ``forward`` solve given
    to :meth:`estimate` is reused for the value. The result's ``n_matvecs``
    counts flow solves (``2N``, plus one without ``forward``), like
    ``FiniteDiff``.
    """

    n_samples: int = attrs.field(default=64, validator=_positive_int)
    eps: float = attrs.field(default=1e-4, converter=float, validator=_positive)
    random_state: Any = attrs.field(default=0)

    def _default_integrator(self) -> af.LinearIntegrator:
        return af.ExponentialKrylov(krylov_dim=30, tol=1e-12)

    def _value(self, flow: Any, loss: af.Loss, values: np.ndarray, integrator: Any) -> float:
        w = af.Weights._unchecked(flow.weights.graph, values)
        V = flow.with_weights(w).solve(integrator).V
        return float(loss.data_value(V)) + float(loss.reg_value(w))

    def _estimate(
        self, flow: Any, loss: af.Loss, integrator: Any, forward: Any
    ) -> af.GradientResult:
        n_solves = 2 * self.n_samples + (forward is None)
        if forward is None:
            forward = flow.solve(integrator)
        rng = np.random.default_rng(self.random_state)
        vals = np.asarray(flow.weights.values)
        grad = np.zeros(vals.size)
        for _ in range(self.n_samples):
            delta = rng.choice(np.array([-1.0, 1.0]), size=vals.size)
            fp = self._value(flow, loss, vals + self.eps * delta, integrator)
            fm = self._value(flow, loss, vals - self.eps * delta, integrator)
            grad += ((fp - fm) / (2.0 * self.eps)) * delta
        grad /= self.n_samples
        # the differences already contain the regulariser
        return af.GradientResult.from_gradient(
            flow, loss, forward.V, grad, add_regularizer=False, n_matvecs=n_solves, forward=forward
        )
