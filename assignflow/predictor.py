r"""Predicting weights from local features (the paper's Sect. 4.4, MATH.md §6).

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

import attrs
import numpy as np

from . import persistence
from ._validation import (
    as_float_array,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
)
from .geometry import _softmax
from .graphs import GridGraph
from .weights import Weights

__all__ = ["WeightPredictor", "affinity_features", "window_features"]


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


def _matrix(name: str):
    def convert(x: Any) -> np.ndarray:
        if np.iscomplexobj(x):
            raise TypeError(f"{name} must be real, got a complex array")
        return as_float_array(x, name, ndim=2, copy=True)

    return convert


@persistence.persistable("WeightPredictor")
@attrs.frozen
class WeightPredictor:
    r"""The weight predictor :math:`\hat\Omega(\nu, p, \sigma)` of the paper's Sect. 4.4.

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
        return self.prototypes.shape[0]

    @property
    def window_size(self) -> int:
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
        f = as_float_array(features, "features", ndim=2)
        if f.shape != (graph.n_nodes, self.prototypes.shape[1]):
            raise ValueError(
                f"features must have shape ({graph.n_nodes}, {self.prototypes.shape[1]}), "
                f"got {f.shape}"
            )
        return f

    def _assignments(self, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances ``d_ij = ||f_i - p_j||`` and ``a_ij = softmax_j(-σ d_ij)``."""
        sq = (
            np.einsum("ij,ij->i", f, f)[:, None]
            - 2.0 * f @ self.prototypes.T
            + np.einsum("ij,ij->i", self.prototypes, self.prototypes)[None, :]
        )
        d = np.sqrt(np.maximum(sq, 0.0))
        return d, _softmax(-self.sigma * d)

    def _logits(self, graph: GridGraph, a: np.ndarray) -> np.ndarray:
        return (a @ self.nu)[graph.valid]

    def predict_weights(self, graph: GridGraph, features: Any) -> Weights:
        r""":math:`\hat\Omega` on ``graph`` from per-pixel ``features`` ``(h·w, d)``."""
        f = self._check(graph, features)
        _, a = self._assignments(f)
        return Weights.from_logits(graph, self._logits(graph, a))

    # ------------------------------------------------------------------ backward
    def vjp(self, graph: GridGraph, features: Any, grad_weights: np.ndarray) -> dict[str, Any]:
        r"""Pull back a weight gradient :math:`\partial\mathcal{L}/\partial\omega`.

        Returns a dict with the gradients ``"prototypes"`` ``(N, d)``, ``"nu"``
        ``(N, K)`` (projected onto :math:`T_0`) and ``"sigma"`` (float).
        """
        f = self._check(graph, features)
        g = as_float_array(grad_weights, "grad_weights")
        if g.shape != (graph.nnz,):
            raise ValueError(f"grad_weights must have shape ({graph.nnz},), got {g.shape}")
        d, a = self._assignments(f)
        om = Weights.from_logits(graph, self._logits(graph, a)).values
        # softmax over each neighbourhood: ∂L/∂z = ω ⊙ (g − <ω, g>)
        wg = om * g
        gz_edges = wg - om * np.repeat(np.add.reduceat(wg, graph.indptr[:-1]), graph.degrees)
        gz = np.zeros((graph.n_nodes, graph.window_size))
        gz[graph.valid] = gz_edges
        grad_nu = a.T @ gz
        grad_nu -= grad_nu.mean(axis=1, keepdims=True)
        c = gz @ self.nu.T  # ∂L/∂a_ij
        e = a * (c - np.einsum("ij,ij->i", a, c)[:, None])  # ∂L/∂(−σ d_ij)
        grad_sigma = -float(np.sum(e * d))
        # ∂L/∂p_j = −σ Σ_i e_ij (p_j − f_i)/d_ij
        coef = -self.sigma * e / np.maximum(d, 1e-300)
        grad_p = coef.sum(axis=0)[:, None] * self.prototypes - coef.T @ f
        return {"prototypes": grad_p, "nu": grad_nu, "sigma": grad_sigma}

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

        ``features``, if given, holds one ``(h·w, d)`` array per image that replaces
        its window features (e.g. :func:`affinity_features`; ``feature_images`` then
        only provide the shapes).
        """
        from sklearn.cluster import KMeans

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
            if np.ndim(img) not in (2, 3) or lab.shape != np.shape(img)[:2]:
                raise ValueError(
                    f"label_images[{k}] must have the shape (h, w) of feature_images[{k}] "
                    f"{np.shape(img)}, got {lab.shape}"
                )
            h, w = lab.shape
            if features is None:
                feats.append(window_features(img, radius))
            else:
                f = as_float_array(features[k], f"features[{k}]", ndim=2)
                if f.shape[0] != h * w:
                    raise ValueError(
                        f"features[{k}] must have one row per pixel ({h * w}), got {f.shape}"
                    )
                feats.append(f)
            g = GridGraph((h, w), radius)
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
