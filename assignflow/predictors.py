r"""Weight predictors: the weights :math:`\Omega` as a differentiable function of features.

Learned weights depend on the data they were learned on. To label *unseen* data, the
weights are predicted from features of the data itself by a predictor with
parameters :math:`\theta`, and :math:`\theta` is trained through the closed-form
gradient :math:`\partial\mathcal{L}/\partial\omega` (chain rule through
:meth:`Predictor.vjp`). Every predictor is a frozen value object registered in
``af.registry.predictors`` (third-party packages add more through the entry-point
group ``assignflow.predictors``) with one interface:

``predict_weights(graph, features) -> Weights``
    :math:`\hat\Omega(\theta; f)` on the graph from per-node features ``(I, d)``.
``vjp(graph, features, grad_weights) -> dict``
    :math:`\partial\mathcal{L}/\partial\theta` from :math:`\partial\mathcal{L}/\partial\omega`
    (one array per entry of :meth:`params`).
``feature_vjp(graph, features, grad_weights) -> ndarray (I, d)``
    :math:`\partial\mathcal{L}/\partial f` (used when the features depend on earlier
    layers of a deep flow; treating them as constants instead is a documented
    stop-gradient option).
``params() -> dict`` / ``with_params(params) -> Predictor``
    The trainable parameters, and the same predictor with new ones.

Two predictors are built in:

:class:`EdgePredictor` (``"edge"``)
    A log-linear model of the edge weights: for every edge :math:`(i, k)`
    :math:`z_{ik} = \beta_{o(ik)} - \sum_f \theta_f\,\phi_{ik,f}` with feature
    differences :math:`\phi_{ik,f} = \sum_{c\in g_f}(f_{ic} - f_{kc})^2 / s_f` over
    groups :math:`g_f` of feature channels (e.g. an image smoothed at several
    scales, and the previous layer's assignment), a bias per window offset
    :math:`o(ik)` (self / other on general graphs) and fixed scales :math:`s_f`;
    :math:`\hat\Omega_i = \operatorname{softmax}_{k\in\mathcal{N}_i}(z_{ik})`. A
    learned, multi-scale bilateral filter; any graph.
:class:`WeightPredictor` (``"prototype"``)
    The paper's predictor (Sect. 4.4): :math:`N` feature prototypes :math:`p_j`,
    tangent vectors :math:`\nu_j` over the window and a scale :math:`\sigma`,
    :math:`s_{ij} = e^{-\sigma\|f_i - p_j\|}`, :math:`\hat\Omega_i =
    \exp_{\mathbb{1}}(\sum_j (s_{ij}/\sum_l s_{il})\nu_j)`; grids only.

Both evaluate in row chunks in the precision of the features (never a dense
``(pixels × prototypes)`` or ``(edges × features)`` array of a whole large image at
once, beyond the ``nnz`` output values).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import attrs
import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression

from . import persistence, registry
from ._simplex import softmax
from ._validation import (
    as_float_array,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
)
from .features import window_features
from .graphs import Graph, GridGraph
from .weights import Weights

__all__ = ["EdgePredictor", "Predictor", "WeightPredictor", "edge_offset_classes"]

#: Edges (or pixels) per chunk of the chunked evaluation.
_CHUNK = 1 << 18
#: EdgePredictor.initialize scales a feature by its median difference unless the median
#: is below this fraction of the mean difference (then by the mean): a median this far
#: below the mean is rounding-level (seen: 2e-25 for the assignment of a nearly uniform
#: first layer), while a feature that is merely sparse (the assignment of a saturated
#: layer: 1e-5) keeps its median
MIN_MEDIAN_TO_MEAN = 1e-12


def _row_chunks(graph: Graph, rows_per_chunk: int):
    """``(a, c, ea, ec)``: rows ``a:c`` and their edges ``ea:ec`` in CSR order."""
    n = graph.n_nodes
    for a in range(0, n, rows_per_chunk):
        c = min(n, a + rows_per_chunk)
        yield a, c, int(graph.indptr[a]), int(graph.indptr[c])


def _segment_softmax(z: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Softmax of ``z`` over each CSR row segment (``indptr`` relative to ``z``)."""
    deg = np.diff(indptr)
    zmax = np.maximum.reduceat(z, indptr[:-1])
    e = np.exp(z - np.repeat(zmax, deg))
    # a spread beyond ~745 underflows: weights stay strictly positive
    np.maximum(e, np.finfo(np.float64).tiny, out=e)
    e /= np.repeat(np.add.reduceat(e, indptr[:-1]), deg)
    return e


def _segment_softmax_vjp(om: np.ndarray, g: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """``∂L/∂z = ω ⊙ (g − <ω, g>)`` per row segment."""
    wg = om * g
    return wg - om * np.repeat(np.add.reduceat(wg, indptr[:-1]), np.diff(indptr))


def edge_offset_classes(graph: Graph) -> tuple[np.ndarray, int]:
    """A class per stored edge for per-offset biases: ``(classes (nnz,), n_classes)``.

    On grids the class is the window offset (``K`` classes); on other graphs it is
    self-loop (0) or neighbour (1).
    """
    if isinstance(graph, GridGraph):
        return np.nonzero(graph.valid)[1].astype(np.int64), graph.window_size
    cls = np.ones(graph.nnz, dtype=np.int64)
    cls[graph.self_loop_positions] = 0
    return cls, 2


class Predictor(ABC):
    """Base of the weight predictors; see the module documentation for the interface."""

    @abstractmethod
    def predict_weights(self, graph: Graph, features: Any) -> Weights:
        """The predicted weights :math:`\\hat\\Omega` on ``graph``.

        Parameters
        ----------
        graph : Graph
            The neighbourhoods :math:`\\mathcal{N}_i` of the weights.
        features : array-like, shape (n_nodes, d)
            One feature vector :math:`f_i` per node.

        Returns
        -------
        Weights
            :math:`\\hat\\Omega(\\theta; f)` on ``graph``: positive, rows summing to 1.
        """

    @abstractmethod
    def vjp(self, graph: Graph, features: Any, grad_weights: Any) -> dict[str, np.ndarray]:
        """Parameter gradients, keyed like :meth:`params`, from the weight gradient.

        Parameters
        ----------
        graph : Graph
            The graph of :meth:`predict_weights`.
        features : array-like, shape (n_nodes, d)
            The features of :meth:`predict_weights`.
        grad_weights : array-like, shape (graph.nnz,)
            :math:`\\partial\\mathcal{L}/\\partial\\omega`, aligned with ``graph.indices``
            (e.g. ``GradientResult.gradient``).

        Returns
        -------
        dict of str to ndarray
            :math:`\\partial\\mathcal{L}/\\partial\\theta`, one array per entry of
            :meth:`params`, of the same shape.
        """

    @abstractmethod
    def feature_vjp(self, graph: Graph, features: Any, grad_weights: Any) -> np.ndarray:
        """:math:`\\partial\\mathcal{L}/\\partial f` ``(I, d)``.

        Parameters
        ----------
        graph : Graph
            The graph of :meth:`predict_weights`.
        features : array-like, shape (n_nodes, d)
            The features of :meth:`predict_weights`.
        grad_weights : array-like, shape (graph.nnz,)
            :math:`\\partial\\mathcal{L}/\\partial\\omega`, aligned with ``graph.indices``.

        Returns
        -------
        ndarray, shape (n_nodes, d)
            :math:`\\partial\\mathcal{L}/\\partial f`, the pull-back to the features.
        """

    def vjp_both(
        self, graph: Graph, features: Any, grad_weights: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """:meth:`vjp` and :meth:`feature_vjp` together (subclasses may share the work).

        Parameters
        ----------
        graph : Graph
            The graph of :meth:`predict_weights`.
        features : array-like, shape (n_nodes, d)
            The features of :meth:`predict_weights`.
        grad_weights : array-like, shape (graph.nnz,)
            :math:`\\partial\\mathcal{L}/\\partial\\omega`, aligned with ``graph.indices``.

        Returns
        -------
        param_grads : dict of str to ndarray
            As :meth:`vjp`.
        feature_grad : ndarray, shape (n_nodes, d)
            As :meth:`feature_vjp`.
        """
        return (
            self.vjp(graph, features, grad_weights),
            self.feature_vjp(graph, features, grad_weights),
        )

    @abstractmethod
    def params(self) -> dict[str, np.ndarray]:
        """The trainable parameters (a fresh dict of arrays).

        Returns
        -------
        dict of str to ndarray
            Copies of the parameters :math:`\\theta`: changing them does not change
            the predictor.
        """

    @abstractmethod
    def with_params(self, params: dict[str, Any]) -> Predictor:
        """The same predictor with other parameters.

        Parameters
        ----------
        params : dict of str to array-like
            New values, keyed like :meth:`params` (e.g. a training step's result).

        Returns
        -------
        Predictor
            A new predictor of the same kind; ``self`` is unchanged.
        """

    def _grad_arg(self, graph: Graph, grad_weights: Any) -> np.ndarray:
        g = as_float_array(grad_weights, "grad_weights")
        if g.shape != (graph.nnz,):
            raise ValueError(f"grad_weights must have shape ({graph.nnz},), got {g.shape}")
        return g


# --------------------------------------------------------------------------- edge predictor
def _groups(value: Any) -> tuple[tuple[int, int], ...]:
    try:
        out = tuple((int(a), int(b)) for a, b in value)
    except (TypeError, ValueError):
        raise TypeError(
            f"groups must be a sequence of (start, stop) column ranges, got {value!r}"
        ) from None
    if not out:
        raise ValueError("groups must hold at least one (start, stop) column range")
    for a, b in out:
        if not 0 <= a < b:
            raise ValueError(f"groups must hold ranges 0 <= start < stop, got ({a}, {b})")
    return out


def _any_matrix(name: str):
    def convert(x: Any) -> np.ndarray:
        return as_float_array(x, name, ndim=2, copy=True)

    return convert


def _vector(name: str):
    def convert(x: Any) -> np.ndarray:
        return as_float_array(x, name, ndim=1, copy=True)

    return convert


@registry.predictors.register("edge")
@attrs.frozen(eq=False)
class EdgePredictor(Predictor):
    r"""Edge weights from feature differences: a learned, multi-scale bilateral filter.

    .. math::
        z_{ik} = \beta_{o(ik)} - \sum_f \theta_f\,\phi_{ik,f}
                 + w_2^\top\tanh\big(W_1\log(1 + \phi_{ik}) + b_1\big),\qquad
        \phi_{ik,f} = \frac{1}{s_f}\sum_{c\in g_f}(f_{ic} - f_{kc})^2,\qquad
        \hat\Omega_i = \operatorname{softmax}_{k\in\mathcal{N}_i}(z_{ik}):

    a log-linear model of the edge features, plus (with ``hidden`` units) a small
    multilayer perceptron on them that can express interactions such as "a large
    difference of single pixels but a small one of the smoothed image is noise".

    Parameters
    ----------
    groups : sequence of (start, stop)
        Column ranges of the node features, one per edge feature :math:`\phi_f`.
    theta : array (n_groups,)
        Weights :math:`\theta_f` of the edge features (positive: similar
        neighbours get more weight).
    bias : array (n_classes,)
        :math:`\beta_o` per edge class (:func:`edge_offset_classes`: the window
        offset on grids, self/other elsewhere).
    scale : array (n_groups,)
        Fixed scales :math:`s_f > 0` of the edge features (not trained; set by
        :meth:`initialize` to the median feature difference).
    W1 : array (hidden, n_groups), optional
        First layer of the perceptron (none by default: the log-linear model).
    b1 : array (hidden,), optional
        Its biases.
    w2 : array (hidden,), optional
        Output weights of the perceptron.

    Examples
    --------
    >>> import assignflow as af
    >>> g = af.GridGraph((4, 4))
    >>> f = np.random.default_rng(0).normal(size=(16, 2))
    >>> p = af.EdgePredictor(groups=[(0, 2)], theta=[1.0], bias=np.zeros(9), scale=[1.0])
    >>> p.predict_weights(g, f).values.shape == (g.nnz,)
    True
    """

    groups: tuple[tuple[int, int], ...] = attrs.field(converter=_groups)
    theta: np.ndarray = attrs.field(converter=_vector("theta"))
    bias: np.ndarray = attrs.field(converter=_vector("bias"))
    scale: np.ndarray = attrs.field(converter=_vector("scale"))
    W1: np.ndarray = attrs.field(factory=lambda: np.zeros((0, 0)), converter=_any_matrix("W1"))
    b1: np.ndarray = attrs.field(factory=lambda: np.zeros(0), converter=_vector("b1"))
    w2: np.ndarray = attrs.field(factory=lambda: np.zeros(0), converter=_vector("w2"))

    def __attrs_post_init__(self) -> None:
        F = len(self.groups)
        if self.theta.shape != (F,) or self.scale.shape != (F,):
            raise ValueError(
                f"theta and scale must have one entry per group ({F}), got {self.theta.shape} "
                f"and {self.scale.shape}"
            )
        if np.any(self.scale <= 0):
            raise ValueError("scale must be > 0")
        if self.bias.size < 1:
            raise ValueError("bias must hold at least one edge class")
        H = self.b1.size
        if (H and self.W1.shape != (H, F)) or self.w2.shape != (H,):
            raise ValueError(
                f"W1, b1, w2 must have shapes (hidden, {F}), (hidden,), (hidden,); got "
                f"{self.W1.shape}, {self.b1.shape}, {self.w2.shape}"
            )
        if not H:
            object.__setattr__(self, "W1", np.zeros((0, F)))
        for a in (self.theta, self.bias, self.scale, self.W1, self.b1, self.w2):
            a.flags.writeable = False

    def __repr__(self) -> str:
        return (
            f"EdgePredictor(n_features={len(self.groups)}, n_classes={self.bias.size}, "
            f"hidden={self.hidden})"
        )

    @property
    def hidden(self) -> int:
        """Hidden units of the perceptron (0: the log-linear model)."""
        return self.b1.size

    @property
    def n_features_in(self) -> int:
        """Columns of the node features the groups read."""
        return max(b for _, b in self.groups)

    # ------------------------------------------------------------------ helpers
    def _check(self, graph: Any, features: Any) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(graph, Graph):
            raise TypeError(f"graph must be an assignflow Graph, got {type(graph).__name__}")
        dtype = np.float32 if getattr(features, "dtype", None) == np.float32 else np.float64
        f = as_float_array(features, "features", ndim=2, dtype=dtype)
        if f.shape[0] != graph.n_nodes or f.shape[1] < self.n_features_in:
            raise ValueError(
                f"features must have shape ({graph.n_nodes}, >= {self.n_features_in}) for this "
                f"graph and these groups, got {f.shape}"
            )
        if isinstance(graph, GridGraph):
            # the classes of a grid's edges are cut from its window mask chunk by chunk
            cls, n_cls = None, graph.window_size
        else:
            cls, n_cls = edge_offset_classes(graph)
        if n_cls != self.bias.size:
            raise ValueError(
                f"bias has {self.bias.size} entries but the graph has {n_cls} edge classes "
                "(window offsets on grids, self/other elsewhere)"
            )
        return f, cls

    def _phi(self, f: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Edge features ``(E, n_groups)`` for the given edges (float64)."""
        out = np.empty((rows.size, len(self.groups)))
        for j, (a, b) in enumerate(self.groups):
            d = f[rows, a:b] - f[cols, a:b]
            out[:, j] = np.einsum("ij,ij->i", d, d, dtype=np.float64)
        out /= self.scale
        return out

    def _chunks(self, graph: Graph):
        rows_per = max(1, _CHUNK // max(1, int(graph.degrees.max(initial=1))))
        return _row_chunks(graph, rows_per)

    def _phi_grid(self, graph: GridGraph, f: np.ndarray, a: int, c: int) -> np.ndarray:
        """Edge features of rows ``a:c`` of a grid by shifted differences (no gathers)."""
        n = graph.n_nodes
        K = graph.window_size
        planes = np.zeros((c - a, K, len(self.groups)))
        for o, off in enumerate(graph.flat_offsets):
            lo, hi = max(a, -off), min(c, n - off)
            if hi <= lo:
                continue
            # wrapped pairs at the left/right border are dropped by the valid mask
            d = f[lo:hi] - f[lo + off : hi + off]
            for j, (g0, g1) in enumerate(self.groups):
                dj = d[:, g0:g1]
                planes[lo - a : hi - a, o, j] = np.einsum("ij,ij->i", dj, dj, dtype=np.float64)
        out = planes[graph.valid[a:c]]
        out /= self.scale
        return out

    @staticmethod
    def _classes(graph, cls, a, c, ea, ec) -> np.ndarray:
        """Edge classes of rows ``a:c`` (edges ``ea:ec``); no ``nnz``-sized array on grids."""
        if cls is None:
            return np.nonzero(graph.valid[a:c])[1]
        return cls[ea:ec]

    def _weights_chunk(self, graph, f, cls, a, c, ea, ec):
        if isinstance(graph, GridGraph):
            phi = self._phi_grid(graph, f, a, c)
        else:
            phi = self._phi(f, graph.rows[ea:ec], graph.indices[ea:ec])
        z = self.bias[self._classes(graph, cls, a, c, ea, ec)] - phi @ self.theta
        u = None
        if self.hidden:
            psi = np.log1p(phi)
            u = np.tanh(psi @ self.W1.T + self.b1)
            z += u @ self.w2
        return _segment_softmax(z, graph.indptr[a : c + 1] - ea), phi, u

    # ------------------------------------------------------------------ interface
    def predict_weights(self, graph: Graph, features: Any, *, cache: dict | None = None) -> Weights:
        """:math:`\\hat\\Omega` on ``graph`` from node features ``(I, d)``.

        Parameters
        ----------
        graph : Graph
            Any graph; its edge classes (:func:`edge_offset_classes`) must number
            ``bias.size``.
        features : array-like, shape (n_nodes, d)
            Node features with ``d >= n_features_in`` columns (float32 features are
            not converted to float64).
        cache : dict, optional
            Filled with the per-edge intermediates so that a following
            :meth:`vjp`/:meth:`vjp_both` with the same graph, features and ``cache``
            does not recompute them (training; ``nnz · (n_groups + hidden + 1)``
            floats).

        Returns
        -------
        Weights
            :math:`\\hat\\Omega_i = \\operatorname{softmax}_{k\\in\\mathcal{N}_i}(z_{ik})`,
            float64 values aligned with ``graph.indices``.
        """
        f, cls = self._check(graph, features)
        vals = np.empty(graph.nnz)
        chunks = []
        for a, c, ea, ec in self._chunks(graph):
            out = self._weights_chunk(graph, f, cls, a, c, ea, ec)
            vals[ea:ec] = out[0]
            if cache is not None:
                chunks.append(out)
        if cache is not None:
            cache["chunks"] = chunks
        return Weights._unchecked(graph, vals)

    def _backward(self, graph, features, grad_weights, want_features: bool, cache=None):
        f, cls = self._check(graph, features)
        stored = iter(cache["chunks"]) if cache and "chunks" in cache else None
        g = self._grad_arg(graph, grad_weights)
        F, H = len(self.groups), self.hidden
        grads = {
            "theta": np.zeros(F),
            "bias": np.zeros(self.bias.size),
            "W1": np.zeros((H, F)),
            "b1": np.zeros(H),
            "w2": np.zeros(H),
        }
        # ∂L/∂φ per edge and feature (for the feature pull-back)
        dphi = np.empty((graph.nnz, F)) if want_features else None
        for a, c, ea, ec in self._chunks(graph):
            if stored is not None:
                om, phi, u = next(stored)
            else:
                om, phi, u = self._weights_chunk(graph, f, cls, a, c, ea, ec)
            gz = _segment_softmax_vjp(om, g[ea:ec], graph.indptr[a : c + 1] - ea)
            grads["theta"] -= gz @ phi
            grads["bias"] += np.bincount(
                self._classes(graph, cls, a, c, ea, ec), weights=gz, minlength=self.bias.size
            )
            d = -np.outer(gz, self.theta) if dphi is not None else None
            if H:
                grads["w2"] += gz @ u
                ga = (gz[:, None] * self.w2) * (1.0 - u * u)  # ∂L/∂(W1 ψ + b1)
                psi = np.log1p(phi)
                grads["W1"] += ga.T @ psi
                grads["b1"] += ga.sum(axis=0)
                if d is not None:
                    d += (ga @ self.W1) / (1.0 + phi)
            if dphi is not None:
                dphi[ea:ec] = d
        return f, grads, dphi

    def vjp(
        self, graph: Graph, features: Any, grad_weights: Any, *, cache: dict | None = None
    ) -> dict[str, np.ndarray]:
        """Gradients keyed like :meth:`params` (``theta``, ``bias``, and ``W1, b1, w2``).

        Parameters
        ----------
        graph : Graph
            The graph of :meth:`predict_weights`.
        features : array-like, shape (n_nodes, d)
            The features of :meth:`predict_weights`.
        grad_weights : array-like, shape (graph.nnz,)
            :math:`\\partial\\mathcal{L}/\\partial\\omega`, aligned with ``graph.indices``.
        cache : dict, optional
            The ``cache`` of a :meth:`predict_weights` of this predictor with the same
            graph and features (its intermediates are reused).

        Returns
        -------
        dict of str to ndarray
            ``"theta"`` ``(n_groups,)`` and ``"bias"`` ``(n_classes,)``, and with
            ``hidden`` units ``"W1"`` ``(hidden, n_groups)``, ``"b1"`` and ``"w2"``
            ``(hidden,)``.
        """
        grads = self._backward(graph, features, grad_weights, False, cache)[1]
        return grads if self.hidden else {"theta": grads["theta"], "bias": grads["bias"]}

    def feature_vjp(self, graph: Graph, features: Any, grad_weights: Any) -> np.ndarray:
        r""":math:`\partial\mathcal{L}/\partial f` ``(I, d)`` through the feature differences.

        With :math:`c_{ik,f} = \partial\mathcal{L}/\partial\phi_{ik,f}` per edge, the
        pull-back of group :math:`g_f` is :math:`(2/s_f)\,L_{c_f} f_{g_f}`, where
        :math:`L_c = \operatorname{diag}((C + C^\top)\mathbb{1}) - (C + C^\top)` is the
        Laplacian of the symmetrised edge matrix :math:`C` of the :math:`c_{ik,f}`.

        Parameters
        ----------
        graph : Graph
            The graph of :meth:`predict_weights`.
        features : array-like, shape (n_nodes, d)
            The features of :meth:`predict_weights`.
        grad_weights : array-like, shape (graph.nnz,)
            :math:`\partial\mathcal{L}/\partial\omega`, aligned with ``graph.indices``.

        Returns
        -------
        ndarray, shape (n_nodes, d)
            :math:`\partial\mathcal{L}/\partial f` (float64); zero in the columns that
            no group reads.
        """
        return self._feature_pullback(graph, *self._backward(graph, features, grad_weights, True))

    def vjp_both(self, graph, features, grad_weights, *, cache=None):
        """Parameter and feature gradients from one pass over the edges.

        Parameters
        ----------
        graph : Graph
            The graph of :meth:`predict_weights`.
        features : array-like, shape (n_nodes, d)
            The features of :meth:`predict_weights`.
        grad_weights : array-like, shape (graph.nnz,)
            :math:`\\partial\\mathcal{L}/\\partial\\omega`, aligned with ``graph.indices``.
        cache : dict, optional
            As for :meth:`vjp`.

        Returns
        -------
        param_grads : dict of str to ndarray
            As :meth:`vjp`.
        feature_grad : ndarray, shape (n_nodes, d)
            As :meth:`feature_vjp`.
        """
        f, grads, dphi = self._backward(graph, features, grad_weights, True, cache)
        if not self.hidden:
            grads = {"theta": grads["theta"], "bias": grads["bias"]}
        return grads, self._feature_pullback(graph, f, grads, dphi)

    def _feature_pullback(self, graph, f, grads, dphi) -> np.ndarray:
        n = graph.n_nodes
        out = np.zeros(f.shape)
        for j, (a, b) in enumerate(self.groups):
            C = sp.csr_matrix((dphi[:, j], graph.indices, graph.indptr), shape=(n, n))
            S = (C + C.T).tocsr()
            deg = np.asarray(S.sum(axis=1)).ravel()
            block = f[:, a:b].astype(np.float64)
            out[:, a:b] += (2.0 / self.scale[j]) * (deg[:, None] * block - S @ block)
        return out

    def params(self) -> dict[str, np.ndarray]:
        """The trainable parameters: :math:`\\theta`, the biases and the perceptron's.

        Returns
        -------
        dict of str to ndarray
            Copies of ``theta`` and ``bias``, and with ``hidden`` units of ``W1``,
            ``b1`` and ``w2`` (``scale`` and ``groups`` are fixed, not trained).
        """
        out = {"theta": np.array(self.theta), "bias": np.array(self.bias)}
        if self.hidden:
            out.update(W1=np.array(self.W1), b1=np.array(self.b1), w2=np.array(self.w2))
        return out

    def with_params(self, params: dict[str, Any]) -> EdgePredictor:
        """The same predictor with other parameters.

        Parameters
        ----------
        params : dict of str to array-like
            Any of ``"theta"``, ``"bias"``, ``"W1"``, ``"b1"``, ``"w2"``; missing
            entries keep their values, other keys are ignored.

        Returns
        -------
        EdgePredictor
            A new predictor (validated like the constructor's arguments).
        """
        return attrs.evolve(
            self, **{k: params[k] for k in ("theta", "bias", "W1", "b1", "w2") if k in params}
        )

    # ------------------------------------------------------------------ init
    @classmethod
    def initialize(
        cls,
        graphs: list[Graph],
        features: list[np.ndarray],
        labels: list[np.ndarray],
        groups: Any,
        *,
        hidden: int = 0,
        max_edges: int = 50_000,
        random_state: Any = None,
    ) -> EdgePredictor:
        r"""Initialise from training data: scales by medians, :math:`\theta` by logistic regression.

        The scales :math:`s_f` are the median feature differences over the
        non-self edges (the mean where the median is below ``MIN_MEDIAN_TO_MEAN``
        = 1e-12 times it: a feature constant to rounding on most edges);
        :math:`\theta` comes from a logistic regression of "same label" on the scaled
        differences (so neighbours across a label boundary get little weight from the
        start), and the biases start at zero.

        Parameters
        ----------
        graphs, features, labels : lists
            One graph, node-feature array ``(I, d)`` and label vector ``(I,)`` per
            training example.
        groups : sequence of (start, stop)
            Column ranges of the features, one per edge feature.
        hidden : int, default=0
            Hidden units of the perceptron; it starts at zero output (random first
            layer, ``w2 = 0``), i.e. at the log-linear model.
        max_edges : int, default=50000
            Edges sampled for the medians and the regression.
        random_state : int, Generator or None
            Seeds the edge sample.

        Returns
        -------
        EdgePredictor
        """
        groups = _groups(groups)
        max_edges = check_positive_int(max_edges, "max_edges")
        hidden = check_positive_int(hidden, "hidden", minimum=0)
        if hidden > 256:
            raise ValueError(f"hidden must be <= 256, got {hidden}")
        if not graphs or len(graphs) != len(features) or len(graphs) != len(labels):
            raise ValueError("graphs, features and labels must be lists of the same length >= 1")
        rng = np.random.default_rng(random_state)
        probe = cls(groups, np.zeros(len(groups)), np.zeros(1), np.ones(len(groups)))
        phis, same = [], []
        per = max(1, max_edges // len(graphs))
        for g, f, y in zip(graphs, features, labels, strict=True):
            f = as_float_array(f, "features", ndim=2)
            y = np.asarray(y).ravel()
            off = np.flatnonzero(g.rows != g.indices)
            if off.size == 0:
                continue
            pick = rng.choice(off, size=min(per, off.size), replace=False)
            phis.append(probe._phi(f, g.rows[pick], g.indices[pick]))
            same.append(y[g.rows[pick]] == y[g.indices[pick]])
        n_cls = edge_offset_classes(graphs[0])[1]
        F = len(groups)
        mlp = {
            "W1": rng.normal(scale=1.0 / np.sqrt(F), size=(hidden, F)),
            "b1": rng.normal(scale=0.5, size=hidden),
            "w2": np.zeros(hidden),
        }
        if not phis:
            return cls(groups, np.ones(F), np.zeros(n_cls), np.ones(F), **mlp)
        phi = np.concatenate(phis)
        lab = np.concatenate(same)
        # the median, unless it is rounding-level against the mean: a feature constant on
        # most edges (e.g. the assignment of a nearly uniform first layer) would otherwise
        # be divided by a number near 0, and a step of theta would move the few large
        # differences' logits by ~1e20 (the loss jumps; the training diverged)
        med, mean = np.median(phi, axis=0), phi.mean(axis=0)
        scale = np.where(med >= MIN_MEDIAN_TO_MEAN * mean, med, mean)
        scale = np.where(scale > 0, scale, 1e-12)
        theta = np.ones(len(groups))
        if 0 < lab.sum() < lab.size:
            lr = LogisticRegression(C=1.0, max_iter=1000).fit(phi / scale, lab)
            theta = np.maximum(-lr.coef_[0], 0.0)
            if not np.any(theta > 0):
                theta = np.ones(len(groups))
        return cls(groups, theta, np.zeros(n_cls), scale, **mlp)


# --------------------------------------------------------------------------- prototype predictor
def _matrix(name: str):
    def convert(x: Any) -> np.ndarray:
        if np.iscomplexobj(x):
            raise TypeError(f"{name} must be real, got a complex array")
        return as_float_array(x, name, ndim=2, copy=True)

    return convert


@persistence.persistable("WeightPredictor")
@registry.predictors.register("prototype")
@attrs.frozen
class WeightPredictor(Predictor):
    r"""The weight predictor :math:`\hat\Omega(\nu, p, \sigma)` of the paper's Sect. 4.4.

    .. math::
        s_{ij} = e^{-\sigma\|f_i - p_j\|},\qquad
        \hat\Omega_i = \exp_{\mathbb{1}}\Big(\sum_j \frac{s_{ij}}{\sum_l s_{il}}\,\nu_j\Big),

    a softmax over the neighbourhood (over the entries inside the image at the
    border). Grids only.

    Parameters
    ----------
    prototypes : array (N, d)
        Feature prototypes :math:`p_j` (``d`` = window size × channels).
    nu : array (N, K)
        Tangent vectors :math:`\nu_j` over the ``K = (2r+1)²`` window offsets
        (projected to zero mean).
    sigma : float
        Scale :math:`\sigma > 0` of the feature similarities.
    """

    prototypes: np.ndarray = attrs.field(
        converter=_matrix("prototypes"), eq=attrs.cmp_using(np.array_equal)
    )
    nu: np.ndarray = attrs.field(converter=_matrix("nu"), eq=attrs.cmp_using(np.array_equal))
    sigma: float = attrs.field(default=1.0, converter=lambda x: check_positive_float(x, "sigma"))

    def __attrs_post_init__(self) -> None:
        if self.prototypes.shape[0] < 1 or self.prototypes.shape[1] < 1:
            raise ValueError(
                f"prototypes must have shape (N, d) with N, d >= 1, got {self.prototypes.shape}"
            )
        if self.nu.shape[1] < 1:
            raise ValueError(f"nu must have at least one column, got shape {self.nu.shape}")
        if self.nu.shape[0] != self.prototypes.shape[0]:
            raise ValueError(
                f"nu must have one row per prototype ({self.prototypes.shape[0]}), "
                f"got shape {self.nu.shape}"
            )
        mean = self.nu.mean(axis=1, keepdims=True)
        # project onto T0 only when needed, so that rebuilding a predictor from its
        # own (already centred) values reproduces it bit for bit
        if np.any(np.abs(mean) > 1e-12 * max(1.0, float(np.abs(self.nu).max(initial=0.0)))):
            object.__setattr__(self, "nu", self.nu - mean)
        for a in (self.prototypes, self.nu):
            a.flags.writeable = False

    @property
    def n_prototypes(self) -> int:
        """Number :math:`N` of prototypes."""
        return self.prototypes.shape[0]

    @property
    def window_size(self) -> int:
        """Number ``K`` of window offsets."""
        return self.nu.shape[1]

    # ------------------------------------------------------------------ forward
    def _check(self, graph: Any, features: Any) -> np.ndarray:
        if not isinstance(graph, GridGraph):
            raise TypeError(f"graph must be a GridGraph, got {type(graph).__name__}")
        if graph.window_size != self.window_size:
            raise ValueError(
                f"the graph's window has {graph.window_size} offsets but nu has "
                f"{self.window_size} columns"
            )
        dtype = np.float32 if getattr(features, "dtype", None) == np.float32 else np.float64
        f = as_float_array(features, "features", ndim=2, dtype=dtype)
        if f.shape != (graph.n_nodes, self.prototypes.shape[1]):
            raise ValueError(
                f"features must have shape ({graph.n_nodes}, {self.prototypes.shape[1]}), "
                f"got {f.shape}"
            )
        return f

    def _assignments(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances ``d_ij = ||f_i - p_j||`` and ``a_ij = softmax_j(-σ d_ij)`` of a chunk."""
        p = self.prototypes
        sq = (
            np.einsum("ij,ij->i", f, f, dtype=np.float64)[:, None]
            - 2.0 * (f @ p.T.astype(f.dtype)).astype(np.float64)
            + np.einsum("ij,ij->i", p, p)[None, :]
        )
        d = np.sqrt(np.maximum(sq, 0.0))
        return d, softmax(-self.sigma * d)

    def _pixel_chunks(self, n: int):
        step = max(1, _CHUNK // max(1, self.n_prototypes))
        for a in range(0, n, step):
            yield a, min(n, a + step)

    def _logit_patches(self, f: np.ndarray) -> np.ndarray:
        """``a @ ν`` per pixel ``(I, K)``, evaluated in pixel chunks."""
        out = np.empty((f.shape[0], self.window_size))
        for a, c in self._pixel_chunks(f.shape[0]):
            out[a:c] = self._assignments(f[a:c])[1] @ self.nu
        return out

    def predict_weights(self, graph: GridGraph, features: Any) -> Weights:
        r""":math:`\hat\Omega` on ``graph`` from per-pixel ``features`` ``(h·w, d)``.

        Parameters
        ----------
        graph : GridGraph
            A grid whose window has ``window_size`` offsets.
        features : array-like, shape (n_nodes, d)
            Per-pixel features, ``d`` the prototypes' dimension.

        Returns
        -------
        Weights
            :math:`\hat\Omega_i = \exp_{\mathbb{1}}(\sum_j (s_{ij}/\sum_l s_{il})\nu_j)`
            over the entries of each window inside the grid.
        """
        f = self._check(graph, features)
        z = self._logit_patches(f)[graph.valid]
        return Weights._unchecked(graph, _segment_softmax(z, graph.indptr))

    # ------------------------------------------------------------------ backward
    def _logit_grad(self, graph, f, grad_weights) -> np.ndarray:
        g = self._grad_arg(graph, grad_weights)
        z = self._logit_patches(f)[graph.valid]
        om = _segment_softmax(z, graph.indptr)
        gz = np.zeros((graph.n_nodes, graph.window_size))
        gz[graph.valid] = _segment_softmax_vjp(om, g, graph.indptr)
        return gz

    def _chunk_backward(self, f, gz, a, c):
        d, asg = self._assignments(f[a:c])
        cc = gz[a:c] @ self.nu.T  # ∂L/∂a_ij
        e = asg * (cc - np.einsum("ij,ij->i", asg, cc)[:, None])  # ∂L/∂(−σ d_ij)
        return d, asg, e

    def vjp(self, graph: GridGraph, features: Any, grad_weights: Any) -> dict[str, Any]:
        r"""Pull back :math:`\partial\mathcal{L}/\partial\omega` to the parameters.

        Parameters
        ----------
        graph : GridGraph
            The graph of :meth:`predict_weights`.
        features : array-like, shape (n_nodes, d)
            The features of :meth:`predict_weights`.
        grad_weights : array-like, shape (graph.nnz,)
            :math:`\partial\mathcal{L}/\partial\omega`, aligned with ``graph.indices``.

        Returns
        -------
        dict of str to ndarray or float
            The gradients ``"prototypes"`` ``(N, d)``, ``"nu"`` ``(N, K)`` (projected
            onto :math:`T_0`), ``"log_sigma"`` (0-d; these three are the keys of
            :meth:`params`) and ``"sigma"`` (float).
        """
        f = self._check(graph, features)
        gz = self._logit_grad(graph, f, grad_weights)
        grad_nu = np.zeros(self.nu.shape)
        grad_p = np.zeros(self.prototypes.shape)
        grad_sigma = 0.0
        for a, c in self._pixel_chunks(f.shape[0]):
            d, asg, e = self._chunk_backward(f, gz, a, c)
            grad_nu += asg.T @ gz[a:c]
            grad_sigma -= float(np.sum(e * d))
            # ∂L/∂p_j = −σ Σ_i e_ij (p_j − f_i)/d_ij
            coef = -self.sigma * e / np.maximum(d, 1e-300)
            grad_p += coef.sum(axis=0)[:, None] * self.prototypes - coef.T @ f[a:c]
        grad_nu -= grad_nu.mean(axis=1, keepdims=True)
        return {
            "prototypes": grad_p,
            "nu": grad_nu,
            "sigma": grad_sigma,
            "log_sigma": np.array(grad_sigma * self.sigma),
        }

    def feature_vjp(self, graph: GridGraph, features: Any, grad_weights: Any) -> np.ndarray:
        r""":math:`\partial\mathcal{L}/\partial f_i = -\sigma\sum_j e_{ij}(f_i - p_j)/d_{ij}`.

        Here :math:`d_{ij} = \|f_i - p_j\|` and :math:`e_{ij}` is the gradient with
        respect to :math:`-\sigma d_{ij}`.

        Parameters
        ----------
        graph : GridGraph
            The graph of :meth:`predict_weights`.
        features : array-like, shape (n_nodes, d)
            The features of :meth:`predict_weights`.
        grad_weights : array-like, shape (graph.nnz,)
            :math:`\partial\mathcal{L}/\partial\omega`, aligned with ``graph.indices``.

        Returns
        -------
        ndarray, shape (n_nodes, d)
            :math:`\partial\mathcal{L}/\partial f` (float64).
        """
        f = self._check(graph, features)
        gz = self._logit_grad(graph, f, grad_weights)
        out = np.empty(f.shape)
        for a, c in self._pixel_chunks(f.shape[0]):
            d, _, e = self._chunk_backward(f, gz, a, c)
            coef = -self.sigma * e / np.maximum(d, 1e-300)
            out[a:c] = coef.sum(axis=1)[:, None] * f[a:c] - coef @ self.prototypes
        return out

    def params(self) -> dict[str, np.ndarray]:
        r"""The trainable parameters :math:`p`, :math:`\nu` and :math:`\log\sigma`.

        Returns
        -------
        dict of str to ndarray
            Copies of ``"prototypes"`` ``(N, d)`` and ``"nu"`` ``(N, K)``, and
            ``"log_sigma"`` (0-d): :math:`\sigma` is trained in the log domain.
        """
        return {
            "prototypes": np.array(self.prototypes),
            "nu": np.array(self.nu),
            "log_sigma": np.array(np.log(self.sigma)),
        }

    def with_params(self, params: dict[str, Any]) -> WeightPredictor:
        r"""The same predictor with other parameters.

        Parameters
        ----------
        params : dict of str to array-like
            Any of ``"prototypes"``, ``"nu"`` and ``"log_sigma"``
            (:math:`\sigma = e^{\log\sigma}`); missing entries keep their values,
            other keys (also ``"sigma"``) are ignored.

        Returns
        -------
        WeightPredictor
            A new predictor (``nu`` projected to zero row means, as in the
            constructor).
        """
        sigma = float(np.exp(params["log_sigma"])) if "log_sigma" in params else self.sigma
        return WeightPredictor(
            params.get("prototypes", self.prototypes), params.get("nu", self.nu), sigma
        )

    # ------------------------------------------------------------------ init
    @classmethod
    def initialize_from_images(
        cls,
        feature_images: list[np.ndarray],
        label_images: list[np.ndarray],
        radius: int = 1,
        n_prototypes: int = 50,
        *,
        strength: float = 2.0,
        sigma: float = 1.0,
        random_state: Any = None,
        max_samples: int = 20000,
        features: Any = None,
    ) -> WeightPredictor:
        r"""Initialise from training images, following the paper's Sect. 4.4.

        Prototypes :math:`p_j` are k-means centres (scikit-learn) of the window
        features of the (noise-free) ``feature_images``; :math:`\nu_j` points
        towards the neighbours that share the label of the centre pixel, averaged
        over the pixels of cluster ``j``, scaled by ``strength``; :math:`\sigma`
        starts at ``sigma``.

        Parameters
        ----------
        feature_images : list of arrays (h, w[, c])
            Images whose window features are clustered.
        label_images : list of int arrays (h, w)
            Their labels.
        radius : int, default=1
            Window radius.
        n_prototypes : int, default=50
            Number :math:`N` of prototypes.
        strength : float, default=2.0
            Length of the initial :math:`\nu_j`.
        sigma : float, default=1.0
            Initial :math:`\sigma`.
        random_state : int, Generator or None
            Seeds the sample and k-means.
        max_samples : int, default=20000
            Pixels sampled for k-means.
        features : list of arrays (h·w, d), optional
            Replace the window features of each image (e.g.
            :func:`~assignflow.affinity_features`; ``feature_images`` then only
            provide the shapes).

        Returns
        -------
        WeightPredictor
        """
        radius = check_positive_int(radius, "radius", minimum=0)
        n_prototypes = check_positive_int(n_prototypes, "n_prototypes")
        max_samples = check_positive_int(max_samples, "max_samples")
        strength = check_nonnegative_float(strength, "strength")
        sigma = check_positive_float(sigma, "sigma")
        feature_images, label_images = list(feature_images), list(label_images)
        if not feature_images:
            raise ValueError("feature_images must contain at least one image")
        if len(label_images) != len(feature_images):
            raise ValueError(
                f"label_images must hold one label image per feature image "
                f"({len(feature_images)}), got {len(label_images)}"
            )
        rng = np.random.default_rng(random_state)
        feats, agree = [], []
        for k, (img, lab) in enumerate(zip(feature_images, label_images, strict=True)):
            lab = np.asarray(lab)
            grid = lab.shape
            if (
                not (1 <= lab.ndim <= np.ndim(img) <= lab.ndim + 1)
                or np.shape(img)[: lab.ndim] != grid
            ):
                raise ValueError(
                    f"label_images[{k}] must have the grid shape of feature_images[{k}] "
                    f"{np.shape(img)}, got {lab.shape}"
                )
            n_pix = int(np.prod(grid))
            if features is None:
                feats.append(window_features(img, radius, grid_ndim=lab.ndim))
            else:
                f = as_float_array(features[k], f"features[{k}]", ndim=2)
                if f.shape[0] != n_pix:
                    raise ValueError(
                        f"features[{k}] must have one row per pixel ({n_pix}), got {f.shape}"
                    )
                feats.append(f)
            g = GridGraph(grid, radius)
            y = lab.ravel()
            same = np.zeros((g.n_nodes, g.window_size))
            same[g.valid] = (y[g.rows] == y[g.indices]).astype(float)
            agree.append(same)
        F = np.concatenate(feats)
        Ag = np.concatenate(agree)
        n = F.shape[0]
        idx = rng.choice(n, size=min(n, max_samples), replace=False)
        k = min(n_prototypes, len(idx))
        km = KMeans(n_clusters=k, n_init=3, random_state=int(rng.integers(2**31 - 1))).fit(F[idx])
        nu = np.zeros((k, Ag.shape[1]))
        for j in range(k):
            members = idx[km.labels_ == j]
            if members.size:
                nu[j] = strength * Ag[members].mean(axis=0)
        return cls(km.cluster_centers_, nu, sigma)
