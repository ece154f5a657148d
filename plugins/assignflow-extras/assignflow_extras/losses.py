"""A class-balanced KL data term: an example of the loss interface."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

import assignflow as af

__all__ = ["BalancedKLLoss", "balanced_sample_weight"]


def balanced_sample_weight(labels: Any) -> np.ndarray:
    r"""Inverse class-frequency weights :math:`w_i = I / (K\,n_{y_i})`.

    ``n_c`` is the number of nodes with label ``c`` and ``K`` the number of
    labels that occur (scikit-learn's ``class_weight="balanced"``). The weights
    of every occurring class sum to ``I / K``, so each class counts equally.

    Parameters
    ----------
    labels : array of int, shape (I,)
        Labels ``>= 0``.

    Returns
    -------
    ndarray, shape (I,)
        The weights.
    """
    y = np.asarray(labels, dtype=np.int64).ravel()
    counts = np.bincount(y)
    n_classes = int(np.count_nonzero(counts))
    return y.size / (n_classes * counts[y].astype(float))


def _labels(labels: Any) -> np.ndarray:
    return af.KLLoss(labels).labels  # KLLoss's validation: integers >= 0, flat, read-only


def _n_labels(instance: Any, attribute: Any, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"n_labels must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"n_labels must be >= 1, got {value}")
    if instance.labels.max() >= value:
        raise ValueError(f"labels must lie in [0, {value}), got {instance.labels.max()}")


@attrs.frozen(eq=False)
class BalancedKLLoss(af.Loss):
    r"""KL data term with inverse class-frequency sample weights.

    .. math::
        f_L(V) = \frac{1}{K}\sum_{c}\frac{1}{n_c}\sum_{i : y_i = c}
                 -\log\operatorname{softmax}(J V_i)_{c},

    the mean over the ``K`` occurring classes of the per-class mean KL
    divergence (:class:`assignflow.KLLoss` with
    ``sample_weight = balanced_sample_weight(labels)``). Useful for
    class-imbalanced labelings, e.g. thin boundary lines against a large
    background, where the plain mean is dominated by the majority class.

    Parameters
    ----------
    labels : array of int, shape (I,)
        Ground-truth label of every node (images: flattened row by row).
    n_labels : int, optional
        Number of labels ``J`` of the flows the loss is used with; when given,
        labels must lie in ``[0, n_labels)`` and :meth:`check` also requires
        ``J == n_labels``.

    Attributes
    ----------
    sample_weight : ndarray, shape (I,)
        The balancing weights.

    Notes
    -----
    The loss interface: a data term defines :meth:`data_value` and
    :meth:`data_gradient` of the LAF's final tangent vector ``V`` (shape
    ``(I, J)``; the assignment is ``W = softmax(J V)`` row by row), and
    :meth:`check` rejects flows it does not fit. The ``labels`` attribute lets
    the learning report the fraction of wrongly labeled nodes.

    Examples
    --------
    >>> loss = BalancedKLLoss([0, 0, 0, 1])
    >>> loss.sample_weight.tolist()
    [0.6666666666666666, 0.6666666666666666, 0.6666666666666666, 2.0]
    """

    labels: np.ndarray = attrs.field(converter=_labels)
    n_labels: int | None = attrs.field(default=None, validator=_n_labels)

    @property
    def sample_weight(self) -> np.ndarray:
        """The inverse class-frequency weights of :attr:`labels`."""
        return balanced_sample_weight(self.labels)

    def _kl(self) -> af.KLLoss:
        return af.KLLoss(self.labels, sample_weight=self.sample_weight)

    def __repr__(self) -> str:
        k = int(np.count_nonzero(np.bincount(self.labels)))
        return f"BalancedKLLoss(n_nodes={self.labels.size}, n_classes={k})"

    def data_value(self, V: np.ndarray) -> float:
        """:math:`f_L(V)`.

        Parameters
        ----------
        V : ndarray, shape (I, J)
            The LAF's final tangent vector.

        Returns
        -------
        float
            The class-balanced mean KL divergence.
        """
        return self._kl().data_value(V)

    def data_gradient(self, V: np.ndarray) -> np.ndarray:
        r""":math:`\partial f_L/\partial V = J\,w_i(\operatorname{softmax}(JV_i) - e_{y_i})`.

        Parameters
        ----------
        V : ndarray, shape (I, J)
            The LAF's final tangent vector.

        Returns
        -------
        ndarray, shape (I, J)
            The gradient (``w`` the normalised balancing weights).
        """
        return self._kl().data_gradient(V)

    def check(self, flow: Any) -> None:
        """Raise ``ValueError`` if the labels do not fit ``flow``.

        Parameters
        ----------
        flow : assignflow.LinearizedAssignmentFlow
            The flow the loss is used with.
        """
        self._kl().check(flow)
        if self.n_labels is not None and flow.shape[1] != self.n_labels:
            raise ValueError(
                f"the loss was built for n_labels={self.n_labels}, the flow has {flow.shape[1]}"
            )
