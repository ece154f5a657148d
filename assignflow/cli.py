"""The ``assignflow`` command line.

``assignflow demo``
    The main job on built-in synthetic data: noisy random Voronoi scenes (the
    paper's Sect. 4.1) for training, validation and unseen testing; the weight
    predictor is fitted, and the unseen scenes are labeled by pixelwise
    rounding, the LAF with uniform weights (exponential Krylov), the nonlinear
    assignment flow (geometric Euler) and the LAF with learned weights; a table
    of the percentage of wrongly labeled pixels is printed and a PNG written.
``assignflow label IMAGE``
    Labels one image (PNG or ``.npy``) with the LAF and uniform weights, or with
    the predicted weights of a fitted model; labels are written as PNG (coloured
    with the prototypes) and ``.npy``.
``assignflow fit``
    Fits an :class:`~assignflow.ImageLabeler` on the user's images and label
    images and saves it (``assignflow.persistence``; no pickle).
``assignflow predict``
    Labels images with a saved model.
``assignflow plugins``
    Lists every registered graph, integrator, loss and gradient estimator and
    where it came from (built in, or the installed distribution).

Also available as ``python -m assignflow``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["main", "run_demo"]


DEMO_DEFAULTS = {
    "lines": {"noise": 0.3, "rho": 0.1, "T": 1.0},
    "colors": {"noise": 0.5, "rho": 0.3, "T": 3.0},
}


def run_demo(
    *,
    scenario: str = "lines",
    size: int = 64,
    n_train: int = 5,
    n_test: int = 3,
    noise: float | None = None,
    rho: float | None = None,
    T: float | None = None,
    krylov_dim: int = 10,
    step_size: float = 0.5,
    max_iter: int = 30,
    random_state: int = 0,
    output: str | None = "assignflow-demo.png",
    verbose: bool = True,
) -> dict[str, Any]:
    """The main job: fit on synthetic Voronoi scenes, label unseen ones four ways.

    Generates ``n_train`` training scenes (one of them held out for validation by
    the estimator) and ``n_test`` unseen test scenes of the paper's Sect. 4.1, fits
    an :class:`~assignflow.ImageLabeler`, and labels the test scenes by pixelwise
    rounding, the LAF with uniform weights (exponential Krylov), the nonlinear
    assignment flow (geometric Euler) and the LAF with learned (predicted)
    weights. Returns the mean error and time of every method and the figure path.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from . import datasets
    from .estimators import ImageLabeler
    from .flows import AssignmentFlow, LinearizedAssignmentFlow
    from .graphs import GridGraph
    from .integrators import ExponentialKrylov, GeometricEuler
    from .similarity import SimilarityOperator, distance_matrix
    from .weights import Weights

    def say(msg: str) -> None:
        if verbose:
            print(msg, flush=True)

    if scenario not in DEMO_DEFAULTS:
        raise ValueError(f"scenario must be one of {sorted(DEMO_DEFAULTS)}, got {scenario!r}")
    # check everything before the (slow) fit, with the names of the command-line options
    for name, value, low in (
        ("size", size, 2),
        ("n_train", n_train, 1),
        ("n_test", n_test, 1),
        ("krylov_dim", krylov_dim, 1),
        ("max_iter", max_iter, 1),
        ("random_state", random_state, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    for name, value, strict in (("noise", noise, False), ("rho", rho, True), ("T", T, True)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if not np.isfinite(value) or value < 0 or (strict and value == 0):
            raise ValueError(
                f"{name} must be a finite number {'> 0' if strict else '>= 0'}, got {value}"
            )
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float, np.number)):
        raise TypeError(f"step_size must be a number, got {step_size!r}")
    if not (np.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be a finite number > 0, got {step_size}")
    if output:
        _check_output_dir(output, "output")
    d = DEMO_DEFAULTS[scenario]
    noise = d["noise"] if noise is None else noise
    rho = d["rho"] if rho is None else rho
    T = d["T"] if T is None else T
    shape = (size, size)
    X, Y = datasets.make_voronoi(scenario, n_train, shape, noise, random_state=random_state)
    Xt, Yt = datasets.make_voronoi(
        scenario, n_test, shape, noise, random_state=random_state + 10_000
    )
    protos = datasets.voronoi_prototypes(scenario)
    say(
        f"assignflow demo: {scenario!r} Voronoi scenes {size}x{size}, {len(protos)} labels, "
        f"noise {noise:g}; {n_train} training scenes, {n_test} unseen test scenes; "
        f"rho {rho:g}, T {T:g}"
    )

    say(f"fitting the weight predictor (at most {max_iter} iterations) ...")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = ImageLabeler(
            prototypes=protos,
            rho=rho,
            T=T,
            n_prototypes=20,
            max_iter=max_iter,
            random_state=random_state,
        ).fit(X, Y)
    t_fit = time.perf_counter() - t0
    say(
        f"  {model.n_iter_} iterations in {t_fit:.1f} s (best validation error at iteration "
        f"{model.best_iter_})"
    )

    methods: dict[str, list] = {}

    def record(name: str, labels: np.ndarray, seconds: float, truth: np.ndarray) -> None:
        m = methods.setdefault(name, [[], [], []])
        m[0].append(float(np.mean(labels.ravel() != truth.ravel())))
        m[1].append(seconds)
        m[2].append(labels.reshape(shape))

    for x, y in zip(Xt, Yt, strict=True):
        D = distance_matrix(x, protos)
        sim = SimilarityOperator(Weights.uniform(GridGraph(shape)), D, rho=rho)
        t0 = time.perf_counter()
        record("pixelwise rounding", D.argmin(axis=1), time.perf_counter() - t0, y)
        t0 = time.perf_counter()
        laf = LinearizedAssignmentFlow(sim, T=T).solve(ExponentialKrylov(krylov_dim=krylov_dim))
        record("LAF, uniform weights", laf.labels, time.perf_counter() - t0, y)
        t0 = time.perf_counter()
        nl = AssignmentFlow(sim).solve(GeometricEuler(step_size=step_size))
        record("assignment flow, uniform weights", nl.labels, time.perf_counter() - t0, y)
        t0 = time.perf_counter()
        record("LAF, learned weights", model.predict([x])[0], time.perf_counter() - t0, y)

    say(f"\n  {'method (unseen test scenes)':<34} {'wrong':>8}   {'time/scene':>10}")
    results = {}
    for name, (errs, secs, labs) in methods.items():
        results[name] = {
            "error": float(np.mean(errs)),
            "seconds": float(np.mean(secs)),
            "labels": labs,
        }
        say(f"  {name:<34} {100 * np.mean(errs):6.2f} %   {np.mean(secs):8.3f} s")

    path = None
    if output:
        from .plotting import plot_labelings

        panels = {"ground truth": Yt[0]} | {k: v["labels"][0] for k, v in results.items()}
        errors = {
            k: float(np.mean(v["labels"][0].ravel() != Yt[0].ravel())) for k, v in results.items()
        }
        plot_labelings(
            Xt[0],
            panels,
            protos,
            errors=errors,
            path=output,
            title=f"assignflow demo — {scenario}, unseen scene, noise {noise:g}",
        )
        path = output
        say(f"figure written to {output}")
    return {"results": results, "figure": path, "model": model}


def _cmd_demo(args: argparse.Namespace) -> int:
    run_demo(
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
        output=None if args.no_figure else args.output,
    )
    return 0


# --------------------------------------------------------------------------- image I/O
def _existing(path: str, what: str) -> bool:
    """Check that ``path`` exists; whether it is a ``.npy`` file."""
    import os

    if not os.path.exists(path):
        raise ValueError(f"{what} file {path!r} does not exist")
    return path.lower().endswith(".npy")


def _load_npy(path: str) -> np.ndarray:
    """``np.load`` without pickles (a file can never run code), with a clear error."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot read {path!r} as a numpy array ({exc})") from None


def read_image(path: str) -> np.ndarray:
    """An image as floats: PNG/JPEG (scaled to [0, 1]) or ``.npy``; grey images are (h, w)."""
    if _existing(path, "image"):
        a = _load_npy(path)
        if a.dtype.kind not in "biuf" or a.ndim not in (2, 3):
            raise ValueError(f"{path!r} must hold a numeric (h, w) or (h, w, c) array")
        if a.size == 0:
            raise ValueError(f"{path!r} holds an empty image of shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{path!r} contains NaN or inf values")
        return a.astype(np.float64)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else im.mode))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read {path!r} as an image ({exc})") from None
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]  # alpha is not data
    scale = 65535.0 if a.dtype == np.uint16 else 255.0 if a.dtype == np.uint8 else 1.0
    return a.astype(np.float64) / scale


def read_label_image(path: str) -> np.ndarray:
    """Integer labels (h, w): a ``.npy`` of ints, a grey PNG of label ids, or a colour PNG
    whose distinct colours are the classes (numbered in sorted colour order)."""
    if _existing(path, "label image"):
        a = _load_npy(path)
        if a.ndim != 2 or a.dtype.kind not in "biu":
            raise ValueError(f"{path!r} must hold an integer (h, w) label array")
        return a.astype(np.int64)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            a = np.asarray(im)
    except (UnidentifiedImageError, OSError, FileNotFoundError) as exc:
        raise ValueError(f"cannot read label image {path!r} ({exc})") from None
    if a.ndim == 2:
        return a.astype(np.int64)
    flat = a.reshape(-1, a.shape[2])
    _, inv = np.unique(flat, axis=0, return_inverse=True)
    return inv.reshape(a.shape[:2]).astype(np.int64)


def write_labels(
    path_stem: str, labels: np.ndarray, prototypes: np.ndarray, index: np.ndarray | None = None
) -> list[str]:
    """Write ``STEM.npy`` (the labels) and ``STEM.png`` coloured by the prototypes.

    ``index`` gives the prototype row of every pixel when the labels are class
    values rather than indices.
    """
    from PIL import Image

    from .plotting import label_image_to_rgb

    _check_output_dir(path_stem, "path_stem")
    rgb = label_image_to_rgb(labels if index is None else index, prototypes)
    Image.fromarray(np.round(255 * rgb).astype(np.uint8)).save(path_stem + ".png")
    np.save(path_stem + ".npy", np.asarray(labels))
    return [path_stem + ".png", path_stem + ".npy"]


def _check_output_dir(path: str, name: str) -> None:
    """Fail early (before any work) when the directory of an output file does not exist."""
    import os

    d = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(d):
        raise ValueError(f"{name}: the output directory {d!r} does not exist")


def _stem(output: str | None, image_path: str, suffix: str = "-labels") -> str:
    import os

    if output:
        return os.path.splitext(output)[0]
    return os.path.splitext(image_path)[0] + suffix


def _cmd_label(args: argparse.Namespace) -> int:
    from .flows import LinearizedAssignmentFlow
    from .graphs import GridGraph
    from .integrators import ExponentialKrylov
    from .similarity import SimilarityOperator, distance_matrix
    from .weights import Weights

    stem = _stem(args.output, args.image)
    _check_output_dir(stem, "--output")
    img = read_image(args.image)
    if args.model:
        from .persistence import load

        model = load(args.model)
        model.set_params(dtype=args.dtype)
        labels = model.predict([img])[0]
        protos = model.prototypes_
        idx = np.searchsorted(model.classes_, labels)
    else:
        c = 1 if img.ndim == 2 else img.shape[2]
        if args.prototypes:
            try:
                protos = np.array(
                    [[float(v) for v in p.split(",")] for p in args.prototypes.split(";")]
                )
            except ValueError:
                raise ValueError(
                    "--prototypes must look like '0,0,0;1,1,1' (labels separated by ';')"
                ) from None
            if protos.shape[1] != c:
                raise ValueError(f"--prototypes need {c} value(s) per label, got {protos.shape[1]}")
        else:
            from sklearn.cluster import KMeans

            pix = img.reshape(-1, c)
            if not 1 <= args.n_labels <= len(pix):
                raise ValueError(
                    f"--n-labels must be between 1 and the number of pixels ({len(pix)}), "
                    f"got {args.n_labels}"
                )
            km = KMeans(n_clusters=args.n_labels, n_init=3, random_state=0).fit(
                pix[:: max(1, len(pix) // 20000)]
            )
            protos = km.cluster_centers_
        D = distance_matrix(img, protos)
        g = GridGraph(img.shape[:2], radius=args.radius)
        sim = SimilarityOperator(Weights.uniform(g), D, rho=args.rho, dtype=args.dtype)
        res = LinearizedAssignmentFlow(sim, T=args.T).solve(ExponentialKrylov(krylov_dim=10))
        labels = idx = res.labels.reshape(img.shape[:2])
    for f in write_labels(stem, labels, protos, idx):
        print(f"wrote {f}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from .estimators import ImageLabeler
    from .persistence import save

    if len(args.images) != len(args.labels):
        raise ValueError(
            f"--images and --labels must pair up: got {len(args.images)} images and "
            f"{len(args.labels)} label images"
        )
    _check_output_dir(args.output, "--output")
    imgs = [read_image(p) for p in args.images]
    labs = [read_label_image(p) for p in args.labels]
    model = ImageLabeler(
        rho=args.rho,
        T=args.T,
        radius=args.radius,
        n_prototypes=args.n_prototypes,
        max_iter=args.max_iter,
        random_state=args.seed,
        verbose=1,
        n_jobs=args.n_jobs,
    ).fit(imgs, labs)
    save(model, args.output)
    print(
        f"fitted in {model.n_iter_} iterations (best {model.best_iter_}); model written to "
        f"{args.output}"
    )
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import os

    from .persistence import load

    model = load(args.model)
    for path in args.images:
        labels = model.predict([read_image(path)])[0]
        stem = (
            os.path.join(args.output_dir, os.path.splitext(os.path.basename(path))[0] + "-labels")
            if args.output_dir
            else _stem(None, path)
        )
        if args.output_dir:
            try:
                os.makedirs(args.output_dir, exist_ok=True)
            except OSError as exc:
                raise ValueError(
                    f"--output-dir: cannot create {args.output_dir!r} ({exc.strerror})"
                ) from None
        idx = np.searchsorted(model.classes_, labels)
        for f in write_labels(stem, labels, model.prototypes_, idx):
            print(f"wrote {f}")
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    # importing the package registers the built-ins
    import assignflow  # noqa: F401

    from . import registry

    for kind, reg in registry.all_registries().items():
        print(f"{kind}:")
        entries = reg.info()
        if not entries:
            print("  (none)")
        for e in entries:
            print(f"  {e['name']:<24} {e['object']:<48} [{e['origin']}]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    p = argparse.ArgumentParser(
        prog="assignflow",
        description="Assignment flows for image and graph labeling.",
    )
    p.add_argument("--version", action="version", version=f"assignflow {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="fit and label synthetic Voronoi scenes (the main job)")
    d.add_argument("--scenario", choices=("lines", "colors"), default="lines")
    d.add_argument("--size", type=int, default=64, help="scene side in pixels (default 64)")
    d.add_argument("--n-train", type=int, default=5, help="training scenes (default 5)")
    d.add_argument("--n-test", type=int, default=3, help="unseen test scenes (default 3)")
    d.add_argument("--noise", type=float, default=None, help="noise std (lines 0.3, colors 0.5)")
    d.add_argument("--rho", type=float, default=None, help="distance scale (lines 0.1, colors 0.3)")
    d.add_argument("--T", type=float, default=None, help="LAF horizon (lines 1, colors 3)")
    d.add_argument("--max-iter", type=int, default=30, help="training iterations (default 30)")
    d.add_argument("--krylov-dim", type=int, default=10, help="Krylov dimension m (default 10)")
    d.add_argument("--step-size", type=float, default=0.5, help="geometric Euler step (0.5)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    d.add_argument("--output", default="assignflow-demo.png", help="figure path (PNG)")
    d.add_argument("--no-figure", action="store_true", help="do not write the figure")
    d.set_defaults(func=_cmd_demo)

    lb = sub.add_parser("label", help="label one image (PNG or .npy)")
    lb.add_argument("image")
    lb.add_argument("--model", help="a model saved by 'assignflow fit' (else uniform weights)")
    lb.add_argument("--prototypes", help="label colours, e.g. '0,0,0;1,1,1' (else k-means)")
    lb.add_argument("--n-labels", type=int, default=8, help="k-means labels (default 8)")
    lb.add_argument("--rho", type=float, default=0.3)
    lb.add_argument("--T", type=float, default=3.0)
    lb.add_argument("--radius", type=int, default=1)
    lb.add_argument("--output", help="output stem (default IMAGE-labels); writes .png and .npy")
    lb.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="working precision; float32 halves the memory for very large images",
    )
    lb.set_defaults(func=_cmd_label)

    ft = sub.add_parser("fit", help="fit an ImageLabeler on images and label images")
    ft.add_argument("--images", nargs="+", required=True, help="training images (PNG or .npy)")
    ft.add_argument("--labels", nargs="+", required=True, help="label images, same order")
    ft.add_argument("--output", required=True, help="model file to write")
    ft.add_argument("--rho", type=float, default=0.1)
    ft.add_argument("--T", type=float, default=3.0)
    ft.add_argument("--radius", type=int, default=1)
    ft.add_argument("--n-prototypes", type=int, default=50)
    ft.add_argument("--max-iter", type=int, default=100)
    ft.add_argument("--n-jobs", type=int, default=None)
    ft.add_argument("--seed", type=int, default=0)
    ft.set_defaults(func=_cmd_fit)

    pr = sub.add_parser("predict", help="label images with a saved model")
    pr.add_argument("--model", required=True)
    pr.add_argument("images", nargs="+")
    pr.add_argument("--output-dir", help="where to write the labels (default: beside the images)")
    pr.set_defaults(func=_cmd_predict)

    pl = sub.add_parser("plugins", help="list registered components and their origin")
    pl.set_defaults(func=_cmd_plugins)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``assignflow`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except (ValueError, TypeError) as exc:
        print(f"assignflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # missing model file, unwritable output, ...
        where = f": {exc.filename!r}" if getattr(exc, "filename", None) else ""
        print(f"assignflow {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
