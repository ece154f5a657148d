"""assignflow-extras: an example plugin package for :mod:`assignflow`.

Adds, through entry points (no import needed once installed):

* ``af.registry.graphs["radius"]``: :class:`~assignflow_extras.graphs.RadiusGraph`
* ``af.registry.losses["balanced_kl"]``: :class:`~assignflow_extras.losses.BalancedKLLoss`
* ``af.registry.integrators["expm_multiply"]``:
  :class:`~assignflow_extras.integrators.ExpmMultiply`
* ``af.registry.gradient_estimators["spsa"]``: :class:`~assignflow_extras.gradients.SPSA`

plus the helper :func:`~assignflow_extras.graphs.distance_weights`.
"""

from .gradients import SPSA
from .graphs import RadiusGraph, distance_weights
from .integrators import ExpmMultiply
from .losses import BalancedKLLoss

__version__ = "0.1.0"

__all__ = [
    "SPSA",
    "BalancedKLLoss",
    "ExpmMultiply",
    "RadiusGraph",
    "__version__",
    "distance_weights",
]
