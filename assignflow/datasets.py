"""Synthetic labeling data sets: random Voronoi images.

The experiments of Zeilmann, Petra & Schnörr, *Learning Linearized Assignment
Flows for Image Labeling* (J. Math. Imaging Vis., 2023), Sect. 4.1, use random
Voronoi images of size 128 × 128 in two scenarios:

``"lines"`` (scenario 1)
    The cell boundaries are drawn as thin black lines (label 0, grey value 0)
    on white cell interiors (label 1, grey value 1); two labels.
``"colors"`` (scenario 2)
    Every cell is filled with one of eight colours (the corners of the RGB unit
    cube); eight labels. The paper adds Gaussian noise such that pixelwise
    rounding to the nearest colour is wrong on about 50 % of the pixels, see
    :func:`noise_for_rounding_error` (noise standard deviation ≈ 0.61).

In both cases the ground truth is the noise-free label image.
"""

from __future__ import annotations

import heapq
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = ["SCENARIOS", "make_voronoi", "noise_for_rounding_error", "voronoi_prototypes"]

#: Valid values of the ``scenario`` argument.
SCENARIOS: tuple[str, ...] = ("colors", "lines")

_PIXELS_PER_CELL = 400  # default: about one Voronoi cell per 20 x 20 pixels


# --------------------------------------------------------------------------- #
# validation helpers
# --------------------------------------------------------------------------- #
def _check_scenario(scenario: Any) -> str:
    if not isinstance(scenario, str):
        raise TypeError(
            f"scenario must be a string, one of {list(SCENARIOS)}; got {type(scenario).__name__}"
        )
    if scenario not in SCENARIOS:
        import difflib

        close = difflib.get_close_matches(scenario, SCENARIOS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown scenario {scenario!r}; valid scenarios are {list(SCENARIOS)}.{hint}"
        )
    return scenario


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_shape(shape: Any) -> tuple[int, int]:
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)):
        raise TypeError(f"shape must be a sequence of two integers, got {type(shape).__name__}")
    if isinstance(shape, np.ndarray):
        if shape.ndim != 1:
            raise ValueError(
                f"shape must be one-dimensional (h, w), got an array of shape {shape.shape}"
            )
        items = shape.tolist()
    else:
        items = list(shape)
    if len(items) != 2:
        raise ValueError(f"shape must have exactly two entries (h, w), got {len(items)}")
    h = _check_int(items[0], "shape[0]", 2)
    w = _check_int(items[1], "shape[1]", 2)
    return h, w


def _check_real(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _check_random_state(random_state: Any) -> np.random.Generator:
    """Turn ``random_state`` into a :class:`numpy.random.Generator`.

    ``None`` gives fresh OS entropy, an integer ``s >= 0`` gives
    ``np.random.default_rng(s)``, a ``Generator`` is used (and advanced) as is,
    a legacy ``RandomState`` is advanced once to seed a new ``Generator``, and
    ``SeedSequence``/``BitGenerator`` objects are passed to ``default_rng``.
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        seed = random_state.randint(0, 2**32, size=4, dtype=np.uint64)
        return np.random.default_rng(seed)
    if isinstance(random_state, (np.random.SeedSequence, np.random.BitGenerator)):
        return np.random.default_rng(random_state)
    if isinstance(random_state, numbers.Integral) and not isinstance(
        random_state, (bool, np.bool_)
    ):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer, got {random_state}")
        return np.random.default_rng(int(random_state))
    raise TypeError(
        "random_state must be None, a non-negative int, a numpy Generator or RandomState, "
        f"got {type(random_state).__name__}"
    )


# --------------------------------------------------------------------------- #
# building blocks
# --------------------------------------------------------------------------- #
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
    scenario = _check_scenario(scenario)
    if scenario == "lines":
        return np.array([[0.0], [1.0]])
    j = np.arange(8)
    return np.stack([(j >> 2) & 1, (j >> 1) & 1, j & 1], axis=1).astype(np.float64)


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
) -> np.ndarray:
    h, w = shape
    labels = np.empty((n_images, h, w), dtype=np.int64)
    for i in range(n_images):
        cells = _voronoi_cells(shape, n_cells, rng)
        if scenario == "lines":
            labels[i] = np.where(_boundary(cells, line_width), 0, 1)
        else:
            cell_labels = _color_cells(_cell_adjacency(cells, n_cells), 8, rng)
            labels[i] = cell_labels[cells]
    return labels


# --------------------------------------------------------------------------- #
# public generators
# --------------------------------------------------------------------------- #
def make_voronoi(
    scenario: str = "colors",
    n_images: int = 1,
    shape: Sequence[int] = (128, 128),
    noise: float = 0.3,
    *,
    n_cells: int | None = None,
    line_width: int = 1,
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
        ``J = 8`` colours, the corners of the RGB unit cube (see
        :func:`voronoi_prototypes` for their order).  Labels are random,
        uniformly distributed per cell, but chosen greedily (smallest-last
        order, uniform among the labels not used by already labelled
        neighbours) so that cells sharing a 4-neighbour pixel pair get
        different labels whenever possible; for (near-)planar Voronoi
        adjacency graphs this always succeeds.
        ``"lines"`` (scenario 1): ``J = 2`` grey values, label 0 = black
        (0.0) for boundary pixels and label 1 = white (1.0) for cell
        interiors.  A pixel is a boundary pixel if at least one of its
        4-neighbours belongs to a different cell (so both sides of a cell
        border are marked and lines are about 1–2 pixels wide; the image
        border is not a line).  For ``line_width > 1`` this mask is dilated
        with a ``(2 * line_width - 1)``-square.
    n_images : int, default 1
        Number of independent images.
    shape : sequence of two ints, default (128, 128)
        Image size ``(h, w)``, each ``>= 2``.
    noise : float, default 0.3
        Standard deviation of the i.i.d. additive Gaussian noise (per pixel
        and channel), ``>= 0``.  For ``"colors"``, ``noise ≈ 0.610`` gives
        about 50 % pixelwise rounding error as in the paper (see
        :func:`noise_for_rounding_error`); the default 0.3 gives about 14 %.
    n_cells : int, optional
        Number of Voronoi seeds per image, ``2 <= n_cells <= h * w``.
        Default ``max(2, round(h * w / 400))``, i.e. about one cell per
        20 × 20 pixels (41 cells for 128 × 128).
    line_width : int, default 1
        Line width parameter of the ``"lines"`` scenario (see above), ``>= 1``.
        Ignored for ``"colors"``.
    clip : bool, default False
        If True, clip the noisy images to ``[0, 1]``.  By default the images
        are not clipped, so values outside ``[0, 1]`` occur.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
        Source of randomness.  The same integer gives identical output;
        a ``Generator`` is advanced in place.  The label images do not depend
        on ``noise`` (the noise is drawn after all labels).
    return_prototypes : bool, default False
        Also return the prototypes.

    Returns
    -------
    images : ndarray of float64
        Shape ``(n_images, h, w, 3)`` for ``"colors"`` and ``(n_images, h, w)``
        (grey values, no channel axis) for ``"lines"``.  The noise-free image
        is ``prototypes[labels]`` (with the channel axis dropped for
        ``"lines"``), the returned image adds ``noise * N(0, 1)`` noise.
    labels : ndarray of int64, shape (n_images, h, w)
        Ground-truth labels in ``0, ..., J - 1``.
    prototypes : ndarray of float64, shape (J, c)
        Only if ``return_prototypes``; ``c = 3`` for ``"colors"`` and ``c = 1``
        for ``"lines"``.

    Raises
    ------
    ValueError
        For an unknown ``scenario`` or out-of-range ``n_images``, ``shape``,
        ``noise``, ``n_cells``, ``line_width`` or ``random_state``.
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
    """
    scenario = _check_scenario(scenario)
    n_images = _check_int(n_images, "n_images", 1)
    h, w = _check_shape(shape)
    noise = _check_real(noise, "noise")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if n_cells is None:
        n_cells = max(2, round(h * w / _PIXELS_PER_CELL))
    else:
        n_cells = _check_int(n_cells, "n_cells", 2)
        if n_cells > h * w:
            raise ValueError(f"n_cells must be <= h * w = {h * w}, got {n_cells}")
    line_width = _check_int(line_width, "line_width", 1)
    clip = _check_bool(clip, "clip")
    return_prototypes = _check_bool(return_prototypes, "return_prototypes")
    rng = _check_random_state(random_state)

    prototypes = voronoi_prototypes(scenario)
    labels = _make_labels(scenario, n_images, (h, w), n_cells, line_width, rng)
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


def noise_for_rounding_error(
    scenario: str = "colors",
    target: float = 0.5,
    shape: Sequence[int] = (128, 128),
    random_state: int | np.random.Generator | np.random.RandomState | None = 0,
) -> float:
    """Noise level at which pixelwise nearest-prototype rounding fails on ``target`` pixels.

    A noise-free image of the given scenario and one standard normal noise
    field ``Z`` are generated; then bisection finds the standard deviation
    ``sigma`` at which rounding ``prototypes[labels] + sigma * Z`` to the
    nearest prototype (argmin of the Euclidean distance) is wrong on a
    fraction ``target`` of the pixels (channels).  Since the nearest-prototype
    regions are convex, this fraction is non-decreasing in ``sigma``, so the
    result is well defined and deterministic for a given ``random_state``.

    For the prototypes used here the error does not depend on the image:
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
        (7/8 for ``"colors"``, 1/2 for ``"lines"``).
    shape : sequence of two ints, default (128, 128)
        Size of the image used for the estimate.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState, default 0
        Randomness of the image and the noise field.

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
    scenario = _check_scenario(scenario)
    target = _check_real(target, "target")
    h, w = _check_shape(shape)
    prototypes = voronoi_prototypes(scenario)
    n_labels = prototypes.shape[0]
    max_error = (n_labels - 1) / n_labels
    if not 0.0 < target < max_error:
        raise ValueError(
            f"target must lie in the open interval (0, {max_error:g}) for scenario "
            f"{scenario!r}, got {target}"
        )
    rng = _check_random_state(random_state)
    n_cells = max(2, round(h * w / _PIXELS_PER_CELL))
    labels = _make_labels(scenario, 1, (h, w), n_cells, 1, rng)[0]
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
