r"""Classifying tabular data (and labeling arbitrary graphs) with the linearized assignment flow.

:class:`AssignmentFlowClassifier` is a scikit-learn classifier. It labels query
points *transductively*: the query rows are attached to a k-nearest-neighbour (kNN)
graph of the training rows, and the linearized assignment flow (LAF, MATH.md §4)

.. math::
    \dot V = A(\Omega)V + B,\qquad V(0) = 0,\qquad
    A(\Omega)V = R_{S_0}(\Omega V),\quad B = \Pi_0 S_0 / J,\quad
    S_0 = \operatorname{softmax}(-\Omega D/\rho),

is solved on that graph up to time :math:`T`. The assignment
:math:`W(T) = \operatorname{Exp}_{\mathbb{1}_\mathcal{W}}(V(T)) =
\operatorname{softmax}(J\,V(T))` of the query nodes is returned by
``predict_proba``; ``predict`` rounds it by ``argmax``.

Algorithm
---------
``fit``
    1. Label prototypes :math:`l_j` = class means of the training rows, ``(J, d)``.
    2. Scale :math:`\rho` (if not given): the median distance of the training rows
       to their own class prototype.
    3. The symmetric kNN graph of the training rows (``Graph.knn``).
    4. With ``learn_weights=True``: the weights :math:`\Omega` of the training graph
       are learned by Riemannian gradient descent (MATH.md §5) on the KL loss
       between the LAF of the training rows — data term :math:`D_{ij} =
       \|x_i - l_j\|` — and their labels. From the learned weights, a per-node
       *trust* :math:`\tau_k = (\Omega^{*\top}\mathbb{1})_k /
       (\Omega_\text{unif}^\top\mathbb{1})_k` is derived: how much the neighbours of
       training node ``k`` rely on it after learning, relative to uniform weights
       (mislabeled or ambiguous rows lose trust).

``predict_proba(X)``
    The joint graph has the ``n`` training nodes and one node per query row.
    Training nodes keep the edges of the training graph (learned weights if any,
    else uniform). Every query node ``q`` is linked to *itself and its
    ``n_neighbors`` nearest training rows only* — a **directed** pattern: query
    nodes receive information from training nodes, but neither send it back nor
    talk to each other. The flow of the training nodes therefore does not depend
    on the queries, and each query's result depends only on the query itself:
    predictions are independent of which other rows are passed (subset and order
    invariant, as scikit-learn requires). Query weights are
    :math:`\omega_{qq} \propto 1`, :math:`\omega_{qk} \propto \tau_k` (uniform
    without learning).

    *Clamping* (as in label propagation): training nodes get the peaked data term
    :math:`D_{ij} = \kappa\rho\,(1 - [j = y_i])` with :math:`\kappa = 10`, so they
    act as sources of their known label; query nodes get their distances to the
    prototypes :math:`D_{qj} = \|x_q - l_j\|`. Hence
    :math:`S_{0,q}` combines a soft (trust-weighted) vote of the ``k`` nearest
    training labels with the query's own nearest-prototype evidence, and the flow
    adds the tangent vectors :math:`V_k(t)` that the training neighbours build up.

Cost
    ``fit``: one kNN search, :math:`O(n \log n \cdot d)`; with learning,
    ``max_iter`` gradient evaluations, each two Krylov runs on the training graph,
    :math:`O(m\,\mathrm{nnz}\,J)` with Krylov dimension :math:`m`.
    ``predict``: a kNN query of the new rows against the training rows and one
    LAF solve on ``n + n_queries`` nodes, :math:`O(m\,(\mathrm{nnz} +
    n_\text{queries}k)\,J)`.

References
----------
A. Zeilmann, S. Petra, C. Schnörr, *Learning Linearized Assignment Flows for Image
Labeling*, J. Math. Imaging Vis. 65 (2023). The closest cousin in scikit-learn is
:class:`sklearn.semi_supervised.LabelPropagation` (diffusion of clamped labels on
a kNN graph); here the diffusion is replaced by the (linearized) assignment flow on
the assignment manifold, which also uses each node's own data term.
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import persistence, registry
from ._validation import as_float_array, check_positive_float
from .flows import LinearizedAssignmentFlow
from .gradients import GradientEstimator
from .graphs import Graph
from .integrators import FlowResult, LinearIntegrator
from .losses import KLLoss
from .similarity import SimilarityOperator, distance_matrix
from .weights import Weights

__all__ = ["AssignmentFlowClassifier", "label_graph"]

#: Clamping strength :math:`\kappa`: training rows get distance ``κρ`` to the wrong labels.
_CLAMP = 10.0
#: Tolerance of the default Krylov integrator at prediction (predictions must not
#: depend on which other query rows are solved together, to well below 1e-7).
_PREDICT_TOL = 1e-12


def _resolve_integrator(integrator: Any) -> Any:
    """An integrator instance; the registered Krylov name gets a tight tolerance."""
    if isinstance(integrator, str) and integrator == "exponential_krylov":
        return registry.integrators.resolve(integrator, tol=_PREDICT_TOL)
    integ = registry.integrators.resolve(integrator)
    if not isinstance(integ, LinearIntegrator):
        raise TypeError(
            f"integrator must be a linear integrator for the LAF (e.g. 'exponential_krylov' "
            f"or 'euler'), got {integ!r}"
        )
    return integ


#: Largest accepted feature magnitude (larger values overflow the squared distances).
_MAX_ABS = 1e150


def _check_magnitude(a: np.ndarray, name: str) -> None:
    if a.size and np.abs(a).max() > _MAX_ABS:
        raise ValueError(
            f"{name} has values of magnitude > {_MAX_ABS:g} (squared distances would overflow); "
            "rescale it"
        )


# --------------------------------------------------------------------------- graphs
def _as_graph(graph: Any) -> Graph:
    """An assignflow Graph from a Graph, a scipy sparse adjacency or a networkx graph."""
    if isinstance(graph, Graph):
        return graph
    if sp.issparse(graph):
        return Graph.from_adjacency(graph)
    try:
        import networkx as nx
    except ImportError:  # pragma: no cover - depends on the environment
        nx = None
    if nx is not None and isinstance(graph, nx.Graph):
        return Graph.from_networkx(graph)
    raise TypeError(
        "graph must be an assignflow Graph, a scipy.sparse adjacency matrix or a networkx "
        f"graph, got {type(graph).__name__}"
    )


def label_graph(
    graph: Any,
    features: Any,
    prototypes: Any,
    *,
    rho: float = 1.0,
    T: float = 2.0,
    weights: Any = None,
    integrator: Any = "exponential_krylov",
    dtype: Any = "float64",
) -> FlowResult:
    r"""Label the nodes of a user-supplied graph with the linearized assignment flow.

    Solves :math:`\dot V = A(\Omega)V + B`, :math:`V(0) = 0` on :math:`[0, T]` with
    :math:`A(\Omega)V = R_{S_0}(\Omega V)`, :math:`B = \Pi_0 S_0/J`,
    :math:`S_0 = \operatorname{softmax}(-\Omega D/\rho)` and
    :math:`D_{ij} = \|f_i - l_j\|` (MATH.md §4), and returns
    :math:`W(T) = \operatorname{softmax}(J V(T))` and its ``argmax`` labels.

    Parameters
    ----------
    graph : Graph, scipy.sparse matrix (n, n) or networkx.Graph
        The neighbourhoods :math:`\mathcal{N}_i`. A sparse matrix is read as an
        adjacency pattern (``Graph.from_adjacency``: symmetrised, self-loops added);
        a networkx graph uses node order ``list(G)`` (``Graph.from_networkx``).
    features : array, shape (n,) or (n, d)
        Node features :math:`f_i`, one row per node.
    prototypes : array, shape (J,) or (J, d)
        Label prototypes :math:`l_j` in the feature space.
    rho : float, default=1.0
        Scale :math:`\rho > 0` of the distances.
    T : float, default=2.0
        Time horizon :math:`T > 0`.
    weights : Weights or array (nnz,), optional
        :math:`\Omega` (row-stochastic, aligned with ``graph.indices``); uniform
        :math:`1/|\mathcal{N}_i|` if omitted.
    integrator : str or LinearIntegrator, default="exponential_krylov"
        A registered integrator name or instance.
    dtype : {"float64", "float32"}, default="float64"
        Working precision of the flow; ``"float32"`` halves the memory of very
        large graphs (see :class:`~assignflow.SimilarityOperator`).

    Returns
    -------
    FlowResult
        ``.W`` (n, J) assignments, ``.V`` tangent vectors, ``.labels`` (n,) indices
        into ``prototypes``.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.barbell_graph(4, 0)
    >>> f = np.r_[np.zeros(4), np.ones(4)] + 0.1
    >>> label_graph(G, f, [0.0, 1.0], rho=0.5).labels.tolist()
    [0, 0, 0, 0, 1, 1, 1, 1]
    """
    g = _as_graph(graph)
    f = as_float_array(features, "features", ndim=(1, 2))
    if f.ndim == 1:
        f = f[:, None]
    if f.shape[0] != g.n_nodes:
        raise ValueError(
            f"features must have one row per node of the graph ({g.n_nodes}), got shape {f.shape}"
        )
    _check_magnitude(f, "features")
    p = as_float_array(prototypes, "prototypes", ndim=(1, 2))
    _check_magnitude(p, "prototypes")
    if p.ndim == 1:
        p = p[:, None]
    if p.shape[0] < 1:
        raise ValueError("prototypes must hold at least one label, got 0 rows")
    if p.shape[1] != f.shape[1]:
        raise ValueError(
            f"prototypes must have as many columns as features ({f.shape[1]}), got shape {p.shape}"
        )
    rho = check_positive_float(rho, "rho")
    T = check_positive_float(T, "T")
    if weights is None:
        om = Weights.uniform(g)
    elif isinstance(weights, Weights):
        if weights.graph != g:
            raise ValueError("weights must live on the given graph (same neighbourhoods)")
        om = weights
    else:
        vals = as_float_array(weights, "weights", ndim=1)
        if vals.shape != (g.nnz,):
            raise ValueError(
                f"weights must have one value per stored edge ({g.nnz},), got shape {vals.shape}"
            )
        om = Weights(g, vals)
    if dtype is None:
        raise ValueError("dtype must be 'float32' or 'float64', got None")
    sim = SimilarityOperator(om, distance_matrix(f, p), rho=rho, dtype=dtype)
    return LinearizedAssignmentFlow(sim, T=T).solve(_resolve_integrator(integrator))


# --------------------------------------------------------------------------- classifier
@persistence.persistable("AssignmentFlowClassifier")
class AssignmentFlowClassifier(ClassifierMixin, BaseEstimator):
    r"""Transductive classifier: the linearized assignment flow on a kNN graph.

    Query rows are attached to their ``n_neighbors`` nearest training rows
    (directed edges, so queries are independent of each other), training rows are
    clamped to their labels through a peaked data term, and the LAF is solved up to
    time ``T``; ``predict_proba`` returns the assignments :math:`W(T)` of the query
    rows. See the module documentation for the algorithm and its cost.

    Parameters
    ----------
    n_neighbors : int, default=8
        ``k`` of the kNN graph of the training rows and of the links from each
        query row to the training rows.
    rho : float or None, default=None
        Scale :math:`\rho` of the distances. ``None``: the median distance of the
        training rows to their class prototype (stored as ``rho_``).
    T : float, default=2.0
        Time horizon :math:`T` of the LAF.
    integrator : str or LinearIntegrator, default="exponential_krylov"
        Integrator of the LAF at prediction (a registered name or an instance).
        The registered name ``"exponential_krylov"`` runs with tolerance 1e-12.
    learn_weights : bool, default=False
        Learn :math:`\Omega` on the training graph (Riemannian gradient descent on
        the KL loss) and use it for the training rows and, as per-node trust, for
        the links of the query rows.
    max_iter : int, default=20
        Iterations of the weight learning.
    step_size : float, default=0.5
        Step :math:`h` of the multiplicative update of the weight learning.
    gradient_estimator : str or GradientEstimator, default="closed_form_low_rank"
        Gradient of the loss with respect to :math:`\Omega` (MATH.md §5).
    random_state : int, RandomState instance or None, default=None
        Accepted for API consistency; the fit is deterministic, so results do not
        depend on it.
    verbose : int, default=0
        Print the progress of the weight learning.

    Attributes
    ----------
    classes_ : ndarray (J,)
        The class labels.
    prototypes_ : ndarray (J, n_features_in\_)
        Class means :math:`l_j`.
    rho_ : float
        The scale :math:`\rho` used.
    X_ : ndarray (n, n_features_in\_)
        The training rows.
    y_ : ndarray (n,)
        Encoded training labels (indices into ``classes_``).
    graph_ : Graph
        kNN graph of the training rows.
    weights_ : ndarray (graph\_.nnz,)
        :math:`\Omega` of the training graph (uniform unless learned).
    trust_ : ndarray (n,)
        Per-training-node trust :math:`\tau_k` (ones unless learned).
    n_iter_ : int
        Weight iterates evaluated by the learning; 1 without learning (the
        uniform weights are the only iterate).
    history_ : dict of str -> ndarray or None
        Learning history (loss, error, gradient norm, time), ``None`` without learning.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only if ``X`` had string column names.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> X, y = make_blobs(200, centers=3, random_state=0)
    >>> clf = AssignmentFlowClassifier().fit(X, y)
    >>> clf.predict_proba(X[:2]).sum(axis=1).round(6).tolist()
    [1.0, 1.0]
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
        "rho": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "T": [Interval(numbers.Real, 0, None, closed="neither")],
        "integrator": [str, LinearIntegrator],
        "learn_weights": ["boolean"],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "step_size": [Interval(numbers.Real, 0, None, closed="neither")],
        "gradient_estimator": [str, GradientEstimator],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        n_neighbors: int = 8,
        rho: float | None = None,
        T: float = 2.0,
        integrator: Any = "exponential_krylov",
        learn_weights: bool = False,
        max_iter: int = 20,
        step_size: float = 0.5,
        gradient_estimator: Any = "closed_form_low_rank",
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.rho = rho
        self.T = T
        self.integrator = integrator
        self.learn_weights = learn_weights
        self.max_iter = max_iter
        self.step_size = step_size
        self.gradient_estimator = gradient_estimator
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> AssignmentFlowClassifier:
        """Store the training rows, class prototypes and (optionally) learn the weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        for name in ("n_neighbors", "rho", "T", "max_iter", "step_size"):
            if isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be a number, not a bool, got {getattr(self, name)}")
        # unknown names fail at fit, with a close-name suggestion, not at predict
        _resolve_integrator(self.integrator)
        est = registry.gradient_estimators.resolve(self.gradient_estimator)
        if not isinstance(est, GradientEstimator):
            raise TypeError(f"gradient_estimator must be a GradientEstimator, got {est!r}")
        X, y = validate_data(self, X, y, dtype=np.float64, copy=True)
        _check_magnitude(X, "X")
        check_classification_targets(y)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        y_enc = y_enc.ravel().astype(np.int64)
        J = len(self.classes_)
        self.X_ = X
        self.y_ = y_enc
        self.prototypes_ = np.stack([X[y_enc == j].mean(axis=0) for j in range(J)])
        D = distance_matrix(X, self.prototypes_)
        if self.rho is None:
            own = D[np.arange(len(y_enc)), y_enc]
            rho = float(np.median(own))
            if not rho > 0:
                pos = D[D > 0]
                rho = float(np.median(pos)) if pos.size else 1.0
            self.rho_ = rho
        else:
            self.rho_ = float(self.rho)
        self.graph_ = Graph.knn(X, n_neighbors=self.n_neighbors)
        uniform = Weights.uniform(self.graph_)
        self.weights_ = np.array(uniform.values)
        self.trust_ = np.ones(X.shape[0])
        self.n_iter_ = 1
        self.history_ = None
        if self.learn_weights and J >= 2 and X.shape[0] >= 2:
            flow = LinearizedAssignmentFlow(SimilarityOperator(uniform, D, rho=self.rho_), T=self.T)
            est = registry.gradient_estimators.resolve(self.gradient_estimator)
            desc = _learn(flow, y_enc, est, self.max_iter, self.step_size, self.verbose)
            self.weights_ = np.array(desc.weights.values)
            self.n_iter_ = int(desc.n_iter)
            self.history_ = desc.history
            col_learned = desc.weights.apply_transpose(np.ones((X.shape[0], 1)))[:, 0]
            col_uniform = uniform.apply_transpose(np.ones((X.shape[0], 1)))[:, 0]
            self.trust_ = col_learned / col_uniform
        return self

    # ------------------------------------------------------------------ predict
    def _joint_flow(self, Xq: np.ndarray) -> LinearizedAssignmentFlow:
        """The LAF on training rows + query rows (queries linked only to training rows)."""
        n, m = self.X_.shape[0], Xq.shape[0]
        k = min(self.n_neighbors, n)
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=k).fit(self.X_)
        nbrs = np.sort(nn.kneighbors(Xq, return_distance=False), axis=1)  # (m, k), < n
        g_tr = self.graph_
        q_idx = np.concatenate([nbrs, (n + np.arange(m))[:, None]], axis=1)  # sorted rows
        indptr = np.concatenate([g_tr.indptr, g_tr.nnz + (k + 1) * np.arange(1, m + 1)])
        indices = np.concatenate([g_tr.indices, q_idx.ravel()])
        graph = Graph(indptr, indices)
        q_vals = np.concatenate([self.trust_[nbrs], np.ones((m, 1))], axis=1)
        q_vals /= q_vals.sum(axis=1, keepdims=True)
        om = Weights(graph, np.concatenate([self.weights_, q_vals.ravel()]))
        J = len(self.classes_)
        D_tr = _CLAMP * self.rho_ * (1.0 - np.eye(J)[self.y_])
        D = np.concatenate([D_tr, distance_matrix(Xq, self.prototypes_)])
        return LinearizedAssignmentFlow(SimilarityOperator(om, D, rho=self.rho_), T=self.T)

    def predict_proba(self, X: Any) -> np.ndarray:
        r"""Assignments :math:`W(T)` of the query rows (rows sum to 1).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        ndarray of shape (n_queries, n_classes)
            Columns ordered as :attr:`classes_`.
        """
        check_is_fitted(self)
        Xq = validate_data(self, X, dtype=np.float64, reset=False)
        _check_magnitude(Xq, "X")
        J = len(self.classes_)
        if J == 1:
            return np.ones((Xq.shape[0], 1))
        res = self._joint_flow(Xq).solve(_resolve_integrator(self.integrator))
        W = res.W[self.X_.shape[0] :]
        return W / W.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """Class labels ``classes_[argmax_j W_qj(T)]`` of the query rows.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        ndarray of shape (n_queries,)
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------ persistence hook
    def _check_fitted_state(self) -> None:
        """Validate the fitted attributes of a loaded model (called by :func:`~assignflow.load`)."""
        _resolve_integrator(self.integrator)  # unknown names fail here, not at predict
        J = len(self.classes_)
        c = persistence.check_fitted_int(self.n_features_in_, "n_features_in_", minimum=1)
        check = persistence.check_fitted_array
        check(self.prototypes_, "prototypes_", shape=(J, c), max_abs=_MAX_ABS)
        n = check(self.X_, "X_", shape=(None, c), max_abs=_MAX_ABS).shape[0]
        if n < 1:
            raise ValueError("X_ must hold at least one training row")
        y = persistence.check_fitted_array(self.y_, "y_", shape=(n,), kinds="iu")
        if y.min() < 0 or y.max() >= J:
            raise ValueError(f"y_ must hold {n} class indices in 0..{J - 1}")
        if not np.isfinite(_CLAMP * check_positive_float(self.rho_, "rho_")):
            raise ValueError(f"rho_ is too large, got {self.rho_!r}")
        if not isinstance(self.graph_, Graph) or self.graph_.n_nodes != n:
            raise ValueError(f"graph_ must be a Graph on the {n} training rows")
        Weights(self.graph_, persistence.check_fitted_array(self.weights_, "weights_", ndim=1))
        trust = persistence.check_fitted_array(self.trust_, "trust_", shape=(n,))
        if np.any(trust <= 0):  # column sums of positive weights
            raise ValueError("trust_ must be > 0")
        persistence.check_fitted_int(self.n_iter_, "n_iter_")
        if self.history_ is not None and not isinstance(self.history_, dict):
            raise ValueError("history_ must be a dict or None")
        names = getattr(self, "feature_names_in_", None)
        if names is not None:
            persistence.check_fitted_array(names, "feature_names_in_", shape=(c,), kinds="O")


def _learn(flow, y_enc, estimator, max_iter, step_size, verbose):
    from .learning import riemannian_gradient_descent

    return riemannian_gradient_descent(
        flow,
        KLLoss(y_enc),
        estimator,
        max_iter=max_iter,
        step_size=step_size,
        verbose=bool(verbose),
    )
