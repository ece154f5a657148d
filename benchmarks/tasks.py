"""Labeling tasks of the quality benchmark (``benchmarks/quality.py``).

Every task has 5 training and 5 test images with ground-truth labels and the
label prototypes that define the labels. Nothing is shared between training
and test images: the synthetic scenes are independent draws with separate
seeds, and the real-image tiles come from disjoint halves of the image.

Synthetic tasks (128 x 128; ``--quick``: 64 x 64)

=============  ==============================================================
``colors``     Voronoi scenes, 8 random colours (``random_palette(8,
               random_state=SEED_PALETTE)``, drawn once, shared by training
               and test scenes), noise 0.3.
``colors-cube`` Voronoi scenes, the paper's 8 cube-corner colours, noise
               ``noise_for_rounding_error("colors")`` (0.606: pixelwise
               rounding ~50 % wrong).
``lines``      Voronoi boundaries (label 0) on white cells, noise 0.3;
               boundary recall = fraction of label-0 pixels labeled 0.
``blobs``      ``make_smooth_blobs`` (smoothness 6 px, half the pixels each
               label), heavy noise 1.0 (rounding ~31 % wrong).
=============  ==============================================================

Real-image tasks (scikit-image's bundled images, values scaled to [0, 1])

==========================  ====  =====  ===========================
image                       kind  J      tiles
==========================  ====  =====  ===========================
``coins`` (303 x 384)       grey  2      96 x 96 (128 fits only 2 x 1 per half)
``camera`` (512 x 512)      grey  3      128 x 128
``astronaut`` (512 x 512)   RGB   5      128 x 128
``coffee`` (400 x 600)      RGB   4      128 x 128
``immunohistochemistry``    RGB   3      128 x 128
==========================  ====  =====  ===========================

each at Gaussian noise 0.1 and 0.2 (10 tasks, named ``<image>-<noise>``).

* Split: the left half of the image (columns ``< w // 2``) is the training
  region, the right half the test region. Each half is cut into a grid of
  disjoint tiles (the largest of 128, 96, 64 pixels that gives at least 5
  tiles per half; ``--quick`` uses 64); 5 tiles of each grid are chosen at
  random (seeds below). No pixel of a test tile is in any training tile.
* Ground truth: ``quantize_image`` (k-means on the pixel values, grey or RGB)
  fitted on the clean *training half only*; every pixel is labeled by its
  nearest centre. For grey images this is thresholding halfway between class
  means (``J - 1`` thresholds). The centres are the task's prototypes.
* Input: the clean tile plus i.i.d. Gaussian noise (not clipped).

Seeds (all fixed; ``test_seed_offset`` is added to every test seed, so a
positive offset draws another fresh test set: new scenes for the synthetic
tasks, another choice of test tiles and new noise for the real ones)

* palette of ``colors``: ``SEED_PALETTE``
* synthetic training scenes ``SEED_TRAIN[task]``, test scenes
  ``SEED_TEST[task] + test_seed_offset``
* real images (``i`` = index of the image in :data:`REAL_IMAGES`, ``k`` =
  index of the noise level): k-means ``SEED_KMEANS``; training tiles
  ``default_rng([SEED_TRAIN["real"], i])`` (the same tiles for both noise
  levels), their noise ``default_rng([SEED_TRAIN["real"], i, 1 + k])``; test
  tiles and noise likewise with ``SEED_TEST["real"] + test_seed_offset``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

import assignflow as af

__all__ = ["REAL_IMAGES", "SYNTHETIC", "TASK_NAMES", "Task", "make_task", "synthetic_generator"]

N_TRAIN, N_TEST = 5, 5
SEED_PALETTE = 6001
SEED_KMEANS = 0
SEED_TRAIN = {"colors": 7001, "colors-cube": 7011, "lines": 7101, "blobs": 7201, "real": 7301}
SEED_TEST = {"colors": 8001, "colors-cube": 8011, "lines": 8101, "blobs": 8201, "real": 8301}

SYNTHETIC = ("colors", "colors-cube", "lines", "blobs")
#: image name -> number of labels J (grey images are thresholded, RGB ones quantised)
REAL_IMAGES = {"coins": 2, "camera": 3, "astronaut": 5, "coffee": 4, "immunohistochemistry": 3}
REAL_NOISE = (0.1, 0.2)
TASK_NAMES = SYNTHETIC + tuple(f"{im}-{s:g}" for im in REAL_IMAGES for s in REAL_NOISE)


@dataclasses.dataclass
class Task:
    """One labeling task: training and test images, ground truth, prototypes."""

    name: str
    X_train: np.ndarray  # (n, h, w) grey or (n, h, w, c) colour
    y_train: np.ndarray  # (n, h, w) int
    X_test: np.ndarray
    y_test: np.ndarray
    prototypes: np.ndarray  # (J, c)
    noise: float
    recall: bool = False  # report boundary recall (label 0)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_labels(self) -> int:
        return int(self.prototypes.shape[0])

    def describe(self) -> str:
        h, w = self.X_train.shape[1:3]
        return (
            f"{self.name}: {len(self.X_train)} training / {len(self.X_test)} test images of "
            f"{h}x{w}, J = {self.n_labels}, noise {self.noise:g}"
        )


def synthetic_generator(name: str, size: int = 128) -> tuple[Any, float, dict[str, Any]]:
    """``(make, noise, info)`` of a synthetic task: ``make(n, seed) -> (X, y, prototypes)``.

    The one definition of the synthetic scenes (also used by ``headroom.py``).
    """
    shape = (size, size)
    info: dict[str, Any] = {}
    if name in ("colors", "colors-cube"):
        if name == "colors":
            palette, noise = af.datasets.random_palette(8, random_state=SEED_PALETTE), 0.3
            d = np.sqrt(((palette[:, None] - palette[None]) ** 2).sum(-1))
            info.update(
                palette_seed=SEED_PALETTE,
                palette=palette.tolist(),
                palette_min_distance=float(d[~np.eye(8, dtype=bool)].min()),
            )
        else:
            palette, noise = None, af.datasets.noise_for_rounding_error("colors")

        def make(n, seed):
            return af.datasets.make_voronoi(
                "colors", n, shape, noise, palette=palette, random_state=seed,
                return_prototypes=True,
            )  # fmt: skip
    elif name == "lines":
        noise = 0.3

        def make(n, seed):
            return af.datasets.make_voronoi(
                "lines", n, shape, noise, random_state=seed, return_prototypes=True
            )
    elif name == "blobs":
        noise = 1.0
        info["smoothness"] = 6.0

        def make(n, seed):
            return af.datasets.make_smooth_blobs(
                n, shape, noise, smoothness=6.0, random_state=seed, return_prototypes=True
            )
    else:
        raise ValueError(f"unknown synthetic task {name!r}; known: {', '.join(SYNTHETIC)}")
    return make, float(noise), info


def _synthetic(name: str, size: int, offset: int) -> Task:
    s_train, s_test = SEED_TRAIN[name], SEED_TEST[name] + offset
    make, noise, extra = synthetic_generator(name, size)
    info: dict[str, Any] = {"seeds": {"train": s_train, "test": s_test}, **extra}
    X, y, P = make(N_TRAIN, s_train)
    Xt, yt, _ = make(N_TEST, s_test)
    return Task(name, X, y, Xt, yt, P, float(noise), recall=name == "lines", info=info)


def _load_image(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    return np.asarray(img, dtype=np.float64) / 255.0


def _tile_size(half_shape: tuple[int, int], quick: bool) -> int:
    sizes = (64,) if quick else (128, 96, 64)
    for s in sizes:
        if (half_shape[0] // s) * (half_shape[1] // s) >= max(N_TRAIN, N_TEST):
            return s
    raise ValueError(f"image half {half_shape} too small for {N_TRAIN} tiles")  # pragma: no cover


@functools.lru_cache(maxsize=8)
def _ground_truth(image_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clean image, its labels and prototypes (k-means fitted on the left half only)."""
    img = _load_image(image_name)
    h, w = img.shape[:2]
    train_mask = np.zeros((h, w), dtype=bool)
    train_mask[:, : w // 2] = True
    labels, protos = af.datasets.quantize_image(
        img, REAL_IMAGES[image_name], mask=train_mask, random_state=SEED_KMEANS
    )
    return img, labels, protos


def _real(name: str, quick: bool, offset: int) -> Task:
    image_name, noise_str = name.rsplit("-", 1)
    noise = float(noise_str)
    i, k = list(REAL_IMAGES).index(image_name), REAL_NOISE.index(noise)
    s_train, s_test = SEED_TRAIN["real"], SEED_TEST["real"] + offset
    img, labels, protos = _ground_truth(image_name)
    h, w = img.shape[:2]
    half = w // 2
    s = _tile_size((h, half), quick)

    def tiles(col0: int, width: int, seed: int, n: int):
        # disjoint tiles inside the region; the same tiles for both noise levels
        grid = [(r * s, col0 + c * s) for r in range(h // s) for c in range(width // s)]
        pick = np.random.default_rng([seed, i]).choice(len(grid), size=n, replace=False)
        chosen = [grid[j] for j in sorted(pick)]
        clean = np.stack([img[r : r + s, c : c + s] for r, c in chosen])
        lab = np.stack([labels[r : r + s, c : c + s] for r, c in chosen])
        z = np.random.default_rng([seed, i, 1 + k]).standard_normal(clean.shape)
        return clean + noise * z, lab, chosen

    X, y, pos_train = tiles(0, half, s_train, N_TRAIN)
    Xt, yt, pos_test = tiles(half, w - half, s_test, N_TEST)
    info = {
        "image": image_name,
        "image_shape": list(img.shape),
        "tile": s,
        "split_column": half,
        "train_tiles": pos_train,
        "test_tiles": pos_test,
        "seeds": {
            "train_tiles": [s_train, i],
            "train_noise": [s_train, i, 1 + k],
            "test_tiles": [s_test, i],
            "test_noise": [s_test, i, 1 + k],
            "kmeans": SEED_KMEANS,
        },
        "prototypes": protos.tolist(),
    }
    return Task(name, X, y, Xt, yt, protos, noise, info=info)


def make_task(name: str, *, quick: bool = False, test_seed_offset: int = 0) -> Task:
    """Build the task ``name`` (one of :data:`TASK_NAMES`)."""
    if name not in TASK_NAMES:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}")
    if name in SYNTHETIC:
        return _synthetic(name, 64 if quick else 128, test_seed_offset)
    return _real(name, quick, test_seed_offset)
