"""Tests for assignflow.datasets (Voronoi scenes, palettes, smooth blobs, quantisation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from assignflow.datasets import (
    SCENARIOS,
    _cell_adjacency,
    _color_cells,
    _voronoi_cells,
    make_smooth_blobs,
    make_voronoi,
    noise_for_rounding_error,
    quantize_image,
    random_palette,
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
# validation (errors name the argument; messages are scikit-learn's or ours)
# --------------------------------------------------------------------------- #
BAD_VORONOI = [
    ("scenario-unknown", {"scenario": "colours"}, ValueError, "scenario"),
    ("scenario-int", {"scenario": 2}, TypeError, "scenario"),
    ("n_images-zero", {"n_images": 0}, ValueError, "n_images"),
    ("n_images-negative", {"n_images": -2}, ValueError, "n_images"),
    ("n_images-float", {"n_images": 1.5}, TypeError, "n_images"),
    ("n_images-bool", {"n_images": True}, TypeError, "n_images"),
    ("n_images-str", {"n_images": "2"}, TypeError, "n_images"),
    ("shape-1x8", {"shape": (1, 8)}, ValueError, "shape"),
    ("shape-0x0", {"shape": (0, 0)}, ValueError, "shape"),
    ("shape-8x0", {"shape": (8, 0)}, ValueError, "shape"),
    ("shape-one-entry", {"shape": (8,)}, ValueError, "shape"),
    ("shape-three-entries", {"shape": (8, 8, 3)}, ValueError, "shape"),
    ("shape-str", {"shape": "88"}, TypeError, "shape"),
    ("shape-int", {"shape": 8}, TypeError, "shape"),
    ("shape-float", {"shape": (8.0, 8)}, TypeError, "shape"),
    ("shape-2d-array", {"shape": np.ones((2, 2), int)}, ValueError, "shape"),
    ("shape-row-array", {"shape": np.array([[24, 30]])}, ValueError, "shape"),
    ("noise-negative", {"noise": -0.1}, ValueError, "noise"),
    ("noise-nan", {"noise": float("nan")}, ValueError, "noise"),
    ("noise-inf", {"noise": float("inf")}, ValueError, "noise"),
    ("noise-str", {"noise": "0.3"}, TypeError, "noise"),
    ("noise-bool", {"noise": True}, TypeError, "noise"),
    ("n_cells-one", {"n_cells": 1}, ValueError, "n_cells"),
    ("n_cells-too-many", {"n_cells": 65}, ValueError, "n_cells"),
    ("n_cells-huge", {"n_cells": 10**9}, ValueError, "n_cells"),
    ("n_cells-float", {"n_cells": 2.5}, TypeError, "n_cells"),
    ("n_cells-float-integral", {"n_cells": 3.0}, TypeError, "n_cells"),
    ("line_width-zero", {"line_width": 0}, ValueError, "line_width"),
    ("line_width-float", {"line_width": 1.0}, TypeError, "line_width"),
    ("clip-str", {"clip": "yes"}, TypeError, "clip"),
    ("clip-int", {"clip": 1}, TypeError, "clip"),
    ("return_prototypes-int", {"return_prototypes": 1}, TypeError, "return_prototypes"),
    ("random_state-negative", {"random_state": -1}, ValueError, "random_state"),
    ("random_state-too-large", {"random_state": 2**40}, ValueError, "random_state"),
    ("random_state-str", {"random_state": "seed"}, TypeError, "random_state"),
    ("random_state-float", {"random_state": 1.5}, TypeError, "random_state"),
    ("palette-for-lines", {"palette": np.eye(3)}, ValueError, "palette"),
    ("palette-one-colour", {"scenario": "colors", "palette": [[0.5, 0.5, 0.5]]}, ValueError,
     "palette"),
    ("palette-1d", {"scenario": "colors", "palette": [0.0, 1.0]}, ValueError, "palette"),
    ("palette-nan", {"scenario": "colors", "palette": [[0.0], [np.nan]]}, ValueError, "palette"),
    ("palette-str", {"scenario": "colors", "palette": [["a"], ["b"]]}, TypeError, "palette"),
    ("palette-int", {"scenario": "colors", "palette": 3}, TypeError, "palette"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kw", "exc", "name"), [pytest.param(*c[1:], id=c[0]) for c in BAD_VORONOI]
)
def test_make_voronoi_rejects_bad_arguments(kw, exc, name):
    args = {"scenario": "lines", "n_images": 1, "shape": (8, 8), "noise": 0.1} | kw
    with pytest.raises(exc, match=name):
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
        pytest.param(lambda: noise_for_rounding_error("colors", "half"), TypeError, "target",
                     id="target-str"),
        pytest.param(lambda: noise_for_rounding_error("colors", 0.5, (1, 1)), ValueError,
                     "shape", id="rounding-shape"),
        pytest.param(lambda: noise_for_rounding_error("colors", 0.6, palette=np.eye(2)),
                     ValueError, "target", id="target-palette-of-two"),
        pytest.param(lambda: noise_for_rounding_error("lines", 0.3, palette=np.eye(2)),
                     ValueError, "palette", id="rounding-palette-lines"),
        pytest.param(lambda: random_palette(1), ValueError, "n_colors", id="palette-n_colors"),
        pytest.param(lambda: random_palette(4.0), TypeError, "n_colors", id="palette-float"),
        pytest.param(lambda: random_palette(4, 0), ValueError, "n_channels",
                     id="palette-n_channels"),
        pytest.param(lambda: random_palette(random_state="x"), TypeError, "random_state",
                     id="palette-random_state"),
        pytest.param(lambda: make_smooth_blobs(0), ValueError, "n_images", id="blobs-n_images"),
        pytest.param(lambda: make_smooth_blobs(shape=(1, 4)), ValueError, "shape",
                     id="blobs-shape"),
        pytest.param(lambda: make_smooth_blobs(noise=-1.0), ValueError, "noise",
                     id="blobs-noise"),
        pytest.param(lambda: make_smooth_blobs(smoothness=0.0), ValueError, "smoothness",
                     id="blobs-smoothness-zero"),
        pytest.param(lambda: make_smooth_blobs(smoothness=np.inf), ValueError, "smoothness",
                     id="blobs-smoothness-inf"),
        pytest.param(lambda: make_smooth_blobs(fraction=1.0), ValueError, "fraction",
                     id="blobs-fraction"),
        pytest.param(lambda: make_smooth_blobs(clip="no"), TypeError, "clip", id="blobs-clip"),
        pytest.param(lambda: quantize_image(np.ones((4, 4)), 1), ValueError, "n_labels",
                     id="quantize-n_labels-one"),
        pytest.param(lambda: quantize_image(np.ones((4, 4)), 2), ValueError, "n_labels",
                     id="quantize-too-few-values"),
        pytest.param(lambda: quantize_image(np.ones(4), 2), ValueError, "image",
                     id="quantize-image-1d"),
        pytest.param(lambda: quantize_image(np.full((4, 4), np.nan), 2), ValueError, "image",
                     id="quantize-image-nan"),
        pytest.param(lambda: quantize_image([["a", "b"]], 2), TypeError, "image",
                     id="quantize-image-str"),
        pytest.param(lambda: quantize_image(np.eye(4), 2, mask=np.ones((3, 3), bool)),
                     ValueError, "mask", id="quantize-mask-shape"),
        pytest.param(lambda: quantize_image(np.eye(4), 2, mask=np.ones((4, 4))), ValueError,
                     "mask", id="quantize-mask-dtype"),
        pytest.param(lambda: quantize_image(np.eye(4), 2, mask=np.eye(4, dtype=bool)),
                     ValueError, "n_labels", id="quantize-mask-one-value"),
    ],
)  # fmt: skip
def test_dataset_helpers_reject_bad_arguments(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


def test_make_voronoi_smallest_legitimate_input():
    X, Y, P = make_voronoi(
        "colors", 1, (2, 2), noise=0.0, n_cells=2, random_state=0, return_prototypes=True
    )
    assert X.shape == (1, 2, 2, 3) and Y.shape == (1, 2, 2)
    np.testing.assert_array_equal(X, P[Y])
    assert Y.min() >= 0 and Y.max() < 8


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


# --------------------------------------------------------------------------- #
# random_state semantics
# --------------------------------------------------------------------------- #
def test_int_seed_is_default_rng_stream():
    # an integer seeds numpy.random.default_rng: the first draws are the Voronoi seeds
    _, labels = make_voronoi("lines", 1, (40, 40), 0.0, n_cells=6, random_state=11)
    cells = _voronoi_cells((40, 40), 6, np.random.default_rng(11))
    padded = np.pad(cells, 1, mode="edge")
    nbs = [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
    np.testing.assert_array_equal(labels[0] == 0, np.any([nb != cells for nb in nbs], axis=0))


def test_none_uses_numpy_global_state():
    saved = np.random.get_state()  # noqa: NPY002 (the global state is what is tested)
    try:
        np.random.seed(123)  # noqa: NPY002
        a = make_voronoi("colors", 1, (16, 16), random_state=None)[0]
        np.random.seed(123)  # noqa: NPY002
        b = make_voronoi("colors", 1, (16, 16), random_state=None)[0]
        c = make_voronoi("colors", 1, (16, 16), random_state=None)[0]
    finally:
        np.random.set_state(saved)  # noqa: NPY002
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_seed_sequence_accepted():
    a = make_voronoi("colors", 1, (16, 16), random_state=np.random.SeedSequence(4))[0]
    b = make_voronoi("colors", 1, (16, 16), random_state=np.random.SeedSequence(4))[0]
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- #
# palettes
# --------------------------------------------------------------------------- #
def test_random_palette_uniform_and_reproducible():
    p = random_palette(8, random_state=0)
    assert p.shape == (8, 3) and p.dtype == np.float64
    np.testing.assert_array_equal(p, random_palette(8, random_state=0))
    assert not np.array_equal(p, random_palette(8, random_state=1))
    big = random_palette(20000, 2, random_state=0)
    assert big.min() >= 0 and big.max() < 1
    np.testing.assert_allclose(big.mean(axis=0), 0.5, atol=0.01)
    np.testing.assert_allclose(big.var(axis=0), 1 / 12, atol=0.003)


def test_palette_colours_the_cells():
    palette = random_palette(8, random_state=3)
    X, y, P = make_voronoi(
        "colors", 2, (40, 40), 0.0, palette=palette, random_state=5, return_prototypes=True
    )
    np.testing.assert_array_equal(P, palette)
    np.testing.assert_array_equal(X, palette[y])
    # same random_state: the labels depend on J only, not on the colours
    _, y_cube = make_voronoi("colors", 2, (40, 40), 0.0, random_state=5)
    np.testing.assert_array_equal(y, y_cube)
    # the palette is copied: changing it afterwards changes nothing returned
    palette[:] = 0
    assert P.max() > 0


def test_palette_with_other_sizes():
    palette = np.linspace(0, 1, 12).reshape(6, 2)
    X, y = make_voronoi("colors", 3, (48, 48), 0.0, palette=palette, random_state=0)
    assert X.shape == (3, 48, 48, 2)
    assert set(np.unique(y)) <= set(range(6)) and len(np.unique(y)) > 3
    # six colours keep neighbouring cells apart (5-degenerate adjacency)
    regions = sum(ndimage.label(y[0] == j)[1] for j in range(6))
    n_cells = max(2, round(48 * 48 / 400))
    assert regions >= 0.9 * n_cells
    X2, y2 = make_voronoi("colors", 1, (16, 16), 0.0, palette=[[0.0], [1.0]], random_state=0)
    assert X2.shape == (1, 16, 16, 1) and set(np.unique(y2)) <= {0, 1}


def test_noise_for_rounding_error_with_palette():
    palette = random_palette(8, random_state=0)
    sigma = noise_for_rounding_error("colors", 0.3, (64, 64), random_state=0, palette=palette)
    X, y, P = make_voronoi(
        "colors", 2, (96, 96), sigma, palette=palette, random_state=1, return_prototypes=True
    )
    assert abs(np.mean(_round(X, P) != y) - 0.3) < 0.05
    # random colours are closer than the cube corners: less noise for the same error
    assert sigma < noise_for_rounding_error("colors", 0.3, (64, 64), random_state=0)


# --------------------------------------------------------------------------- #
# smooth blobs
# --------------------------------------------------------------------------- #
def test_smooth_blobs_shapes_fraction_and_noise():
    X, y, P = make_smooth_blobs(
        3, (64, 80), noise=0.7, fraction=0.3, random_state=0, return_prototypes=True
    )
    assert X.shape == y.shape == (3, 64, 80) and X.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_array_equal(P, [[0.0], [1.0]])
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.3, atol=0.002)
    resid = X - y
    assert resid.std() == pytest.approx(0.7, rel=0.03)
    clean, y2 = make_smooth_blobs(3, (64, 80), noise=0.0, fraction=0.3, random_state=0)
    np.testing.assert_array_equal(y, y2)  # labels do not depend on the noise
    np.testing.assert_array_equal(clean, y2)


def test_smooth_blobs_are_smooth_and_scale_with_smoothness():
    def boundary_fraction(lab):
        return np.mean(lab[:, 1:] != lab[:, :-1])

    _, fine = make_smooth_blobs(4, (96, 96), 0.0, smoothness=2.0, random_state=1)
    _, coarse = make_smooth_blobs(4, (96, 96), 0.0, smoothness=8.0, random_state=1)
    # a smoothed field crosses its median about every ~3 smoothness lengths
    assert 0.02 < boundary_fraction(fine) < 0.3
    assert boundary_fraction(coarse) < 0.5 * boundary_fraction(fine)
    for lab in coarse:  # few, large blobs
        assert ndimage.label(lab == 1)[1] <= 20


def test_smooth_blobs_reproducible_and_clipped_smoothness():
    a = make_smooth_blobs(2, (32, 32), random_state=7)
    b = make_smooth_blobs(2, (32, 32), random_state=7)
    np.testing.assert_array_equal(a[0], b[0])
    # smoothness beyond the image is clipped to max(h, w): same result as max(h, w)
    _, big = make_smooth_blobs(1, (16, 24), 0.0, smoothness=1e6, random_state=2)
    _, clipped = make_smooth_blobs(1, (16, 24), 0.0, smoothness=24.0, random_state=2)
    np.testing.assert_array_equal(big, clipped)
    X, _ = make_smooth_blobs(1, (32, 32), noise=1.0, clip=True, random_state=0)
    assert X.min() >= 0 and X.max() <= 1


def test_smooth_blobs_rounding_error_matches_formula():
    from scipy.stats import norm

    X, y = make_smooth_blobs(4, (96, 96), noise=1.0, random_state=3)
    err = np.mean((X > 0.5) != y)
    assert err == pytest.approx(norm.cdf(-0.5), abs=0.01)


# --------------------------------------------------------------------------- #
# quantisation of real images
# --------------------------------------------------------------------------- #
def test_quantize_grey_two_levels_is_midpoint_threshold():
    rng = np.random.default_rng(0)
    truth = (rng.random((40, 40)) < 0.4).astype(int)
    img = np.where(truth == 1, 0.8, 0.2) + 0.03 * rng.standard_normal((40, 40))
    labels, protos = quantize_image(img, 2)
    assert protos.shape == (2, 1) and labels.shape == (40, 40) and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, truth)  # ordered by brightness: dark = 0
    # nearest prototype == threshold halfway between the class means
    thr = protos.mean()
    np.testing.assert_array_equal(labels, (img > thr).astype(int))
    np.testing.assert_allclose(protos[:, 0], [img[truth == 0].mean(), img[truth == 1].mean()])


def test_quantize_colour_recovers_clusters_and_orders_by_brightness():
    centres = np.array([[0.9, 0.1, 0.1], [0.1, 0.1, 0.6], [0.95, 0.95, 0.95]])
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, size=(30, 30))
    img = centres[truth] + 0.02 * rng.standard_normal((30, 30, 3))
    labels, protos = quantize_image(img, 3, random_state=0)
    order = np.argsort(centres.sum(axis=1))  # blue (0.8), red (1.1), white
    assert np.all(np.diff(protos.sum(axis=1)) >= 0)
    np.testing.assert_allclose(protos, centres[order], atol=0.01)
    np.testing.assert_array_equal(order[labels], truth)
    labels2, protos2 = quantize_image(img, 3, random_state=0)
    np.testing.assert_array_equal(labels, labels2)
    np.testing.assert_array_equal(protos, protos2)


def test_quantize_mask_fits_on_masked_pixels_only():
    img = np.zeros((10, 20))
    img[:, 10:] = np.linspace(0.5, 1.0, 10)  # right half: other values
    img[5:, :10] = 0.4
    mask = np.zeros((10, 20), bool)
    mask[:, :10] = True
    labels, protos = quantize_image(img, 2, mask=mask)
    np.testing.assert_allclose(protos[:, 0], [0.0, 0.4], atol=1e-12)  # the right half is not used
    assert np.all(labels[:, 10:] == 1)  # but it is labeled (nearest prototype)
    original = img.copy()
    quantize_image(img, 2)
    np.testing.assert_array_equal(img, original)  # input not modified


def test_task_builders_smoke():
    # the benchmark's use of the generators: one palette shared by the training and
    # test scenes of a task (different seeds), and ground truth of a clean image
    # fitted on its training half only
    palette = random_palette(8, random_state=6001)
    _, ya, Pa = make_voronoi(
        "colors", 2, (24, 24), 0.3, palette=palette, random_state=1, return_prototypes=True
    )
    _, yb, Pb = make_voronoi(
        "colors", 2, (24, 24), 0.3, palette=palette, random_state=2, return_prototypes=True
    )
    np.testing.assert_array_equal(Pa, Pb)
    assert not np.array_equal(ya, yb)
    clean = np.linspace(0, 1, 24 * 32).reshape(24, 32)
    left = np.zeros(clean.shape, bool)
    left[:, :16] = True
    labels, protos = quantize_image(clean, 3, mask=left)
    assert protos.shape == (3, 1) and protos.max() <= clean[left].max()
    assert labels.shape == clean.shape and set(np.unique(labels)) == {0, 1, 2}
