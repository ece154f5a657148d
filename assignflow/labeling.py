r"""Labeling the nodes of a graph with the linearized assignment flow: node data, seeds, or both.

:func:`label_graph` solves the linearized assignment flow (LAF) on a user's graph.
Each node may carry a *data term* (its distances to label prototypes) and any node
may be a *seed* whose label is known; the flow spreads the evidence along the
graph. :class:`~assignflow.AssignmentFlowClassifier` uses the same construction on
a k-nearest-neighbour graph of the rows of a table.

The flow
--------
On a graph with neighbourhoods :math:`\mathcal{N}_i \ni i` and row-stochastic
weights :math:`\Omega` (:math:`\omega_{ik} > 0` on :math:`\mathcal{N}_i`,
:math:`\sum_k \omega_{ik} = 1`), with distances :math:`D \in \mathbb{R}^{I\times J}`
of the ``I`` nodes to the ``J`` labels and a scale :math:`\rho > 0`, the LAF at the
barycenter is the linear ODE on the tangent space (rows summing to 0)

.. math::
    \dot V = A V + B,\qquad V(0) = 0,\qquad
    A V = R_{S_0}(\Omega V),\qquad B = \Pi_0 S_0 / J,\qquad
    S_0 = \operatorname{softmax}(-\Omega D / \rho),

with the replicator :math:`R_p x = p\odot x - \langle p, x\rangle p` applied row by
row and :math:`\Pi_0 x = x - \operatorname{mean}(x)\mathbb{1}`. Its solution
:math:`V(T) = T\varphi(TA)B`, :math:`\varphi(z) = (e^z - 1)/z`, gives the
assignment :math:`W(T) = \operatorname{softmax}(J\,V(T))` and the labels
:math:`\operatorname{argmax}_j V_{ij}(T)`.

Seeds (clamping)
----------------
A node ``s`` with known label :math:`y_s` is *clamped*: its neighbourhood is
reduced to itself (:math:`\omega_{ss} = 1`) and its data term is peaked,

.. math::
    D_{sj} = \kappa\,\rho\,c_s\,(1 - [j = y_s]),\qquad \kappa = 10,

with a strength :math:`c_s > 0` (1 by default; the classifier's sample weights).
A seed therefore receives nothing from its neighbours: its row obeys
:math:`\dot V_s = R_{S_{0,s}} V_s + B_s` with
:math:`S_{0,s} = \operatorname{softmax}(-D_s/\rho)` peaked at :math:`y_s`, so
:math:`V_s(t)` grows steadily in the direction of its label and
:math:`\operatorname{argmax}_j V_{sj}(T) = y_s` for every :math:`T`: seeds keep
their labels. Every other node ``i`` sees the seeds twice: in its
:math:`S_{0,i}`, where a seed neighbour adds :math:`\omega_{is}\kappa c_s` to the
scaled distance of every wrong label, and through the coupling
:math:`R_{S_{0,i}}(\Omega V)_i`, which carries the seeds' growing
:math:`V_s(t)` along paths of the graph (a path of length :math:`h` contributes
with weight :math:`T^{h+1}/(h+1)!`). Nodes without data (no features) have
:math:`D_i = 0`: only the seeds inform them.

Data term
---------
With prototypes :math:`l_j`, :math:`D_{ij} = \|f_i - l_j\|`. With node features
and seeds but no prototypes, *every seed is a prototype of its label*:
:math:`D_{ij} = \min_{s:\,y_s = j} \|f_i - f_s\|`, the distance to the nearest
seed of label ``j`` (classes that are not compact — rings, moons, several
clusters — keep an informative data term, where a class mean would sit between
the clusters). Nodes without features have :math:`D_i = 0`.

Default weights
---------------
Without ``weights``, :math:`\omega_{ik} \propto 1/|\mathcal{N}_k|` on
:math:`\mathcal{N}_i` (normalised per row): every node ``k`` speaks with a total
weight of about one, shared among its neighbours, so a hub (a node with many
neighbours) speaks to each of them with little weight and a seed placed on a hub
does not swamp the graph — the row-stochastic counterpart of the degree
normalisation of label propagation and spectral methods.

Default scale and horizon
-------------------------
``rho="auto"`` is :func:`~assignflow.estimate_rho` of the nodes' distances
:math:`D` (the median gap between the two nearest labels); without node features
the scale only multiplies the seeds' :math:`\kappa`, and :math:`\rho = 1`.

``T="auto"`` sets :math:`T = c / \hat\lambda` with :math:`c = 6`, where
:math:`\hat\lambda` is the growth rate of the flow's own dynamics, computed for
the flow *without* seeds (every node with its own data term and its whole
neighbourhood): :math:`\hat\lambda = \max(\lambda_\text{Ritz}, 1/J)`, with
:math:`\lambda_\text{Ritz}` the largest real part of the Ritz values of ``A``
from 10 Arnoldi steps started at ``B`` (the Krylov space in which :math:`V(T)`
lives), and :math:`1/J` the rate of a node without evidence: with uniform
:math:`S_0`, :math:`A = \Pi_0\Omega/J`, whose largest eigenvalue is :math:`1/J`
(the Perron eigenvalue of a row-stochastic :math:`\Omega` is 1). Without node
features :math:`T = cJ`. The rule ties the horizon to what the flow amplifies: a
mode of :math:`A` grows like :math:`e^{\lambda t}`, so at :math:`T` the fastest
one has grown by at most :math:`e^{c} \approx 400` — far enough for the seeds'
labels to travel several hops, short of the regime where the dominant mode of
the graph (one label spreading over a whole connected region) overrides data
and seeds: horizons with :math:`T\hat\lambda \gtrsim 15` give nearly constant
labelings. :math:`\hat\lambda` depends on the graph, the weights and the data
term, not on which nodes are seeds.

The constants :math:`\kappa = 10`, :math:`c = 6`, the exponent 1 of the default
weights and the nearest-seed data term were chosen on synthetic problems only
(``make_classification``, blobs, moons, circles at 5 % and 10 % labeled;
stochastic block models and relaxed caveman graphs with two seeds per block),
not on the data sets of ``benchmarks/graphs.py``; the accuracy is flat around
them (:math:`c \in [3, 6]`, exponent :math:`\in [0.5, 1]`).

Cost
----
One LAF solve: :math:`O(m\,\mathrm{nnz}\,J)` per Krylov sub-step (dimension
:math:`m`), plus 10 operator applications for ``T="auto"``. Memory
:math:`O((m + \mathrm{nnz}/I)\,I J)`.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from . import registry
from ._krylov import arnoldi
from ._parallel import blas_single_thread
from ._validation import as_float_array
from .flows import LinearizedAssignmentFlow
from .graphs import Graph
from .integrators import FlowResult, LinearIntegrator
from .similarity import SimilarityOperator, distance_matrix, estimate_rho
from .weights import Weights

__all__ = ["label_graph"]

#: :math:`\kappa`: a seed's scaled distance to the wrong labels is ``κ·c_s``.
KAPPA = 10.0
#: :math:`c` of the horizon rule ``T = c / λ̂``.
HORIZON = 6.0
#: Arnoldi steps of the growth-rate estimate :math:`\hat\lambda` (the basis is as
#: large as that of one step of the default Krylov integrator).
RITZ_DIM = 10
#: Exponent :math:`\beta` of the default weights ``ω_ik ∝ |N_k|^-β``.
DEGREE_POWER = 1.0
#: Node-seed pairs up to which the nearest-seed data term is computed by brute force.
_BRUTE_FORCE_PAIRS = 100_000_000
#: Entries of one block of node-seed distances.
_BLOCK = 1 << 22
#: Largest accepted feature magnitude (larger values overflow the squared distances).
MAX_ABS = 1e150
#: Tolerance of the default Krylov integrator: results must not depend on which
#: other nodes are solved together (the classifier's queries), to well below 1e-7.
_TIGHT_TOL = 1e-12


# --------------------------------------------------------------------------- helpers
def check_magnitude(a: np.ndarray, name: str) -> None:
    """Reject values whose squares would overflow in the distances."""
    if a.size and np.abs(a).max() > MAX_ABS:
        raise ValueError(
            f"{name} has values of magnitude > {MAX_ABS:g} (squared distances would overflow); "
            "rescale it"
        )


def resolve_integrator(integrator: Any) -> LinearIntegrator:
    """A linear integrator; the registered Krylov name gets a tight tolerance."""
    if isinstance(integrator, str) and integrator == "exponential_krylov":
        return registry.integrators.resolve(integrator, tol=_TIGHT_TOL)
    integ = registry.integrators.resolve(integrator)
    if not isinstance(integ, LinearIntegrator):
        raise TypeError(
            f"integrator must be a linear integrator for the LAF (e.g. 'exponential_krylov' "
            f"or 'euler'), got {integ!r}"
        )
    return integ


def as_graph(graph: Any, X: Any = None, graph_params: dict | None = None) -> Graph:
    """An assignflow Graph from a Graph, a sparse adjacency, a networkx graph or a name.

    A registered name is built as ``registry.graphs.resolve(name, X=X, **graph_params)``
    (the factory contract: ``X``'s last axis holds the features, its leading axes index
    the nodes).
    """
    params = {} if graph_params is None else dict(graph_params)
    if isinstance(graph, str):
        if X is None:
            raise ValueError(
                f"graph={graph!r} is a registered graph name, which is built from node "
                "features: pass features (or pass the graph itself)"
            )
        g = registry.graphs.resolve(graph, X=X, **params)
        if not isinstance(g, Graph):
            raise TypeError(
                f"graph {graph!r} must build an assignflow Graph, got {type(g).__name__}"
            )
        return g
    if graph_params:
        raise TypeError(
            "graph_params go with a registered graph name, not with a graph object "
            f"({type(graph).__name__})"
        )
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
        "graph must be an assignflow Graph, a scipy.sparse adjacency matrix, a networkx "
        f"graph or a registered graph name, got {type(graph).__name__}"
    )


def degree_weights(graph: Graph) -> Weights:
    r"""The default weights :math:`\omega_{ik} \propto |\mathcal{N}_k|^{-1}` on each row."""
    deg = graph.degrees.astype(np.float64)
    return Weights.normalized(graph, deg[graph.indices] ** -DEGREE_POWER)


def clamp(weights: Weights, seeds: np.ndarray) -> Weights:
    """The weights with every seed's neighbourhood reduced to the seed itself.

    Rows of non-seeds are kept (so they stay row-stochastic); a seed's row becomes
    the single entry ``ω_ss = 1``.
    """
    g = weights.graph
    if not seeds.any():
        return weights
    keep = ~seeds[g.rows] | (g.rows == g.indices)
    counts = np.add.reduceat(keep.astype(np.int64), g.indptr[:-1])
    indptr = np.concatenate([[0], np.cumsum(counts)])
    values = np.where(seeds[g.rows], 1.0, weights.values)[keep]
    return Weights(Graph(indptr, g.indices[keep]), values)


def seed_distances(
    distances: np.ndarray, labels: np.ndarray, strength: np.ndarray, rho: float
) -> np.ndarray:
    r"""Distances with the seeds' rows replaced by :math:`\kappa\rho c_s(1 - [j = y_s])`."""
    D = np.array(distances, dtype=np.float64)
    seeds = labels >= 0
    J = D.shape[1]
    D[seeds] = (KAPPA * rho * strength[seeds])[:, None] * (1.0 - np.eye(J)[labels[seeds]])
    return D


def nearest_seed_distances(
    features: np.ndarray, seed_features: np.ndarray, seed_labels: np.ndarray, n_labels: int
) -> np.ndarray:
    r"""Data term :math:`D_{ij} = \min_{s:\,y_s = j} \|f_i - f_s\|`: every seed is a prototype.

    Parameters
    ----------
    features : ndarray (n, d)
        Node features.
    seed_features : ndarray (n_seeds, d)
        Features of the seeds.
    seed_labels : ndarray of int (n_seeds,)
        Their labels, each of ``0 .. n_labels - 1`` at least once.
    n_labels : int

    Returns
    -------
    ndarray (n, n_labels)
        Euclidean distance of every node to the nearest seed of each label: exact
        distances in row blocks of at most ``2**22`` entries while
        ``n * n_seeds <= 1e8``, one nearest-neighbour tree per label beyond
        (memory :math:`O(nJ)` either way).
    """
    from scipy.spatial.distance import cdist

    n, m = features.shape[0], seed_features.shape[0]
    if n * m > _BRUTE_FORCE_PAIRS:
        from sklearn.neighbors import NearestNeighbors

        D = np.empty((n, n_labels))
        for j in range(n_labels):
            nn = NearestNeighbors(n_neighbors=1).fit(seed_features[seed_labels == j])
            D[:, j] = nn.kneighbors(features, return_distance=True)[0][:, 0]
        return D
    order = np.argsort(seed_labels, kind="stable")
    S = seed_features[order]
    starts = np.searchsorted(seed_labels[order], np.arange(n_labels))
    D = np.empty((n, n_labels))
    step = max(1, _BLOCK // max(m, 1))
    for a in range(0, n, step):
        block = cdist(features[a : a + step], S)
        D[a : a + step] = np.minimum.reduceat(block, starts, axis=1)
    return D


def growth_rate(flow: LinearizedAssignmentFlow) -> float:
    r"""The growth rate :math:`\hat\lambda` of the LAF's linear part (see the module notes).

    :math:`\hat\lambda = \max(\lambda_\text{Ritz}, 1/J)`: the largest real part of
    the Ritz values of ``A`` from ``RITZ_DIM`` Arnoldi steps started at ``B``, and at
    least the data-free rate :math:`1/J` (with uniform :math:`S_0`,
    :math:`A = \Pi_0\Omega/J`, whose largest eigenvalue is :math:`1/J`).
    """
    J = flow.n_labels
    b = np.ascontiguousarray(flow.B).ravel()  # the flow's precision: float32 halves the basis
    if J < 2 or not np.any(b):
        return 1.0 / J
    with blas_single_thread():  # short BLAS calls: the package's threads, not OpenBLAS's
        res = arnoldi(flow.matvec, b, RITZ_DIM)
    k = res.k
    lam = float(np.linalg.eigvals(np.asarray(res.H[:k, :k], dtype=np.float64)).real.max())
    return max(lam, 1.0 / J)


def auto_horizon(flow: LinearizedAssignmentFlow) -> float:
    r""":math:`T = c/\hat\lambda` (``HORIZON / growth_rate(flow)``)."""
    return HORIZON / growth_rate(flow)


def _check_labels(labels: Any, n_nodes: int, n_labels: int | None) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype == object or not (arr.dtype.kind in "iub" or arr.dtype.kind == "f"):
        raise TypeError(f"labels must hold integers (-1 for unknown), got dtype {arr.dtype}")
    if arr.dtype.kind == "b":
        raise TypeError("labels must hold integers (-1 for unknown), got booleans")
    if arr.ndim != 1 or arr.shape[0] != n_nodes:
        raise ValueError(
            f"labels must have one entry per node of the graph ({n_nodes},), got shape {arr.shape}"
        )
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError("labels must hold integers (-1 for unknown), got non-integral values")
    lab = arr.astype(np.int64)
    if lab.size and lab.min() < -1:
        raise ValueError(f"labels must be -1 (unknown) or a label index >= 0, got {lab.min()}")
    if n_labels is not None and lab.size and lab.max() >= n_labels:
        raise ValueError(
            f"labels must lie in [0, {n_labels}) for {n_labels} prototypes (or be -1), "
            f"got {lab.max()}"
        )
    return lab


def _node_features(features: Any, n_nodes: int | None) -> np.ndarray:
    f = as_float_array(features, "features")
    if f.ndim == 0:
        raise ValueError("features must have 1 or 2 dimensions (or more: (..., d)), got a scalar")
    if f.ndim == 1:
        f = f[:, None]
    elif f.ndim > 2:
        f = f.reshape(-1, f.shape[-1])
    if n_nodes is not None and f.shape[0] != n_nodes:
        raise ValueError(
            f"features must have one row per node of the graph ({n_nodes}), got shape {f.shape}"
        )
    check_magnitude(f, "features")
    return f


def _check_weights(weights: Any, g: Graph) -> Weights:
    if weights is None:
        return degree_weights(g)
    if isinstance(weights, Weights):
        if weights.graph != g:
            raise ValueError("weights must live on the given graph (same neighbourhoods)")
        return weights
    vals = as_float_array(weights, "weights", ndim=1)
    if vals.shape != (g.nnz,):
        raise ValueError(
            f"weights must have one value per stored edge ({g.nnz},), got shape {vals.shape}"
        )
    return Weights(g, vals)


# --------------------------------------------------------------------------- public
@validate_params(
    {
        "graph": "no_validation",  # Graph, sparse matrix, networkx graph or name: checked below
        "features": ["array-like", None],
        "prototypes": ["array-like", None],
        "labels": ["array-like", None],
        "rho": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"}), None],
        "T": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"}), None],
        "weights": [Weights, "array-like", None],
        "graph_params": [dict, None],
        "integrator": [str, LinearIntegrator, type],
        "dtype": "no_validation",  # delegated to SimilarityOperator
        "progress": [callable, None],
    },
    prefer_skip_nested_validation=True,
)
def label_graph(
    graph: Any,
    features: Any = None,
    prototypes: Any = None,
    *,
    labels: Any = None,
    rho: float | str | None = "auto",
    T: float | str | None = "auto",
    weights: Any = None,
    graph_params: dict | None = None,
    integrator: Any = "exponential_krylov",
    dtype: Any = "float64",
    progress: Any = None,
) -> FlowResult:
    r"""Label the nodes of a graph with the linearized assignment flow, from node data and/or seeds.

    Solves :math:`\dot V = A V + B`, :math:`V(0) = 0` up to time :math:`T` with
    :math:`A V = R_{S_0}(\Omega V)`, :math:`B = \Pi_0 S_0/J`,
    :math:`S_0 = \operatorname{softmax}(-\Omega D/\rho)`, where
    :math:`D_{ij} = \|f_i - l_j\|` for nodes with features (without prototypes:
    the distance to the nearest seed of label ``j``) and :math:`D_i = 0` without;
    nodes with a known label (``labels[i] >= 0``) are clamped seeds with
    the peaked data term :math:`D_{sj} = \kappa\rho(1 - [j = y_s])`,
    :math:`\kappa = 10`, and the neighbourhood :math:`\{s\}`. Returns
    :math:`W(T) = \operatorname{softmax}(J V(T))` and its ``argmax`` labels. See
    :mod:`assignflow.labeling` for the construction and the default rules.

    Parameters
    ----------
    graph : Graph, scipy.sparse matrix (n, n), networkx.Graph or str
        The neighbourhoods :math:`\mathcal{N}_i`. A sparse matrix is read as an
        adjacency pattern (``Graph.from_adjacency``: symmetrised, self-loops
        added); a networkx graph uses node order ``list(G)``; a registered graph
        name is built from the features as
        ``registry.graphs.resolve(graph, X=features, **graph_params)``.
    features : array of shape (n,), (n, d) or (..., d), optional
        Node features :math:`f_i`; leading axes of a higher-dimensional array index
        the nodes (row by row). Without features the nodes carry no data term and
        ``labels`` must give seeds.
    prototypes : array of shape (J,) or (J, d), optional
        Label prototypes :math:`l_j` in the feature space. Default (with features
        and labels): every seed is a prototype of its label, and
        :math:`D_{ij}` is the distance to the nearest seed of label ``j``.
    labels : array of int, shape (n,), optional
        Known label of each node: an index into ``prototypes`` (``0 .. J-1``), or
        ``-1`` for an unknown one. Without prototypes, ``J = labels.max() + 1`` and
        every label needs at least one seed. The karate-club case is
        ``label_graph(G, labels=y)``.
    rho : float or "auto", default="auto"
        Scale :math:`\rho > 0` of the distances; ``"auto"`` (or ``None``):
        :func:`~assignflow.estimate_rho` of the nodes' distances to the prototypes
        (1 without features).
    T : float or "auto", default="auto"
        Time horizon :math:`T > 0`; ``"auto"`` (or ``None``):
        :math:`T = 6/\hat\lambda` with the growth rate :math:`\hat\lambda` of the
        flow without seeds (``6J`` without features; see :mod:`assignflow.labeling`).
    weights : Weights or array (nnz,), optional
        :math:`\Omega` (row-stochastic, aligned with the graph's ``indices``).
        Default: :math:`\omega_{ik} \propto 1/|\mathcal{N}_k|` per row.
        Seeds' rows are replaced by the clamp :math:`\omega_{ss} = 1`.
    graph_params : dict, optional
        Options of a registered graph factory (only with a graph name).
    integrator : str or LinearIntegrator, default="exponential_krylov"
        A registered integrator name or instance (the registered Krylov name runs
        with tolerance 1e-12).
    dtype : {"float64", "float32"}, default="float64"
        Working precision of the flow; ``"float32"`` halves the memory of very
        large graphs (see :class:`~assignflow.SimilarityOperator`).
    progress : callable, optional
        Called as ``progress(fraction)`` with the fraction of ``[0, T]`` solved, a
        non-decreasing number in ``[0, 1]`` (from :meth:`LinearizedAssignmentFlow.solve`).

    Returns
    -------
    FlowResult
        ``.W`` (n, J) assignments, ``.V`` tangent vectors, ``.labels`` (n,) label
        indices, ``.T`` the horizon used.

    Raises
    ------
    ValueError, TypeError
        For inputs that do not fit together; the message names the argument.

    Examples
    --------
    Node data and prototypes (no seeds):

    >>> import networkx as nx
    >>> G = nx.barbell_graph(4, 0)
    >>> f = np.r_[np.zeros(4), np.ones(4)] + 0.1
    >>> label_graph(G, f, [0.0, 1.0]).labels.tolist()
    [0, 0, 0, 0, 1, 1, 1, 1]

    Seeds only (one per clique):

    >>> y = np.full(8, -1)
    >>> y[0], y[7] = 0, 1
    >>> label_graph(G, labels=y).labels.tolist()
    [0, 0, 0, 0, 1, 1, 1, 1]
    """
    for name, value in (("rho", rho), ("T", T)):
        if isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be a real number or 'auto', got {value!r}")
    if features is None and labels is None:
        raise ValueError("label_graph needs features (with prototypes), labels (seeds) or both")
    g = as_graph(graph, features, graph_params)
    n = g.n_nodes
    f = None if features is None else _node_features(features, n)
    p = None
    if prototypes is not None:
        if f is None:
            raise ValueError("prototypes need features: pass the node features too")
        p = as_float_array(prototypes, "prototypes", ndim=(1, 2))
        check_magnitude(p, "prototypes")
        if p.ndim == 1:
            p = p[:, None]
        if p.shape[0] < 1:
            raise ValueError("prototypes must hold at least one label, got 0 rows")
        if p.shape[1] != f.shape[1]:
            raise ValueError(
                f"prototypes must have as many columns as features ({f.shape[1]}), "
                f"got shape {p.shape}"
            )
    lab = None
    if labels is not None:
        lab = _check_labels(labels, n, None if p is None else p.shape[0])
        if p is None and not np.any(lab >= 0):
            raise ValueError(
                "labels must mark at least one seed (>= 0) when no prototypes are given"
            )
    elif p is None:
        raise ValueError("features need prototypes (or labels, whose seeds define them)")
    J = p.shape[0] if p is not None else int(lab.max()) + 1
    if p is not None:
        D_feat = distance_matrix(f, p)
    elif f is not None:
        missing = [j for j in range(J) if not np.any(lab == j)]
        if missing:
            raise ValueError(
                f"labels: label {missing[0]} has no seed, so its data term is undefined; "
                "pass prototypes or a seed of every label"
            )
        D_feat = nearest_seed_distances(f, f[lab >= 0], lab[lab >= 0], J)
    else:
        D_feat = np.zeros((n, J))
    if rho is None or isinstance(rho, str):
        rho = estimate_rho(D_feat) if f is not None else 1.0
    om = _check_weights(weights, g)
    integ = resolve_integrator(integrator)
    if dtype is None:
        raise ValueError("dtype must be 'float32' or 'float64', got None")
    base = SimilarityOperator(om, D_feat, rho=float(rho), dtype=dtype)
    if T is None or isinstance(T, str):
        T = auto_horizon(LinearizedAssignmentFlow(base, T=1.0))
    if lab is None or not np.any(lab >= 0):
        sim = base
    else:
        seeds = lab >= 0
        D = seed_distances(D_feat, lab, np.ones(n), float(rho))
        sim = SimilarityOperator(clamp(om, seeds), D, rho=float(rho), dtype=dtype)
    return LinearizedAssignmentFlow(sim, T=float(T)).solve(integ, progress=progress)
