"""Quality benchmark of the learned weights (the estimator issue's targets).

On unseen noisy random Voronoi scenes (5 training, 5 test images) the fitted
``af.ImageLabeler`` is compared with

* pixelwise rounding (nearest prototype),
* the best uniform-weight LAF: rho and T chosen by a grid search on the
  training images (lowest mean training error),
* a Potts model solved by alpha-expansion (``benchmarks/potts.py``, PyMaxflow
  graph cuts, 4-connected grid); the data term (squared Euclidean distance =
  Gaussian negative log-likelihood up to scale, or Euclidean distance = the
  LAF's ``D``) and the smoothness weight lambda are chosen on the training
  images.

Scenarios and targets
    colors  noise ``noise_for_rounding_error("colors")`` (~0.61, pixelwise
            rounding ~50 % wrong): learned error <= 0.5 x best uniform and
            <= 0.8 x Potts.
    lines   noise 0.3: boundary recall (fraction of ground-truth label-0 pixels
            labeled 0) >= 0.9 for the learned model, and its overall error
            below both baselines. The issue's premise, uniform weights' recall
            < 0.5, does not hold for the *tuned* uniform LAF (it picks a tiny
            horizon that barely denoises), so it is checked at one (rho, T) =
            (0.3, 10) for both weights: uniform loses the lines there and the
            learned weights must keep recall >= 0.9.

Learned models (``--features both``, the default): the paper's window features
at the tuned uniform rho, and ``features="assignment"`` (affinity features of
the tuned uniform LAF's log-assignment) at rho 0.3 and at the tuned rho. Each
kind is represented by its fit with the lowest validation error, and the
targets use the model with the lowest validation error overall: no choice is
made on the test scenes.

Seeds (fixed, documented): training scenes ``make_voronoi(..., random_state=
SEED_TRAIN[scenario])``, test scenes ``random_state=SEED_TEST[scenario]``,
``ImageLabeler(random_state=0)``.

Usage::

    python benchmarks/quality.py            # 128x128, full settings (~3-4 min on 2 cores)
    python benchmarks/quality.py --quick    # 64x64, fewer iterations (~1.5-2 min)
    python benchmarks/quality.py --scenario colors --json out.json

Requires ``pip install PyMaxflow``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

import assignflow as af

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from potts import potts_alpha_expansion, self_check

SEED_TRAIN = {"colors": 7001, "lines": 7101}
SEED_TEST = {"colors": 8001, "lines": 8101}
N_TRAIN, N_TEST = 5, 5

RHO_GRID = (0.03, 0.1, 0.3, 1.0)
T_GRID = (1.0, 3.0, 10.0, 30.0)
LAMBDA_GRID = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
UNARY_METRICS = ("sqeuclidean", "euclidean")


def log(*a):
    print(*a, flush=True)


def error(labels, truth):
    return float(np.mean(np.asarray(labels).ravel() != np.asarray(truth).ravel()))


def recall0(labels, truth):
    t = np.asarray(truth).ravel() == 0
    return float(np.mean(np.asarray(labels).ravel()[t] == 0)) if t.any() else float("nan")


def laf_uniform(image, protos, rho, T, krylov_dim=10):
    h, w = image.shape[:2]
    D = af.distance_matrix(image, protos)
    sim = af.SimilarityOperator(af.Weights.uniform(af.GridGraph((h, w))), D, rho=rho)
    res = af.LinearizedAssignmentFlow(sim, T=T).solve(af.ExponentialKrylov(krylov_dim=krylov_dim))
    return res.labels.reshape(h, w)


def potts(image, protos, lam, metric, n_iter=5):
    h, w = image.shape[:2]
    U = af.distance_matrix(image, protos, metric=metric).reshape(h, w, -1)
    return potts_alpha_expansion(U, lam, n_iter=n_iter)


def tune_uniform(X, Y, protos):
    t0 = time.perf_counter()
    table = {}
    for rho in RHO_GRID:
        for T in T_GRID:
            table[(rho, T)] = float(
                np.mean(
                    [error(laf_uniform(x, protos, rho, T), y) for x, y in zip(X, Y, strict=False)]
                )
            )
    best = min(table, key=table.get)
    log(
        "  uniform LAF grid (train error %): "
        + ", ".join(f"rho {r:g} T {t:g}: {100 * e:.2f}" for (r, t), e in table.items())
    )
    log(
        f"  -> best rho {best[0]:g}, T {best[1]:g} ({100 * table[best]:.2f} % on training) "
        f"[{time.perf_counter() - t0:.0f} s]"
    )
    return best, table


def tune_potts(X, Y, protos, quick):
    t0 = time.perf_counter()
    table = {}
    n_iter = 3 if quick else 5
    for metric in UNARY_METRICS:
        for lam in LAMBDA_GRID:
            table[(metric, lam)] = float(
                np.mean(
                    [
                        error(potts(x, protos, lam, metric, n_iter), y)
                        for x, y in zip(X, Y, strict=False)
                    ]
                )
            )
    best = min(table, key=table.get)
    log(
        "  Potts grid (train error %): "
        + ", ".join(f"{m[:4]} {lam:g}: {100 * e:.2f}" for (m, lam), e in table.items())
    )
    log(
        f"  -> best unary {best[0]}, lambda {best[1]:g} ({100 * table[best]:.2f} % on training) "
        f"[{time.perf_counter() - t0:.0f} s]"
    )
    return best, table, n_iter


def same_horizon_check(X, Y, Xt, Yt, protos, base, args):
    """Lines: uniform and learned weights at one (rho, T) long enough to wash out lines.

    The tuned uniform LAF keeps thin lines by choosing a tiny horizon (and so
    denoises little); at ``--premise-rho``/``--premise-T`` uniform weights lose
    them, and the learned weights must keep them at the same rho and T.
    """
    rho, T = args.premise_rho, args.premise_T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = af.ImageLabeler(**dict(base, rho=rho, T=T, features="window", verbose=0)).fit(X, Y)
    out = {"rho": rho, "T": T}
    for name, fn in (
        ("uniform", lambda x: laf_uniform(x, protos, rho, T)),
        ("learned", lambda x: model.predict([x])[0]),
    ):
        pairs = [(fn(x), y) for x, y in zip(Xt, Yt, strict=True)]
        out[f"{name}_error"] = float(np.mean([error(lab, y) for lab, y in pairs]))
        out[f"{name}_recall"] = float(np.mean([recall0(lab, y) for lab, y in pairs]))
    log(
        f"\n  same horizon (rho {rho:g}, T {T:g}): uniform {100 * out['uniform_error']:.2f} % "
        f"(recall0 {out['uniform_recall']:.3f}), learned {100 * out['learned_error']:.2f} % "
        f"(recall0 {out['learned_recall']:.3f})"
    )
    return out


def run_scenario(scenario, args):
    size = 64 if args.quick else args.size
    shape = (size, size)
    if scenario == "colors":
        noise = (
            af.datasets.noise_for_rounding_error("colors")
            if args.noise_colors is None
            else args.noise_colors
        )
    else:
        noise = args.noise_lines
    X, Y, protos = af.datasets.make_voronoi(
        scenario, N_TRAIN, shape, noise, random_state=SEED_TRAIN[scenario], return_prototypes=True
    )
    Xt, Yt = af.datasets.make_voronoi(
        scenario, N_TEST, shape, noise, random_state=SEED_TEST[scenario]
    )
    log(
        f"\n=== scenario {scenario!r}: {size}x{size}, noise {noise:.4f}, {N_TRAIN} training "
        f"scenes (seed {SEED_TRAIN[scenario]}), {N_TEST} test scenes (seed {SEED_TEST[scenario]})"
    )

    (rho_u, T_u), utable = tune_uniform(X, Y, protos)
    (metric, lam), ptable, p_iter = tune_potts(X, Y, protos, args.quick)

    T_l = T_u if args.T is None else args.T
    base = dict(
        prototypes=protos,
        T=T_l,
        radius=args.radius,
        n_prototypes=20 if args.quick else args.n_prototypes,
        max_iter=args.max_iter if args.max_iter else (30 if args.quick else 60),
        learning_rate=args.learning_rate,
        validation_fraction=0.2,
        n_iter_no_change=args.n_iter_no_change,
        random_state=0,
        verbose=1,
        n_jobs=args.n_jobs,
    )
    # Candidate models: the paper's window features at the tuned uniform rho, and the
    # assignment (affinity) features of the uniform LAF at rho in {0.3, tuned}; every
    # choice below is made by the fits' own validation error, never by test error.
    candidates = []
    kinds = ("window", "assignment") if args.features == "both" else (args.features,)
    for kind in kinds:
        if args.rho is not None:
            rhos = (args.rho,)
        else:
            rhos = (rho_u,) if kind == "window" else tuple(dict.fromkeys((0.3, rho_u)))
        for rho_l in rhos:
            settings = dict(base, rho=rho_l, features=kind)
            if kind == "assignment":
                settings.update(feature_rho=rho_u, feature_T=T_u)
            shown = {k: v for k, v in settings.items() if k not in ("prototypes", "verbose")}
            log(f"  fitting ImageLabeler({', '.join(f'{k}={v}' for k, v in shown.items())}) ...")
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = af.ImageLabeler(**settings).fit(X, Y)
            t_fit = time.perf_counter() - t0
            val = float(model.history_["val_error"][model.best_iter_ - 1])
            log(
                f"  fitted: {model.n_iter_} iterations in {t_fit:.0f} s, best validation error "
                f"{100 * val:.2f} % at iteration {model.best_iter_}"
            )
            candidates.append(
                dict(kind=kind, rho=rho_l, model=model, val=val, t_fit=t_fit, settings=shown)
            )
    best_of = {}
    for c in candidates:
        if c["kind"] not in best_of or c["val"] < best_of[c["kind"]]["val"]:
            best_of[c["kind"]] = c
    chosen = min(best_of.values(), key=lambda c: c["val"])
    t_fit = sum(c["t_fit"] for c in candidates)

    methods = {
        "pixelwise rounding": lambda x: np.argmin(af.distance_matrix(x, protos), axis=1),
        f"LAF uniform (rho {rho_u:g}, T {T_u:g})": lambda x: laf_uniform(x, protos, rho_u, T_u),
        f"Potts a-exp ({metric}, lam {lam:g})": lambda x: potts(x, protos, lam, metric, p_iter),
    }
    for kind, c in best_of.items():
        mark = " *" if c is chosen else ""
        methods[f"LAF learned, {kind} (rho {c['rho']:g}){mark}"] = lambda x, m=c["model"]: (
            m.predict([x])[0]
        )
    rows = []
    for name, fn in methods.items():
        errs, recs, secs = [], [], []
        for x, y in zip(Xt, Yt, strict=False):
            t0 = time.perf_counter()
            lab = fn(x)
            secs.append(time.perf_counter() - t0)
            errs.append(error(lab, y))
            recs.append(recall0(lab, y))
        rows.append(
            {
                "method": name,
                "error": float(np.mean(errs)),
                "boundary_recall": float(np.mean(recs)) if scenario == "lines" else None,
                "seconds_per_scene": float(np.mean(secs)),
                "per_scene_error": errs,
            }
        )
    _rnd, uni, pot = rows[:3]
    lrn = rows[3 + list(best_of.values()).index(chosen)]

    log(
        f"\n  {'method (unseen test scenes)':<40} {'error':>8} "
        + (f"{'recall0':>8} " if scenario == "lines" else "")
        + f"{'time/scene':>11}"
    )
    for r in rows:
        log(
            f"  {r['method']:<40} {100 * r['error']:6.2f} % "
            + (f"{r['boundary_recall']:8.3f} " if scenario == "lines" else "")
            + f"{r['seconds_per_scene']:9.3f} s"
        )
    log(
        f"  (* = the learned model with the lowest validation error, used for the targets; "
        f"fits {t_fit:.0f} s; uniform grid {len(utable)} settings, Potts grid {len(ptable)} "
        "settings, both on the training scenes)"
    )

    targets = {}
    if scenario == "colors":
        targets["learned <= 0.5 x best uniform"] = {
            "value": lrn["error"] / uni["error"],
            "bound": 0.5,
            "met": lrn["error"] <= 0.5 * uni["error"],
        }
        targets["learned <= 0.8 x Potts"] = {
            "value": lrn["error"] / pot["error"],
            "bound": 0.8,
            "met": lrn["error"] <= 0.8 * pot["error"],
        }
    else:
        premise = same_horizon_check(X, Y, Xt, Yt, protos, base, args)
        targets["learned recall >= 0.9 where uniform < 0.5 (same rho, T)"] = {
            "value": premise["learned_recall"],
            "bound": 0.9,
            "met": premise["learned_recall"] >= 0.9 and premise["uniform_recall"] < 0.5,
        }
        targets["learned boundary recall >= 0.9"] = {
            "value": lrn["boundary_recall"],
            "bound": 0.9,
            "met": lrn["boundary_recall"] >= 0.9,
        }
        targets["tuned uniform recall < 0.5 (premise, tuned)"] = {
            "value": uni["boundary_recall"],
            "bound": 0.5,
            "met": uni["boundary_recall"] < 0.5,
        }
        targets["learned error < best uniform"] = {
            "value": lrn["error"] / uni["error"],
            "bound": 1.0,
            "met": lrn["error"] < uni["error"],
        }
        targets["learned error < Potts"] = {
            "value": lrn["error"] / pot["error"],
            "bound": 1.0,
            "met": lrn["error"] < pot["error"],
        }
    log("  targets:")
    for k, v in targets.items():
        log(
            f"    {k:<42} {v['value']:.3f} (bound {v['bound']:g})  "
            f"{'MET' if v['met'] else 'NOT MET'}"
        )
    if not all(v["met"] for k, v in targets.items() if "premise" not in k):
        log("  NOTE: target(s) not met; see benchmarks/README.md for what was tried.")
    return {
        "scenario": scenario,
        "size": size,
        "noise": noise,
        "seeds": {"train": SEED_TRAIN[scenario], "test": SEED_TEST[scenario], "model": 0},
        "uniform_grid": {f"rho={r:g},T={t:g}": e for (r, t), e in utable.items()},
        "uniform_best": {"rho": rho_u, "T": T_u},
        "potts_grid": {f"{m},lambda={lm:g}": e for (m, lm), e in ptable.items()},
        "potts_best": {"unary": metric, "lambda": lam, "n_iter": p_iter},
        "learned": [
            {
                "settings": c["settings"],
                "validation_error": c["val"],
                "fit_seconds": c["t_fit"],
                "n_iter": int(c["model"].n_iter_),
                "best_iter": int(c["model"].best_iter_),
                "chosen": c is chosen,
                "history": {k: v.tolist() for k, v in c["model"].history_.items()},
            }
            for c in candidates
        ],
        "results": rows,
        "targets": targets,
        "same_horizon": premise if scenario == "lines" else None,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="64x64, 30 iterations, 20 prototypes")
    p.add_argument("--scenario", choices=("colors", "lines", "both"), default="both")
    p.add_argument("--size", type=int, default=128)
    p.add_argument(
        "--noise-colors",
        type=float,
        default=None,
        help="default noise_for_rounding_error('colors') ~ 0.61",
    )
    p.add_argument("--noise-lines", type=float, default=0.3)
    p.add_argument("--premise-rho", type=float, default=0.3, help="lines: same-horizon rho")
    p.add_argument("--premise-T", type=float, default=10.0, help="lines: same-horizon T")
    p.add_argument(
        "--rho",
        type=float,
        default=None,
        help="learned models' rho (default: tuned uniform rho; assignment features also 0.3)",
    )
    p.add_argument("--T", type=float, default=None, help="learned model's T (default: tuned)")
    p.add_argument("--max-iter", type=int, default=None, help="default 60 (quick: 30)")
    p.add_argument("--n-prototypes", type=int, default=50)
    p.add_argument("--radius", type=int, default=1, help="window radius of the learned weights")
    p.add_argument(
        "--features",
        choices=("window", "assignment", "both"),
        default="both",
        help="predictor features of the learned models (default: both, chosen by validation)",
    )
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--n-iter-no-change", type=int, default=15)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = p.parse_args(argv)

    self_check(verbose=True)
    scen = ("colors", "lines") if args.scenario == "both" else (args.scenario,)
    t0 = time.perf_counter()
    out = {"quick": args.quick, "scenarios": [run_scenario(s, args) for s in scen]}
    out["seconds"] = time.perf_counter() - t0
    log(f"\ntotal {out['seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
