"""Tests for :mod:`assignflow.features` against brute-force references."""

from __future__ import annotations

import itertools
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import PROPERTY

from assignflow import Graph, GridGraph
from assignflow.features import (
    affinity_features,
    edge_differences,
    gaussian_features,
    window_features,
)


# --------------------------------------------------------------------------- references
def _offsets(ndim, r):
    return list(itertools.product(range(-r, r + 1), repeat=ndim))


def _clip(x, d, grid):
    return tuple(min(max(xa + da, 0), s - 1) for xa, da, s in zip(x, d, grid, strict=True))


def ref_window(img, r):
    """Node by node, offset by offset: the edge-replicated window, channels last."""
    grid, c = img.shape[:-1], img.shape[-1]
    offs = _offsets(len(grid), r)
    out = np.zeros((math.prod(grid), len(offs) * c))
    for i, x in enumerate(np.ndindex(*grid)):
        for o, d in enumerate(offs):
            out[i, o * c : (o + 1) * c] = img[_clip(x, d, grid)]
    return out


def ref_affinity(u, r):
    grid = u.shape[:-1]
    offs = _offsets(len(grid), r)
    out = np.zeros((math.prod(grid), len(offs)))
    for i, x in enumerate(np.ndindex(*grid)):
        for o, d in enumerate(offs):
            out[i, o] = np.sqrt(np.sum((u[x] - u[_clip(x, d, grid)]) ** 2))
    return out


def ref_gaussian(x, sigma, truncate=4.0):
    """Separable Gaussian smoothing with edge replication, by explicit sums."""
    rad = int(truncate * sigma + 0.5)
    t = np.arange(-rad, rad + 1)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    out = np.asarray(x, dtype=float)
    for axis in range(out.ndim):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (rad, rad)
        p = np.pad(out, pad, mode="edge")
        acc = np.zeros_like(out)
        for j, kj in enumerate(k):
            sl = [slice(None)] * out.ndim
            sl[axis] = slice(j, j + out.shape[axis])
            acc += kj * p[tuple(sl)]
        out = acc
    return out


def ref_edge_differences(g, f):
    out = np.zeros((g.nnz, f.shape[1]))
    for i in range(g.n_nodes):
        for p in range(g.indptr[i], g.indptr[i + 1]):
            out[p] = np.abs(f[i] - f[g.indices[p]])
    return out


@st.composite
def grids_and_arrays(draw, max_ndim=3, max_side=5, channels=True):
    ndim = draw(st.integers(1, max_ndim))
    grid = tuple(draw(st.integers(1, max_side)) for _ in range(ndim))
    c = draw(st.integers(1, 3)) if channels else 1
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).normal(size=(*grid, c))


# --------------------------------------------------------------------------- window
@PROPERTY
@given(grids_and_arrays(), st.integers(0, 2))
def test_window_features_match_brute_force(img, r):
    nd = img.ndim - 1
    before = img.copy()
    f = window_features(img, r, grid_ndim=nd)
    np.testing.assert_array_equal(f, ref_window(img, r))
    np.testing.assert_array_equal(img, before)
    if img.shape[-1] == 1:  # without a channel axis: the same
        np.testing.assert_array_equal(window_features(img[..., 0], r, grid_ndim=nd), f)


@PROPERTY
@given(grids_and_arrays(), st.integers(0, 2))
def test_affinity_features_match_brute_force(u, r):
    nd = u.ndim - 1
    f = affinity_features(u, r, grid_ndim=nd)
    np.testing.assert_allclose(f, ref_affinity(u, r), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(f[:, (2 * r + 1) ** nd // 2], 0.0)  # the centre


def test_2d_defaults_are_the_image_case():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(4, 5, 3))
    assert window_features(img).shape == (20, 27)  # (h, w, c), 3×3 window
    np.testing.assert_array_equal(window_features(img), ref_window(img, 1))
    grey = rng.normal(size=(4, 5))
    np.testing.assert_array_equal(window_features(grey, 2), ref_window(grey[..., None], 2))
    np.testing.assert_allclose(affinity_features(grey), ref_affinity(grey[..., None], 1))
    # one pixel: edge replication everywhere
    np.testing.assert_array_equal(window_features(np.array([[0.5]]), 1), np.full((1, 9), 0.5))


def test_volume_features_layout():
    vol = np.random.default_rng(1).normal(size=(3, 4, 5, 2))
    f = window_features(vol, 1, grid_ndim=3)
    assert f.shape == (60, 27 * 2)
    # node (z, y, x) = (1, 2, 3), offset (0, 0, 0) is column block 13
    i = (1 * 4 + 2) * 5 + 3
    np.testing.assert_array_equal(f[i, 26:28], vol[1, 2, 3])
    g = GridGraph((3, 4, 5))
    assert affinity_features(vol, 1, grid_ndim=3).shape == (g.n_nodes, g.window_size)


@pytest.mark.parametrize("fn", [window_features, affinity_features])
def test_window_dtypes(fn):
    x = np.random.default_rng(2).normal(size=(6, 7, 2))
    ref = fn(x, 1)
    assert ref.dtype == np.float64
    f32 = fn(x.astype(np.float32), 1)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, ref, rtol=1e-5, atol=1e-5)
    assert fn(x, 1, dtype="float32").dtype == np.float32
    assert fn(x.astype(np.float32), 1, dtype=np.float64).dtype == np.float64


# --------------------------------------------------------------------------- gaussian
@pytest.mark.parametrize("shape", [(17,), (6, 9), (5, 6, 7), (4, 5, 6, 2)])
def test_gaussian_features_match_explicit_sums(shape):
    x = np.random.default_rng(3).normal(size=shape)
    nd = len(shape) - 1 if len(shape) == 4 else len(shape)
    img = x if x.ndim == nd + 1 else x[..., None]
    sigmas = [0.0, 0.7, 1.5]
    f = gaussian_features(x, sigmas, grid_ndim=nd)
    c = img.shape[-1]
    assert f.shape == (math.prod(img.shape[:-1]), len(sigmas) * c)
    for s, sigma in enumerate(sigmas):
        for ch in range(c):
            want = img[..., ch] if sigma == 0 else ref_gaussian(img[..., ch], sigma)
            np.testing.assert_allclose(f[:, s * c + ch], want.ravel(), rtol=1e-10, atol=1e-12)


def test_gaussian_features_float32_and_scalar_sigma():
    x = np.random.default_rng(4).normal(size=(8, 9, 3)).astype(np.float32)
    f = gaussian_features(x, 2.0)
    assert f.dtype == np.float32 and f.shape == (72, 3)
    ref = np.stack([ref_gaussian(x[..., k].astype(float), 2.0).ravel() for k in range(3)], 1)
    np.testing.assert_allclose(f, ref, rtol=1e-5, atol=1e-5)
    # a constant image stays constant at every scale
    np.testing.assert_allclose(gaussian_features(np.full((5, 5), 2.0), (1, 3)), 2.0)


# --------------------------------------------------------------------------- edges
@PROPERTY
@given(grids_and_arrays(), st.integers(0, 2))
def test_edge_differences_on_grids(x, r):
    grid, F = x.shape[:-1], x.shape[-1]
    g = GridGraph(grid, r)
    f = x.reshape(-1, F)
    want = ref_edge_differences(g, f)
    np.testing.assert_allclose(edge_differences(g, f), want, rtol=1e-14, atol=0)
    np.testing.assert_allclose(edge_differences(g, x), want, rtol=1e-14, atol=0)  # (*grid, F)
    # the generic (gathering) path gives the same on the same pattern
    plain = Graph(g.indptr, g.indices)
    np.testing.assert_allclose(edge_differences(plain, f), want, rtol=1e-14, atol=0)
    assert np.all(edge_differences(g, f)[g.self_loop_positions] == 0)


def test_edge_differences_on_any_graph_and_dtypes():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 2))
    g = Graph.knn(X, 4)
    f = rng.normal(size=(30, 3))
    np.testing.assert_allclose(edge_differences(g, f), ref_edge_differences(g, f))
    e1 = edge_differences(g, f[:, 0])
    np.testing.assert_allclose(e1[:, 0], ref_edge_differences(g, f[:, :1])[:, 0])
    e32 = edge_differences(g, f.astype(np.float32))
    assert e32.dtype == np.float32
    np.testing.assert_allclose(e32, ref_edge_differences(g, f), rtol=1e-5, atol=1e-6)
    assert edge_differences(GridGraph((5, 6)), f[:, :2], dtype="float32").dtype == np.float32


def test_edge_differences_large_grid_threaded_blocks():
    g = GridGraph((40, 50, 30))
    f = np.random.default_rng(6).normal(size=(g.n_nodes, 2)).astype(np.float32)
    e = edge_differences(g, f)
    ref = np.abs(f[g.rows] - f[g.indices])
    np.testing.assert_array_equal(e, ref)


# --------------------------------------------------------------------------- memory
def _peak(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    out = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, peak


def test_features_build_no_full_size_temporaries():
    """Beyond the output (and one padded copy of the input), only block-sized buffers."""
    vol = np.random.default_rng(7).random((64, 64, 64)).astype(np.float32)
    g = GridGraph(vol.shape)
    slack = 8 * 2**20  # blocks of 2^18 entries, a few at a time
    for fn in [
        lambda: window_features(vol, 1, grid_ndim=3),
        lambda: affinity_features(vol, 1, grid_ndim=3),
        lambda: gaussian_features(vol, (1.0, 2.0), grid_ndim=3),
        lambda: edge_differences(g, vol.reshape(-1, 1)),
    ]:
        out, peak = _peak(fn)
        assert out.dtype == np.float32
        pad = 66**3 * 4
        assert peak <= out.nbytes + pad + slack, (peak, out.nbytes)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: window_features(np.zeros((4, 4)), -1), ValueError, "radius"),
        (lambda: window_features(np.zeros((4, 4)), 1.5), TypeError, "radius"),
        (lambda: window_features(np.zeros((0, 0)), 1), ValueError, "image"),
        (lambda: window_features(np.full((2, 2), np.nan), 1), ValueError, "image"),
        (lambda: window_features(np.zeros(5)), ValueError, "image"),
        (lambda: window_features(np.zeros((2, 2, 2, 2))), ValueError, "image"),
        (lambda: window_features(np.zeros((2, 2)), grid_ndim=0), ValueError, "grid_ndim"),
        (lambda: window_features(np.zeros((2, 2)), dtype="int8"), ValueError, "dtype"),
        (lambda: window_features(np.zeros((4, 4)), 10**5), ValueError, "radius"),
        (lambda: affinity_features(np.zeros(5), 1), ValueError, "representation"),
        (lambda: affinity_features(np.zeros((3, 3)), 10**5), ValueError, "radius"),
        (lambda: affinity_features(np.zeros((2, 2)), dtype="float16"), ValueError, "dtype"),
        (lambda: gaussian_features(np.zeros((4, 4)), -1.0), ValueError, "sigmas"),
        (lambda: gaussian_features(np.zeros((4, 4)), 1e9), ValueError, "sigmas"),
        (lambda: gaussian_features(np.zeros((4, 4)), []), ValueError, "sigmas"),
        (lambda: gaussian_features(np.zeros((4, 4)), np.nan), ValueError, "sigmas"),
        (lambda: gaussian_features(np.zeros((4, 4)), "a"), TypeError, "sigmas"),
        (lambda: gaussian_features(np.zeros((4, 4)), 1, truncate=0), ValueError, "truncate"),
        (lambda: edge_differences("g", np.zeros((4, 1))), TypeError, "graph"),
        (lambda: edge_differences(GridGraph((2, 2)), np.zeros((5, 1))), ValueError, "features"),
        (lambda: edge_differences(GridGraph((2, 2)), np.zeros(3)), ValueError, "features"),
        (lambda: edge_differences(GridGraph((2, 2)), [[np.inf]] * 4), ValueError, "features"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
