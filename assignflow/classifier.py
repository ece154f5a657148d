r"""Semi-supervised and supervised classification of table rows with the linearized assignment flow.

:class:`AssignmentFlowClassifier` follows scikit-learn's semi-supervised convention
(:class:`~sklearn.semi_supervised.LabelSpreading`): in ``fit(X, y)``, rows with
``y == -1`` are unlabeled. The flow runs on a graph over *all* rows of ``X``
(transductive), the labeled rows act as clamped *seeds*, and every row receives a
label (``transduction_``) and an assignment (``label_distributions_``). New rows
are labeled inductively by ``predict``/``predict_proba``. A ``y`` without ``-1``
is the supervised case: every training row is a seed.

The flow (fit)
--------------
On the graph :math:`\mathcal{N}_i` (by default the symmetric kNN graph of all
rows) with weights :math:`\omega_{ik} \propto 1/|\mathcal{N}_k|` and the data term

.. math::
    D_{ij} = \min_{s:\,y_s = j} \|x_i - x_s\| + \rho\log\frac{\max_k w_k}{w_j}

(the distance to the nearest labeled row of class ``j`` — every labeled row is a
prototype of its class — plus the class weights :math:`w_j` as a log-prior,
zero without ``class_weight``), the linearized assignment flow (LAF)

.. math::
    \dot V = A V + B,\quad V(0) = 0,\qquad A V = R_{S_0}(\Omega V),\quad
    B = \Pi_0 S_0 / J,\quad S_0 = \operatorname{softmax}(-\Omega D/\rho),

is solved up to time :math:`T` on all rows, where each labeled row ``s`` is
*clamped*: its neighbourhood is reduced to itself and its data term is peaked,
:math:`D_{sj} = \kappa\rho c_s(1 - [j = y_s])` with :math:`\kappa = 10` and the
seed strength :math:`c_s` (sample weight times class weight, scaled to mean 1
over the seeds). Seeds are sources: :math:`V_s(t)` grows in the direction of
:math:`y_s` and is not changed by the neighbours, so seeds keep their labels;
an unlabeled row combines its own evidence with the seeds that reach it along
the graph (in its :math:`S_0`, a seed neighbour adds
:math:`\omega_{is}\kappa c_s` to the scaled distance of every wrong class). The
labels are :math:`\operatorname{argmax}_j V_{ij}(T)`, the assignments
:math:`W(T) = \operatorname{softmax}(J V(T))`. A seed of strength :math:`c_s`
weighs like :math:`c_s` coincident seeds in its neighbours' :math:`S_0`; a
labeled row of weight 0 is unlabeled. (:mod:`assignflow.labeling` has the
construction in full.)

Adaptive defaults
-----------------
``n_neighbors="auto"``
    :math:`k = \lceil \log_2 n \rceil` for ``n`` rows (a kNN graph needs
    :math:`k` of order :math:`\log n` to be connected), at most
    :math:`n_{\min} - 1`, where :math:`n_{\min} = \lfloor n \min_j \pi_j\rfloor`
    is the expected size of the smallest class (:math:`\pi_j` the weighted share
    of class ``j`` among the labeled rows), and at least 1: a new row never links
    to more rows than the smallest class is expected to hold (with few labels in
    the supervised case a larger ``k`` lets the majority class win everywhere).
``rho="auto"``
    :func:`~assignflow.estimate_rho` of the distances of all rows to the nearest
    labeled row of each class (the median gap between the two nearest classes)
    — the rule shared with :func:`~assignflow.label_graph` and
    :class:`~assignflow.ImageLabeler`.
``T="auto"``
    :math:`T = 6/\hat\lambda`, with :math:`\hat\lambda` the growth rate of the
    flow on the graph without seeds (the largest real Ritz value of :math:`A`
    from 10 Arnoldi steps started at :math:`B`, at least :math:`1/J`): the
    fastest mode of the flow grows by at most :math:`e^6` up to :math:`T`, enough
    to carry the seeds' labels several hops but short of the regime where one
    label floods the graph. It depends on the rows, the graph and the data term,
    not on which rows are labeled.

These rules and constants were set on synthetic data (see
:mod:`assignflow.labeling`), never on the benchmark data sets.

Prediction (new rows)
---------------------
A new row ``q`` is linked to itself and to its :math:`k` nearest training rows
(labeled or not) by **directed** edges, with weights
:math:`\omega_{qk} \propto \tau_k/|\mathcal{N}_k|` (:math:`\tau_k = 1` unless
learned) and :math:`\omega_{qq} \propto 1/(k+1)`, and gets the data term
:math:`D_{qj}` above. The LAF of training rows and new rows is solved to the
fitted :math:`T`: training rows receive nothing from new rows, so their flow is
exactly the fitted one, and each new row's result depends only on that row
(predictions do not depend on which other rows are passed). ``predict_proba``
returns :math:`W_q(T)`, ``decision_function`` the logits :math:`J V_q(T)` (for
two classes :math:`J(V_{q1} - V_{q0})`).

Learning (``learn_weights=True``)
---------------------------------
The weights are learned by Riemannian gradient descent (the paper's eqs.
3.7–3.8, gradient by ``gradient_estimator``) on the loss of held-out seeds: the
labeled rows are split into two stratified halves; in turn, one half is clamped
and the ``loss`` (KL by default) is taken at the other half, which is unclamped
and keeps only its data term (the distance to the nearest seed of the clamped
half's classes is not recomputed: the data term stays that of the fit). The
learned weights also give every training row a *trust*
:math:`\tau_k = (\Omega^{*\top}\mathbb{1})_k / (\Omega^\top\mathbb{1})_k` for the
links of new rows. Learning is off by default: on the benchmark data it does not
improve the accuracy (see the user guide, "Labeling a graph").

Cost
----
``fit``: the graph (a kNN search, :math:`O(n \log n\, d)` with a tree), the data
term (distances of all rows to the labeled rows), 10 operator applications for
the horizon and one LAF solve on ``n`` rows, :math:`O(m\,\mathrm{nnz}\,J)` per
Krylov sub-step. ``predict``: a kNN query against the training rows, the data
term of the new rows and one LAF solve on ``n + n_queries`` rows.

References
----------
A. Zeilmann, S. Petra, C. Schnörr, *Learning Linearized Assignment Flows for Image
Labeling*, J. Math. Imaging Vis. 65 (2023). The closest relatives in scikit-learn
are :class:`~sklearn.semi_supervised.LabelSpreading` and
:class:`~sklearn.semi_supervised.LabelPropagation` (diffusion of clamped labels
on a kNN graph); here the diffusion is replaced by the linearized assignment
flow on the assignment manifold, which also uses each row's own data term.
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import persistence, registry
from ._validation import check_positive_float
from .flows import LinearizedAssignmentFlow
from .gradients import GradientEstimator
from .graphs import Graph
from .integrators import LinearIntegrator
from .labeling import (
    DEGREE_POWER,
    KAPPA,
    MAX_ABS,
    as_graph,
    auto_horizon,
    check_magnitude,
    clamp,
    degree_weights,
    label_graph,
    nearest_seed_distances,
    resolve_integrator,
    seed_distances,
)
from .learning import multiplicative_update
from .losses import Loss
from .similarity import SimilarityOperator, estimate_rho
from .weights import Weights

__all__ = ["AssignmentFlowClassifier", "label_graph"]


#: Early stopping of the weight learning: stop after this many iterations without a
#: relative improvement of the held-out loss by more than ``_LEARN_RTOL``.
_LEARN_PATIENCE = 3
_LEARN_RTOL = 1e-4


class _OnNodes(Loss):
    """A loss built for a subset of the nodes, evaluated on the flow of all nodes.

    The weight learning takes the loss at the held-out seeds only; any registered
    loss is built for them (``labels`` of the subset) and this adapter restricts
    :math:`V` to the subset and scatters the gradient back (zero elsewhere).
    Weight regularisers are passed through unchanged.
    """

    def __init__(self, inner: Loss, nodes: np.ndarray, n_labels: int) -> None:
        self.inner, self.nodes, self.n_labels = inner, nodes, n_labels

    def data_value(self, V: np.ndarray) -> float:
        return float(self.inner.data_value(V[self.nodes]))

    def data_gradient(self, V: np.ndarray) -> np.ndarray:
        out = np.zeros_like(V)
        out[self.nodes] = self.inner.data_gradient(V[self.nodes])
        return out

    def reg_value(self, weights: Any) -> float:
        return float(self.inner.reg_value(weights))

    def reg_gradient(self, weights: Any) -> np.ndarray:
        return self.inner.reg_gradient(weights)

    def check(self, flow: Any) -> None:
        if flow.n_labels != self.n_labels or self.nodes.max() >= flow.n_nodes:
            raise ValueError("the held-out loss does not fit the flow")  # pragma: no cover


def _unlabeled_mask(y: np.ndarray) -> np.ndarray:
    """Rows marked ``-1`` (scikit-learn's semi-supervised convention)."""
    if y.dtype.kind in "iuf":
        return y == -1
    if y.dtype.kind == "O":
        return np.array([isinstance(v, numbers.Number) and v == -1 for v in y], dtype=bool)
    return np.zeros(y.shape, dtype=bool)  # strings, booleans: no -1 marker


def auto_n_neighbors(n_samples: int, class_share: np.ndarray) -> int:
    r"""The ``n_neighbors="auto"`` rule: :math:`\lceil\log_2 n\rceil`, below the smallest class.

    Parameters
    ----------
    n_samples : int
        Rows of the graph ``n``.
    class_share : ndarray (J,)
        Weighted share :math:`\pi_j` of each class among the labeled rows.

    Returns
    -------
    int
        :math:`k = \max(1, \min(\lceil\log_2 n\rceil, \lfloor n\min_j\pi_j\rfloor - 1, n - 1))`.
    """
    k = math.ceil(math.log2(max(n_samples, 2)))
    smallest = math.floor(n_samples * float(np.min(class_share)) + 1e-9)
    return int(max(1, min(k, smallest - 1, n_samples - 1)))


@persistence.persistable("AssignmentFlowClassifier")
class AssignmentFlowClassifier(ClassifierMixin, BaseEstimator):
    r"""Semi-supervised classifier: the linearized assignment flow with clamped labeled rows.

    ``fit(X, y)`` with ``y == -1`` for unlabeled rows labels every row of ``X``
    transductively (``transduction_``, ``label_distributions_``); ``predict``
    labels new rows. A ``y`` without ``-1`` is the supervised case. See the module
    documentation for the flow, the default rules and the cost.

    Parameters
    ----------
    n_neighbors : int or "auto", default="auto"
        ``k`` of the kNN graph (``graph="knn"``) and of the links from each new row
        to the training rows. ``"auto"``: :math:`\lceil\log_2 n\rceil`, at most the
        expected size of the smallest class minus one (stored as ``n_neighbors_``).
    graph : str or Graph, default="knn"
        The graph over the training rows: a registered graph name, built as
        ``registry.graphs.resolve(graph, X=X, **graph_params)`` (``"knn"`` gets
        ``n_neighbors`` unless ``graph_params`` sets it), or a :class:`Graph` on
        exactly the rows of ``X`` (a precomputed graph).
    graph_params : dict, optional
        Options of the graph factory.
    rho : float or "auto", default="auto"
        Scale :math:`\rho` of the distances. ``"auto"`` (or ``None``):
        :func:`~assignflow.estimate_rho` of the distances of all training rows to
        the prototypes (stored as ``rho_``).
    T : float or "auto", default="auto"
        Time horizon of the LAF. ``"auto"``: :math:`6/\hat\lambda` with the growth
        rate :math:`\hat\lambda` of the flow (stored as ``T_``).
    class_weight : dict, "balanced" or None, default=None
        Class weights :math:`w_j` (``"balanced"``: ``n_labeled / (J * n_labeled_j)``):
        they multiply the strength of the class's seeds and enter the data term as
        the log-prior :math:`\rho\log(\max_k w_k / w_j)`.
    loss : str or Loss class, default="kl"
        The loss of the weight learning, a registered name or class, built for the
        held-out seeds as ``registry.losses.resolve(loss, labels=y_held_out,
        **loss_params)`` (the contract of :class:`~assignflow.ImageLabeler`). Used
        only with ``learn_weights=True``.
    loss_params : dict, optional
        Further options of the loss.
    integrator : str or LinearIntegrator, default="exponential_krylov"
        Integrator of the LAF (a registered name or an instance). The registered
        name ``"exponential_krylov"`` runs with tolerance 1e-12.
    learn_weights : bool, default=False
        Learn the weights of the unlabeled rows on held-out seeds (see the module
        documentation).
    max_iter : int, default=20
        Largest number of iterations of the weight learning; it stops earlier when
        the held-out loss has not improved (by a relative 1e-4) for 3 iterations.
    step_size : float, default=0.5
        Step :math:`h` of the multiplicative update of the weight learning.
    gradient_estimator : str or GradientEstimator, default="closed_form_low_rank"
        Gradient of the loss with respect to :math:`\Omega`.
    random_state : int, RandomState instance or None, default=None
        Seeds the split of the labeled rows in the weight learning; without
        learning the fit is deterministic.
    verbose : int, default=0
        Print the progress of the weight learning.

    Attributes
    ----------
    classes_ : ndarray (J,)
        The class labels (``-1`` is never a class).
    transduction_ : ndarray (n_samples,)
        Label of every training row (the seeds keep theirs).
    label_distributions_ : ndarray (n_samples, J)
        Assignments :math:`W(T)` of the training rows (rows sum to 1).
    class_weight_ : ndarray (J,)
        The class weights :math:`w_j` (ones without ``class_weight``).
    prototypes_ : ndarray (J, n_features_in\_)
        Class means of the labeled rows (weighted by ``sample_weight``), for
        inspection; the data term uses the nearest labeled row of each class.
    rho_ : float
        The scale :math:`\rho` used.
    T_ : float
        The horizon :math:`T` used.
    n_neighbors_ : int
        The ``k`` used.
    X_ : ndarray (n_samples, n_features_in\_)
        The training rows.
    y_ : ndarray (n_samples,)
        Label index (into ``classes_``) of every training row: the known one for
        seeds, the transduced one otherwise.
    seed_weight_ : ndarray (n_samples,)
        Seed strength :math:`c_s` of every training row; 0 for unlabeled rows.
    graph_ : Graph
        The graph over the training rows (before clamping).
    weights_ : ndarray (graph\_.nnz,)
        :math:`\Omega` on ``graph_`` (the default weights unless learned).
    trust_ : ndarray (n_samples,)
        Per-training-row trust :math:`\tau_k` (ones unless learned).
    n_iter_ : int
        Weight iterates evaluated by the learning; 1 without learning.
    history_ : dict of str -> ndarray or None
        Learning history (loss, error, gradient norm, time), ``None`` without learning.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only if ``X`` had string column names.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.model_selection import train_test_split
    >>> from sklearn.preprocessing import StandardScaler
    >>> X, y = load_iris(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> labeled, _ = train_test_split(np.arange(150), train_size=0.1, stratify=y, random_state=0)
    >>> y_semi = np.full(150, -1)
    >>> y_semi[labeled] = y[labeled]  # 10 % labeled, -1 elsewhere
    >>> clf = AssignmentFlowClassifier().fit(X, y_semi)
    >>> clf.classes_.tolist()
    [0, 1, 2]
    >>> round(float(np.mean(clf.transduction_[y_semi == -1] == y[y_semi == -1])), 2)
    0.89
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "graph": [str, Graph],
        "graph_params": [dict, None],
        "rho": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"}), None],
        "T": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "loss": [str, type],
        "loss_params": [dict, None],
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
        n_neighbors: int | str = "auto",
        graph: Any = "knn",
        graph_params: dict | None = None,
        rho: float | str | None = "auto",
        T: float | str = "auto",
        class_weight: Any = None,
        loss: Any = "kl",
        loss_params: dict | None = None,
        integrator: Any = "exponential_krylov",
        learn_weights: bool = False,
        max_iter: int = 20,
        step_size: float = 0.5,
        gradient_estimator: Any = "closed_form_low_rank",
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.graph = graph
        self.graph_params = graph_params
        self.rho = rho
        self.T = T
        self.class_weight = class_weight
        self.loss = loss
        self.loss_params = loss_params
        self.integrator = integrator
        self.learn_weights = learn_weights
        self.max_iter = max_iter
        self.step_size = step_size
        self.gradient_estimator = gradient_estimator
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def _check_settings(self) -> None:
        for name in ("n_neighbors", "rho", "T", "max_iter", "step_size"):
            if isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be a number, not a bool, got {getattr(self, name)}")
        # unknown names fail at fit, with a close-name suggestion, not at predict
        resolve_integrator(self.integrator)
        est = registry.gradient_estimators.resolve(self.gradient_estimator)
        if not isinstance(est, GradientEstimator):
            raise TypeError(f"gradient_estimator must be a GradientEstimator, got {est!r}")
        if isinstance(self.loss, str):
            registry.losses.get(self.loss)
        elif not (isinstance(self.loss, type) and issubclass(self.loss, Loss)):
            raise TypeError(
                f"loss must be a registered loss name or a Loss class, got {self.loss!r}"
            )
        if self.graph_params is not None and not isinstance(self.graph, str):
            raise TypeError("graph_params go with a registered graph name, not with a Graph")

    def _class_weights(self, y_seed: np.ndarray) -> np.ndarray:
        """Weight of every class (ones without ``class_weight``)."""
        if self.class_weight is None:
            return np.ones(len(self.classes_))
        return compute_class_weight(self.class_weight, classes=self.classes_, y=y_seed)

    def _feature_distances(self, X: np.ndarray) -> np.ndarray:
        """Distance of every row of ``X`` to the nearest seed of each class."""
        seeds = self.seed_weight_ > 0
        return nearest_seed_distances(X, self.X_[seeds], self.y_[seeds], len(self.classes_))

    def _prior_offset(self) -> np.ndarray:
        r"""The class weights' term :math:`\rho\log(\max_k w_k / w_j)` of the data term."""
        cw = self.class_weight_
        return self.rho_ * (np.log(cw.max()) - np.log(cw))

    def _distances(self, X: np.ndarray) -> np.ndarray:
        r"""Data term :math:`D_{ij} = \min_{y_s = j}\|x_i - x_s\| + \rho\log(\max_k w_k/w_j)`."""
        return self._feature_distances(X) + self._prior_offset()

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> AssignmentFlowClassifier:
        """Label every row of ``X`` (transduction) and prepare the labeling of new rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows, labeled and unlabeled: every row is a node of the graph.
            Finite, of magnitude at most 1e150.
        y : array-like of shape (n_samples,)
            Class labels; ``-1`` marks an unlabeled row.
        sample_weight : array-like of shape (n_samples,), optional
            Strength of each labeled row (a seed); ignored for unlabeled rows. A
            labeled row of weight 0 counts as unlabeled.

        Returns
        -------
        AssignmentFlowClassifier
            The fitted classifier (``self``).
        """
        self._check_settings()
        X, y = validate_data(self, X, y, dtype=np.float64, copy=True)
        check_magnitude(X, "X")
        n = X.shape[0]
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
        labeled = ~_unlabeled_mask(y)
        if not labeled.any():
            raise ValueError("y must label at least one row (every entry is -1)")
        check_classification_targets(y[labeled])
        self.classes_ = np.unique(y[labeled])
        J = len(self.classes_)
        seeds = labeled & (sw > 0)
        if not seeds.any():
            raise ValueError("sample_weight must be positive for at least one labeled row")
        labels = np.full(n, -1, dtype=np.int64)
        labels[seeds] = np.searchsorted(self.classes_, y[seeds])
        present = np.bincount(labels[seeds], minlength=J) > 0
        if not present.all():
            raise ValueError(
                f"sample_weight: class {self.classes_[np.flatnonzero(~present)[0]]!r} has no "
                "labeled row of positive weight"
            )
        self.class_weight_ = self._class_weights(y[labeled])
        # seed strength: sample weight x class weight, scaled to mean 1 over the seeds
        c = np.zeros(n)
        c[seeds] = sw[seeds] * self.class_weight_[labels[seeds]]
        c[seeds] /= c[seeds].mean()
        self.seed_weight_ = c
        self.X_ = X
        self.prototypes_ = np.stack(
            [np.average(X[labels == j], axis=0, weights=sw[labels == j]) for j in range(J)]
        )
        self.y_ = np.maximum(labels, 0)  # the seeds' labels; the others are set below
        D_feat = self._feature_distances(X)
        self.rho_ = float(estimate_rho(D_feat)) if self.rho in (None, "auto") else float(self.rho)
        D = D_feat + self._prior_offset()
        share = np.bincount(labels[seeds], weights=sw[seeds], minlength=J) / sw[seeds].sum()
        if self.n_neighbors == "auto":
            self.n_neighbors_ = auto_n_neighbors(n, share)
        else:
            self.n_neighbors_ = int(self.n_neighbors)
        self.graph_ = self._training_graph(X)
        base = degree_weights(self.graph_)
        self.weights_ = np.array(base.values)
        self.trust_ = np.ones(n)
        self.n_iter_ = 1
        self.history_ = None
        if self.T == "auto":
            flow0 = LinearizedAssignmentFlow(SimilarityOperator(base, D, rho=self.rho_), T=1.0)
            self.T_ = float(auto_horizon(flow0)) if J > 1 else 1.0
        else:
            self.T_ = float(self.T)
        if self.learn_weights and J >= 2:
            self._learn(X, labels, c, base)
        if J == 1:
            self.y_ = np.zeros(n, dtype=np.int64)
            self.label_distributions_ = np.ones((n, 1))
        else:
            om = Weights(self.graph_, self.weights_)
            res = self._clamped_flow(D, labels, c, om).solve(resolve_integrator(self.integrator))
            self.label_distributions_ = res.W / res.W.sum(axis=1, keepdims=True)
            self.y_ = np.where(seeds, labels, np.argmax(res.V, axis=1))
        self.transduction_ = self.classes_[self.y_]
        return self

    def _training_graph(self, X: np.ndarray) -> Graph:
        n = X.shape[0]
        if isinstance(self.graph, Graph):
            if self.graph.n_nodes != n:
                raise ValueError(
                    f"graph must have one node per row of X ({n}), got {self.graph.n_nodes} nodes"
                )
            return self.graph
        params = dict(self.graph_params or {})
        if self.graph == "knn":
            params.setdefault("n_neighbors", self.n_neighbors_)
        g = as_graph(self.graph, X, params)
        if g.n_nodes != n:
            raise ValueError(
                f"graph {self.graph!r} must have one node per row of X ({n}), got {g.n_nodes} nodes"
            )
        return g

    def _clamped_flow(
        self, D: np.ndarray, labels: np.ndarray, strength: np.ndarray, weights: Weights
    ) -> LinearizedAssignmentFlow:
        """The LAF of the training rows with the rows ``labels >= 0`` clamped as seeds."""
        Ds = seed_distances(D, labels, strength, self.rho_)
        om = clamp(weights, labels >= 0)
        return LinearizedAssignmentFlow(SimilarityOperator(om, Ds, rho=self.rho_), T=self.T_)

    def _learn(self, X: np.ndarray, labels: np.ndarray, c: np.ndarray, base: Weights) -> None:
        """Learn the weights on held-out seeds (two stratified halves of the labeled rows)."""
        rng = check_random_state(self.random_state)
        n, J = X.shape[0], len(self.classes_)
        seeds = labels >= 0
        # fold[i] in {0, 1}: the half of seed i; a class with one seed is clamped in both
        fold = np.full(n, -1)
        for j in range(J):
            idx = rng.permutation(np.flatnonzero(labels == j))
            if len(idx) >= 2:
                fold[idx] = (np.arange(len(idx)) + rng.randint(2)) % 2
        if not np.any(fold >= 0):
            return  # no class with two seeds: nothing to hold out
        est = registry.gradient_estimators.resolve(self.gradient_estimator)
        g = base.graph
        rows = g.rows
        problems = []
        for h in (0, 1):
            clamped = seeds & (fold != 1 - h)  # this half and the single seeds
            held = seeds & ~clamped
            # the data term from the clamped seeds only: held-out rows must not see themselves
            D = nearest_seed_distances(X, X[clamped], labels[clamped], J) + self._prior_offset()
            nodes = np.flatnonzero(held)
            inner = registry.losses.resolve(
                self.loss, labels=labels[nodes], **dict(self.loss_params or {})
            )
            if not isinstance(inner, Loss):
                raise TypeError(f"loss must resolve to an assignflow Loss, got {inner!r}")
            loss = _OnNodes(inner, nodes, J)
            free = ~clamped[rows]  # entries of the full graph learned in this half
            problems.append((clamped, held, D, loss, free))
        weights = base
        hist: dict[str, list[float]] = {"loss": [], "error": [], "grad_norm": [], "time": []}
        best, stalled = (np.inf, base), 0
        t0 = time.perf_counter()
        it = 0
        for it in range(1, self.max_iter + 1):
            grad = np.zeros(g.nnz)
            value, wrong, count = 0.0, 0.0, 0.0
            for clamped, held, D, loss, free in problems:
                flow = self._clamped_flow(D, np.where(clamped, labels, -1), c, weights)
                r = est.estimate(flow, loss)
                value += r.value
                grad[free] += r.gradient[~clamped[flow.weights.graph.rows]]
                if r.V is not None:
                    wrong += float(np.sum(c[held] * (np.argmax(r.V[held], axis=1) != labels[held])))
                    count += float(c[held].sum())
            wg = weights.values * grad
            mean = np.repeat(np.add.reduceat(wg, g.indptr[:-1]), g.degrees)
            rg = wg - weights.values * mean
            rec = {
                "loss": value / len(problems),
                "error": wrong / count if count else np.nan,
                "grad_norm": float(np.sqrt(np.sum(rg * rg / weights.values))),
                "time": time.perf_counter() - t0,
            }
            for key, v in rec.items():
                hist[key].append(v)
            if self.verbose:
                print(
                    f"iter {it:4d}  held-out loss {rec['loss']:.6g}  wrong "
                    f"{100 * rec['error']:6.2f} %  |grad| {rec['grad_norm']:.3g}",
                    flush=True,
                )
            if rec["loss"] < best[0] * (1.0 - _LEARN_RTOL):
                best, stalled = (rec["loss"], weights), 0
            else:
                stalled += 1
                if stalled >= _LEARN_PATIENCE:
                    break  # early stopping: the held-out loss no longer improves
            if it < self.max_iter:
                weights = multiplicative_update(weights, grad, self.step_size * n, 5.0)
        learned = best[1]
        self.weights_ = np.array(learned.values)
        self.n_iter_ = it
        self.history_ = {k: np.asarray(v) for k, v in hist.items()}
        ones = np.ones((n, 1))
        self.trust_ = learned.apply_transpose(ones)[:, 0] / base.apply_transpose(ones)[:, 0]

    # ------------------------------------------------------------------ predict
    def _joint_flow(self, Xq: np.ndarray) -> LinearizedAssignmentFlow:
        """The LAF on training rows + query rows (queries linked only to training rows)."""
        n, m = self.X_.shape[0], Xq.shape[0]
        k = min(self.n_neighbors_, n)
        nbrs = np.sort(self._neighbors().kneighbors(Xq, return_distance=False), axis=1)
        seeds = self.seed_weight_ > 0
        om_tr = clamp(Weights(self.graph_, self.weights_), seeds)
        g_tr = om_tr.graph
        q_idx = np.concatenate([nbrs, (n + np.arange(m))[:, None]], axis=1)  # sorted rows
        indptr = np.concatenate([g_tr.indptr, g_tr.nnz + (k + 1) * np.arange(1, m + 1)])
        indices = np.concatenate([g_tr.indices, q_idx.ravel()])
        graph = Graph(indptr, indices)
        deg = self.graph_.degrees.astype(np.float64)
        q_vals = np.concatenate(
            [
                self.trust_[nbrs] * deg[nbrs] ** -DEGREE_POWER,
                np.full((m, 1), float(k + 1) ** -DEGREE_POWER),
            ],
            axis=1,
        )
        q_vals /= q_vals.sum(axis=1, keepdims=True)
        om = Weights(graph, np.concatenate([om_tr.values, q_vals.ravel()]))
        labels = np.where(seeds, self.y_, -1)
        D_tr = seed_distances(self._distances(self.X_), labels, self.seed_weight_, self.rho_)
        D = np.concatenate([D_tr, self._distances(Xq)])
        return LinearizedAssignmentFlow(SimilarityOperator(om, D, rho=self.rho_), T=self.T_)

    def _neighbors(self):
        from sklearn.neighbors import NearestNeighbors

        return NearestNeighbors(n_neighbors=min(self.n_neighbors_, self.X_.shape[0])).fit(self.X_)

    def _query_result(self, X: Any):
        check_is_fitted(self)
        Xq = validate_data(self, X, dtype=np.float64, reset=False)
        check_magnitude(Xq, "X")
        if len(self.classes_) == 1:
            return Xq.shape[0], None
        res = self._joint_flow(Xq).solve(resolve_integrator(self.integrator))
        return Xq.shape[0], res

    def predict_proba(self, X: Any) -> np.ndarray:
        r"""Assignments :math:`W_q(T)` of new rows (rows sum to 1).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            New rows, with the features of the training rows. Each is labeled on
            its own: the result of a row does not depend on the other rows passed.

        Returns
        -------
        ndarray of shape (n_queries, n_classes)
            Columns ordered as :attr:`classes_`.
        """
        m, res = self._query_result(X)
        if res is None:
            return np.ones((m, 1))
        W = res.W[self.X_.shape[0] :]
        return W / W.sum(axis=1, keepdims=True)

    def decision_function(self, X: Any) -> np.ndarray:
        r"""Logits :math:`J\,V_q(T)` of new rows (:math:`W_q = \operatorname{softmax}(J V_q)`).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            New rows, with the features of the training rows. Each is labeled on
            its own: the result of a row does not depend on the other rows passed.

        Returns
        -------
        ndarray of shape (n_queries, n_classes), or (n_queries,) for two classes
            For two classes, the log-odds :math:`J(V_{q1} - V_{q0})` of
            ``classes_[1]`` (positive means ``classes_[1]``), as scikit-learn expects.
        """
        m, res = self._query_result(X)
        if res is None:
            return np.zeros(m)
        V = np.asarray(res.V[self.X_.shape[0] :], dtype=np.float64)
        J = V.shape[1]
        if J == 2:
            return J * (V[:, 1] - V[:, 0])
        return J * V

    def predict(self, X: Any) -> np.ndarray:
        """Class labels ``classes_[argmax_j W_qj(T)]`` of new rows.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            New rows, with the features of the training rows. Each is labeled on
            its own: the result of a row does not depend on the other rows passed.

        Returns
        -------
        ndarray of shape (n_queries,)
            The class of each new row, an element of :attr:`classes_`.
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
        resolve_integrator(self.integrator)  # unknown names fail here, not at predict
        check, integer = persistence.check_fitted_array, persistence.check_fitted_int
        J = len(self.classes_)
        c = integer(self.n_features_in_, "n_features_in_", minimum=1)
        check(self.prototypes_, "prototypes_", shape=(J, c), max_abs=MAX_ABS)
        n = check(self.X_, "X_", shape=(None, c), max_abs=MAX_ABS).shape[0]
        if n < 1:
            raise ValueError("X_ must hold at least one training row")
        y = check(self.y_, "y_", shape=(n,), kinds="iu")
        if y.min() < 0 or y.max() >= J:
            raise ValueError(f"y_ must hold {n} class indices in 0..{J - 1}")
        sw = check(self.seed_weight_, "seed_weight_", shape=(n,))
        if np.any(sw < 0) or not np.all(np.bincount(y[sw > 0], minlength=J) > 0):
            raise ValueError("seed_weight_ must be >= 0 with a positive seed of every class")
        cw = check(self.class_weight_, "class_weight_", shape=(J,))
        if np.any(cw <= 0):
            raise ValueError("class_weight_ must be > 0")
        rho = check_positive_float(self.rho_, "rho_")
        scale = KAPPA * rho * (float(sw.max()) + abs(float(np.log(cw.max() / cw.min()))))
        if not np.isfinite(scale):
            raise ValueError(f"rho_ is too large, got {self.rho_!r}")
        check_positive_float(self.T_, "T_")
        integer(self.n_neighbors_, "n_neighbors_", minimum=1)
        if not isinstance(self.graph_, Graph) or self.graph_.n_nodes != n:
            raise ValueError(f"graph_ must be a Graph on the {n} training rows")
        Weights(self.graph_, check(self.weights_, "weights_", ndim=1))
        trust = check(self.trust_, "trust_", shape=(n,))
        if np.any(trust <= 0):  # column sums of positive weights
            raise ValueError("trust_ must be > 0")
        check(self.transduction_, "transduction_", shape=(n,), kinds=self.classes_.dtype.kind)
        check(self.label_distributions_, "label_distributions_", shape=(n, J))
        integer(self.n_iter_, "n_iter_")
        if self.history_ is not None and not isinstance(self.history_, dict):
            raise ValueError("history_ must be a dict or None")
        names = getattr(self, "feature_names_in_", None)
        if names is not None:
            check(names, "feature_names_in_", shape=(c,), kinds="O")
