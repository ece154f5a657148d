"""Matplotlib figures (imported lazily; the library itself never needs a display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["label_image_to_rgb", "plot_labelings"]


def label_image_to_rgb(labels: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Colour a label image ``(h, w)`` with the label prototypes (grey or RGB)."""
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
) -> Any:
    """Show the noisy image and a set of label images side by side.

    Parameters
    ----------
    image : array (h, w) or (h, w, c)
        The (noisy) input, shown clipped to ``[0, 1]``.
    panels : mapping name -> label image (h, w)
    prototypes : array (J,) or (J, c)
        Label colours.
    errors : mapping name -> fraction of wrongly labeled pixels, optional
        Added to the panel titles.
    path : str, optional
        Write the figure there (PNG, 120 dpi) and close it.
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names: Sequence[str] = list(panels)
    n = 1 + len(names)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.3 * nrows), squeeze=False)
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
        plt.close(fig)
    return fig
