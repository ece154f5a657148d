r"""Regenerate the figures of the paper's experiments (docs/math.md §7) with assignflow.

One function per figure; each writes one PNG, prints a one-line summary of the
numbers it shows and returns the path it wrote.

* ``fig1`` — the two scenarios ("lines", "colors" at ≈ 50 % rounding noise): noisy
  image, ground truth, LAF with uniform weights, pixelwise rounding.
* ``fig2`` — % wrongly labeled pixels per iteration of Riemannian gradient descent
  on the weights of one image, for the rank-1 closed-form gradient and PyTorch
  autodiff through explicit Euler and through the Krylov integrator; noisy and
  noise-free data.
* ``fig3`` — per-pixel cosine similarity between the rank-1 gradient and the
  reference (``AdjointQuadrature``), and the map of per-pixel gradient norms.
* ``fig4`` — gradient relative error vs Krylov dimension and vs rank; training
  curves for a few time horizons ``T``.
* ``fig5`` — predictor training curves, estimated vs predicted weight patches,
  labelings of unseen noisy images (``ImageLabeler``) vs uniform weights.

Usage::

    python benchmarks/figures.py                 # all figures, ~10 min on 2 cores
    python benchmarks/figures.py --quick         # small sizes, ~1 min
    python benchmarks/figures.py --only fig3 fig4 --out /tmp/figs

Fig. 2 needs PyTorch (``benchmarks/autodiff_torch.py``).

The figures are built by ``make_fig1`` … ``make_fig5``; they take the sizes as
keyword arguments (defaults: the full sizes of this script, ``QUICK`` holds the
``--quick`` ones) and return the figure and the one-line summary, so that the
documentation gallery (``docs/gallery/plot_paper_fig*.py``) draws the same
figures at smaller sizes with ``from benchmarks.figures import make_fig1``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import assignflow as af
from assignflow.plotting import label_image_to_rgb

# per-scenario LAF parameters (as `assignflow demo`)
PARAMS = {
    "lines": {"noise": 0.3, "rho": 0.1, "T": 1.0},
    "colors": {"noise": None, "rho": 0.3, "T": 3.0},  # noise: ≈ 50 % rounding error
}
SEED = 0


# --------------------------------------------------------------------------- helpers
def _noise(scenario: str) -> float:
    n = PARAMS[scenario]["noise"]
    return af.datasets.noise_for_rounding_error("colors") if n is None else n


def _scene(scenario: str, size: int, noise: float, seed: int = SEED):
    """One noisy scene, its ground truth, the noise-free image and the prototypes."""
    X, Y, P = af.datasets.make_voronoi(
        scenario, 1, (size, size), noise, random_state=seed, return_prototypes=True
    )
    clean = P[Y[0]] if scenario == "colors" else P[Y[0]][..., 0]
    return X[0], Y[0], clean, P


def _flow(image, protos, rho, T, weights=None):
    h, w = image.shape[:2]
    g = af.GridGraph((h, w), radius=1)
    om = af.Weights.uniform(g) if weights is None else weights
    D = af.distance_matrix(image, protos)
    return af.LinearizedAssignmentFlow(af.SimilarityOperator(om, D, rho=rho), T=T)


def _rgb(image):
    img = np.clip(np.asarray(image, dtype=float), 0, 1)
    return img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=-1)


def _err(labels, truth) -> float:
    return float(np.mean(np.asarray(labels).ravel() != np.asarray(truth).ravel()))


def _save(fig, out: Path, name: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _per_pixel_cosine(graph, g1: np.ndarray, g2: np.ndarray, rel_floor: float = 1e-6):
    """Cosine of the two gradients restricted to each neighbourhood N_i.

    Pixels where the reference gradient is (numerically) zero — norm below
    ``rel_floor`` times the largest one — have no direction and are excluded (NaN).
    """
    starts = graph.indptr[:-1]
    dot = np.add.reduceat(g1 * g2, starts)
    n1 = np.sqrt(np.add.reduceat(g1 * g1, starts))
    n2 = np.sqrt(np.add.reduceat(g2 * g2, starts))
    cos = np.full(graph.n_nodes, np.nan)
    ok = (n2 > rel_floor * n2.max()) & (n1 > 0)
    cos[ok] = dot[ok] / (n1[ok] * n2[ok])
    return cos


# --------------------------------------------------------------------------- fig 1
def make_fig1(size: int = 128):
    """The two scenarios, uniform-weight LAF and pixelwise rounding.

    Returns the figure and a one-line summary of its numbers.
    """
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.8))
    parts = []
    for row, scen in enumerate(("lines", "colors")):
        p = PARAMS[scen]
        noise = _noise(scen)
        x, y, _, P = _scene(scen, size, noise)
        flow = _flow(x, P, p["rho"], p["T"])
        laf = flow.solve(af.ExponentialKrylov(krylov_dim=10)).labels.reshape(y.shape)
        rnd = flow.similarity.distances.argmin(axis=1).reshape(y.shape)
        e_laf, e_rnd = _err(laf, y), _err(rnd, y)
        panels = [
            (_rgb(x), f"{scen}: noisy input (σ = {noise:.3g})"),
            (label_image_to_rgb(y, P), "ground truth"),
            (label_image_to_rgb(laf, P), f"LAF, uniform weights\n{100 * e_laf:.1f} % wrong"),
            (label_image_to_rgb(rnd, P), f"pixelwise rounding\n{100 * e_rnd:.1f} % wrong"),
        ]
        for ax, (im, t) in zip(axes[row], panels, strict=True):
            ax.imshow(im, interpolation="nearest")
            ax.set_title(t, fontsize=10)
            ax.set_axis_off()
        parts.append(
            f"{scen} (σ={noise:.3g}): LAF {100 * e_laf:.1f} %, rounding {100 * e_rnd:.1f} %"
        )
    fig.suptitle(f"Fig. 1 — scenarios ({size}×{size}), % wrongly labeled pixels")
    fig.tight_layout()
    return fig, "fig1: " + "; ".join(parts)


# --------------------------------------------------------------------------- fig 2
def _autodiff_torch():
    """``benchmarks/autodiff_torch.py``, imported as a script's sibling or as a package module."""
    if __package__:
        from . import autodiff_torch
    else:
        import autodiff_torch
    return autodiff_torch


def torch_available() -> bool:
    """Whether PyTorch imports (the autodiff baselines of Fig. 2 need it)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def fig2_methods(*, autodiff: bool = True, reference: bool = False, ref_nodes: int = 16) -> dict:
    """The gradient estimators compared in Fig. 2, by legend label.

    The rank-1 closed form always; with ``autodiff`` the two PyTorch baselines of
    the paper's Sect. 3.4; with ``reference`` the exact gradient of the LAF
    (``AdjointQuadrature`` with ``ref_nodes`` Gauss–Legendre nodes, no PyTorch needed).
    """
    methods = {"closed form, rank 1": af.ClosedFormLowRank(krylov_dim=10, rank=1)}
    if reference:
        methods["exact (AdjointQuadrature)"] = af.AdjointQuadrature(n_nodes=ref_nodes)
    if autodiff:
        methods["autodiff, explicit Euler (h = 0.1)"] = TorchAutodiff("euler", step_size=0.1)
        methods["autodiff, Krylov (m = 10)"] = TorchAutodiff("krylov", krylov_dim=10)
    return methods


class TorchAutodiff(af.GradientEstimator):
    """Adapter: PyTorch autodiff through explicit Euler or the Krylov integrator.

    The KL loss only (no regulariser); ``V`` is the torch solver's own ``V_T``.
    """

    def __init__(self, solver: str, *, step_size: float = 0.1, krylov_dim: int = 10) -> None:
        self.solver, self.step_size, self.krylov_dim = solver, step_size, krylov_dim

    def _estimate(self, flow, loss, integrator=None, forward=None):
        # its own torch forward solve: the integrator and forward of the library are unused
        at = _autodiff_torch()

        torch = at._require_torch()
        if not isinstance(loss, af.KLLoss):
            raise TypeError("the torch baselines implement the KL loss only")
        sim = flow.similarity
        graph = sim.weights.graph
        h, w = graph.shape
        problem = {
            "shape": (h, w),
            "n_labels": flow.n_labels,
            "rho": float(sim.rho),
            "T": float(flow.T),
            "D": np.asarray(sim.distances),
            "y": np.asarray(loss.labels),
            "patches": graph.values_to_patches(sim.weights.values),
            "mask": graph.valid.reshape(h, w, graph.window_size).astype(np.float64),
            "graph": graph,
        }
        P = at._leaf(problem)
        model = at._LAF(problem, P)
        if self.solver == "euler":
            V = at._euler(model, problem["T"], self.step_size)
        else:
            V = at._krylov(model, problem["T"], self.krylov_dim)
        y = torch.as_tensor(problem["y"], dtype=torch.int64)
        val = at._loss(V, y, problem["n_labels"])
        val.backward()
        grad = np.array(graph.patches_to_values(P.grad.numpy()))
        Vn = V.detach().reshape(-1, problem["n_labels"]).numpy().copy()
        starts = graph.indptr[:-1]
        return af.GradientResult(
            value=float(val.detach()),
            gradient=grad,
            V=Vn,
            data_value=float(val.detach()),
            reg_value=0.0,
            node_norms=np.sqrt(np.add.reduceat(grad * grad, starts)),
        )


def make_fig2(
    size: int = 64, n_iter: int = 15, methods: Mapping[str, af.GradientEstimator] | None = None
):
    """Training curves of the gradients in ``methods``, noisy and noise-free data.

    ``methods`` maps legend labels to estimators, the first one is the baseline of
    the relative loss deviation; default ``fig2_methods()``, the paper's three.
    Returns the figure and a one-line summary of its numbers.
    """
    scen = "colors"
    p = PARAMS[scen]
    noise = _noise(scen)
    methods = fig2_methods() if methods is None else dict(methods)
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    parts = []
    for col, (title, nz) in enumerate((("noisy", noise), ("noise-free", 0.0))):
        x, y, _, P = _scene(scen, size, nz)
        flow = _flow(x, P, p["rho"], p["T"])
        loss = af.KLLoss(labels=y.ravel())
        finals, curves = [], []
        for k, (name, est) in enumerate(methods.items()):
            ls = styles[k % len(styles)]
            t0 = time.perf_counter()
            res = af.riemannian_gradient_descent(flow, loss, est, max_iter=n_iter)
            dt = time.perf_counter() - t0
            e, lo = 100 * res.history["error"], res.history["loss"]
            it = np.arange(1, len(e) + 1)
            axes[0, col].plot(it, e, ls, lw=2, label=f"{name} ({dt:.1f} s)")
            axes[1, col].plot(it, lo, ls, lw=2, label=name)
            curves.append(lo)
            short = name.split(",")[1 if "autodiff" in name else 0].split("(")[0].strip()
            finals.append(f"{short} {e[0]:.2f}->{e[-1]:.2f} % (loss {lo[0]:.4f}->{lo[-1]:.4f})")
        dev = max(float(np.max(np.abs(c - curves[0]) / curves[0])) for c in curves[1:])
        axes[0, col].set_title(f"{title} ({scen}, {size}×{size}, σ = {nz:.3g})")
        axes[0, col].set_ylabel("% wrongly labeled pixels")
        axes[0, col].set_ylim(bottom=0)
        axes[0, col].legend(fontsize=8)
        axes[1, col].set_ylabel("KL loss")
        axes[1, col].set_xlabel("iteration")
        axes[1, col].set_title(
            f"loss (max. relative deviation from closed form {dev:.1e})", fontsize=10
        )
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
        parts.append(f"{title}: " + ", ".join(finals) + f"; max rel. loss deviation {dev:.1e}")
    n_words = {2: "two", 3: "three", 4: "four"}
    fig.suptitle(
        "Fig. 2 — Riemannian gradient descent on Ω of one image, "
        f"{n_words.get(len(methods), len(methods))} gradients"
    )
    fig.tight_layout()
    return fig, "fig2: " + "; ".join(parts)


# --------------------------------------------------------------------------- fig 3
def make_fig3(size: int = 128, ref_nodes: int = 16):
    """Per-pixel cosine similarity (rank 1 vs reference) and gradient norm maps.

    The reference is ``AdjointQuadrature`` with ``ref_nodes`` nodes. Returns the
    figure and a one-line summary of its numbers.
    """
    scen = "colors"
    p = PARAMS[scen]
    noise = _noise(scen)
    ref_est = af.AdjointQuadrature(n_nodes=ref_nodes)
    lr_est = af.ClosedFormLowRank(krylov_dim=10, rank=1, return_factors=True)
    fig, axes = plt.subplots(2, 3, figsize=(14, 8.6))
    parts = []
    for row, (title, nz) in enumerate((("noisy", noise), ("noise-free", 0.0))):
        x, y, _, P = _scene(scen, size, nz)
        flow = _flow(x, P, p["rho"], p["T"])
        loss = af.KLLoss(labels=y.ravel())
        lr = lr_est.estimate(flow, loss)
        ref = ref_est.estimate(flow, loss)
        g = flow.weights.graph
        cos = _per_pixel_cosine(g, lr.gradient, ref.gradient)
        c = cos[np.isfinite(cos)]
        frac = float(np.mean(c >= 0.9))
        rel = float(np.linalg.norm(lr.gradient - ref.gradient) / np.linalg.norm(ref.gradient))
        ax = axes[row, 0]
        ax.imshow(_rgb(x), interpolation="nearest")
        ax.set_title(f"{title} input (σ = {nz:.3g})")
        ax.set_axis_off()
        ax = axes[row, 1]
        ax.hist(np.clip(c, -1, 1), bins=np.linspace(-1, 1, 81), color="C0")
        ax.set_yscale("log")
        ax.axvline(0.9, color="k", ls="--", lw=1)
        ax.set_xlabel("per-pixel cosine similarity (rank 1 vs AdjointQuadrature)")
        ax.set_ylabel("pixels")
        ax.set_title(
            f"{100 * frac:.2f} % of pixels with cosine ≥ 0.9\n"
            f"({c.size} of {cos.size} pixels with a non-zero gradient; rel. error {rel:.1e})",
            fontsize=10,
        )
        ax = axes[row, 2]
        nm = lr.norm_map((size, size))
        im = ax.imshow(nm / nm.max(), cmap="magma", interpolation="nearest")
        plt.colorbar(im, ax=ax, fraction=0.046)
        # share of the squared gradient norm on the pixels within 2 px of a label edge
        yp = np.pad(y, 2, mode="edge")
        edge = np.zeros(y.shape, dtype=bool)
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                edge |= yp[2 + dy : 2 + dy + size, 2 + dx : 2 + dx + size] != y
        share = float(np.sum(nm[edge] ** 2) / np.sum(nm**2))
        area = float(np.mean(edge))
        ax.set_title(
            f"per-pixel gradient norm (rank 1, / max)\n"
            f"{100 * share:.1f} % of |grad|² within 2 px of a label edge "
            f"({100 * area:.0f} % of pixels)",
            fontsize=10,
        )
        ax.set_axis_off()
        parts.append(
            f"{title}: {100 * frac:.2f} % of pixels with cosine >= 0.9 "
            f"(min {c.min():.3f}, rel. error {rel:.1e}), {100 * share:.1f} % of |grad|^2 "
            f"within 2 px of a label edge ({100 * area:.0f} % of pixels)"
        )
    fig.suptitle(
        f"Fig. 3 — rank-1 low-rank gradient vs reference ({scen}, {size}×{size}, uniform weights)"
    )
    fig.tight_layout()
    return fig, "fig3: " + "; ".join(parts)


# --------------------------------------------------------------------------- fig 4
def make_fig4(
    size: int = 64,
    n_iter: int = 25,
    dims: Sequence[int] = tuple(range(2, 13)),
    ranks: Sequence[int] = (1, 2, 3, 4, 5),
    Ts: Sequence[float] = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
    ref_nodes: int = 24,
):
    """Relative error vs Krylov dimension and rank; training speed vs T.

    ``dims`` must contain 6 and 10 (named in the summary); the reference is
    ``AdjointQuadrature`` with ``ref_nodes`` nodes. Returns the figure and
    a one-line summary of its numbers.
    """
    dims, ranks, Ts = list(dims), list(ranks), list(Ts)
    scen = "colors"
    p = PARAMS[scen]
    noise = _noise(scen)
    x, y, _, P = _scene(scen, size, noise)
    loss = af.KLLoss(labels=y.ravel())
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    summary = []
    # (a), (b): rel. error of the gradient vs AdjointQuadrature, for two T
    for T, mk in ((p["T"], "o-"), (10.0, "s--")):
        flow = _flow(x, P, p["rho"], T)
        ref = af.AdjointQuadrature(n_nodes=ref_nodes).gradient(flow, loss)
        nref = np.linalg.norm(ref)
        e_m = [
            np.linalg.norm(af.ClosedFormLowRank(krylov_dim=m, rank=1).gradient(flow, loss) - ref)
            / nref
            for m in dims
        ]
        e_r = [
            np.linalg.norm(af.ClosedFormLowRank(krylov_dim=10, rank=r).gradient(flow, loss) - ref)
            / nref
            for r in ranks
        ]
        axes[0].semilogy(dims, e_m, mk, label=f"T = {T:g}")
        axes[1].semilogy(ranks, e_r, mk, label=f"T = {T:g} (m = 10)")
        summary.append(
            f"T={T:g}: rel.err m=2 {e_m[0]:.1e}, m=6 {e_m[dims.index(6)]:.1e}, "
            f"m=10 {e_m[dims.index(10)]:.1e}; rank 1 {e_r[0]:.1e}, rank 5 {e_r[-1]:.1e}"
        )
    axes[0].set_xlabel("Krylov dimension m")
    axes[0].set_ylabel("relative error of the gradient")
    axes[0].set_title("rank 1, vs AdjointQuadrature")
    axes[1].set_xlabel("rank")
    axes[1].set_ylabel("relative error of the gradient")
    axes[1].set_title("Krylov dimension 10, vs AdjointQuadrature")
    axes[1].set_xticks(ranks)
    for ax in axes[:2]:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    # (c): training curves for a few T
    fin = []
    for T in Ts:
        flow = _flow(x, P, p["rho"], T)
        res = af.riemannian_gradient_descent(
            flow, loss, af.ClosedFormLowRank(krylov_dim=10, rank=1), max_iter=n_iter
        )
        e = 100 * res.history["error"]
        axes[2].plot(np.arange(1, len(e) + 1), e, label=f"T = {T:g}")
        fin.append(f"T={T:g} {e[0]:.1f}→{e[min(4, len(e) - 1)]:.1f}(it5)→{e[-1]:.1f} %")
    axes[2].set_xlabel("iteration")
    axes[2].set_ylabel("% wrongly labeled pixels")
    axes[2].set_title("training speed vs T (rank 1, m = 10)")
    axes[2].set_ylim(bottom=0)
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.suptitle(f"Fig. 4 — Krylov dimension, rank and T ({scen}, {size}×{size}, σ = {noise:.3g})")
    fig.tight_layout()
    return fig, "fig4: " + "; ".join(summary) + "; training " + ", ".join(fin)


# --------------------------------------------------------------------------- fig 5
def make_fig5(
    size: int = 64, n_train: int = 10, n_test: int = 3, max_iter: int = 40, n_desc: int = 30
):
    """Predictor: training curves, estimated vs predicted patches, unseen labelings.

    ``n_train`` scenes (half of them for validation) train the ``ImageLabeler`` for
    at most ``max_iter`` iterations; ``n_desc`` descent steps estimate the weights
    of the first of ``n_test`` unseen scenes. Returns the figure and a one-line
    summary of its numbers.
    """
    scen = "lines"
    p = PARAMS[scen]
    noise = _noise(scen)
    X, Y, P = af.datasets.make_voronoi(
        scen, n_train, (size, size), noise, random_state=SEED, return_prototypes=True
    )
    Xt, Yt = af.datasets.make_voronoi(scen, n_test, (size, size), noise, random_state=SEED + 10_000)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = af.ImageLabeler(
            prototypes=P,
            rho=p["rho"],
            T=p["T"],
            predictor="prototype",  # the paper's predictor (Sect. 4.4), one layer, 3x3
            n_layers=1,
            radius=1,
            n_prototypes=20,
            max_iter=max_iter,
            validation_fraction=0.5,  # the paper: five training and five validation images
            random_state=SEED,
        ).fit(X, Y)
    t_fit = time.perf_counter() - t0
    hist = model.history_

    # estimated weights: learned by descent on one image with its ground truth
    x0, y0 = Xt[0], Yt[0]
    flow0 = _flow(x0, P, p["rho"], p["T"])
    est = af.riemannian_gradient_descent(
        flow0,
        af.KLLoss(labels=y0.ravel()) + af.TangentSpaceRegularizer(tau=1e-6),
        af.ClosedFormLowRank(krylov_dim=10, rank=1),
        max_iter=n_desc,
    )
    W_est = est.weights.patches
    W_pred = model.predict_weights([x0])[0].patches
    e_est = _err(est.flow.solve(af.ExponentialKrylov()).labels, y0)

    # a few pixels: on a line, next to a line, in a cell interior, at a line crossing
    on = y0 == 0
    pad = np.pad(on, 1)
    nb = sum(
        pad[1 + dy : 1 + dy + size, 1 + dx : 1 + dx + size]
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )
    inner = (slice(2, size - 2), slice(2, size - 2))
    cand = {
        "on a line": on & (nb >= 3) & (nb <= 6),
        "next to a line": ~on & (nb >= 2),
        "cell interior": ~on & (nb == 0),
        "line junction": on & (nb >= 8),
    }
    pix = []
    rng = np.random.default_rng(SEED)
    for name, mask in cand.items():
        m = np.zeros_like(mask)
        m[inner] = mask[inner]
        idx = np.argwhere(m)
        if len(idx):
            pix.append((name, tuple(idx[rng.integers(len(idx))])))

    # unseen test images: uniform vs predicted weights
    rows = []
    for x, y in zip(Xt, Yt, strict=True):
        flow = _flow(x, P, p["rho"], p["T"])
        uni = flow.solve(af.ExponentialKrylov()).labels.reshape(y.shape)
        lrn = model.predict([x])[0]
        rnd = flow.similarity.distances.argmin(axis=1).reshape(y.shape)
        rows.append((x, y, rnd, uni, lrn))
    e_rnd = np.mean([_err(r[2], r[1]) for r in rows])
    e_uni = np.mean([_err(r[3], r[1]) for r in rows])
    e_lrn = np.mean([_err(r[4], r[1]) for r in rows])

    n_show = min(2, n_test)
    fig = plt.figure(figsize=(15, 4.2 + 3.3 * n_show))
    gs = fig.add_gridspec(1 + n_show, 5, height_ratios=[1.25] + [1] * n_show)
    ax = fig.add_subplot(gs[0, 0:2])
    it = np.arange(1, len(hist["error"]) + 1)
    ax.plot(it, 100 * hist["error"], label="training images")
    ax.plot(it, 100 * hist["val_error"], label="validation images")
    ax.axvline(model.best_iter_, color="k", ls=":", lw=1, label=f"best (it. {model.best_iter_})")
    ax.set_xlabel("iteration (Adam on the predictor parameters)")
    ax.set_ylabel("% wrongly labeled pixels")
    ax.set_title(f"predictor training ({len(X)} scenes, {t_fit:.0f} s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    # patches: one small grid of 3x3 images
    sub = gs[0, 2:5].subgridspec(2, 1 + len(pix), width_ratios=[1.3] + [1] * len(pix))
    ax = fig.add_subplot(sub[:, 0])
    ax.imshow(label_image_to_rgb(y0, P), interpolation="nearest")
    for k, (_, (py, px)) in enumerate(pix):
        ax.plot(px, py, "o", ms=7, mfc="none", mec=f"C{k}", mew=2)
    ax.set_title(f"pixels (GT)\nestimated: {100 * e_est:.1f} % wrong", fontsize=8)
    ax.set_axis_off()
    vmax = max(
        float(W_est[tuple(zip(*[q for _, q in pix], strict=True))].max()) if pix else 1.0,
        float(W_pred[tuple(zip(*[q for _, q in pix], strict=True))].max()) if pix else 1.0,
    )
    for k, (name, (py, px)) in enumerate(pix):
        for r, (W, lab) in enumerate(((W_est, "estimated"), (W_pred, "predicted"))):
            a = fig.add_subplot(sub[r, 1 + k])
            a.imshow(
                W[py, px].reshape(3, 3), cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest"
            )
            a.set_xticks([])
            a.set_yticks([])
            for s in a.spines.values():
                s.set_edgecolor(f"C{k}")
                s.set_linewidth(2)
            if r == 0:
                a.set_title(name, fontsize=8)
            if k == 0:
                a.set_ylabel(lab, fontsize=8)
    for r in range(n_show):
        x, y, rnd, uni, lrn = rows[r]
        panels = [
            (_rgb(x), f"unseen noisy image {r + 1}"),
            (label_image_to_rgb(y, P), "ground truth"),
            (label_image_to_rgb(rnd, P), f"rounding {100 * _err(rnd, y):.1f} %"),
            (label_image_to_rgb(uni, P), f"LAF, uniform {100 * _err(uni, y):.1f} %"),
            (label_image_to_rgb(lrn, P), f"LAF, predicted {100 * _err(lrn, y):.1f} %"),
        ]
        for c, (im, t) in enumerate(panels):
            a = fig.add_subplot(gs[1 + r, c])
            a.imshow(im, interpolation="nearest")
            a.set_title(t, fontsize=9)
            a.set_axis_off()
    fig.suptitle(
        f"Fig. 5 — weight predictor ({scen}, {size}×{size}, σ = {noise:g}, "
        f"ρ = {p['rho']:g}, T = {p['T']:g})"
    )
    fig.tight_layout()
    return fig, (
        f"fig5: fit {model.n_iter_} it in {t_fit:.1f} s (best it {model.best_iter_}, train "
        f"{100 * hist['error'][0]:.2f}→{100 * hist['error'][model.best_iter_ - 1]:.2f} %, val "
        f"{100 * hist['val_error'][0]:.2f}→{100 * hist['val_error'][model.best_iter_ - 1]:.2f} %); "
        f"unseen ({n_test} scenes): rounding {100 * e_rnd:.2f} %, LAF uniform {100 * e_uni:.2f} %, "
        f"LAF predicted {100 * e_lrn:.2f} %; estimated weights on scene 1: {100 * e_est:.2f} %"
    )


# --------------------------------------------------------------------------- CLI
MAKERS = {
    "fig1": make_fig1,
    "fig2": make_fig2,
    "fig3": make_fig3,
    "fig4": make_fig4,
    "fig5": make_fig5,
}
FILES = {
    "fig1": "fig1_scenarios",
    "fig2": "fig2_training_curves",
    "fig3": "fig3_cosine_and_norms",
    "fig4": "fig4_krylov_rank_T",
    "fig5": "fig5_predictor",
}
# the --quick sizes (the full ones are the defaults of the make_fig* functions)
QUICK = {
    "fig1": {"size": 64},
    "fig2": {"size": 32, "n_iter": 8},
    "fig3": {"size": 64},
    "fig4": {"size": 32, "n_iter": 8, "dims": (2, 4, 6, 8, 10, 12), "Ts": (0.5, 1.0, 3.0, 10.0)},
    "fig5": {"size": 32, "n_train": 4, "n_test": 2, "max_iter": 6, "n_desc": 15},
}


def make_and_save(name: str, out: Path, quick: bool = False) -> str:
    """Make one figure, write it to ``out/<file>.png``, print its summary, return the path."""
    fig, summary = MAKERS[name](**(QUICK[name] if quick else {}))
    path = _save(fig, out, FILES[name])
    print(summary)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=sorted(MAKERS), help="figures to make")
    ap.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "figures"),
        help="output directory (default benchmarks/figures)",
    )
    ap.add_argument("--quick", action="store_true", help="small sizes and few iterations")
    args = ap.parse_args(argv)
    out = Path(args.out)
    t_all = time.perf_counter()
    for name in args.only or list(MAKERS):
        t0 = time.perf_counter()
        path = make_and_save(name, out, quick=args.quick)
        print(f"  -> {path} ({time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"total {time.perf_counter() - t_all:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
