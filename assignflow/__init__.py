"""assignflow: assignment flows for labeling images and graph data, and learning their weights.

The flat public API; see the README and ``docs/`` for a tour. Symbols follow
Zeilmann, Petra & Schnörr, *Learning Linearized Assignment Flows for Image
Labeling*, J. Math. Imaging Vis. 65 (2023).
"""

from . import datasets, registry
from ._parallel import get_num_threads, set_num_threads
from ._version import __version__
from .flows import AssignmentFlow, LinearizedAssignmentFlow
from .geometry import AssignmentManifold
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
from .similarity import SimilarityOperator, distance_matrix
from .weights import Weights

__all__ = [
    "AssignmentFlow",
    "AssignmentManifold",
    "Euler",
    "ExponentialKrylov",
    "FlowIntegrator",
    "FlowResult",
    "GeometricEuler",
    "Graph",
    "GridGraph",
    "IntegrationStats",
    "Integrator",
    "LinearIntegrator",
    "LinearizedAssignmentFlow",
    "LinearizedSequence",
    "SimilarityOperator",
    "Weights",
    "__version__",
    "datasets",
    "distance_matrix",
    "get_num_threads",
    "registry",
    "set_num_threads",
]
