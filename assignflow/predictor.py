"""The old home of the weight predictor and its image features (kept for old imports).

:class:`~assignflow.WeightPredictor` lives in :mod:`assignflow.predictors` with the
other predictors, and :func:`~assignflow.window_features`,
:func:`~assignflow.affinity_features` in :mod:`assignflow.features`.
"""

from __future__ import annotations

from .features import affinity_features, window_features
from .predictors import WeightPredictor

__all__ = ["WeightPredictor", "affinity_features", "window_features"]
