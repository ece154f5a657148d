"""The demo experiment: learn the weights on synthetic scenes, label unseen ones four ways.

:func:`run_demo` is the main job of the package on built-in data (``assignflow demo``
on the command line): noisy random Voronoi scenes (the paper's Sect. 4.1) for
training, validation and unseen testing; an :class:`~assignflow.ImageLabeler` is
fitted, and the unseen scenes are labeled by

1. pixelwise rounding (the nearest prototype),
2. the LAF with uniform weights (:func:`~assignflow.label_graph`, exponential Krylov),
3. the nonlinear assignment flow with uniform weights (geometric Euler),
4. the LAF with learned (predicted) weights (``ImageLabeler.predict``).

The estimator gets ``rho`` and ``T`` as given (the defaults of
:class:`~assignflow.ImageLabeler`, ``"auto"``, unless given). The two flows with
uniform weights use the same numbers when they are numbers; for ``rho="auto"`` the
scale of each scene by :func:`~assignflow.estimate_rho`, for ``T="auto"`` the total
horizon the estimator chose (``model.T_.sum()``), so that every flow runs as long
as the learned one.
"""

from __future__ import annotations

import inspect
import os
import time
import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state, check_scalar
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from . import datasets
from .estimators import ImageLabeler
from .flows import AssignmentFlow
from .graphs import GridGraph
from .integrators import ExponentialKrylov, GeometricEuler
from .labeling import label_graph
from .plotting import plot_labelings
from .similarity import SimilarityOperator, distance_matrix, estimate_rho
from .weights import Weights

__all__ = ["DEMO_MAX_PIXELS", "DEMO_NOISE", "format_results", "run_demo"]

#: Noise level of each scenario when ``noise`` is not given.
DEMO_NOISE = {"lines": 0.3, "colors": 0.5}

#: Bound on ``size**2 * (n_train + n_test)``, the pixels the demo generates and
#: labels (about 4 million: the fit then stays within a few GB of memory).
DEMO_MAX_PIXELS = 2**22

_LABELER = inspect.signature(ImageLabeler).parameters
_POSITIVE = Interval(Real, 0, None, closed="neither")
_RHO = [Interval(Real, np.finfo(np.float64).tiny, None, closed="left"), StrOptions({"auto"}), None]


@validate_params(
    {
        "scenario": [StrOptions(set(DEMO_NOISE))],
        "size": [Interval(Integral, 2, None, closed="left")],
        "n_train": [Interval(Integral, 1, None, closed="left")],
        "n_test": [Interval(Integral, 1, None, closed="left")],
        "noise": [Interval(Real, 0, None, closed="left"), None],
        "rho": _RHO,
        "T": [_POSITIVE, StrOptions({"auto"}), None],
        "krylov_dim": [Interval(Integral, 1, 100, closed="both")],
        "step_size": [_POSITIVE],
        "max_iter": [Interval(Integral, 1, 1000, closed="both")],
        "random_state": ["random_state"],
        "output": [str, os.PathLike, None],
        "verbose": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def run_demo(
    *,
    scenario: str = "lines",
    size: int = 64,
    n_train: int = 5,
    n_test: int = 3,
    noise: float | None = None,
    rho: float | str | None = None,
    T: float | str | None = None,
    krylov_dim: int = 10,
    step_size: float = 0.5,
    max_iter: int = 30,
    random_state: Any = 0,
    output: str | os.PathLike | None = "assignflow-demo.png",
    verbose: bool = True,
) -> dict[str, Any]:
    """Fit on synthetic Voronoi scenes and label unseen ones four ways.

    Generates ``n_train`` training scenes (the estimator holds some out for
    validation) and ``n_test`` unseen test scenes of the paper's Sect. 4.1, fits an
    :class:`~assignflow.ImageLabeler`, and labels the test scenes by pixelwise
    rounding, the LAF with uniform weights (exponential Krylov), the nonlinear
    assignment flow (geometric Euler) and the LAF with learned weights.

    Parameters
    ----------
    scenario : {"lines", "colors"}, default="lines"
        Grey scenes with thin lines between the cells, or cells of 8 colours.
    size : int, default=64
        Side of the square scenes in pixels. ``size**2 * (n_train + n_test)`` must
        not exceed :data:`DEMO_MAX_PIXELS` (2**22).
    n_train : int, default=5
        Training scenes (validation scenes included).
    n_test : int, default=3
        Unseen test scenes.
    noise : float, optional
        Standard deviation of the Gaussian noise; :data:`DEMO_NOISE` of the
        scenario (0.3 for lines, 0.5 for colors) if omitted.
    rho : float or "auto", optional
        Scale :math:`\\rho` of the distances; ``ImageLabeler``'s default if omitted
        (see the module documentation for the flows with uniform weights).
    T : float or "auto", optional
        Time horizon of the LAF; ``ImageLabeler``'s default if omitted.
    krylov_dim : int, default=10
        Krylov dimension of the exponential integrator of the uniform LAF (1..100).
    step_size : float, default=0.5
        Step of the geometric Euler integrator of the nonlinear flow (which stops
        after at most 1000 steps).
    max_iter : int, default=30
        Training iterations of the estimator (1..1000).
    random_state : int, RandomState or None, default=0
        Seed of the scenes and the fit.
    output : str or os.PathLike, optional
        Path of a PNG figure of the first test scene (written like
        ``matplotlib.savefig``: an existing file is replaced); no figure if None.
    verbose : bool, default=True
        Print progress and the table of results.

    Returns
    -------
    dict
        ``"results"``: for each method a dict with the mean fraction of wrongly
        labeled pixels ``"error"``, the mean seconds per scene ``"seconds"`` and
        the label images ``"labels"``; ``"figure"``: the figure path or None;
        ``"model"``: the fitted estimator.
    """
    check_scalar(
        size * size * (n_train + n_test),
        "size**2 * (n_train + n_test)",
        Integral,
        max_val=DEMO_MAX_PIXELS,
    )
    if output is not None:
        d = os.path.dirname(os.path.abspath(os.fspath(output)))
        if not os.path.isdir(d):
            raise ValueError(f"output: the output directory {d!r} does not exist")
    say = print if verbose else (lambda *a, **k: None)
    noise = DEMO_NOISE[scenario] if noise is None else noise
    rho = _LABELER["rho"].default if rho is None else rho
    T = _LABELER["T"].default if T is None else T
    rng = check_random_state(random_state)
    shape = (size, size)
    X, Y = datasets.make_voronoi(scenario, n_train, shape, noise, random_state=rng)
    Xt, Yt = datasets.make_voronoi(scenario, n_test, shape, noise, random_state=rng)
    protos = datasets.voronoi_prototypes(scenario)
    say(
        f"assignflow demo: {scenario!r} Voronoi scenes {size}x{size}, {len(protos)} labels, "
        f"noise {noise:g}; {n_train} training scenes, {n_test} unseen test scenes; "
        f"rho {rho}, T {T}",
        flush=True,
    )

    say(f"fitting the weight predictor (at most {max_iter} iterations) ...", flush=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = ImageLabeler(
            prototypes=protos,
            rho=rho,
            T=T,
            max_iter=max_iter,
            random_state=rng.randint(2**31 - 1),
        ).fit(X, Y)
    say(
        f"  {model.n_iter_} iterations in {time.perf_counter() - t0:.1f} s (best validation "
        f"loss at iteration {model.best_iter_})",
        flush=True,
    )

    graph = GridGraph(shape)
    T_uniform = float(np.sum(model.T_)) if T == "auto" else T
    runs: dict[str, list[tuple[float, float, np.ndarray]]] = {}

    def record(name: str, labels: np.ndarray, seconds: float, truth: np.ndarray) -> None:
        labels = np.asarray(labels).reshape(shape)
        runs.setdefault(name, []).append((float(np.mean(labels != truth)), seconds, labels))

    for x, y in zip(Xt, Yt, strict=True):
        feats = x.reshape(size * size, -1)
        D = distance_matrix(feats, protos)
        rho_x = estimate_rho(D) if rho == "auto" else rho
        t0 = time.perf_counter()
        record("pixelwise rounding", D.argmin(axis=1), time.perf_counter() - t0, y)
        t0 = time.perf_counter()
        laf = label_graph(
            graph,
            feats,
            protos,
            rho=rho_x,
            T=T_uniform,
            integrator=ExponentialKrylov(krylov_dim=krylov_dim),
        )
        record("LAF, uniform weights", laf.labels, time.perf_counter() - t0, y)
        t0 = time.perf_counter()
        sim = SimilarityOperator(Weights.uniform(graph), D, rho=rho_x)
        nl = AssignmentFlow(sim).solve(GeometricEuler(step_size=step_size))
        record("assignment flow, uniform weights", nl.labels, time.perf_counter() - t0, y)
        t0 = time.perf_counter()
        record("LAF, learned weights", model.predict([x])[0], time.perf_counter() - t0, y)

    results = {
        name: {
            "error": float(np.mean([r[0] for r in rs])),
            "seconds": float(np.mean([r[1] for r in rs])),
            "labels": [r[2] for r in rs],
        }
        for name, rs in runs.items()
    }
    say("\n" + format_results(results), flush=True)

    path = None
    if output is not None:
        panels = {"ground truth": Yt[0]} | {k: v["labels"][0] for k, v in results.items()}
        errors = {k: float(np.mean(v["labels"][0] != Yt[0])) for k, v in results.items()}
        plot_labelings(
            Xt[0],
            panels,
            protos,
            errors=errors,
            path=os.fspath(output),
            title=f"assignflow demo — {scenario}, unseen scene, noise {noise:g}",
        )
        path = os.fspath(output)
        say(f"figure written to {path}", flush=True)
    return {"results": results, "figure": path, "model": model}


def format_results(results: dict[str, dict[str, Any]]) -> str:
    """The table of :func:`run_demo`'s results: error and time of every method.

    Parameters
    ----------
    results : dict
        ``run_demo(...)["results"]``.

    Returns
    -------
    str
        One header line and one line per method.
    """
    lines = [f"  {'method (unseen test scenes)':<34} {'wrong':>8}   {'time/scene':>10}"]
    for name, r in results.items():
        lines.append(f"  {name:<34} {100 * r['error']:6.2f} %   {r['seconds']:8.3f} s")
    return "\n".join(lines)
