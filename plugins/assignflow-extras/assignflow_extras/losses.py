"""A class-balanced KL data term."""

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

    Returns
    -------
    ndarray, shape (I,)
    """
    y = np.asarray(labels, dtype=np.int64).ravel()
    counts = np.bincount(y)
    n_classes = int(np.count_nonzero(counts))
    return y.size / (n_classes * counts[y].astype(float))


@attrs.frozen(eq=False, init=False, repr=False)
class BalancedKLLoss(af.KLLoss):
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
        Ground-truth label of every node.
    n_labels : int, optional
        Number of labels ``J`` of the flows the loss is used with; when given,
        labels must lie in ``[0, n_labels)`` and :meth:`check` also requires
        ``J == n_labels``.

    Attributes
    ----------
    sample_weight : ndarray, shape (I,)
        The balancing weights (read-only).

    Examples
    --------
    >>> loss = BalancedKLLoss([0, 0, 0, 1])
    >>> loss.sample_weight.tolist()
    [0.6666666666666666, 0.6666666666666666, 0.6666666666666666, 2.0]
    """

    n_labels: int | None = attrs.field(default=None)

    def __init__(self, labels: Any, n_labels: int | None = None) -> None:
        y = af.KLLoss(labels).labels  # KLLoss's validation and conversion
        if n_labels is not None:
            if isinstance(n_labels, bool) or not isinstance(n_labels, (int, np.integer)):
                raise TypeError(f"n_labels must be an int, got {type(n_labels).__name__}")
            n_labels = int(n_labels)
            if n_labels < 1:
                raise ValueError(f"n_labels must be >= 1, got {n_labels}")
            if y.max() >= n_labels:
                raise ValueError(f"labels must lie in [0, {n_labels}), got {y.max()}")
        self.__attrs_init__(labels=y, sample_weight=balanced_sample_weight(y), n_labels=n_labels)

    def __repr__(self) -> str:
        k = int(np.count_nonzero(np.bincount(self.labels)))
        return f"BalancedKLLoss(n_nodes={self.labels.size}, n_classes={k})"

    def check(self, flow: Any) -> None:
        """Raise ``ValueError`` if the labels do not fit ``flow``."""
        super().check(flow)
        if self.n_labels is not None and flow.shape[1] != self.n_labels:
            raise ValueError(
                f"the loss was built for n_labels={self.n_labels}, the flow has {flow.shape[1]}"
            )
