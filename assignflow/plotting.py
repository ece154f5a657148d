"""Matplotlib figures: label images, labelings side by side, and a fit's history.

``import assignflow as af`` makes this module available as ``af.plotting``;
matplotlib itself is imported only when a function here is called, so the library
never needs a display (or pays matplotlib's import time) unless it draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["label_image_to_rgb", "plot_history", "plot_labelings"]

# history keys drawn by plot_history: the loss on the left axis, errors on the right
_LOSS_KEYS = ("loss", "val_loss")
_LOSS_LABELS = {"loss": "training loss", "val_loss": "validation loss"}
_ERROR_LABELS = {"error": "training error", "val_error": "validation error"}


def label_image_to_rgb(labels: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Colour a label image with the label prototypes.

    Parameters
    ----------
    labels : array of int, shape (h, w)
        Label indices ``0 .. J-1`` (any shape works; the colour axis is appended).
    prototypes : array, shape (J,) or (J, c)
        The colour of each label: grey values (``(J,)`` or ``(J, 1)``) or RGB rows,
        clipped to ``[0, 1]``.

    Returns
    -------
    rgb : ndarray of float, shape (h, w, 3)
        The image with each pixel coloured by its label's prototype.

    Raises
    ------
    TypeError
        If ``labels`` are not integers.
    ValueError
        If ``prototypes`` has the wrong shape or a label lies outside ``0 .. J-1``.

    Examples
    --------
    >>> import numpy as np
    >>> from assignflow.plotting import label_image_to_rgb
    >>> label_image_to_rgb(np.array([[0, 1]]), np.array([0.0, 1.0])).shape
    (1, 2, 3)
    """
    protos = np.asarray(prototypes, dtype=float)
    if protos.ndim == 1:
        protos = protos[:, None]
    if protos.ndim != 2 or protos.shape[0] < 1:
        raise ValueError(f"prototypes must have shape (J,) or (J, c), got {protos.shape}")
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer indices into the prototypes, got {lab.dtype}")
    if lab.size and (lab.min() < 0 or lab.max() >= protos.shape[0]):
        raise ValueError(
            f"labels must lie in 0..{protos.shape[0] - 1} (one per prototype), got values from "
            f"{lab.min()} to {lab.max()}"
        )
    rgb = protos[lab]
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    return np.clip(rgb, 0.0, 1.0)


def plot_labelings(
    image: np.ndarray,
    panels: Mapping[str, np.ndarray],
    prototypes: np.ndarray,
    *,
    errors: Mapping[str, float] | None = None,
    path: str | None = None,
    ncols: int = 3,
    title: str | None = None,
) -> Figure:
    """Show the noisy image and a set of label images side by side.

    Parameters
    ----------
    image : array, shape (h, w) or (h, w, c)
        The (noisy) input, shown clipped to ``[0, 1]``.
    panels : mapping of str to array of int, shape (h, w)
        Label images by panel title, drawn in the mapping's order after the input.
    prototypes : array, shape (J,) or (J, c)
        Label colours (see :func:`label_image_to_rgb`).
    errors : mapping of str to float, optional
        Fraction of wrongly labeled pixels per panel name, added to the titles.
    path : str, optional
        Write the figure there (PNG, 120 dpi). The figure is then drawn without
        pyplot, so no window opens and matplotlib's backend is left as it is.
    ncols : int, default 3
        Panels per row (clipped to the number of panels).
    title : str, optional
        A title above all panels.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure (a pyplot figure when ``path`` is None).

    Examples
    --------
    >>> import numpy as np
    >>> from assignflow.plotting import plot_labelings
    >>> lab = np.zeros((4, 4), dtype=int)
    >>> fig = plot_labelings(np.zeros((4, 4)), {"zeros": lab}, np.array([0.0, 1.0]))
    >>> len(fig.axes)
    2
    """
    if not isinstance(ncols, (int, np.integer)) or isinstance(ncols, bool) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    names: Sequence[str] = list(panels)
    n = 1 + len(names)
    ncols = min(int(ncols), n)
    nrows = -(-n // ncols)
    figsize = (3.2 * ncols, 3.3 * nrows)
    if path is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=figsize)
    else:
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    img = np.clip(np.asarray(image, dtype=float), 0.0, 1.0)
    axes[0, 0].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    axes[0, 0].set_title("input")
    for k, name in enumerate(names, start=1):
        ax = axes[k // ncols, k % ncols]
        ax.imshow(label_image_to_rgb(panels[name], prototypes), interpolation="nearest")
        t = (
            name
            if errors is None or name not in errors
            else f"{name}\n{100 * errors[name]:.1f}% wrong"
        )
        ax.set_title(t, fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_history(
    history: Mapping[str, Sequence[float]],
    ax: Axes | None = None,
    *,
    best_iter: int | None = None,
) -> Axes:
    """Plot a fit's loss and errors per iteration.

    Draws the loss (``"loss"``, and ``"val_loss"`` if present) on the left axis and
    the fractions of wrongly labeled nodes (``"error"``: training, ``"val_error"``:
    validation) in percent on a second axis on the right. Series that are missing
    or entirely NaN (e.g. ``"error"`` for a loss without labels) are left out.

    Parameters
    ----------
    history : mapping of str to sequence of float
        Values per iteration, as in :attr:`ImageLabeler.history_
        <assignflow.ImageLabeler>` or :attr:`DescentResult.history
        <assignflow.DescentResult>`. Other keys (``"time"``, ``"grad_norm"``) are
        ignored.
    ax : matplotlib.axes.Axes, optional
        Where to draw the loss; a new pyplot figure is made if None.
    best_iter : int, optional
        Mark this iteration with a vertical line (e.g. ``ImageLabeler.best_iter_``).

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes of the loss. The error axis, if drawn, is its twin
        (``ax.right_ax``).

    Raises
    ------
    TypeError
        If ``history`` is not a mapping (pass ``lab.history_`` or ``result.history``,
        not the estimator or result).
    ValueError
        If ``history`` holds neither a loss nor an error series, a series is not
        one-dimensional, or ``best_iter`` is not a non-negative integer.

    Examples
    --------
    >>> from assignflow.plotting import plot_history
    >>> ax = plot_history({"loss": [1.0, 0.5, 0.4], "error": [0.3, 0.1, 0.05]})
    >>> ax.get_xlabel()
    'iteration'
    """
    if not isinstance(history, Mapping):
        raise TypeError(
            "history must be a mapping of series per iteration (e.g. lab.history_ or "
            f"result.history), got {type(history).__name__}"
        )
    if best_iter is not None and (
        not isinstance(best_iter, (int, np.integer)) or isinstance(best_iter, bool) or best_iter < 0
    ):
        raise ValueError(f"best_iter must be a non-negative integer, got {best_iter!r}")
    series: dict[str, np.ndarray] = {}
    for key in (*_LOSS_KEYS, *_ERROR_LABELS):
        if key not in history:
            continue
        values = np.asarray(history[key], dtype=float)
        if values.ndim != 1:
            raise ValueError(
                f"history[{key!r}] must be one value per iteration, got shape {values.shape}"
            )
        if values.size and not np.all(np.isnan(values)):
            series[key] = values
    if not series:
        raise ValueError(
            "history has no loss or error values to plot (expected keys among "
            f"{[*_LOSS_KEYS, *_ERROR_LABELS]}, got {sorted(history)})"
        )
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5.5, 3.5))
    handles = []
    for key, color in zip(_LOSS_KEYS, ("C0", "C3"), strict=True):
        if key in series:
            (h,) = ax.plot(series[key], color=color, label=_LOSS_LABELS[key])
            handles.append(h)
    ax.set_xlabel("iteration")
    if any(k in series for k in _LOSS_KEYS):
        ax.set_ylabel("loss")
    else:
        ax.set_yticks([])
    errors = [k for k in _ERROR_LABELS if k in series]
    if errors:
        right = ax.twinx()
        styles = {"error": ("C1", "--"), "val_error": ("C2", "-.")}
        for key in errors:
            color, ls = styles[key]
            (h,) = right.plot(100 * series[key], color=color, ls=ls, label=_ERROR_LABELS[key])
            handles.append(h)
        right.set_ylabel("wrongly labeled (%)")
        ax.right_ax = right
    if best_iter is not None:
        ax.axvline(int(best_iter), color="0.5", lw=0.8, ls=":")
        h = ax.plot([], [], color="0.5", lw=0.8, ls=":", label=f"best ({int(best_iter)})")[0]
        handles.append(h)
    ax.legend(handles=handles, loc="upper right", fontsize=8)
    return ax
