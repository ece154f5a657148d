"""assignflow: assignment flows for labeling images and graph data, and learning their weights.

The flat public API; see the README and ``docs/`` for a tour. Symbols follow
Zeilmann, Petra & Schnörr, *Learning Linearized Assignment Flows for Image
Labeling*, J. Math. Imaging Vis. 65 (2023).
"""

from . import datasets, plotting, registry
from ._parallel import get_num_threads, set_num_threads
from ._version import __version__
from .classifier import AssignmentFlowClassifier
from .estimators import ImageLabeler
from .features import affinity_features, window_features
from .flows import AssignmentFlow, DeepLinearizedAssignmentFlow, LinearizedAssignmentFlow
from .geometry import AssignmentManifold
from .gradients import (
    AdjointQuadrature,
    ClosedFormLowRank,
    DenseFrechet,
    FiniteDiff,
    GradientEstimator,
    GradientResult,
    StackGradientResult,
)
from .graphs import Graph, GridGraph
from .integrators import (
    Euler,
    ExponentialKrylov,
    FlowIntegrator,
    FlowResult,
    GeometricEuler,
    IntegrationStats,
    Integrator,
    LinearIntegrator,
    LinearizedSequence,
)
from .labeling import label_graph
from .learning import (
    DescentResult,
    Learner,
    LearnResult,
    multiplicative_update,
    riemannian_gradient_descent,
)
from .losses import CompositeLoss, KLLoss, Loss, TangentSpaceRegularizer
from .persistence import load, save
from .predictors import EdgePredictor, Predictor, WeightPredictor
from .similarity import SimilarityOperator, distance_matrix, estimate_rho
from .weights import Weights

__all__ = [
    "AdjointQuadrature",
    "AssignmentFlow",
    "AssignmentFlowClassifier",
    "AssignmentManifold",
    "ClosedFormLowRank",
    "CompositeLoss",
    "DeepLinearizedAssignmentFlow",
    "DenseFrechet",
    "DescentResult",
    "EdgePredictor",
    "Euler",
    "ExponentialKrylov",
    "FiniteDiff",
    "FlowIntegrator",
    "FlowResult",
    "GeometricEuler",
    "GradientEstimator",
    "GradientResult",
    "Graph",
    "GridGraph",
    "ImageLabeler",
    "IntegrationStats",
    "Integrator",
    "KLLoss",
    "LearnResult",
    "Learner",
    "LinearIntegrator",
    "LinearizedAssignmentFlow",
    "LinearizedSequence",
    "Loss",
    "Predictor",
    "SimilarityOperator",
    "StackGradientResult",
    "TangentSpaceRegularizer",
    "WeightPredictor",
    "Weights",
    "__version__",
    "affinity_features",
    "datasets",
    "distance_matrix",
    "estimate_rho",
    "get_num_threads",
    "label_graph",
    "load",
    "multiplicative_update",
    "plotting",
    "registry",
    "riemannian_gradient_descent",
    "save",
    "set_num_threads",
    "window_features",
]
