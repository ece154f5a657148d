"""The ``assignflow`` command line (also ``python -m assignflow``).

``assignflow demo``
    The main job on built-in synthetic data (:func:`assignflow.demo.run_demo`).
``assignflow label IMAGE``
    Labels one image with the LAF and uniform weights
    (:func:`~assignflow.label_graph` on a :class:`~assignflow.GridGraph`), or with
    the predicted weights of a fitted model (``--model``).
``assignflow fit``
    Fits an :class:`~assignflow.ImageLabeler` on images and label images and saves
    it (:func:`~assignflow.save`).
``assignflow predict``
    Labels images with a saved model.
``assignflow plugins``
    Lists every registered component and where it came from.

Every command is a few lines over the library; images are read and labels written
by :mod:`assignflow.io` (its rules for bit depth, alpha, CMYK and the pixel bound
apply). The defaults of ``--rho`` and ``--T`` are the library's own: those of
:func:`~assignflow.label_graph` for ``label``, of :class:`~assignflow.ImageLabeler`
for ``fit`` and ``demo``.

Outputs never lose data:

- an output that is one of the command's inputs is refused, even with ``--overwrite``;
- two outputs of one run that would land on the same file are refused (``predict
  d1/x.png d2/x.png --output-dir out``);
- an existing output is refused unless ``--overwrite`` is given;
- all of this is checked before any work, and every file is written to a temporary
  name and renamed into place, so an interrupted run leaves no partial file.

Every failure ends in one line ``assignflow <command>: error: <message>; <hint>`` on
stderr and exit code 2 (130 after Ctrl-C; 141, silently, when the reader of stdout
goes away), never a traceback; warnings are printed
as one line ``assignflow <command>: warning: <message> (<category>)``. Progress bars with an
estimate of the remaining time (tqdm, on stderr) are shown for ``label``,
``predict`` and ``fit`` when stderr is a terminal, unless ``--quiet`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.utils import check_scalar
from sklearn.utils._param_validation import Interval
from tqdm import tqdm

from . import io, registry
from ._version import __version__
from .classifier import label_graph
from .demo import DEMO_NOISE, format_results, run_demo
from .estimators import ImageLabeler
from .graphs import GridGraph
from .persistence import load, save

__all__ = ["build_parser", "main", "run_demo"]

_LABEL_GRAPH = inspect.signature(label_graph).parameters
_LABELER = inspect.signature(ImageLabeler).parameters
_GRID = inspect.signature(GridGraph).parameters

#: At most this many k-means labels (the flow's memory grows with the labels).
MAX_LABELS = 256

#: The options of ``label`` that only mean something without ``--model``.
_UNIFORM_ONLY = {
    "prototypes": None,
    "n_labels": 8,
    "rho": _LABEL_GRAPH["rho"].default,
    "T": _LABEL_GRAPH["T"].default,
    "radius": _GRID["radius"].default,
}


# --------------------------------------------------------------------------- parsing
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that end in a hint."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` except for options without a value by default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action) or ""


def _number(interval: Interval, *options: str) -> Callable[[str], Any]:
    """An argparse type: a number in ``interval`` (sklearn's check), or one of ``options``."""
    convert = int if interval.type is Integral else float

    def parse(text: str) -> Any:
        if text in options:
            return text
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or value not in interval:
            alt = "".join(f" or {o!r}" for o in options)
            raise argparse.ArgumentTypeError(f"must be {interval}{alt}, got {text!r}")
        return value

    parse.__name__ = convert.__name__
    return parse


#: rho: a normal (not subnormal) positive float or "auto"; T: a positive finite float
#: or "auto".
_RHO = _number(Interval(Real, np.finfo(np.float64).tiny, None, closed="left"), "auto")
_T_OR_AUTO = _number(Interval(Real, 0, None, closed="neither"), "auto")
_COUNT = _number(Interval(Integral, 1, None, closed="left"))
_RADIUS_OR_AUTO = _number(Interval(Integral, 0, 16, closed="both"), "auto")
_RHO_HELP = (
    "scale of the distances, a number > 0 or 'auto' (the median gap between the distances "
    "of a pixel to its two nearest prototypes, assignflow.estimate_rho)"
)
_T_HELP = "time horizon of the LAF, a number > 0 or 'auto' (the library's rule)"


# --------------------------------------------------------------------------- outputs
def _check_outputs(
    outputs: Sequence[tuple[str, str]], inputs: Sequence[str], overwrite: bool
) -> None:
    """Refuse, before any work, outputs that would lose data.

    ``outputs`` pairs every output file with what it is made from (for messages).
    """
    real_inputs = {os.path.realpath(p): p for p in inputs}
    seen: dict[str, str] = {}
    for out, source in outputs:
        real = os.path.realpath(out)
        if real in real_inputs:
            raise ValueError(
                f"the output {out!r} of {source} would overwrite the input "
                f"{real_inputs[real]!r}; choose another output name"
            )
        if real in seen:
            raise ValueError(
                f"{seen[real]} and {source} would both be written to {out!r}; give the "
                "images distinct names or label them in separate runs"
            )
        seen[real] = source
        d = os.path.dirname(os.path.abspath(out))
        if os.path.exists(d) and not os.path.isdir(d):
            raise ValueError(f"cannot write {out!r}: {d!r} is not a directory")
        if not overwrite and os.path.lexists(out):
            raise ValueError(f"{out!r} exists; pass --overwrite to replace it")


def _check_dir(path: str, option: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise ValueError(f"{option}: the output directory {d!r} does not exist")


def _write(stem: str, labels: np.ndarray, model: Any | None, prototypes: Any, args) -> None:
    index = None if model is None else np.searchsorted(model.classes_, labels)
    for f in io.write_labels(stem, labels, prototypes, index, overwrite=args.overwrite):
        tqdm.write(f"wrote {f}", file=sys.stdout)  # clears a progress bar first


# --------------------------------------------------------------------------- progress
class _Progress:
    """A tqdm bar on stderr, moved to absolute positions; off with --quiet or no terminal.

    On success the bar is completed (``complete=True``), whether or not the library
    reported every step.
    """

    def __init__(
        self, args: argparse.Namespace, desc: str, total: float, complete: bool = True, **kw: Any
    ) -> None:
        self.complete = complete
        isatty = getattr(sys.stderr, "isatty", None)
        self.bar = tqdm(
            total=total,
            desc=desc,
            file=sys.stderr,
            disable=args.quiet or not (isatty and isatty()),
            dynamic_ncols=True,
            **kw,
        )

    def to(self, position: float) -> None:
        delta = min(position, self.bar.total) - self.bar.n
        if delta > 0:
            self.bar.update(delta)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None and self.complete:
            self.to(self.bar.total)
        self.bar.close()


_FRACTION = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"


def _progress_of(func: Any, progress: Callable[[float], None]) -> dict[str, Any]:
    """``{"progress": progress}`` if ``func`` takes it (label_graph gains it in labeling.py)."""
    return {"progress": progress} if "progress" in inspect.signature(func).parameters else {}


# --------------------------------------------------------------------------- commands
def _cmd_demo(args: argparse.Namespace) -> int:
    output = None if args.no_figure else args.output
    if output is not None:
        _check_dir(output, "--output")
        _check_outputs([(output, "the demo figure")], [], args.overwrite)
    res = run_demo(
        scenario=args.scenario,
        size=args.size,
        n_train=args.n_train,
        n_test=args.n_test,
        noise=args.noise,
        rho=args.rho,
        T=args.T,
        krylov_dim=args.krylov_dim,
        step_size=args.step_size,
        max_iter=args.max_iter,
        random_state=args.seed,
        output=output,
        verbose=not args.quiet,
    )
    if args.quiet:
        print(format_results(res["results"]))
    return 0


def _prototypes(text: str, n_channels: int) -> np.ndarray:
    try:
        p = np.array([[float(v) for v in row.split(",")] for row in text.split(";")])
    except ValueError:
        raise ValueError(
            "--prototypes must look like '0,0,0;1,1,1' (labels separated by ';', the "
            f"values of a label by ','), got {text!r}"
        ) from None
    if p.shape[1] != n_channels or not np.all(np.isfinite(p)):
        raise ValueError(
            f"--prototypes need {n_channels} finite value(s) per label (the image's "
            f"channels), got {p.shape[1]}"
        )
    return p


def _cmd_label(args: argparse.Namespace) -> int:
    stem = os.path.splitext(args.output or args.image)[0] + ("" if args.output else "-labels")
    _check_dir(stem, "--output")
    inputs = [args.image] + ([args.model] if args.model else [])
    _check_outputs(
        [(stem + ".png", args.image), (stem + ".npy", args.image)], inputs, args.overwrite
    )
    if args.model:
        clash = [k for k, v in _UNIFORM_ONLY.items() if getattr(args, k) != v]
        if clash:
            raise ValueError(
                f"--{clash[0].replace('_', '-')} cannot be used with --model (a fitted model "
                "has its own prototypes, rho, T and radius)"
            )
        model = load(args.model).set_params(dtype=args.dtype)
    img = io.read_image(args.image, alpha=args.alpha, max_pixels=args.max_pixels)
    if args.model:
        with _Progress(args, "label", 1.0, bar_format=_FRACTION) as bar:
            labels = model.predict([img], progress=bar.to)[0]
        _write(stem, labels, model, model.prototypes_, args)
        return 0
    pixels = img.reshape(img.shape[0] * img.shape[1], -1)
    if args.prototypes:
        protos = _prototypes(args.prototypes, pixels.shape[1])
    else:
        n = check_scalar(
            args.n_labels, "--n-labels", Integral, min_val=1, max_val=min(len(pixels), MAX_LABELS)
        )
        sample = pixels[:: max(1, len(pixels) // 20000)]
        protos = KMeans(n_clusters=n, n_init=3, random_state=0).fit(sample).cluster_centers_
    with _Progress(args, "label", 1.0, bar_format=_FRACTION) as bar:
        res = label_graph(
            GridGraph(img.shape[:2], radius=args.radius),
            pixels,
            protos,
            rho=args.rho,
            T=args.T,
            dtype=args.dtype,
            **_progress_of(label_graph, bar.to),
        )
    _write(stem, res.labels.reshape(img.shape[:2]), None, protos, args)
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    if len(args.images) != len(args.labels):
        raise ValueError(
            f"--images and --labels must pair up: got {len(args.images)} images and "
            f"{len(args.labels)} label images"
        )
    _check_dir(args.output, "--output")
    _check_outputs([(args.output, "the model")], args.images + args.labels, args.overwrite)
    images = [io.read_image(p, alpha=args.alpha, max_pixels=args.max_pixels) for p in args.images]
    labels = io.read_label_images(args.labels, max_pixels=args.max_pixels)
    params = dict(
        rho=args.rho,
        T=args.T,
        n_layers=args.n_layers,
        predictor=args.predictor,
        radius=args.radius,
        features=args.features,
        n_prototypes=args.n_prototypes,
        max_iter=args.max_iter,
        random_state=args.seed,
        n_jobs=args.n_jobs,
    )
    with _Progress(args, "fit", args.max_iter, complete=False, unit="it") as bar:

        def callback(iteration: int, record: dict[str, Any]) -> None:
            bar.to(iteration)
            shown = {"loss": f"{record['loss']:.4g}"}
            for key, name in (("error", "train"), ("val_error", "val")):
                if key in record:  # no "val_error" without validation images
                    shown[name] = f"{record[key]:.2%}"
            bar.bar.set_postfix(shown)

        model = ImageLabeler(**params, callback=callback)
        model.fit(images, labels)
    model.set_params(callback=None)  # a function is not part of the model file
    with io.atomic_path(args.output) as tmp:
        save(model, tmp)
    print(
        f"fitted in {model.n_iter_} iterations (best at {model.best_iter_}); model written "
        f"to {args.output}"
    )
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    stems = [
        os.path.join(args.output_dir, os.path.splitext(os.path.basename(p))[0] + "-labels")
        if args.output_dir
        else os.path.splitext(p)[0] + "-labels"
        for p in args.images
    ]
    outputs = [
        (stem + ext, repr(path))
        for stem, path in zip(stems, args.images, strict=True)
        for ext in (".png", ".npy")
    ]
    _check_outputs(outputs, [*args.images, args.model], args.overwrite)
    model = load(args.model).set_params(dtype=args.dtype)
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
    with _Progress(args, "predict", len(args.images), bar_format=_FRACTION) as bar:
        for k, (path, stem) in enumerate(zip(args.images, stems, strict=True)):
            img = io.read_image(path, alpha=args.alpha, max_pixels=args.max_pixels)
            labels = model.predict([img], progress=lambda f, k=k: bar.to(k + f))[0]
            bar.to(k + 1)
            _write(stem, labels, model, model.prototypes_, args)
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    for kind, reg in registry.all_registries().items():
        print(f"{kind}:")
        entries = reg.info()
        if not entries:
            print("  (none)")
        for e in entries:
            print(f"  {e['name']:<24} {e['object']:<48} [{e['origin']}]")
    return 0


# --------------------------------------------------------------------------- the parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``assignflow`` command.

    Returns
    -------
    argparse.ArgumentParser
        With one sub-parser per command.
    """
    common = _Parser(add_help=False)
    common.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (never inputs)"
    )
    common.add_argument("--quiet", action="store_true", help="no progress output")
    images = _Parser(add_help=False)
    images.add_argument(
        "--alpha",
        choices=("error", "drop", "keep"),
        default="error",
        help="alpha channels: 'error' drops a fully opaque one and refuses others, 'drop' "
        "discards it, 'keep' keeps it as a channel",
    )
    images.add_argument(
        "--max-pixels",
        type=_COUNT,
        default=io.MAX_PIXELS,
        help="refuse images with more pixels (checked before decoding)",
    )
    dtype = _Parser(add_help=False)
    dtype.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default=_LABEL_GRAPH["dtype"].default,
        help="working precision of the flow; float32 halves the memory for very large images",
    )

    p = _Parser(
        prog="assignflow",
        description="Assignment flows for image and graph labeling.",
        formatter_class=_Formatter,
    )
    p.add_argument("--version", action="version", version=f"assignflow {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, parents: Sequence[argparse.ArgumentParser]):
        return sub.add_parser(
            name, help=help, description=help, parents=parents, formatter_class=_Formatter
        )

    d = command("demo", "fit and label synthetic Voronoi scenes (the main job)", [common])
    d.add_argument("--scenario", choices=sorted(DEMO_NOISE), default="lines", help="the scenes")
    d.add_argument("--size", type=int, default=64, help="scene side in pixels")
    d.add_argument("--n-train", type=int, default=5, help="training scenes (with validation)")
    d.add_argument("--n-test", type=int, default=3, help="unseen test scenes")
    d.add_argument(
        "--noise",
        type=float,
        default=None,
        help="noise standard deviation (default: "
        + ", ".join(f"{k} {v}" for k, v in DEMO_NOISE.items())
        + ")",
    )
    d.add_argument("--rho", type=_RHO, default=_LABELER["rho"].default, help=_RHO_HELP)
    d.add_argument("--T", type=_T_OR_AUTO, default=_LABELER["T"].default, help=_T_HELP)
    d.add_argument("--max-iter", type=int, default=30, help="training iterations")
    d.add_argument("--krylov-dim", type=int, default=10, help="Krylov dimension of the LAF")
    d.add_argument("--step-size", type=float, default=0.5, help="geometric Euler step")
    d.add_argument("--seed", type=int, default=0, help="random seed")
    d.add_argument("--output", default="assignflow-demo.png", help="figure path (PNG)")
    d.add_argument("--no-figure", action="store_true", help="do not write the figure")
    d.set_defaults(func=_cmd_demo)

    lb = command("label", "label one image (PNG, JPEG, TIFF, ... or .npy)", [common, images, dtype])
    lb.add_argument("image", help="the image file")
    lb.add_argument("--model", help="a model saved by 'assignflow fit' (else uniform weights)")
    lb.add_argument("--prototypes", help="label colours, e.g. '0,0,0;1,1,1' (else k-means)")
    lb.add_argument(
        "--n-labels", type=int, default=_UNIFORM_ONLY["n_labels"], help="k-means labels"
    )
    lb.add_argument("--rho", type=_RHO, default=_UNIFORM_ONLY["rho"], help=_RHO_HELP)
    lb.add_argument("--T", type=_T_OR_AUTO, default=_UNIFORM_ONLY["T"], help=_T_HELP)
    lb.add_argument(
        "--radius", type=int, default=_UNIFORM_ONLY["radius"], help="neighbourhood radius"
    )
    lb.add_argument(
        "--output",
        help="output stem (an extension is dropped): writes STEM.png and STEM.npy "
        "(default: IMAGE-labels)",
    )
    lb.set_defaults(func=_cmd_label)

    ft = command("fit", "fit an ImageLabeler on images and label images", [common, images])
    ft.add_argument("--images", nargs="+", required=True, help="training images")
    ft.add_argument(
        "--labels",
        nargs="+",
        required=True,
        help="label images in the same order (.npy, grey/palette ids, or colours as classes)",
    )
    ft.add_argument("--output", required=True, help="the model file to write")
    ft.add_argument("--rho", type=_RHO, default=_LABELER["rho"].default, help=_RHO_HELP)
    ft.add_argument("--T", type=_T_OR_AUTO, default=_LABELER["T"].default, help=_T_HELP)
    ft.add_argument(
        "--n-layers", type=int, default=_LABELER["n_layers"].default, help="layers of the flow"
    )
    ft.add_argument(
        "--predictor",
        default=_LABELER["predictor"].default,
        help="the weight predictor: 'edge' or 'prototype' (or a registered subclass of "
        "theirs, see 'assignflow plugins')",
    )
    ft.add_argument(
        "--radius",
        type=_RADIUS_OR_AUTO,
        default=_LABELER["radius"].default,
        help="neighbourhood radius, 0 to 16 or 'auto' (1 or 2, chosen on the training images)",
    )
    ft.add_argument(
        "--features",
        choices=("window", "assignment"),
        default=_LABELER["features"].default,
        help="input of the prototype predictor (--predictor prototype)",
    )
    ft.add_argument(
        "--n-prototypes",
        type=int,
        default=_LABELER["n_prototypes"].default,
        help="prototypes of the prototype predictor",
    )
    ft.add_argument(
        "--max-iter", type=int, default=_LABELER["max_iter"].default, help="training iterations"
    )
    ft.add_argument("--n-jobs", type=int, default=None, help="parallel jobs (joblib)")
    ft.add_argument("--seed", type=int, default=0, help="random seed")
    ft.set_defaults(func=_cmd_fit)

    pr = command("predict", "label images with a saved model", [common, images, dtype])
    pr.add_argument("--model", required=True, help="a model saved by 'assignflow fit'")
    pr.add_argument("images", nargs="+", help="the image files")
    pr.add_argument(
        "--output-dir", help="where to write IMAGE-labels.png/.npy (default: beside the images)"
    )
    pr.set_defaults(func=_cmd_predict)

    pl = command("plugins", "list registered components and their origin", [])
    pl.set_defaults(func=_cmd_plugins)
    return p


# --------------------------------------------------------------------------- main
def _one_line(text: Any) -> str:
    return " ".join(str(text).split()).rstrip(".")


@contextlib.contextmanager
def _one_line_warnings(command: str) -> Iterator[None]:
    """Warnings as ``assignflow <command>: warning: <message> (<category>)``, one line.

    No source lines; the category is omitted for a plain ``UserWarning``.

    Only ``warnings.formatwarning`` is replaced (and restored): the standard
    ``showwarning`` writes its result to stderr, and code that records warnings
    (``warnings.catch_warnings(record=True)``, ``pytest.warns``) still receives them.
    On a terminal the line first clears a progress bar drawn on it.
    """

    def fmt(message, category, filename, lineno, line=None) -> str:
        isatty = getattr(sys.stderr, "isatty", None)
        clear = "\r\x1b[K" if isatty and isatty() else ""
        kind = "" if category is UserWarning else f" ({category.__name__})"
        return f"{clear}assignflow {command}: warning: {_one_line(message)}{kind}\n"

    saved = warnings.formatwarning
    warnings.formatwarning = fmt
    try:
        yield
    finally:
        warnings.formatwarning = saved


def _failure(exc: BaseException, command: str) -> tuple[str, str]:
    """The message and the hint of the error line for ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "the files written so far are complete; none is partial"
    if isinstance(exc, MemoryError):
        return f"out of memory ({_one_line(exc) or 'MemoryError'})", (
            "try --dtype float32, a smaller image or fewer labels"
        )
    if isinstance(exc, OSError):
        where = f": {exc.filename!r}" if getattr(exc, "filename", None) else ""
        return f"{exc.strerror or _one_line(exc)}{where}", "check the path and its permissions"
    if isinstance(exc, (ValueError, TypeError)):
        return _one_line(exc), f"see 'assignflow {command} --help'"
    if isinstance(exc, (ArithmeticError, RuntimeError, Warning)):
        return _one_line(exc), (
            "the flow left the floating-point range or did not converge; try a smaller --T "
            "or a larger --rho"
        )
    return f"unexpected {type(exc).__name__}: {_one_line(exc)}", (
        "this is a bug in assignflow, please report it"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``assignflow`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (``sys.argv[1:]`` if omitted).

    Returns
    -------
    int
        The exit code: 0 on success, 2 on an error, 130 when interrupted, 141 when
        stdout was closed by its reader. Argument errors exit through
        ``SystemExit(2)`` after one error line.
    """
    args = build_parser().parse_args(argv)
    with _one_line_warnings(args.command):
        try:
            return int(args.func(args))
        except BrokenPipeError:  # the reader of stdout went away (``| head``): stop quietly
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except (KeyboardInterrupt, Exception) as exc:
            message, hint = _failure(exc, args.command)
            print(f"assignflow {args.command}: error: {message}; {hint}", file=sys.stderr)
            return 130 if isinstance(exc, KeyboardInterrupt) else 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
