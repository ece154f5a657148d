"""Tests for assignflow.datasets (random Voronoi images)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import BAD
from scipy import ndimage

from assignflow.datasets import (
    SCENARIOS,
    _cell_adjacency,
    _color_cells,
    _voronoi_cells,
    make_voronoi,
    noise_for_rounding_error,
    voronoi_prototypes,
)


def _round(images, prototypes):
    x = images if images.ndim == 4 else images[..., None]
    d2 = ((x[..., None, :] - prototypes) ** 2).sum(axis=-1)
    return np.argmin(d2, axis=-1)


# --------------------------------------------------------------------------- #
# shapes, dtypes, prototypes
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("scenario", "img_shape", "n_labels"),
    [("colors", (3, 40, 50, 3), 8), ("lines", (3, 40, 50), 2)],
)
def test_shapes_dtypes_and_ranges(scenario, img_shape, n_labels):
    images, labels, protos = make_voronoi(
        scenario, 3, (40, 50), random_state=0, return_prototypes=True
    )
    assert images.shape == img_shape
    assert images.dtype == np.float64
    assert labels.shape == (3, 40, 50)
    assert labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() <= n_labels - 1
    assert protos.shape == (n_labels, 3 if scenario == "colors" else 1)
    assert protos.dtype == np.float64
    assert np.all(np.isfinite(images))


def test_two_outputs_by_default():
    out = make_voronoi("colors", shape=(16, 16), random_state=0)
    assert isinstance(out, tuple) and len(out) == 2


def test_prototypes():
    rgb = voronoi_prototypes("colors")
    # 8 distinct corners of the RGB unit cube, in binary order
    assert rgb.shape == (8, 3)
    assert set(np.unique(rgb)) == {0.0, 1.0}
    assert len({tuple(p) for p in rgb}) == 8
    np.testing.assert_array_equal(rgb[0], [0, 0, 0])
    np.testing.assert_array_equal(rgb[4], [1, 0, 0])
    np.testing.assert_array_equal(rgb[7], [1, 1, 1])
    np.testing.assert_array_equal(voronoi_prototypes("lines"), [[0.0], [1.0]])
    _, _, protos = make_voronoi("colors", shape=(8, 8), random_state=0, return_prototypes=True)
    np.testing.assert_array_equal(protos, rgb)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_noise_free_equals_prototypes(scenario):
    images, labels, protos = make_voronoi(
        scenario, 2, (32, 48), noise=0.0, random_state=3, return_prototypes=True
    )
    expected = protos[labels]
    if scenario == "lines":
        expected = expected[..., 0]
    np.testing.assert_array_equal(images, expected)


def test_all_colors_used_and_roughly_uniform():
    _, labels = make_voronoi("colors", 20, (64, 64), noise=0.0, random_state=1)
    counts = np.bincount(labels.ravel(), minlength=8) / labels.size
    assert np.all(counts > 0.125 / 3)
    assert np.all(counts < 0.125 * 3)


# --------------------------------------------------------------------------- #
# randomness
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_reproducible(scenario):
    a = make_voronoi(scenario, 2, (32, 32), random_state=42)
    b = make_voronoi(scenario, 2, (32, 32), random_state=42)
    c = make_voronoi(scenario, 2, (32, 32), random_state=43)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert not np.array_equal(a[0], c[0])


def test_generator_and_randomstate_accepted():
    rng = np.random.default_rng(5)
    x1, _ = make_voronoi("colors", shape=(16, 16), random_state=rng)
    x2, _ = make_voronoi("colors", shape=(16, 16), random_state=rng)
    assert not np.array_equal(x1, x2)  # generator is advanced
    y1, _ = make_voronoi("colors", shape=(16, 16), random_state=np.random.RandomState(0))
    y2, _ = make_voronoi("colors", shape=(16, 16), random_state=np.random.RandomState(0))
    np.testing.assert_array_equal(y1, y2)
    make_voronoi("lines", shape=(16, 16), random_state=None)
    make_voronoi("lines", shape=(16, 16), random_state=np.int64(3))


def test_labels_do_not_depend_on_noise():
    _, l0 = make_voronoi("colors", 2, (32, 32), noise=0.0, random_state=9)
    _, l1 = make_voronoi("colors", 2, (32, 32), noise=0.7, random_state=9)
    np.testing.assert_array_equal(l0, l1)


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("sigma", [0.1, 0.6])
def test_noise_std(scenario, sigma):
    images, labels, protos = make_voronoi(
        scenario, 1, (96, 96), noise=sigma, random_state=0, return_prototypes=True
    )
    clean = protos[labels]
    if scenario == "lines":
        clean = clean[..., 0]
    resid = images - clean
    assert abs(resid.mean()) < 0.05 * sigma + 0.01
    assert resid.std() == pytest.approx(sigma, rel=0.05)


def test_clip():
    images, _ = make_voronoi("colors", shape=(32, 32), noise=0.5, random_state=0)
    assert images.min() < 0 and images.max() > 1  # no clipping by default
    clipped, _ = make_voronoi("colors", shape=(32, 32), noise=0.5, clip=True, random_state=0)
    assert clipped.min() >= 0 and clipped.max() <= 1
    np.testing.assert_array_equal(clipped, np.clip(images, 0, 1))


# --------------------------------------------------------------------------- #
# geometry
# --------------------------------------------------------------------------- #
def test_lines_boundary_fraction():
    _, labels = make_voronoi("lines", 4, (128, 128), noise=0.0, random_state=0)
    for lab in labels:
        frac = np.mean(lab == 0)
        assert 0.03 < frac < 0.40
    # the white interiors are (mostly) the cells: about n_cells components
    n_comp = [ndimage.label(lab == 1)[1] for lab in labels]
    assert 20 <= np.mean(n_comp) <= 60  # default n_cells = 41


def test_lines_width_increases_boundary():
    fracs = [
        np.mean(make_voronoi("lines", 1, (64, 64), 0.0, line_width=lw, random_state=2)[1] == 0)
        for lw in (1, 2, 3)
    ]
    assert fracs[0] < fracs[1] < fracs[2]


def test_lines_boundary_definition():
    _, labels = make_voronoi("lines", 1, (40, 40), 0.0, n_cells=6, random_state=0)
    # recompute with the same draws: the first draws of random_state=0 are the seeds
    cells = _voronoi_cells((40, 40), 6, np.random.default_rng(0))
    padded = np.pad(cells, 1, mode="edge")
    neighbours = [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
    boundary = np.any([nb != cells for nb in neighbours], axis=0)
    np.testing.assert_array_equal(labels[0] == 0, boundary)


def test_colors_neighbouring_cells_differ():
    rng = np.random.default_rng(0)
    conflicts = edges = 0
    for _ in range(20):
        cells = _voronoi_cells((128, 128), 41, rng)
        adj = _cell_adjacency(cells, 41)
        lab = _color_cells(adj, 8, rng)
        for k, nb in enumerate(adj):
            edges += len(nb)
            conflicts += int(np.sum(lab[nb] == lab[k]))
    assert edges > 0
    assert conflicts / edges < 0.01


def test_colors_label_regions_are_cells():
    # if neighbouring cells have different colours, every connected region of a
    # single label is one Voronoi cell: about n_cells regions (random labels
    # without recolouring would merge ~1/8 of the neighbours)
    n_cells = 41
    _, labels = make_voronoi("colors", 5, (128, 128), 0.0, n_cells=n_cells, random_state=0)
    for lab in labels:
        n_regions = sum(ndimage.label(lab == j)[1] for j in range(8))
        assert 0.9 * n_cells <= n_regions <= 1.1 * n_cells


def test_n_cells_default_and_custom():
    _, few = make_voronoi("colors", 1, (64, 64), 0.0, n_cells=2, random_state=0)
    assert len(np.unique(few)) <= 2
    _, many = make_voronoi("lines", 1, (64, 64), 0.0, n_cells=200, random_state=0)
    _, default = make_voronoi("lines", 1, (64, 64), 0.0, random_state=0)
    assert np.mean(many == 0) > np.mean(default == 0)


def test_tiny_image():
    images, labels = make_voronoi("colors", 1, (2, 2), random_state=0)
    assert images.shape == (1, 2, 2, 3)
    assert labels.shape == (1, 2, 2)


# --------------------------------------------------------------------------- #
# rounding error calibration
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("scenario", "target"), [("colors", 0.5), ("colors", 0.2), ("lines", 0.25)]
)
def test_noise_for_rounding_error(scenario, target):
    sigma = noise_for_rounding_error(scenario, target, shape=(64, 64), random_state=0)
    assert sigma > 0
    images, labels, protos = make_voronoi(
        scenario, 2, (128, 128), noise=sigma, random_state=1, return_prototypes=True
    )
    err = np.mean(_round(images, protos) != labels)
    assert abs(err - target) <= 0.05


def test_noise_for_rounding_error_colors_value_and_determinism():
    s1 = noise_for_rounding_error("colors")
    s2 = noise_for_rounding_error("colors")
    assert s1 == s2
    # population value: 1 - Phi(1/(2 sigma))**3 = 0.5  <=>  sigma = 0.6103
    assert s1 == pytest.approx(0.6103, abs=0.02)
    # monotone in target
    assert noise_for_rounding_error("colors", 0.3) < s1 < noise_for_rounding_error("colors", 0.7)


@pytest.mark.parametrize(
    ("scenario", "target"), [("lines", 0.5), ("colors", 0.875), ("colors", 0.0), ("colors", -1)]
)
def test_noise_for_rounding_error_bad_target(scenario, target):
    with pytest.raises(ValueError, match="target"):
        noise_for_rounding_error(scenario, target)


def test_noise_for_rounding_error_bad_scenario():
    with pytest.raises(ValueError, match="scenario"):
        noise_for_rounding_error("stripes")


# --------------------------------------------------------------------------- #
# validation
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"scenario": "stripes"}, ValueError, "scenario"),
        ({"scenario": 1}, TypeError, "scenario"),
        ({"n_images": 0}, ValueError, "n_images"),
        ({"n_images": 1.5}, TypeError, "n_images"),
        ({"n_images": True}, TypeError, "n_images"),
        ({"shape": (128,)}, ValueError, "shape"),
        ({"shape": (128, 128, 3)}, ValueError, "shape"),
        ({"shape": (1, 128)}, ValueError, "shape"),
        ({"shape": (128, 0)}, ValueError, "shape"),
        ({"shape": (128.0, 128)}, TypeError, "shape"),
        ({"shape": 128}, TypeError, "shape"),
        ({"shape": "ab"}, TypeError, "shape"),
        ({"shape": np.array([[24, 30]])}, ValueError, "shape"),
        ({"noise": -0.1}, ValueError, "noise"),
        ({"noise": np.nan}, ValueError, "noise"),
        ({"noise": np.inf}, ValueError, "noise"),
        ({"noise": "0.1"}, TypeError, "noise"),
        ({"n_cells": 1}, ValueError, "n_cells"),
        ({"n_cells": 10**9}, ValueError, "n_cells"),
        ({"n_cells": 3.0}, TypeError, "n_cells"),
        ({"line_width": 0}, ValueError, "line_width"),
        ({"line_width": 1.0}, TypeError, "line_width"),
        ({"random_state": -1}, ValueError, "random_state"),
        ({"random_state": "seed"}, TypeError, "random_state"),
        ({"clip": 1}, TypeError, "clip"),
        ({"return_prototypes": "yes"}, TypeError, "return_prototypes"),
    ],
)
def test_bad_inputs(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        make_voronoi(**kwargs)


def test_unknown_scenario_lists_valid():
    with pytest.raises(ValueError, match="colors") as info:
        make_voronoi("stripes")
    assert "lines" in str(info.value)


def test_inputs_not_mutated_and_list_shape():
    shape = [24, 30]
    images, labels = make_voronoi("colors", 1, shape, random_state=0)
    assert shape == [24, 30]
    assert images.shape == (1, 24, 30, 3)
    images2, labels2 = make_voronoi("colors", 1, np.array([24, 30]), random_state=0)
    np.testing.assert_array_equal(images, images2)
    np.testing.assert_array_equal(labels, labels2)


def test_prototypes_not_shared_between_calls():
    _, _, p1 = make_voronoi("colors", shape=(8, 8), random_state=0, return_prototypes=True)
    p1[:] = -1
    _, _, p2 = make_voronoi("colors", shape=(8, 8), random_state=0, return_prototypes=True)
    np.testing.assert_array_equal(p2, voronoi_prototypes("colors"))


# ===== bad input (moved from test_bad_input_*.py)
# Errors name the argument (a whole word); a wrong type may be either kind (BAD).
BAD_VORONOI = [
    ("scenario-unknown", {"scenario": "colours"}, ValueError, "scenario"),
    ("scenario-int", {"scenario": 2}, BAD, "scenario"),
    ("n_images-zero", {"n_images": 0}, ValueError, "n_images"),
    ("n_images-negative", {"n_images": -2}, ValueError, "n_images"),
    ("n_images-float", {"n_images": 1.5}, BAD, "n_images"),
    ("n_images-bool", {"n_images": True}, BAD, "n_images"),
    ("shape-1x8", {"shape": (1, 8)}, ValueError, "shape"),
    ("shape-0x0", {"shape": (0, 0)}, ValueError, "shape"),
    ("shape-one-entry", {"shape": (8,)}, ValueError, "shape"),
    ("shape-three-entries", {"shape": (8, 8, 3)}, ValueError, "shape"),
    ("shape-str", {"shape": "88"}, BAD, "shape"),
    ("shape-int", {"shape": 8}, BAD, "shape"),
    ("shape-float", {"shape": (8.0, 8)}, BAD, "shape"),
    ("shape-2d-array", {"shape": np.ones((2, 2), int)}, ValueError, "shape"),
    ("noise-negative", {"noise": -0.1}, ValueError, "noise"),
    ("noise-nan", {"noise": float("nan")}, ValueError, "noise"),
    ("noise-inf", {"noise": float("inf")}, ValueError, "noise"),
    ("noise-str", {"noise": "0.3"}, BAD, "noise"),
    ("noise-bool", {"noise": True}, BAD, "noise"),
    ("n_cells-one", {"n_cells": 1}, ValueError, "n_cells"),
    ("n_cells-too-many", {"n_cells": 65}, ValueError, "n_cells"),
    ("n_cells-float", {"n_cells": 2.5}, BAD, "n_cells"),
    ("line_width-zero", {"line_width": 0}, ValueError, "line_width"),
    ("clip-str", {"clip": "yes"}, BAD, "clip"),
    ("return_prototypes-int", {"return_prototypes": 1}, BAD, "return_prototypes"),
    ("random_state-negative", {"random_state": -1}, ValueError, "random_state"),
    ("random_state-str", {"random_state": "seed"}, BAD, "random_state"),
    ("random_state-float", {"random_state": 1.5}, BAD, "random_state"),
]


@pytest.mark.parametrize(
    ("kw", "exc", "name"), [pytest.param(*c[1:], id=c[0]) for c in BAD_VORONOI]
)
def test_make_voronoi_rejects_bad_arguments(kw, exc, name):
    args = {"scenario": "lines", "n_images": 1, "shape": (8, 8), "noise": 0.1} | kw
    with pytest.raises(exc, match=rf"\b{name}\b"):
        make_voronoi(**args)


@pytest.mark.parametrize(
    ("call", "exc", "name"),
    [
        pytest.param(lambda: voronoi_prototypes("stripes"), ValueError, "scenario",
                     id="prototypes-scenario"),
        pytest.param(lambda: noise_for_rounding_error("lines", 0.0), ValueError, "target",
                     id="target-zero"),
        pytest.param(lambda: noise_for_rounding_error("lines", 0.6), ValueError, "target",
                     id="target-unreachable"),
        pytest.param(lambda: noise_for_rounding_error("colors", np.nan), ValueError, "target",
                     id="target-nan"),
        pytest.param(lambda: noise_for_rounding_error("colors", 0.5, (1, 1)), ValueError,
                     "shape", id="rounding-shape"),
    ],
)  # fmt: skip
def test_dataset_helpers_reject_bad_arguments(call, exc, name):
    with pytest.raises(exc, match=rf"\b{name}\b"):
        call()


def test_make_voronoi_smallest_legitimate_input():
    X, Y, P = make_voronoi(
        "colors", 1, (2, 2), noise=0.0, n_cells=2, random_state=0, return_prototypes=True
    )
    assert X.shape == (1, 2, 2, 3) and Y.shape == (1, 2, 2)
    np.testing.assert_array_equal(X, P[Y])
    assert Y.min() >= 0 and Y.max() < 8
