r"""Per-node features on grids of any dimension, and edge-wise feature differences.

The weight predictor (the paper's Sect. 4.4) maps a feature vector :math:`f_i` per
node to a weight patch. This module computes such features for images ``(h, w[, c])``,
volumes ``(d, h, w[, c])`` and grids of any number of axes:

* :func:`window_features` — the raw ``(2r+1)^ndim`` window around every node;
* :func:`affinity_features` — distances :math:`\|u_i - u_{i+k}\|` to the window
  neighbours (label-agnostic edge descriptors);
* :func:`gaussian_features` — Gaussian-smoothed channels at several scales
  (:func:`scipy.ndimage.gaussian_filter`);
* :func:`edge_differences` — :math:`|f_i - f_k|` per edge ``(i, k)`` of any
  :class:`~assignflow.Graph` and per feature, aligned with ``graph.indices``.

All of them write into one preallocated output in the requested ``dtype`` and work
in blocks of rows (slabs of the grid's first axis, or rows of the graph), so that
apart from the output no temporary larger than a block (and, for the window
features, one edge-padded copy of the input) is formed: in ``float32`` a large
volume's features stay single precision end to end.

Borders: the window features extend the grid by edge replication (entries outside
the grid repeat the nearest grid point); the Gaussian filter uses the same
``"nearest"`` mode. ``grid_ndim`` tells the grid axes from a channel axis: an array of
``grid_ndim`` axes has one channel, one of ``grid_ndim + 1`` axes has its channels
last (``grid_ndim=2``: ``(h, w)`` or ``(h, w, c)``; ``grid_ndim=3``: ``(d, h, w)`` or
``(d, h, w, c)``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._validation import as_float_array, check_positive_int
from .graphs import MAX_GRID_WINDOW_POSITIONS, Graph, GridGraph, _run_row_blocks, _window_offsets

__all__ = ["affinity_features", "edge_differences", "gaussian_features", "window_features"]

_BLOCK = 1 << 18  # output entries per block

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _dtype(dtype: Any, x: Any) -> np.dtype:
    """The output precision: explicit, or float32 exactly when the input is float32."""
    if dtype is None:
        return np.dtype(np.float32 if getattr(x, "dtype", None) == np.float32 else np.float64)
    try:
        dt = np.dtype(dtype)
        ok = dt in _DTYPES
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}")
    return dt


def _grid_array(x: Any, name: str, grid_ndim: Any, dtype: np.dtype) -> np.ndarray:
    """``x`` as a ``(*grid, c)`` array in ``dtype`` (a channel axis added if absent)."""
    nd = check_positive_int(grid_ndim, "grid_ndim")
    arr = as_float_array(x, name, ndim=(nd, nd + 1), dtype=dtype)
    if arr.ndim == nd:
        arr = arr[..., None]
    if arr.size == 0:
        raise ValueError(
            f"{name} must have at least one pixel and channel, got shape {np.shape(x)}"
        )
    return arr


def _check_window(grid: tuple[int, ...], radius: Any, per_offset: int) -> tuple[int, int]:
    r = check_positive_int(radius, "radius", minimum=0)
    K = (2 * r + 1) ** len(grid)
    if math.prod(grid) * K * per_offset > MAX_GRID_WINDOW_POSITIONS:
        raise ValueError(
            f"radius {r} gives {K} window offsets per node: the features of the grid "
            f"{grid} would exceed {MAX_GRID_WINDOW_POSITIONS} entries; use a smaller radius"
        )
    return r, K


def _slabs(grid: tuple[int, ...], row_entries: int):
    """Ranges of the grid's first axis holding about ``_BLOCK`` output entries each."""
    per = max(1, _BLOCK // max(1, row_entries * math.prod(grid[1:])))
    return [(a, min(grid[0], a + per)) for a in range(0, grid[0], per)]


def _shifted(pad: np.ndarray, grid: tuple[int, ...], r: int, a: int, c: int, d: np.ndarray):
    """The slab ``[a, c)`` of the grid shifted by offset ``d``, from the padded array."""
    rest = [slice(r + da, r + da + s) for da, s in zip(d[1:], grid[1:], strict=True)]
    return pad[(slice(a + r + d[0], c + r + d[0]), *rest)]


def window_features(
    image: Any, radius: int = 1, *, grid_ndim: int = 2, dtype: Any = None
) -> np.ndarray:
    """Raw ``(2r+1)^ndim`` windows around every node, flattened: ``(n, K·c)``.

    Parameters
    ----------
    image : array-like, shape grid or (\\*grid, c)
        An image ``(h, w[, c])``, a volume ``(d, h, w[, c])`` with ``grid_ndim=3``, ...
    radius : int, default=1
        Window radius ``r >= 0``: ``K = (2r+1)^grid_ndim`` offsets.
    grid_ndim : int, default=2
        Number of grid axes (see the module notes).
    dtype : {None, "float32", "float64"}, default=None
        Output precision; ``None``: float32 for float32 input, else float64.

    Returns
    -------
    ndarray, shape (n_nodes, K·c)
        Column ``o·c + ch`` is channel ``ch`` at window offset ``o`` (the offsets in
        lexicographic order, as :attr:`GridGraph.offsets`), rows in C order. The grid
        is extended by edge replication at the border.

    Raises
    ------
    ValueError
        If the output would exceed ``MAX_GRID_WINDOW_POSITIONS`` entries.
    """
    dt = _dtype(dtype, image)
    img = _grid_array(image, "image", grid_ndim, dt)
    grid, ch = img.shape[:-1], img.shape[-1]
    r, K = _check_window(grid, radius, ch)
    pad = np.pad(img, [(r, r)] * len(grid) + [(0, 0)], mode="edge")
    offsets = _window_offsets((r,) * len(grid))
    out = np.empty((math.prod(grid), K * ch), dtype=dt)
    view = out.reshape(*grid, K, ch)
    for a, c in _slabs(grid, K * ch):
        for o, d in enumerate(offsets):
            view[a:c, ..., o, :] = _shifted(pad, grid, r, a, c, d)
    return out


def affinity_features(
    representation: Any, radius: int = 1, *, grid_ndim: int = 2, dtype: Any = None
) -> np.ndarray:
    r"""Distances of every node to its ``(2r+1)^ndim`` window neighbours: ``(n, K)``.

    :math:`f_{ik} = \|u_i - u_{i+k}\|` for a per-node representation ``u`` (e.g. the
    log-assignment of a uniform-weight LAF). The feature is label-agnostic -- it says
    *which* neighbours look alike, not what they look like -- so a few predictor
    prototypes cover all edge configurations (straight edges, corners) whatever the
    labels on either side.

    Parameters
    ----------
    representation : array-like, shape grid or (\*grid, c)
        ``(h, w[, c])``; ``(d, h, w[, c])`` with ``grid_ndim=3``.
    radius : int, default=1
        Window radius ``r >= 0``: ``K = (2r+1)^grid_ndim`` neighbours per node,
        the node itself included.
    grid_ndim : int, default=2
        Number of grid axes (see the module notes).
    dtype : {None, "float32", "float64"}, default=None
        Output precision; ``None``: float32 for float32 input, else float64.

    Returns
    -------
    ndarray, shape (n_nodes, K)
        Offsets in lexicographic order; the centre column is 0. The representation
        is extended by edge replication at the border (the entries outside the grid
        are masked by the grid graph anyway).
    """
    dt = _dtype(dtype, representation)
    u = _grid_array(representation, "representation", grid_ndim, dt)
    grid = u.shape[:-1]
    r, K = _check_window(grid, radius, 1)
    pad = np.pad(u, [(r, r)] * len(grid) + [(0, 0)], mode="edge")
    offsets = _window_offsets((r,) * len(grid))
    out = np.empty((math.prod(grid), K), dtype=dt)
    view = out.reshape(*grid, K)
    for a, c in _slabs(grid, K * u.shape[-1]):
        centre = u[a:c]
        for o, d in enumerate(offsets):
            diff = _shifted(pad, grid, r, a, c, d) - centre
            np.sqrt(np.einsum("...c,...c->...", diff, diff), out=view[a:c, ..., o])
    return out


def gaussian_features(
    image: Any,
    sigmas: Any = (1.0, 2.0, 4.0),
    *,
    grid_ndim: int = 2,
    dtype: Any = None,
    truncate: float = 4.0,
) -> np.ndarray:
    r"""Gaussian-smoothed channels at several scales: ``(n, S·c)``.

    Each channel is filtered over the grid axes with an isotropic Gaussian of standard
    deviation :math:`\sigma_s` (in grid units, :func:`scipy.ndimage.gaussian_filter`
    with ``mode="nearest"``); :math:`\sigma = 0` is the channel itself.

    Parameters
    ----------
    image : array-like, shape grid or (\*grid, c)
        An image ``(h, w[, c])``, a volume ``(d, h, w[, c])`` with ``grid_ndim=3``, ...
    sigmas : float or sequence of float, default=(1, 2, 4)
        The scales, each in ``[0, max(grid)]`` (a wider Gaussian only averages the
        replicated border).
    grid_ndim : int, default=2
        Number of grid axes (see the module notes).
    dtype : {None, "float32", "float64"}, default=None
        Output precision; ``None``: float32 for float32 input, else float64.
    truncate : float, default=4.0
        Kernel half-width in standard deviations.

    Returns
    -------
    ndarray, shape (n_nodes, S·c)
        Column ``s·c + ch`` is channel ``ch`` at scale ``sigmas[s]``; rows in C order.
    """
    from scipy import ndimage

    dt = _dtype(dtype, image)
    img = _grid_array(image, "image", grid_ndim, dt)
    grid, ch = img.shape[:-1], img.shape[-1]
    s = np.atleast_1d(as_float_array(sigmas, "sigmas", ndim=(0, 1)))
    if s.size < 1:
        raise ValueError("sigmas must hold at least one scale")
    if np.any(s < 0) or np.any(s > max(grid)):
        raise ValueError(
            f"sigmas must lie in [0, max(grid shape)] = [0, {max(grid)}], got {s.tolist()}"
        )
    t = float(truncate)
    if not (np.isfinite(t) and 0 < t <= 100):
        raise ValueError(f"truncate must be a number in (0, 100], got {truncate!r}")
    out = np.empty((math.prod(grid), s.size * ch), dtype=dt)
    view = out.reshape(*grid, s.size, ch)
    for j, sigma in enumerate(s):
        for k in range(ch):
            if sigma == 0:
                view[..., j, k] = img[..., k]
            else:
                # written straight into the output's column (a strided view): the
                # 1-D passes run in place there, no full-size temporary
                ndimage.gaussian_filter(
                    img[..., k], float(sigma), mode="nearest", truncate=t, output=view[..., j, k]
                )
    return out


def edge_differences(graph: Any, features: Any, *, dtype: Any = None) -> np.ndarray:
    r"""Feature differences along the edges: ``|f_i − f_k|`` per edge and feature.

    Parameters
    ----------
    graph : Graph
        Any graph; on a :class:`~assignflow.GridGraph` the differences are shifted
        row-wise differences (no index gathers).
    features : array-like, shape (n_nodes, F), (..., F) or (n_nodes,)
        Node features: the last axis holds the features (channels, scales, ...), the
        leading axes index the nodes in C order; a 1-D array of length ``n_nodes`` is
        one feature per node.
    dtype : {None, "float32", "float64"}, default=None
        Output precision; ``None``: float32 for float32 input, else float64.

    Returns
    -------
    ndarray, shape (nnz, F)
        Row ``e`` is :math:`|f_i - f_k|` for the ``e``-th stored edge ``(i, k)``,
        aligned with ``graph.indices`` (the self-loop rows are 0). Computed in blocks
        of rows: no ``nnz``-sized temporary besides the output.
    """
    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be an assignflow Graph, got {type(graph).__name__}")
    dt = _dtype(dtype, features)
    f = as_float_array(features, "features", dtype=dt)
    n = graph.n_nodes
    if f.ndim == 1 and f.shape[0] == n:
        f = f[:, None]
    elif f.ndim >= 2 and math.prod(f.shape[:-1]) == n:
        f = f.reshape(n, f.shape[-1])
    else:
        raise ValueError(
            f"features must have shape ({n}, n_features) (one row per node of the graph), "
            f"or leading axes with {n} nodes in all; got {np.shape(features)}"
        )
    F = f.shape[1]
    out = np.empty((graph.nnz, F), dtype=dt)
    indptr, indices = graph.indptr, graph.indices
    if isinstance(graph, GridGraph):
        sup = graph._support
        K = len(sup.flat)

        def work(a: int, c: int) -> None:
            block = np.zeros((c - a, K, F), dtype=dt)
            for o, off in enumerate(sup.flat):
                lo, hi = max(a, -off), min(c, n - off)
                if hi > lo:
                    # pairs wrapped around a border are masked out below
                    np.subtract(f[lo:hi], f[lo + off : hi + off], out=block[lo - a : hi - a, o])
            np.abs(block, out=block)
            mask = sup.valid[a:c].ravel()
            np.compress(mask, block.reshape(-1, F), axis=0, out=out[indptr[a] : indptr[c]])

        _run_row_blocks(n, K * F, work)
        return out

    deg = graph.degrees

    def gather(a: int, c: int) -> None:
        s, e = indptr[a], indptr[c]
        rows = np.repeat(np.arange(a, c), deg[a:c])
        np.abs(f[rows] - f[indices[s:e]], out=out[s:e])

    _run_row_blocks(n, max(1, graph.nnz // n) * F, gather)
    return out
