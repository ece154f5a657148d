"""Bad input for the estimators, the weight predictor and the data sets (issue 6).

Every case either raises a clear ``ValueError``/``TypeError`` (or sklearn's
``NotFittedError``) whose message names the argument, or -- where the input is
legitimate (one pixel, one class, images of different sizes) -- returns a checked,
NaN-free result (the command line and image I/O cases live in ``test_cli.py`` and
``test_io.py``). Inputs are tiny so the whole file runs in a few seconds.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import assignflow as af
from assignflow.predictor import WeightPredictor, window_features

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RNG = np.random.default_rng(0)
X8, Y8 = af.datasets.make_voronoi("lines", 2, (8, 8), noise=0.2, random_state=0)
RGB8, RGBY8 = af.datasets.make_voronoi("colors", 2, (8, 8), noise=0.2, random_state=1)


def tiny(**kw) -> af.ImageLabeler:
    params = dict(rho=0.1, T=1.0, max_iter=1, n_prototypes=3, random_state=0)
    params.update(kw)
    return af.ImageLabeler(**params)


@pytest.fixture(scope="module")
def fitted() -> af.ImageLabeler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tiny().fit(X8, Y8)


def finite(a) -> bool:
    arrays = a if isinstance(a, list) else [a]
    return all(np.all(np.isfinite(np.asarray(x, dtype=float))) for x in arrays)


# =========================================================================== WeightPredictor
G3 = af.GridGraph((3, 3))
WP = WeightPredictor(RNG.normal(size=(2, 9)), RNG.normal(size=(2, 9)), 1.0)

BAD_PREDICTOR_INIT = [
    ("prototypes-1d", (np.zeros(9), np.zeros((2, 9)), 1.0), ValueError, "prototypes must have 2"),
    ("prototypes-empty", (np.zeros((0, 9)), np.zeros((0, 9)), 1.0), ValueError, "N, d >= 1"),
    ("prototypes-nan", (np.full((2, 9), np.nan), np.zeros((2, 9)), 1.0), ValueError, "prototypes"),
    ("nu-rows", (np.zeros((2, 9)), np.zeros((3, 9)), 1.0), ValueError, "nu must have one row"),
    ("nu-no-columns", (np.zeros((2, 9)), np.zeros((2, 0)), 1.0), ValueError, "nu must have at"),
    ("nu-str", (np.zeros((2, 9)), "nu", 1.0), (TypeError, ValueError), "nu must have|nu must be"),
    ("sigma-negative", (np.zeros((2, 9)), np.zeros((2, 9)), -1.0), ValueError, "sigma must be > 0"),
    ("sigma-zero", (np.zeros((2, 9)), np.zeros((2, 9)), 0.0), ValueError, "sigma must be > 0"),
    ("sigma-nan", (np.zeros((2, 9)), np.zeros((2, 9)), np.nan), ValueError, "sigma must be finite"),
    ("sigma-str", (np.zeros((2, 9)), np.zeros((2, 9)), "a"), TypeError, "sigma must be a real"),
    ("sigma-bool", (np.zeros((2, 9)), np.zeros((2, 9)), True), TypeError, "sigma must be a real"),
    ("sigma-None", (np.zeros((2, 9)), np.zeros((2, 9)), None), TypeError, "sigma must be a real"),
]


@pytest.mark.parametrize(
    ("args", "exc", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_PREDICTOR_INIT]
)
def test_weight_predictor_rejects_bad_parameters(args, exc, match):
    with pytest.raises(exc, match=match):
        WeightPredictor(*args)


BAD_PREDICTOR_CALLS = [
    ("graph-not-grid", lambda: WP.predict_weights(af.Graph.knn(np.eye(9), 2), np.zeros((9, 9))),
     TypeError, "graph must be a GridGraph"),
    ("graph-window", lambda: WP.predict_weights(af.GridGraph((3, 3), 2), np.zeros((9, 9))),
     ValueError, "window has 25 offsets"),
    ("features-shape", lambda: WP.predict_weights(G3, np.zeros((9, 4))), ValueError,
     r"features must have shape \(9, 9\)"),
    ("features-1d", lambda: WP.predict_weights(G3, np.zeros(81)), ValueError,
     "features must have 2"),
    ("features-nan", lambda: WP.predict_weights(G3, np.full((9, 9), np.nan)), ValueError,
     "features must contain only finite"),
    ("vjp-grad-shape", lambda: WP.vjp(G3, np.zeros((9, 9)), np.zeros(3)), ValueError,
     "grad_weights must have shape"),
    ("vjp-grad-nan", lambda: WP.vjp(G3, np.zeros((9, 9)), np.full(G3.nnz, np.nan)), ValueError,
     "grad_weights must contain only finite"),
    ("init-empty", lambda: WeightPredictor.initialize_from_images([], []), ValueError,
     "feature_images must contain at least one image"),
    ("init-count", lambda: WeightPredictor.initialize_from_images([np.zeros((4, 4))], []),
     ValueError, "one label image per feature image"),
    ("init-shape", lambda: WeightPredictor.initialize_from_images(
        [np.zeros((4, 4))], [np.zeros((3, 3), int)]), ValueError, r"label_images\[0\] must have"),
    ("init-n_prototypes-0", lambda: WeightPredictor.initialize_from_images(
        [np.zeros((4, 4))], [np.zeros((4, 4), int)], n_prototypes=0), ValueError, "n_prototypes"),
    ("init-radius-negative", lambda: WeightPredictor.initialize_from_images(
        [np.zeros((4, 4))], [np.zeros((4, 4), int)], radius=-1), ValueError, "radius must be >= 0"),
    ("init-strength-nan", lambda: WeightPredictor.initialize_from_images(
        [np.zeros((4, 4))], [np.zeros((4, 4), int)], strength=np.nan), ValueError, "strength"),
    ("init-sigma-zero", lambda: WeightPredictor.initialize_from_images(
        [np.zeros((4, 4))], [np.zeros((4, 4), int)], sigma=0.0), ValueError, "sigma must be > 0"),
    ("window-radius-negative", lambda: window_features(np.zeros((4, 4)), -1), ValueError,
     "radius must be >= 0"),
    ("window-radius-float", lambda: window_features(np.zeros((4, 4)), 1.5), TypeError,
     "radius must be an integer"),
    ("window-empty", lambda: window_features(np.zeros((0, 0)), 1), ValueError,
     "image must have at least one pixel"),
    ("window-nan", lambda: window_features(np.full((2, 2), np.nan), 1), ValueError,
     "image must contain only finite"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "exc", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_PREDICTOR_CALLS]
)
def test_weight_predictor_calls_reject_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_weight_predictor_one_pixel_and_no_mutation():
    img = np.array([[0.5]])
    F = window_features(img, 1)
    np.testing.assert_array_equal(F, np.full((1, 9), 0.5))  # edge replication
    wp = WeightPredictor.initialize_from_images([img], [np.array([[0]])], n_prototypes=4)
    assert wp.n_prototypes == 1  # clipped to the number of pixels
    om = wp.predict_weights(af.GridGraph((1, 1)), F)
    np.testing.assert_array_equal(om.values, [1.0])
    g = np.ones(G3.nnz)
    feats = RNG.normal(size=(9, 9))
    f0, g0 = feats.copy(), g.copy()
    WP.vjp(G3, feats, g)
    np.testing.assert_array_equal(feats, f0)
    np.testing.assert_array_equal(g, g0)


# =========================================================================== datasets
BAD_VORONOI = [
    (
        "scenario-unknown",
        {"scenario": "colours"},
        ValueError,
        "unknown scenario 'colours'.*Did you mean 'colors'",
    ),
    ("scenario-int", {"scenario": 2}, TypeError, "scenario must be a string"),
    ("n_images-zero", {"n_images": 0}, ValueError, "n_images must be >= 1"),
    ("n_images-negative", {"n_images": -2}, ValueError, "n_images must be >= 1"),
    ("n_images-float", {"n_images": 1.5}, TypeError, "n_images must be an integer"),
    ("n_images-bool", {"n_images": True}, TypeError, "n_images must be an integer"),
    ("shape-1x8", {"shape": (1, 8)}, ValueError, r"shape\[0\] must be >= 2"),
    ("shape-0x0", {"shape": (0, 0)}, ValueError, r"shape\[0\] must be >= 2"),
    ("shape-one-entry", {"shape": (8,)}, ValueError, "exactly two entries"),
    ("shape-three-entries", {"shape": (8, 8, 3)}, ValueError, "exactly two entries"),
    ("shape-str", {"shape": "88"}, TypeError, "shape must be a sequence"),
    ("shape-int", {"shape": 8}, TypeError, "shape must be a sequence"),
    ("shape-float", {"shape": (8.0, 8)}, TypeError, r"shape\[0\] must be an integer"),
    ("shape-2d-array", {"shape": np.ones((2, 2), int)}, ValueError, "shape must be one-dim"),
    ("noise-negative", {"noise": -0.1}, ValueError, "noise must be >= 0"),
    ("noise-nan", {"noise": float("nan")}, ValueError, "noise must be finite"),
    ("noise-inf", {"noise": float("inf")}, ValueError, "noise must be finite"),
    ("noise-str", {"noise": "0.3"}, TypeError, "noise must be a real number"),
    ("noise-bool", {"noise": True}, TypeError, "noise must be a real number"),
    ("n_cells-one", {"n_cells": 1}, ValueError, "n_cells must be >= 2"),
    ("n_cells-too-many", {"n_cells": 65}, ValueError, "n_cells must be <= h"),
    ("n_cells-float", {"n_cells": 2.5}, TypeError, "n_cells must be an integer"),
    ("line_width-zero", {"line_width": 0}, ValueError, "line_width must be >= 1"),
    ("clip-str", {"clip": "yes"}, TypeError, "clip must be a bool"),
    ("return_prototypes-int", {"return_prototypes": 1}, TypeError, "return_prototypes must be"),
    ("random_state-negative", {"random_state": -1}, ValueError, "random_state must be a non-neg"),
    ("random_state-str", {"random_state": "seed"}, TypeError, "random_state must be None"),
    ("random_state-float", {"random_state": 1.5}, TypeError, "random_state must be None"),
]


@pytest.mark.parametrize(
    ("kw", "exc", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_VORONOI]
)
def test_make_voronoi_rejects_bad_arguments(kw, exc, match):
    args = {"scenario": "lines", "n_images": 1, "shape": (8, 8), "noise": 0.1} | kw
    with pytest.raises(exc, match=match):
        af.datasets.make_voronoi(**args)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        pytest.param(lambda: af.datasets.voronoi_prototypes("stripes"), ValueError,
                     "unknown scenario", id="prototypes-scenario"),
        pytest.param(lambda: af.datasets.noise_for_rounding_error("lines", 0.0), ValueError,
                     r"target must lie in the open interval \(0, 0.5\)", id="target-zero"),
        pytest.param(lambda: af.datasets.noise_for_rounding_error("lines", 0.6), ValueError,
                     "target must lie", id="target-unreachable"),
        pytest.param(lambda: af.datasets.noise_for_rounding_error("colors", np.nan), ValueError,
                     "target must be finite", id="target-nan"),
        pytest.param(lambda: af.datasets.noise_for_rounding_error("colors", 0.5, (1, 1)),
                     ValueError, r"shape\[0\]", id="rounding-shape"),
    ],
)  # fmt: skip
def test_dataset_helpers_reject_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_make_voronoi_smallest_legitimate_input():
    X, Y, P = af.datasets.make_voronoi(
        "colors", 1, (2, 2), noise=0.0, n_cells=2, random_state=0, return_prototypes=True
    )
    assert X.shape == (1, 2, 2, 3) and Y.shape == (1, 2, 2)
    np.testing.assert_array_equal(X, P[Y])
    assert Y.min() >= 0 and Y.max() < 8
