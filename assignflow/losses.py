r"""Losses for learning the weights :math:`\Omega` (eqs. 3.4–3.6; :ref:`§5 <math-learning>`).

.. math::
    \mathcal{L}(\Omega) = f_L\big(V_T(\Omega)\big) + \mathcal{R}(\Omega)

A :class:`Loss` has a *data term* (a function of the LAF's final tangent vector
:math:`V_T`, with its gradient :math:`\partial f_L/\partial V`) and a
*regulariser* (a function of the weights, with its gradient with respect to the
weight values). Losses compose with ``+``::

    loss = af.KLLoss(labels=y) + af.TangentSpaceRegularizer(tau=1e-6)

Every loss is a frozen value object registered in ``af.registry.losses``.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from . import registry
from ._parallel import row_blocks, run_chunks
from ._simplex import log_softmax, row_max, row_sum
from ._validation import as_float_array, nonnegative_float_converter
from .weights import Weights

__all__ = [
    "CompositeLoss",
    "KLLoss",
    "Loss",
    "TangentSpaceRegularizer",
    "labels_to_one_hot",
]


def labels_to_one_hot(labels: Any, n_labels: int) -> np.ndarray:
    """One-hot rows :math:`W^*` ``(I, J)`` from integer labels ``(I,)``."""
    y = np.asarray(labels)
    out = np.zeros((y.size, n_labels))
    out[np.arange(y.size), y.ravel()] = 1.0
    return out


def _check_labels(labels: Any) -> np.ndarray:
    y = np.asarray(labels)
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if (
            np.issubdtype(y.dtype, np.floating)
            and np.all(np.isfinite(y))
            and np.all(y == np.round(y))
        ):
            y = y.astype(np.int64)
        else:
            raise TypeError(f"labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=True).ravel()
    if y.size == 0:
        raise ValueError("labels must not be empty")
    if y.min() < 0:
        raise ValueError(f"labels must be >= 0, got {y.min()}")
    y.flags.writeable = False
    return y


class Loss:
    r"""Base class: ``value(V, weights)`` and the two partial gradients.

    A loss :math:`\mathcal{L}(\Omega) = f_L(V_T) + \mathcal{R}(\Omega)` has a data
    term, a function of the flow's tangent solution :math:`V_T = V(T)` (shape
    ``(I, J)``; the assignments are :math:`W = \operatorname{Exp}_{\mathbb{1}}(V_T) =
    \operatorname{softmax}(J V_T)` row by row), and a regulariser, a function of the
    weights. Subclasses override any of :meth:`data_value`, :meth:`data_gradient`,
    :meth:`reg_value` and :meth:`reg_gradient`; the defaults are zero, so a data term
    only defines the first two and a regulariser the last two. Losses add up with
    ``+`` (:class:`CompositeLoss`).
    """

    def data_value(self, V: np.ndarray) -> float:
        """The data term :math:`f_L(V)` (0 unless overridden).

        Parameters
        ----------
        V : ndarray, shape (I, J)
            The tangent solution :math:`V_T` of the flow (rows sum to 0).

        Returns
        -------
        float
            :math:`f_L(V)`.
        """
        return 0.0

    def data_gradient(self, V: np.ndarray) -> np.ndarray:
        r"""The Euclidean gradient :math:`\partial f_L/\partial V` (0 unless overridden).

        Parameters
        ----------
        V : ndarray, shape (I, J)
            The tangent solution :math:`V_T` of the flow.

        Returns
        -------
        ndarray, shape (I, J)
            :math:`\partial f_L/\partial V` at ``V``.
        """
        return np.zeros_like(V)

    def reg_value(self, weights: Any) -> float:
        r"""The regulariser :math:`\mathcal{R}(\Omega)` (0 unless overridden).

        Parameters
        ----------
        weights : Weights
            The weights :math:`\Omega`.

        Returns
        -------
        float
            :math:`\mathcal{R}(\Omega)`.
        """
        return 0.0

    def reg_gradient(self, weights: Any) -> np.ndarray:
        r"""The gradient of :math:`\mathcal{R}` in the weight values (0 unless overridden).

        Parameters
        ----------
        weights : Weights
            The weights :math:`\Omega`.

        Returns
        -------
        ndarray, shape (weights.graph.nnz,)
            :math:`\partial\mathcal{R}/\partial\omega_{ik}`, aligned with
            ``weights.values``.
        """
        return np.zeros(weights.graph.nnz)

    def data_value_and_gradient(self, V: np.ndarray) -> tuple[float, np.ndarray]:
        r"""``(data_value(V), data_gradient(V))`` together.

        Gradient estimators call this once per evaluation; a data term whose value
        and gradient share work (the KL loss: one softmax) overrides it.

        Parameters
        ----------
        V : ndarray, shape (I, J)
            The tangent solution :math:`V_T` of the flow.

        Returns
        -------
        value : float
            :math:`f_L(V)`.
        gradient : ndarray, shape (I, J)
            :math:`\partial f_L/\partial V`.
        """
        return float(self.data_value(V)), self.data_gradient(V)

    @property
    def has_data_term(self) -> bool:
        """Whether the loss depends on :math:`V_T` (else the flow need not be solved)."""
        return type(self).data_value is not Loss.data_value

    @property
    def has_regularizer(self) -> bool:
        """Whether the loss has a regulariser (else its gradient is not formed)."""
        return type(self).reg_gradient is not Loss.reg_gradient

    def check(self, flow: Any) -> None:
        """Raise ``ValueError`` if the loss does not fit ``flow`` (sizes, label range).

        Parameters
        ----------
        flow : LinearizedAssignmentFlow
            The flow the loss is about to be evaluated on.
        """

    def value(self, V: np.ndarray, weights: Any) -> float:
        r"""The loss :math:`f_L(V) + \mathcal{R}(\Omega)`.

        Parameters
        ----------
        V : ndarray, shape (I, J)
            The tangent solution :math:`V_T` of the flow.
        weights : Weights
            The weights :math:`\Omega`.

        Returns
        -------
        float
            ``data_value(V) + reg_value(weights)``.
        """
        return float(self.data_value(V)) + float(self.reg_value(weights))

    def __add__(self, other: Loss) -> CompositeLoss:
        if not isinstance(other, Loss):
            return NotImplemented
        left = self.terms if isinstance(self, CompositeLoss) else (self,)
        right = other.terms if isinstance(other, CompositeLoss) else (other,)
        return CompositeLoss(left + right)


@registry.losses.register("kl")
@attrs.frozen(eq=False)
class KLLoss(Loss):
    r"""KL data term (the paper's eq. 3.5; :ref:`§5 <math-learning>`).

    .. math::
        f_L(V) = \frac{1}{I}\sum_i
                 \mathrm{KL}\big(W^*_i \,\|\, \operatorname{Exp}_{\mathbb{1}}(V)_i\big)
               = -\frac{1}{I}\sum_i \log\operatorname{softmax}(J V_i)_{y_i},

    with gradient :math:`\partial f_L/\partial V = J(\operatorname{softmax}(JV) - W^*)/I`.

    Parameters
    ----------
    labels : array of int, shape (I,)
        Ground-truth label :math:`y_i` of every node (images: flattened row by row).
    sample_weight : array of float, shape (I,), optional
        Per-node weights (default 1); the mean is taken with these weights, e.g.
        to balance rare classes.
    """

    labels: np.ndarray = attrs.field(converter=_check_labels)
    sample_weight: np.ndarray | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        if self.sample_weight is not None:
            w = as_float_array(self.sample_weight, "sample_weight", finite=False, copy=True)
            w = w.ravel()
            if w.shape != self.labels.shape or not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError(
                    f"sample_weight must be finite, >= 0, with one entry per label "
                    f"({self.labels.size}), got shape {w.shape}"
                )
            if w.sum() <= 0:
                raise ValueError("sample_weight must have a positive sum")
            w.flags.writeable = False
            object.__setattr__(self, "sample_weight", w)

    def __repr__(self) -> str:
        return f"KLLoss(n_nodes={self.labels.size})"

    def check(self, flow: Any) -> None:
        """Check that there is one label per node and every label exists in ``flow``.

        Parameters
        ----------
        flow : LinearizedAssignmentFlow
            The flow the loss is about to be evaluated on.

        Raises
        ------
        ValueError
            If the number of labels or their range does not fit the flow.
        """
        I, J = flow.shape
        if self.labels.size != I:
            raise ValueError(f"labels must have one entry per node ({I}), got {self.labels.size}")
        if self.labels.max() >= J:
            raise ValueError(
                f"labels must lie in [0, {J}) for a flow with {J} labels, got {self.labels.max()}"
            )

    def _weights(self) -> np.ndarray:
        if self.sample_weight is None:
            return np.full(self.labels.size, 1.0 / self.labels.size)
        return self.sample_weight / self.sample_weight.sum()

    def _check_V(self, V: Any, dtype: Any = np.float64) -> np.ndarray:
        v = as_float_array(V, "V", ndim=2, dtype=dtype)
        if v.shape[0] != self.labels.size:
            raise ValueError(
                f"V must have shape ({self.labels.size}, n_labels) (one row per label), "
                f"got {v.shape}"
            )
        if self.labels.max() >= v.shape[1]:
            raise ValueError(
                f"labels must lie in [0, {v.shape[1]}) for V with {v.shape[1]} labels, "
                f"got {self.labels.max()}"
            )
        return v

    def data_value(self, V: np.ndarray) -> float:
        r"""The (weighted) mean KL divergence :math:`f_L(V)` of eq. 3.5.

        Parameters
        ----------
        V : ndarray, shape (I, J)
            The tangent solution :math:`V_T` of the flow.

        Returns
        -------
        float
            :math:`-\sum_i w_i \log\operatorname{softmax}(J V_i)_{y_i}` with the
            normalised sample weights :math:`w_i` (:math:`1/I` by default).
        """
        V = self._check_V(V)
        J = V.shape[1]
        logp = log_softmax(J * V)[np.arange(V.shape[0]), self.labels]
        return float(-(self._weights() * logp).sum())

    def data_gradient(self, V: np.ndarray) -> np.ndarray:
        r"""The gradient :math:`J\,w\odot(\operatorname{softmax}(JV) - W^*)` of the data term.

        Parameters
        ----------
        V : ndarray, shape (I, J)
            The tangent solution :math:`V_T` of the flow.

        Returns
        -------
        ndarray, shape (I, J)
            The gradient, row :math:`i` scaled by the sample weight :math:`w_i`.
        """
        # the fused pass in double precision (its value costs only one vector more)
        return self.data_value_and_gradient(self._check_V(V))[1]

    def data_value_and_gradient(self, V: np.ndarray) -> tuple[float, np.ndarray]:
        r"""The value and the gradient from one softmax, in the precision of ``V``.

        Parameters
        ----------
        V : ndarray, shape (I, J)
            The tangent solution :math:`V_T` of the flow (float32 stays float32).

        Returns
        -------
        value : float
            :meth:`data_value` (the sums in double precision).
        gradient : ndarray, shape (I, J)
            :meth:`data_gradient`, float32 for float32 ``V`` (else float64).
        """
        f32 = getattr(V, "dtype", None) == np.float32
        V = self._check_V(V, np.float32 if f32 else np.float64)
        I, J = V.shape
        w, labels = self._weights(), self.labels
        out = np.empty_like(V)
        blocks = row_blocks(I, J)
        parts = np.zeros(len(blocks))
        scale = V.dtype.type(J)

        def work(k: int) -> None:
            # a row block at a time: every pass over it stays in cache
            total = 0.0
            for a, c in blocks[k]:
                z, y, wb = out[a:c], labels[a:c], w[a:c]
                rows = np.arange(c - a)
                np.multiply(V[a:c], scale, out=z)
                z -= row_max(z)[:, None]
                zy = z[rows, y].astype(np.float64)
                np.exp(z, out=z)
                tot = row_sum(z, np.float64)
                total -= float((wb * (zy - np.log(tot))).sum())
                z /= tot[:, None].astype(z.dtype)
                z[rows, y] -= 1.0
                z *= (J * wb)[:, None].astype(z.dtype)
            parts[k] = total

        run_chunks(work, len(blocks))
        return float(parts.sum()), out


@registry.losses.register("tangent_space")
@attrs.frozen
class TangentSpaceRegularizer(Loss):
    r"""Tangent-space regulariser (the paper's eq. 3.6; :ref:`§5 <math-learning>`).

    .. math::
        \mathcal{R}(\Omega) = \frac{\tau}{2}\sum_i
            \big\|\exp_{\mathbb{1}}^{-1}(\Omega_i|_{\mathcal{N}_i})\big\|^2
                            = \frac{\tau}{2}\sum_i \|\Pi_0 \log\omega_i\|^2 ,

    with gradient :math:`\tau(\Pi_0\log\omega_i)/\omega_i` on :math:`\mathcal{N}_i`.
    It pulls every weight patch towards uniform weights.

    Parameters
    ----------
    tau : float, default=0.1
        Weight :math:`\tau \ge 0`. :math:`\mathcal{R}` is a sum over the ``I`` nodes
        while the KL data term is a mean, so choose :math:`\tau` of order
        ``0.01 / I`` when combining them: the gradient grows like
        :math:`1/\omega`, and a large :math:`\tau` makes the descent stiff.
    """

    tau: float = attrs.field(default=0.1, converter=nonnegative_float_converter)

    def _centered_log(self, weights: Any) -> np.ndarray:
        if not isinstance(weights, Weights):
            raise TypeError(f"weights must be an assignflow Weights, got {type(weights).__name__}")
        g = weights.graph
        lw = np.log(weights.values)
        mean = np.add.reduceat(lw, g.indptr[:-1]) / g.degrees
        return lw - np.repeat(mean, g.degrees)

    def reg_value(self, weights: Any) -> float:
        r"""The regulariser :math:`\frac{\tau}{2}\sum_i\|\Pi_0\log\omega_i\|^2`.

        Parameters
        ----------
        weights : Weights
            The weights :math:`\Omega`.

        Returns
        -------
        float
            :math:`\mathcal{R}(\Omega)`.
        """
        c = self._centered_log(weights)
        return 0.5 * self.tau * float(c @ c)

    def reg_gradient(self, weights: Any) -> np.ndarray:
        r"""The gradient :math:`\tau(\Pi_0\log\omega_i)/\omega_i` on every neighbourhood.

        Parameters
        ----------
        weights : Weights
            The weights :math:`\Omega`.

        Returns
        -------
        ndarray, shape (weights.graph.nnz,)
            :math:`\partial\mathcal{R}/\partial\omega_{ik}`, aligned with
            ``weights.values``.
        """
        return self.tau * self._centered_log(weights) / weights.values


def _as_terms(terms: Any) -> tuple:
    if isinstance(terms, Loss):
        return (terms,)
    if isinstance(terms, (str, bytes)) or not hasattr(terms, "__iter__"):
        raise TypeError(f"terms must be a sequence of Loss objects, got {type(terms).__name__}")
    return tuple(terms)


@attrs.frozen
class CompositeLoss(Loss):
    """A sum of losses (built with ``+``).

    Parameters
    ----------
    terms : sequence of Loss
        The summands; values and gradients are the sums of theirs.
    """

    terms: tuple[Loss, ...] = attrs.field(converter=lambda t: _as_terms(t))

    @terms.validator
    def _check_terms(self, attribute: Any, value: tuple) -> None:
        for t in value:
            if not isinstance(t, Loss):
                raise TypeError(f"terms must be Loss objects, got {type(t).__name__}")

    @property
    def has_data_term(self) -> bool:
        """Whether any term depends on :math:`V_T`."""
        return any(t.has_data_term for t in self.terms)

    @property
    def has_regularizer(self) -> bool:
        """Whether any term has a regulariser."""
        return any(t.has_regularizer for t in self.terms)

    def data_value_and_gradient(self, V: np.ndarray) -> tuple[float, np.ndarray]:
        r"""The sums of the terms' data values and gradients (each term's fused pass).

        Parameters
        ----------
        V : ndarray, shape (I, J)
            The tangent solution :math:`V_T` of the flow.

        Returns
        -------
        value : float
            :math:`\sum_t f_t(V)`.
        gradient : ndarray, shape (I, J)
            :math:`\sum_t \partial f_t/\partial V`.
        """
        parts = [t.data_value_and_gradient(V) for t in self.terms if t.has_data_term]
        if not parts:
            return 0.0, np.zeros(np.shape(V))
        return float(sum(v for v, _ in parts)), sum(g for _, g in parts)

    def check(self, flow: Any) -> None:
        """Check every term against ``flow``.

        Parameters
        ----------
        flow : LinearizedAssignmentFlow
            The flow the loss is about to be evaluated on.
        """
        for t in self.terms:
            t.check(flow)

    def data_value(self, V: np.ndarray) -> float:
        r"""The sum of the terms' data values.

        Parameters
        ----------
        V : ndarray, shape (I, J)
            The tangent solution :math:`V_T` of the flow.

        Returns
        -------
        float
            :math:`\sum_t f_t(V)`.
        """
        return sum(t.data_value(V) for t in self.terms)

    def data_gradient(self, V: np.ndarray) -> np.ndarray:
        r"""The sum of the terms' data gradients.

        Parameters
        ----------
        V : ndarray, shape (I, J)
            The tangent solution :math:`V_T` of the flow.

        Returns
        -------
        ndarray, shape (I, J)
            :math:`\sum_t \partial f_t/\partial V`.
        """
        return sum(t.data_gradient(V) for t in self.terms)

    def reg_value(self, weights: Any) -> float:
        r"""The sum of the terms' regularisers.

        Parameters
        ----------
        weights : Weights
            The weights :math:`\Omega`.

        Returns
        -------
        float
            :math:`\sum_t \mathcal{R}_t(\Omega)`.
        """
        return sum(t.reg_value(weights) for t in self.terms)

    def reg_gradient(self, weights: Any) -> np.ndarray:
        r"""The sum of the terms' regulariser gradients.

        Parameters
        ----------
        weights : Weights
            The weights :math:`\Omega`.

        Returns
        -------
        ndarray, shape (weights.graph.nnz,)
            :math:`\sum_t \partial\mathcal{R}_t/\partial\omega`.
        """
        return sum(t.reg_gradient(weights) for t in self.terms)
