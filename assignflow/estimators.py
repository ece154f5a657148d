"""scikit-learn estimators: :class:`ImageLabeler`.

``fit`` learns label prototypes and the weight predictor of the paper's Sect. 4.4
from training images with ground truth; ``predict`` labels unseen images with the
linearized assignment flow whose weights the predictor estimates from the image
itself (MATH.md §6).

Algorithm of ``fit``
    1. Label prototypes: the mean pixel value of every class (or given ones).
    2. Distances ``D`` of every pixel to the prototypes; per-pixel features, once per
       image: ``features="window"``: raw ``(2r+1)²`` windows of the image;
       ``features="assignment"``: :func:`~assignflow.affinity_features` of the
       (floored, centred) log-assignment ``log W(T_f)`` of the uniform-weight LAF
       (``feature_rho``, ``feature_T``) -- a denoised, label-agnostic edge
       descriptor. Only the predictor's input changes; the LAF's data term still
       uses ``D``, and the features are constants of the training (the gradient
       chain is unchanged).
    3. Predictor initialisation: k-means prototypes on the features of the
       noise-free training images (the prototypes' colours painted with the ground
       truth) for ``"window"``, of the training images themselves for
       ``"assignment"``; tangent vectors pointing to same-label neighbours.
    4. Adam steps on the mean loss over the training images; each step computes,
       per image, the weight gradient of the LAF with a gradient estimator
       (the paper's closed-form low-rank gradient by default) and pulls it back
       through the predictor. Per-image work runs through joblib (``n_jobs``), so
       ``joblib.parallel_config(backend="dask")`` distributes it.
    5. Early stopping on the error of held-out validation images.

Cost per iteration: one forward and one adjoint Krylov run per training image,
``O(m · pixels · J)`` time and memory.
"""

from __future__ import annotations

import numbers
import time
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from . import persistence, registry
from ._validation import as_float_array
from .flows import LinearizedAssignmentFlow
from .gradients import GradientEstimator
from .graphs import GridGraph
from .integrators import LinearIntegrator
from .losses import KLLoss
from .predictor import WeightPredictor, affinity_features, window_features
from .similarity import SimilarityOperator, distance_matrix
from .weights import Weights

__all__ = ["ImageLabeler"]

#: Largest accepted pixel magnitude (larger values overflow the squared distances).
_MAX_ABS = 1e150


def _check_images(images: Any, name: str = "images") -> list[np.ndarray]:
    """A list of float images ``(h, w)`` or ``(h, w, c)``, same channel count."""
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise ValueError(
                f"{name} must have shape (n, h, w) or (n, h, w, c), got {images.shape}"
            )
        seq = list(images)
    elif isinstance(images, (list, tuple)):
        seq = list(images)
    else:
        raise TypeError(f"{name} must be an array (n, h, w[, c]) or a list of images")
    if not seq:
        raise ValueError(f"{name} must contain at least one image")
    out = []
    for k, im in enumerate(seq):
        a = np.asarray(im)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{name}[{k}] must hold numbers, got dtype {a.dtype}")
        a = a.astype(np.float64)
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3 or a.shape[0] < 1 or a.shape[1] < 1 or a.shape[2] < 1:
            raise ValueError(
                f"{name}[{k}] must be (h, w) or (h, w, c) with h, w, c >= 1, got {np.shape(im)}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}[{k}] contains NaN or inf")
        if np.abs(a).max() > _MAX_ABS:
            # squared distances of such values overflow to inf
            raise ValueError(f"{name}[{k}] has values of magnitude > {_MAX_ABS:g}; rescale it")
        out.append(a)
    c = {a.shape[2] for a in out}
    if len(c) > 1:
        raise ValueError(f"{name} must all have the same number of channels, got {sorted(c)}")
    return out


def _check_label_images(labels: Any, images: list[np.ndarray]) -> list[np.ndarray]:
    seq = list(labels) if isinstance(labels, (np.ndarray, list, tuple)) else None
    if seq is None:
        raise TypeError("label_images must be an array (n, h, w) or a list of label images")
    if len(seq) != len(images):
        raise ValueError(
            f"label_images must hold one label image per image ({len(images)}), got {len(seq)}"
        )
    out = []
    for k, (lab, im) in enumerate(zip(seq, images, strict=True)):
        a = _as_label_array(lab, f"label_images[{k}]")
        if a.shape != im.shape[:2]:
            raise ValueError(
                f"label_images[{k}] must have the image's shape {im.shape[:2]}, got {a.shape}"
            )
        out.append(a)
    kinds = {"string" if a.dtype.kind == "U" else "number" for a in out}
    if len(kinds) > 1:
        raise TypeError("label_images must all hold numbers or all hold strings, not a mix")
    return out


def _as_label_array(lab: Any, name: str) -> np.ndarray:
    """Class labels: integers, bools or strings; integral floats become int64."""
    try:
        a = np.asarray(lab)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{name} must be a rectangular (h, w) array ({exc})") from None
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
    if kind not in "biuU":
        raise TypeError(f"{name} must hold integer or string class labels, got dtype {a.dtype}")
    return a


class _Adam:
    """Adam on a dict of arrays (plain gradient descent with per-coordinate scaling)."""

    def __init__(self, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self.t = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> dict:
        self.t += 1
        out = {}
        for k, g in grads.items():
            g = np.asarray(g, dtype=float)
            m = self.m.get(k, np.zeros_like(g)) * self.b1 + (1 - self.b1) * g
            v = self.v.get(k, np.zeros_like(g)) * self.b2 + (1 - self.b2) * g * g
            self.m[k], self.v[k] = m, v
            mh = m / (1 - self.b1**self.t)
            vh = v / (1 - self.b2**self.t)
            out[k] = params[k] - self.lr * mh / (np.sqrt(vh) + self.eps)
        return out


FEATURES = ("window", "assignment")
_LOG_FLOOR = 1e-12


def _image_features(image, prototypes, radius, features, feature_rho, feature_T, dtype="float64"):
    """The predictor's input ``(h·w, d)`` for one image (a constant of the training)."""
    if features == "window":
        return window_features(image, radius)
    # "assignment": a denoised representation computed without learning
    g = GridGraph(image.shape[:2], radius)
    D = distance_matrix(image, prototypes)
    sim = SimilarityOperator(Weights.uniform(g), D, rho=feature_rho, dtype=dtype)
    W = LinearizedAssignmentFlow(sim, T=feature_T).solve("exponential_krylov").W
    # centred log-assignment, floored and scaled to [-1, 1]: unlike W itself (saturated
    # at T_f = 30) it keeps the uniform LAF's confidence, while the floor bounds the
    # contribution of negligible labels
    L = np.log(np.maximum(W, _LOG_FLOOR))
    L -= L.mean(axis=1, keepdims=True)
    L /= -np.log(_LOG_FLOOR)
    return affinity_features(L.reshape(*image.shape[:2], -1), radius)


def _predicted_flow(predictor, image, F, prototypes, rho, T, radius, dtype="float64"):
    """The LAF of ``image`` with the weights the predictor estimates from features ``F``."""
    g = GridGraph(image.shape[:2], radius)
    D = distance_matrix(image, prototypes)
    om = predictor.predict_weights(g, F)
    sim = SimilarityOperator(om, D, rho=rho, dtype=dtype)
    return LinearizedAssignmentFlow(sim, T=T), g


def _image_gradient(predictor, image, F, y, prototypes, rho, T, radius, estimator):
    """Loss, error and predictor gradient of one training image (runs in a joblib worker)."""
    flow, g = _predicted_flow(predictor, image, F, prototypes, rho, T, radius)
    r = estimator.estimate(flow, KLLoss(y))
    err = float(np.mean(np.argmax(r.V, axis=1) != y))
    return r.value, err, predictor.vjp(g, F, r.gradient)


@persistence.persistable("ImageLabeler")
class ImageLabeler(ClassifierMixin, BaseEstimator):
    """Label images with a linearized assignment flow whose weights are predicted.

    Parameters
    ----------
    prototypes : array (J, c), default=None
        Label prototypes (colours); integer labels ``0..J-1`` then index them
        (labels absent from the training images are still predicted). ``None``:
        the mean pixel value of each class in the training images.
    rho : float, default=0.1
        Scale :math:`\\rho` of the distances.
    T : float, default=3.0
        Time horizon of the LAF.
    radius : int, default=1
        Window radius ``r`` of the neighbourhoods and of the features.
    features : {"window", "assignment"}, default="window"
        Input of the weight predictor: raw ``(2r+1)²`` windows of the image (the
        paper's Sect. 4.4), or the :func:`~assignflow.affinity_features` of the
        uniform-weight LAF's log-assignment ``log W(T_f)`` (floored at 1e-12,
        centred). ``"assignment"`` suits very noisy images, whose raw windows carry
        little edge information (then a smaller ``rho`` than the uniform LAF's,
        e.g. 0.3, works better).
    feature_rho : float, default=1.0
        :math:`\\rho` of the uniform-weight LAF of ``features="assignment"``.
    feature_T : float, default=30.0
        Time horizon :math:`T_f` of that LAF.
    n_prototypes : int, default=50
        Number :math:`N` of predictor prototypes.
    integrator : str or LinearIntegrator, default="exponential_krylov"
        Used by ``predict``.
    gradient_estimator : str or GradientEstimator, default="closed_form_low_rank"
    max_iter : int, default=100
        Training iterations (Adam steps).
    learning_rate : float, default=0.05
    validation_fraction : float, default=0.2
        Fraction of the training images held out for early stopping (at least
        one image when ``fit`` gets two or more and the fraction is positive).
    n_iter_no_change : int, default=15
        Stop when the validation error has not improved for this many iterations.
    random_state : int, RandomState or None, default=None
    verbose : int, default=0
    n_jobs : int or None, default=None
        Parallel per-image gradient work through joblib.
    dtype : {"float64", "float32"}, default="float64"
        Working precision of the flows solved by ``predict``/``predict_proba``:
        ``"float32"`` halves the memory of labeling very large images (see
        :class:`~assignflow.SimilarityOperator`). Gradients always use float64.

    Attributes
    ----------
    classes_ : ndarray (J,)
        The labels seen in ``fit``.
    prototypes_ : ndarray (J, c)
    predictor_ : WeightPredictor
    history_ : dict of str -> ndarray
        Per iteration: training loss and error, validation error, time.
    n_iter_ : int
    best_iter_ : int

    Examples
    --------
    >>> import assignflow as af
    >>> X, y = af.datasets.make_voronoi("colors", 2, (24, 24), 0.3, random_state=0)
    >>> lab = af.ImageLabeler(max_iter=2, n_prototypes=5, random_state=0).fit(X, y)
    >>> lab.predict(X).shape
    (2, 24, 24)
    """

    def __init__(
        self,
        *,
        prototypes: Any = None,
        rho: float = 0.1,
        T: float = 3.0,
        radius: int = 1,
        features: str = "window",
        feature_rho: float = 1.0,
        feature_T: float = 30.0,
        n_prototypes: int = 50,
        integrator: Any = "exponential_krylov",
        gradient_estimator: Any = "closed_form_low_rank",
        max_iter: int = 100,
        learning_rate: float = 0.05,
        validation_fraction: float = 0.2,
        n_iter_no_change: int = 15,
        random_state: Any = None,
        verbose: int = 0,
        n_jobs: int | None = None,
        dtype: str = "float64",
    ) -> None:
        self.prototypes = prototypes
        self.rho = rho
        self.T = T
        self.radius = radius
        self.features = features
        self.feature_rho = feature_rho
        self.feature_T = feature_T
        self.n_prototypes = n_prototypes
        self.integrator = integrator
        self.gradient_estimator = gradient_estimator
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs
        self.dtype = dtype

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        def pos(name, integer=False, allow_zero=False):
            v = getattr(self, name)
            kind = numbers.Integral if integer else numbers.Real
            if isinstance(v, bool) or not isinstance(v, kind):
                raise TypeError(
                    f"{name} must be {'an integer' if integer else 'a number'}, got {v!r}"
                )
            if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
                raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {v!r}")

        if not isinstance(self.features, str) or self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {self.features!r}")
        for name in ("rho", "T", "learning_rate", "feature_rho", "feature_T"):
            pos(name)
        for name in ("n_prototypes", "max_iter", "n_iter_no_change"):
            pos(name, integer=True)
        pos("radius", integer=True, allow_zero=True)
        vf = self.validation_fraction
        if isinstance(vf, bool) or not isinstance(vf, numbers.Real):
            raise TypeError(f"validation_fraction must be a number in [0, 1), got {vf!r}")
        if not (0 <= vf < 1):
            raise ValueError(f"validation_fraction must be in [0, 1), got {vf}")
        for name in ("verbose",):
            if not isinstance(getattr(self, name), numbers.Integral):
                raise TypeError(f"{name} must be an integer or bool, got {getattr(self, name)!r}")
        if self.n_jobs is not None and (
            isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, numbers.Integral)
        ):
            raise TypeError(f"n_jobs must be None or an integer, got {self.n_jobs!r}")
        rs = self.random_state
        if not (
            rs is None
            or isinstance(rs, (np.random.RandomState, np.random.Generator))
            or (isinstance(rs, numbers.Integral) and not isinstance(rs, bool))
        ):
            raise TypeError(
                f"random_state must be None, an integer, a RandomState or a Generator, got {rs!r}"
            )
        if isinstance(rs, numbers.Integral) and rs < 0:
            raise ValueError(f"random_state must be a non-negative integer, got {rs}")
        if not isinstance(self.dtype, str) or self.dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32', got {self.dtype!r}")
        # unknown names fail here, with a close-name suggestion, not after training
        integ = registry.integrators.resolve(self.integrator)
        if not isinstance(integ, LinearIntegrator):
            raise TypeError(
                "integrator must be a linear integrator of the LAF (e.g. 'exponential_krylov' "
                f"or 'euler'), got {integ!r}"
            )
        est = registry.gradient_estimators.resolve(self.gradient_estimator)
        if not isinstance(est, GradientEstimator):
            raise TypeError(f"gradient_estimator must be a GradientEstimator, got {est!r}")
        if self.prototypes is not None:
            p = as_float_array(self.prototypes, "prototypes", ndim=(1, 2))
            if p.shape[0] < 1 or p.size < 1:
                raise ValueError(f"prototypes must hold at least one label, got shape {p.shape}")
            if np.abs(p).max() > _MAX_ABS:
                raise ValueError(f"prototypes has values of magnitude > {_MAX_ABS:g}")

    # ------------------------------------------------------------------ fit
    def fit(self, images: Any, label_images: Any) -> ImageLabeler:
        """Learn label prototypes and the weight predictor from training images.

        Parameters
        ----------
        images : array (n, h, w[, c]) or list of images
            Noisy training images (sizes may differ between images).
        label_images : array (n, h, w) or list of int arrays
            Ground-truth labels.
        """
        from joblib import Parallel, delayed

        self._check_params()
        imgs = _check_images(images)
        labs = _check_label_images(label_images, imgs)
        rng = np.random.default_rng(
            self.random_state
            if not isinstance(self.random_state, np.random.RandomState)
            else self.random_state.randint(2**31 - 1)
        )
        classes = np.unique(np.concatenate([lab.ravel() for lab in labs]))
        if self.prototypes is not None:
            n_protos = len(np.asarray(self.prototypes))
            if classes.dtype.kind in "iu":
                # given prototypes: integer labels index them, whether or not every
                # label occurs in the training images
                if classes.min() < 0 or classes.max() >= n_protos:
                    raise ValueError(
                        f"label_images must hold labels in 0..{n_protos - 1} (indices into the "
                        f"{n_protos} prototypes), got values from {classes.min()} to "
                        f"{classes.max()}"
                    )
                classes = np.arange(n_protos)
        self.classes_ = classes
        ys = [np.searchsorted(classes, lab).ravel() for lab in labs]
        c = imgs[0].shape[2]
        if self.prototypes is None:
            pix = np.concatenate([im.reshape(-1, c) for im in imgs])
            yall = np.concatenate(ys)
            protos = np.stack([pix[yall == j].mean(axis=0) for j in range(len(classes))])
        else:
            protos = np.asarray(self.prototypes, dtype=float)
            if protos.ndim == 1:
                protos = protos[:, None]
            if protos.shape != (len(classes), c):
                raise ValueError(
                    f"prototypes must have shape ({len(classes)}, {c}) for {len(classes)} classes "
                    f"and {c} channel(s), got {protos.shape}"
                )
        self.prototypes_ = protos
        self.n_features_in_ = c

        n = len(imgs)
        order = rng.permutation(n)
        n_val = (
            int(np.ceil(self.validation_fraction * n)) if n >= 2 and self.validation_fraction else 0
        )
        val_idx, train_idx = order[:n_val], order[n_val:]
        feats = [self._features(im, protos) for im in imgs]
        if self.features == "window":
            init_feats = [
                window_features(protos[ys[i]].reshape((*labs[i].shape, c)), self.radius)
                for i in train_idx
            ]
        else:
            # the denoised features are reliable enough to cluster directly
            init_feats = [feats[i] for i in train_idx]
        pred = WeightPredictor.initialize_from_images(
            [imgs[i] for i in train_idx],
            [ys[i].reshape(labs[i].shape) for i in train_idx],
            features=init_feats,
            # affinity features lie in [0, ~1.2]: sigma = 5 makes the prototype softmax
            # selective from the start (with sigma = 1 the weights barely move)
            sigma=1.0 if self.features == "window" else 5.0,
            radius=self.radius,
            n_prototypes=self.n_prototypes,
            random_state=int(rng.integers(2**31 - 1)),
        )
        est = registry.gradient_estimators.resolve(self.gradient_estimator)
        opt = _Adam(self.learning_rate)
        hist = {"loss": [], "error": [], "val_error": [], "time": []}
        best = (np.inf, pred, 0)
        t0 = time.perf_counter()
        since_best = 0
        it = 0
        stopped_early = False
        parallel = Parallel(n_jobs=self.n_jobs)
        for it in range(1, self.max_iter + 1):
            res = parallel(
                delayed(_image_gradient)(
                    pred, imgs[i], feats[i], ys[i], protos, self.rho, self.T, self.radius, est
                )
                for i in train_idx
            )
            loss = float(np.mean([r[0] for r in res]))
            err = float(np.mean([r[1] for r in res]))
            grads = {k: sum(r[2][k] for r in res) / len(res) for k in ("prototypes", "nu", "sigma")}
            val_err = (
                float(np.mean([self._error(pred, imgs[i], ys[i], feats[i]) for i in val_idx]))
                if n_val
                else err
            )
            for key, v in (
                ("loss", loss),
                ("error", err),
                ("val_error", val_err),
                ("time", time.perf_counter() - t0),
            ):
                hist[key].append(v)
            if self.verbose:
                print(
                    f"[ImageLabeler] iter {it:3d}  loss {loss:.5f}  train {100 * err:.2f} %  "
                    f"val {100 * val_err:.2f} %  {hist['time'][-1]:.1f} s",
                    flush=True,
                )
            if val_err < best[0] - 1e-12:
                best, since_best = (val_err, pred, it), 0
            else:
                since_best += 1
                if since_best >= self.n_iter_no_change:
                    stopped_early = True
                    break
            if it == self.max_iter:
                break
            params = {"prototypes": pred.prototypes, "nu": pred.nu, "log_sigma": np.log(pred.sigma)}
            new = opt.step(
                params,
                {
                    "prototypes": grads["prototypes"],
                    "nu": grads["nu"],
                    "log_sigma": grads["sigma"] * pred.sigma,
                },
            )
            pred = WeightPredictor(new["prototypes"], new["nu"], float(np.exp(new["log_sigma"])))
        if not stopped_early:
            # like scikit-learn's MLP: reaching max_iter means early stopping never triggered
            warnings.warn(
                f"ImageLabeler: max_iter={self.max_iter} reached before the validation error "
                f"stopped improving for n_iter_no_change={self.n_iter_no_change} iterations; "
                "increase max_iter",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.predictor_ = best[1]
        self.best_iter_ = best[2]
        self.n_iter_ = it
        self.history_ = {k: np.asarray(v) for k, v in hist.items()}
        return self

    # ------------------------------------------------------------------ predict
    def _features(self, image, prototypes=None, dtype="float64"):
        protos = self.prototypes_ if prototypes is None else prototypes
        return _image_features(
            image, protos, self.radius, self.features, self.feature_rho, self.feature_T, dtype
        )

    def _feature_dim(self, n_channels: int) -> int:
        """Columns of the predictor's features (checked when a model file is loaded)."""
        K = (2 * self.radius + 1) ** 2
        return K * n_channels if self.features == "window" else K

    def _flow(self, predictor, image, F=None):
        F = self._features(image, dtype=self.dtype) if F is None else F
        return _predicted_flow(
            predictor, image, F, self.prototypes_, self.rho, self.T, self.radius, self.dtype
        )[0]

    def _error(self, predictor, image, y, F=None) -> float:
        res = self._flow(predictor, image, F).solve(self.integrator)
        return float(np.mean(res.labels != y))

    def _check_predict(self, images):
        check_is_fitted(self, "predictor_")
        imgs = _check_images(images)
        if imgs[0].shape[2] != self.n_features_in_:
            raise ValueError(
                f"images must have {self.n_features_in_} channel(s) like the training images, "
                f"got {imgs[0].shape[2]}"
            )
        return imgs

    def predict_weights(self, images: Any) -> list[Weights]:
        """The predicted weights :math:`\\hat\\Omega` of every image."""
        imgs = self._check_predict(images)
        return [self._flow(self.predictor_, im).weights for im in imgs]

    def predict_proba(self, images: Any) -> np.ndarray | list[np.ndarray]:
        """Assignments :math:`W(T)`: ``(n, h, w, J)`` (a list if the sizes differ)."""
        imgs = self._check_predict(images)
        out = []
        for im in imgs:
            res = self._flow(self.predictor_, im).solve(self.integrator)
            out.append(res.W.reshape(im.shape[0], im.shape[1], -1))
        return np.stack(out) if len({o.shape for o in out}) == 1 else out

    def predict(self, images: Any) -> np.ndarray | list[np.ndarray]:
        """Label images ``(n, h, w)`` with values in :attr:`classes_`."""
        proba = self.predict_proba(images)
        if isinstance(proba, list):
            return [self.classes_[np.argmax(p, axis=-1)] for p in proba]
        return self.classes_[np.argmax(proba, axis=-1)]

    def score(self, images: Any, label_images: Any, sample_weight: Any = None) -> float:
        """Pixel accuracy (fraction of correctly labeled pixels over all images).

        ``sample_weight`` (n,) weights the pixels of each image.
        """
        pred = self.predict(images)
        labs = _check_label_images(label_images, _check_images(images))
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

    # ------------------------------------------------------------------ persistence hooks
    # (the protocol of assignflow.persistence; load calls them on a model file's state)
    def _validate_params(self) -> None:
        # scikit-learn's name for parameter validation; drop once the class declares
        # _parameter_constraints
        self._check_params()

    def _check_fitted_state(self) -> None:
        """Validate the fitted attributes of a loaded model (before it predicts)."""
        J = len(self.classes_)
        c = persistence.check_fitted_int(self.n_features_in_, "n_features_in_", minimum=1)
        persistence.check_fitted_array(
            self.prototypes_, "prototypes_", shape=(J, c), max_abs=_MAX_ABS
        )
        persistence.check_fitted_int(self.n_iter_, "n_iter_")
        persistence.check_fitted_int(self.best_iter_, "best_iter_")
        pred = self.predictor_
        if not isinstance(pred, WeightPredictor):
            raise ValueError(f"predictor_ must be a WeightPredictor, got {type(pred).__name__}")
        window, dim = (2 * self.radius + 1) ** 2, self._feature_dim(c)
        if pred.window_size != window or pred.prototypes.shape[1] != dim:
            raise ValueError("predictor_ does not match radius, features and n_features_in_")
        if float(np.abs(pred.prototypes).max()) > _MAX_ABS:  # squared distances overflow
            raise ValueError(f"predictor_ has prototypes of magnitude > {_MAX_ABS:g}")
        if not isinstance(self.history_, dict):
            raise ValueError("history_ must be a dict")
