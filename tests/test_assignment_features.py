"""Tests of the predictor's assignment (affinity) features and ImageLabeler(features=...)."""

import os
import warnings

import numpy as np
import pytest

import assignflow as af
from assignflow.predictor import WeightPredictor, affinity_features


def _reference(u, r):
    """Brute-force ||u_i - u_{clip(i+k)}|| with the window offsets in lexicographic order."""
    h, w, _ = u.shape
    out = np.zeros((h, w, (2 * r + 1) ** 2))
    for y in range(h):
        for x in range(w):
            k = 0
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    yy, xx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
                    out[y, x, k] = np.sqrt(np.sum((u[y, x] - u[yy, xx]) ** 2))
                    k += 1
    return out.reshape(h * w, -1)


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_affinity_features_match_brute_force(radius):
    u = np.random.default_rng(0).normal(size=(5, 6, 3))
    u0 = u.copy()
    f = affinity_features(u, radius)
    np.testing.assert_allclose(f, _reference(u, radius), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(u, u0)  # input untouched
    centre = (2 * radius + 1) ** 2 // 2
    np.testing.assert_array_equal(f[:, centre], 0.0)


def test_affinity_features_2d_input_and_bad_input():
    u = np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(affinity_features(u, 1), _reference(u[:, :, None], 1))
    with pytest.raises(ValueError, match="representation"):
        affinity_features(np.zeros(5), 1)


def test_initialize_with_features_checks_rows():
    lab = np.zeros((4, 4), int)
    lab[:, 2:] = 1
    img = np.zeros((4, 4))
    f = affinity_features(lab.astype(float), 1)
    p = WeightPredictor.initialize_from_images(
        [img], [lab], radius=1, n_prototypes=3, features=[f], random_state=0
    )
    assert p.prototypes.shape == (3, 9) and p.nu.shape == (3, 9)
    with pytest.raises(ValueError, match=r"features\[0\] must have one row per pixel"):
        WeightPredictor.initialize_from_images(
            [img], [lab], radius=1, n_prototypes=3, features=[f[:-1]], random_state=0
        )


def _data():
    return af.datasets.make_voronoi("colors", 3, (20, 20), 0.5, random_state=1)


def test_image_labeler_assignment_features_fit_predict_save(tmp_path):
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = af.ImageLabeler(
            predictor="prototype",
            n_layers=1,
            features="assignment",
            rho=0.3,
            T=3.0,
            max_iter=3,
            n_prototypes=4,
            random_state=0,
        ).fit(X, y)
    assert m.predictor_.prototypes.shape == (4, 9)  # K columns, independent of channels
    assert m.predictor_.sigma != 1.0  # started at 5
    pred = m.predict(X)
    assert pred.shape == (3, 20, 20)
    assert m.score(X, y) > 0.8
    path = os.path.join(tmp_path, "m")
    af.save(m, path)
    m2 = af.load(path)
    np.testing.assert_array_equal(m2.predict(X), pred)


def test_image_labeler_features_validated():
    X, y = _data()
    with pytest.raises(ValueError, match="features"):
        af.ImageLabeler(features="pixels").fit(X, y)
    with pytest.raises(ValueError, match="feature_T"):
        af.ImageLabeler(features="assignment", feature_T=0.0).fit(X, y)
