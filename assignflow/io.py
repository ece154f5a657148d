"""Reading images and label images, writing label images.

The command line reads and writes through these functions; they are public so that
scripts read files exactly as ``assignflow label``/``fit``/``predict`` do.

Image files (PNG, JPEG, TIFF, BMP, GIF, WebP, ...) are decoded by imageio's Pillow
plugin, ``.npy`` files by numpy without pickles. The rules:

Pixel values
    8- and 16-bit integer samples are scaled to ``[0, 1]`` (divided by 255 and
    65535), 1-bit images give 0 and 1, float images (e.g. 32-bit TIFF) are kept as
    they are. Pillow reads 16-bit *colour* PNG/TIFF files at 8-bit precision; store
    16-bit colour or multi-channel data as ``.npy``. Other integer sample types
    (32-bit integer TIFF) are refused: their range is ambiguous. A ``.npy`` array
    holds numbers, not encoded intensities: its values are taken as they are.
Colour models
    Grey images give ``(h, w)``, colour images ``(h, w, 3)``. CMYK (JPEG or TIFF),
    YCbCr, LAB and HSV images are converted to RGB by Pillow (for CMYK
    :math:`R = 255\\,(1 - C)(1 - K)`, and likewise for G and B; Adobe's inverted
    CMYK JPEGs are recognised); palette images are expanded to their colours.
Alpha
    ``alpha="error"`` (the default) drops an alpha channel that is fully opaque
    (every value at the maximum) and refuses any other: transparency is not image
    data, and silently dropping it would label the hidden colours. A transparent
    colour of a grey, RGB or palette PNG (``tRNS``) counts as an alpha channel.
    ``alpha="drop"`` discards it anyway, ``alpha="keep"`` keeps it as the last
    channel (``(h, w, 2)`` or ``(h, w, 4)``, scaled like the colours).
Size
    An image whose header claims more than ``max_pixels`` pixels (default
    :data:`MAX_PIXELS` = 2**26, e.g. 8192 x 8192) is refused *before* it is decoded,
    so a small file that claims a huge image costs nothing; a ``.npy`` array also
    may hold at most ``4 * max_pixels`` values (an RGBA image at the pixel bound).
    At the bound a decoded RGB image takes 1.5 GiB as float64, and labeling it
    needs several times that, so larger images are almost surely a mistake or an
    attack; pass a larger ``max_pixels`` (``--max-pixels`` on the command line) to
    read one on purpose. A multi-image file (animated GIF/PNG, TIFF stack) gives
    its first image.
Label images
    Integer labels ``(h, w)`` as ``int64``: a ``.npy`` of integers (or of integral
    floats), a grey image of label ids (8/16-bit PNG, float TIFF holding integers),
    a palette PNG (the palette indices, as in PASCAL VOC), or a colour image whose
    distinct colours are the classes, numbered in sorted colour order (jointly
    over all the label images of :func:`read_label_images`). ``uint64`` values
    ``>= 2**63`` and non-integral or non-finite float labels are refused, never
    wrapped or truncated.

Files are only read if they are regular files (not directories, FIFOs or devices);
every failure is a ``ValueError`` that names the file.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import stat
import warnings
from collections.abc import Iterator, Sequence
from numbers import Integral
from typing import Any

import imageio.v3 as iio
import numpy as np
from PIL import Image
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from .plotting import label_image_to_rgb

__all__ = [
    "MAX_PIXELS",
    "atomic_path",
    "read_image",
    "read_label_image",
    "read_label_images",
    "write_labels",
]

#: Default bound on the pixels (``h * w``) of an image read from a file.
MAX_PIXELS = 2**26

_PATH = [str, os.PathLike]
_MAX_PIXELS = [Interval(Integral, 1, None, closed="left")]
_ALPHA_OF_MODE = {"LA": "LA", "La": "LA", "PA": "RGBA", "RGBA": "RGBA", "RGBa": "RGBA"}
_AS_RGB = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX")


# --------------------------------------------------------------------------- files
def _regular_file(path: Any, what: str) -> str:
    """``path`` as a string after checking that it names an existing regular file."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ValueError(f"{what} file {path!r} does not exist") from None
    except OSError as exc:
        raise ValueError(f"cannot read {what} file {path!r} ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"cannot read {what} file {path!r}: not a regular file")
    return path


class _TooLarge(ValueError):
    """An image whose header claims more than ``max_pixels`` pixels."""


def _check_pixels(path: str, shape: Sequence[int], max_pixels: int) -> None:
    pixels = int(shape[0]) * int(shape[1])
    if pixels > max_pixels:
        raise _TooLarge(
            f"{path!r} claims {shape[0]} x {shape[1]} = {pixels} pixels, more than "
            f"max_pixels={max_pixels}; pass a larger max_pixels (--max-pixels) to read it"
        )


def _read_npy(path: str, max_pixels: int) -> np.ndarray:
    """A ``.npy`` array without pickles, its header checked before the data is read."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            if dtype.hasobject:
                raise ValueError(
                    "it holds Python objects, which are never unpickled (allow_pickle=False)"
                )
            if len(shape) in (2, 3):
                _check_pixels(path, shape, max_pixels)
            n = math.prod(shape)
            if n > 4 * max_pixels:
                raise ValueError(f"its shape {shape} holds more than 4 * max_pixels values")
            if os.fstat(fh.fileno()).st_size - fh.tell() < n * dtype.itemsize:
                raise ValueError(f"the file is truncated (shape {shape}, dtype {dtype})")
            fh.seek(0)
            return fmt.read_array(fh, allow_pickle=False)
    except (_TooLarge, MemoryError):
        raise
    except Exception as exc:
        raise ValueError(f"cannot read {path!r} as a numpy array: {_one_line(exc)}") from None


def _decode(path: str, max_pixels: int, *, labels: bool = False) -> tuple[Any, str]:
    """Decode the first image of a file with Pillow; the array and its Pillow mode.

    The header is checked against ``max_pixels`` before any pixel is decoded. For
    images, a transparent colour (PNG ``tRNS``) becomes an alpha channel; for label
    images palette indices and grey ids are read as they are.
    """
    try:
        with warnings.catch_warnings():
            # our bound is below Pillow's; a DecompressionBombError is refused below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with iio.imopen(os.path.abspath(path), "r", plugin="pillow") as f:
                shape = f.properties(index=0).shape
                _check_pixels(path, shape, max_pixels)
                meta = f.metadata(index=0, exclude_applied=False)
                mode = meta["mode"]
                if labels:
                    read_mode = "P" if mode == "P" else "RGB" if mode in _AS_RGB else None
                elif mode in _AS_RGB:
                    read_mode = "RGB"
                elif mode in _ALPHA_OF_MODE:
                    read_mode = _ALPHA_OF_MODE[mode]
                elif "transparency" in meta:
                    read_mode = "RGBA" if mode in ("RGB", "P") else "LA"
                else:
                    read_mode = None
                return f.read(index=0, mode=read_mode), mode
    except (_TooLarge, MemoryError):
        raise
    except Exception as exc:
        if any(isinstance(e, Image.DecompressionBombError) for e in (exc, exc.__cause__)):
            raise _TooLarge(
                f"{path!r} claims more than max_pixels={max_pixels} pixels; pass a larger "
                "max_pixels (--max-pixels) to read it"
            ) from None
        raise ValueError(f"cannot read {path!r} as an image: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _scaled(a: np.ndarray, path: str) -> np.ndarray:
    """Decoded samples as float64: 8/16-bit integers scaled to [0, 1], floats kept."""
    if a.dtype == bool:
        return a.astype(np.float64)
    if a.dtype in (np.uint8, np.uint16):
        return a / float(np.iinfo(a.dtype).max)
    if a.dtype.kind == "f":
        return a.astype(np.float64)
    raise ValueError(
        f"{path!r} has {a.dtype} samples, whose range is ambiguous; save the image with "
        "8- or 16-bit unsigned or float samples, or as .npy"
    )


# --------------------------------------------------------------------------- images
@validate_params(
    {"path": _PATH, "alpha": [StrOptions({"error", "drop", "keep"})], "max_pixels": _MAX_PIXELS},
    prefer_skip_nested_validation=True,
)
def read_image(path: Any, *, alpha: str = "error", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image as float64: ``(h, w)`` grey or ``(h, w, c)``.

    The rules (scaling, colour models, alpha, the size bound) are in the module
    docstring of :mod:`assignflow.io`.

    Parameters
    ----------
    path : str or os.PathLike
        An image file (PNG, JPEG, TIFF, ...) or a ``.npy`` array of numbers of shape
        ``(h, w)`` or ``(h, w, c)``.
    alpha : {"error", "drop", "keep"}, default="error"
        What to do with an alpha channel: ``"error"`` drops a fully opaque one and
        refuses any other; ``"drop"`` discards it; ``"keep"`` keeps it as the last
        channel.
    max_pixels : int, default=MAX_PIXELS
        Largest accepted ``h * w``, checked against the file's header before
        decoding.

    Returns
    -------
    ndarray of float64, shape (h, w) or (h, w, c)
        Finite values; image files give values in ``[0, 1]`` unless they hold floats.

    Raises
    ------
    ValueError
        For a missing or unreadable file, an image above ``max_pixels``, a
        non-opaque alpha channel with ``alpha="error"``, non-finite values, or an
        array that is not a non-empty numeric ``(h, w[, c])`` image.
    """
    path = _regular_file(path, "image")
    if path.lower().endswith(".npy"):
        a = _read_npy(path, max_pixels)
        if a.dtype.kind not in "biuf" or a.ndim not in (2, 3):
            raise ValueError(
                f"{path!r} must hold a numeric (h, w) or (h, w, c) array, got dtype "
                f"{a.dtype} and shape {a.shape}"
            )
        out = a.astype(np.float64)
    else:
        a, mode = _decode(path, max_pixels)
        out = _scaled(a, path)
        has_alpha = out.ndim == 3 and out.shape[2] in (2, 4)
        if has_alpha and alpha != "keep":
            opaque = np.all(a[..., -1] == (np.iinfo(a.dtype).max if a.dtype.kind == "u" else 1))
            if alpha == "error" and not opaque:
                raise ValueError(
                    f"{path!r} has a transparent alpha channel ({mode} image); transparency "
                    "is not image data: pass alpha='drop' (--alpha drop) to ignore it or "
                    "alpha='keep' (--alpha keep) to keep it as a channel"
                )
            out = out[..., :-1]
            if out.shape[2] == 1:
                out = out[..., 0]
    if out.size == 0:
        raise ValueError(f"{path!r} holds an empty image of shape {out.shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{path!r} contains NaN or inf values")
    return out


# --------------------------------------------------------------------------- label images
def _raw_labels(path: str, max_pixels: int) -> np.ndarray:
    """The label image as stored: (h, w) numbers or (h, w, c) colours."""
    if path.lower().endswith(".npy"):
        a = _read_npy(path, max_pixels)
        if a.ndim != 2:
            raise ValueError(f"{path!r} must hold an (h, w) label array, got shape {a.shape}")
    else:
        a, _ = _decode(path, max_pixels, labels=True)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{path!r} must hold integer labels, got dtype {a.dtype}")
    if a.size == 0:
        raise ValueError(f"{path!r} holds an empty label image of shape {a.shape}")
    return a


def _as_int_labels(a: np.ndarray, path: str) -> np.ndarray:
    """(h, w) label numbers as int64, refusing any value that would change."""
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{path!r} must hold integer labels; it contains NaN or inf")
        if not np.all(a == np.round(a)):
            raise ValueError(
                f"{path!r} must hold integer labels; it contains non-integral values "
                f"such as {a[a != np.round(a)].flat[0]!r}"
            )
        if np.abs(a).max() >= 2.0**63:
            raise ValueError(f"{path!r} holds labels beyond the int64 range")
    elif a.dtype == np.uint64 and a.max() >= 2**63:
        raise ValueError(
            f"{path!r} holds uint64 labels >= 2**63 (up to {a.max()}), beyond the int64 "
            "range; renumber the classes"
        )
    return a.astype(np.int64)


@validate_params(
    {"paths": ["array-like"], "max_pixels": _MAX_PIXELS},
    prefer_skip_nested_validation=True,
)
def read_label_images(paths: Sequence[Any], *, max_pixels: int = MAX_PIXELS) -> list[np.ndarray]:
    """Read label images with one numbering of colours across all of them.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        ``.npy`` arrays of integers (or integral floats), grey or palette images of
        label ids, or colour images whose colours are the classes; colour and
        id images cannot be mixed.
    max_pixels : int, default=MAX_PIXELS
        Largest accepted ``h * w`` of each file, checked before decoding.

    Returns
    -------
    list of ndarray of int64, shape (h, w)
        The labels; colours are numbered in sorted order of the colours that occur
        in any of the files, so a colour means the same class in every image.

    Raises
    ------
    ValueError
        For a missing or unreadable file, non-integral, non-finite or out-of-range
        labels, or a mix of colour and id label images.
    """
    raw = [_raw_labels(_regular_file(p, "label image"), max_pixels) for p in paths]
    paths = [os.fspath(p) for p in paths]
    colour = [a.ndim == 3 for a in raw]
    if not any(colour):
        return [_as_int_labels(a, p) for a, p in zip(raw, paths, strict=True)]
    if not all(colour) or len({a.shape[2] for a in raw}) > 1:
        raise ValueError(
            "label images must be all colour images (colours are classes) or all label-id "
            f"images (grey, palette or .npy); got {[p for p, c in zip(paths, colour, strict=True)]}"
        )
    flat = [a.reshape(-1, a.shape[2]) for a in raw]
    _, inv = np.unique(np.concatenate(flat), axis=0, return_inverse=True)
    out, start = [], 0
    for a in raw:
        n = a.shape[0] * a.shape[1]
        out.append(inv.ravel()[start : start + n].reshape(a.shape[:2]).astype(np.int64))
        start += n
    return out


def read_label_image(path: Any, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read one label image as int64 ``(h, w)``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy`` array of integers (or integral floats), a grey or palette image
        of label ids, or a colour image whose distinct colours are the classes
        (numbered in sorted colour order).
    max_pixels : int, default=MAX_PIXELS
        Largest accepted ``h * w``, checked before decoding.

    Returns
    -------
    ndarray of int64, shape (h, w)

    See Also
    --------
    read_label_images : several label images with one numbering of colours.
    """
    return read_label_images([path], max_pixels=max_pixels)[0]


# --------------------------------------------------------------------------- writing
def _display_colours(prototypes: np.ndarray) -> np.ndarray:
    """Colours (J, 1 or 3) in [0, 1] for the PNG: the prototypes when they are grey or
    RGB values in [0, 1], rescaled to [0, 1] when outside, else a qualitative palette."""
    p = np.asarray(prototypes, dtype=float)
    p = p[:, None] if p.ndim == 1 else p
    if p.shape[1] in (1, 3):
        lo, hi = p.min(), p.max()
        return p if lo >= 0 and hi <= 1 else (p - lo) / (hi - lo if hi > lo else 1.0)
    import matplotlib

    return np.asarray(matplotlib.colormaps["tab20"](np.arange(len(p)) % 20))[:, :3]


@contextlib.contextmanager
def atomic_path(path: Any) -> Iterator[str]:
    """A temporary path beside ``path`` that is renamed to ``path`` on success.

    Write the file to the yielded path; when the ``with`` block ends without an
    exception the file is renamed into place (an atomic replace), otherwise it is
    removed. An interrupted or failed write therefore never leaves a half-written
    or clobbered ``path``. Whether ``path`` may be replaced is the caller's decision.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; its directory must exist.

    Yields
    ------
    str
        A fresh path in the same directory, with the same extension as ``path``.
    """
    path = os.fspath(path)
    d, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(d, f".{stem}.{secrets.token_hex(4)}.tmp{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


@validate_params(
    {
        "path_stem": _PATH,
        "labels": ["array-like"],
        "prototypes": ["array-like"],
        "index": ["array-like", None],
        "overwrite": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def write_labels(
    path_stem: Any,
    labels: Any,
    prototypes: Any,
    index: Any = None,
    *,
    overwrite: bool = False,
) -> list[str]:
    """Write ``STEM.npy`` (the labels) and ``STEM.png`` (coloured by the prototypes).

    Parameters
    ----------
    path_stem : str or os.PathLike
        Output path without extension; its directory must exist.
    labels : array of int, shape (h, w)
        The labels stored in the ``.npy`` file (class values).
    prototypes : array, shape (J,) or (J, c)
        The label prototypes; grey or RGB prototypes in ``[0, 1]`` are the colours
        of the PNG (rescaled to ``[0, 1]`` when outside it), other channel counts
        get a qualitative palette.
    index : array of int, shape (h, w), optional
        The prototype row of every pixel, when ``labels`` are class values rather
        than indices into ``prototypes``.
    overwrite : bool, default=False
        Replace existing files; otherwise an existing output is refused. Files are
        written to a temporary name and renamed into place, so an interrupted
        write leaves no partial file.

    Returns
    -------
    list of str
        The paths written, ``[STEM.png, STEM.npy]``.

    Raises
    ------
    ValueError
        If the directory does not exist, an output exists (without ``overwrite``),
        or the labels are not indices into the prototypes.
    TypeError
        If the labels are not integers.
    """
    stem = os.fspath(path_stem)
    d = os.path.dirname(os.path.abspath(stem))
    if not os.path.isdir(d):
        raise ValueError(f"path_stem: the output directory {d!r} does not exist")
    labels = np.asarray(labels)
    idx = labels if index is None else np.asarray(index)
    if labels.ndim != 2 or idx.shape != labels.shape:
        raise ValueError(
            f"labels must be an (h, w) label image (and index of its shape), got shapes "
            f"{labels.shape} and {idx.shape}"
        )
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer, got dtype {labels.dtype}")
    rgb = label_image_to_rgb(idx, _display_colours(np.asarray(prototypes, dtype=float)))
    png, npy = stem + ".png", stem + ".npy"
    for p in (png, npy):
        if not overwrite and os.path.lexists(p):
            raise ValueError(f"{p!r} exists; pass overwrite=True (--overwrite) to replace it")
    rgb8 = np.round(255 * rgb).astype(np.uint8)
    with atomic_path(png) as tmp:
        iio.imwrite(tmp, rgb8, extension=".png")
    with atomic_path(npy) as tmp:
        np.save(tmp, labels, allow_pickle=False)
    return [png, npy]
