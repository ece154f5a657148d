r"""scikit-learn estimators: :class:`ImageLabeler`.

``fit`` learns, from training images with ground truth, a deep linearized assignment
flow whose weights are *predicted* from each image (so that it labels unseen
images), together with its scales :math:`\rho_\ell` and horizons :math:`h_\ell`;
``predict`` labels images with the learned flow (the paper's Sects. 4.4, 5.2).

Model
    ``n_layers`` LAF layers (:class:`~assignflow.DeepLinearizedAssignmentFlow`):
    layer :math:`\ell` linearises the assignment flow at the previous layer's output
    :math:`W_{\ell-1}` with weights :math:`\hat\Omega_\ell = P_\ell(f^{(\ell)})`
    predicted by a :class:`~assignflow.Predictor` from node features
    :math:`f^{(\ell)}`, scale :math:`\rho_\ell` and horizon :math:`h_\ell`; the data
    term is :math:`D_{ij} = \|x_i - l_j\|` with label prototypes :math:`l_j`.

Features
    ``predictor="edge"`` (default, :class:`~assignflow.EdgePredictor`): the image
    smoothed by Gaussians of the widths ``scales`` (one feature group each), and from
    the second layer on the previous layer's assignment :math:`\sqrt{W_{\ell-1}}`
    (one more group; its Euclidean distances are Hellinger distances between the
    neighbours' assignments — label-agnostic). The weight of an edge then depends on
    how much the two pixels differ at every scale and in their current labeling: a
    learned, multi-scale, label-aware bilateral filter. ``predictor="prototype"``: the
    paper's predictor (:class:`~assignflow.WeightPredictor`) on raw
    ``(2r+1)×(2r+1)`` windows (``features="window"``) or on the affinity features of
    a uniform-weight LAF (``features="assignment"``).

Learning (``fit``)
    1. Label prototypes: the mean pixel value of every class (or given ones).
    2. ``rho="auto"``/``T="auto"``: a small validation of the uniform-weight flow
       on the training images around :func:`~assignflow.estimate_rho` chooses the
       starting point; then :math:`\log\rho_\ell`, :math:`\log h_\ell` are learned
       jointly with the predictors (numbers given instead are kept fixed).
    3. The predictors are initialised from the training images (edge predictor:
       feature scales and a logistic regression of "same label" on the feature
       differences, or the bilateral filter of one feature group if its one-layer
       LAF labels the training images better; prototype predictor: k-means as in
       the paper).
    4. Adam on the mean loss over the training images (:class:`~assignflow.Learner`);
       each step differentiates, per image, the integrator's own forward solve of
       every layer with the gradient estimator (the paper's closed-form low-rank
       gradient by default) — the weights', :math:`\rho`'s and :math:`T`'s gradients
       and the chain through every layer's base point and the features it reads
       (``stop_gradient=True`` treats the features as constants). Per-image work
       runs through joblib (``n_jobs``).
    5. Early stopping on the (tempered) loss of held-out validation images, a smooth
       criterion (their error is recorded too; both use the same forward
       as ``predict``), and the best parameters are kept.
    6. The learning must pay (``keep_start=True``, the default): the start is kept
       instead unless the learned parameters label all given images (training and
       validation) better.

Cost per iteration: per training image and layer one forward and one adjoint Krylov
run, ``O(m · pixels · J)`` time and memory.
"""

from __future__ import annotations

import numbers
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import attrs
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _parallel, persistence, registry
from ._parallel import blas_single_thread, get_num_threads
from ._simplex import replicator, softmax
from ._validation import as_float_array
from .features import affinity_features, gaussian_features, window_features
from .flows import DeepLinearizedAssignmentFlow, LinearizedAssignmentFlow
from .gradients import ClosedFormLowRank, GradientEstimator, _estimate_stack
from .graphs import Graph, GridGraph
from .integrators import ExponentialKrylov, FlowResult, LinearIntegrator
from .learning import Learner
from .losses import Loss
from .predictors import EdgePredictor, Predictor, WeightPredictor
from .similarity import SimilarityOperator, distance_matrix, estimate_rho
from .weights import Weights

__all__ = ["ImageLabeler"]

#: Largest accepted pixel magnitude (larger values overflow the squared distances).
_MAX_ABS = 1e150
#: Largest number of layers of the deep flow.
MAX_LAYERS = 16
#: Hidden units of the edge predictor's perceptron unless ``predictor_params`` says.
DEFAULT_HIDDEN = 8
#: the Krylov dimension of integrator="auto" and gradient_estimator="auto"
AUTO_KRYLOV_DIM = 20
#: Largest horizon: beyond it the flows grow like e^{T·||A||} past the float range.
MAX_T = 1e4


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == "auto"


#: The starting points tried by ``rho="auto"`` (factors of ``estimate_rho``) and
#: ``T="auto"`` (total horizons).
RHO_FACTORS = (0.25, 0.5, 1.0, 2.0)
T_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
#: The bilateral strengths ``b``, the scales (factors of the uniform flow's ``rho``) at
#: which every candidate is judged, and the factors then tried around the best one's:
#: the edge predictor's start is chosen among these (:meth:`ImageLabeler._select_start`).
BILATERAL_B = (0.1, 0.3, 1.0, 3.0, 10.0)
START_RHO_ANCHORS = (1.0, 100.0)
START_RHO_FACTORS = (0.5, 1.0, 2.0)
FEATURES = ("window", "assignment")
_LOG_FLOOR = 1e-12


# --------------------------------------------------------------------------- input
def _as_array(x: Any, name: str) -> np.ndarray:
    try:
        a = np.asarray(x)  # xarray, dask (computed on demand), memmaps, nested lists
    except ValueError as exc:  # ragged nested lists
        raise ValueError(
            f"{name} must be a rectangular array or a list of images ({exc})"
        ) from None
    return a


def _split_images(images: Any, name: str, n_channels: int | None, single: bool | None, nd: int = 2):
    """``(list of (*grid, c) float arrays, was_single)``; a single image or a batch.

    ``nd`` is the number of grid axes (2: images, 3: volumes).
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"{name} must contain at least one image")
        seq, was_single = [_as_array(im, f"{name}[{k}]") for k, im in enumerate(images)], False
    else:
        a = _as_array(images, name)
        if a.dtype.kind not in "biuf":
            raise TypeError(
                f"{name} must be an array (n, *grid[, c]) of numbers or a list of images, got "
                f"dtype {a.dtype}"
            )
        if single is None:
            # told apart by shape: grid or (*grid, c) is one image, (n, *grid[, c]) a batch;
            # an array of nd + 1 axes is one colour image when its last axis is the model's
            # channel count
            if a.ndim == nd:
                single = True
            elif a.ndim == nd + 1:
                single = n_channels is not None and n_channels > 1 and a.shape[-1] == n_channels
            else:
                single = False
        if single:
            seq, was_single = [a], True
        else:
            if a.ndim not in (nd + 1, nd + 2):
                raise ValueError(
                    f"{name} must have {nd} grid axes: one image (*grid[, c]) or a batch "
                    f"(n, *grid[, c]), got shape {a.shape}"
                )
            seq, was_single = list(a), False
        if not seq:
            raise ValueError(f"{name} must contain at least one image")
    out = []
    for k, a in enumerate(seq):
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{name}[{k}] must hold numbers, got dtype {a.dtype}")
        a = a.astype(np.float64)
        if a.ndim == nd:
            a = a[..., None]
        if a.ndim != nd + 1 or min(a.shape) < 1:
            raise ValueError(
                f"{name}[{k}] must have {nd} grid axes and optionally channels, each >= 1, "
                f"got {a.shape}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}[{k}] contains NaN or inf")
        if np.abs(a).max() > _MAX_ABS:
            raise ValueError(f"{name}[{k}] has values of magnitude > {_MAX_ABS:g}; rescale it")
        out.append(a)
    c = {a.shape[-1] for a in out}
    if len(c) > 1:
        raise ValueError(f"{name} must all have the same number of channels, got {sorted(c)}")
    return out, was_single


def _as_label_array(lab: Any, name: str) -> np.ndarray:
    """Class labels: integers, bools or strings; integral floats become int64."""
    a = _as_array(lab, name)
    kind = a.dtype.kind
    if kind == "O":
        flat = a.ravel().tolist()
        if all(isinstance(v, str) for v in flat):
            return a.astype(str)
        if all(isinstance(v, (numbers.Integral, np.integer)) for v in flat):
            return a.astype(np.int64)
        raise TypeError(f"{name} must hold integer or string class labels, got objects")
    if kind == "S":
        return a.astype(str)
    if kind == "f":
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or inf; labels must be integers or strings")
        if not np.all(a == np.round(a)):
            raise ValueError(
                f"{name} must hold integer (or string) class labels, got non-integer floats"
            )
        return a.astype(np.int64)
    if kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds labels >= 2**63, which do not fit int64")
    if kind not in "biuU":
        raise TypeError(f"{name} must hold integer or string class labels, got dtype {a.dtype}")
    return a


def _check_label_images(labels: Any, images: list[np.ndarray], single: bool) -> list[np.ndarray]:
    if single:
        seq = [labels]
    elif isinstance(labels, (list, tuple)):
        seq = list(labels)
    else:
        seq = list(_as_array(labels, "label_images")) if np.ndim(labels) >= 1 else None
    if seq is None:
        raise TypeError("label_images must be an array (n, h, w) or a list of label images")
    if len(seq) != len(images):
        raise ValueError(
            f"label_images must hold one label image per image ({len(images)}), got {len(seq)}"
        )
    out = []
    for k, (lab, im) in enumerate(zip(seq, images, strict=True)):
        a = _as_label_array(lab, f"label_images[{k}]")
        if a.shape != im.shape[:-1]:
            raise ValueError(
                f"label_images[{k}] must have the image's shape {im.shape[:-1]}, got {a.shape}"
            )
        out.append(a)
    kinds = {"string" if a.dtype.kind == "U" else "number" for a in out}
    if len(kinds) > 1:
        raise TypeError("label_images must all hold numbers or all hold strings, not a mix")
    return out


# --------------------------------------------------------------------------- the model
def _smoothed(image: np.ndarray, scales: tuple[float, ...], dtype: Any) -> np.ndarray:
    """The image smoothed at every scale, ``(pixels, n_scales · c)`` in ``dtype``."""
    grid = image.shape[:-1]
    # a Gaussian wider than the grid only averages the replicated border
    sig = [min(s, max(grid)) for s in scales]
    return gaussian_features(image, sig, grid_ndim=len(grid), dtype=dtype)


@attrs.frozen(eq=False)
class _Image:
    """What fitting or predicting needs of one image (computed once)."""

    image: np.ndarray  # (h, w, c)
    graph: GridGraph
    features: np.ndarray  # (pixels, d): the node features every layer reads
    y: np.ndarray | None  # (pixels,) class indices


class _Cropper:
    """Random crops of the training images with about ``batch_pixels`` pixels in all.

    Every iteration trains on one crop of each image, all cut to the same fraction of
    their image (each side scaled by ``fraction ** (1 / ndim)``, at least 32 points or
    the whole side): stochastic gradients whose cost does not grow with the size of the
    training set. The features are cut from those of the whole image, so a crop's
    features do not see its border; the crop's flow does (as an image's flow does).
    """

    def __init__(self, train: list[_Image], batch_pixels: int | None, rng) -> None:
        self.train, self.rng, self.graphs = train, rng, {}
        total = sum(d.features.shape[0] for d in train)
        self.fraction = 1.0 if batch_pixels is None else min(1.0, batch_pixels / total)

    def sample(self) -> list[_Image]:
        if self.fraction >= 1.0:
            return self.train
        return [self._crop(d) for d in self.train]

    def _crop(self, d: _Image) -> _Image:
        shape = d.image.shape[:-1]
        f = self.fraction ** (1.0 / len(shape))
        side = tuple(min(s, max(32, round(s * f))) for s in shape)
        if side == shape:
            return d
        sl = tuple(
            slice(a, a + c)
            for a, c in ((self.rng.randint(s - c + 1), c) for s, c in zip(shape, side, strict=True))
        )
        g = self.graphs.get(side)
        if g is None:
            g = self.graphs[side] = GridGraph(side, d.graph.radius)
        return _cut(d, sl, g)


def _cut(d: _Image, sl: tuple[slice, ...], graph: GridGraph | None = None) -> _Image:
    """The part ``sl`` of a grid image, its features cut from those of the whole image."""
    shape = d.image.shape[:-1]
    image = np.ascontiguousarray(d.image[sl])
    if graph is None:
        graph = GridGraph(image.shape[:-1], d.graph.radius)
    n_f = d.features.shape[1]
    return _Image(
        image=image,
        graph=graph,
        features=np.ascontiguousarray(d.features.reshape(*shape, n_f)[sl].reshape(-1, n_f)),
        y=np.ascontiguousarray(d.y.reshape(shape)[sl]).ravel(),
    )


def _bands(shapes: list[tuple[int, ...]], fraction: float, rng) -> list:
    """A held-out band of every grid image: ``(training part's slices, band mask)``.

    The band spans the whole image along all axes but one, where it covers
    ``fraction`` of the side at a random end (at least one point, and at least
    four points are left for training); the training part is the rest, a
    rectangle. Every image then trains and validates, so the validation sees
    the boundaries of all of them, not those of one held-out image. ``None``
    for an image too small to split (it only trains).
    """
    out = []
    for shape in shapes:
        axes = [a for a, s in enumerate(shape) if s >= 5]
        if not axes or fraction <= 0:
            out.append(None)
            continue
        a = axes[rng.randint(len(axes))]
        s = shape[a]
        width = min(max(1, round(fraction * s)), s - 4)
        at_start = rng.randint(2) == 0
        band = [slice(None)] * len(shape)
        rest = [slice(None)] * len(shape)
        band[a] = slice(0, width) if at_start else slice(s - width, s)
        rest[a] = slice(width, s) if at_start else slice(0, s - width)
        mask = np.zeros(shape, dtype=bool)
        mask[tuple(band)] = True
        out.append((tuple(rest), mask.ravel()))
    return out


@attrs.frozen(eq=False)
class _Model:
    """The learned flow's structure (params are passed separately): forward and backward."""

    n_layers: int
    predictors: tuple[Predictor, ...]  # templates: structure, initial parameters
    reads_previous: bool  # layers >= 2 read sqrt(W_{l-1}) as extra feature columns
    n_labels: int
    integrator: Any
    estimator: Any
    loss: Any
    loss_params: dict
    stop_gradient: bool
    dtype: Any

    # ---------------------------------------------------------------- parameters
    def unpack(self, params: dict) -> tuple[list[Predictor], np.ndarray, np.ndarray, np.ndarray]:
        preds = []
        for ell, p in enumerate(self.predictors):
            own = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(f"L{ell}.")}
            preds.append(p.with_params(own))
        # the learned log-parameters stay in the range where the flows are finite
        rho = np.exp(np.clip(params["log_rho"], -300.0, 300.0))
        T = np.exp(np.clip(params["log_T"], np.log(1e-6), np.log(MAX_T)))
        return preds, rho, T, params["prototypes"]

    def layer_features(self, data: _Image, V_before: np.ndarray | None) -> np.ndarray:
        if not self.reads_previous or V_before is None:
            return data.features
        W = softmax(self.n_labels * np.asarray(V_before, dtype=np.float64))
        return np.concatenate([data.features, np.sqrt(W).astype(data.features.dtype)], axis=1)

    def forward(
        self, params: dict, data: _Image, *, record: bool, progress: Any = None, caches=None
    ):
        """Solve every layer; returns ``(stack, forward, features per layer, predictors)``.

        ``caches``, a list, receives one predictor cache per layer (training). Without
        ``record`` or ``caches`` only ``forward`` (without per-layer results) and the
        predictors are returned: ``(None, forward, None, predictors)``.
        """
        preds, rhos, Ts, protos = self.unpack(params)
        D = distance_matrix(data.image, protos).astype(self.dtype)
        # without a gradient to follow (predict, validation) nothing of a finished layer
        # but its V is kept: large images fit in less memory
        lean = not record and caches is None
        layers, results, feats = [], [], []
        V = None
        K = self.n_layers
        for ell in range(K):
            f = self.layer_features(data, V)
            if caches is not None and isinstance(preds[ell], EdgePredictor):
                caches.append({})
                om = preds[ell].predict_weights(data.graph, f, cache=caches[-1])
            else:
                if caches is not None:
                    caches.append(None)
                om = preds[ell].predict_weights(data.graph, f)
                if lean and self.dtype == np.float32:
                    # the kernels are built in float32 from these values either way
                    om = Weights._unchecked(data.graph, om.values.astype(np.float32))
            sim = SimilarityOperator(om, D, rho=float(rhos[ell]), dtype=self.dtype)
            del om
            if lean:
                del f
                flow = DeepLinearizedAssignmentFlow([sim], T=[float(Ts[ell])]).layer_flow(0, V)
                del sim
                if ell == K - 1:
                    del D  # the flow holds its own copy
            else:
                stack_so_far = DeepLinearizedAssignmentFlow([*layers, sim], T=[*Ts[: ell + 1]])
                flow = stack_so_far.layer_flow(ell, V)

            def part(x: float, ell: int = ell) -> None:
                progress((ell + x) / K)

            res = flow.solve(
                self.integrator, record=record, progress=None if progress is None else part
            )
            del flow
            V = res.V.copy() if V is None else V + res.V
            stats = res.stats
            if lean:
                del res
                continue
            layers.append(sim)
            results.append(res)
            feats.append(f)
        W = softmax(self.n_labels * V)
        if lean:
            fwd = FlowResult(V=V, W=W, T=float(np.sum(Ts)), stats=stats)
            return None, fwd, None, preds
        stack = DeepLinearizedAssignmentFlow(layers, T=[float(t) for t in Ts])
        fwd = FlowResult(V=V, W=W, T=float(np.sum(Ts)), stats=results[-1].stats,
                         layers=tuple(results))  # fmt: skip
        return stack, fwd, feats, preds

    def make_loss(self, y: np.ndarray) -> Loss:
        loss = registry.losses.resolve(self.loss, labels=y, **self.loss_params)
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must resolve to an assignflow Loss, got {loss!r}")
        return loss

    def objective(self, params: dict, data: _Image) -> tuple[float, float, dict]:
        """Loss, training error and the gradients of one image (runs in a joblib worker)."""
        caches: list = []
        stack, fwd, feats, preds = self.forward(params, data, record=True, caches=caches)
        temp = float(np.exp(params["log_temperature"]))
        loss = _Tempered(self.make_loss(data.y), temp)
        hook = None
        pgrads: dict[int, dict] = {}
        if self.reads_previous and not self.stop_gradient:
            J = self.n_labels

            def hook(ell: int, grad_w: np.ndarray) -> np.ndarray:
                pgrads[ell], gf = _vjp(
                    preds[ell], data.graph, feats[ell], grad_w, caches[ell], True
                )
                d0 = data.features.shape[1]
                V_before = sum(r.V for r in fwd.layers[:ell])
                W = softmax(J * np.asarray(V_before, dtype=np.float64))
                sq = np.sqrt(W)
                gW = gf[:, d0:] / (2.0 * np.maximum(sq, 1e-150))
                return J * replicator(W, gW)  # ∂L/∂(Σ V): W = softmax(J Σ V)

        res = _estimate_stack(self.estimator, stack, loss, self.integrator, fwd, hook)
        grads: dict[str, Any] = {}
        for ell, (p, r) in enumerate(zip(preds, res.layers, strict=True)):
            own = pgrads.get(ell)
            if own is None:
                own = _vjp(p, data.graph, feats[ell], r.gradient, caches[ell], False)
            for k, v in own.items():
                grads[f"L{ell}.{k}"] = v
        rhos = np.array([s.rho for s in stack.layers])
        grads["log_rho"] = rhos * np.array([r.rho_gradient for r in res.layers])
        grads["log_T"] = np.array(stack.T) * np.array([r.T_gradient for r in res.layers])
        # D_ij = ||x_i - l_j||: ∂D_ij/∂l_j = (l_j - x_i) / D_ij
        protos = params["prototypes"]
        x = data.image.reshape(-1, protos.shape[1])
        Dg = res.distance_gradient / np.maximum(distance_matrix(x, protos), 1e-12)
        grads["prototypes"] = Dg.sum(axis=0)[:, None] * protos - Dg.T @ x
        # the loss sees V / temperature: ∂L/∂log(temperature) = -<∂L/∂V', V'>
        Vt = fwd.V / temp
        grads["log_temperature"] = -float(np.sum(loss.base.data_gradient(Vt) * Vt))
        err = float(np.mean(np.argmax(fwd.V, axis=1) != data.y))
        return float(res.value), err, grads

    def calibrate(self, params: dict, data: list[_Image]) -> float:
        """The temperature that minimises the loss of the current flow on ``data``."""
        Vs = [self.forward(params, d, record=False)[1].V for d in data]
        losses = [self.make_loss(d.y) for d in data]
        grid = np.exp(np.linspace(np.log(1e-3), np.log(1e4), 36))
        vals = [
            np.mean([f.data_value(V / t) for f, V in zip(losses, Vs, strict=True)]) for t in grid
        ]
        return float(grid[int(np.argmin(vals))])

    def evaluate(
        self, params: dict, data: _Image, mask: np.ndarray | None = None
    ) -> tuple[float, float]:
        """``(tempered loss, error)`` of one held-out image, or of its pixels ``mask``.

        The forward is that of ``predict``, on the whole image.
        """
        fwd = self.forward(params, data, record=False)[1]
        temp = float(np.exp(params["log_temperature"]))
        V, y = (fwd.V, data.y) if mask is None else (fwd.V[mask], data.y[mask])
        loss = self.make_loss(y).data_value(V / temp)
        return float(loss), float(np.mean(np.argmax(V, axis=1) != y))


class _Tempered(Loss):
    """The data term of ``base`` at :math:`V/\tau`: a calibration temperature.

    The labels ``argmax V`` do not depend on :math:`\tau`, so the loss can be
    calibrated without changing the labeling: at long horizons :math:`V(T)` grows
    large, and the plain KL loss of a few confidently wrong pixels would otherwise
    dominate the learning (it lowers the loss by spoiling the labeling).
    """

    def __init__(self, base: Loss, temperature: float) -> None:
        self.base, self.t = base, temperature
        self.labels = getattr(base, "labels", None)

    def data_value(self, V):
        return self.base.data_value(V / self.t)

    def data_gradient(self, V):
        return self.base.data_gradient(V / self.t) / self.t

    def reg_value(self, weights):
        return self.base.reg_value(weights)

    def reg_gradient(self, weights):
        return self.base.reg_gradient(weights)

    def check(self, flow):
        self.base.check(flow)


def _initial_horizons(T: float, K: int) -> np.ndarray:
    """The first layer gets the whole chosen horizon, later layers a tenth of it each.

    A stack of equal layers relinearises early and settles on vertices before the
    evidence is pooled (worse than one LAF of the same total horizon); starting from
    the chosen LAF plus short refining layers, the stack is as good as that LAF at
    the start and the learning can only improve on it.
    """
    return np.array([T] + [0.1 * T] * (K - 1))


def _image_pool(data, n_labels: int) -> ThreadPoolExecutor | None:
    """Threads over the images if they are small, else ``None``.

    The kernels run serially on small images (and thread on large ones): small images
    are spread over the package's threads instead.
    """
    small = max(d.features.shape[0] for d in data) * n_labels < _parallel._MIN_PARALLEL
    n_threads = min(len(data), get_num_threads()) if small else 1
    return ThreadPoolExecutor(n_threads) if n_threads > 1 else None


def _labeling_error(model: _Model, params: dict, data: list, pool=None) -> float:
    """The fraction of wrongly labeled pixels of all images in ``data`` (``predict``'s forward)."""

    def wrong(d) -> int:
        V = model.forward(params, d, record=False)[1].V
        return int(np.count_nonzero(np.argmax(V, axis=1) != d.y))

    counts = map(wrong, data) if pool is None else pool.map(wrong, data)
    return sum(counts) / sum(d.y.size for d in data)


def _best_horizon(flows, ys, Ts, integ, pool=None) -> tuple[float, float]:
    """``(error, T)``: the horizon of the sorted ``Ts`` with the lowest mean error of ``flows``.

    The horizons by continued integration (the LAF is autonomous), and no longer ones
    once the error has risen twice. ``pool``: an executor for the images' solves.
    """
    xs = [None] * len(flows)
    t_done, rising, last = 0.0, 0, np.inf
    best = (np.inf, Ts[0])
    for T in Ts:

        def step(k: int, T: float = T, t_done: float = t_done) -> float:
            f = flows[k]
            xs[k], _ = integ.integrate(f.aslinearoperator(), f.B.ravel(), T - t_done, xs[k])
            return np.mean(np.argmax(xs[k].reshape(f.shape), axis=1) != ys[k])

        errs = list(
            map(step, range(len(flows))) if pool is None else pool.map(step, range(len(flows)))
        )
        t_done = T
        err = float(np.mean(errs))
        if err < best[0] - 1e-12:
            best = (err, T)
        rising = rising + 1 if err > last else 0
        last = err
        if rising >= 2:
            break
    return best


def _vjp(pred, graph, features, grad, cache, both: bool):
    """The predictor's pull-back, reusing its forward cache where it keeps one."""
    if cache is not None:
        if both:
            return pred.vjp_both(graph, features, grad, cache=cache)
        return pred.vjp(graph, features, grad, cache=cache)
    return pred.vjp_both(graph, features, grad) if both else pred.vjp(graph, features, grad)


def _objective_of(model: _Model, params: dict, data: _Image):
    return model.objective(params, data)


# --------------------------------------------------------------------------- estimator
@persistence.persistable("ImageLabeler")
class ImageLabeler(ClassifierMixin, BaseEstimator):
    """Label images with a (deep) linearized assignment flow whose weights are predicted.

    See the module documentation for the model, the features and the learning.

    Parameters
    ----------
    prototypes : array (J, c), default=None
        Label prototypes (colours); integer labels ``0..J-1`` then index them
        (labels absent from the training images are still predicted). ``None``:
        the mean pixel value of each class in the training images.
    rho : "auto" or float, default="auto"
        Scale :math:`\\rho` of the distances (every layer). ``"auto"``: chosen on the
        training images around :func:`~assignflow.estimate_rho` and then learned; a
        number is used as given.
    T : "auto" or float, default="auto"
        Horizon of the first layer (later layers start at a tenth of it each).
        ``"auto"``: chosen on the training images and then learned; a number is
        used as given (not learned).
    n_layers : int, default=2
        Layers of the deep flow (1 is the paper's LAF; at most 16).
    predictor : {"edge", "prototype"}, str or Predictor class, default="edge"
        The weight predictor (a registered name in ``af.registry.predictors``).
    predictor_params : dict, default=None
        Options of the predictor's initialisation (edge: ``hidden`` units of its
        perceptron, 8 by default, 0 for the log-linear model; prototype:
        ``strength``, ``sigma``, ``max_samples``).
    scales : tuple of float, default=(0.0, 1.0, 2.0, 4.0)
        Widths of the Gaussians that smooth the image into the edge predictor's
        feature groups (0: the image itself).
    stop_gradient : bool, default=False
        Treat the features a layer reads from the previous layer's output as
        constants (no gradient through them).
    learn_prototypes : bool, default=False
        Also learn the label prototypes :math:`l_j` (through :math:`D`).
    radius : "auto" or int, default="auto"
        Window radius ``r`` of the grid neighbourhoods (and of the prototype
        predictor's windows). ``"auto"``: 1 or 2, chosen with :math:`\\rho` and
        :math:`T` on the training images (``radius_``).
    grid_ndim : int, default=2
        Grid axes of an image: 2 for images ``(h, w[, c])``, 3 for volumes
        ``(d, h, w[, c])`` (with ``(2r+1)³`` windows).
    graph : str or callable, default="grid"
        The pixels' graph: ``"grid"`` (the ``(2r+1)^ndim`` window of ``radius``), or
        any registered graph factory (``af.registry.graphs``, e.g. a plugin's), called
        per image as ``resolve(graph, X=image, **graph_params)`` with the image of
        shape ``(*grid, c)``; the edge predictor works on any graph.
    graph_params : dict, default=None
        Options of a graph factory other than ``"grid"``.
    loss : str or Loss class, default="kl"
        The data term, built per training image as
        ``af.registry.losses.resolve(loss, labels=y, **loss_params)``.
    loss_params : dict, default=None
        Further options of the loss.
    features : {"window", "assignment"}, default="window"
        Input of the prototype predictor (``predictor="prototype"`` only): raw
        windows, or the affinity features of a uniform-weight LAF's log-assignment
        (``feature_rho``, ``feature_T``).
    feature_rho : float, default=1.0
        :math:`\\rho` of that uniform-weight LAF.
    feature_T : float, default=30.0
        Its horizon.
    n_prototypes : int, default=50
        Number :math:`N` of the prototype predictor's prototypes.
    integrator : "auto", str or LinearIntegrator, default="auto"
        The integrator of every layer, in training and prediction alike.
        ``"auto"``: ``ExponentialKrylov(krylov_dim=20)``. The learned horizons reach
        :math:`T \\approx 30`, where a Krylov space of 20 takes fewer, longer sub-steps
        than the paper's 10 (about half the time of a training iteration, at the
        same accuracy: the sub-steps are error-controlled). A name is resolved with
        the registry's defaults.
    gradient_estimator : "auto", str or GradientEstimator, default="auto"
        How the gradients of the integrator's forward solves are computed.
        ``"auto"``: ``ClosedFormLowRank(krylov_dim=20)`` (its adjoint sub-steps, as
        above).
    max_iter : int, default=100
        Training iterations (Adam steps).
    batch_pixels : int or None, default=32768
        Pixels (grid points) per training iteration: when the training images hold
        more, every iteration trains on one random crop of each image, all crops cut
        to the same fraction of their image (at least 32 points a side), so that an
        iteration's cost does not grow with the training set (stochastic gradients;
        validation uses the whole held-out images). ``None``: whole images. Only on
        the grid graph (``graph="grid"``).
    learning_rate : float, default=0.05
        Adam's step.
    averaging : float in [0, 1), default=0.0
        Decay of an exponential average of the iterates that the validation then
        scores and selects instead of the iterates themselves (0: off). With
        stochastic crops every step is noisy; the average is a steadier candidate.
        (On the quality benchmark 0.9 lowered the error on 8 of 14 tasks and raised
        it on 4, by as much in sum: not the default.)
    keep_start : bool, default=True
        Keep the start (the selected initial predictors, scales and horizons) unless
        the learned parameters label all given images — training and validation,
        whole — better: the learning must pay on the images it was fit on, where it
        has the advantage. ``False``: the iterate of lowest validation loss, whatever
        its error. (On the quality benchmark it kept the start on 6 of 14 tasks,
        lowering the error on 3 and raising it on 1.)
    validation_fraction : float, default=0.2
        Fraction of the training images held out for early stopping (at least
        one image when ``fit`` gets two or more and the fraction is positive), or,
        with ``validation="regions"``, of one side of every image.
    validation : {"images", "regions"}, default="images"
        What is held out: whole training images, or a band at one end of every
        image (grid graphs; axis and end at random), which then trains on the
        rest — a rectangle — and validates on the band, labeled within the whole
        image by ``predict``'s forward: the validation sees every image's
        boundaries, and a single training image is validated too (at the cost of
        labeling every image for each validation). Other graphs hold out images.
    n_iter_no_change : int, default=20
        Stop when the validation loss has not improved for this many iterations.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split and the predictors' initialisation.
    verbose : int, default=0
        Print one line per training iteration.
    n_jobs : int or None, default=None
        Parallel per-image gradient work through joblib.
    dtype : {"float64", "float32"}, default="float64"
        Working precision of every flow, in training (float32 gradients: Krylov
        bases and contractions in single precision) and prediction (half the memory
        of labeling very large images).
    callback : callable, default=None
        ``callback(iteration, record)`` after every training iteration; ``record``
        holds ``"loss"``, ``"error"``, ``"val_loss"``, ``"val_error"``, ``"time"`` and
        ``"max_iter"`` (the validation entries when images are held out).
        Returning ``True`` stops the training.

    Attributes
    ----------
    classes_ : ndarray (J,)
        The labels seen in ``fit``.
    prototypes_ : ndarray (J, c)
        The label prototypes :math:`l_j`.
    predictors_ : tuple of Predictor
        The learned predictor of every layer.
    predictor_ : Predictor
        The first layer's predictor.
    rho_ : ndarray (n_layers,)
        The scale :math:`\\rho_\\ell` of every layer.
    T_ : ndarray (n_layers,)
        The horizon :math:`h_\\ell` of every layer.
    radius_ : int
        The window radius used.
    temperature_ : float
        The calibration temperature :math:`\\tau` of the training loss, which is taken
        at :math:`V/\\tau` (the labels do not depend on it; :meth:`predict_proba`
        returns the flow's assignment :math:`W(T)` itself).
    history_ : dict of str -> ndarray
        Per iteration: training loss and error, validation loss and error (the
        training figures when no image is held out), time.
    n_iter_ : int
        Training iterations run.
    best_iter_ : int
        The iteration whose parameters were kept (1: the start, see Learning 6).
    n_features_in_ : int
        Channels of the images.

    Examples
    --------
    >>> import assignflow as af
    >>> X, y = af.datasets.make_voronoi("colors", 3, (24, 24), 0.3, random_state=0)
    >>> lab = af.ImageLabeler(max_iter=2, random_state=0).fit(X, y)
    >>> lab.predict(X).shape
    (3, 24, 24)
    >>> lab.predict(X[0]).shape  # one image
    (24, 24)
    """

    _parameter_constraints: ClassVar[dict] = {
        "prototypes": ["array-like", None],
        "rho": [
            StrOptions({"auto"}),
            Interval(numbers.Real, np.finfo(np.float64).tiny, None, closed="left"),
        ],
        "T": [StrOptions({"auto"}), Interval(numbers.Real, 0, MAX_T, closed="right")],
        "n_layers": [Interval(numbers.Integral, 1, MAX_LAYERS, closed="both")],
        "predictor": [str, type, Predictor],
        "predictor_params": [dict, None],
        "scales": ["array-like"],
        "stop_gradient": ["boolean"],
        "learn_prototypes": ["boolean"],
        "radius": [StrOptions({"auto"}), Interval(numbers.Integral, 0, 16, closed="both")],
        "grid_ndim": [Interval(numbers.Integral, 1, 3, closed="both")],
        "graph": [str, callable],
        "graph_params": [dict, None],
        "loss": [str, type, Loss],
        "loss_params": [dict, None],
        "features": [StrOptions(set(FEATURES))],
        "feature_rho": [Interval(numbers.Real, 0, None, closed="neither")],
        "feature_T": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_prototypes": [Interval(numbers.Integral, 1, 10_000, closed="both")],
        "integrator": [str, type, LinearIntegrator],
        "gradient_estimator": [str, type, GradientEstimator],
        "max_iter": [Interval(numbers.Integral, 1, 100_000, closed="both")],
        "batch_pixels": [Interval(numbers.Integral, 1024, None, closed="left"), None],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "averaging": [Interval(numbers.Real, 0, 1, closed="left")],
        "keep_start": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "validation": [StrOptions({"images", "regions"})],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "n_jobs": [numbers.Integral, None],
        "dtype": [StrOptions({"float64", "float32"})],
        "callback": [callable, None],
    }

    def __init__(
        self,
        *,
        prototypes: Any = None,
        rho: Any = "auto",
        T: Any = "auto",
        n_layers: int = 2,
        predictor: Any = "edge",
        predictor_params: dict | None = None,
        scales: Any = (0.0, 1.0, 2.0, 4.0),
        stop_gradient: bool = False,
        learn_prototypes: bool = False,
        radius: Any = "auto",
        grid_ndim: int = 2,
        graph: Any = "grid",
        graph_params: dict | None = None,
        loss: Any = "kl",
        loss_params: dict | None = None,
        features: str = "window",
        feature_rho: float = 1.0,
        feature_T: float = 30.0,
        n_prototypes: int = 50,
        integrator: Any = "auto",
        gradient_estimator: Any = "auto",
        max_iter: int = 100,
        batch_pixels: int | None = 32768,
        learning_rate: float = 0.05,
        averaging: float = 0.0,
        keep_start: bool = True,
        validation_fraction: float = 0.2,
        validation: str = "images",
        n_iter_no_change: int = 20,
        random_state: Any = None,
        verbose: int = 0,
        n_jobs: int | None = None,
        dtype: str = "float64",
        callback: Any = None,
    ) -> None:
        self.prototypes = prototypes
        self.rho = rho
        self.T = T
        self.n_layers = n_layers
        self.predictor = predictor
        self.predictor_params = predictor_params
        self.scales = scales
        self.stop_gradient = stop_gradient
        self.learn_prototypes = learn_prototypes
        self.radius = radius
        self.grid_ndim = grid_ndim
        self.graph = graph
        self.graph_params = graph_params
        self.loss = loss
        self.loss_params = loss_params
        self.features = features
        self.feature_rho = feature_rho
        self.feature_T = feature_T
        self.n_prototypes = n_prototypes
        self.integrator = integrator
        self.gradient_estimator = gradient_estimator
        self.max_iter = max_iter
        self.batch_pixels = batch_pixels
        self.learning_rate = learning_rate
        self.averaging = averaging
        self.keep_start = keep_start
        self.validation_fraction = validation_fraction
        self.validation = validation
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs
        self.dtype = dtype
        self.callback = callback

    # ------------------------------------------------------------------ settings
    def _validate_params(self) -> None:
        """scikit-learn's validation of the constraints table, and no bools for numbers."""
        super()._validate_params()
        for name in (
            "rho", "T", "n_layers", "n_prototypes", "max_iter", "radius", "learning_rate",
            "averaging",
        ):  # fmt: skip
            if isinstance(getattr(self, name), (bool, np.bool_)):  # sklearn's Interval admits bools
                raise TypeError(f"{name} must be a number, not a bool, got {getattr(self, name)}")

    def _components(self):
        """The resolved integrator, estimator and predictor class (unknown names fail early)."""
        integ = (
            ExponentialKrylov(krylov_dim=AUTO_KRYLOV_DIM)
            if _is_auto(self.integrator)
            else registry.integrators.resolve(self.integrator)
        )
        if not isinstance(integ, LinearIntegrator):
            raise TypeError(
                "integrator must be a linear integrator of the LAF (e.g. 'exponential_krylov' "
                f"or 'euler'), got {integ!r}"
            )
        est = (
            ClosedFormLowRank(krylov_dim=AUTO_KRYLOV_DIM)
            if _is_auto(self.gradient_estimator)
            else registry.gradient_estimators.resolve(self.gradient_estimator)
        )
        if not isinstance(est, GradientEstimator):
            raise TypeError(f"gradient_estimator must be a GradientEstimator, got {est!r}")
        pcls = self.predictor
        if isinstance(pcls, str):
            pcls = registry.predictors.get(pcls)
        elif isinstance(pcls, Predictor):
            pcls = type(pcls)
        if not (isinstance(pcls, type) and issubclass(pcls, (EdgePredictor, WeightPredictor))):
            raise TypeError(
                "predictor must be 'edge', 'prototype' or one of their classes (ImageLabeler "
                f"builds the features these predictors read), got {self.predictor!r}"
            )
        scales = tuple(float(s) for s in np.atleast_1d(np.asarray(self.scales, dtype=float)))
        if not scales or any(not (np.isfinite(s) and 0 <= s <= 100) for s in scales):
            raise ValueError(f"scales must be widths in [0, 100], got {self.scales!r}")
        if isinstance(self.loss, str):
            registry.losses.get(self.loss)  # an unknown name fails before the training
        return integ, est, pcls, scales

    def _graph(self, image: np.ndarray):
        if self.graph == "grid":
            return GridGraph(image.shape[:-1], self.radius_)
        g = registry.graphs.resolve(self.graph, X=image, **(self.graph_params or {}))
        if not isinstance(g, Graph) or g.n_nodes != image[..., 0].size:
            raise ValueError(
                f"graph {self.graph!r} must build an assignflow Graph on the image's "
                f"{image[..., 0].size} pixels, got {g!r}"
            )
        return g

    def _data(self, image: np.ndarray, y: np.ndarray | None, pcls, scales, protos) -> _Image:
        g = self._graph(image)
        if issubclass(pcls, WeightPredictor) and not isinstance(g, GridGraph):
            raise ValueError(
                "predictor='prototype' needs the grid graph (weight patches); use "
                "predictor='edge' with other graphs"
            )
        if issubclass(pcls, EdgePredictor):
            F = _smoothed(image, scales, self.dtype)
        elif self.features == "window":
            F = window_features(image, self.radius_, grid_ndim=self.grid_ndim, dtype=self.dtype)
        else:
            F = _assignment_features(image, protos, self.radius_, self.feature_rho,
                                     self.feature_T, self.dtype)  # fmt: skip
        return _Image(image=image, graph=g, features=F, y=y)

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, images: Any, label_images: Any) -> ImageLabeler:
        """Learn the predictors, scales, horizons (and prototypes) from training images.

        Parameters
        ----------
        images : array (n, h, w[, c]), list of images, or one image (h, w[, c])
            Training images (sizes may differ between images in a list).
        label_images : array (n, h, w), list of int arrays, or one (h, w) array
            Ground-truth labels (integers or strings).

        Returns
        -------
        self
        """
        from joblib import Parallel, delayed

        integ, est, pcls, scales = self._components()
        single = None
        if not isinstance(images, (list, tuple)):
            single = np.ndim(label_images) == self.grid_ndim and not isinstance(
                label_images, (list, tuple)
            )
        imgs, single = _split_images(images, "images", None, single, self.grid_ndim)
        labs = _check_label_images(label_images, imgs, single)
        rng = check_random_state(self.random_state)
        classes = np.unique(np.concatenate([lab.ravel() for lab in labs]))
        if self.prototypes is not None:
            n_protos = len(np.asarray(self.prototypes))
            if classes.dtype.kind in "iu":
                if classes.min() < 0 or classes.max() >= n_protos:
                    raise ValueError(
                        f"label_images must hold labels in 0..{n_protos - 1} (indices into the "
                        f"{n_protos} prototypes), got values from {classes.min()} to "
                        f"{classes.max()}"
                    )
                classes = np.arange(n_protos)
        self.classes_ = classes
        ys = [np.searchsorted(classes, lab).ravel() for lab in labs]
        c = imgs[0].shape[-1]
        J = len(classes)
        if self.prototypes is None:
            pix = np.concatenate([im.reshape(-1, c) for im in imgs])
            yall = np.concatenate(ys)
            protos = np.stack([pix[yall == j].mean(axis=0) for j in range(J)])
        else:
            protos = as_float_array(self.prototypes, "prototypes", ndim=(1, 2), copy=True)
            if protos.ndim == 1:
                protos = protos[:, None]
            if protos.shape != (J, c):
                raise ValueError(
                    f"prototypes must have shape ({J}, {c}) for {J} classes and {c} "
                    f"channel(s), got {protos.shape}"
                )
            if np.abs(protos).max() > _MAX_ABS:
                raise ValueError(f"prototypes has values of magnitude > {_MAX_ABS:g}")
        self.n_features_in_ = c

        n = len(imgs)
        order = rng.permutation(n)
        if self.validation == "regions" and self.graph == "grid":
            bands = _bands([im.shape[:-1] for im in imgs], self.validation_fraction, rng)
            val_idx, train_idx = [], order
        else:
            bands = [None] * n
            n_val = int(np.ceil(self.validation_fraction * n)) if n >= 2 else 0
            n_val = min(n_val, n - 1)  # keep at least one training image
            val_idx, train_idx = order[:n_val], order[n_val:]
        probe = []
        for i in train_idx[:2]:
            if bands[i] is None:
                probe.append((imgs[i], ys[i]))
            else:
                sl = bands[i][0]
                probe.append((imgs[i][sl], ys[i].reshape(imgs[i].shape[:-1])[sl].ravel()))
        radius0, rho0, T0 = self._initial_hyperparameters(probe, protos, integ)
        self.radius_ = radius0
        data = [self._data(imgs[i], ys[i], pcls, scales, protos) for i in range(n)]
        train = [data[i] if bands[i] is None else _cut(data[i], bands[i][0]) for i in train_idx]
        # (image, mask of its held-out pixels or None for all of them)
        val = [(data[i], None) for i in val_idx]
        val += [(data[i], bands[i][1]) for i in train_idx if bands[i] is not None]

        K = self.n_layers
        model0 = self._model(None, K, J, integ, est, pcls)
        preds, rho0, T0 = self._initial_predictors(
            pcls, train, protos, rho0, T0, model0, rng, scales
        )
        model = self._model(preds, K, J, integ, est, pcls)
        params: dict[str, np.ndarray] = {}
        for ell, p in enumerate(preds):
            params.update({f"L{ell}.{k}": v for k, v in p.params().items()})
        params["log_rho"] = np.full(K, np.log(rho0))
        params["log_T"] = np.log(_initial_horizons(T0, K))
        params["prototypes"] = protos
        params["log_temperature"] = np.array(0.0)
        params["log_temperature"] = np.array(np.log(model.calibrate(params, train)))
        frozen = set()
        if self.rho != "auto":
            frozen.add("log_rho")
        if self.T != "auto":
            frozen.add("log_T")
        if not self.learn_prototypes:
            frozen.add("prototypes")

        if self.n_jobs is None:
            pool = _image_pool(train, J)

            def run(p, batch):
                if pool is None:
                    return [_objective_of(model, p, d) for d in batch]
                return list(pool.map(lambda d: _objective_of(model, p, d), batch))
        else:
            pool = None
            parallel = Parallel(n_jobs=self.n_jobs)

            def run(p, batch):
                return parallel(delayed(_objective_of)(model, p, d) for d in batch)

        crop = _Cropper(train, self.batch_pixels, rng) if self.graph == "grid" else None

        def objective(p):
            res = run(p, crop.sample() if crop is not None else train)
            loss = float(np.mean([r[0] for r in res]))
            err = float(np.mean([r[1] for r in res]))
            grads = {k: sum(r[2][k] for r in res) / len(res) for k in res[0][2] if k not in frozen}
            return loss, grads, {"error": err}

        validate = None
        if val:

            def validate(p):
                # the (tempered) loss is a smooth criterion; the error of a few held-out
                # images jumps with every region that flips
                figures = [model.evaluate(p, d, mask) for d, mask in val]
                return {
                    "val_loss": float(np.mean([f[0] for f in figures])),
                    "val_error": float(np.mean([f[1] for f in figures])),
                }

        learner = Learner(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            n_iter_no_change=self.n_iter_no_change,
            average=float(self.averaging),
            verbose=self.verbose,
        )
        try:
            # BLAS threads only slow the Krylov kernels' BLAS-2 calls down; the limit is set
            # here, in the calling thread, where OpenBLAS honours it for the worker threads
            with blas_single_thread():
                res = learner.run(
                    objective,
                    params,
                    validate=validate,
                    callback=self.callback,
                    lr_scale={"prototypes": 0.2},
                    name="ImageLabeler",
                    select="val_loss",
                )
                learned, best_iter = res.params, res.best_iter
                # the learning must pay on the images it was fit on: the start is kept
                # unless the learned parameters label all given images better (in-sample,
                # which favours them; one validation image alone is a poor judge of it)
                if (
                    self.keep_start
                    and best_iter > 1
                    and _labeling_error(model, params, data, pool)
                    <= _labeling_error(model, learned, data, pool)
                ):
                    learned, best_iter = params, 1
        finally:
            if pool is not None:
                pool.shutdown()
        if res.stop_reason == "max_iter":
            warnings.warn(
                f"ImageLabeler: max_iter={self.max_iter} reached before the validation loss "
                f"stopped improving for n_iter_no_change={self.n_iter_no_change} iterations; "
                "increase max_iter",
                ConvergenceWarning,
                stacklevel=2,
            )
        preds, rhos, Ts, protos = model.unpack(learned)
        self.predictors_ = tuple(preds)
        self.predictor_ = preds[0]
        self.rho_ = np.asarray(rhos, dtype=float)
        self.T_ = np.asarray(Ts, dtype=float)
        self.prototypes_ = np.asarray(protos, dtype=float)
        self.temperature_ = float(np.exp(learned["log_temperature"]))
        self.history_ = {k: v for k, v in res.history.items()}
        self.history_.setdefault("val_error", self.history_.get("error"))
        self.n_iter_ = res.n_iter
        self.best_iter_ = best_iter
        return self

    def _model(self, preds, K, J, integ, est, pcls) -> _Model:
        return _Model(
            n_layers=K,
            predictors=tuple(preds) if preds is not None else (),
            reads_previous=issubclass(pcls, EdgePredictor),
            n_labels=J,
            integrator=integ,
            estimator=est,
            loss=self.loss,
            loss_params=dict(self.loss_params or {}),
            stop_gradient=self.stop_gradient,
            dtype=np.dtype(self.dtype),
        )

    def _initial_hyperparameters(self, probe, protos, integ) -> tuple[int, float, float]:
        """``(radius, rho, T)``: given values, or the best uniform-weight flow on the probe.

        ``"auto"`` values are chosen jointly by the error of the uniform-weight LAF on
        (at most two) training images: the radii 1 and 2 (larger windows pool the
        evidence of wide regions faster, smaller ones keep thin structures), the scales
        ``RHO_FACTORS × estimate_rho(D)`` and the horizons ``T_GRID``.
        """
        radii = [1, 2] if self.radius == "auto" else [int(self.radius)]
        D = [distance_matrix(im, protos) for im, _ in probe]
        base = estimate_rho(np.concatenate(D))
        rhos = [base * f for f in RHO_FACTORS] if self.rho == "auto" else [float(self.rho)]
        Ts = list(T_GRID) if self.T == "auto" else [float(self.T)]
        if len(radii) * len(rhos) * len(Ts) == 1:
            return radii[0], rhos[0], Ts[0]
        Ts = sorted(Ts)
        best = (np.inf, radii[0], rhos[0], Ts[0])
        for r in radii:
            graphs = [GridGraph(im.shape[:-1], r) for im, _ in probe]
            for rho in rhos:
                flows = [
                    LinearizedAssignmentFlow(
                        SimilarityOperator(Weights.uniform(g), Dk, rho=rho, dtype=self.dtype)
                    )
                    for g, Dk in zip(graphs, D, strict=True)
                ]
                err, T = _best_horizon(flows, [y for _, y in probe], Ts, integ)
                if err < best[0] - 1e-12:
                    best = (err, r, rho, T)
        return best[1], best[2], best[3]

    def _initial_predictors(self, pcls, train, protos, rho0, T0, model0, rng, scales):
        K = self.n_layers
        seed = int(rng.randint(2**31 - 1))
        options = dict(self.predictor_params or {})
        if issubclass(pcls, EdgePredictor):
            options.setdefault("hidden", DEFAULT_HIDDEN)
        c = train[0].image.shape[-1]
        J = len(protos)
        if issubclass(pcls, WeightPredictor):
            if self.features == "window":
                # the paper: k-means on the windows of the noise-free images
                init_feats = [
                    window_features(
                        protos[d.y].reshape(d.image.shape), self.radius_, grid_ndim=self.grid_ndim
                    )
                    for d in train
                ]
            else:
                init_feats = [d.features for d in train]
            p = pcls.initialize_from_images(
                [d.image for d in train],
                [d.y.reshape(d.image.shape[:-1]) for d in train],
                features=init_feats,
                radius=self.radius_,
                n_prototypes=self.n_prototypes,
                random_state=seed,
                **{"sigma": 1.0 if self.features == "window" else 5.0, **options},
            )
            return [p] * K, rho0, T0
        groups = [(s * c, (s + 1) * c) for s in range(len(scales))]
        d0 = len(scales) * c
        graphs = [d.graph for d in train]
        labels = [d.y for d in train]
        first = pcls.initialize(
            graphs, [d.features for d in train], labels, groups, random_state=seed, **options
        )
        first, rho0, T0 = self._select_start(first, train, protos, rho0, T0, model0.integrator)
        preds = [first]
        if K > 1:
            # the previous layer's assignment: from the first layer at the start
            feats = []
            for d in train:
                Dk = distance_matrix(d.image, protos)
                sim = SimilarityOperator(first.predict_weights(d.graph, d.features), Dk, rho=rho0)
                h1 = _initial_horizons(T0, K)[0]
                V = LinearizedAssignmentFlow(sim, T=h1).solve(model0.integrator).V
                feats.append(model0.layer_features(d, V) if model0.reads_previous else d.features)
            later = pcls.initialize(
                graphs, feats, labels, [*groups, (d0, d0 + J)], random_state=seed + 1, **options
            )
            preds += [later] * (K - 1)
        return preds, rho0, T0

    def _select_start(self, pred, train, protos, rho0, T0, integ):
        r"""The first edge predictor's start: ``(predictor, rho, T)`` of lowest training error.

        Candidates for :math:`\theta`: the logistic regression of
        :meth:`~assignflow.EdgePredictor.initialize`, and the bilateral filter of every
        feature group, :math:`\theta = b\,e_f` for ``b`` in ``BILATERAL_B`` (the edge
        features are scaled by their median, so this is
        :math:`\exp(-b\|g_i - g_k\|^2/\operatorname{median})` on the image smoothed
        at that width), judged by the one-layer LAF's error on every training image
        at the horizons ``T_GRID`` (``T="auto"``) — as the bilateral baseline a user
        would tune. With ``rho="auto"`` every candidate is judged at the uniform
        flow's scale times each of ``START_RHO_ANCHORS`` (far above the distances'
        scale the likelihoods are nearly uniform and the flow is nearly a diffusion
        of the distances by the weights, which the tuned bilateral LAF picks under
        heavy noise), and the best one then also at ``START_RHO_FACTORS`` times its
        scale; a given ``rho`` is kept. The logistic regression is kept unless a
        candidate is strictly better.
        """
        thetas = [pred.theta]
        for f in range(len(pred.groups)):
            for b in BILATERAL_B:
                th = np.zeros(len(pred.groups))
                th[f] = b
                thetas.append(th)
        Ts = sorted(T_GRID) if self.T == "auto" else [T0]
        D = [distance_matrix(d.image, protos) for d in train]
        ys = [d.y for d in train]
        best = (np.inf, pred, rho0, T0)

        def trial(cand, rho):
            nonlocal best
            flows = [
                LinearizedAssignmentFlow(
                    SimilarityOperator(
                        cand.predict_weights(d.graph, d.features), Dk, rho=rho, dtype=self.dtype
                    )
                )
                for d, Dk in zip(train, D, strict=True)
            ]
            err, T = _best_horizon(flows, ys, Ts, integ, pool)
            if err < best[0] - 1e-12:
                best = (err, cand, rho, T)

        # the strengths at the uniform flow's scale and far above it, then the scales of
        # the best one
        pool = _image_pool(train, len(protos))
        try:
            with blas_single_thread():
                auto = self.rho == "auto"
                for a in START_RHO_ANCHORS if auto else (1.0,):
                    for th in thetas:
                        trial(pred.with_params({"theta": th}), rho0 * a)
                winner, rho_w = best[1], best[2]
                for f in START_RHO_FACTORS if auto else ():
                    if f != 1.0:
                        trial(winner, rho_w * f)
        finally:
            if pool is not None:
                pool.shutdown()
        return best[1], best[2], best[3]

    # ------------------------------------------------------------------ predict
    def _check_predict(self, images: Any) -> tuple[list[np.ndarray], bool]:
        check_is_fitted(self, "predictors_")
        imgs, single = _split_images(images, "images", self.n_features_in_, None, self.grid_ndim)
        if imgs[0].shape[-1] != self.n_features_in_:
            raise ValueError(
                f"images must have {self.n_features_in_} channel(s) like the training images, "
                f"got {imgs[0].shape[-1]}"
            )
        return imgs, single

    def _fitted_model(self):
        integ, est, _, scales = self._components()
        model = self._model(self.predictors_, len(self.predictors_), len(self.classes_), integ,
                            est, type(self.predictors_[0]))  # fmt: skip
        params: dict[str, np.ndarray] = {}
        for ell, p in enumerate(self.predictors_):
            params.update({f"L{ell}.{k}": v for k, v in p.params().items()})
        params["log_rho"] = np.log(self.rho_)
        params["log_T"] = np.log(self.T_)
        params["prototypes"] = self.prototypes_
        return model, params, type(self.predictors_[0]), scales

    def _solve(self, images: Any, progress: Any = None):
        imgs, single = self._check_predict(images)
        model, params, pcls, scales = self._fitted_model()
        out = []
        for k, im in enumerate(imgs):
            data = self._data(im, None, pcls, scales, self.prototypes_)

            def part(x: float, k: int = k) -> None:
                progress((k + x) / len(imgs))

            fwd = model.forward(params, data, record=False,
                                progress=None if progress is None else part)[1]  # fmt: skip
            out.append((im, fwd))
        return out, single

    def predict_weights(self, images: Any) -> list[Weights]:
        """The first layer's predicted weights :math:`\\hat\\Omega_1` of every image.

        Parameters
        ----------
        images : array or list of images, or one image
            As for :meth:`predict`.

        Returns
        -------
        list of Weights
        """
        imgs, _ = self._check_predict(images)
        _, _, pcls, scales = self._fitted_model()
        out = []
        for im in imgs:
            data = self._data(im, None, pcls, scales, self.prototypes_)
            out.append(self.predictors_[0].predict_weights(data.graph, data.features))
        return out

    def predict_proba(self, images: Any, *, progress: Any = None) -> Any:
        """Assignments :math:`W(T)`: ``(n, h, w, J)``, a list if sizes differ, or ``(h, w, J)``.

        Parameters
        ----------
        images : array (n, h, w[, c]), list of images, or one image (h, w[, c])
            A 3-d array is one colour image when its last axis has the training
            images' channel count, otherwise a batch of grey images.
        progress : callable, optional
            Called as ``progress(fraction)`` while the images are labeled.

        Returns
        -------
        ndarray or list of ndarray
        """
        sols, single = self._solve(images, progress)
        out = [fwd.W.reshape(*im.shape[:-1], -1) for im, fwd in sols]
        if single:
            return out[0]
        return np.stack(out) if len({o.shape for o in out}) == 1 else out

    def predict(self, images: Any, *, progress: Any = None) -> Any:
        """Labels with values in :attr:`classes_`: ``(n, h, w)``, a list, or ``(h, w)``.

        Parameters
        ----------
        images : array (n, h, w[, c]), list of images, or one image (h, w[, c])
            See :meth:`predict_proba`.
        progress : callable, optional
            Called as ``progress(fraction)`` while the images are labeled.

        Returns
        -------
        ndarray or list of ndarray
        """
        proba = self.predict_proba(images, progress=progress)
        if isinstance(proba, list):
            return [self.classes_[np.argmax(p, axis=-1)] for p in proba]
        return self.classes_[np.argmax(proba, axis=-1)]

    def score(self, images: Any, label_images: Any, sample_weight: Any = None) -> float:
        """Pixel accuracy (fraction of correctly labeled pixels over all images).

        Parameters
        ----------
        images : array or list of images, or one image
            As for :meth:`predict`.
        label_images : array or list of label images
            The true labels, of the fitted labels' kind.
        sample_weight : array (n,), optional
            Weights of the images' pixels.

        Returns
        -------
        float
        """
        check_is_fitted(self, "predictors_")
        imgs, single = self._check_predict(images)
        labs = _check_label_images(label_images, imgs, single)
        if (labs[0].dtype.kind == "U") != (self.classes_.dtype.kind == "U"):
            raise TypeError(
                "label_images must hold labels of the kind seen in fit "
                f"({'strings' if self.classes_.dtype.kind == 'U' else 'numbers'})"
            )
        pred = self.predict(imgs)
        if sample_weight is None:
            w = np.ones(len(labs))
        else:
            w = as_float_array(sample_weight, "sample_weight", ndim=1)
            if w.shape != (len(labs),):
                raise ValueError(
                    f"sample_weight must have one weight per image ({len(labs)},), got {w.shape}"
                )
            if np.any(w < 0) or not np.any(w > 0):
                raise ValueError("sample_weight must be >= 0 with at least one positive weight")
        correct = sum(wk * np.sum(p == lab) for wk, p, lab in zip(w, pred, labs, strict=True))
        return float(correct / sum(wk * lab.size for wk, lab in zip(w, labs, strict=True)))

    # ------------------------------------------------------------------ persistence hook
    def _check_fitted_state(self) -> None:
        """Validate the fitted attributes of a loaded model (called by :func:`~assignflow.load`).

        A model file that loads predicts: everything ``predict`` relies on is checked.
        """
        _, _, _, scales = self._components()  # unknown names fail here, not at predict
        check, J = persistence.check_fitted_array, len(self.classes_)
        c = persistence.check_fitted_int(self.n_features_in_, "n_features_in_", minimum=1)
        check(self.prototypes_, "prototypes_", shape=(J, c), max_abs=_MAX_ABS)
        persistence.check_fitted_int(self.n_iter_, "n_iter_")
        persistence.check_fitted_int(self.best_iter_, "best_iter_")
        preds = self.predictors_
        if (
            not isinstance(preds, tuple)
            or not 1 <= len(preds) <= MAX_LAYERS
            or type(preds[0]) not in (EdgePredictor, WeightPredictor)
            or any(type(p) is not type(preds[0]) for p in preds)
        ):
            raise ValueError(
                f"predictors_ must be a tuple of 1 to {MAX_LAYERS} predictors of one class "
                "(EdgePredictor or WeightPredictor)"
            )
        if not isinstance(self.predictor_, Predictor):
            raise ValueError("predictor_ must be a Predictor")
        for name in ("rho_", "T_"):
            if np.any(check(getattr(self, name), name, shape=(len(preds),)) <= 0):
                raise ValueError(f"{name} must hold one value > 0 per layer")
        if np.any(self.T_ > MAX_T):
            raise ValueError(f"T_ must be <= {MAX_T:g} per layer (the flows overflow beyond)")
        window = (2 * self.radius_ + 1) ** self.grid_ndim
        for ell, p in enumerate(preds):
            if isinstance(p, EdgePredictor):
                # layer features: the smoothed image, then also the previous assignment
                ok = p.bias.size == window and p.n_features_in <= c * len(scales) + J * (ell > 0)
            else:
                dim = window * c if self.features == "window" else window
                ok = p.window_size == window and p.prototypes.shape[1] == dim
                ok = ok and float(np.abs(p.prototypes).max()) <= _MAX_ABS  # squares overflow
            if not ok:
                raise ValueError(
                    f"predictors_[{ell}] does not match radius, scales, features, "
                    "n_features_in_ and classes_"
                )
        if not isinstance(self.history_, dict):
            raise ValueError("history_ must be a dict")


def _assignment_features(image, prototypes, radius, feature_rho, feature_T, dtype):
    """Affinity features of the uniform-weight LAF's floored, centred log-assignment."""
    g = GridGraph(image.shape[:-1], radius)
    D = distance_matrix(image, prototypes)
    sim = SimilarityOperator(Weights.uniform(g), D, rho=feature_rho, dtype=dtype)
    W = LinearizedAssignmentFlow(sim, T=feature_T).solve("exponential_krylov").W
    L = np.log(np.maximum(W, _LOG_FLOOR))
    L -= L.mean(axis=1, keepdims=True)
    L /= -np.log(_LOG_FLOOR)
    grid = image.shape[:-1]
    return affinity_features(L.reshape(*grid, -1), radius, grid_ndim=len(grid), dtype=dtype)
