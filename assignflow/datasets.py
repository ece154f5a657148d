"""Synthetic and image-derived labeling data sets.

Random Voronoi images
    The experiments of Zeilmann, Petra & Schnörr, *Learning Linearized
    Assignment Flows for Image Labeling* (J. Math. Imaging Vis., 2023),
    Sect. 4.1, use random Voronoi images of size 128 × 128 in two scenarios
    (:func:`make_voronoi`):

    ``"lines"`` (scenario 1)
        The cell boundaries are drawn as thin black lines (label 0, grey
        value 0) on white cell interiors (label 1, grey value 1); two labels.
    ``"colors"`` (scenario 2)
        Every cell is filled with one of eight colours (by default the corners
        of the RGB unit cube, or any ``palette``, e.g. one drawn by
        :func:`random_palette`). The paper adds Gaussian noise such that
        pixelwise rounding to the nearest colour is wrong on about 50 % of the
        pixels, see :func:`noise_for_rounding_error` (noise standard deviation
        ≈ 0.61 for the cube corners).

Smooth blobs
    :func:`make_smooth_blobs`: two-label scenes of smooth, randomly shaped
    regions (a thresholded Gaussian-smoothed white-noise field), meant to be
    used under heavy noise.

Ground truth from real images
    :func:`quantize_image`: labels and prototypes of a clean image by k-means
    colour (or grey value) quantisation; for two grey levels this is a
    threshold halfway between the two class means.

In every case the ground truth is the noise-free label image.

Randomness (``random_state`` everywhere): ``None`` draws from numpy's global
random state (as in scikit-learn, so ``np.random.seed`` makes it
reproducible); an integer ``s`` in ``[0, 2**32 - 1]`` uses
``numpy.random.default_rng(s)`` (the same integer always gives the same data);
a :class:`numpy.random.Generator` is used and advanced in place; a legacy
:class:`numpy.random.RandomState` is advanced once to seed a new generator.
"""

from __future__ import annotations

import functools
import heapq
import inspect
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from sklearn.cluster import KMeans
from sklearn.utils import check_random_state, check_scalar
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

__all__ = [
    "SCENARIOS",
    "make_smooth_blobs",
    "make_voronoi",
    "noise_for_rounding_error",
    "quantize_image",
    "random_palette",
    "voronoi_prototypes",
]

#: Valid values of the ``scenario`` argument.
SCENARIOS: tuple[str, ...] = ("colors", "lines")

_PIXELS_PER_CELL = 400  # default: about one Voronoi cell per 20 x 20 pixels

# ``random_state`` as accepted by every generator here: scikit-learn's
# constraint (None, an int in [0, 2**32 - 1], a RandomState) plus numpy's
# new-style generators and seeds.
_RANDOM_STATE = [
    "random_state",
    np.random.Generator,
    np.random.SeedSequence,
    np.random.BitGenerator,
]
_SCENARIO = [StrOptions(set(SCENARIOS))]
_NONNEG_FINITE = Interval(Real, 0, np.inf, closed="left")


# --------------------------------------------------------------------------- #
# validation helpers (the entry points use sklearn's validate_params)
# --------------------------------------------------------------------------- #
def _reject_bools(*names: str):
    """Refuse ``True``/``False`` for numeric arguments (scikit-learn's Interval accepts them)."""

    def wrap(func):
        sig = inspect.signature(func)

        @functools.wraps(func)
        def checked(*args, **kwargs):
            bound = sig.bind_partial(*args, **kwargs)
            for name in names:
                if isinstance(bound.arguments.get(name), (bool, np.bool_)):
                    raise TypeError(f"{name} must be a number, not a bool")
            return func(*args, **kwargs)

        return checked

    return wrap


def _check_shape(shape: Any) -> tuple[int, int]:
    """``(h, w)`` from a sequence or 1-d array of two integers ``>= 2``."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)):
        raise TypeError(f"shape must be a sequence of two integers, got {type(shape).__name__}")
    items = np.asarray(shape, dtype=object)
    if items.ndim != 1 or items.size != 2:
        raise ValueError(f"shape must be two integers (h, w), got {shape!r}")
    h, w = (
        check_scalar(v, f"shape[{k}]", Integral, min_val=2) for k, v in enumerate(items.tolist())
    )
    return int(h), int(w)


def _rng(random_state: Any) -> np.random.Generator:
    """A :class:`numpy.random.Generator` from a validated ``random_state`` (see module doc)."""
    if isinstance(
        random_state, (np.random.Generator, np.random.SeedSequence, np.random.BitGenerator)
    ):
        return np.random.default_rng(random_state)
    if isinstance(random_state, Integral):
        return np.random.default_rng(int(random_state))
    legacy = check_random_state(random_state)  # None -> numpy's global RandomState
    return np.random.default_rng(legacy.randint(0, 2**32, size=4, dtype=np.uint64))


def _check_palette(palette: Any) -> np.ndarray:
    """A private float64 copy of a ``(J, c)`` palette, ``J >= 2``, finite."""
    try:
        p = np.array(palette, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"palette must be an array of shape (J, c) of real numbers: {exc}"
        ) from None
    if p.ndim != 2 or p.shape[0] < 2 or p.shape[1] < 1:
        raise ValueError(f"palette must have shape (J, c) with J >= 2 colours, got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("palette must contain only finite values")
    return p


# --------------------------------------------------------------------------- #
# building blocks
# --------------------------------------------------------------------------- #
@validate_params({"scenario": _SCENARIO}, prefer_skip_nested_validation=True)
def voronoi_prototypes(scenario: str = "colors") -> np.ndarray:
    """Label prototypes (colours or grey values) of a Voronoi scenario.

    Parameters
    ----------
    scenario : {"colors", "lines"}
        The scenario.

    Returns
    -------
    prototypes : ndarray of float64, shape (J, c)
        For ``"colors"``: ``J = 8``, ``c = 3``; label ``j`` has the RGB colour
        given by the binary digits of ``j``, ``prototypes[j] = ((j >> 2) & 1,
        (j >> 1) & 1, j & 1)``, i.e. in order black, blue, green, cyan, red,
        magenta, yellow, white.  For ``"lines"``: ``J = 2``, ``c = 1``,
        ``[[0.0], [1.0]]`` (label 0 = black boundary, label 1 = white
        interior).

    Examples
    --------
    >>> voronoi_prototypes("lines")
    array([[0.],
           [1.]])
    """
    if scenario == "lines":
        return np.array([[0.0], [1.0]])
    j = np.arange(8)
    return np.stack([(j >> 2) & 1, (j >> 1) & 1, j & 1], axis=1).astype(np.float64)


@_reject_bools("n_colors", "n_channels")
@validate_params(
    {
        "n_colors": [Interval(Integral, 2, None, closed="left")],
        "n_channels": [Interval(Integral, 1, None, closed="left")],
        "random_state": _RANDOM_STATE,
    },
    prefer_skip_nested_validation=True,
)
def random_palette(
    n_colors: int = 8,
    n_channels: int = 3,
    *,
    random_state: int | np.random.Generator | np.random.RandomState | None = None,
) -> np.ndarray:
    """A palette of colours drawn independently and uniformly in ``[0, 1]^c``.

    Meant for ``make_voronoi("colors", palette=...)``: draw the palette once
    (with its own seed) and pass the same array to the training and the test
    scenes, so that both show the same ``J`` colours.  Unlike the cube
    corners, random colours can lie close together, which makes the labeling
    harder at a given noise level.

    Parameters
    ----------
    n_colors : int, default 8
        Number of colours ``J >= 2``.
    n_channels : int, default 3
        Number of channels ``c >= 1`` (3 for RGB).
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
        Source of randomness (see the module documentation).

    Returns
    -------
    palette : ndarray of float64, shape (n_colors, n_channels)

    Examples
    --------
    >>> p = random_palette(8, random_state=0)
    >>> p.shape, bool(p.min() >= 0 and p.max() <= 1)
    ((8, 3), True)
    """
    return _rng(random_state).uniform(0.0, 1.0, size=(n_colors, n_channels))


def _voronoi_cells(shape: tuple[int, int], n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """Cell index map ``(h, w)`` of a random Voronoi partition of the pixel grid.

    Seeds are uniform in the continuous image rectangle ``[-0.5, h - 0.5) x
    [-0.5, w - 0.5)``; pixel ``(i, j)`` (centre at ``(i, j)``) belongs to the
    nearest seed (Euclidean distance).
    """
    h, w = shape
    seeds = rng.uniform(low=-0.5, high=(h - 0.5, w - 0.5), size=(n_cells, 2))
    ii, jj = np.meshgrid(
        np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij"
    )
    grid = np.column_stack([ii.ravel(), jj.ravel()])
    _, idx = cKDTree(seeds).query(grid, k=1, workers=-1)
    return idx.reshape(h, w).astype(np.int64)


def _cell_adjacency(cells: np.ndarray, n_cells: int) -> list[np.ndarray]:
    """Adjacency lists of cells that touch via a pair of 4-neighbouring pixels."""
    a = np.concatenate([cells[:, :-1].ravel(), cells[:-1, :].ravel()])
    b = np.concatenate([cells[:, 1:].ravel(), cells[1:, :].ravel()])
    diff = a != b
    a, b = a[diff], b[diff]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keys = np.unique(lo * n_cells + hi)
    lo, hi = keys // n_cells, keys % n_cells
    src = np.concatenate([lo, hi])
    dst = np.concatenate([hi, lo])
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    bounds = np.searchsorted(src, np.arange(n_cells + 1))
    return [dst[bounds[k] : bounds[k + 1]] for k in range(n_cells)]


def _color_cells(
    adjacency: list[np.ndarray], n_labels: int, rng: np.random.Generator
) -> np.ndarray:
    """Random labels for the cells such that adjacent cells differ when possible.

    Greedy colouring in smallest-last (degeneracy) order with random tie
    breaking: each cell gets a label drawn uniformly from the labels not used
    by its already labelled neighbours (uniformly from all labels if none is
    free).  Since the cell adjacency graph of a Voronoi partition is (nearly)
    planar, hence 5-degenerate, at most 6 labels are ever excluded and the
    resulting labelling is proper whenever ``n_labels >= 6``.
    """
    n = len(adjacency)
    degree = np.array([len(nb) for nb in adjacency], dtype=np.int64)
    tiebreak = rng.random(n)
    heap = [(int(degree[k]), float(tiebreak[k]), k) for k in range(n)]
    heapq.heapify(heap)
    removed = np.zeros(n, dtype=bool)
    order: list[int] = []
    while heap:
        deg, _, k = heapq.heappop(heap)
        if removed[k] or deg != degree[k]:
            continue  # stale entry
        removed[k] = True
        order.append(k)
        for nb in adjacency[k]:
            if not removed[nb]:
                degree[nb] -= 1
                heapq.heappush(heap, (int(degree[nb]), float(tiebreak[nb]), int(nb)))

    labels = np.full(n, -1, dtype=np.int64)
    all_labels = np.arange(n_labels)
    for k in reversed(order):
        neighbour_labels = labels[adjacency[k]]
        used = np.zeros(n_labels, dtype=bool)
        used[neighbour_labels[neighbour_labels >= 0]] = True
        free = all_labels[~used]
        if free.size == 0:
            free = all_labels
        labels[k] = free[rng.integers(free.size)]
    return labels


def _boundary(cells: np.ndarray, line_width: int) -> np.ndarray:
    """Boundary mask: pixels with a 4-neighbour in another cell, dilated if requested."""
    mask = np.zeros(cells.shape, dtype=bool)
    dh = cells[1:, :] != cells[:-1, :]
    dw = cells[:, 1:] != cells[:, :-1]
    mask[1:, :] |= dh
    mask[:-1, :] |= dh
    mask[:, 1:] |= dw
    mask[:, :-1] |= dw
    if line_width > 1:
        size = 2 * line_width - 1
        mask = ndimage.maximum_filter(mask.view(np.uint8), size=size, mode="constant") > 0
    return mask


def _nearest_prototype(images: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Pixelwise index of the nearest prototype; ``images`` has shape ``(..., c)``."""
    d2 = ((images[..., None, :] - prototypes) ** 2).sum(axis=-1)
    return np.argmin(d2, axis=-1)


def _make_labels(
    scenario: str,
    n_images: int,
    shape: tuple[int, int],
    n_cells: int,
    line_width: int,
    rng: np.random.Generator,
    n_labels: int = 8,
) -> np.ndarray:
    h, w = shape
    labels = np.empty((n_images, h, w), dtype=np.int64)
    for i in range(n_images):
        cells = _voronoi_cells(shape, n_cells, rng)
        if scenario == "lines":
            labels[i] = np.where(_boundary(cells, line_width), 0, 1)
        else:
            cell_labels = _color_cells(_cell_adjacency(cells, n_cells), n_labels, rng)
            labels[i] = cell_labels[cells]
    return labels


# --------------------------------------------------------------------------- #
# public generators
# --------------------------------------------------------------------------- #
@_reject_bools("n_images", "noise", "n_cells", "line_width")
@validate_params(
    {
        "scenario": _SCENARIO,
        "n_images": [Interval(Integral, 1, None, closed="left")],
        "shape": ["array-like"],
        "noise": [_NONNEG_FINITE],
        "n_cells": [Interval(Integral, 2, None, closed="left"), None],
        "line_width": [Interval(Integral, 1, None, closed="left")],
        "palette": ["array-like", None],
        "clip": ["boolean"],
        "random_state": _RANDOM_STATE,
        "return_prototypes": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def make_voronoi(
    scenario: str = "colors",
    n_images: int = 1,
    shape: Sequence[int] = (128, 128),
    noise: float = 0.3,
    *,
    n_cells: int | None = None,
    line_width: int = 1,
    palette: Any = None,
    clip: bool = False,
    random_state: int | np.random.Generator | np.random.RandomState | None = None,
    return_prototypes: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random Voronoi label images with Gaussian noise (paper, Sect. 4.1).

    Each image is an independent random Voronoi partition of the pixel grid:
    ``n_cells`` seeds are drawn uniformly in the image rectangle and every
    pixel belongs to its nearest seed (Euclidean distance between pixel
    centres and seeds).  Cells whose seed is not the nearest seed of any pixel
    simply do not appear.

    Parameters
    ----------
    scenario : {"colors", "lines"}, default "colors"
        ``"colors"`` (scenario 2 of the paper): each cell is filled with one of
        ``J`` colours, by default the ``J = 8`` corners of the RGB unit cube
        (see :func:`voronoi_prototypes` for their order), else the rows of
        ``palette``.  Labels are random, uniformly distributed per cell, but
        chosen greedily (smallest-last order, uniform among the labels not used
        by already labelled neighbours) so that cells sharing a 4-neighbour
        pixel pair get different labels whenever possible; for (near-)planar
        Voronoi adjacency graphs this always succeeds when ``J >= 6``.
        ``"lines"`` (scenario 1): ``J = 2`` grey values, label 0 = black
        (0.0) for boundary pixels and label 1 = white (1.0) for cell
        interiors.  A pixel is a boundary pixel if at least one of its
        4-neighbours belongs to a different cell (so both sides of a cell
        border are marked and lines are about 1–2 pixels wide; the image
        border is not a line).  For ``line_width > 1`` this mask is dilated
        with a ``(2 * line_width - 1)``-square.
    n_images : int, default 1
        Number of independent images, ``>= 1``.
    shape : sequence of two ints, default (128, 128)
        Image size ``(h, w)``, each ``>= 2``.
    noise : float, default 0.3
        Standard deviation of the i.i.d. additive Gaussian noise (per pixel
        and channel), finite and ``>= 0``.  For the default ``"colors"``
        palette, ``noise ≈ 0.610`` gives about 50 % pixelwise rounding error as
        in the paper (see :func:`noise_for_rounding_error`); the default 0.3
        gives about 14 %.
    n_cells : int, optional
        Number of Voronoi seeds per image, ``2 <= n_cells <= h * w``.
        Default ``max(2, round(h * w / 400))``, i.e. about one cell per
        20 × 20 pixels (41 cells for 128 × 128).
    line_width : int, default 1
        Line width parameter of the ``"lines"`` scenario (see above), ``>= 1``.
        Ignored for ``"colors"``.
    palette : array-like of shape (J, c), optional
        Colours of the ``"colors"`` scenario (``J >= 2`` rows, finite; for
        instance :func:`random_palette`); default the cube corners
        :func:`voronoi_prototypes`.  The array is copied.  Pass the same
        palette to the training and the test scenes of one task.  Not
        accepted for ``"lines"``.  With the same ``random_state``, the label
        images do not depend on the colours, only on ``J``.
    clip : bool, default False
        If True, clip the noisy images to ``[0, 1]``.  By default the images
        are not clipped, so values outside ``[0, 1]`` occur.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
        Source of randomness (see the module documentation).  The same integer
        gives identical output; a ``Generator`` is advanced in place.  The
        label images do not depend on ``noise`` (the noise is drawn after all
        labels).
    return_prototypes : bool, default False
        Also return the prototypes.

    Returns
    -------
    images : ndarray of float64
        Shape ``(n_images, h, w, c)`` for ``"colors"`` (``c = 3`` by default)
        and ``(n_images, h, w)`` (grey values, no channel axis) for
        ``"lines"``.  The noise-free image is ``prototypes[labels]`` (with the
        channel axis dropped for ``"lines"``), the returned image adds
        ``noise * N(0, 1)`` noise.
    labels : ndarray of int64, shape (n_images, h, w)
        Ground-truth labels in ``0, ..., J - 1``.
    prototypes : ndarray of float64, shape (J, c)
        Only if ``return_prototypes``: the palette (``"colors"``) or
        ``[[0.0], [1.0]]`` (``"lines"``).

    Raises
    ------
    ValueError
        For an unknown ``scenario`` or out-of-range ``n_images``, ``shape``,
        ``noise``, ``n_cells``, ``line_width``, ``palette`` or
        ``random_state``.
    TypeError
        For arguments of the wrong type.

    Examples
    --------
    >>> images, labels, protos = make_voronoi("colors", 2, (64, 64), noise=0.0,
    ...                                       random_state=0, return_prototypes=True)
    >>> images.shape, labels.shape, protos.shape
    ((2, 64, 64, 3), (2, 64, 64), (8, 3))
    >>> bool(np.array_equal(images, protos[labels]))
    True
    >>> palette = random_palette(8, random_state=1)  # shared by train and test scenes
    >>> X, y = make_voronoi("colors", 2, (32, 32), 0.3, palette=palette, random_state=2)
    >>> X.shape
    (2, 32, 32, 3)
    """
    h, w = _check_shape(shape)
    if n_cells is None:
        n_cells = max(2, round(h * w / _PIXELS_PER_CELL))
    else:
        n_cells = int(check_scalar(n_cells, "n_cells", Integral, min_val=2, max_val=h * w))
    if palette is not None and scenario == "lines":
        raise ValueError("palette is only used by scenario 'colors'; pass palette=None")
    prototypes = voronoi_prototypes(scenario) if palette is None else _check_palette(palette)
    noise = float(noise)
    rng = _rng(random_state)

    labels = _make_labels(
        scenario, int(n_images), (h, w), n_cells, int(line_width), rng, prototypes.shape[0]
    )
    images = prototypes[labels]
    if scenario == "lines":
        images = images[..., 0]
    if noise > 0:
        images = images + noise * rng.standard_normal(images.shape)
    if clip:
        images = np.clip(images, 0.0, 1.0)
    images = np.ascontiguousarray(images, dtype=np.float64)
    if return_prototypes:
        return images, labels, prototypes
    return images, labels


@_reject_bools("n_images", "noise", "smoothness", "fraction")
@validate_params(
    {
        "n_images": [Interval(Integral, 1, None, closed="left")],
        "shape": ["array-like"],
        "noise": [_NONNEG_FINITE],
        "smoothness": [Interval(Real, 0, np.inf, closed="neither")],
        "fraction": [Interval(Real, 0, 1, closed="neither")],
        "clip": ["boolean"],
        "random_state": _RANDOM_STATE,
        "return_prototypes": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def make_smooth_blobs(
    n_images: int = 1,
    shape: Sequence[int] = (128, 128),
    noise: float = 1.0,
    *,
    smoothness: float = 6.0,
    fraction: float = 0.5,
    clip: bool = False,
    random_state: int | np.random.Generator | np.random.RandomState | None = None,
    return_prototypes: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth random two-label scenes (thresholded smoothed noise) with Gaussian noise.

    Each label image is a white-noise field ``N(0, 1)`` of the image size,
    smoothed by a Gaussian filter of standard deviation ``smoothness`` pixels
    (``scipy.ndimage.gaussian_filter``, mirrored borders) and thresholded at
    its own ``(1 - fraction)``-quantile: label 1 (grey value 1.0) above the
    threshold, label 0 (grey value 0.0) elsewhere.  The regions are smooth
    blobs of diameter about ``2 * smoothness`` and more; their boundaries are
    the only structure, so these scenes reward regularisation that follows
    smooth boundaries under heavy noise.

    Parameters
    ----------
    n_images : int, default 1
        Number of independent images, ``>= 1``.
    shape : sequence of two ints, default (128, 128)
        Image size ``(h, w)``, each ``>= 2``.
    noise : float, default 1.0
        Standard deviation of the i.i.d. additive Gaussian noise, finite and
        ``>= 0``.  Pixelwise rounding (threshold at 0.5) is then wrong on
        ``Phi(-1 / (2 noise))`` of the pixels: 31 % for the default 1.0.
    smoothness : float, default 6.0
        Standard deviation of the Gaussian filter in pixels, ``> 0``; values
        above ``max(h, w)`` are clipped to ``max(h, w)`` (the field is then
        smooth across the whole image anyway).
    fraction : float, default 0.5
        Fraction of label-1 pixels in every image, ``0 < fraction < 1``
        (exact up to ties and rounding).
    clip : bool, default False
        If True, clip the noisy images to ``[0, 1]``.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
        Source of randomness (see the module documentation).  The label images
        do not depend on ``noise`` (the noise is drawn after all labels).
    return_prototypes : bool, default False
        Also return the prototypes ``[[0.0], [1.0]]``.

    Returns
    -------
    images : ndarray of float64, shape (n_images, h, w)
        Grey-value images ``labels + noise * N(0, 1)``.
    labels : ndarray of int64, shape (n_images, h, w)
        Ground-truth labels in ``{0, 1}``.
    prototypes : ndarray of float64, shape (2, 1)
        Only if ``return_prototypes``.

    Examples
    --------
    >>> X, y = make_smooth_blobs(2, (64, 64), noise=1.0, random_state=0)
    >>> X.shape, y.shape, round(float(y.mean()), 2)
    ((2, 64, 64), (2, 64, 64), 0.5)
    """
    h, w = _check_shape(shape)
    sigma = min(float(smoothness), float(max(h, w)))
    rng = _rng(random_state)
    labels = np.empty((int(n_images), h, w), dtype=np.int64)
    for i in range(labels.shape[0]):
        field = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma, mode="reflect")
        labels[i] = field > np.quantile(field, 1.0 - float(fraction))
    images = labels.astype(np.float64)
    if noise > 0:
        images = images + float(noise) * rng.standard_normal(images.shape)
    if clip:
        images = np.clip(images, 0.0, 1.0)
    if return_prototypes:
        return images, labels, np.array([[0.0], [1.0]])
    return images, labels


@_reject_bools("n_labels")
@validate_params(
    {
        "image": ["array-like"],
        "n_labels": [Interval(Integral, 2, None, closed="left")],
        "mask": ["array-like", None],
        "random_state": _RANDOM_STATE,
    },
    prefer_skip_nested_validation=True,
)
def quantize_image(
    image: Any,
    n_labels: int,
    *,
    mask: Any = None,
    random_state: int | np.random.Generator | np.random.RandomState | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth labels of a clean image by k-means colour quantisation.

    The prototypes are the ``n_labels`` cluster centres of k-means
    (``sklearn.cluster.KMeans``, 10 restarts) on the pixel values (grey values
    or colours) of the pixels selected by ``mask``; every pixel of the image
    is then labeled by its nearest prototype (squared Euclidean distance).
    For a grey image and ``n_labels = 2`` this is a threshold halfway between
    the two class means (the isodata threshold).  Fitting on a ``mask`` (for
    instance the training part of the image) keeps the label definition free
    of the other pixels.

    Parameters
    ----------
    image : array-like of shape (h, w) or (h, w, c)
        Clean image, finite real values (e.g. in ``[0, 1]``).
    n_labels : int
        Number of labels ``J >= 2``, at most the number of distinct pixel
        values under ``mask``.
    mask : array-like of bool, shape (h, w), optional
        Pixels used to fit the prototypes (default: all pixels).  At least
        ``n_labels`` pixels must be selected.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState, default 0
        Randomness of the k-means initialisation (see the module
        documentation); the default makes the result deterministic.

    Returns
    -------
    labels : ndarray of int64, shape (h, w)
        Labels in ``0, ..., J - 1``, ordered by increasing prototype
        brightness (sum over channels; ties broken lexicographically).
    prototypes : ndarray of float64, shape (J, c)
        The cluster centres (``c = 1`` for a grey image).

    Raises
    ------
    ValueError
        If ``image`` is not 2-d or 3-d, has non-finite values, ``mask`` has
        the wrong shape or selects fewer pixels (or distinct values) than
        ``n_labels``.

    Examples
    --------
    >>> img = np.zeros((8, 8)); img[:, 4:] = 1.0
    >>> labels, protos = quantize_image(img, 2)
    >>> protos.ravel().tolist(), labels[0].tolist()
    ([0.0, 1.0], [0, 0, 0, 0, 1, 1, 1, 1])
    """
    try:
        img = np.array(image, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"image must be an array of real numbers: {exc}") from None
    if img.ndim not in (2, 3) or min(img.shape) < 1:
        raise ValueError(f"image must have shape (h, w) or (h, w, c), got {img.shape}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image must contain only finite values")
    pixels = img.reshape(img.shape[0], img.shape[1], -1)
    if mask is None:
        fit = pixels.reshape(-1, pixels.shape[2])
    else:
        m = np.asarray(mask)
        if m.dtype != bool or m.shape != img.shape[:2]:
            raise ValueError(
                f"mask must be a boolean array of shape {img.shape[:2]}, got "
                f"{m.dtype} of shape {m.shape}"
            )
        fit = pixels[m]
    n_distinct = len(np.unique(fit, axis=0))
    if n_distinct < n_labels:
        raise ValueError(
            f"n_labels={n_labels} exceeds the {n_distinct} distinct pixel values to cluster"
            + ("" if mask is None else " under mask")
        )
    seed = int(_rng(random_state).integers(2**31))
    centres = KMeans(n_clusters=n_labels, n_init=10, random_state=seed).fit(fit).cluster_centers_
    order = np.lexsort((*centres.T[::-1], centres.sum(axis=1)))
    prototypes = np.ascontiguousarray(centres[order], dtype=np.float64)
    labels = _nearest_prototype(pixels, prototypes).astype(np.int64)
    return labels, prototypes


@_reject_bools("target")
@validate_params(
    {
        "scenario": _SCENARIO,
        "target": [Interval(Real, 0, 1, closed="neither")],
        "shape": ["array-like"],
        "random_state": _RANDOM_STATE,
        "palette": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def noise_for_rounding_error(
    scenario: str = "colors",
    target: float = 0.5,
    shape: Sequence[int] = (128, 128),
    random_state: int | np.random.Generator | np.random.RandomState | None = 0,
    *,
    palette: Any = None,
) -> float:
    """Noise level at which pixelwise nearest-prototype rounding fails on ``target`` pixels.

    A noise-free image of the given scenario and one standard normal noise
    field ``Z`` are generated; then bisection finds the standard deviation
    ``sigma`` at which rounding ``prototypes[labels] + sigma * Z`` to the
    nearest prototype (argmin of the Euclidean distance) is wrong on a
    fraction ``target`` of the pixels (channels).  Since the nearest-prototype
    regions are convex, this fraction is non-decreasing in ``sigma``, so the
    result is well defined and deterministic for a given ``random_state``.

    For the default prototypes the error does not depend on the image:
    it is ``1 - Phi(1 / (2 sigma))**3`` for ``"colors"`` and
    ``Phi(-1 / (2 sigma))`` for ``"lines"`` (``Phi`` = standard normal cdf).
    For the paper's ``"colors"`` scenario with 50 % rounding error this gives
    ``sigma ≈ 0.610`` (the function returns 0.6058 for the default arguments;
    the exact population value is 0.6103).  For ``"lines"`` the error is at
    most 50 %; 25 % error needs ``sigma ≈ 0.741``.

    Parameters
    ----------
    scenario : {"colors", "lines"}, default "colors"
        The scenario, see :func:`make_voronoi`.
    target : float, default 0.5
        Desired fraction of wrongly rounded pixels, ``0 < target < (J-1)/J``
        (7/8 for the default ``"colors"``, 1/2 for ``"lines"``).
    shape : sequence of two ints, default (128, 128)
        Size of the image used for the estimate.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState, default 0
        Randomness of the image and the noise field.
    palette : array-like of shape (J, c), optional
        The ``"colors"`` palette, see :func:`make_voronoi`.

    Returns
    -------
    sigma : float
        Noise standard deviation for ``make_voronoi(scenario, noise=sigma)``.

    Raises
    ------
    ValueError
        If ``scenario`` is unknown, ``shape`` is invalid or ``target`` is not
        in the open interval above (or not reachable on the sample image).

    Examples
    --------
    >>> round(noise_for_rounding_error("colors", 0.5), 2)
    0.61
    """
    h, w = _check_shape(shape)
    if palette is not None and scenario == "lines":
        raise ValueError("palette is only used by scenario 'colors'; pass palette=None")
    prototypes = voronoi_prototypes(scenario) if palette is None else _check_palette(palette)
    n_labels = prototypes.shape[0]
    max_error = (n_labels - 1) / n_labels
    if not target < max_error:
        raise ValueError(
            f"target must lie in the open interval (0, {max_error:g}) for scenario "
            f"{scenario!r}, got {target}"
        )
    rng = _rng(random_state)
    n_cells = max(2, round(h * w / _PIXELS_PER_CELL))
    labels = _make_labels(scenario, 1, (h, w), n_cells, 1, rng, n_labels=n_labels)[0]
    clean = prototypes[labels]  # (h, w, c)
    z = rng.standard_normal(clean.shape)

    def error(sigma: float) -> float:
        return float(np.mean(_nearest_prototype(clean + sigma * z, prototypes) != labels))

    lo, hi = 0.0, 1.0
    while error(hi) < target:
        lo, hi = hi, 2.0 * hi
        if hi > 1e8:
            raise ValueError(
                f"target={target} is not reachable on the sample image; choose a smaller target"
            )
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if error(mid) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-9 * hi:
            break
    return 0.5 * (lo + hi)
