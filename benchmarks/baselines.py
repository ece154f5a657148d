"""Non-learned baselines of the quality benchmark, and their grid search.

Every baseline labels one image ``x`` (``(h, w)`` grey or ``(h, w, c)``) with
the task's prototypes ``P`` (``(J, c)``); its few settings are chosen by a grid
search on the *training* images only (lowest mean training error), starting
from the grids in :data:`GRIDS` and extending an axis beyond its end while the
best value lies there (at most twice per end, see :func:`tune`). The
``--quick`` grids are subsets.

``rounding``
    Nearest prototype per pixel (Euclidean distance); no settings.
``potts``
    Potts model on the 4-connected grid by alpha-expansion (``potts.py``,
    PyMaxflow): data term ``U[p, j] = d(x_p, P_j)`` with ``d`` the squared
    Euclidean distance (Gaussian negative log-likelihood up to scale) or the
    Euclidean distance (the LAF's ``D``), smoothness weight ``lambda``.
``tv``
    ``skimage.restoration.denoise_tv_chambolle(x, weight)`` (channels jointly
    for colour images), then nearest-prototype rounding.
``uniform``
    The linearized assignment flow with uniform weights on the 3 x 3
    neighbourhood (``af.Weights.uniform(af.GridGraph((h, w)))``), distances
    ``D = af.distance_matrix(x, P)``, scale ``rho``, horizon ``T``,
    ``af.ExponentialKrylov()`` (its defaults, as in ``ImageLabeler``).
``bilateral``
    The same flow with weights ``omega_ik ∝ exp(-beta ||g_i - g_k||^2)`` on the
    3 x 3 neighbourhood (``af.Weights.normalized``), ``g`` = the image smoothed
    by a Gaussian of ``sigma`` pixels (per channel). ``beta = b / m`` with ``m``
    the median of ``||g_i - g_k||^2`` over the image's neighbour pairs (a
    label-free per-image scale, so one grid of ``b`` fits all noise levels);
    the grid runs over ``b``, ``sigma``, ``rho``, ``T``.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

import assignflow as af

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from potts import potts_alpha_expansion

__all__ = ["BASELINES", "GRIDS", "QUICK_GRIDS", "evaluate", "grid_settings", "sweep", "tune"]

BASELINES = ("potts", "tv", "uniform", "bilateral")

RHO = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
T = (1.0, 3.0, 10.0, 30.0, 100.0)
GRIDS: dict[str, dict[str, tuple]] = {
    "potts": {
        "unary": ("sqeuclidean", "euclidean"),
        "lam": (0.003, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.35, 0.5, 0.75, 1.0,
                1.5, 2.0, 3.0, 5.0),
    },
    "tv": {"weight": (0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5)},
    "uniform": {"rho": RHO, "T": T},
    "bilateral": {"b": (0.1, 0.3, 1.0, 3.0, 10.0), "sigma": (0.5, 1.0, 2.0, 4.0), "rho": RHO,
                  "T": T},
}  # fmt: skip
QUICK_GRIDS: dict[str, dict[str, tuple]] = {
    "potts": {"unary": ("sqeuclidean",), "lam": (0.01, 0.05, 0.2, 0.75, 3.0)},
    "tv": {"weight": (0.03, 0.1, 0.3, 1.0)},
    "uniform": {"rho": (0.03, 0.3, 3.0), "T": (3.0, 30.0)},
    "bilateral": {"b": (1.0, 10.0), "sigma": (1.0,), "rho": (0.03, 0.3, 3.0), "T": (3.0, 30.0)},
}
MAX_EXTENSIONS = 2  # per numeric grid axis and end, see tune()
POTTS_SWEEPS = 5  # maximum alpha-expansion sweeps (stops earlier when a sweep changes nothing)


def error(labels: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of wrongly labeled pixels."""
    return float(np.mean(np.asarray(labels).ravel() != np.asarray(truth).ravel()))


def recall0(labels: np.ndarray, truth: np.ndarray) -> float:
    """Boundary recall of the lines task: fraction of label-0 pixels labeled 0."""
    t = np.asarray(truth).ravel() == 0
    return float(np.mean(np.asarray(labels).ravel()[t] == 0)) if t.any() else float("nan")


def rounding(x: np.ndarray, P: np.ndarray) -> np.ndarray:
    return np.argmin(af.distance_matrix(x, P), axis=1).reshape(x.shape[:2])


def _laf_horizons(
    weights: af.Weights, D: np.ndarray, rho: float, horizons: Iterable[float]
) -> dict[float, np.ndarray]:
    """Labels of the LAF at every horizon, by one integration continued from each ``T``.

    The LAF ``dV/dt = A V + b``, ``V(0) = 0`` is autonomous, so ``V(T2)`` is the
    solution over ``T2 - T1`` started at ``V(T1)``: the whole grid of horizons
    costs one integration to the largest. ``W(T) = Exp_{W0}(V(T))`` at the
    barycenter ``W0`` is the row-wise softmax of ``V``, so the labels are the
    row-wise argmax of ``V``.
    """
    sim = af.SimilarityOperator(weights, D, rho=rho)
    integrator = af.ExponentialKrylov()
    out: dict[float, np.ndarray] = {}
    V, t = None, 0.0
    for T_ in sorted(set(horizons)):
        flow = af.LinearizedAssignmentFlow(sim, T=T_)
        if T_ > t:
            V, _ = integrator.integrate(flow.aslinearoperator(), flow.B.ravel(), T_ - t, x0=V)
            t = T_
        out[T_] = np.argmax(V.reshape(flow.shape), axis=1)
    return out


def _laf(weights: af.Weights, D: np.ndarray, rho: float, T_: float) -> np.ndarray:
    sim = af.SimilarityOperator(weights, D, rho=rho)
    return af.LinearizedAssignmentFlow(sim, T=T_).solve(af.ExponentialKrylov()).labels


def uniform_laf(x: np.ndarray, P: np.ndarray, rho: float, T: float) -> np.ndarray:
    """The uniform-weight LAF at one ``(rho, T)`` (also used at the learned model's)."""
    w = af.Weights.uniform(af.GridGraph(x.shape[:2]))
    return _laf(w, af.distance_matrix(x, P), rho, T).reshape(x.shape[:2])


def uniform_stack(
    x: np.ndarray, P: np.ndarray, rhos: Sequence[float], Ts: Sequence[float], radius: int = 1
) -> np.ndarray:
    """A deep LAF with uniform weights in every layer, at per-layer ``rho``, ``T`` (and radius).

    The learned deep model with its weights replaced by uniform ones: the reference of
    "learning never hurts" for a stack (one layer: the uniform LAF).
    """
    w = af.Weights.uniform(af.GridGraph(x.shape[:2], radius=int(radius)))
    D = af.distance_matrix(x, P)
    layers = [af.SimilarityOperator(w, D, rho=float(r)) for r in rhos]
    res = af.DeepLinearizedAssignmentFlow(layers, T=[float(t) for t in Ts]).solve(
        af.ExponentialKrylov()
    )
    return res.labels.reshape(x.shape[:2])


def bilateral_weights(x: np.ndarray, b: float, sigma: float) -> af.Weights:
    graph = af.GridGraph(x.shape[:2])
    sig = (sigma, sigma) + (0,) * (x.ndim - 2)
    g = ndimage.gaussian_filter(x, sig, mode="nearest").reshape(graph.n_nodes, -1)
    d2 = ((g[graph.rows] - g[graph.indices]) ** 2).sum(axis=1)
    m = float(np.median(d2[graph.rows != graph.indices]))
    scale = b / m if m > 0 else b
    return af.Weights.normalized(graph, np.exp(-np.minimum(scale * d2, 700.0)))


def grid_settings(grid: dict[str, tuple]) -> list[tuple]:
    """All settings of a grid, as tuples in the order of its keys (cartesian product)."""
    return list(itertools.product(*grid.values()))


def sweep(
    name: str, x: np.ndarray, P: np.ndarray, settings: Iterable[tuple]
) -> dict[tuple, np.ndarray]:
    """Labels of one image for every setting (sharing the work common to several)."""
    settings = list(settings)
    shape = x.shape[:2]
    out: dict[tuple, np.ndarray] = {}
    if name == "potts":
        unaries = {}
        for unary, lam in settings:
            if unary not in unaries:
                unaries[unary] = af.distance_matrix(x, P, metric=unary).reshape(*shape, -1)
            out[unary, lam] = potts_alpha_expansion(unaries[unary], lam, n_iter=POTTS_SWEEPS)
    elif name == "tv":
        from skimage.restoration import denoise_tv_chambolle

        axis = -1 if x.ndim == 3 else None
        for (weight,) in settings:
            out[(weight,)] = rounding(denoise_tv_chambolle(x, weight=weight, channel_axis=axis), P)
    elif name in ("uniform", "bilateral"):
        D = af.distance_matrix(x, P)
        groups: dict[tuple, list[float]] = {}  # (weight settings..., rho) -> horizons
        for s in settings:
            groups.setdefault(s[:-1], []).append(s[-1])
        weights: dict[tuple, af.Weights] = {}
        for key, horizons in groups.items():
            wkey, rho = key[:-1], key[-1]
            if wkey not in weights:
                weights[wkey] = (
                    af.Weights.uniform(af.GridGraph(shape))
                    if name == "uniform"
                    else bilateral_weights(x, *wkey)
                )
            for T_, lab in _laf_horizons(weights[wkey], D, rho, horizons).items():
                out[(*key, T_)] = lab.reshape(shape)
    else:  # pragma: no cover
        raise ValueError(name)
    return out


def _train_errors(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    P: np.ndarray,
    settings: list[tuple],
    threads: int | None = None,
) -> list[float]:
    if threads is not None:
        af.set_num_threads(threads)  # in a worker process: one process per core
    labs = sweep(name, x, P, settings)
    return [error(labs[s], y) for s in settings]


def _setting_key(keys: list[str], s: tuple) -> str:
    return ", ".join(
        f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in zip(keys, s, strict=True)
    )


def _extended(values: list[float], low: bool) -> float:
    """One more grid value beyond an end, at the ratio of the two end values."""
    return values[0] ** 2 / values[1] if low else values[-1] ** 2 / values[-2]


def tune(
    name: str,
    X: np.ndarray,
    Y: np.ndarray,
    P: np.ndarray,
    grid: dict[str, tuple],
    log: Callable[..., Any] = print,
    n_jobs: int = 1,
    max_extensions: int = MAX_EXTENSIONS,
) -> dict[str, Any]:
    """Grid search on the training images: lowest mean training error.

    Every setting of the grid (the cartesian product of its axes) is run on
    every training image. If the best setting lies at the end of a numeric
    axis, the axis is extended beyond that end by one value at the ratio of
    its two end values (the grids are geometric), and the new settings are
    run; at most ``max_extensions`` times per axis and end, so the search stays
    bounded. Ties go to the smallest values (lexicographic in the axis order).
    With ``n_jobs > 1`` the images are processed in that many worker processes
    (joblib), each running assignflow single-threaded.
    """
    t0 = time.perf_counter()
    keys = list(grid)
    axes = {k: sorted(v) if not isinstance(v[0], str) else list(v) for k, v in grid.items()}
    numeric = [k for k in keys if not isinstance(axes[k][0], str)]
    n_ext = dict.fromkeys(((k, low) for k in numeric for low in (True, False)), 0)
    table: dict[tuple, float] = {}
    while True:
        settings = list(itertools.product(*axes.values()))
        new = [s for s in settings if s not in table]
        if new:
            args = [(name, x, y, P, new) for x, y in zip(X, Y, strict=True)]
            if n_jobs > 1 and len(X) > 1:
                from joblib import Parallel, delayed

                per_image = Parallel(n_jobs=min(n_jobs, len(X)))(
                    delayed(_train_errors)(*a, 1) for a in args
                )
            else:
                per_image = [_train_errors(*a) for a in args]
            table.update(zip(new, np.mean(per_image, axis=0).tolist(), strict=True))
        best = min(settings, key=lambda s: table[s])  # first minimum in product order
        extended = False
        for k in numeric:
            v, vals = best[keys.index(k)], axes[k]
            for low, end in ((True, vals[0]), (False, vals[-1])):
                if len(vals) > 1 and v == end and n_ext[k, low] < max_extensions:
                    vals.insert(0 if low else len(vals), _extended(vals, low))
                    n_ext[k, low] += 1
                    extended = True
        if not extended:
            break
    best_setting = dict(zip(keys, best, strict=True))
    # still at an end after all extensions: reported
    at_edge = [
        k for k in numeric if len(axes[k]) > 1 and best_setting[k] in (axes[k][0], axes[k][-1])
    ]
    extensions = {f"{k} {'low' if low else 'high'}": n for (k, low), n in n_ext.items() if n}
    seconds = time.perf_counter() - t0
    shown = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in best_setting.items()}
    log(
        f"    {name:<9} best {shown} train {100 * table[best]:.2f} % "
        f"({len(table)} settings, {seconds:.0f} s)"
        + (f"  [extended: {extensions}]" if extensions else "")
        + (f"  [still at grid edge: {', '.join(at_edge)}]" if at_edge else "")
    )
    return {
        "setting": best_setting,
        "train_error": float(table[best]),
        "grid": {_setting_key(keys, s): float(e) for s, e in sorted(table.items())},
        "axes": axes,
        "extensions": extensions,
        "at_grid_edge": at_edge,
        "tune_seconds": seconds,
    }


def evaluate(
    fn: Callable[[np.ndarray], np.ndarray], X: np.ndarray, Y: np.ndarray, recall: bool
) -> dict[str, Any]:
    """Error (and boundary recall) of ``fn`` on each image; seconds per image."""
    errs, recs, secs = [], [], []
    for x, y in zip(X, Y, strict=True):
        t0 = time.perf_counter()
        lab = fn(x)
        secs.append(time.perf_counter() - t0)
        errs.append(error(lab, y))
        recs.append(recall0(lab, y))
    return {
        "error": float(np.mean(errs)),
        "per_image_error": errs,
        "boundary_recall": float(np.mean(recs)) if recall else None,
        "seconds_per_image": float(np.mean(secs)),
    }


def apply(name: str, P: np.ndarray, setting: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """The baseline at one tuned setting, as a function of the image."""
    s = tuple(setting.values())
    return lambda x: sweep(name, x, P, [s])[s]
