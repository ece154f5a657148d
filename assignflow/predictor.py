r"""Image features for the weight predictors (the paper's Sect. 4.4).

Learned weights depend on the image they were learned on. To label *unseen*
images, the weights are predicted from local features :math:`f_i` (raw
``(2r+1)×(2r+1)`` windows of the image) with parameters :math:`N` prototypes
:math:`p_j`, tangent vectors :math:`\nu_j \in T_0(\mathbb{R}^{|\mathcal{N}|})` and a
scale :math:`\sigma`:

.. math::
    s_{ij} = e^{-\sigma\|f_i - p_j\|},\qquad
    \hat\Omega_i = \exp_{\mathbb{1}}\Big(\sum_j \frac{s_{ij}}{\sum_l s_{il}}\,\nu_j\Big),

a softmax over the neighbourhood (over the entries inside the image at the
border). The parameters are trained by gradient descent on
:math:`\mathcal{L}(\hat\Omega(\nu, p, \sigma))`: the weight gradient of any
:class:`~assignflow.GradientEstimator` chained with the differential of
:math:`\hat\Omega` (:meth:`WeightPredictor.vjp`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import as_float_array, check_positive_int
from .predictors import WeightPredictor

__all__ = ["WeightPredictor", "affinity_features", "window_features"]

# The predictor classes live in :mod:`assignflow.predictors`; this module keeps the
# image features and the old import path of ``WeightPredictor``.


def window_features(image: Any, radius: int = 1) -> np.ndarray:
    """Raw ``(2r+1)×(2r+1)`` windows around every pixel, flattened: ``(h·w, (2r+1)²·c)``.

    The image is extended by edge replication at the border.
    """
    img = as_float_array(image, "image", ndim=(2, 3))
    if img.ndim == 2:
        img = img[:, :, None]
    if min(img.shape) < 1:
        raise ValueError(f"image must have at least one pixel and channel, got shape {img.shape}")
    h, w = img.shape[:2]
    r = check_positive_int(radius, "radius", minimum=0)
    pad = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    cols = [
        pad[r + dy : r + dy + h, r + dx : r + dx + w]
        for dy in range(-r, r + 1)
        for dx in range(-r, r + 1)
    ]
    return np.concatenate(cols, axis=-1).reshape(h * w, -1)


def affinity_features(representation: Any, radius: int = 1) -> np.ndarray:
    r"""Distances of every pixel to its ``(2r+1)²`` window neighbours: ``(h·w, (2r+1)²)``.

    ``f_ik = ||u_i - u_{i+k}||`` for a per-pixel representation ``u`` (``(h, w)`` or
    ``(h, w, c)``), e.g. the log-assignment of a uniform-weight LAF. The feature is
    label-agnostic -- it says *which* neighbours look alike, not what they look
    like -- so a few predictor prototypes cover all edge configurations (straight
    edges, corners) whatever the labels on either side. The representation is
    extended by edge replication at the border (the entries outside the image are
    masked by the grid anyway).
    """
    u = as_float_array(representation, "representation", ndim=(2, 3))
    if u.ndim == 2:
        u = u[:, :, None]
    h, w = u.shape[:2]
    r = check_positive_int(radius, "radius", minimum=0)
    pad = np.pad(u, ((r, r), (r, r), (0, 0)), mode="edge")
    cols = [
        np.linalg.norm(pad[r + dy : r + dy + h, r + dx : r + dx + w] - u, axis=-1)
        for dy in range(-r, r + 1)
        for dx in range(-r, r + 1)
    ]
    return np.stack(cols, axis=-1).reshape(h * w, -1)
